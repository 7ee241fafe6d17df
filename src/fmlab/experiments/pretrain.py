"""The pre-training experiment behind ``fmlab pretrain``: config -> data, backbone, objective,
transform, monitors -> :class:`fmlab.engine.Trainer` -> an encoder ``create_backbone`` can load.

Config: one YAML file per (objective, data), read into typed dataclasses. The ``objective`` and
``augment`` sections are generated from the objective's constructor and its
``default_transform`` signatures, so every hyperparameter an objective has can be set in YAML
or with ``--set objective.temperature=0.5``, is converted to its declared type, and a misspelled
key is an error naming it — without a second, hand-kept list of each objective's options. What
the run itself determines is filled in here, never in the config: the encoder, the dataset size
(LOOK), the number of classes (supervised), the image size / channels / normalisation (from the
backbone's preprocessing spec, so training views and evaluation features are normalised alike),
and the ViT patch size and mask ratio of the MAE/MP3 transforms.

Data: the ``data.split`` split, put in a seeded order (``data.order_seed``; CIFAR-10's file is
sorted by class); the last ``data.val_size`` images of that order are held out as the labelled
queries of the online kNN monitor (never the test split), the others are the training set, of
which ``data.limit`` keeps the first M. The kNN bank is drawn from the training set
(``monitor.max_train`` images). Images sit decoded in memory as uint8; images whose size
differs from the backbone's input (MNIST 28 px) are resized (bilinear) before augmentation,
and grey images are repeated to RGB when the backbone wants 3 channels — the same rules its
evaluation preprocessing applies.

Export: ``RUN_DIR/encoder.safetensors`` holds the backbone trunk's weights, loadable with
``create_backbone(architecture, weights=..., **kwargs)``; ``encoder.json`` records
``architecture`` and ``kwargs``. MP3 trains a ViT *without* position embeddings; its export adds
all-zero position embeddings (MP3's fine-tuning recipe), which leaves every feature unchanged and
makes the file load into the default ``vit_tiny_cifar`` — so ``fmlab adapt --backbone
vit_tiny_cifar --weights RUN_DIR/encoder.safetensors`` works without architecture options.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fmlab.engine.config import (
    MonitorConfig,
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    load_config,
)
from fmlab.errors import ConfigError, DataError, FmlabError

__all__ = ["ModelConfig", "PretrainConfig", "PretrainData", "PretrainDataConfig",
           "PretrainResult", "build_pretrain", "load_pretrain_config", "load_pretrain_data",
           "pretrain_config_class", "run_pretrain"]

# constructor / transform parameters the run fills in itself (never config keys)
# (``supervised``: SimCLR's SupCon switch; the ``supcon`` objective is SimCLR with it on)
_FILLED_OBJECTIVE = {"self", "encoder", "feature_dim", "head", "num_samples", "teacher",
                     "supervised"}
_FILLED_AUGMENT = {"cls", "image_size", "mean", "std", "channels", "patch_size", "mask_ratio"}
# config keys of the distill section that describe the teacher, not Distill's arguments
_DISTILL_KEYS = ("teacher", "teacher_weights")


def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} {why}")


# --------------------------------------------------------------------------- config


@dataclass
class ModelConfig:
    """The backbone to pre-train: ``create_backbone(arch, weights=weights, **kwargs)``."""

    arch: str = "resnet20_cifar"
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # start from these weights (continued pre-training); may use ${VAR}


@dataclass
class PretrainDataConfig:
    """Training images: ``split`` in a seeded order, ``val_size`` held out at the end of that
    order, the first ``limit`` of the rest."""

    source: str = "cifar10"  # fmlab.data.open_source spec: cifar10, mnist, npz:PATH, folder:PATH
    split: str = "train"
    data_root: str | None = None  # default: $FMLAB_DATA
    limit: int = 0  # keep the first M training images (0: all)
    val_size: int = 1000  # images held out of training as kNN-monitor queries (0: none)
    # the split is first put in this seeded order (CIFAR-10's file is sorted by class), so the
    # held-out queries and the first ``limit`` images are class-mixed; null: file order
    order_seed: int | None = 0

    def validate(self, prefix: str = "data") -> None:
        _check(self.limit >= 0, f"{prefix}.limit", self.limit, "must be >= 0")
        _check(self.val_size >= 0, f"{prefix}.val_size", self.val_size, "must be >= 0")


@dataclass
class ObjectiveSection:
    """Base of the generated ``objective`` sections: the registry name of the objective."""

    name: str = "simclr"


@dataclass
class AugmentSection:
    """Base of the generated ``augment`` sections (the objective's ``default_transform``)."""


@dataclass
class PretrainConfig:
    """One pre-training run (see ``configs/pretrain/*.yaml``).

    Use :func:`pretrain_config_class` / :func:`load_pretrain_config`: they swap in the
    ``objective`` and ``augment`` sections of the named objective.
    """

    name: str = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


def _init_params(fn: Any, cls: type | None = None) -> list[tuple[inspect.Parameter, Any]]:
    """(parameter, type hint) of ``fn``'s named parameters; a ``**kwargs`` passthrough (SupCon)
    adds the parent class's constructor parameters."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: its parameter has no hint
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    out = [(p, hints.get(p.name)) for p in params
           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if cls is not None and any(p.kind is p.VAR_KEYWORD for p in params):
        parent = next((b for b in cls.__mro__[1:] if "__init__" in b.__dict__), None)
        if parent is not None and parent is not object:
            have = {p.name for p, _ in out}
            out += [(p, h) for p, h in _init_params(parent.__dict__["__init__"], parent)
                    if p.name not in have]
    return out


def _section(cname: str, fn: Any, skip: set[str], base: type, cls: type | None = None,
             extra: tuple[tuple[str, Any, Any], ...] = ()) -> type:
    """A dataclass (subclass of ``base``) whose fields are ``fn``'s typed keyword parameters
    with defaults, minus ``skip``, plus ``extra`` (name, type, default) fields."""
    fields: list[tuple[str, Any, Any]] = []
    for p, hint in _init_params(fn, cls):
        if p.name in skip or hint is None or p.default is inspect.Parameter.empty:
            continue  # filled by the run, untyped, or required (the constructor will say so)
        fields.append((p.name, hint, field(default=p.default)))
    fields += [(name, tp, field(default=default)) for name, tp, default in extra]
    owner = cls.__name__ if cls is not None else fn.__qualname__
    return dataclasses.make_dataclass(cname, fields, bases=(base,),
                                      namespace={"__doc__": f"Options of {owner}."})


_CLASSES: dict[str, type] = {}


def pretrain_config_class(objective: str) -> type[PretrainConfig]:
    """The :class:`PretrainConfig` subclass whose ``objective``/``augment`` sections are typed
    from objective ``objective``'s constructor and ``default_transform``."""
    from fmlab.pretrain import OBJECTIVES

    if objective in _CLASSES:
        return _CLASSES[objective]
    if objective not in OBJECTIVES:
        import difflib

        close = difflib.get_close_matches(objective, OBJECTIVES.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"objective.name: unknown objective {objective!r}{hint}; known: "
                          f"{', '.join(OBJECTIVES.names())}")
    cls = OBJECTIVES.get(objective)
    extra: tuple[tuple[str, Any, Any], ...] = (("name", str, objective),)
    if objective == "distill":
        extra += (("teacher", str, "resnet56_cifar"), ("teacher_weights", str | None, None))
    tag = re.sub(r"\W", "_", objective)
    obj_section = _section(f"Objective_{tag}", cls.__init__, _FILLED_OBJECTIVE, ObjectiveSection,
                           cls, extra)
    aug_section = _section(f"Augment_{tag}", cls.default_transform, _FILLED_AUGMENT,
                           AugmentSection)
    config_cls = dataclasses.make_dataclass(
        f"PretrainConfig_{tag}",
        [("objective", obj_section, field(default_factory=obj_section)),
         ("augment", aug_section, field(default_factory=aug_section))],
        bases=(PretrainConfig,),
        namespace={"__doc__": PretrainConfig.__doc__, "validate": _validate_config})
    _CLASSES[objective] = config_cls
    return config_cls


def _validate_config(cfg: PretrainConfig) -> None:
    """Cross-section checks (each section has already checked its own keys)."""
    from fmlab.pretrain import OBJECTIVES

    _check(cfg.objective.name in OBJECTIVES, "objective.name", cfg.objective.name,
           f"is not a registered objective ({', '.join(OBJECTIVES.names())})")
    _check(_CLASSES.get(cfg.objective.name) is type(cfg), "objective.name", cfg.objective.name,
           "does not match the objective section this config was loaded with")


def _read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return data if isinstance(data, dict) else {}


def load_pretrain_config(path: str | os.PathLike | None,
                         overrides: typing.Iterable[str] = ()) -> PretrainConfig:
    """Read a pre-training YAML (``objective.name`` picks the sections) plus ``--set`` items."""
    overrides = list(overrides)
    name = None
    if path is not None:
        section = _read_mapping(path).get("objective")
        if isinstance(section, dict) and section.get("name") is not None:
            name = str(section["name"])
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "objective.name":
            name = value.strip()
    if name is None:
        raise ConfigError(f"{path or '<defaults>'}: objective.name is missing (e.g. simclr, moco, "
                          f"dino, mae, mp3, look, distill, supervised)")
    return load_config(path, pretrain_config_class(name), overrides)


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


def _decode(split: Any, idx: np.ndarray, chunk: int = 4096) -> np.ndarray:
    parts = [split.get_batch(idx[i:i + chunk]) for i in range(0, len(idx), chunk)]
    return np.concatenate(parts) if parts else split.get_batch(idx)


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
    labels = images.labels
    train_idx = order[:keep]
    x = _decode(images, train_idx)
    y = None if labels is None else labels[train_idx]
    train = TensorSource(x, y, index=np.arange(keep))
    val = None
    if cfg.val_size:
        val_idx = order[n_train:]
        val = TensorSource(_decode(images, val_idx),
                           None if labels is None else labels[val_idx])
    return PretrainData(train, val, images.class_names, tuple(x.shape[1:]),
                        images.content_hash)


# --------------------------------------------------------------------------- building


def _expand(value: str | None, key: str) -> str | None:
    """``${VAR}`` / ``~`` expansion; an unset variable is an error naming the key."""
    if value is None:
        return None
    out = os.path.expanduser(os.path.expandvars(value))
    missing = re.findall(r"\$\{?(\w+)\}?", out)
    if missing:
        raise ConfigError(f"{key}: {value!r} uses ${missing[0]}, which is not set "
                          f"(export {missing[0]}=... or give a full path)")
    return out


class _TeacherImages:
    """Add ``teacher_images``: the student's augmented view re-normalised for a teacher whose
    preprocessing differs (LeNet-5's 1-channel [0, 1] input vs the student's RGB ImageNet
    statistics). Both networks then see exactly the same crop."""

    def __init__(self, base: Any, student: Any, teacher: Any) -> None:
        self.base, self.student, self.teacher = base, student, teacher

    def __call__(self, batch: Any, generator: Any) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F

        out = self.base(batch, generator)
        x = out["images"]
        mean = torch.tensor(self.student.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.student.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x01 = x * std + mean
        t = self.teacher
        if x01.shape[1] != t.channels:
            if t.channels == 1:
                w = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype, device=x.device)
                x01 = (x01 * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                x01 = x01.expand(-1, t.channels, -1, -1)
        if tuple(x01.shape[-2:]) != tuple(t.input_size):
            x01 = F.interpolate(x01, size=tuple(t.input_size), mode="bilinear",
                                align_corners=False)
        tm = torch.tensor(t.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        ts = torch.tensor(t.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        out["teacher_images"] = (x01 - tm) / ts
        return out


def _same_preprocess(a: Any, b: Any) -> bool:
    return (tuple(a.input_size), a.channels, tuple(a.mean), tuple(a.std)) == \
        (tuple(b.input_size), b.channels, tuple(b.mean), tuple(b.std))


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


def build_teacher(section: Any) -> Any:
    """The frozen distillation teacher (a Backbone with its classifier head)."""
    from fmlab.models import create_backbone

    weights = _expand(section.teacher_weights, "objective.teacher_weights")
    if weights is None:
        warnings.warn("objective.teacher_weights is null: distilling from a randomly "
                      "initialised teacher (only useful for smoke tests)", stacklevel=2)
    teacher = create_backbone(section.teacher, weights=weights)
    if getattr(teacher, "head", None) is None:
        raise ConfigError(f"objective.teacher: {section.teacher!r} has no classifier head to "
                          f"distil from")
    return teacher


def build_pretrain(cfg: PretrainConfig, data: PretrainData) -> tuple[Any, Any, Any]:
    """(objective, transform, backbone) for ``cfg`` on ``data``; initial weights are seeded."""
    import torch

    from fmlab.data import augment as A
    from fmlab.models import create_backbone
    from fmlab.pretrain import OBJECTIVES

    name = cfg.objective.name
    cls = OBJECTIVES.get(name)
    torch.manual_seed(cfg.trainer.seed)
    bb = create_backbone(cfg.model.arch, weights=_expand(cfg.model.weights, "model.weights"),
                         **cfg.model.kwargs)
    spec = bb.preprocess
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.objective).items()
              if k != "name" and k not in _DISTILL_KEYS}
    params = {p.name for p, _ in _init_params(cls.__init__, cls)}
    teacher = None
    if "num_samples" in params:
        kwargs["num_samples"] = len(data.train)
    if "num_classes" in params and name != "distill":
        if data.num_classes is None:
            raise DataError(f"objective {name!r} needs class labels; {cfg.data.source} has none")
        kwargs.setdefault("num_classes", data.num_classes)
    if name in ("look", "supervised", "supcon") and data.train.labels is None:
        raise DataError(f"objective {name!r} needs labels; {cfg.data.source}:{cfg.data.split} "
                        f"has none")
    if "teacher" in params:
        teacher = build_teacher(cfg.objective)
        kwargs["teacher"] = teacher
    try:
        obj = cls(encoder=_encoder_argument(cls, bb, cfg.model.arch, name), **kwargs)
    except ConfigError as e:
        raise ConfigError(f"objective ({name}): {e}") from None
    if getattr(obj, "preprocess", None) is None:
        obj.preprocess = spec  # monitors embed raw images exactly as evaluation will

    h, w = spec.input_size
    if h != w:
        raise ConfigError(f"model.arch: {cfg.model.arch!r} takes {h}x{w} images; the pre-training "
                          f"transforms need square inputs")
    tf_params = {p.name for p, _ in _init_params(cls.default_transform)}
    tf_kwargs = dict(dataclasses.asdict(cfg.augment))
    tf_kwargs.update(image_size=h, mean=tuple(spec.mean), std=tuple(spec.std),
                     channels=spec.channels)
    if "patch_size" in tf_params:
        tf_kwargs["patch_size"] = int(obj.encoder.patch_size)
    if "mask_ratio" in tf_params:
        tf_kwargs["mask_ratio"] = float(obj.mask_ratio)
    try:
        transform = cls.default_transform(**tf_kwargs)
    except ConfigError as e:
        raise ConfigError(f"augment ({name}): {e}") from None
    if tuple(data.image_shape[:2]) != (h, w):
        # resize (bilinear) to the backbone's input before augmenting (MNIST's 28 px to 32), as
        # the backbone's evaluation preprocessing does
        def first_resize(view: Any) -> Any:
            return A.Compose([A.Resize((h, w)), view])

        for key, views in transform.outputs.items():
            transform.outputs[key] = (first_resize(views) if isinstance(views, A.Compose)
                                      else [first_resize(v) for v in views])
    if teacher is not None and not _same_preprocess(teacher.preprocess, spec):
        transform = _TeacherImages(transform, spec, teacher.preprocess)
    return obj, transform, bb


# --------------------------------------------------------------------------- export


def _loadable_kwargs(cfg: PretrainConfig, obj: Any) -> dict[str, Any]:
    """The ``create_backbone`` kwargs under which the exported trunk loads."""
    kw = dict(cfg.model.kwargs)
    if cfg.model.arch.startswith("timm:"):
        kw["num_classes"] = 0  # the exported trunk has no classifier
    enc = obj.encoder
    if getattr(enc, "pos_embed", "absent") is None and kw.get("pos_embed") is False:
        kw.pop("pos_embed")  # exported with zero position embeddings (see module doc)
    return kw


def finalize_export(cfg: PretrainConfig, obj: Any, bb: Any, run_dir: Path) -> dict[str, Any]:
    """Make ``encoder.safetensors`` loadable by ``create_backbone`` and record how in
    ``encoder.json``; returns that record. Runs on rank 0 after training."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from fmlab.models import create_backbone
    from fmlab.utils.io import atomic_path, sha256_file, write_json

    path = run_dir / "encoder.safetensors"
    enc = obj.encoder
    if getattr(enc, "pos_embed", "absent") is None and cfg.model.kwargs.get("pos_embed") is False:
        sd = load_file(str(path))
        sd["pos_embed"] = torch.zeros(1, enc.num_patches, enc.embed_dim)
        with atomic_path(path) as tmp:
            save_file(sd, str(tmp), metadata={"writer": "fmlab.pretrain",
                                              "note": "MP3: zero position embeddings added"})
    kwargs = _loadable_kwargs(cfg, obj)
    meta_path = run_dir / "encoder.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    try:
        loaded = create_backbone(cfg.model.arch, weights=path, **kwargs)
        check = "ok"
        if loaded.feature_dim != bb.feature_dim:
            check = f"feature_dim {loaded.feature_dim} != {bb.feature_dim}"
    except FmlabError as e:
        check = f"failed: {e}"
        warnings.warn(f"{path} does not load with create_backbone({cfg.model.arch!r}, "
                      f"**{kwargs}): {e}", stacklevel=2)
    call = ", ".join([repr(cfg.model.arch), f"weights='{path}'"] +
                     [f"{k}={v!r}" for k, v in kwargs.items()])
    meta.update({
        "name": bb.name, "architecture": cfg.model.arch, "kwargs": kwargs,
        "train_kwargs": dict(cfg.model.kwargs), "objective": cfg.objective.name,
        "feature_dim": bb.feature_dim, "preprocess": bb.preprocess.to_dict(),
        "weights_sha256": sha256_file(path), "load": f"create_backbone({call})",
        "load_check": check,
    })
    write_json(meta_path, meta)
    return meta


# --------------------------------------------------------------------------- running


def _fit_warmup(cfg: PretrainConfig, n_train: int) -> None:
    """Shorten a warm-up that would not fit the run (``--set trainer.max_steps=2`` on a config
    with 20 warm-up steps) to a tenth of the run, with a warning naming the key; the saved
    config.yaml records the value used."""
    t, s = cfg.trainer, cfg.schedule
    spe = n_train // (t.batch_size * t.accumulate)
    if spe == 0:
        return  # the engine reports the batch that does not fit the data
    total = t.max_steps or t.epochs * spe
    warmup = s.warmup_steps or round(s.warmup_epochs * spe)
    if 0 < total <= warmup:
        s.warmup_steps, s.warmup_epochs = total // 10, 0.0
        warnings.warn(f"schedule.warmup_steps: the warm-up ({warmup} steps) does not fit a run "
                      f"of {total} steps; using {s.warmup_steps}", stacklevel=2)


@dataclass
class PretrainResult:
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
    """Train ``cfg`` into run directory ``out`` (``resume=True``: continue its last checkpoint)."""
    from fmlab.engine import EmbeddingMonitor, Trainer
    from fmlab.engine.checkpoint import latest_checkpoint
    from fmlab.engine.distributed import current_dist

    run_dir = Path(out)
    if not resume and latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run with checkpoints; continue it with "
                          f"--resume {run_dir} or choose a new --out")
    data = data if data is not None else load_pretrain_data(cfg.data)
    _fit_warmup(cfg, len(data.train))
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
    losses = [r["loss"] for r in res.history if "loss" in r]
    mons = [r["monitor"] for r in res.history if "monitor" in r]
    return PretrainResult(run_dir, res.step, res.max_steps, res.resumed_from, res.encoder_path,
                          meta, losses[-1] if losses else None, mons[-1] if mons else None,
                          info.is_main)
