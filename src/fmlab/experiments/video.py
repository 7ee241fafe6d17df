"""Video experiments behind ``fmlab video``: X-CLIP (or its mean-pooling baseline) on the ``video`` source.

Training (:func:`run_video_train`): config -> :class:`~fmlab.multimodal.video.XCLIP` sized from the
rendered clips (frames, side, channels), class text embeddings (:class:`~fmlab.multimodal.video_text.ClassText`:
frozen ``text:minilm`` embeddings of prompts such as "a video of something moving {}" encoded once,
with a learnable projection; or a learnable table), :class:`~fmlab.multimodal.video_objective.XCLIPObjective`,
a :class:`~fmlab.data.synthetic.batches.RenderedSource` over the train split -> :class:`fmlab.engine.Trainer`.

``data.targets`` names the label kinds trained: ``appearance`` (the object's class), ``direction``
(8 compass classes) or ``speed`` (slow/fast); several kinds train one shared video embedding
against their concatenated class groups (mean of the groups' cross-entropies). Labels are those of
the clip's first object (``max_objects=1``, the default, has one). ``data.limit`` keeps the first
M training clips; ``data.shots`` keeps ``shots`` clips per class of the first target, drawn with
``trainer.seed`` from those (repeated to fill a batch).

Evaluation (:func:`run_video_eval`, in :mod:`fmlab.experiments.video_eval`) reports, per label kind,
the zero-shot accuracy through the class embeddings (trained kinds) and a linear probe on the frozen
video embedding (every kind), each with its chance level.

Output: ``RUN/config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``video_model.safetensors`` (the
objective's state: model, class text, temperature) and ``video_model.json`` (how to rebuild it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.errors import ConfigError, DataError
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

KINDS = {"appearance": "labels", "direction": "directions", "speed": "speeds"}
MODEL_FILE, META_FILE = "video_model.safetensors", "video_model.json"


@dataclass
class VideoModelConfig:
    """X-CLIP sizes and switches (frames, side and channels come from the data)."""

    patch_size: int = 8
    width: int = 64
    depth: int = 2
    heads: int = 2
    embed_dim: int = 64
    messages: bool = True
    mit: bool = True
    prompts: bool = True
    alpha: float = 0.1
    init_logit_scale: float = 1 / 0.07

    def validate(self, prefix: str = "model") -> None:
        for key in ("patch_size", "width", "depth", "heads", "embed_dim"):
            positive_int(f"{prefix}.{key}", getattr(self, key))
        finite_float(f"{prefix}.alpha", self.alpha)
        finite_float(f"{prefix}.init_logit_scale", self.init_logit_scale, low=0.0, low_open=True, high=100.0)


@dataclass
class VideoTextConfig:
    """Class text side: a frozen text tower's prompt embeddings (+ learnable map), or a learnable table."""

    kind: Literal["minilm", "learnable"] = "minilm"
    tower: str = "text:minilm"
    appearance_template: str = "a video of a {}"
    direction_template: str = "a video of something moving {}"
    speed_template: str = "a video of something moving {}"


@dataclass
class VideoDataConfig:
    """The ``video`` source spec, which label kinds to train, and how much of the train split."""

    source: str = "video?objects=mnist&n_train=4000&n_test=1000&seed=0"
    targets: list[str] = field(default_factory=lambda: ["direction"])
    limit: int = 0  # first M training clips (0: all)
    shots: int = 0  # clips per class of targets[0], drawn with trainer.seed (0: all)
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        check(len(self.targets) > 0, f"{prefix}.targets", self.targets, "must name at least one label kind")
        for t in self.targets:
            check(t in KINDS, f"{prefix}.targets", t, f"must be among {sorted(KINDS)}")
        check(len(set(self.targets)) == len(self.targets), f"{prefix}.targets", self.targets, "has a repeat")
        non_negative_int(f"{prefix}.limit", self.limit)
        non_negative_int(f"{prefix}.shots", self.shots)


@dataclass
class VideoEvalConfig:
    """Evaluation settings kept with the run: the linear probe's training clips (0: no probe)."""

    probe_train: int = 2000
    batch_size: int = 256

    def validate(self, prefix: str = "eval") -> None:
        non_negative_int(f"{prefix}.probe_train", self.probe_train)
        positive_int(f"{prefix}.batch_size", self.batch_size)


@dataclass
class VideoTrainConfig:
    model: VideoModelConfig = field(default_factory=VideoModelConfig)
    text: VideoTextConfig = field(default_factory=VideoTextConfig)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    eval: VideoEvalConfig = field(default_factory=VideoEvalConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=400, batch_size=32, log_every=50, progress=False, tensorboard=False))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.05))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_steps=20))


def load_video_config(path: str | Path | None, overrides=()) -> VideoTrainConfig:
    """Read a ``configs/video/*.yaml`` file (+ ``--set`` overrides); unknown keys are refused by name.

    Args:
        path: YAML file, or None for the defaults.
        overrides: ``"key=value"`` strings.

    Returns:
        The validated config.

    Examples:
        >>> load_video_config(None, ["data.targets=[appearance]"]).data.targets
        ['appearance']
    """
    return load_config(path, VideoTrainConfig, overrides)


def class_names(kind: str, source: Any) -> list[str]:
    """Names of the classes of one label kind (appearance: the object pool's class names).

    Examples:
        >>> class_names("speed", None)
        ['slow', 'fast']
    """
    from fmlab.data.synthetic.video import DIRECTIONS, SPEEDS

    if kind == "direction":
        return list(DIRECTIONS)
    if kind == "speed":
        return list(SPEEDS)
    names = getattr(source, "class_names", None)
    if not names:
        raise DataError("data.source: the object pool has no class names for appearance labels")
    return [str(n) for n in names]


def label_batch(rendered: dict, kinds: list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A render -> ``{"images", "labels"}``: the first object's labels of ``kinds`` ((B,) or (B, G)).

    Examples:
        >>> r = {"images": np.zeros((2, 3, 4, 4), np.uint8), "labels": np.array([[1], [2]]),
        ...      "directions": np.array([[0], [5]]), "speeds": np.array([[1], [0]])}
        >>> label_batch(r, ["direction", "speed"])["labels"].tolist()
        [[0, 1], [5, 0]]
    """
    cols = [np.asarray(rendered[KINDS[k]])[:, 0] for k in kinds]
    labels = cols[0] if len(cols) == 1 else np.stack(cols, axis=1)
    return {"images": torch.as_tensor(rendered["images"]), "labels": torch.as_tensor(labels.astype(np.int64))}


class SubsetSource:
    """A training source over chosen indices of another source (few-shot), tiled to at least ``min_len``."""

    def __init__(self, base: Any, indices: np.ndarray, min_len: int = 1) -> None:
        reps = -(-max(min_len, 1) // max(len(indices), 1))
        self.base, self.indices = base, np.tile(np.asarray(indices, dtype=np.int64), reps)

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> dict:
        return self.base.get_batch(self.indices[np.asarray(indices, dtype=np.int64)])


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` indices per class of ``labels`` (all of a class when it has fewer), drawn with ``seed``.

    Examples:
        >>> few_shot_indices(np.array([0, 1, 0, 1, 0, 2]), 2, seed=0).size
        5
    """
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def build_train_source(cfg: VideoTrainConfig, split: Any) -> Any:
    """The engine's training source: RenderedSource (``data.limit``), optionally few-shot (``data.shots``)."""
    from fmlab.data.synthetic.batches import RenderedSource

    targets = list(cfg.data.targets)
    src = RenderedSource(split, to_batch=lambda r: label_batch(r, targets), limit=cfg.data.limit)
    if not cfg.data.shots:
        return src
    first = np.concatenate([np.asarray(split.render(np.arange(s, min(s + 1024, len(src))))[KINDS[targets[0]]])[:, 0]
                            for s in range(0, len(src), 1024)])
    idx = few_shot_indices(first, cfg.data.shots, cfg.trainer.seed)
    return SubsetSource(src, idx, min_len=cfg.trainer.batch_size * cfg.trainer.accumulate)


def build_objective(meta: dict, text_features: torch.Tensor | None) -> Any:
    """The :class:`XCLIPObjective` described by ``meta`` (``video_model.json``), freshly initialised.

    Args:
        meta: ``{"xclip": XCLIPConfig fields, "targets", "class_names", "init_logit_scale", "text_kind"}``.
        text_features: frozen class features ``(K, F)`` (``text_kind`` minilm; zeros before loading
            weights), or None for a learnable table.

    Returns:
        The objective (its ``model`` is the :class:`XCLIP`).
    """
    from fmlab.multimodal.video import XCLIP, XCLIPConfig
    from fmlab.multimodal.video_objective import XCLIPObjective
    from fmlab.multimodal.video_text import ClassText

    xconf = XCLIPConfig(**meta["xclip"])
    sizes = [len(meta["class_names"][k]) for k in meta["targets"]]
    model = XCLIP(xconf)
    text = (ClassText.learnable(sum(sizes), xconf.embed_dim) if text_features is None
            else ClassText(text_features, xconf.embed_dim))
    return XCLIPObjective(model, text, meta["init_logit_scale"], groups=sizes if len(sizes) > 1 else None)


def _meta(cfg: VideoTrainConfig, source: Any, split: Any) -> dict:
    """``video_model.json``: the XCLIP config sized from one rendered clip, targets and their class names."""
    clip = np.asarray(split.render(np.array([0]))["images"])
    m = cfg.model
    xclip = {"frames": int(clip.shape[1]), "image_size": int(clip.shape[2]), "channels": 3 if clip.ndim == 5 else 1,
             "patch_size": m.patch_size, "width": m.width, "depth": m.depth, "heads": m.heads,
             "embed_dim": m.embed_dim, "messages": m.messages, "mit": m.mit, "prompts": m.prompts, "alpha": m.alpha}
    if clip.shape[2] % m.patch_size:
        raise ConfigError(f"model.patch_size: {m.patch_size} must divide the clips' side {clip.shape[2]}")
    return {"xclip": xclip, "targets": list(cfg.data.targets), "init_logit_scale": m.init_logit_scale,
            "class_names": {k: class_names(k, source) for k in cfg.data.targets},
            "text_kind": cfg.text.kind, "source": cfg.data.source, "data_root": cfg.data.data_root,
            "method": method_name(cfg.model), "probe_train": cfg.eval.probe_train,
            "eval_batch_size": cfg.eval.batch_size}


def method_name(m: VideoModelConfig) -> str:
    """``xclip`` (all three pieces), ``meanpool`` (none), else the pieces on, e.g. ``messages+mit``."""
    on = [k for k in ("messages", "mit", "prompts") if getattr(m, k)]
    return "xclip" if len(on) == 3 else ("meanpool" if not on else "+".join(on))


def text_features(cfg: VideoTextConfig, meta: dict) -> torch.Tensor | None:
    """Frozen prompt embeddings ``(K, F)`` of every target's classes, or None (learnable table)."""
    from fmlab.multimodal.video_text import class_prompts, encode_class_prompts

    if cfg.kind == "learnable":
        return None
    prompts = sum((class_prompts(getattr(cfg, f"{k}_template"), meta["class_names"][k])
                   for k in meta["targets"]), [])
    return encode_class_prompts(cfg.tower, prompts)


@dataclass
class VideoTrainResult:
    run_dir: Path
    step: int
    last_loss: float | None
    n_train: int
    seconds: float


def run_video_train(cfg: VideoTrainConfig, out: str | Path, resume: bool = False) -> VideoTrainResult:
    """Train X-CLIP (or the baseline) as ``cfg`` says; write the run folder ``out``.

    Args:
        cfg: the config (:func:`load_video_config`).
        out: run directory.
        resume: continue the run in ``out`` from its last checkpoint (bit-identical to an unbroken run).

    Returns:
        Where the run ended, its last logged loss, the number of training clips and the seconds taken.
    """
    from fmlab.data import open_source
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import save_weights
    from fmlab.utils.io import write_json

    t0 = time.perf_counter()
    out = Path(out)
    source = open_source(cfg.data.source, cfg.data.data_root)
    if not hasattr(source, "split") or "video" not in cfg.data.source.split("?")[0]:
        raise ConfigError(f"data.source: {cfg.data.source!r} is not a video source (video?objects=...)")
    split = source.split("train")
    meta = _meta(cfg, source, split)
    feats = text_features(cfg.text, meta)
    torch.manual_seed(cfg.trainer.seed)
    obj = build_objective(meta, feats)
    train_src = build_train_source(cfg, split)
    res = Trainer.from_config(obj, train_src, cfg, run_dir=out).fit(resume=out if resume else None)
    save_weights(obj, out / MODEL_FILE, metadata={"step": str(res.step), "writer": "fmlab.experiments.video"})
    write_json(out / META_FILE, {**meta, "text_feature_dim": None if feats is None else int(feats.shape[1]),
                                 "step": res.step, "n_train": len(train_src)})
    last = res.history[-1]["loss"] if res.history and "loss" in res.history[-1] else None
    return VideoTrainResult(out, res.step, last, len(train_src), time.perf_counter() - t0)
