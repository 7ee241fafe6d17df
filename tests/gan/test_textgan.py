"""Caption-conditioned GAN maths (issue 23): SupCon on D features, the no-mismatch baseline,
MA-GP, the ridge alignment, the VAE tower, and caption consistency on real digits."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmlab.gan import create_discriminator, create_generator
from fmlab.gan.caption_cond import CaptionDiscriminator, CaptionGenerator
from fmlab.gan.galip import fit_ridge_map, ma_gradient_penalty
from fmlab.gan.matching import mismatched_indices
from fmlab.gan.step import GANStepConfig
from fmlab.gan.text_objective import TextGANObjective, supcon_features_loss


def _supcon_direct(z: torch.Tensor, y: torch.Tensor, tau: float) -> float:
    """Khosla et al.'s L^sup_out, written out with loops over anchors and positives."""
    z = F.normalize(z.double(), dim=1)
    n, total, anchors = len(z), 0.0, 0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        pos = [p for p in others if y[p] == y[i]]
        if not pos:
            continue
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_on_real_and_fake_features_equals_the_direct_formula(tau):
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 3])  # class 3 has one caption: its real+fake are each other's positive
    got = float(supcon_features_loss(real, fake, y, tau))
    want = _supcon_direct(torch.cat([real, fake]), torch.cat([y, y]), tau)
    assert got == pytest.approx(want, rel=1e-5)


def _objective(mismatch: bool, seed: int = 0, **cfg) -> TextGANObjective:
    torch.manual_seed(seed)
    e_dim, c_dim = 6, 3
    G = CaptionGenerator(create_generator("mlp", z_dim=4 + c_dim, hidden=8, img_shape=(1, 4, 4)),
                         e_dim, c_dim)
    D = CaptionDiscriminator(create_discriminator("mlp", hidden=8, img_shape=(1, 4, 4)), e_dim,
                             c_dim)
    return TextGANObjective(G, D, GANStepConfig(loss="vanilla", mismatch=mismatch, **cfg))


def _d_loss(obj: TextGANObjective, labels: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    """One D update's loss and D's gradients (SGD lr 0: the weights do not move)."""
    g = torch.Generator().manual_seed(3)
    x, e = torch.rand(8, 1, 4, 4, generator=g) * 2 - 1, torch.randn(8, 6, generator=g)
    opt = torch.optim.SGD(obj.D.parameters(), lr=0.0)
    logs = obj.d_update(x, e, labels, opt, torch.Generator().manual_seed(5), step=0)
    return logs["d_loss"], [p.grad.clone() for p in obj.D.parameters()]


def test_without_mismatch_the_wrong_caption_term_is_gone():
    y1 = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    y2 = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # other classes → other mismatched captions
    # mismatch off: which captions would be "wrong" cannot matter (the term is not there) ...
    off1, g_off1 = _d_loss(_objective(False), y1)
    off2, g_off2 = _d_loss(_objective(False), y2)
    assert off1 == off2 and all(torch.equal(a, b) for a, b in zip(g_off1, g_off2))
    # ... and the loss is exactly the plain conditional GAN's: softplus(−s(x,e)) + softplus(s(G,e));
    # with mismatch on it is GAN-CLS's, with ½[softplus(s(x,ê)) + softplus(s(G,e))]
    on1, _ = _d_loss(_objective(True), y1)
    for mismatch, got in ((False, off1), (True, on1)):
        obj = _objective(mismatch)
        g = torch.Generator().manual_seed(3)
        x, e = torch.rand(8, 1, 4, 4, generator=g) * 2 - 1, torch.randn(8, 6, generator=g)
        gen = torch.Generator().manual_seed(5)  # the draws in d_update's order: z, then ê
        with torch.no_grad():
            fake = obj.G(obj.G.sample_z(8, gen), e)
            real_t, fake_t = F.softplus(-obj.score(x, e)[0]).mean(), F.softplus(obj.score(fake, e)[0]).mean()
            if mismatch:
                wrong = e[mismatched_indices(y1, gen)]
                want = real_t + 0.5 * (F.softplus(obj.score(x, wrong)[0]).mean() + fake_t)
            else:
                want = real_t + fake_t
        assert got == pytest.approx(float(want), rel=1e-6), mismatch
    assert on1 != off1


def test_ma_gp_of_a_linear_discriminator_is_its_weight_norm_to_the_p():
    w, u = torch.randn(1, 1, 3, 3), torch.randn(5)

    def D(x, e):  # s(x, e) = <w, x> + <u, e>: the same gradient (w, u) for every pair
        return (x * w).flatten(1).sum(1) + e @ u

    norm = math.sqrt(float(w.pow(2).sum() + u.pow(2).sum()))
    got = ma_gradient_penalty(D, torch.randn(4, 1, 3, 3), torch.randn(4, 5), p=6.0)
    assert float(got) == pytest.approx(norm ** 6, rel=1e-5)


def test_ridge_map_recovers_a_linear_map_and_is_frozen():
    g = torch.Generator().manual_seed(0)
    f, w, b = torch.randn(200, 7, generator=g), torch.randn(7, 3, generator=g), torch.randn(3)
    lin = fit_ridge_map(f, f @ w + b, ridge=1e-6)
    assert torch.allclose(lin.weight.T, w, atol=1e-4) and torch.allclose(lin.bias, b, atol=1e-4)
    assert not any(p.requires_grad for p in lin.parameters())


needs_data = pytest.mark.skipif(not os.environ.get("FMLAB_DATA"), reason="FMLAB_DATA is not set")


@needs_data
def test_galip_tower_is_pretrained_and_frozen_scratch_is_neither():
    from fmlab.engine.config import OptimConfig
    from fmlab.engine.optim import build_optimizer

    torch.manual_seed(0)
    frozen = create_discriminator("vae_tower", hidden=16, img_size=32)
    scratch = create_discriminator("vae_tower", hidden=16, img_size=32, pretrained=False,
                                   freeze=False)
    assert sum(p.numel() for p in frozen.parameters()) == sum(p.numel() for p in scratch.parameters())
    n_opt = sum(p.numel() for grp in build_optimizer(frozen, OptimConfig()).param_groups
                for p in grp["params"])
    assert n_opt == sum(p.numel() for p in frozen.mate.parameters()) + sum(
        p.numel() for p in frozen.psi.parameters())
    assert not torch.equal(frozen.tower.fc1.weight, scratch.tower.fc1.weight)
    # the pre-trained encoder separates digits: a real "1" and "0" land far apart in μ
    x = torch.full((2, 1, 32, 32), -1.0)
    x[0, :, 4:28, 15:17] = 1.0                    # a vertical bar
    x[1, :, 6:26, 8:24] = 1.0
    x[1, :, 10:22, 12:20] = -1.0                  # a ring
    mu = frozen.tower(x)[1]
    assert float((mu[0] - mu[1]).norm()) > 1.0


@needs_data
def test_real_test_digits_agree_with_their_own_captions():
    from fmlab.data import open_source
    from fmlab.experiments.textgan_data import CaptionSet, fit_binner
    from fmlab.experiments.textgan_eval import consistency

    split = open_source("mnist").split("train")
    images = np.asarray(split.get_batch(np.arange(300)))
    labels = np.asarray(split.labels)[:300].astype(np.int64)
    binner = fit_binner(images)
    from fmlab.data.attributes import digit_attributes

    bins = binner.bins({k: v for k, v in digit_attributes(images).items() if k in binner.edges})
    caps = CaptionSet(["x"] * 300, labels, bins, np.zeros((300, 2), np.float32))
    probs = np.eye(10)[labels]
    out = consistency(images, caps, binner, probs)
    assert out == {"class_acc": 1.0, "thickness_agree": 1.0, "slant_agree": 1.0}
    wrong = consistency(images, caps, binner, np.roll(probs, 1, axis=1))
    assert wrong["class_acc"] == 0.0
