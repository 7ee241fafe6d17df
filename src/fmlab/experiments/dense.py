"""DenseCLIP experiments behind ``fmlab dense``: train (config → model, source, objective →
:class:`fmlab.engine.Trainer`) and evaluate (mIoU on a split, results store, score-map picture).

Data: a ``canvas`` source (``canvas?objects=mnist&size=64&...`` or ``objects=npz:PATH``); each
canvas's semantic mask (0 = background, k+1 = class k) is the target. The language branch reads
the source's class names (or ``data.class_names``) as prompts. ``language: false`` is the
baseline: the same backbone and head, no text, no score map, no auxiliary loss.

Output: ``RUN_DIR/config.yaml``, ``metrics.jsonl``, ``checkpoints/`` (the engine's) and
``dense_model.safetensors`` (the objective's weights: model + background logit; a frozen text
tower is rebuilt from its name) with ``dense_model.json``; ``--model RUN_DIR`` then works with
``fmlab dense eval``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, expand_path, load_config
from fmlab.errors import ConfigError, DataError
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

WEIGHTS, META = "dense_model.safetensors", "dense_model.json"


@dataclass
class DenseModelConfig:
    backbone: str = "resnet20_cifar"  # a ResNet-style registry name (the map before pooling is read)
    depth: int = 8  # resnet_cifar only
    width: int = 16  # resnet_cifar only
    weights: str | None = None  # local pretrained weights of the backbone (${VAR} expanded)
    input_size: int = 48  # images are resized to this before the backbone (0: its own size)
    text: str = "text:minilm"  # frozen tower under learnable context, or "tiny" (offline, tests)
    n_ctx: int = 8
    center_text: bool = True  # subtract the class mean of the tower outputs (MiniLM is anisotropic)
    embed_dim: int | None = None  # the joint width D of pixel and text embeddings (None: 64, or model.clip's)
    clip: str | None = None  # a `fmlab clip train` run: its image tower, per-pixel projection and text
    ctx_init: str = ""  # model.clip only: a phrase that starts the context (e.g. "a picture of a")
    language: bool = True  # False: the language-free baseline
    context_prompting: bool = True
    decoder_layers: int = 1
    heads: int = 4
    hidden: int = 64  # the segmentation head's width
    pooling: str = "attention"  # z̄: attention or mean
    seed: int = 0  # initialisation of every module

    def validate(self, prefix: str = "model") -> None:
        for key in ("depth", "width", "n_ctx", "decoder_layers", "heads", "hidden"):
            positive_int(f"{prefix}.{key}", getattr(self, key))
        if self.embed_dim is not None:
            positive_int(f"{prefix}.embed_dim", self.embed_dim)
        if self.clip and self.weights:
            raise ConfigError(f"{prefix}.weights: {self.weights!r} conflicts with {prefix}.clip (the image tower "
                              "comes from the CLIP run); drop one")
        if self.ctx_init and not self.clip:
            raise ConfigError(f"{prefix}.ctx_init: only with {prefix}.clip")
        non_negative_int(f"{prefix}.input_size", self.input_size)
        check(self.pooling in ("attention", "mean"), f"{prefix}.pooling", self.pooling, "must be attention or mean")


@dataclass
class DenseLossConfig:
    aux_weight: float = 0.4  # weight of the score-map segmentation loss
    tau: float = 0.07  # temperature of the score map

    def validate(self, prefix: str = "loss") -> None:
        finite_float(f"{prefix}.aux_weight", self.aux_weight, low=0.0)
        finite_float(f"{prefix}.tau", self.tau, low=0.0, low_open=True)


@dataclass
class DenseDataConfig:
    source: str = "canvas?objects=mnist&size=64&max_objects=3&n_train=4000&n_test=500&seed=0"
    split: str = "train"
    limit: int = 0  # keep the first M training canvases (0: all)
    class_names: list[str] = field(default_factory=list)  # prompt names (default: the source's)
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        non_negative_int(f"{prefix}.limit", self.limit)


@dataclass
class DenseTrainConfig:
    model: DenseModelConfig = field(default_factory=DenseModelConfig)
    loss: DenseLossConfig = field(default_factory=DenseLossConfig)
    data: DenseDataConfig = field(default_factory=DenseDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=400, batch_size=16,
                                                                         log_every=25))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, weight_decay=1e-4))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def load_dense_config(path: str | Path | None, overrides=()) -> DenseTrainConfig:
    """The config file with ``--set`` overrides applied; unknown keys are refused by name.

    Examples:
        >>> load_dense_config(None, ["model.language=false"]).model.language
        False
    """
    return load_config(path, DenseTrainConfig, overrides)


def class_names_of(source, cfg: DenseDataConfig) -> list[str]:
    """The prompt names: ``data.class_names`` or the source's (their number must agree)."""
    names = getattr(source, "class_names", None)
    if names is None:
        raise DataError(f"{cfg.source}: no class names; DenseCLIP needs a labelled canvas source")
    if cfg.class_names:
        if len(cfg.class_names) != len(names):
            raise ConfigError(f"data.class_names: {len(cfg.class_names)} names for {len(names)} classes")
        return [str(n) for n in cfg.class_names]
    return [str(n) for n in names]


def build_model(cfg: DenseModelConfig, class_names: list[str]):
    """The :class:`~fmlab.multimodal.dense.DenseCLIP` of a config, initialised from ``cfg.seed``
    (or from the CLIP run of ``model.clip``: see :mod:`fmlab.multimodal.dense_clip`)."""
    from fmlab.models import create_backbone
    from fmlab.multimodal.dense import DenseCLIP
    from fmlab.multimodal.dense_text import class_prompts

    if cfg.clip:
        return _build_from_clip(cfg, class_names)
    kw = {"depth": cfg.depth, "width": cfg.width} if cfg.backbone == "resnet_cifar" else {}
    bb = create_backbone(cfg.backbone, expand_path(cfg.weights, "model.weights"), seed=cfg.seed, **kw)
    if cfg.input_size:
        bb.preprocess = dataclasses.replace(bb.preprocess, input_size=(cfg.input_size, cfg.input_size))
    bb.train()
    width = cfg.embed_dim or 64
    prompts = (class_prompts(cfg.text, class_names, width, cfg.n_ctx, cfg.seed, cfg.center_text)
               if cfg.language else None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return DenseCLIP(bb, prompts, len(class_names), width, language=cfg.language,
                         context_prompting=cfg.context_prompting, decoder_layers=cfg.decoder_layers,
                         heads=cfg.heads, hidden=cfg.hidden, pooling=cfg.pooling)


def _build_from_clip(cfg: DenseModelConfig, class_names: list[str]):
    """DenseCLIP (or the language-free baseline) on the image tower of ``model.clip``; with language the
    pixel projection is the CLIP image projection and the class text its frozen text side."""
    from fmlab.multimodal.dense import DenseCLIP
    from fmlab.multimodal.dense_clip import clip_class_prompts, clip_image_tower, init_pixel_projection, load_clip

    clip = load_clip(expand_path(cfg.clip, "model.clip"))
    width = int(clip.feature_dim)
    if cfg.embed_dim is not None and cfg.embed_dim != width:
        raise ConfigError(f"model.embed_dim: {cfg.embed_dim} conflicts with model.clip's joint width {width}; "
                          "drop model.embed_dim")
    bb = clip_image_tower(clip, cfg.input_size)
    prompts = (clip_class_prompts(clip, class_names, cfg.n_ctx, cfg.seed, cfg.center_text, cfg.ctx_init)
               if cfg.language else None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = DenseCLIP(bb, prompts, len(class_names), width, language=cfg.language,
                          context_prompting=cfg.context_prompting, decoder_layers=cfg.decoder_layers,
                          heads=cfg.heads, hidden=cfg.hidden, pooling=cfg.pooling)
    if cfg.language:
        init_pixel_projection(model.encoder, clip)
    return model


def build_objective(cfg: DenseTrainConfig, class_names: list[str]):
    from fmlab.multimodal.dense_objective import DenseCLIPObjective

    return DenseCLIPObjective(build_model(cfg.model, class_names), cfg.loss.aux_weight, cfg.loss.tau)


def open_split(spec: str, split: str, data_root: str | None = None):
    from fmlab.data import open_source

    source = open_source(spec, data_root)
    if not hasattr(source, "split"):
        raise DataError(f"{spec}: not a source with splits")
    return source, source.split(split)


@dataclass
class DenseTrainResult:
    run_dir: Path
    step: int
    last_loss: float | None
    seconds: float


def run_dense_train(cfg: DenseTrainConfig, out: str | Path, resume: bool = False) -> DenseTrainResult:
    """Train a DenseCLIP (or its baseline) and write ``dense_model.safetensors`` in ``out``.

    Args:
        cfg: the validated config.
        out: the run directory.
        resume: continue the run in ``out`` from its last checkpoint.

    Returns:
        Where, how far, the last logged loss and the wall time.
    """
    from fmlab.data.synthetic.batches import RenderedSource
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import write_safetensors
    from fmlab.multimodal.dense_objective import canvas_batch
    from fmlab.utils.io import write_json

    t0 = time.perf_counter()
    out = Path(out)
    source, split = open_split(cfg.data.source, cfg.data.split, cfg.data.data_root)
    names = class_names_of(source, cfg.data)
    train = RenderedSource(split, canvas_batch, limit=cfg.data.limit)
    obj = build_objective(cfg, names)
    res = Trainer.from_config(obj, train, cfg, run_dir=out).fit(resume=out if resume else None)
    state = {k: v.detach().cpu().contiguous() for k, v in obj.state_dict().items()}
    write_safetensors(state, out / WEIGHTS, metadata={"step": str(res.step), "writer": "fmlab.dense"})
    write_json(out / META, {"step": res.step, "class_names": names, "weights": WEIGHTS,
                            "train_content_hash": split.content_hash})
    last = res.history[-1].get("loss") if res.history else None
    return DenseTrainResult(out, res.step, last, time.perf_counter() - t0)


def load_dense_run(run_dir: str | Path):
    """``(objective, config, class_names)`` of a finished ``fmlab dense train`` run, in eval mode."""
    import json

    from safetensors.torch import load_file

    run = Path(run_dir)
    if not (run / WEIGHTS).is_file() or not (run / "config.yaml").is_file():
        raise ConfigError(f"--model {run_dir}: no {WEIGHTS} and config.yaml (not a finished dense run)")
    cfg = load_dense_config(run / "config.yaml")
    names = json.loads((run / META).read_text())["class_names"]
    obj = build_objective(cfg, names)
    obj.load_state_dict(load_file(str(run / WEIGHTS)))
    return obj.eval(), cfg, names
