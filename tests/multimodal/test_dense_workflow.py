"""``fmlab dense train|eval``: CLI smoke, config errors, exact resume, a user's npz pool, the picture."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.results import ResultsStore

ROOT = Path(__file__).resolve().parents[2]


def _shapes_pool(tmp_path: Path) -> Path:
    """A tiny npz pool of the example's shapes (4 classes kept): nothing here is a digit."""
    spec = importlib.util.spec_from_file_location("make_shapes_pool", ROOT / "examples" / "make_shapes_pool.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y = mod.make_shapes(120, seed=0)
    keep = y < 4
    x, y = x[keep], y[keep]
    half = len(y) // 2
    path = tmp_path / "pool.npz"
    np.savez(path, x_train=x[:half], y_train=y[:half], x_test=x[half:], y_test=y[half:],
             class_names=np.array(mod.CLASS_NAMES[:4]))
    return path


def _config(tmp_path: Path, source: str, **model) -> Path:
    cfg = {
        "model": {"backbone": "resnet_cifar", "depth": 8, "width": 4, "input_size": 32, "text": "tiny", "n_ctx": 2,
                  "embed_dim": 8, "heads": 2, "hidden": 8, **model},
        "data": {"source": source},
        "trainer": {"max_steps": 2, "batch_size": 4, "log_every": 1, "progress": False, "tensorboard": False},
        "schedule": {"name": "constant", "warmup_steps": 0},
    }
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def npz_source(tmp_path) -> str:
    pool = _shapes_pool(tmp_path)
    return f"canvas?objects=npz:{pool}&size=32&max_objects=2&n_train=16&n_test=6&seed=0"


@pytest.fixture
def mnist_source() -> str:
    if not os.environ.get("FMLAB_DATA"):
        pytest.skip("FMLAB_DATA is not set (MNIST canvases need the MNIST object pool)")
    return "canvas?objects=mnist&size=32&max_objects=2&n_train=16&n_test=6&seed=0"


def test_cli_smoke_train_eval_on_mnist_canvases(tmp_path, mnist_source, capsys):
    run, db, png = tmp_path / "run", tmp_path / "r.db", tmp_path / "grid.png"
    assert main(["dense", "train", "--config", str(_config(tmp_path, mnist_source)), "--out", str(run)]) == 0
    assert "to step 2" in capsys.readouterr().out
    assert (run / "dense_model.safetensors").is_file() and (run / "config.yaml").is_file()
    assert json.loads((run / "dense_model.json").read_text())["class_names"] == [str(i) for i in range(10)]
    assert main(["dense", "eval", "--model", str(run), "--db", str(db), "--picture", str(png)]) == 0
    out = capsys.readouterr().out
    for key in ("miou ", "miou_objects", "pixel_acc", "scoremap_miou", "n_images"):
        assert key in out
    rows = ResultsStore(db).query(task="dense_segmentation")
    assert {r["metric"] for r in rows} >= {"miou", "miou_objects", "pixel_acc"}
    assert {r["method"] for r in rows} == {"denseclip"}
    from PIL import Image

    img = Image.open(png)
    assert img.format == "PNG" and img.size[0] > img.size[1]  # 3 + 10 columns, 4 rows
    assert not list(tmp_path.glob(".grid.png.*"))  # atomic: no temporary left


def test_npz_pool_baseline_and_method(tmp_path, npz_source, capsys):
    base, meth = tmp_path / "base", tmp_path / "meth"
    assert main(["dense", "train", "--config", str(_config(tmp_path, npz_source, language=False)),
                 "--out", str(base), "--set", "data.limit=8", "--set", "trainer.batch_size=2",
                 "--set", "trainer.log_every=2", "--set", "trainer.max_steps=5"]) == 0
    from fmlab.engine.logger import read_metrics

    logged = [r for r in read_metrics(base) if "logs" in r]
    assert [r["step"] for r in logged][:2] == [2, 4]  # trainer.log_every=2
    assert logged[-1]["epoch"] >= 1  # 5 steps x 2 canvases > data.limit=8: a second epoch
    assert main(["dense", "train", "--config", str(_config(tmp_path, npz_source, context_prompting=False)),
                 "--out", str(meth)]) == 0
    names = json.loads((meth / "dense_model.json").read_text())["class_names"]
    pool = np.load(npz_source.split("npz:")[1].split("&")[0])
    assert names == [str(n) for n in pool["class_names"]] and len(names) == 4 and "0" not in names
    w = load_file(str(base / "dense_model.safetensors"))
    assert not any(k.startswith(("model.prompts", "model.decoder", "background")) for k in w)
    assert main(["dense", "eval", "--model", str(base), "--no-db"]) == 0
    assert "scoremap" not in capsys.readouterr().out  # the baseline has no score map
    assert main(["dense", "eval", "--model", str(meth), "--no-db", "--split", "test"]) == 0


def test_unknown_set_key_exits_2_naming_it(tmp_path, npz_source, capsys):
    cfg = _config(tmp_path, npz_source)
    assert main(["dense", "train", "--config", str(cfg), "--out", str(tmp_path / "r"),
                 "--set", "model.gamma_innit=1"]) == 2
    err = capsys.readouterr().err
    assert "model.gamma_innit" in err and "Traceback" not in err
    assert main(["dense", "train", "--config", str(cfg), "--out", str(tmp_path / "r"),
                 "--set", "loss.tau=0"]) == 2
    assert "loss.tau" in capsys.readouterr().err


def test_eval_refuses_a_pool_with_another_class_count(tmp_path, npz_source, mnist_source, capsys):
    run = tmp_path / "run"
    assert main(["dense", "train", "--config", str(_config(tmp_path, npz_source)), "--out", str(run)]) == 0
    assert main(["dense", "eval", "--model", str(run), "--data", mnist_source, "--no-db"]) == 2
    assert "10 classes" in capsys.readouterr().err


def test_resume_is_bit_identical(tmp_path, npz_source):
    cfg = _config(tmp_path, npz_source)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["dense", "train", "--config", str(cfg), "--out", str(straight), "--set", "trainer.max_steps=4"]) == 0
    assert main(["dense", "train", "--config", str(cfg), "--out", str(split), "--set", "trainer.max_steps=2"]) == 0
    assert main(["dense", "train", "--out", str(split), "--resume", "--set", "trainer.max_steps=4"]) == 0
    a = load_file(str(straight / "dense_model.safetensors"))
    b = load_file(str(split / "dense_model.safetensors"))
    assert a.keys() == b.keys() and "model.decoder.gamma" in a
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_built_model_score_map_is_hwk_per_image_and_gamma_starts_at_1e4(npz_source):
    from fmlab.experiments.dense import build_objective, load_dense_config, open_split
    from fmlab.multimodal.dense_objective import canvas_batch

    cfg = load_dense_config(None, ["model.text=tiny", "model.backbone=resnet_cifar", "model.depth=8", "model.width=4",
                                   "model.input_size=64", "model.embed_dim=8", "model.heads=2", "model.hidden=8"])
    source, sp = open_split(npz_source, "test")
    obj = build_objective(cfg, list(source.class_names))
    assert obj.model.decoder.gamma.item() == pytest.approx(1e-4)
    batch = canvas_batch(sp.render(np.arange(3)))
    _, s = obj.model(batch["images"])
    per_image = s.permute(0, 2, 3, 1)  # (B, K, H, W) -> the (H, W, K) per image
    assert per_image.shape == (3, 16, 16, 4)  # 64 px input, ResNet stride 4 -> 16x16 map; K = 4 shapes
    assert float(s.detach().abs().max()) <= 1.0 + 1e-5  # cosines


def test_tower_prompts_keep_the_frozen_tower_out_of_the_state(tiny_text_tower_factory):
    from fmlab.multimodal.dense_text import TowerPrompts

    tower = tiny_text_tower_factory(0)
    p = TowerPrompts(tower, ["circle", "square", "cross"], width=8, n_ctx=4, seed=0)
    assert sorted(p.state_dict()) == ["ctx", "proj.bias", "proj.weight"]
    t = p()
    assert t.shape == (3, 8)
    # centred tower outputs (MiniLM is anisotropic): the class mean of t is the projection's bias
    torch.testing.assert_close(t.mean(0), p.proj.bias, atol=1e-5, rtol=1e-5)
    t.sum().backward()
    assert p.ctx.grad is not None and p.ctx.grad.abs().sum() > 0  # context learns through the tower
    assert all(q.grad is None for q in tower.parameters())
