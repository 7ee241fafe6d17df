"""Every objective trains under the engine's Trainer, and resuming replays the same run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import create_objective

from .conftest import TinyCNN, clustered_images

engine = pytest.importorskip("fmlab.engine")


def _vit(pos_embed: bool = True) -> VisionTransformer:
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                             pos_embed=pos_embed)


def _setup(name: str):
    torch.manual_seed(0)
    if name == "simclr":
        obj = create_objective(name, encoder=TinyCNN(), proj_hidden_dim=32, proj_dim=16)
        tf = obj.default_transform(16)
    elif name == "moco":
        obj = create_objective(name, encoder=TinyCNN(), queue_size=32, momentum_schedule="cosine")
        tf = obj.default_transform(16)
    elif name == "dino":
        obj = create_objective(name, encoder=TinyCNN(), out_dim=64, hidden_dim=32,
                               bottleneck_dim=16, teacher_temp_warmup_steps=2, koleo_weight=0.1)
        tf = obj.default_transform(16, n_local=2)
    elif name == "mae":
        obj = create_objective(name, encoder=_vit(), decoder_dim=16, decoder_depth=1,
                               decoder_heads=2)
        tf = obj.default_transform(16, patch_size=4)
    elif name == "mp3":
        obj = create_objective(name, encoder=_vit(pos_embed=False))
        tf = obj.default_transform(16, patch_size=4)
    elif name == "look":
        obj = create_objective(name, encoder=TinyCNN(), num_samples=48, k=5, proj_dim=16,
                               proj_hidden_dim=32)
        tf = obj.default_transform(16)
    elif name == "distill":
        teacher = nn.Sequential(TinyCNN(), nn.Linear(32, 4))
        obj = create_objective(name, encoder=TinyCNN(), teacher=teacher, num_classes=4)
        tf = obj.default_transform(16)
    else:
        obj = create_objective(name, encoder=TinyCNN(), num_classes=4)
        tf = obj.default_transform(16)
    return obj, tf


def _source():
    images, labels = clustered_images(48, 4)
    return engine.TensorSource(images, labels, index=torch.arange(48))


def _fit(name, run_dir, max_steps, resume=None):
    obj, tf = _setup(name)
    cfg = engine.TrainerConfig(max_steps=max_steps, batch_size=16, progress=False,
                               tensorboard=False, log_every=1, checkpoint_every=2, device="cpu")
    src = _source()
    monitor = engine.EmbeddingMonitor(src, src, k=3, max_val=16, max_bank=32)
    trainer = engine.Trainer(obj, src, cfg, engine.OptimConfig(lr=1e-3), run_dir=run_dir,
                             transform=tf, monitors=[monitor])
    return obj, trainer.fit(resume=resume)


@pytest.mark.parametrize("name", ["simclr", "moco", "dino", "mae", "mp3", "look", "distill",
                                  "supervised"])
def test_objective_trains_under_the_engine(name, tmp_path):
    _obj, result = _fit(name, tmp_path / name, max_steps=3)
    assert result.step == 3 and result.encoder_path is not None
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(v)) for v in losses)
    monitored = [r for r in result.history if "knn_top1" in r.get("monitor", {})]
    assert monitored, "the engine's monitor could not embed uint8 images through embed()"


@pytest.mark.parametrize("name", ["moco", "dino", "look", "mae"])
def test_resume_replays_the_uninterrupted_run(name, tmp_path):
    """Queue, centre, step counter, memory bank and EMA copies live in the state_dict."""
    straight, _ = _fit(name, tmp_path / "a", max_steps=4)
    # pretend the run died after its step-2 checkpoint
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    pointer = tmp_path / "b" / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    info = {k: (v.replace("00000004", "00000002") if isinstance(v, str) else v)
            for k, v in info.items()}
    info["step"] = 2
    pointer.write_text(json.dumps(info))
    resumed, result = _fit(name, tmp_path / "b", max_steps=4, resume=True)
    assert result.resumed_from == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
