"""The translator API: train a tiny run, export, load_translator, translate_images, apply, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.experiments.translate import load_translate_config, train_translator
from fmlab.translate import load_translator, translate_images
from fmlab.translate.data import UnpairedSource
from fmlab.translate.objective import CycleGANObjective, TranslateLossConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _npz(path, n, size, channels, seed):
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    np.savez(path, x=x, y=rng.integers(0, 10, n), boxes=rng.random((n, 1, 4)).astype(np.float32))
    return path


def _tiny(tmp_path, channels=1, size=16, steps=3):
    a = _npz(tmp_path / "a.npz", 12, size, channels, 0)
    b = _npz(tmp_path / "b.npz", 10, size, channels, 1)
    over = [f"data.a={a}", f"data.b={b}", f"data.channels={channels}", f"data.img_size={size}",
            "model.ngf=4", "model.ndf=4", "model.n_blocks=1", f"trainer.max_steps={steps}",
            "trainer.batch_size=4", "trainer.log_every=1", "trainer.progress=false",
            "trainer.tensorboard=false", "trainer.device=cpu", "loss.lambda_edge=1.0"]
    return load_translate_config("configs/translate/fontdigits_to_mnist.yaml", over)


@pytest.mark.parametrize("channels", [1, 3])
def test_train_load_translate_roundtrip(tmp_path, channels):
    cfg = _tiny(tmp_path, channels)
    res = train_translator(cfg, tmp_path / "run")
    assert res.step == 3 and set(res.last_logs) >= {"cycle", "identity", "edge", "d_loss"}
    g = load_translator(tmp_path / "run")
    assert not g.training and g.img_size == 16
    x = torch.rand(5, channels, 28, 28)  # another size: resized to 16 and back
    y = translate_images(g, x, batch_size=2)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # batching does not change the result (eval mode, instance norm is per image)
    assert torch.allclose(y, translate_images(g, x, batch_size=5), atol=1e-6)
    info = json.loads((tmp_path / "run" / "translator.json").read_text())
    assert info["kwargs"]["in_channels"] == channels and (tmp_path / "run" / "samples.png").is_file()


def test_resume_equals_straight_run(tmp_path):
    cfg = _tiny(tmp_path, steps=4)
    train_translator(cfg, tmp_path / "full")
    cfg2 = _tiny(tmp_path, steps=2)
    train_translator(cfg2, tmp_path / "half")
    cfg3 = _tiny(tmp_path, steps=4)
    train_translator(cfg3, tmp_path / "half", resume=True)
    x = torch.rand(2, 1, 16, 16)
    y1 = translate_images(load_translator(tmp_path / "full"), x)
    y2 = translate_images(load_translator(tmp_path / "half"), x)
    assert torch.equal(y1, y2)


def test_unpaired_source_is_deterministic_and_unpaired():
    a = np.arange(20 * 4 * 4, dtype=np.uint8).reshape(20, 4, 4)
    src = UnpairedSource(a, a[::-1].copy(), 1, 4)
    b1 = src.get_batch(np.array([0, 1, 2]))
    assert torch.equal(b1["b"], src.get_batch(np.array([0, 1, 2]))["b"])
    assert b1["a"].shape == (3, 1, 4, 4) and float(b1["a"].abs().max()) <= 1.0


def test_identity_generators_give_zero_cycle_and_identity_terms():
    from torch import nn

    from fmlab.translate import PatchDiscriminator

    obj = CycleGANObjective(nn.Identity(), nn.Identity(), PatchDiscriminator(1, 4),
                            PatchDiscriminator(1, 4), TranslateLossConfig(lambda_edge=1.0))
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    _, logs, _, _ = obj.generator_loss(a, b)
    assert logs["cycle"] == 0.0 and logs["identity"] == 0.0 and logs["edge"] == pytest.approx(0, abs=1e-6)


def test_cli_train_apply_keeps_other_arrays(tmp_path, capsys):
    a = _npz(tmp_path / "a.npz", 8, 16, 1, 0)
    b = _npz(tmp_path / "b.npz", 8, 16, 1, 1)
    sets = [f"data.a={a}", f"data.b={b}", "data.img_size=16", "model.ngf=4", "model.ndf=4",
            "model.n_blocks=1", "trainer.max_steps=2", "trainer.batch_size=4"]
    args = ["translate", "train", "--config", "configs/translate/fontdigits_to_mnist.yaml",
            "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    assert main(["translate", "apply", "--model", str(tmp_path / "run"), "--input", str(a),
                 "--out", str(tmp_path / "out.npz")]) == 0
    with np.load(a) as zi, np.load(tmp_path / "out.npz") as zo:
        assert zo["x"].shape == zi["x"].shape and zo["x"].dtype == np.uint8
        assert np.array_equal(zo["y"], zi["y"]) and np.array_equal(zo["boxes"], zi["boxes"])


def test_cli_refuses_bad_input_by_name(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4), np.uint8))
    assert main(["translate", "apply", "--model", str(tmp_path), "--input",
                 str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "'x'" in err and "Traceback" not in err
    assert main(["translate", "train", "--config", "configs/translate/fontdigits_to_mnist.yaml",
                 "--out", str(tmp_path / "r"), "--set", "loss.edge=canny"]) == 2
    assert "loss.edge" in capsys.readouterr().err
