"""One ``fmlab finetune`` run (method, shots, seed), and the model pieces it and a reload share.

:func:`run_one` builds the base with a new head, lets the method's ``prepare_finetune`` hook apply
it, starts the head at the class-mean classifier, trains through the engine with a validation
monitor, restores the best state, scores the test images and saves adapter, logs and config. The
experiment around it (splits, decoding, results) is :mod:`fmlab.experiments.finetune`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, config_to_dict, save_config
from fmlab.errors import ConfigError, DataError
from fmlab.experiments.finetune_pvp import init_modules
from fmlab.experiments.finetune_settings import (
    FinetuneConfig,
    FinetuneSettings,
    finetune_method,
    options_for,
    resolve_settings,
)
from fmlab.utils.io import atomic_write, write_json

__all__ = ["RunInputs", "apply_method", "build_base", "load_finetuned", "run_one"]

EVALS_PER_RUN = 20  # eval_every_epochs=0: validate about this many times per run
HEAD = "head"
CHECK_IMAGES = 4  # test images whose logits finetune.json records for reload checks


# --------------------------------------------------------------------------- models


def build_base(backbone: str, weights: str | None, num_classes: int, init_seed: int = 0) -> nn.Module:
    """The base backbone with a fresh ``head = Linear(feature_dim, num_classes)``.

    A backbone without a weights file is drawn from ``init_seed`` (``create_backbone(...,
    seed=init_seed)``), so every run (and :func:`load_finetuned`) starts from the same random base.

    Args:
        backbone: a backbone registry name.
        weights: a weights file, or None.
        num_classes: outputs of the new head.
        init_seed: seed of the random init when ``weights`` is None.

    Returns:
        The backbone, in eval mode.
    """
    from fmlab.models import create_backbone

    bb = create_backbone(backbone, weights=weights, seed=init_seed if weights is None else None)
    if not hasattr(bb, "trunk") or not hasattr(bb, "feature_dim"):
        raise ConfigError(f"--backbone {backbone!r} is not an image backbone")
    bb.head = nn.Linear(bb.feature_dim, num_classes)
    return bb.eval()


def apply_method(model: nn.Module, method: str, targets: list[str] | None,
                 options: dict[str, Any]) -> nn.Module:
    """``fmlab.peft.apply`` with the task head; ``targets`` only for methods that take them."""
    import fmlab.peft as fp

    impl = finetune_method(method)
    return fp.apply(model, method, targets if impl.uses_targets else None, head=HEAD, **options)


def load_finetuned(run_dir: str | os.PathLike) -> nn.Module:
    """Rebuild a fine-tuned model from ``RUN_DIR`` (``finetune.json`` + ``adapter/``).

    Args:
        run_dir: one run's directory, ``OUT/<method>_<shots>_<seed>``.

    Returns:
        The model in eval mode, with the same outputs as at the end of the run.
    """
    import json

    import fmlab.peft as fp

    d = Path(run_dir)
    meta_path = d / "finetune.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} is missing: {d} is not an fmlab finetune run directory")
    meta = json.loads(meta_path.read_text())
    base = build_base(meta["backbone"], meta["weights"], meta["num_classes"], meta.get("base_init_seed", 0))
    if meta["weights"] is not None:
        from fmlab.utils.io import sha256_file

        if sha256_file(meta["weights"]) != meta["weights_sha256"]:
            raise DataError(f"{meta_path}: weights {meta['weights']} changed since the run "
                            "(sha256 differs)")
    return fp.load_adapter(base, d / "adapter").eval()


def count_parameters(model: nn.Module) -> int:
    """Scalars of ``model``, each shared tensor counted once."""
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
         trainer_cfg: TrainerConfig, optim: OptimConfig, schedule: ScheduleConfig,
         transform: Any, monitors: list[Any] | tuple[Any, ...] = ()) -> Any:
    """Train ``objective`` on in-memory images through the engine (no run directory)."""
    from fmlab.engine import TensorSource, Trainer

    source = TensorSource(images, labels)
    trainer = Trainer(objective, source, trainer_cfg, optim, schedule, run_dir=None,
                      transform=transform, monitors=list(monitors))
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
    """What every run of an experiment shares (decoded once).

    Attributes:
        train_images: uint8 images, indexed by train-split index through ``pos``.
        pos: train-split index -> row of ``train_images`` (-1 if not decoded).
        train_labels: labels of the whole train split.
        test_images, test_labels: the (possibly subsampled) test split.
        num_classes: classes of the source.
        unlabelled_idx: train-split indices a method's hook may ask for (PELA distils on them).
    """

    train_images: torch.Tensor
    pos: np.ndarray
    train_labels: np.ndarray
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    unlabelled_idx: np.ndarray

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """The decoded images of train-split indices ``idx``."""
        return self.train_images[torch.as_tensor(self.pos[idx])]




def _prepare(cfg: FinetuneConfig, method: str, s: FinetuneSettings, seed: int, inputs: RunInputs,
             run_dir: Path, device: torch.device) -> tuple[nn.Module, bool, dict[str, float]]:
    """The base with its seeded head, prepared by the method's hook and moved to ``device``.

    Returns:
        (model, whether BatchNorm statistics train, the hook's timings).
    """
    from fmlab.peft.recipe import FinetuneContext

    model = build_base(cfg.backbone, cfg.weights, inputs.num_classes, cfg.init_seed)
    torch.manual_seed(int(seed))
    model.head.reset_parameters()
    ctx = FinetuneContext(
        settings=s, device=device, head=HEAD, fit=_fit,
        unlabelled=lambda: inputs.rows(inputs.unlabelled_idx),
        write_history=lambda name, history: _write_history(run_dir / name, history))
    opts = options_for(cfg, method)
    trains_stats = finetune_method(method).prepare_finetune(
        model, lambda m: apply_method(m, method, cfg.targets, opts), ctx)
    if cfg.init_from is not None:  # PVP stage 2: the modules start at stage 1's values
        init_modules(model, cfg.init_from)
    model.to(device)
    update_bn = s.bn_stats == "update" or (s.bn_stats == "auto" and bool(trains_stats))
    return model, update_bn, ctx.seconds


def _train(model: nn.Module, s: FinetuneSettings, split: Any, inputs: RunInputs, seed: int,
           device: torch.device, update_bn: bool) -> tuple[Any, float, int, float]:
    """Class-mean head, then engine training with validation; the best state is restored.

    Returns:
        (the engine's fit result, best validation accuracy (NaN without validation images), the
        step of the state kept, seconds of the engine's training).
    """
    from fmlab.data.recipes import TrainTransform
    from fmlab.engine.monitors import ValidationMonitor, restore_snapshot
    from fmlab.pretrain.supervised import Supervised

    x_tr, y_tr = inputs.rows(split.train), torch.as_tensor(inputs.train_labels[split.train])
    x_va, y_va = inputs.rows(split.val), torch.as_tensor(inputs.train_labels[split.val])
    if s.head_init == "class_means":
        rows = per_class_subset(y_tr, s.head_init_per_class, seed)
        init_head_class_means(model, x_tr[rows], y_tr[rows], inputs.num_classes, s.eval_batch_size)
    spe = len(split.train) // (s.trainer.batch_size * s.trainer.accumulate)
    total_epochs = max(1, math.ceil(s.trainer.max_steps / max(spe, 1))) \
        if s.trainer.max_steps else s.trainer.epochs
    every = s.eval_every_epochs or max(1, total_epochs // EVALS_PER_RUN)
    monitors = [ValidationMonitor(model, x_va, y_va, every, s.eval_batch_size)] \
        if len(split.val) else []
    for m in monitors:  # the starting point (class-mean head) is a candidate too
        m(None, device, "start")
    t0 = time.perf_counter()
    fit = _fit(Supervised.of_classifier(model, update_bn), x_tr, y_tr, s.trainer, s.optim,
               s.schedule, TrainTransform(model.preprocess, s.augment), monitors)
    train_s = time.perf_counter() - t0
    if monitors and monitors[0].best_state is not None:
        restore_snapshot(model, monitors[0].best_state)
        return fit, monitors[0].best[0], monitors[0].best_step, train_s  # type: ignore[index]
    return fit, float("nan"), fit.step, train_s


def _save(cfg: FinetuneConfig, model: nn.Module, s: FinetuneSettings, fit: Any, check: torch.Tensor,
          meta: dict[str, Any], run_dir: Path) -> None:
    """Adapter, metrics log, settings and ``finetune.json`` (what :func:`load_finetuned` reads)."""
    import fmlab.peft as fp

    fp.save_adapter(model, run_dir / "adapter")
    _write_history(run_dir / "metrics.jsonl", fit.history)
    save_config(s, run_dir / "config.yaml")
    write_json(run_dir / "finetune.json", {
        "backbone": cfg.backbone, "weights": str(Path(cfg.weights).resolve()) if cfg.weights
        else None, "weights_sha256": getattr(model, "weights_sha256", None),
        "base_init_seed": cfg.init_seed, **meta, "adapter": "adapter",
        # logits of the first test images, so a reload can be checked against the trained model
        "check_logits": check.tolist()})


def run_one(cfg: FinetuneConfig, method: str, shots: int | str, seed: int, split: Any,
            split_sha: str, inputs: RunInputs, run_dir: Path) -> dict[str, Any]:
    """Train, select on validation, test and save one (method, shots, seed) run.

    Args:
        cfg: the experiment.
        method: a fine-tuning method name.
        shots, seed: which split file.
        split: the split (``train``/``val`` indices into the train split).
        split_sha: its sha256.
        inputs: the decoded images.
        run_dir: where the run's files go.

    Returns:
        The run's record (accuracy, costs, settings, ...).
    """
    import fmlab.peft as fp
    from fmlab.engine import resolve_device
    from fmlab.evaluate import predict_logits
    from fmlab.utils.profiling import PeakMemory

    s = resolve_settings(method, len(split.train), cfg.overrides)
    device = resolve_device(s.trainer.device)
    s.trainer.seed = int(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with PeakMemory(device) as mem:
        model, update_bn, hook_s = _prepare(cfg, method, s, seed, inputs, run_dir, device)
        fit, val_acc, best_step, train_s = _train(model, s, split, inputs, seed, device, update_bn)
        logits = predict_logits(model, inputs.test_images, s.eval_batch_size)
        check = predict_logits(model, inputs.test_images[:CHECK_IMAGES], s.eval_batch_size)
    seconds = time.perf_counter() - t0
    acc = float((logits.argmax(1) == inputs.test_labels).float().mean())
    model.cpu()
    ids = {"method": method, "shots": shots, "seed": int(seed), "split_sha256": split_sha}
    _save(cfg, model, s, fit, check, {"num_classes": inputs.num_classes, **ids}, run_dir)
    return {
        **{k: ids[k] for k in ("method", "shots", "seed")}, "accuracy": acc,
        "val_accuracy": val_acc, "best_step": best_step, "steps": fit.step,
        "trainable_parameters": fp.trainable_parameters(model),
        "total_parameters": count_parameters(model),
        "peak_memory_mb": round(mem.peak_mb, 1), "memory_measure": mem.method,
        "seconds": round(seconds, 2), "train_seconds": round(train_s, 2),
        **{f"{stage}_seconds": round(t, 2) for stage, t in hook_s.items()}, "device": str(device),
        "split_sha256": split_sha, "n_train": len(split.train), "n_val": len(split.val),
        "n_test": len(inputs.test_labels), "run_dir": str(run_dir),
        "hyperparameters": {"options": options_for(cfg, method), "targets": cfg.targets,
                            "settings": config_to_dict(s), "stages": fp.adapter_stages(model)},
    }
