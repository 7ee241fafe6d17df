"""The pre-training experiment behind ``fmlab pretrain``: config -> data, backbone, objective,
transform, monitors -> :class:`fmlab.engine.Trainer` -> an encoder ``create_backbone`` can load.

Config: :mod:`fmlab.experiments.pretrain_config` (sections generated from the objective's
constructor and ``default_transform`` signatures). What the run itself determines is filled in here,
never in the config, as each objective class declares it (see :class:`fmlab.pretrain.Objective`):
the encoder, its ``needs`` (the dataset size, the number of classes, labels, or what the class
``provide``-s itself, e.g. a distillation teacher), the image size / channels / normalisation
(from the backbone's preprocessing spec, so training views and evaluation features are
normalised alike) and the objective's ``transform_arguments`` (a ViT's patch size, a mask ratio).
No objective is named here.

Data: the ``data.split`` split, put in a seeded order (``data.order_seed``; CIFAR-10's file is
sorted by class); the last ``data.val_size`` images of that order are held out as the labelled
queries of the online kNN monitor (never the test split), the others are the training set, of
which ``data.limit`` keeps the first M. ``data.label_noise`` = p flips each training label
with probability p to a uniformly drawn different class (seeded by ``data.noise_seed``,
:mod:`fmlab.data.label_noise`); the held-out queries keep clean labels, while the kNN bank, drawn
from the training set, carries the noisy ones the objective sees. The kNN bank is drawn from the training set
(``monitor.max_train`` images). Images sit decoded in memory as uint8; images whose size
differs from the backbone's input (MNIST 28 px) are resized (bilinear) before augmentation,
and grey images are repeated to RGB when the backbone wants 3 channels — the same rules its
evaluation preprocessing applies.

Export: ``RUN_DIR/encoder.safetensors`` holds the backbone trunk's weights, loadable with
``create_backbone(architecture, weights=..., **kwargs)``; ``encoder.json`` records
``architecture`` and ``kwargs``. An objective may patch the export so that it loads under the
plain architecture (:meth:`fmlab.pretrain.Objective.export_patch`; MP3 adds all-zero position
embeddings, which leaves every feature unchanged). A warm-up longer than the run is shortened
by the engine to a tenth of the run, with a warning, as for every command; the run's config.yaml
records the value used.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.engine.config import expand_path
from fmlab.errors import ConfigError, DataError, FmlabError
from fmlab.experiments.pretrain_config import (
    ModelConfig,
    PretrainConfig,
    PretrainDataConfig,
    load_pretrain_config,
    objective_class,
    pretrain_config_class,
)

__all__ = ["ModelConfig", "PretrainConfig", "PretrainData", "PretrainDataConfig",
           "PretrainResult", "build_pretrain", "finalize_export", "load_pretrain_config",
           "load_pretrain_data", "pretrain_config_class", "run_pretrain"]


# --------------------------------------------------------------------------- data


@dataclass
class PretrainData:
    """In-memory training set (``images``, ``labels``, ``index``) and held-out monitor queries."""

    train: Any  # fmlab.engine.TensorSource
    val: Any | None
    class_names: list[str] | None
    image_shape: tuple[int, ...]
    content_hash: str

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)


def load_pretrain_data(cfg: PretrainDataConfig) -> PretrainData:
    """Decode the training images (and the held-out monitor queries) of ``cfg`` into memory."""
    from fmlab.data import ImageTextSplit, open_source
    from fmlab.engine.data import TensorSource

    source = open_source(cfg.source, cfg.data_root)
    split = source.split(cfg.split)
    images = split.images if isinstance(split, ImageTextSplit) else split
    n = len(images)
    n_train = n - cfg.val_size
    if n_train < 2:
        raise ConfigError(f"data.val_size: {cfg.val_size} leaves {max(n_train, 0)} of the "
                          f"{n} images of {cfg.source}:{cfg.split} for training")
    keep = min(cfg.limit, n_train) if cfg.limit else n_train
    order = (np.arange(n) if cfg.order_seed is None
             else np.random.default_rng(cfg.order_seed).permutation(n))
    labels = _noisy_labels(cfg, images)
    train_idx = order[:keep]
    if getattr(images, "streams", False):  # wds: shards: decode per batch, memory stays flat
        from fmlab.engine.data import SplitSource

        train = SplitSource(images, train_idx)
        shape = images.image_shape
    else:
        x = images.decode(train_idx)
        y = None if labels is None else labels[train_idx]
        train = TensorSource(x, y, index=np.arange(keep))
        shape = tuple(x.shape[1:])
    val = None
    if cfg.val_size:
        val_idx = order[n_train:]
        val = TensorSource(images.decode(val_idx),  # clean labels: the monitor's queries
                           None if images.labels is None else images.labels[val_idx])
    return PretrainData(train, val, images.class_names, shape, images.content_hash)


def _noisy_labels(cfg: PretrainDataConfig, images: Any) -> np.ndarray | None:
    """The split's labels with ``data.label_noise`` applied (drawn per image of the whole split,
    so an image's noisy label does not depend on ``data.limit`` or ``data.val_size``)."""
    from fmlab.data.label_noise import symmetric_label_noise

    labels = images.labels
    if not cfg.label_noise:
        return labels
    if labels is None:
        raise ConfigError(f"data.label_noise: {cfg.label_noise} needs labels; "
                          f"{cfg.source}:{cfg.split} has none")
    if getattr(images, "streams", False):
        raise ConfigError(f"data.label_noise: {cfg.label_noise} is not supported for streamed "
                          f"(wds:) sources")
    n_classes = (len(images.class_names) if images.class_names is not None
                 else int(np.max(labels)) + 1)
    return symmetric_label_noise(labels, float(cfg.label_noise), n_classes, cfg.noise_seed,
                                 key="data.label_noise")


# --------------------------------------------------------------------------- building


def _encoder_argument(cls: type, bb: Any, arch: str, name: str) -> Any:
    """The Backbone itself, or its trunk for objectives typed on a concrete encoder (MAE/MP3)."""
    from torch import nn

    want = typing.get_type_hints(cls.__init__).get("encoder", nn.Module)
    if want is nn.Module or not isinstance(want, type):
        return bb
    if not isinstance(bb.trunk, want):
        raise ConfigError(f"model.arch: objective {name!r} needs a {want.__name__} encoder "
                          f"(e.g. vit_tiny_cifar), {arch!r} is a {type(bb.trunk).__name__}")
    return bb.trunk


def _objective_arguments(cls: Any, cfg: PretrainConfig, data: PretrainData) -> dict[str, Any]:
    """Constructor arguments: the config section, then what the class ``needs`` from the run."""
    name, where = cfg.objective.name, f"{cfg.data.source}:{cfg.data.split}"
    not_args = {"name", *(f[0] for f in cls.config_fields)}
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.objective).items() if k not in not_args}
    for need in cls.needs:
        if need == "labels":
            if data.train.labels is None:
                raise DataError(f"objective {name!r} needs labels; {where} has none")
        elif need == "num_samples":
            kwargs[need] = len(data.train)
        elif need == "data_root":
            kwargs[need] = cfg.data.data_root
        elif need in ("num_classes", "class_names"):
            if data.num_classes is None:
                raise DataError(f"objective {name!r} needs class labels; {cfg.data.source} has none")
            kwargs[need] = data.num_classes if need == "num_classes" else list(data.class_names)
        else:
            kwargs[need] = cls.provide(need, cfg.objective)
    return kwargs


def _build_transform(obj: Any, cfg: PretrainConfig, spec: Any, image_shape: tuple[int, ...]) -> Any:
    """The objective's ``default_transform`` at the backbone's input, resizing images first
    when their size differs (MNIST's 28 px to 32, as the evaluation preprocessing does)."""
    from fmlab.data import augment as A

    h, w = spec.input_size
    if h != w:
        raise ConfigError(f"model.arch: {cfg.model.arch!r} takes {h}x{w} images; the pre-training "
                          f"transforms need square inputs")
    h = w = obj.transform_image_size(h)  # SatMAE++ crops at its top target scale
    tf_kwargs = dict(dataclasses.asdict(cfg.augment))
    tf_kwargs.update(image_size=h, mean=tuple(spec.mean), std=tuple(spec.std),
                     channels=spec.channels, **obj.transform_arguments())
    try:
        transform = type(obj).default_transform(**tf_kwargs)
    except ConfigError as e:
        raise ConfigError(f"augment ({cfg.objective.name}): {e}") from None
    if tuple(image_shape[:2]) != (h, w):
        def first_resize(view: Any) -> Any:
            return A.Compose([A.Resize((h, w)), view])

        for key, views in transform.outputs.items():
            transform.outputs[key] = (first_resize(views) if isinstance(views, A.Compose)
                                      else [first_resize(v) for v in views])
    return obj.wrap_transform(transform, spec)


def build_pretrain(cfg: PretrainConfig, data: PretrainData) -> tuple[Any, Any, Any]:
    """Build what one run trains; initial weights are seeded from ``trainer.seed``.

    Args:
        cfg: the run's config (its objective's generated sections).
        data: the decoded training data (its size and labels fill the objective's ``needs``).

    Returns:
        ``(objective, batch transform, backbone)``.
    """
    import torch

    from fmlab.models import create_backbone

    name = cfg.objective.name
    cls = objective_class(name)
    torch.manual_seed(cfg.trainer.seed)
    bb = create_backbone(cfg.model.arch, weights=expand_path(cfg.model.weights, "model.weights"),
                         **cfg.model.kwargs)
    if getattr(cls, "builds_terms", False):  # a composite: its terms come from cfg.objectives
        from fmlab.experiments.pretrain_composite import build_composite

        obj, transform = build_composite(cls, cfg, data, bb)
        return obj, transform, bb
    kwargs = _objective_arguments(cls, cfg, data)
    try:
        obj = cls(encoder=_encoder_argument(cls, bb, cfg.model.arch, name), **kwargs)
    except ConfigError as e:
        raise ConfigError(f"objective ({name}): {e}") from None
    if getattr(obj, "preprocess", None) is None:
        obj.preprocess = bb.preprocess  # monitors embed raw images exactly as evaluation will
    return obj, _build_transform(obj, cfg, bb.preprocess, data.image_shape), bb


# --------------------------------------------------------------------------- export


def finalize_export(cfg: PretrainConfig, obj: Any, bb: Any, run_dir: Path) -> dict[str, Any]:
    """Make ``encoder.safetensors`` loadable by ``create_backbone`` and record how.

    Runs on rank 0 after training: applies the objective's :meth:`export_patch`, checks that
    the file loads, and writes ``encoder.json``.

    Args:
        cfg: the run's config.
        obj: the trained objective.
        bb: the trained backbone.
        run_dir: the run directory holding ``encoder.safetensors``.

    Returns:
        The ``encoder.json`` record.
    """
    import json

    from safetensors.torch import load_file

    from fmlab.engine.checkpoint import write_safetensors
    from fmlab.models import create_backbone
    from fmlab.utils.io import sha256_file, write_json

    path = run_dir / "encoder.safetensors"
    patch = obj.export_patch(dict(cfg.model.kwargs))
    if patch.tensors:
        sd = load_file(str(path))
        sd.update(patch.tensors)
        write_safetensors(sd, path, {"writer": "fmlab.pretrain", "note": patch.note})
    kwargs = dict(patch.kwargs)
    if cfg.model.arch.startswith("timm:"):
        kwargs["num_classes"] = 0  # the exported trunk has no classifier
    meta_path = run_dir / "encoder.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    try:
        loaded = create_backbone(cfg.model.arch, weights=path, **kwargs)
        status = "ok"
        if loaded.feature_dim != bb.feature_dim:
            status = f"feature_dim {loaded.feature_dim} != {bb.feature_dim}"
    except FmlabError as e:
        status = f"failed: {e}"
        warnings.warn(f"{path} does not load with create_backbone({cfg.model.arch!r}, "
                      f"**{kwargs}): {e}", stacklevel=2)
    call = ", ".join([repr(cfg.model.arch), f"weights='{path}'"] +
                     [f"{k}={v!r}" for k, v in kwargs.items()])
    meta.update({
        "name": bb.name, "architecture": cfg.model.arch, "kwargs": kwargs,
        "train_kwargs": dict(cfg.model.kwargs), "objective": cfg.objective.name,
        "feature_dim": bb.feature_dim, "preprocess": bb.preprocess.to_dict(),
        "weights_sha256": sha256_file(path), "load": f"create_backbone({call})",
        "load_check": status,
    })
    write_json(meta_path, meta)
    return meta


def save_objective_picture(cfg: PretrainConfig, obj: Any, data: PretrainData,
                           run_dir: Path, n: int = 8) -> Path | None:
    """Let the objective draw itself on ``n`` held-out images (training ones when none are
    held out) into ``RUN_DIR/<objective>.png``; its random draws are seeded from
    ``trainer.seed``, so the picture is reproducible.

    Returns:
        The PNG written, or None when the objective draws nothing.
    """
    import torch

    source = data.val if data.val is not None and len(data.val) else data.train
    raw = torch.as_tensor(source.get_batch(np.arange(min(n, len(source))))["images"])  # any source
    was_training = obj.training
    obj.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.trainer.seed)
            return obj.save_picture(obj.prepare(raw), run_dir / f"{cfg.objective.name}.png")
    finally:
        obj.train(was_training)


# --------------------------------------------------------------------------- running


@dataclass
class PretrainResult:
    """What :func:`run_pretrain` reports (the files are in ``run_dir``)."""

    run_dir: Path
    step: int
    max_steps: int
    resumed_from: int | None
    encoder_path: Path | None
    encoder: dict[str, Any] | None = None  # encoder.json on rank 0
    last_loss: float | None = None
    monitor: dict[str, float] | None = None  # the last monitor record
    is_main: bool = True


def run_pretrain(cfg: PretrainConfig, out: str | os.PathLike, resume: bool = False,
                 data: PretrainData | None = None) -> PretrainResult:
    """Train ``cfg`` into a run directory.

    Args:
        cfg: the run's config (:func:`load_pretrain_config`).
        out: the run directory (refused when it already holds checkpoints, unless resuming).
        resume: continue the last checkpoint in ``out``.
        data: already decoded data (default: :func:`load_pretrain_data` of ``cfg.data``).

    Returns:
        A :class:`PretrainResult`.
    """
    from fmlab.engine import EmbeddingMonitor, Trainer
    from fmlab.engine.checkpoint import latest_checkpoint
    from fmlab.engine.distributed import current_dist

    run_dir = Path(out)
    if not resume and latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run with checkpoints; continue it with "
                          f"--resume {run_dir} or choose a new --out")
    data = data if data is not None else load_pretrain_data(cfg.data)
    obj, transform, bb = build_pretrain(cfg, data)
    monitors = []
    if data.val is not None and cfg.monitor.every_epochs > 0:
        monitors.append(EmbeddingMonitor.from_config(cfg.monitor, data.val, data.train,
                                                     seed=cfg.trainer.seed))
    trainer = Trainer.from_config(obj, data.train, cfg, run_dir=run_dir, transform=transform,
                                  monitors=monitors)
    res = trainer.fit(resume=run_dir if resume else None)
    info = current_dist()
    meta = None
    if info.is_main and res.encoder_path is not None:
        meta = finalize_export(cfg, obj, bb, run_dir)
        save_objective_picture(cfg, obj, data, run_dir)
    losses = [r["loss"] for r in res.history if "loss" in r]
    mons = [r["monitor"] for r in res.history if "monitor" in r]
    return PretrainResult(run_dir, res.step, res.max_steps, res.resumed_from, res.encoder_path,
                          meta, losses[-1] if losses else None, mons[-1] if mons else None,
                          info.is_main)
