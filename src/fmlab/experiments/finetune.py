"""The fine-tuning experiment behind ``fmlab finetune``: PEFT methods through the engine, under the
few-shot adaptation protocol.

One run = (method, shots, seed):

1. the split file is drawn from the source's *train* split by :func:`fmlab.adapt.splits.make_split`
   and written to ``OUT/splits/split_{shots}shot_seed{seed}.json`` — the same bytes and path
   ``fmlab adapt`` writes, so both commands score on the same images; the test split is only
   touched once, after the best state has been chosen;
2. the base backbone is built (from ``--weights``, or a random init drawn after
   ``torch.manual_seed(0)`` so that a reload can rebuild it) and gets a new task head
   ``Linear(feature_dim, num_classes of the source)``, trained by every method;
3. the method is applied with :func:`fmlab.peft.apply` (``head="head"``). ``pela`` first
   compresses, then distils the compressed student against the original on *unlabelled* train-split
   images through the engine (``distill_steps``), then fine-tunes (``pela_finetune``: the whole
   compressed model, as in PELA, or its factors only);
4. the head starts at the best scaled nearest-class-mean classifier of the frozen features of the
   training images — at most ``head_init_per_class`` = 256 per class, seeded; class means of the
   centred features, the centring as bias (:func:`fmlab.adapt.linear.class_mean_init`;
   ``head_init=random`` turns it off). Why: the engine gives every parameter the same learning
   rate, and a random head trained at a full-fine-tuning lr of 1e-4 would barely move; starting
   at the class-mean classifier also keeps a random head from distorting pre-trained features in
   the first steps (LP-FT);
5. :class:`fmlab.engine.Trainer` trains on the split's training images with a batched uint8
   augmentation; after every ``eval_every_epochs`` epochs (and at the end) a monitor scores the
   split's validation images and keeps a copy of the best state (highest accuracy, ties broken by
   lower cross-entropy; the starting state counts too), which is restored before testing;
6. test accuracy, trainable parameters, peak memory and seconds go to ``results.json``,
   ``summary.md`` and the results store; the adapter (+ head + buffers) is saved in
   ``OUT/<method>_<shots>_<seed>/adapter/`` and :func:`load_finetuned` rebuilds the model from it.

Peak memory: on CPU the process's peak resident set size during the run minus its resident size at
the run's start, read from ``VmHWM``/``VmRSS`` in ``/proc/self/status`` after resetting the peak
with ``/proc/self/clear_refs`` (Linux ≥ 4.0); where that is not possible, the growth of
``resource.getrusage().ru_maxrss`` (a lower bound: 0 when an earlier run peaked higher). On CUDA,
``torch.cuda.max_memory_allocated`` minus the allocation at the start. The record names which.

Per-method defaults (AdamW, cosine schedule with 10% linear warmup, batch 64 or the number of
training images if fewer, ``max_steps`` optimiser steps; override with ``--set``):

========  =======  ============  =========
method    lr       weight decay  max_steps
========  =======  ============  =========
full      1e-4     0.05          200
linear    1e-2     0             200
bitfit    3e-3     0             200
lora      2e-3     0             200
svfit     3e-3     0             200
pela      1e-4     0.05          200 (+ distill_steps 100 at lr 1e-4)
vpt       5e-3     0             200
========  =======  ============  =========

BatchNorm running statistics (``bn_stats=auto``) are updated only by ``full``, ``bitfit`` and
``pela`` with ``pela_finetune=full`` — the methods that train the norm layers; the others keep the
backbone's statistics, so a frozen backbone stays the pre-trained function.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from fmlab.engine.config import (
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    apply_override,
    config_to_dict,
    save_config,
    validate_config,
)
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import atomic_write, write_json

METHOD_NAMES = ("full", "linear", "bitfit", "lora", "svfit", "pela", "vpt")
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "full": {"lr": 1e-4, "weight_decay": 0.05, "max_steps": 200},
    "linear": {"lr": 1e-2, "weight_decay": 0.0, "max_steps": 200},
    "bitfit": {"lr": 3e-3, "weight_decay": 0.0, "max_steps": 200},
    "lora": {"lr": 2e-3, "weight_decay": 0.0, "max_steps": 200},
    "svfit": {"lr": 3e-3, "weight_decay": 0.0, "max_steps": 200},
    "pela": {"lr": 1e-4, "weight_decay": 0.05, "max_steps": 200},
    "vpt": {"lr": 5e-3, "weight_decay": 0.0, "max_steps": 200},
}
DEFAULT_BATCH = 64
BASE_INIT_SEED = 0  # torch seed of a random-init base backbone (no weights file)
EVALS_PER_RUN = 20  # eval_every_epochs=0: validate about this many times per run
HEAD = "head"
CHECK_IMAGES = 4  # test images whose logits finetune.json records for reload checks


# --------------------------------------------------------------------------- configuration


@dataclass
class FinetuneSettings:
    """Training settings of one run; ``--set KEY=VALUE`` overrides any of them (dotted keys)."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: Literal["crop_flip", "crop", "none"] = "crop_flip"
    eval_every_epochs: int = 0  # 0: about EVALS_PER_RUN validations per run
    eval_batch_size: int = 256
    head_init: Literal["class_means", "random"] = "class_means"
    head_init_per_class: int = 256  # class means from at most this many images per class (0: all)
    bn_stats: Literal["auto", "update", "frozen"] = "auto"
    distill_steps: int = 100  # pela only
    distill_lr: float = 1e-4
    distill_batch_size: int = 64
    distill_images: int = 0  # unlabelled train images to distil on: 0 = all, else a seeded subset
    pela_finetune: Literal["full", "factors"] = "full"

    def validate(self, prefix: str = "") -> None:
        for key, ok in (("eval_every_epochs", self.eval_every_epochs >= 0),
                        ("eval_batch_size", self.eval_batch_size >= 1),
                        ("head_init_per_class", self.head_init_per_class >= 0),
                        ("distill_steps", self.distill_steps >= 0),
                        ("distill_lr", self.distill_lr > 0),
                        ("distill_batch_size", self.distill_batch_size >= 1),
                        ("distill_images", self.distill_images >= 0)):
            if not ok:
                raise ConfigError(f"{prefix}{key}: {getattr(self, key)!r} is out of range")


def default_settings(method: str, n_train: int) -> FinetuneSettings:
    d = METHOD_DEFAULTS[method]
    steps = int(d["max_steps"])
    return FinetuneSettings(
        trainer=TrainerConfig(max_steps=steps, batch_size=min(DEFAULT_BATCH, n_train),
                              log_every=10, progress=False, tensorboard=False),
        optim=OptimConfig(name="adamw", lr=d["lr"], weight_decay=d["weight_decay"]),
        schedule=ScheduleConfig(name="cosine"),
    )


def resolve_settings(method: str, n_train: int, overrides: list[str]) -> FinetuneSettings:
    s = default_settings(method, n_train)
    for item in overrides:
        apply_override(s, item)
    if not any(o.strip().startswith("schedule.warmup") for o in overrides):
        s.schedule.warmup_steps = s.trainer.max_steps // 10  # 10% of the run
    validate_config(s)
    return s


@dataclass
class FinetuneConfig:
    backbone: str
    data: str
    out: Path
    methods: list[str]
    weights: str | None = None
    shots: list[int | str] = field(default_factory=lambda: [16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method ('*' = all) -> opts
    targets: list[str] | None = None
    overrides: list[str] = field(default_factory=list)  # --set
    test_split: str | None = None
    max_test: int | None = None  # score on a seeded random subset of N test images
    data_root: str | None = None
    db: Path | None = None


def parse_options(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--option [METHOD.]KEY=VALUE`` → {method or '*': {key: YAML-parsed value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected [METHOD.]KEY=VALUE, e.g. r=8 or lora.r=8")
        scope, _, name = key.rpartition(".")
        scope = scope or "*"
        if scope != "*" and scope not in methods:
            raise ConfigError(f"--option {item!r}: method {scope!r} is not in --method "
                              f"({','.join(methods)})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        out.setdefault(scope, {})[name] = value
    return out


def options_for(cfg: FinetuneConfig, method: str) -> dict[str, Any]:
    return {**cfg.options.get("*", {}), **cfg.options.get(method, {})}


# --------------------------------------------------------------------------- models


def build_base(backbone: str, weights: str | None, num_classes: int) -> nn.Module:
    """The base backbone with a fresh ``head = Linear(feature_dim, num_classes)``.

    A backbone without a weights file is drawn after ``torch.manual_seed(BASE_INIT_SEED)``, so
    every run (and :func:`load_finetuned`) starts from the same random base.
    """
    from fmlab.models import create_backbone

    with torch.random.fork_rng(devices=[]):
        if weights is None:
            torch.manual_seed(BASE_INIT_SEED)
        bb = create_backbone(backbone, weights=weights)
    if not hasattr(bb, "trunk") or not hasattr(bb, "feature_dim"):
        raise ConfigError(f"--backbone {backbone!r} is not an image backbone")
    bb.head = nn.Linear(bb.feature_dim, num_classes)
    return bb.eval()


def apply_method(model: nn.Module, method: str, targets: list[str] | None,
                 options: dict[str, Any]) -> nn.Module:
    """``fmlab.peft.apply`` with the task head; ``targets`` only for methods that take them."""
    import fmlab.peft as fp
    from fmlab.peft.core import get_method

    impl = get_method(method)
    return fp.apply(model, method, targets if impl.uses_targets else None, head=HEAD, **options)


def load_finetuned(run_dir: str | os.PathLike) -> nn.Module:
    """Rebuild a fine-tuned model from ``RUN_DIR`` (``finetune.json`` + ``adapter/``)."""
    import json

    import fmlab.peft as fp

    d = Path(run_dir)
    meta_path = d / "finetune.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} is missing: {d} is not an fmlab finetune run directory")
    meta = json.loads(meta_path.read_text())
    base = build_base(meta["backbone"], meta["weights"], meta["num_classes"])
    if meta["weights"] is not None:
        from fmlab.utils.io import sha256_file

        if sha256_file(meta["weights"]) != meta["weights_sha256"]:
            raise DataError(f"{meta_path}: weights {meta['weights']} changed since the run "
                            "(sha256 differs)")
    return fp.load_adapter(base, d / "adapter").eval()


# --------------------------------------------------------------------------- training pieces


class TrainTransform:
    """uint8 batch → the backbone's preprocessing, then pad-and-crop (pad = size/8) and flips.

    Augmenting after normalisation pads with 0 = the mean colour; cheap and batched.
    """

    def __init__(self, preprocess: Any, augment: str) -> None:
        self.preprocess, self.augment = preprocess, augment

    def __call__(self, batch: dict[str, Any], gen: torch.Generator) -> dict[str, Any]:
        from fmlab.data.augment import RandomCrop, RandomHorizontalFlip

        x = self.preprocess(batch["images"])
        if self.augment in ("crop", "crop_flip"):
            h, w = x.shape[-2:]
            x = RandomCrop((h, w), padding=max(1, h // 8))(x, gen)
        if self.augment == "crop_flip":
            x = RandomHorizontalFlip(0.5)(x, gen)
        return {**batch, "images": x}


class ClassifierObjective(nn.Module):
    """Engine objective: cross-entropy of ``model(images)``; BatchNorm may stay in eval mode."""

    def __init__(self, model: nn.Module, update_bn: bool) -> None:
        super().__init__()
        self.model = model
        self.update_bn = update_bn

    def train(self, mode: bool = True) -> ClassifierObjective:
        super().train(mode)
        if not self.update_bn:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = self.model(batch["images"])
        y = batch["labels"]
        loss = F.cross_entropy(logits.float(), y)
        return loss, {"train_accuracy": (logits.argmax(1) == y).float().mean().detach()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of uint8 images, in eval mode (the model's mode is restored)."""
    was = model.training
    model.eval()
    try:
        out = [model(images[i:i + batch_size]).float().cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def trainable_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of what training can change: trainable parameters and every buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()
            if not isinstance(v, nn.Parameter) or v.requires_grad}


def restore_snapshot(model: nn.Module, snap: dict[str, torch.Tensor]) -> None:
    current = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for k, v in snap.items():
            current[k].copy_(v)


class ValidationMonitor:
    """Engine monitor: scores the validation images and keeps the best state seen."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 every_epochs: int, batch_size: int) -> None:
        self.model, self.images, self.labels = model, images, labels
        self.every_epochs, self.batch_size = every_epochs, batch_size
        self.trainer: Any = None
        self.best: tuple[float, float] | None = None
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def __call__(self, embed: Any, device: Any, where: str) -> dict[str, float]:
        logits = predict_logits(self.model, self.images, self.batch_size)
        acc = float((logits.argmax(1) == self.labels).float().mean())
        loss = float(F.cross_entropy(logits, self.labels))
        if self.best is None or acc > self.best[0] or (acc == self.best[0] and loss < self.best[1]):
            self.best = (acc, loss)
            self.best_step = int(self.trainer.step) if self.trainer is not None else 0
            self.best_state = trainable_snapshot(self.model)
        return {"val_accuracy": acc, "val_loss": loss}


class PeakMemory:
    """Peak memory a block of code added (see the module docstring for the measure)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.peak_mb = float("nan")

    @staticmethod
    def _status_kb(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise OSError(f"{key} not in /proc/self/status")

    def __enter__(self) -> PeakMemory:
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self._base = self._status_kb("VmRSS")
            self.method = "cpu_vmhwm_delta"
        except OSError:
            self.method = "cpu_ru_maxrss_delta"
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.method == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            peak_b = torch.cuda.max_memory_allocated(self.device) - self._base
            self.peak_mb = peak_b / 2**20
        elif self.method == "cpu_vmhwm_delta":
            self.peak_mb = (self._status_kb("VmHWM") - self._base) / 1024
        else:
            self.peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base) / 1024


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS so the run's baseline RSS is not inflated by the memory
    an earlier run freed but glibc kept (which would hide this run's growth)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices of at most ``per_class`` rows of each class (seeded); all rows for 0.

    The class-mean head needs good means, not every image: with the full train split (``all``)
    encoding every training image would cost more than a short fine-tuning run itself."""
    lab = labels.cpu().numpy()
    if per_class == 0 or np.bincount(lab).max() <= per_class:
        return torch.arange(len(lab))
    rng = np.random.default_rng([int(seed), 7])
    keep = [rng.permutation(np.flatnonzero(lab == c))[:per_class] for c in np.unique(lab)]
    return torch.as_tensor(np.sort(np.concatenate(keep)))


@torch.no_grad()
def init_head_class_means(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                          num_classes: int, batch_size: int) -> None:
    """Set the head to the best scaled nearest-class-mean classifier of the frozen features
    (class means of the centred features as weights, the centring as the bias)."""
    from fmlab.adapt.linear import class_mean_init

    was = model.training
    model.eval()
    feats = torch.cat([model.encode(images[i:i + batch_size]).float().cpu()
                       for i in range(0, len(images), batch_size)])
    model.train(was)
    # centred features: class_mean_init's classifier has no bias, and post-ReLU features share a
    # large common component that would otherwise dominate every class score; the centring
    # becomes the bias, b = −W·mean
    mean = feats.mean(0)
    lam = torch.tensor([1.0 / len(feats)])
    W0, _ = class_mean_init(feats - mean, labels, num_classes, lam)
    head = model.get_submodule(HEAD)
    head.weight.copy_(W0[0].to(head.weight))
    head.bias.copy_((-(W0[0] @ mean)).to(head.bias))


def _fit(objective: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
         settings_trainer: TrainerConfig, optim: OptimConfig, schedule: ScheduleConfig,
         transform: Any, monitors: list[Any]) -> Any:
    from fmlab.engine import TensorSource, Trainer

    source = TensorSource(images, labels)
    trainer = Trainer(objective, source, settings_trainer, optim, schedule, run_dir=None,
                      transform=transform, monitors=monitors)
    for m in monitors:
        m.trainer = trainer
    return trainer.fit()


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    import json

    with atomic_write(path, "w") as f:
        for rec in history:
            f.write(json.dumps(rec, default=float) + "\n")


# --------------------------------------------------------------------------- one run


@dataclass
class RunInputs:
    """What every run of an experiment shares (decoded once)."""

    train_images: torch.Tensor  # uint8, indexed by train-split index via ``pos``
    pos: np.ndarray  # train-split index -> row of train_images (-1 if not decoded)
    train_labels: np.ndarray
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    distill_idx: np.ndarray  # train-split indices PELA distils on

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        return self.train_images[torch.as_tensor(self.pos[idx])]


def run_one(cfg: FinetuneConfig, method: str, shots: int | str, seed: int, split: Any,
            split_sha: str, inputs: RunInputs, run_dir: Path) -> dict[str, Any]:
    """Train, select on validation, test and save one (method, shots, seed) run."""
    import fmlab.peft as fp
    from fmlab.peft.pela_distill import PELADistillLoss

    s = resolve_settings(method, len(split.train), cfg.overrides)
    device = resolve_device(s.trainer.device)
    opts = options_for(cfg, method)
    s.trainer.seed = int(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = inputs.rows(split.train), torch.as_tensor(inputs.train_labels[split.train])
    x_va, y_va = inputs.rows(split.val), torch.as_tensor(inputs.train_labels[split.val])
    t0 = time.perf_counter()
    distill_s = 0.0
    with PeakMemory(device) as mem:
        model = build_base(cfg.backbone, cfg.weights, inputs.num_classes)
        torch.manual_seed(int(seed))
        model.head.reset_parameters()
        teacher = copy.deepcopy(model) if method == "pela" else None
        apply_method(model, method, cfg.targets, opts)
        model.to(device)
        if method == "pela":
            assert teacher is not None
            if s.distill_steps > 0:
                td = time.perf_counter()
                all_idx = inputs.distill_idx
                dcfg = dataclasses.replace(
                    s.trainer, max_steps=s.distill_steps,
                    batch_size=min(s.distill_batch_size, len(all_idx)))
                dist = _fit(PELADistillLoss(model, teacher.to(device)), inputs.rows(all_idx),
                            None, dcfg, OptimConfig(lr=s.distill_lr),
                            ScheduleConfig(warmup_steps=max(1, s.distill_steps // 10)),
                            TrainTransform(model.preprocess, "none"), [])
                _write_history(run_dir / "distill_metrics.jsonl", dist.history)
                distill_s = time.perf_counter() - td
            del teacher
            if s.pela_finetune == "full":
                fp.apply(model, "full", head=HEAD)
        if s.head_init == "class_means":
            rows = per_class_subset(y_tr, s.head_init_per_class, seed)
            init_head_class_means(model, x_tr[rows], y_tr[rows], inputs.num_classes,
                                  s.eval_batch_size)
        update_bn = (s.bn_stats == "update" or (s.bn_stats == "auto" and (
            method in ("full", "bitfit") or (method == "pela" and s.pela_finetune == "full"))))
        spe = len(split.train) // (s.trainer.batch_size * s.trainer.accumulate)
        total_epochs = max(1, math.ceil(s.trainer.max_steps / max(spe, 1))) \
            if s.trainer.max_steps else s.trainer.epochs
        every = s.eval_every_epochs or max(1, total_epochs // EVALS_PER_RUN)
        monitors = [ValidationMonitor(model, x_va, y_va, every, s.eval_batch_size)] \
            if len(split.val) else []
        for m in monitors:  # the starting point (class-mean head) is a candidate too
            m(None, device, "start")
        tt = time.perf_counter()
        fit = _fit(ClassifierObjective(model, update_bn), x_tr, y_tr, s.trainer, s.optim,
                   s.schedule, TrainTransform(model.preprocess, s.augment), monitors)
        train_s = time.perf_counter() - tt
        val_acc, best_step = float("nan"), fit.step
        if monitors and monitors[0].best_state is not None:
            restore_snapshot(model, monitors[0].best_state)
            val_acc, best_step = monitors[0].best[0], monitors[0].best_step  # type: ignore[index]
        logits = predict_logits(model, inputs.test_images, s.eval_batch_size)
        check = predict_logits(model, inputs.test_images[:CHECK_IMAGES], s.eval_batch_size)
    seconds = time.perf_counter() - t0
    acc = float((logits.argmax(1) == inputs.test_labels).float().mean())
    model.cpu()
    fp.save_adapter(model, run_dir / "adapter")
    _write_history(run_dir / "metrics.jsonl", fit.history)
    save_config(s, run_dir / "config.yaml")
    weights_sha = getattr(model, "weights_sha256", None)
    write_json(run_dir / "finetune.json", {
        "backbone": cfg.backbone, "weights": str(Path(cfg.weights).resolve()) if cfg.weights
        else None, "weights_sha256": weights_sha, "base_init_seed": BASE_INIT_SEED,
        "num_classes": inputs.num_classes, "method": method, "shots": shots, "seed": int(seed),
        "split_sha256": split_sha, "adapter": "adapter",
        # logits of the first test images, so a reload can be checked against the trained model
        "check_logits": check.tolist()})
    return {
        "method": method, "shots": shots, "seed": int(seed), "accuracy": acc,
        "val_accuracy": val_acc, "best_step": best_step, "steps": fit.step,
        "trainable_parameters": fp.trainable_parameters(model),
        "total_parameters": count_parameters(model),
        "peak_memory_mb": round(mem.peak_mb, 1), "memory_measure": mem.method,
        "seconds": round(seconds, 2), "train_seconds": round(train_s, 2),
        "distill_seconds": round(distill_s, 2), "device": str(device),
        "split_sha256": split_sha, "n_train": len(split.train), "n_val": len(split.val),
        "n_test": len(inputs.test_labels), "run_dir": str(run_dir),
        "hyperparameters": {"options": opts, "targets": cfg.targets,
                            "settings": config_to_dict(s),
                            "stages": fp.adapter_stages(model)},
    }


# --------------------------------------------------------------------------- the experiment


def _validate_methods(methods: list[str]) -> None:
    if not methods:
        raise ConfigError("--method: give at least one of " + ", ".join(METHOD_NAMES))
    for m in methods:
        if m not in METHOD_NAMES:
            raise ConfigError(f"--method: unknown method {m!r}; choose from "
                              f"{', '.join(METHOD_NAMES)}")


def _preflight(cfg: FinetuneConfig, num_classes: int) -> None:
    """Apply every method to a copy of the base, so bad options/targets fail before training."""
    base = build_base(cfg.backbone, cfg.weights, num_classes)
    for m in cfg.methods:
        resolve_settings(m, 1, cfg.overrides)
        apply_method(copy.deepcopy(base), m, cfg.targets, options_for(cfg, m))


def _decode(split: Any, idx: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    parts = [split.get_batch(idx[i:i + chunk]) for i in range(0, len(idx), chunk)]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts)))


def run_finetune(cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Run methods × shots × seeds and write ``results.json``, ``summary.md``, store rows."""
    from fmlab.adapt.splits import make_split
    from fmlab.data import open_source
    from fmlab.results import ResultsStore, new_run_id

    _validate_methods(cfg.methods)
    source = open_source(cfg.data, cfg.data_root)
    if getattr(source, "class_names", None) is None:
        raise DataError(f"{cfg.data} has no class labels; fmlab finetune needs a labelled source")
    train = source.split("train")
    test_name = cfg.test_split or ("test" if "test" in source.splits else None)
    if test_name is None:
        raise DataError(f"{cfg.data} has no 'test' split; pass --test-split")
    test = source.split(test_name)
    names = list(train.class_names or source.class_names)
    k = len(names)
    out = Path(cfg.out)
    splits = {}
    for shots in cfg.shots:
        for seed in cfg.seeds:
            sp = make_split(train.labels, shots, seed, class_names=names, n_classes=k)
            splits[shots, seed] = sp
    _preflight(cfg, k)
    for (shots, seed), sp in splits.items():
        sp.save(out / "splits" / f"split_{shots}shot_seed{seed}.json")
    distill_idx = np.zeros(0, dtype=np.int64)
    if "pela" in cfg.methods:
        n_d = resolve_settings("pela", 1, cfg.overrides).distill_images
        distill_idx = np.arange(len(train)) if n_d == 0 or n_d >= len(train) else np.sort(
            np.random.default_rng(0).permutation(len(train))[:n_d])
    needed = np.unique(np.concatenate([distill_idx] + [np.concatenate([s.train, s.val])
                                                       for s in splits.values()]))
    pos = np.full(len(train), -1, dtype=np.int64)
    pos[needed] = np.arange(len(needed))
    # --max-test: a seeded random subset (sources may be sorted by class), in index order
    test_idx = np.arange(len(test)) if cfg.max_test is None or cfg.max_test >= len(test) else \
        np.sort(np.random.default_rng(0).permutation(len(test))[:cfg.max_test])
    n_test = len(test_idx)
    inputs = RunInputs(_decode(train, needed), pos, np.asarray(train.labels),
                       _decode(test, test_idx),
                       torch.as_tensor(np.asarray(test.labels)[test_idx]), k, distill_idx)
    records = []
    for method in cfg.methods:
        for shots in cfg.shots:
            for seed in cfg.seeds:
                sp = splits[shots, seed]
                rec = run_one(cfg, method, shots, seed, sp, sp.sha256, inputs,
                              out / f"{method}_{shots}_{seed}")
                rec["split_file"] = f"splits/split_{shots}shot_seed{seed}.json"
                records.append(rec)
    probe = build_base(cfg.backbone, cfg.weights, k)
    protocol = {"backbone": cfg.backbone, "weights_sha256": probe.weights_sha256,
                "preprocess": probe.preprocess.to_dict(), "source": cfg.data,
                "train_content_hash": train.content_hash, "test_split": test_name,
                "test_content_hash": test.content_hash, "n_test": n_test,
                "max_test": cfg.max_test}
    for r in records:
        r["protocol"] = protocol
    write_json(out / "results.json", records)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(summary_markdown(records, cfg, test_name, n_test))
    if cfg.db is not None:
        run_id = new_run_id()
        rows = []
        for r in records:
            for metric in ("accuracy", "val_accuracy", "trainable_parameters", "peak_memory_mb"):
                rows.append({
                    "run_id": run_id, "task": "finetune", "source": f"{cfg.data}:{test_name}",
                    "split_hash": r["split_sha256"], "backbone": cfg.backbone,
                    "weights_hash": probe.weights_sha256, "method": r["method"],
                    "hyperparameters": r["hyperparameters"], "seed": r["seed"], "metric": metric,
                    "value": r[metric], "seconds": r["seconds"],
                    "extra": {"shots": r["shots"], "memory_measure": r["memory_measure"],
                              "best_step": r["best_step"], "n_test": r["n_test"],
                              "train_content_hash": train.content_hash,
                              "test_content_hash": test.content_hash},
                })
        ResultsStore(cfg.db).append(rows)
    return records


def summary_markdown(records: list[dict[str, Any]], cfg: FinetuneConfig, test_name: str,
                     n_test: int) -> str:
    """One row per (method, shots): test accuracy mean ± std over seeds and the costs."""
    lines = [f"# fmlab finetune: {cfg.backbone} on {cfg.data}", "",
             f"Accuracy (%) on {n_test} images of the {test_name} split, mean ± std over seeds "
             f"{cfg.seeds}; the state kept is the best on the split file's validation images.",
             "",
             "| method | shots | accuracy | val accuracy | trainable params | peak memory MB "
             "| seconds |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["shots"]), []).append(r)
    for (m, k), rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs]) * 100
        val = np.array([r["val_accuracy"] for r in rs]) * 100
        mem = np.mean([r["peak_memory_mb"] for r in rs])
        sec = np.mean([r["seconds"] for r in rs])
        lines.append(f"| {m} | {k} | {acc.mean():.2f} ± {acc.std():.2f} | {val.mean():.2f} | "
                     f"{rs[0]['trainable_parameters']:,} | {mem:.0f} | {sec:.1f} |")
    lines += ["", f"Peak memory: {records[0]['memory_measure']} (see fmlab.experiments.finetune)."
              if records else "", ""]
    return "\n".join(lines)
