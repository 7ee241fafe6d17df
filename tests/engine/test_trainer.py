"""The loop itself: learning, accumulation, checkpoints, in-process resume, errors, bf16."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fmlab.engine import checkpoint as ckpt_mod
from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
from fmlab.engine.data import TensorSource, epoch_permutation, micro_batch_indices
from fmlab.engine.logger import read_metrics
from fmlab.engine.trainer import DivergenceError, Trainer
from fmlab.errors import ConfigError, DataError

from ._objectives import LinearRegression, TinyObjective, blobs, noise_transform, weights


def _cfg(**kw) -> TrainerConfig:
    base = {"batch_size": 16, "log_every": 1, "progress": False, "tensorboard": False}
    base.update(kw)
    return TrainerConfig(**base)


def test_loss_falls_and_run_dir_contents(tmp_path):
    x, y = blobs(96)
    obj = TinyObjective()
    res = Trainer(obj, TensorSource(x, y), _cfg(epochs=8), OptimConfig(lr=0.05),
                  ScheduleConfig(warmup_steps=3), run_dir=tmp_path).fit()
    assert res.step == res.max_steps == 8 * (96 // 16)
    losses = [r["loss"] for r in res.history if "loss" in r]
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == list(range(1, 49))
    assert {"step", "epoch", "lr", "loss", "logs", "images_per_s"} <= set(recs[0])
    assert recs[0]["epoch"] == 0 and recs[-1]["epoch"] == 7 and "acc" in recs[-1]["logs"]
    assert (tmp_path / "config.yaml").exists()
    enc = load_file(str(tmp_path / "encoder.safetensors"))
    assert torch.equal(enc["0.weight"], obj.encoder[0].weight.detach())
    meta = json.loads((tmp_path / "encoder.json").read_text())
    assert meta["step"] == 48 and len(meta["weights_sha256"]) == 64
    assert obj.steps_seen == list(range(48))  # hook gets the 0-based index of the step taken


def test_data_order_is_sharded_permutation():
    perm = epoch_permutation(40, seed=3, epoch=2)
    assert sorted(perm.tolist()) == list(range(40))
    assert not np.array_equal(perm, epoch_permutation(40, seed=3, epoch=1))
    full = micro_batch_indices(perm, 1, 8)
    shards = [micro_batch_indices(perm, 1, 8, r, 2) for r in range(2)]
    assert np.array_equal(np.sort(np.concatenate(shards)), np.sort(full))
    # same as DistributedSampler(drop_last) + per-rank batches of 4
    for r in range(2):
        assert np.array_equal(shards[r], perm[r::2][4:8])


def _regression_source(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    t = x @ torch.randn(8, 3, generator=g) + 0.1 * torch.randn(n, 3, generator=g)
    return TensorSource(x, targets=t)


@pytest.mark.parametrize("optim", ["sgd", "adamw", "lars"])
def test_accumulation_equals_full_batch(optim):
    src = _regression_source()
    ocfg = OptimConfig(name=optim, lr=0.05, weight_decay=0.01, momentum=0.9)
    runs = []
    for bs, acc in ((16, 1), (8, 2), (4, 4)):
        obj = LinearRegression()
        Trainer(obj, src, _cfg(batch_size=bs, accumulate=acc, max_steps=10, grad_clip=1.0),
                ocfg, ScheduleConfig(warmup_steps=2)).fit()
        runs.append(weights(obj)["encoder.weight"])
    assert not torch.allclose(runs[0], LinearRegression().encoder.weight)  # it trained
    for w in runs[1:]:
        torch.testing.assert_close(w, runs[0], rtol=1e-5, atol=1e-6)


def test_keep_last_and_latest_pointer(tmp_path):
    x, y = blobs(64)
    Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=7, checkpoint_every=2,
                                                       keep_last=2), run_dir=tmp_path).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest.json", "step-00000006.safetensors", "step-00000006.state.pt",
                     "step-00000007.safetensors", "step-00000007.state.pt"]
    ref = ckpt_mod.latest_checkpoint(tmp_path)
    assert ref is not None and ref.step == 7
    state = torch.load(ref.state, weights_only=True)
    assert state["data"] == {"epoch": 1, "position": 3, "seed": 0, "num_samples": 64,
                             "steps_per_epoch": 4}
    assert set(state) >= {"optimizer", "schedule", "rng", "step"}


def test_checkpoint_sweeps_a_killed_writers_temp_files(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    orphans = [ckpt_dir / ".latest.json.k2j3.tmp",
               ckpt_dir / ".step-00000003.safetensors.x1y2.safetensors",
               ckpt_dir / "step-00000009.state.pt"]  # from a dead run that got further
    for p in orphans:
        p.write_bytes(b"partial")
    ckpt_mod.save_checkpoint(tmp_path, 4, TinyObjective(), {"note": 1})
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [
        "latest.json", "step-00000004.safetensors", "step-00000004.state.pt"]


class _Stop(Exception):
    pass


def _run(tmp_path, stop_at=None, resume=False, monitors=()):
    """12 steps over 3 epochs with dropout, EMA, noise transform, clipping, accumulation."""
    x, y = blobs(64)
    obj = TinyObjective(dropout=0.2, ema=True)
    if stop_at is not None:
        hook = obj.on_after_optimizer_step

        def crashing(step, max_steps):
            hook(step, max_steps)
            if step + 1 == stop_at:
                raise _Stop
        obj.on_after_optimizer_step = crashing
    tr = Trainer(obj, TensorSource(x, y),
                 _cfg(batch_size=8, accumulate=2, max_steps=12, checkpoint_every=3,
                      grad_clip=0.5),
                 OptimConfig(name="adamw", lr=0.02, weight_decay=0.05),
                 ScheduleConfig(warmup_steps=2, final_weight_decay=0.2),
                 run_dir=tmp_path, transform=noise_transform, monitors=list(monitors))
    res = tr.fit(resume=tmp_path if resume else None)
    return obj, res


def test_resume_in_process_is_exact(tmp_path):
    ref_obj, _ = _run(tmp_path / "a")
    with pytest.raises(_Stop):
        _run(tmp_path / "b", stop_at=8)  # dies after step 8; last checkpoint is step 6
    assert ckpt_mod.latest_checkpoint(tmp_path / "b").step == 6
    obj, res = _run(tmp_path / "b", resume=True)
    assert res.resumed_from == 6
    for k, v in weights(ref_obj).items():
        assert torch.equal(weights(obj)[k], v), k
    # the log reads like one run: no duplicated steps from the dead attempt
    steps = [r["step"] for r in read_metrics(tmp_path / "b") if "loss" in r]
    assert steps == list(range(1, 13))
    a = [r["loss"] for r in read_metrics(tmp_path / "a")]
    b = [r["loss"] for r in read_metrics(tmp_path / "b")]
    assert a == b


def test_monitors_do_not_disturb_training(tmp_path):
    from fmlab.engine.monitors import EmbeddingMonitor

    x, y = blobs(64, seed=5)
    mon = EmbeddingMonitor(TensorSource(x, y), bank=TensorSource(x, y), k=5, max_val=32)
    plain, _ = _run(tmp_path / "a")
    watched, res = _run(tmp_path / "b", monitors=[mon])
    for k, v in weights(plain).items():
        assert torch.equal(weights(watched)[k], v), k
    recs = [r for r in res.history if "monitor" in r]
    assert [r["epoch"] for r in recs] == [0, 1, 2]  # every epoch end (4 steps each)
    assert {"knn_top1", "collapse_std_ratio", "collapse_effective_rank"} <= set(recs[0]["monitor"])


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    x, y = blobs(64)
    Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=2, checkpoint_every=1),
            run_dir=tmp_path).fit()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(ckpt_mod.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=4, checkpoint_every=1),
                run_dir=tmp_path).fit(resume=True)
    monkeypatch.undo()
    ref = ckpt_mod.latest_checkpoint(tmp_path)
    assert ref.step == 2
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))  # no half-written leftovers
    res = Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=4, checkpoint_every=1),
                  run_dir=tmp_path).fit(resume=True)
    assert res.resumed_from == 2 and res.step == 4


def test_resume_rejects_changed_data_or_batch(tmp_path):
    x, y = blobs(64)
    Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=2), run_dir=tmp_path).fit()
    with pytest.raises(DataError, match="64 samples"):
        Trainer(TinyObjective(), TensorSource(x[:48], y[:48]), _cfg(max_steps=3)).fit(
            resume=tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=3, batch_size=32)).fit(
            resume=tmp_path)
    with pytest.raises(DataError, match="no such run"):
        Trainer(TinyObjective(), TensorSource(x, y), _cfg()).fit(resume=tmp_path / "nope")


def test_user_errors():
    x, y = blobs(16)
    with pytest.raises(ConfigError, match=r"trainer\.batch_size.*32.*16"):
        Trainer(TinyObjective(), TensorSource(x, y), _cfg(batch_size=32)).fit()
    from fmlab.engine.distributed import DistInfo

    with pytest.raises(ConfigError, match="divisible"):
        Trainer(TinyObjective(), TensorSource(x, y), _cfg(batch_size=5),
                dist=DistInfo(0, 2, 0)).fit()
    with pytest.raises(ConfigError, match=r"trainer\.log_every"):
        Trainer(TinyObjective(), TensorSource(x, y), _cfg(log_every=0))


class _Exploding(TinyObjective):
    def forward(self, batch):
        loss, logs = super().forward(batch)
        return loss * float("nan"), logs


def test_divergence_is_reported():
    x, y = blobs(32)
    with pytest.raises(DivergenceError, match="step 1"):
        Trainer(_Exploding(), TensorSource(x, y), _cfg(max_steps=3)).fit()


def test_bf16_autocast_trains_float32_weights():
    x, y = blobs(96)
    obj = TinyObjective()
    res = Trainer(obj, TensorSource(x, y), _cfg(epochs=6, bf16=True), OptimConfig(lr=0.05)).fit()
    assert all(p.dtype == torch.float32 for p in obj.parameters())
    losses = [r["loss"] for r in res.history]
    assert np.isfinite(losses).all() and np.mean(losses[-6:]) < np.mean(losses[:6])


class _ArraySplit:
    """Like fmlab.data's ImageSplit: get_batch returns a bare uint8 array, labels attribute."""

    def __init__(self, n=32):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 255, size=(n, 4, 4, 3), dtype=np.uint8)
        self.labels = (np.arange(n) % 4).astype(np.int64)

    def __len__(self):
        return len(self.images)

    def get_batch(self, indices):
        return self.images[indices]


def test_bare_array_source_and_transform_seeding():
    seen = []

    def transform(batch, gen):
        assert batch["images"].dtype == torch.uint8 and batch["labels"].dtype == torch.int64
        seen.append(torch.rand(2, generator=gen))
        return {"images": batch["images"].reshape(len(batch["images"]), -1)[:, :8].float() / 255,
                "labels": batch["labels"]}
    for _ in range(2):
        Trainer(TinyObjective(), _ArraySplit(), _cfg(batch_size=8, max_steps=3),
                transform=transform).fit()
    first, second = seen[:3], seen[3:]
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # seeded by (seed, step)
    assert not torch.equal(first[0], first[1])  # a fresh stream each step


class _FakeWriter:
    def __init__(self):
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False

    def add_scalar(self, key, value, step):
        self.scalars.append((key, value, step))

    def close(self):
        self.closed = True


def test_tensorboard_scalars_and_progress_bar(tmp_path, monkeypatch, capsys):
    from fmlab.engine import logger as logger_mod

    writer = _FakeWriter()
    monkeypatch.setattr(logger_mod, "_tensorboard_writer", lambda log_dir: writer)
    x, y = blobs(32)
    Trainer(TinyObjective(), TensorSource(x, y),
            _cfg(max_steps=4, log_every=2, tensorboard=True, progress=True),
            run_dir=tmp_path).fit()
    keys = {k for k, _, _ in writer.scalars}
    assert {"loss", "lr", "logs/acc", "images_per_s"} <= keys
    assert sorted({s for k, _, s in writer.scalars if k == "loss"}) == [2, 4]
    assert writer.closed
    err = capsys.readouterr().err
    assert "4/4" in err and "img_s" in err  # tqdm bar with images/s


def test_without_tensorboard_package_runs(tmp_path):
    x, y = blobs(32)
    Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=2, tensorboard=True),
            run_dir=tmp_path).fit()
    assert len(read_metrics(tmp_path)) == 2


def test_from_config_saves_the_whole_nested_config(tmp_path):
    from dataclasses import dataclass, field

    import yaml

    from fmlab.engine.config import load_config

    @dataclass
    class Cmd:
        method: str = "tiny"
        trainer: TrainerConfig = field(default_factory=TrainerConfig)
        optim: OptimConfig = field(default_factory=OptimConfig)
        schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    cfg = load_config(None, Cmd, ["trainer.max_steps=3", "trainer.batch_size=8",
                                  "trainer.progress=false", "optim.name=lars", "method=x"])
    x, y = blobs(32)
    res = Trainer.from_config(TinyObjective(), TensorSource(x, y), cfg, run_dir=tmp_path).fit()
    assert res.step == 3
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["method"] == "x" and saved["optim"]["name"] == "lars"
    assert saved["trainer"]["max_steps"] == 3


def test_warmup_epochs_become_steps_and_lr_is_logged():
    x, y = blobs(64)  # 4 steps per epoch at batch 16
    res = Trainer(TinyObjective(), TensorSource(x, y), _cfg(epochs=3),
                  OptimConfig(name="sgd", lr=0.4),
                  ScheduleConfig(warmup_epochs=1.0, min_lr=0.04)).fit()
    lrs = [r["lr"] for r in res.history]
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert lrs[4] == pytest.approx(0.4) and lrs[-1] < 0.1 and min(lrs[4:]) > 0.04


def test_warmup_longer_than_the_run_is_shortened_for_every_command():
    """A smoke run (``--set trainer.max_steps=2``) of a config with a long warm-up trains: the
    engine shortens the warm-up to a tenth of the run, warns naming the key, and the schedule
    config (what config.yaml records) holds the value used; the lr follows that schedule."""
    from fmlab.engine.schedule import warmup_cosine

    x, y = blobs(96)
    sched = ScheduleConfig(warmup_steps=40)
    with pytest.warns(UserWarning, match=r"schedule\.warmup_steps: the warm-up \(40 steps\) does not "
                                         r"fit a run of 20 steps; using 2"):
        res = Trainer(TinyObjective(), TensorSource(x, y), _cfg(max_steps=20), OptimConfig(lr=0.1),
                      sched, run_dir=None).fit()
    assert res.step == 20 and sched.warmup_steps == 2
    lrs = [r["lr"] for r in res.history if "lr" in r]
    assert lrs[:3] == pytest.approx([warmup_cosine(s, 20, 0.1, 0.0, 2) for s in range(3)])
