"""gan_step end to end: a tiny DCGAN learns a 2-mode toy set; every term composes; errors; grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fmlab.errors import ConfigError, FmlabError
from fmlab.gan import (
    EMA,
    GANState,
    GANStepConfig,
    create_discriminator,
    create_generator,
    d_step,
    g_step,
    gan_step,
    sample_grid,
)


def _modes() -> torch.Tensor:
    m = torch.full((2, 1, 16, 16), -0.8)
    m[0, :, :, :8] = 0.8  # bright left half
    m[1, :, :, 8:] = 0.8  # bright right half
    return m


def _two_mode_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=g)
    return _modes()[y] + 0.05 * torch.randn(n, 1, 16, 16, generator=g), y


def _dist_to_modes(x: torch.Tensor) -> float:
    """Mean over samples of the per-pixel MSE to the nearest mode."""
    d = ((x[:, None] - _modes()[None]) ** 2).flatten(2).mean(2)
    return float(d.min(1).values.mean())


def _pair(num_classes: int = 0, cond: str | None = None):
    G = create_generator("dcgan", ch=8, channels=1, img_size=16, z_dim=8, num_classes=num_classes)
    D = create_discriminator("dcgan", ch=8, channels=1, img_size=16, num_classes=num_classes,
                             cond=cond)
    opt_g = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 1e-3, betas=(0.5, 0.999))
    return G, D, opt_g, opt_d


def test_hundred_steps_on_two_modes():
    torch.manual_seed(0)
    G, D, opt_g, opt_d = _pair()
    g = torch.Generator().manual_seed(0)
    cfg = GANStepConfig(loss="hinge", diffaug="translation,cutout", r1_lambda=1.0)
    state = GANState(ema=EMA(G, decay=0.9))
    z_eval = G.sample_z(256, torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = _dist_to_modes(G(z_eval))
    d_losses = []
    for _ in range(100):
        x, _ = _two_mode_batch(32, g)
        logs = gan_step(G, D, opt_g, opt_d, x, None, cfg, g, state)
        assert all(math.isfinite(v) for v in logs.values()), logs
        d_losses.append(logs["d_loss"])
    assert state.step == 100 and int(state.ema.num_updates) == 100
    assert {"d_adv", "d_r1", "g_adv", "logits_real", "logits_fake"} <= set(logs)
    assert max(d_losses) - min(d_losses) > 0.5
    assert min(d_losses) < d_losses[0] - 0.3  # D did learn to separate at some point
    with torch.no_grad():
        after = _dist_to_modes(G(z_eval))
    assert before > 0.5 and after < 0.75 * before, (before, after)  # samples moved to the data
    # the EMA copy is a different, still sensible generator
    assert not torch.equal(state.ema.module.fc.weight, G.fc.weight)


@pytest.mark.parametrize("cond", ["proj", "ac", "acmod", "adc"])
def test_every_term_composes_for_conditional_d(cond):
    G, D, opt_g, opt_d = _pair(num_classes=2, cond=cond)
    g = torch.Generator().manual_seed(0)
    cfg = GANStepConfig(loss="wgan_gp", r1_lambda=0.5, cr_lambda=10, bcr_fake_lambda=10,
                        lecam_lambda=0.3, lecam_start=1, adaptivemix=True,
                        diffaug="color,translation,cutout")
    assert cfg.gp_lambda == 10.0
    state = GANState()
    for _ in range(2):
        x, y = _two_mode_batch(8, g)
        logs = gan_step(G, D, opt_g, opt_d, x, y, cfg, g, state)
    expected = {"d_gp", "d_r1", "d_cr", "d_bcr_fake", "d_lecam", "d_adaptivemix", "g_adaptivemix"}
    if cond != "proj":
        expected |= {"d_cond", "g_cond"}
    assert expected <= set(logs), set(logs)
    assert all(math.isfinite(v) for v in logs.values())


def test_d_step_leaves_g_alone_and_g_step_leaves_d_alone():
    G, D, opt_g, opt_d = _pair()
    cfg = GANStepConfig(loss="vanilla")
    g_before = {k: v.clone() for k, v in G.state_dict().items() if "running" not in k}
    d_before = {k: v.clone() for k, v in D.named_parameters()}
    x, _ = _two_mode_batch(8, torch.Generator().manual_seed(0))
    d_step(G, D, opt_d, x, None, cfg, torch.Generator().manual_seed(1))
    assert all(torch.equal(G.state_dict()[k], v) for k, v in g_before.items()
               if "num_batches" not in k)
    d_mid = {k: v.clone() for k, v in D.named_parameters()}
    assert any(not torch.equal(d_before[k], d_mid[k]) for k in d_mid)
    g_step(G, D, opt_g, 8, cfg, torch.Generator().manual_seed(2))
    assert all(torch.equal(d_mid[k], v) for k, v in D.named_parameters())
    assert all(p.requires_grad for p in D.parameters())  # restored after freezing


def test_same_seed_same_logs():
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        G, D, opt_g, opt_d = _pair(num_classes=2, cond="adc")
        g = torch.Generator().manual_seed(5)
        cfg = GANStepConfig(adaptivemix=True, diffaug="color,cutout")
        x, y = _two_mode_batch(8, torch.Generator().manual_seed(0))
        runs.append([gan_step(G, D, opt_g, opt_d, x, y, cfg, g) for _ in range(2)])
    assert runs[0] == runs[1]


def test_config_and_label_errors():
    with pytest.raises(FmlabError, match="unknown GAN loss 'wgangp'"):
        GANStepConfig(loss="wgangp")
    with pytest.raises(ConfigError, match="r1_lambda must be >= 0"):
        GANStepConfig(r1_lambda=-1)
    with pytest.raises(ConfigError, match="unknown DiffAugment op 'flip'"):
        GANStepConfig(diffaug="flip")
    with pytest.raises(ConfigError, match="unknown gan step config key 'lr'"):
        GANStepConfig.from_dict({"loss": "hinge", "lr": 1e-3})
    assert GANStepConfig.from_dict({"loss": "ls"}).gp_lambda == 0.0
    G, D, opt_g, opt_d = _pair(num_classes=2, cond="adc")
    x, _ = _two_mode_batch(4, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="needs real_labels"):
        gan_step(G, D, opt_g, opt_d, x, None, GANStepConfig())
    G0 = create_generator("dcgan", ch=8, channels=1, img_size=16, z_dim=8)
    with pytest.raises(ConfigError, match="conditions on 2 classes but the generator on 0"):
        gan_step(G0, D, opt_g, opt_d, x, torch.tensor([0, 1, 0, 1]), GANStepConfig())


def test_sample_grid_png(tmp_path):
    G = create_generator("dcgan", ch=4, channels=3, num_classes=3, z_dim=8)
    G.train()
    path = tmp_path / "sub" / "grid.png"
    grid = sample_grid(G, 7, path, seed=4)
    assert G.training  # mode restored
    img = np.asarray(Image.open(path))
    # 3 columns (one per class), ceil(7/3) = 3 rows of 32 px with 2 px padding
    assert img.shape == (3 * 34 + 2, 3 * 34 + 2, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, grid)
    # pixels are (x + 1)·127.5 of the eval-mode samples drawn from the seed
    G.eval()
    with torch.no_grad():
        x = G(G.sample_z(7, torch.Generator().manual_seed(4)), torch.arange(7) % 3)
    ref = ((x[4] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(img[2 + 34:2 + 34 + 32, 2 + 34:2 + 34 + 32], ref)
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic: no temporary left behind
    mono = sample_grid(create_generator("mlp", hidden=8), 4, tmp_path / "m.png", nrow=4)
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == mono.shape[:2] == (32, 122)
