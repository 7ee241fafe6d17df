"""DITO, reduced, behind ``fmlab region``: region-text pre-training on ``canvas`` and box retrieval by text.

``pretrain``: a canvas spec (any object pool: ``objects=mnist``, ``objects=npz:PATH``) → images and caption
tokens (a fixed word vocabulary of the canvas grammar, :func:`~fmlab.multimodal.region_eval.canvas_vocab`)
→ :class:`~fmlab.multimodal.region.RegionTextObjective` (``objective.region: true`` region-text,
``false`` the image-level CLIP baseline, same backbone and head) → :class:`fmlab.engine.Trainer`.

Base and novel classes (``data.novel`` classes drawn with ``data.novel_seed``, or named by
``data.novel_classes``): a novel class is **never a detection label**. Pre-training reads captions only,
and canvas captions name every object, so novel classes are seen in *text* (as in DITO, whose image-text
pre-training data covers every concept); the optional box-supervised term (``objective.box_weight > 0``)
sees the true boxes of base-class objects only (:class:`RegionBatcher` drops novel objects' box labels
before the objective gets the batch). With ``box_weight: 0`` (the shipped configs) no box label is used
at all and base/novel is only a reporting split.

``eval``: box retrieval on test canvases (test-split objects only) or on ``val`` (the last ``data.val``
train canvases, never trained on; tune there, not on test): every candidate box (true boxes + random
ones) of every canvas is ranked per class query; AP averaged over base and over novel classes.

Output: ``RUN/config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``encoder.safetensors``,
``region_model.safetensors`` (encoder + text tower) and ``region_model.json`` (vocabulary, classes).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.errors import ConfigError, DataError
from fmlab.utils.validation import check, non_negative_int, positive_int

DEFAULT_SOURCE = "canvas?objects=mnist&size=64&max_objects=5&n_train=20000&n_test=500&seed=0"


@dataclass
class RegionModelConfig:
    backbone: str = "resnet_cifar"
    depth: int = 8
    channels: int = 16  # backbone width
    width: int = 64  # joint embedding width D
    output_size: int = 2  # RoI-Align bins per side
    text_dim: int = 64  # bag-of-words embedding size of the caption tower
    seed: int = 0


@dataclass
class RegionObjectiveConfig:
    region: bool = True  # False: image-level CLIP baseline (global pooling)
    num_boxes: int = 16
    aggregate: Literal["max", "softmax", "mean"] = "softmax"
    beta: float = 0.1
    tau: float = 0.07
    scales: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    aspects: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    whole_image: bool = True  # the first sampled box is the whole image
    box_weight: float = 0.0  # > 0: box-classification loss on base-class boxes (novel: never labels)


@dataclass
class RegionDataConfig:
    source: str = DEFAULT_SOURCE
    limit: int = 0  # train on the first M canvases (0: all but the validation ones)
    val: int = 0  # the last `val` train canvases are held out (fmlab region eval --split val)
    novel: int = 3  # number of novel classes, drawn with novel_seed
    novel_seed: int = 0
    novel_classes: list[str] = field(default_factory=list)  # names; overrides novel/novel_seed
    attributes: bool = True  # False: drop colour and size words from captions (text names classes only)


@dataclass
class RegionEvalConfig:
    num_random: int = 16  # random candidate boxes per canvas besides the true ones
    n: int = 0  # canvases to evaluate (0: the whole split)
    seed: int = 0  # seed of the random candidate boxes
    prompt: str = "a {size} {colour} {name}"  # class query, averaged over every size and colour


@dataclass
class RegionConfig:
    model: RegionModelConfig = field(default_factory=RegionModelConfig)
    objective: RegionObjectiveConfig = field(default_factory=RegionObjectiveConfig)
    data: RegionDataConfig = field(default_factory=RegionDataConfig)
    eval: RegionEvalConfig = field(default_factory=RegionEvalConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=64, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, weight_decay=0.05))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        non_negative_int("data.limit", self.data.limit)
        non_negative_int("data.val", self.data.val)
        non_negative_int("data.novel", self.data.novel)
        positive_int("eval.num_random", self.eval.num_random)
        non_negative_int("eval.n", self.eval.n)
        check(self.data.source.startswith("canvas"), "data.source", self.data.source,
              "must be a canvas spec (canvas?objects=...)")


def load_region_config(path: str | Path | None, overrides=()) -> RegionConfig:
    """The region config of a YAML file with ``--set`` overrides (unknown keys refused by name)."""
    return load_config(path, RegionConfig, overrides)


def open_canvas(spec: str):
    """Open a canvas source (``DataError``/``ConfigError`` name what is wrong)."""
    from fmlab.data import open_source

    src = open_source(spec)
    if getattr(src, "kind", None) != "canvas":
        raise ConfigError(f"data.source: {spec!r} is not a canvas source (canvas?objects=...)")
    return src


def resolve_novel(data: RegionDataConfig, class_names: list[str]) -> tuple[list[int], list[int]]:
    """(base, novel) class indices: ``data.novel_classes`` by name, else ``data.novel`` drawn by seed.

    Examples:
        >>> resolve_novel(RegionDataConfig(novel_classes=["b"]), ["a", "b", "c"])
        ([0, 2], [1])
    """
    from fmlab.multimodal.region_eval import split_classes

    if data.novel_classes:
        unknown = [c for c in data.novel_classes if c not in class_names]
        if unknown:
            raise ConfigError(f"data.novel_classes: {unknown} not among the pool's classes {class_names}")
        novel = sorted({class_names.index(c) for c in data.novel_classes})
        check(len(novel) < len(class_names), "data.novel_classes", data.novel_classes, "leaves no base class")
        return [i for i in range(len(class_names)) if i not in novel], novel
    return split_classes(len(class_names), data.novel, data.novel_seed)


class RegionBatcher:
    """Canvas render → pre-training batch: images, caption tokens, and base-class box labels only.

    ``box_labels`` holds the row of each object's class among ``base`` (-1 for novel objects and padding),
    and novel objects' boxes are blanked to -1 like padding, so a novel class can never reach the
    objective as a detection label (nor its boxes as anything).

    Args:
        vocab: the caption vocabulary.
        base: the base classes (pool labels), in the order of the box-supervision class prompts.
        drop: caption words removed before tokenising (e.g. the colour and size words).

    Examples:
        >>> b = RegionBatcher({"a": 2, "3": 3}, [3])({"images": np.zeros((1, 4, 4, 3), np.uint8),
        ...     "captions": ["a 3"], "boxes": np.zeros((1, 2, 4), np.float32), "labels": np.array([[3, 5]])})
        >>> b["tokens"].tolist(), b["box_labels"].tolist()
        ([[2, 3]], [[0, -1]])
    """

    def __init__(self, vocab: dict[str, int], base: list[int], drop: tuple[str, ...] = ()) -> None:
        self.vocab = vocab
        self.base = [int(c) for c in base]
        self.drop = frozenset(drop)

    def __call__(self, rendered: dict) -> dict[str, torch.Tensor]:
        from fmlab.multimodal.region import canvas_region_batch

        if self.drop:
            rendered = {**rendered, "captions": [" ".join(w for w in c.replace(",", " ,").split() if w not in self.drop)
                                                 for c in rendered["captions"]]}
        batch, _ = canvas_region_batch(rendered, self.vocab)
        labels = np.asarray(rendered["labels"])
        lut = np.full(int(max(labels.max(initial=0), max(self.base, default=0))) + 2, -1, np.int64)
        lut[self.base] = np.arange(len(self.base))
        box_labels = np.where(labels >= 0, lut[np.clip(labels, 0, None)], -1)
        boxes = np.where((box_labels >= 0)[..., None], np.asarray(rendered["boxes"], np.float32), -1.0)
        batch["boxes"] = torch.as_tensor(boxes.astype(np.float32))  # novel objects' boxes are not given
        batch["box_labels"] = torch.as_tensor(box_labels)
        return batch


def attribute_words() -> tuple[str, ...]:
    """The colour and size words of canvas captions."""
    from fmlab.data.synthetic.canvas import COLOURS, SIZES

    return tuple(COLOURS) + tuple(SIZES)


def build_objective(cfg: RegionConfig, vocab: dict[str, int], class_names: list[str], base: list[int]):
    """The encoder + caption tower + objective of a config (weights seeded by ``model.seed``)."""
    from fmlab.models import create_backbone
    from fmlab.multimodal.region import CaptionEncoder, RegionEncoder, RegionTextObjective
    from fmlab.multimodal.region_eval import class_prompt_tokens

    m, o = cfg.model, cfg.objective
    backbone = create_backbone(m.backbone, depth=m.depth, width=m.channels, seed=m.seed)
    torch.manual_seed(m.seed)
    encoder = RegionEncoder(backbone, m.width, m.output_size)
    text = CaptionEncoder(max(vocab.values()) + 1, m.width, m.text_dim)
    tokens = class_prompt_tokens([class_names[c] for c in base], vocab, "a {name}")[:, 0] if o.box_weight else None
    return RegionTextObjective(encoder, text, o.region, o.num_boxes, o.aggregate, o.beta, o.tau, o.scales,
                               o.aspects, tokens, o.box_weight, o.whole_image)


@dataclass
class RegionTrainResult:
    run_dir: Path
    step: int
    last_loss: float | None
    seconds: float
    base: list[int]
    novel: list[int]


def run_region_pretrain(cfg: RegionConfig, out: str | Path, resume: bool = False) -> RegionTrainResult:
    """Pre-train (region-text or image-level) on the canvas train split; write the model files to ``out``.

    Args:
        cfg: the config.
        out: the run directory.
        resume: continue the run in ``out`` from its latest checkpoint.

    Returns:
        Where it ended (step, last logged loss, wall seconds, base/novel classes).
    """
    from fmlab.data.synthetic.batches import RenderedSource
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import save_weights
    from fmlab.multimodal.region_eval import canvas_vocab
    from fmlab.utils.io import write_json

    t0 = time.perf_counter()
    out = Path(out)
    src = open_canvas(cfg.data.source)
    names = list(src.class_names)
    base, novel = resolve_novel(cfg.data, names)
    vocab = canvas_vocab(names)
    split = src.split("train")
    n_fit = len(split) - cfg.data.val
    check(n_fit > 0, "data.val", cfg.data.val, f"leaves no training canvas of {len(split)}")
    limit = min(cfg.data.limit, n_fit) if cfg.data.limit else n_fit
    obj = build_objective(cfg, vocab, names, base)
    batcher = RegionBatcher(vocab, base, () if cfg.data.attributes else attribute_words())
    res = Trainer.from_config(obj, RenderedSource(split, batcher, limit=limit), cfg,
                              run_dir=out).fit(resume=out if resume else None)
    save_weights(obj, out / "region_model.safetensors", metadata={"step": str(res.step)})
    write_json(out / "region_model.json", {"vocab": vocab, "class_names": names, "base": base, "novel": novel,
                                           "step": res.step, "config": "config.yaml"})
    last = res.history[-1]["loss"] if res.history and "loss" in res.history[-1] else None
    return RegionTrainResult(out, res.step, last, time.perf_counter() - t0, base, novel)


def load_region_model(run: str | Path) -> tuple[RegionConfig, Any, dict]:
    """(config, objective with the trained weights, region_model.json) of a pretrain run directory."""
    import json

    from safetensors.torch import load_file

    run = Path(run)
    meta_path = run / "region_model.json"
    if not meta_path.is_file():
        raise DataError(f"--model {run}: no region_model.json (not a finished fmlab region pretrain run)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    cfg = load_region_config(run / "config.yaml")
    obj = build_objective(cfg, meta["vocab"], meta["class_names"], meta["base"])
    obj.load_state_dict(load_file(str(run / "region_model.safetensors")), strict=False)
    return cfg, obj.eval(), meta


def eval_canvases(cfg: RegionConfig, data: str | None, split: str):
    """(source spec, rendered eval canvases, split hash): ``test`` or ``val`` (last ``data.val`` train ones)."""
    spec = data or cfg.data.source
    src = open_canvas(spec)
    if split == "val":
        sp = src.split("train")
        check(cfg.data.val > 0 or data is not None, "--split", split, "the run held out no val canvases (data.val)")
        n_val = cfg.data.val if data is None else min(len(sp), cfg.data.val or len(sp))
        idx = np.arange(len(sp) - n_val, len(sp))
    elif split == "test":
        sp = src.split("test")
        idx = np.arange(len(sp))
    else:
        raise ConfigError(f"--split: {split!r} must be test or val")
    if cfg.eval.n:
        idx = idx[: cfg.eval.n]
    return spec, src, sp.render(idx), sp.content_hash


def _retrieval(obj, classes: list[int], queries: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> dict[str, Any]:
    from fmlab.multimodal.region_eval import box_retrieval

    if not classes:
        return {"ap": float("nan"), "per_class": {}, "chance": float("nan")}
    per_class, mean = box_retrieval(obj.encoder, images, boxes, labels, queries[classes], classes)
    valid = labels >= -1
    chance = float(np.nanmean([(labels[valid] == c).float().mean().item() for c in classes]))
    return {"ap": mean, "per_class": per_class, "chance": chance}


def run_region_eval(model: str | Path, data: str | None = None, split: str = "test", db: Path | None = None,
                    picture: str | Path | None = None) -> dict[str, Any]:
    """Open-vocabulary box retrieval AP of a pretrain run, base and novel classes apart.

    Args:
        model: the run directory of ``fmlab region pretrain``.
        data: a canvas spec over the same pool classes (default: the run's ``data.source``).
        split: ``test`` or ``val``.
        db: results store to record ``ap_base``, ``ap_novel``, ``ap_all`` in (None: none).
        picture: a PNG of the top-ranked boxes for each novel class (None: none).

    Returns:
        ``ap_base``, ``ap_novel``, ``ap_all``, ``chance_base``, ``chance_novel`` (AP of a random ranking
        is about the fraction of matching boxes), ``per_class``, ``n_images``, ``n_boxes``, classes.
    """
    from fmlab.multimodal.region_eval import candidate_boxes, class_prompt_tokens, class_queries

    t0 = time.perf_counter()
    cfg, obj, meta = load_region_model(model)
    spec, src, rendered, split_hash = eval_canvases(cfg, data, split)
    names = meta["class_names"]
    if list(src.class_names) != names:
        raise DataError(f"--data: classes {list(src.class_names)} differ from the model's {names}")
    images = torch.as_tensor(rendered["images"])
    gen = torch.Generator().manual_seed(cfg.eval.seed)
    boxes, labels = candidate_boxes(torch.as_tensor(rendered["boxes"]), torch.as_tensor(rendered["labels"]),
                                    cfg.eval.num_random, images.shape[1:3], gen)
    queries = class_queries(obj.text_encoder, class_prompt_tokens(names, meta["vocab"], cfg.eval.prompt))
    parts = {k: _retrieval(obj, cls, queries, boxes, labels, images)
             for k, cls in (("base", meta["base"]), ("novel", meta["novel"]), ("all", list(range(len(names)))))}
    out = {"ap_base": parts["base"]["ap"], "ap_novel": parts["novel"]["ap"], "ap_all": parts["all"]["ap"],
           "chance_base": parts["base"]["chance"], "chance_novel": parts["novel"]["chance"],
           "n_images": int(len(images)), "n_boxes": int((labels >= -1).sum()),
           "per_class": {names[c]: a for c, a in parts["all"]["per_class"].items()},
           "base": [names[c] for c in meta["base"]], "novel": [names[c] for c in meta["novel"]]}
    if picture is not None and meta["novel"]:
        from fmlab.multimodal.region_picture import draw_top_boxes

        nov = meta["novel"]
        draw_top_boxes(obj.encoder, images, boxes, labels, queries[nov], nov, [names[c] for c in nov], picture)
    _record(db, spec, split, split_hash, cfg, out, model, time.perf_counter() - t0)
    return out


def _record(db: Path | None, spec: str, split: str, split_hash: str, cfg: RegionConfig, out: dict,
            model: str | Path, seconds: float) -> None:
    """One results-store row per AP (counts, chance levels and per-class APs go to ``extra``)."""
    if db is None:
        return
    from fmlab.results import Protocol, ResultsStore

    method = "region_text" if cfg.objective.region else "image_level"
    extra = {k: out[k] for k in ("chance_base", "chance_novel", "n_images", "n_boxes", "per_class", "base", "novel")}
    extra["model"] = str(model)
    records = [{"method": method, "seed": cfg.trainer.seed, "hyperparameters": asdict(cfg.objective),
                "metric": k, "value": float(out[k]), "seconds": seconds, "extra": extra}
               for k in ("ap_base", "ap_novel", "ap_all") if out[k] == out[k]]
    proto = Protocol.of(spec, split, split_hash=split_hash, backbone=None, model=asdict(cfg.model),
                        num_random=cfg.eval.num_random, prompt=cfg.eval.prompt)
    ResultsStore(db).record("region_retrieval", proto, records)
