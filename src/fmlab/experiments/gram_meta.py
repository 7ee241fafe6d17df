"""``fmlab adapt meta-train``: GRAM's meta-training of a CoOp context φ and gradient regulator ψ
on unlabelled image-text pairs, through the engine (:class:`~fmlab.engine.Trainer`).

Steps: embed every image-text pair with the frozen model (each caption of each image is a pair), cluster
them into pseudo-domains and pseudo-classes (:func:`fmlab.adapt.gram_meta.pseudo_domains`),
train :class:`~fmlab.adapt.gram_meta.GramMetaObjective` on the seeded task list, then write
φ, ψ, the provenance and the meta-training images' content hashes to the output folder
(:func:`fmlab.adapt.gram.save_gram_meta`). ``configs/adapt/gram_meta.yaml`` holds the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["MetaConfig", "MetaDataConfig", "MetaSpec", "load_meta_config", "run_meta_train"]


@dataclass
class MetaDataConfig:
    source: str = "coco_mini"  # an image-text source: coco_mini, csv:PATH, jsonl:PATH
    split: str = "train+val"  # several splits joined by +
    limit: int = 0  # keep the first M images, with all their captions (0: all)
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        non_negative_int(f"{prefix}.limit", self.limit)


@dataclass
class MetaSpec:
    n_ctx: int = 4  # context vectors (ignored when ctx_init is set: its words' count)
    ctx_init: str = "a photo of a"  # φ's start ("" : random, N(0, 0.02))
    inner_lr: float = 0.1  # α of the inner step φ' = φ − α ψ(g)
    hidden: int = 64  # ψ's hidden width
    n_domains: int = 6  # k-means pseudo-domains of the joint embeddings
    classes_per_domain: int = 8  # k-means pseudo-classes inside each domain
    n_way: int = 5  # pseudo-classes per meta-task
    shots: int = 4  # images per pseudo-class and side of a task

    def validate(self, prefix: str = "meta") -> None:
        for k in ("n_ctx", "hidden", "n_domains", "classes_per_domain", "n_way", "shots"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        finite_float(f"{prefix}.inner_lr", self.inner_lr, low=0.0)
        check(self.n_domains >= 2, f"{prefix}.n_domains", self.n_domains,
              "must be >= 2 (inner and outer steps use different domains)")
        check(self.n_way <= self.classes_per_domain, f"{prefix}.n_way", self.n_way,
              f"must be <= meta.classes_per_domain ({self.classes_per_domain})")


@dataclass
class MetaConfig:
    """What ``fmlab adapt meta-train`` runs (``clip_model`` comes from ``--clip-model``)."""

    clip_model: str = ""
    meta: MetaSpec = field(default_factory=MetaSpec)
    data: MetaDataConfig = field(default_factory=MetaDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=200, batch_size=4, log_every=20, checkpoint_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_steps=10))

    def validate(self) -> None:
        check(bool(self.clip_model), "clip_model", self.clip_model,
              "must name an image-text model (--clip-model RUN_DIR|open_clip:<arch>)")


def load_meta_config(path: str | Path | None, overrides=()) -> MetaConfig:
    """The meta-training settings: YAML ``path`` (or the defaults), then ``--set`` overrides.

    Examples:
        >>> load_meta_config(None, ["clip_model=M", "meta.n_way=3"]).meta.n_way
        3
    """
    return load_config(path, MetaConfig, overrides)


def _pairs(cfg: MetaConfig):
    """(images as one uint8 array, every caption, each caption's image row) of the splits named
    by ``data.split`` (``train``, or several joined by ``+``: ``train+val``); ``data.limit``
    keeps the first M images."""
    from fmlab.data import open_source
    from fmlab.data.sources import ImageTextSource
    from fmlab.errors import DataError

    source = open_source(cfg.data.source, cfg.data.data_root)
    if not isinstance(source, ImageTextSource):
        raise DataError(f"data.source {cfg.data.source!r} is not an image-text source "
                        "(coco_mini, csv:PATH, jsonl:PATH)")
    images, captions, owner = [], [], []
    taken = 0
    for name in cfg.data.split.split("+"):
        split = source.split(name.strip())
        n = len(split.images)
        if cfg.data.limit:
            n = min(n, cfg.data.limit - taken)
        if n <= 0:
            break
        images.append(split.images.get_batch(np.arange(n)))
        for cap, img in zip(split.captions, split.caption_image_index):
            if int(img) < n:
                captions.append(cap)
                owner.append(taken + int(img))
        taken += n
    return np.concatenate(images), captions, np.asarray(owner, dtype=np.int64)


@torch.no_grad()
def _embed(model, images: np.ndarray, captions: list[str], owner: np.ndarray,
           batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised joint-space embeddings of every pair (its image's and its caption's)."""
    import torch.nn.functional as F

    xi = torch.cat([F.normalize(model.encode_image(torch.from_numpy(images[s:s + batch])).float(),
                                dim=-1) for s in range(0, len(images), batch)])
    xt = torch.cat([F.normalize(model.encode_text(captions[s:s + batch]).float(), dim=-1)
                    for s in range(0, len(captions), batch)])
    return xi[torch.from_numpy(owner)].numpy(), xt.numpy()


def run_meta_train(cfg: MetaConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Meta-train φ and ψ and write them to ``out`` (see the module docstring).

    Returns:
        The provenance written to ``gram_meta.json``.
    """
    from fmlab.adapt.coop import PromptLearner
    from fmlab.adapt.gram import save_gram_meta
    from fmlab.adapt.gram_meta import GramMetaObjective, MetaTaskSource, pseudo_domains
    from fmlab.data.hashing import image_content_hashes
    from fmlab.data.sources import ArraySplit
    from fmlab.engine import Trainer
    from fmlab.multimodal.io import joint_image_backbone, load_image_text_model

    out = Path(out)
    model = load_image_text_model(cfg.clip_model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images, captions, owner = _pairs(cfg)
    img, txt = _embed(model, images, captions, owner)
    m = cfg.meta
    cls, domain, proto = pseudo_domains(img, txt, m.n_domains, m.classes_per_domain, cfg.trainer.seed)
    names = [captions[int(i)] for i in proto]
    g = torch.Generator().manual_seed(cfg.trainer.seed)
    learner = PromptLearner(model, names, m.n_ctx, False, "end", m.ctx_init or None, g)
    objective = GramMetaObjective(learner, learner.ctx.detach(), float(model.logit_scale_value()),
                                  m.inner_lr, m.hidden)
    source = MetaTaskSource(img, cls, domain, m.n_way, m.shots, seed=cfg.trainer.seed)
    res = Trainer.from_config(objective, source, cfg, run_dir=out / "run").fit(resume=resume or None)
    info = {"method": "gram", "clip_model": cfg.clip_model,
            "clip_weights_sha256": joint_image_backbone(model).weights_sha256,
            "source": cfg.data.source, "split": cfg.data.split, "n_images": len(images),
            "n_pairs": len(captions),
            "n_pseudo_classes": len(domain), "ctx_init": m.ctx_init, "inner_lr": m.inner_lr,
            "steps": res.step, "tasks_per_step": cfg.trainer.batch_size, "seed": cfg.trainer.seed,
            "prototype_captions": names}
    hashes = image_content_hashes(ArraySplit(images, name=cfg.data.split, labels=None,
                                             class_names=None, content_hash="", origin=cfg.data.source))
    save_gram_meta(out, objective.ctx, objective.regulator, info, hashes)
    return info
