"""Image-text experiments behind ``fmlab clip``: train (config → model, source, objective →
:class:`fmlab.engine.Trainer`), zero-shot and retrieval evaluation into the results store.

Training data: an image-text source (``coco_mini``, ``csv:``, ``jsonl:``; one of each image's
captions per step) or a labelled image source turned into captions by ``data.templates``
(optionally only ``data.classes``: the LiT base/unseen-class experiment). No augmentation: images
are only resized by the image backbone's preprocessing.

Output: ``RUN_DIR/config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``encoder.safetensors``
(the whole :class:`ImageTextModel`) and ``clip_model.json`` (how to rebuild it); ``--model
RUN_DIR`` then works with ``fmlab clip zeroshot/retrieval``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.errors import ConfigError, DataError
from fmlab.multimodal.clip_supcon import SupConOptions
from fmlab.multimodal.interbert import InterBertOptions
from fmlab.multimodal.lightclip import LightClipOptions
from fmlab.multimodal.model import ImageTextSpec
from fmlab.multimodal.plip import PlipOptions

DEFAULT_TEMPLATES = ["a photo of a {}."]


@dataclass
class ClipDataConfig:
    source: str = "coco_mini"
    split: str = "train"
    classes: list[str] = field(default_factory=list)  # labelled sources: caption only these
    # labelled sources: the words captions use for the classes, in the source's class order,
    # instead of its own names (MNIST's are "0".."9"; the text GANs' captions say "seven")
    class_names: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    data_root: str | None = None


@dataclass
class ClipLossConfig:
    """``loss``: a registered objective name (:data:`fmlab.multimodal.objective.CLIP_OBJECTIVES`)
    and, for objectives with options, their own sub-section below (one field each)."""

    name: str = "clip"
    cache_text: bool = True  # locked text tower: encode each distinct caption once
    interbert: InterBertOptions = field(default_factory=InterBertOptions)
    lightclip: LightClipOptions = field(default_factory=LightClipOptions)
    plip: PlipOptions = field(default_factory=PlipOptions)
    supcon: SupConOptions = field(default_factory=SupConOptions)  # clip_supcon (T2I-SupCon a)


@dataclass
class ClipTrainConfig:
    model: ImageTextSpec = field(default_factory=ImageTextSpec)
    loss: ClipLossConfig = field(default_factory=ClipLossConfig)
    data: ClipDataConfig = field(default_factory=ClipDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=64, log_every=10))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.1))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        from fmlab.multimodal.objective import check_clip_objective_name

        check_clip_objective_name(self.loss.name)
        if self.loss.name == "siglip" and self.model.init_logit_bias is None:
            raise ConfigError("model.init_logit_bias: siglip needs a bias (e.g. -10, with "
                              "model.init_logit_scale: 10)")


def load_clip_config(path: str | Path | None, overrides=()) -> ClipTrainConfig:
    return load_config(path, ClipTrainConfig, overrides)


def build_train_source(cfg: ClipDataConfig):
    from fmlab.data import open_source
    from fmlab.data.sources import ImageTextSource
    from fmlab.multimodal.data import ImageTextPairs, TemplateCaptions, resolve_classes

    source = open_source(cfg.source, cfg.data_root)
    split = source.split(cfg.split)
    if isinstance(source, ImageTextSource):
        if cfg.classes:
            raise ConfigError(f"data.classes: {cfg.data_root or cfg.source} is an image-text "
                              "source; classes apply to labelled sources only")
        return ImageTextPairs(split)
    if source.class_names is None:
        raise DataError(f"{cfg.source} has neither captions nor class names to caption")
    names = caption_class_names(source.class_names, cfg.class_names, "data.class_names")
    classes = resolve_classes(names, cfg.classes) if cfg.classes else None
    return TemplateCaptions(split, names, cfg.templates, classes)


def caption_class_names(source_names: list[str], wanted: list[str] | None, key: str) -> list[str]:
    """The class words captions use: ``wanted`` (one per source class, in its order) or the
    source's own names; a ConfigError names ``key`` when the counts differ."""
    if not wanted:
        return list(source_names)
    if len(wanted) != len(source_names) or len(set(wanted)) != len(wanted):
        raise ConfigError(f"{key}: {len(wanted)} names {list(wanted)[:12]} for a source with "
                          f"{len(source_names)} classes ({', '.join(source_names)}); give one "
                          "distinct name per class, in its order")
    return [str(w) for w in wanted]


@dataclass
class ClipTrainResult:
    run_dir: Path
    step: int
    last_loss: float | None
    seconds: float


def run_clip_train(cfg: ClipTrainConfig, out: str | Path, resume: bool = False,
                   model=None) -> ClipTrainResult:
    from fmlab.engine import Trainer
    from fmlab.multimodal.io import save_image_text_model
    from fmlab.multimodal.model import ImageTextModel
    from fmlab.multimodal.objective import build_clip_objective

    t0 = time.perf_counter()
    out = Path(out)
    src = build_train_source(cfg.data)
    if model is None:
        model = ImageTextModel.from_spec(cfg.model)
    obj = build_clip_objective(model, src, cfg.loss)
    res = Trainer.from_config(obj, src, cfg, run_dir=out).fit(resume=out if resume else None)
    if res.encoder_path is not None:
        save_image_text_model(model, out, write_weights=False)
        if callable(getattr(obj, "export", None)):  # an objective's own modules (InterBERT's fusion)
            obj.export(out)
    last = res.history[-1]["loss"] if res.history and "loss" in res.history[-1] else None
    return ClipTrainResult(out, res.step, last, time.perf_counter() - t0)


def _record(db: Path | None, task: str, source: str, split: str, split_hash: str, model,
            metrics: dict, extra: dict, seconds: float) -> None:
    """One row per metric (counts and chance levels are context, not results) via the store's
    one record path."""
    if db is None:
        return
    from fmlab.results import Protocol, ResultsStore

    spec = getattr(model, "spec", None)
    hyper = asdict(spec) if spec is not None else None
    records = [{"method": task, "hyperparameters": hyper, "metric": k, "value": float(v),
                "seconds": seconds, "extra": extra}
               for k, v in metrics.items() if not k.startswith(("n_", "chance_"))]
    ResultsStore(db).record(task, Protocol.of(source, split, backbone=model, split_hash=split_hash),
                            records)


def run_zeroshot(model_ref: str, data: str, split: str = "test", templates=None,
                 classes: list[str] | None = None, data_root: str | None = None,
                 db: Path | None = None, batch_size: int = 64,
                 class_names: list[str] | None = None) -> dict:
    """Zero-shot accuracy of ``model_ref`` on a labelled split; ``class_names`` replaces the
    source's class words in the prompts (as ``data.class_names`` does in training)."""
    from fmlab.adapt.zeroshot import check_templates, load_templates
    from fmlab.data import open_source
    from fmlab.multimodal.data import resolve_classes
    from fmlab.multimodal.evaluate import zeroshot_evaluate
    from fmlab.multimodal.io import load_image_text_model

    t0 = time.perf_counter()
    source = open_source(data, data_root)
    if getattr(source, "class_names", None) is None:
        raise DataError(f"{data} has no class names; zero-shot needs a labelled source")
    tmpl = (load_templates(templates) if isinstance(templates, (str, Path))
            else check_templates(list(templates or DEFAULT_TEMPLATES)))
    names = caption_class_names(source.class_names, class_names, "--class-names")
    idx = resolve_classes(names, classes) if classes else None
    sp = source.split(split)
    model = load_image_text_model(model_ref)
    out = zeroshot_evaluate(model, sp, names, tmpl, idx, batch_size)
    secs = time.perf_counter() - t0
    _record(db, "clip_zeroshot", data, split, sp.content_hash, model, out,
            {"templates": tmpl, "classes": classes, "class_names": class_names,
             "model": str(model_ref)}, secs)
    return out


def run_retrieval(model_ref: str, data: str, split: str = "val", data_root: str | None = None,
                  db: Path | None = None, batch_size: int = 64, rerank: str | None = None,
                  rerank_k: int = 10) -> dict:
    """Retrieval of ``model_ref``; with ``rerank`` (an InterBERT run) its top ``rerank_k``
    candidates per query are reordered by the fusion encoder's matching score."""
    from fmlab.data import open_source
    from fmlab.data.sources import ImageTextSource
    from fmlab.multimodal.evaluate import retrieval_evaluate
    from fmlab.multimodal.io import load_image_text_model

    t0 = time.perf_counter()
    source = open_source(data, data_root)
    if not isinstance(source, ImageTextSource):
        raise DataError(f"{data} has no captions; retrieval needs an image-text source "
                        "(coco_mini, csv:PATH, jsonl:PATH)")
    sp = source.split(split)
    model = load_image_text_model(model_ref)
    if rerank is None:
        out = retrieval_evaluate(model, sp, batch_size)
    else:
        from fmlab.multimodal.interbert_rerank import rerank_evaluate

        out = rerank_evaluate(model, rerank, sp, rerank_k, batch_size)
    extra = {"model": str(model_ref)} if rerank is None else {"model": str(model_ref),
                                                              "rerank": str(rerank), "rerank_k": rerank_k}
    _record(db, "clip_retrieval" if rerank is None else "clip_retrieval_rerank", data, split,
            sp.images.content_hash, model, {k: v for k, v in out.items() if k != "rerank_k"},
            extra, time.perf_counter() - t0)
    return out
