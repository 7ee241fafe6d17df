"""AdvEncoder: the ℓ∞ bound, the patch area, the loss formulas, eps parsing and exit codes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.attack.advencoder import (
    AdvEncoderLoss,
    advencoder_nce,
    apply_delta,
    gaussian_blur,
    hfc_loss,
    parse_eps,
    paste_patches,
    patch_side,
)
from fmlab.cli.main import main
from fmlab.engine import Callback, TensorSource, Trainer, TrainerConfig
from fmlab.engine.config import OptimConfig
from fmlab.errors import ConfigError
from fmlab.models.backbone import Backbone
from fmlab.models.preprocess import PreprocessSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_backbone(size: int = 16) -> Backbone:
    """A small conv encoder with a non-trivial normalisation (so pixel vs normalised space matters)."""
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten())
    spec = PreprocessSpec((size, size), 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    return Backbone("toy", trunk, 32, spec)


@pytest.mark.parametrize(("text", "value"), [("10/255", 10 / 255), ("0.5", 0.5), (1, 1.0),
                                             ("1", 1.0), (0.03, 0.03)])
def test_parse_eps_accepts_fractions_and_numbers(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["0", "2", "-1/255", "abc", "1/0", "nan", 1.5])
def test_parse_eps_refuses_values_outside_0_1(bad):
    with pytest.raises(ConfigError, match="--eps"):
        parse_eps(bad)


@pytest.mark.parametrize("bad", ["0", "2", "-10/255", "x"])
def test_cli_bad_eps_exits_2_naming_it(bad, tmp_path, capsys):
    assert main(["attack", "universal", "--out", str(tmp_path / "r"), f"--eps={bad}"]) == 2
    err = capsys.readouterr().err
    assert "--eps" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_config_eps_and_unknown_keys_are_refused_by_name(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["attack", "universal", "--out", out, "--set", "attack.eps=3"]) == 2
    assert "attack.eps" in capsys.readouterr().err
    assert main(["attack", "universal", "--out", out, "--set", "attack.lamda_hf=0"]) == 2
    assert "attack.lambda_hf" in capsys.readouterr().err  # the "did you mean"


class _BoundCheck(Callback):
    """After every optimiser step: max |δ| <= ε and the perturbed images stay in [0, 1]."""

    def __init__(self, obj: AdvEncoderLoss, x: torch.Tensor) -> None:
        self.obj, self.x, self.seen = obj, x, []

    def on_train_step_end(self, trainer) -> None:
        with torch.no_grad():
            d = self.obj.perturbation()
            adv = self.obj.perturb(self.x)
        self.seen.append(float(d.abs().max()))
        assert float(d.abs().max()) <= self.obj.eps
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        # x + δ is rounded to float32 (pixels up to 1.0): one ulp of 1.0 is the only slack
        assert float((adv - self.x).abs().max()) <= self.obj.eps + 2.0 ** -23


def test_linf_bound_holds_exactly_after_every_step():
    eps = 10 / 255
    obj = AdvEncoderLoss(toy_backbone(), eps, z_dim=8, width=8, lambda_hf=1.0)
    imgs = torch.randint(0, 256, (16, 16, 16, 3), dtype=torch.uint8)
    imgs[:4] = 255  # saturated pixels: the clamp to [0, 1] must act
    check = _BoundCheck(obj, obj.pixel_spec(imgs))
    cfg = TrainerConfig(max_steps=12, batch_size=8, progress=False, tensorboard=False,
                        device="cpu", log_every=1)
    Trainer(obj, TensorSource(imgs), cfg, OptimConfig(lr=0.3), run_dir=None,
            callbacks=[check]).fit()
    assert len(check.seen) == 12
    assert max(check.seen) > 0.9 * eps  # a large lr saturates tanh: the bound is tested at its edge


def test_the_victim_stays_frozen_and_in_eval_mode():
    bb = toy_backbone()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    obj = AdvEncoderLoss(bb, 0.1, z_dim=8, width=8)
    obj.train()
    assert not obj.victim.training and all(not p.requires_grad for p in obj.victim.parameters())
    loss, _ = obj({"images": torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)})
    loss.backward()
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())  # BN stats too
    assert all(p.grad is not None for p in obj.generator.parameters())


@pytest.mark.parametrize(("area", "size"), [(0.03, (32, 32)), (0.1, (16, 16)), (0.05, (28, 20))])
def test_patch_covers_exactly_the_requested_area(area, size):
    side = patch_side(area, size)
    assert side == round(math.sqrt(area * size[0] * size[1]))
    x = torch.zeros(50, 3, *size)
    out = paste_patches(x, torch.full((3, side, side), 0.7), torch.Generator().manual_seed(0))
    changed = (out != 0).any(1).flatten(1).sum(1)
    assert changed.tolist() == [side * side] * 50
    # positions are drawn per image: several distinct placements on a big batch
    assert len({tuple(torch.nonzero((o != 0).any(0))[0].tolist()) for o in out}) > 10


def test_patch_variant_objective_pastes_a_patch_in_0_1():
    obj = AdvEncoderLoss(toy_backbone(32), 0.1, patch=0.03, z_dim=8, width=8)
    p = obj.perturbation().detach()
    assert p.shape == (3, 6, 6) and float(p.min()) >= 0 and float(p.max()) <= 1
    x = obj.pixel_spec(torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8))
    changed = (obj.perturb(x) != x).any(1).flatten(1).sum(1)
    assert (changed <= 36).all() and (changed > 0).all()


def test_nce_matches_its_formula_on_random_tensors():
    torch.manual_seed(1)
    adv, clean, tau = torch.randn(5, 7), torch.randn(5, 7), 0.3
    a, c = F.normalize(adv, dim=1), F.normalize(clean, dim=1)
    terms = []
    for i in range(5):
        pos = torch.exp(a[i] @ a[(i + 1) % 5] / tau)
        neg = sum(torch.exp(a[i] @ c[k] / tau) for k in range(5))
        terms.append(-torch.log(pos / (pos + neg)))
    assert float(advencoder_nce(adv, clean, tau)) == pytest.approx(float(torch.stack(terms).mean()),
                                                                   rel=1e-5)


def test_nce_is_lower_when_adversarial_embeddings_leave_the_clean_ones():
    torch.manual_seed(2)
    clean = torch.randn(8, 16)
    near = clean + 0.01 * torch.randn(8, 16)
    away = -clean.mean(0, keepdim=True).expand(8, -1) + 0.01 * torch.randn(8, 16)
    assert float(advencoder_nce(away, clean, 0.2)) < float(advencoder_nce(near, clean, 0.2))


def test_hfc_matches_its_formula_and_ignores_low_frequencies():
    torch.manual_seed(3)
    x, xa = torch.rand(3, 3, 12, 12), torch.rand(3, 3, 12, 12)
    H = lambda t: t - gaussian_blur(t, 1.0)  # noqa: E731
    want = -(H(xa) - H(x)).flatten(1).norm(dim=1).mean()
    assert float(hfc_loss(xa, x)) == pytest.approx(float(want), rel=1e-6)
    # a constant shift has no high-frequency component; a checkerboard has a lot
    assert float(hfc_loss(x * 0 + 0.3, x * 0)) == pytest.approx(0.0, abs=1e-6)
    checker = (torch.arange(12).view(-1, 1) + torch.arange(12)).remainder(2).float() * 0.1
    assert float(hfc_loss(checker.expand(1, 3, 12, 12), torch.zeros(1, 3, 12, 12))) < -0.5
    # the blur keeps the mean of a constant image (the kernel sums to one)
    assert torch.allclose(gaussian_blur(torch.full((1, 2, 9, 9), 0.4)), torch.full((1, 2, 9, 9), 0.4))


def test_apply_delta_resizes_and_keeps_the_bound():
    d = torch.empty(3, 8, 8).uniform_(-0.05, 0.05)
    out = apply_delta(torch.full((2, 3, 32, 32), 0.5), d)
    assert out.shape == (2, 3, 32, 32)
    assert float((out - 0.5).abs().max()) <= float(d.abs().max()) + 1e-7
    grey = apply_delta(torch.full((2, 1, 8, 8), 0.5), d)
    assert grey.shape == (2, 1, 8, 8)
