"""GenDA: the style generator, the attribute adaptor, the trainable split, the metrics, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.gan.genda import (
    AttributeClassifier,
    bold,
    domain_map,
    invert,
    likeness_diversity,
    mean_w,
    set_trainable,
    to_genda,
)
from fmlab.gan.nets import create_discriminator, create_generator
from fmlab.gan.unlearn.train import StageConfig, train_stage

KW = {"z_dim": 8, "w_dim": 8, "ch": 4, "channels": 1, "img_size": 16, "mapping_layers": 2}


def _source(seed: int = 0):
    torch.manual_seed(seed)
    G = create_generator("style", **KW)
    with torch.no_grad():  # a non-zero running mean, as after training
        G.w_avg.normal_()
    return G.eval()


def test_adaptor_at_init_reproduces_source_exactly():
    G = _source()
    A = to_genda(G, KW, train_psi=0.7, n_w_avg=64)
    z = G.sample_z(16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(A(z), G(z))                       # eval: psi = 1, a = 1, b = 0
        w = A.truncate(G.map(z), 0.5)
        assert torch.equal(A(z, psi=0.5), G.synthesis(G.styles(w), w))
    assert A.num_layers == G.num_layers == 3                 # 4x4, 8x8, 16x16
    assert A.adaptor_a.shape == A.adaptor_b.shape == (3, 8)


def test_adaptor_is_the_per_layer_affine_of_w():
    A = to_genda(_source(), KW, n_w_avg=64)
    with torch.no_grad():
        A.adaptor_a.normal_()
        A.adaptor_b.normal_()
    w = torch.randn(3, 8)
    ws = A.styles(w)
    for layer in range(A.num_layers):
        torch.testing.assert_close(ws[:, layer], A.adaptor_a[layer] * w + A.adaptor_b[layer])


def test_truncation_and_w_avg():
    G = _source()
    A = to_genda(G, KW, n_w_avg=200, seed=3)
    torch.testing.assert_close(A.w_avg, mean_w(G, 200, seed=3))
    z = G.sample_z(6)
    with torch.no_grad():  # psi = 0: every latent becomes w_avg, so every image is the same
        x = A(z, psi=0.0)
    assert torch.allclose(x, x[:1].expand_as(x))
    A.train()  # training mode uses train_psi, eval mode psi = 1
    with torch.no_grad():
        torch.testing.assert_close(A(z), A(z, psi=0.7))
    w_before = A.w_avg.clone()
    A(z)
    assert torch.equal(A.w_avg, w_before)  # frozen in the adapted generator (w_avg_beta = 1)
    G.train()
    G(z)
    assert not torch.equal(G.w_avg, w_before)  # tracked while the source trains


def test_to_genda_refuses_a_generator_without_mapping():
    with pytest.raises(ConfigError, match="style"):
        to_genda(create_generator("dcgan", z_dim=8, ch=4, channels=1, img_size=16), {})


def _nets(method: str):
    A = to_genda(_source(), KW, n_w_avg=64)
    D = AttributeClassifier(create_discriminator("dcgan", ch=4, channels=1, img_size=16))
    return A, D, set_trainable(A, D, method)


def test_adaptor_training_moves_only_the_adaptor_and_the_head():
    A, D, counts = _nets("adaptor")
    assert counts["g"] == 2 * A.num_layers * A.w_dim
    assert counts["d"] == D.feature_dim + 1
    g0 = {k: v.clone() for k, v in A.state_dict().items()}
    d0 = {k: v.clone() for k, v in D.state_dict().items()}
    cfg = StageConfig(steps=3, batch_size=4, lr_g=1e-2, lr_d=1e-2, ema_decay=0.0,
                      diffaug="translation,cutout")
    train_stage(A, D, torch.rand(1, 1, 16, 16) * 2 - 1, cfg, seed=0)
    for k, v in A.state_dict().items():
        assert torch.equal(v, g0[k]) == (k not in ("adaptor_a", "adaptor_b")), k
    for k, v in D.state_dict().items():
        assert torch.equal(v, d0[k]) == (not k.startswith("psi.")), k


def test_full_fine_tuning_trains_every_weight_but_the_adaptor():
    A, D, counts = _nets("full")
    n_g = sum(p.numel() for p in A.parameters())
    assert counts["g"] == n_g - 2 * A.num_layers * A.w_dim
    assert counts["d"] == sum(p.numel() for p in D.parameters())
    with pytest.raises(ConfigError, match="method"):
        set_trainable(A, D, "lora")


def test_likeness_diversity_formulas():
    rng = np.random.default_rng(0)
    f, t = rng.normal(size=(7, 5)), rng.normal(size=5)
    got = likeness_diversity(f, t)
    pair = [np.linalg.norm(f[i] - f[j]) for i in range(7) for j in range(7) if i < j]
    assert got["likeness"] == pytest.approx(np.linalg.norm(f - t, axis=1).mean())
    assert got["diversity"] == pytest.approx(np.mean(pair))
    copies = likeness_diversity(np.repeat(t[None], 4, 0), t)  # collapse onto the target
    assert copies == {"likeness": 0.0, "diversity": 0.0}
    with pytest.raises(DataError):
        likeness_diversity(f[:1], t)


def test_domain_maps():
    x = np.random.default_rng(0).integers(0, 256, (3, 9, 9), dtype=np.uint8)
    assert np.array_equal(invert(invert(x)), x)
    b = bold(x)
    assert b.dtype == np.uint8 and (b >= x).all()
    assert b[0, 4, 4] == x[0, 3:6, 3:6].max()
    assert domain_map("none") is None
    with pytest.raises(ConfigError, match="invert"):
        domain_map("rotate")


def test_stage_config_checks_the_augment_policy():
    with pytest.raises(ConfigError):
        StageConfig(diffaug="flip")


@pytest.mark.parametrize("content", [None, b"not an image"])
def test_cli_bad_target_exits_2_naming_it(tmp_path, capsys, content):
    from fmlab.cli.main import main

    target = tmp_path / "target.png"
    if content is not None:
        target.write_bytes(content)
    out = tmp_path / "out"
    rc = main(["gan", "adapt", "--generator", str(tmp_path), "--target", str(target),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and str(target) in err and "Traceback" not in err
    assert not out.exists()


def test_style_config_builds_the_nets():
    from fmlab.experiments.gan_config import load_gan_config
    from fmlab.experiments.gan_io import build_nets

    cfg = load_gan_config("configs/gan/mnist_style.yaml", ["model.ch=4"])
    G, D, g_spec, _ = build_nets(cfg, 0)
    assert g_spec["arch"] == "style" and g_spec["kwargs"]["w_dim"] == 64
    x = G(G.sample_z(2))
    assert x.shape == (2, 1, 32, 32) and D(x).logits.shape == (2,)


def test_shipped_genda_config_loads_with_flags_and_overrides():
    from fmlab.experiments.genda import GenDAConfig
    from fmlab.experiments.unlearn_config import load_dataclass_config

    cfg = load_dataclass_config(GenDAConfig, "configs/gan/genda_mnist.yaml", ["stage.steps=7"],
                                {"generator": "G", "target": "t.png", "out": "o",
                                 "method": "full"})
    assert (cfg.method, cfg.stage.steps, cfg.stage.diffaug, cfg.train_psi) == (
        "full", 7, "translation,cutout", 0.7)
    with pytest.raises(ConfigError, match="lr_adaptr"):
        load_dataclass_config(GenDAConfig, None, ["lr_adaptr=1"],
                              {"generator": "G", "target": "t", "out": "o"})
