"""``fmlab region pretrain|eval``: CLI smoke, config errors, exact resume, any object pool, novel classes
never used as detection labels."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.experiments.region import RegionBatcher, RegionConfig, resolve_novel
from fmlab.multimodal.region_eval import canvas_vocab
from fmlab.results import ResultsStore

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "region" / "canvas_region.yaml"
TINY = ["trainer.max_steps=2", "trainer.batch_size=8", "trainer.log_every=1", "trainer.progress=false",
        "trainer.tensorboard=false", "model.channels=4", "model.width=16", "model.text_dim=8",
        "objective.num_boxes=4", "eval.num_random=4", "data.val=4", "schedule.warmup_steps=0"]


@pytest.fixture(scope="module")
def shapes_pool(tmp_path_factory) -> Path:
    """A tiny npz pool of the example's shapes (no digits, no /work/pools)."""
    spec = importlib.util.spec_from_file_location("make_shapes_pool", ROOT / "examples" / "make_shapes_pool.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x_tr, y_tr = mod.make_shapes(60, seed=0)
    x_te, y_te = mod.make_shapes(30, seed=1)
    path = tmp_path_factory.mktemp("pool") / "shapes.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, class_names=np.array(mod.CLASS_NAMES))
    return path


def _source(pool: Path, n_train: int = 40) -> str:
    return f"data.source=canvas?objects=npz:{pool}&size=32&max_objects=3&n_train={n_train}&n_test=12&seed=1"


def _pretrain(out, *sets, config=CONFIG, resume=False) -> int:
    args = ["region", "pretrain", "--out", str(out)] + (["--resume"] if resume else ["--config", str(config)])
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_cli_smoke_on_an_npz_pool_pretrain_eval_db_picture(tmp_path, shapes_pool, capsys):
    run, db, png = tmp_path / "run", tmp_path / "r.db", tmp_path / "top.png"
    assert _pretrain(run, *TINY, _source(shapes_pool), "data.novel=2") == 0
    assert "to step 2" in capsys.readouterr().out
    meta = json.loads((run / "region_model.json").read_text())
    assert len(meta["novel"]) == 2 and sorted(meta["base"] + meta["novel"]) == list(range(10))
    assert main(["region", "eval", "--model", str(run), "--db", str(db), "--picture", str(png)]) == 0
    out = capsys.readouterr().out
    assert "ap_novel" in out and "ap_base" in out and png.is_file()
    rows = ResultsStore(db).query(task="region_retrieval")
    assert {r["metric"] for r in rows} == {"ap_base", "ap_novel", "ap_all"}
    assert all(0.0 <= r["value"] <= 1.0 and r["method"] == "region_text" for r in rows)
    assert main(["region", "eval", "--model", str(run), "--split", "val", "--no-db"]) == 0


def test_image_level_baseline_config_runs(tmp_path, shapes_pool):
    run = tmp_path / "img"
    assert _pretrain(run, *TINY, _source(shapes_pool), config=CONFIG.with_name("canvas_image.yaml")) == 0
    assert main(["region", "eval", "--model", str(run), "--no-db"]) == 0


@pytest.mark.parametrize("bad,named", [("objective.num_boxs=3", "objective.num_boxs"),
                                       ("data.source=video?objects=mnist", "data.source"),
                                       ("data.novel_classes=[blob]", "data.novel_classes")])
def test_bad_config_exits_2_naming_the_key(tmp_path, shapes_pool, capsys, bad, named):
    src = _source(shapes_pool) if "source" not in bad else bad
    assert _pretrain(tmp_path / "r", *TINY, src, bad) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_resume_is_bit_identical(tmp_path, shapes_pool):
    sets = [*TINY, _source(shapes_pool), "schedule.name=constant", "objective.box_weight=0.5"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _pretrain(straight, *sets, "trainer.max_steps=4") == 0
    assert _pretrain(split, *sets, "trainer.max_steps=2") == 0
    assert main(["region", "pretrain", "--out", str(split), "--resume", "--set", "trainer.max_steps=4"]) == 0
    a, b = load_file(str(straight / "region_model.safetensors")), load_file(str(split / "region_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in (straight, split)]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4]  # continued from step 2, not restarted
    assert [r["logs"] for r in logs[0]] == [r["logs"] for r in logs[1]]


def test_novel_classes_never_reach_the_objective_as_detection_labels(shapes_pool):
    from fmlab.data import open_source

    names = [f"c{i}" for i in range(10)]
    cfg = RegionConfig()
    cfg.data.novel, cfg.data.novel_seed = 4, 3
    base, novel = resolve_novel(cfg.data, names)
    assert not set(base) & set(novel) and len(novel) == 4
    split = open_source(_source(shapes_pool, 400).split("=", 1)[1]).split("train")
    rendered = split.render(np.arange(400))
    batch = RegionBatcher(canvas_vocab(split.class_names), base)(rendered)
    labels = np.asarray(rendered["labels"])
    assert np.isin(labels, novel).any()  # the canvases do show novel objects ...
    got = batch["box_labels"].numpy()
    assert (got[np.isin(labels, novel)] == -1).all()  # ... but never with a box label
    assert (batch["boxes"].numpy()[np.isin(labels, novel)] == -1).all()  # nor with their box
    kept = got >= 0
    assert np.array_equal(np.asarray(base)[got[kept]], labels[kept])  # base labels map back exactly
    assert set(np.unique(got[kept]).tolist()) <= set(range(len(base)))


def test_box_supervised_objective_has_prompts_of_base_classes_only(tmp_path, shapes_pool):
    run = tmp_path / "box"
    assert _pretrain(run, *TINY, _source(shapes_pool), "objective.box_weight=1.0", "data.novel=3") == 0
    from fmlab.experiments.region import load_region_model

    cfg, obj, meta = load_region_model(run)
    assert obj.class_tokens.shape[0] == len(meta["base"]) == 7
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_box" in r.get("logs", {}) for r in logs)


def test_attributes_off_drops_colour_and_size_words():
    from fmlab.experiments.region import attribute_words

    vocab = canvas_vocab(["3", "7"])
    rendered = {"images": np.zeros((1, 8, 8, 3), np.uint8), "captions": ["a small red 3 left of a large blue 7"],
                "boxes": np.zeros((1, 2, 4), np.float32), "labels": np.array([[3, 7]])}
    tokens = RegionBatcher(vocab, [3, 7], attribute_words())(rendered)["tokens"][0]
    inv = {v: k for k, v in vocab.items()}
    assert [inv[int(t)] for t in tokens if t > 0] == ["a", "3", "left", "of", "a", "7"]


@pytest.mark.skipif(not (Path(__import__("os").environ.get("FMLAB_DATA", "/nonexistent")) / "mnist").exists(),
                    reason="FMLAB_DATA with mnist not set")
def test_mnist_canvas_smoke(tmp_path):
    run = tmp_path / "mnist"
    src = "data.source=canvas?objects=mnist&size=32&max_objects=3&n_train=40&n_test=8&seed=0"
    assert _pretrain(run, *TINY, src) == 0
    assert main(["region", "eval", "--model", str(run), "--no-db"]) == 0
