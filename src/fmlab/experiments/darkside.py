"""``fmlab retrieval``: Dark Side augmentation on a day / synthetic-night domain pair.

This module only composes library pieces: the splits and the night degradation
(:mod:`fmlab.data.night`), a day→night translator (:mod:`fmlab.translate`), the retrieval
network, miner and loss (:mod:`fmlab.retrieval`), the engine's :class:`~fmlab.engine.Trainer`,
and retrieval mAP (:mod:`fmlab.metrics.retrieval`). The splits are described in
:mod:`fmlab.experiments.darkside_config`.

Run directory::

    config.yaml  metrics.jsonl  checkpoints/  encoder.safetensors  encoder.json  report.json

``report.json`` holds the three mAPs (day→day, night→day, night→night), the arm and the CPU time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.data import open_source
from fmlab.data.night import PhotometricJitter, degrade_night
from fmlab.engine import checkpoint as ckpt
from fmlab.engine.data import TensorSource, mix_seed
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError, DataError
from fmlab.experiments.darkside_config import DarkSideConfig, load_darkside_config
from fmlab.metrics.retrieval import class_retrieval_map
from fmlab.retrieval import LOSSES, DarkSideObjective, RetrievalNet
from fmlab.utils.io import write_json

__all__ = ["DarkSideConfig", "Domains", "Translate", "build_net", "evaluate_net", "load_darkside_config",
           "load_domains", "night_variants", "run_darkside"]

# images uint8 (N, H, W, C) -> their night versions, same shape
Translate = Callable[[np.ndarray], np.ndarray]


@dataclass
class Domains:
    """Every image array a Dark Side run uses (uint8 HWC) with its labels."""

    train: np.ndarray
    train_labels: np.ndarray
    train_ids: np.ndarray          # rows of the train split (key the oracle arm's degradation)
    translator_day: np.ndarray     # plentiful day images for the translator
    scarce_night: np.ndarray       # the few night images the translator learns from
    query: np.ndarray
    query_labels: np.ndarray
    database: np.ndarray
    database_labels: np.ndarray
    night_query: np.ndarray
    night_database: np.ndarray
    class_names: list[str] | None


def load_domains(cfg: DarkSideConfig) -> Domains:
    """Decode the splits of ``cfg`` and make their night versions (deterministic)."""
    d, n = cfg.data, cfg.night
    src = open_source(d.source, d.data_root)
    train, test = src.split("train"), src.split("test")
    if train.labels is None or test.labels is None:
        raise DataError(f"{d.source}: class-level retrieval needs labelled train and test splits")
    need = max(d.train_limit, d.translator_day) + n.scarce
    if need > len(train) or d.queries + d.database > len(test):
        raise ConfigError(f"data: {need} train and {d.queries + d.database} test images asked, "
                          f"{d.source} has {len(train)} and {len(test)}")
    perm = np.random.default_rng(d.split_seed).permutation(len(train))
    ml, tr_day = perm[:d.train_limit], perm[:d.translator_day]
    scarce = perm[max(d.train_limit, d.translator_day):need]
    tperm = np.random.default_rng(d.split_seed + 1).permutation(len(test))
    q, db = tperm[:d.queries], tperm[d.queries:d.queries + d.database]
    query, database = test.decode(q), test.decode(db)
    if query.ndim != 4 or query.shape[-1] != 3:
        raise DataError(f"{d.source}: the night degradation and the trunk need RGB images")
    return Domains(
        train=train.decode(ml), train_labels=train.labels[ml], train_ids=ml,
        translator_day=train.decode(tr_day),
        scarce_night=degrade_night(train.decode(scarce), scarce, n.train_seed, n.spec),
        query=query, query_labels=test.labels[q], database=database,
        database_labels=test.labels[db],
        night_query=degrade_night(query, q, n.eval_seed, n.spec),
        night_database=degrade_night(database, db, n.eval_seed, n.spec),
        class_names=train.class_names)


def translator_fn(run_dir: str | os.PathLike, batch_size: int = 256) -> Translate:
    """A uint8 → uint8 day→night function from a ``fmlab translate train`` run."""
    from fmlab.translate import load_translator, translate_images

    translator = load_translator(run_dir)

    def apply(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.as_tensor(images[i:i + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            with torch.no_grad():
                y = translate_images(translator, x)
            out.append((y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return np.concatenate(out)

    return apply


def night_variants(cfg: DarkSideConfig, dom: Domains, translate: Translate | None = None
                   ) -> np.ndarray | None:
    """The night version of every metric-learning image for the arm ``augment.positives``."""
    how = cfg.augment.positives
    if how == "none":
        return None
    if how == "degraded":
        return degrade_night(dom.train, dom.train_ids, cfg.night.train_seed, cfg.night.spec)
    fn = translate or translator_fn(os.path.expandvars(cfg.augment.translator))
    out = fn(dom.train)
    if out.shape != dom.train.shape or out.dtype != np.uint8:
        raise DataError(f"translator {cfg.augment.translator}: returned {out.dtype} {out.shape} "
                        f"for uint8 {dom.train.shape}")
    return out


def build_net(cfg: DarkSideConfig) -> RetrievalNet:
    """The retrieval network: the backbone's trunk (pre-trained weights) + GeM + L2."""
    from fmlab.models import create_backbone

    m = cfg.model
    weights = os.path.expandvars(m.weights) if m.weights else None
    bb = create_backbone(m.backbone, weights=weights, seed=None if weights else cfg.trainer.seed)
    if not hasattr(bb.trunk, "forward_map"):
        raise ConfigError(f"model.backbone: {m.backbone!r} has no feature map (forward_map) to pool")
    spec = bb.preprocess
    return RetrievalNet(bb.trunk, tuple(spec.mean), tuple(spec.std), m.gem_p, m.freeze_bn)


def evaluate_net(net: RetrievalNet, dom: Domains) -> dict[str, float]:
    """Class-level retrieval mAP: day→day, night→day and night→night (queries vs database)."""
    def emb(x: np.ndarray) -> torch.Tensor:
        return net.embed(torch.as_tensor(x))

    qd, qn, dd, dn = emb(dom.query), emb(dom.night_query), emb(dom.database), emb(dom.night_database)
    ql, dl = torch.as_tensor(dom.query_labels), torch.as_tensor(dom.database_labels)
    return {"day_to_day": class_retrieval_map(qd, ql, dd, dl),
            "night_to_day": class_retrieval_map(qn, ql, dd, dl),
            "night_to_night": class_retrieval_map(qn, ql, dn, dl)}


def load_net(run_dir: str | os.PathLike) -> tuple[RetrievalNet, DarkSideConfig]:
    """The trained network of a finished run (its config.yaml + encoder.safetensors)."""
    from safetensors.torch import load_file

    run = Path(run_dir)
    if not (run / "encoder.safetensors").is_file():
        raise ConfigError(f"{run}: no encoder.safetensors (not a finished fmlab retrieval run)")
    cfg = load_darkside_config(run / "config.yaml")
    net = build_net(cfg)
    try:
        net.load_state_dict(load_file(run / "encoder.safetensors"), strict=True)
    except RuntimeError as e:
        raise DataError(f"{run}/encoder.safetensors does not fit the config's network "
                        f"({str(e)[:200]})") from None
    return net.eval(), cfg


def run_darkside(cfg: DarkSideConfig, run_dir: str | os.PathLike, resume: bool = False,
                 translate: Translate | None = None) -> dict[str, Any]:
    """Train one arm as ``cfg`` says into ``run_dir``, evaluate it, write ``report.json``.

    Args:
        cfg: the experiment.
        run_dir: the run directory.
        resume: continue the run in ``run_dir`` from its latest checkpoint.
        translate: day→night function to use instead of loading ``augment.translator`` (tests).

    Returns:
        The report (also written to ``run_dir/report.json``).
    """
    run_dir = Path(run_dir)
    if not resume and ckpt.latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue "
                          "it, or choose a new --out")
    dom = load_domains(cfg)
    if len(dom.train) < cfg.trainer.batch_size:
        raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} is larger than the "
                          f"{len(dom.train)} training images")
    night = night_variants(cfg, dom, translate)
    extra = {} if night is None else {"night": night}
    source = TensorSource(dom.train, dom.train_labels, **extra)
    torch.default_generator.manual_seed(mix_seed(cfg.trainer.seed, -1))
    net = build_net(cfg)
    a, m = cfg.augment, cfg.mining
    jitter = PhotometricJitter(a.brightness, a.contrast, a.saturation, a.noise)
    objective = DarkSideObjective(net, LOSSES.get(cfg.model.loss)(cfg.model.margin), jitter,
                                  m.anchors, m.negatives, a.pair_prob, m.diverse, m.exclude)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(objective, source, cfg.trainer, cfg.optim, cfg.schedule, run_dir=run_dir,
                      config=cfg)
    cpu0 = time.process_time()
    res = trainer.fit(resume=run_dir if resume else None)
    cpu = time.process_time() - cpu0
    report = {"name": cfg.name, "positives": a.positives, "diverse": m.diverse,
              "seed": cfg.trainer.seed, "step": res.step, "train_cpu_s": round(cpu, 1),
              "gem_p": float(net.pool.p.detach()), "mAP": evaluate_net(net, dom)}
    write_json(run_dir / "report.json", report)
    return report


def _save_rows(rows: list[np.ndarray], path: str | os.PathLike, scale: int = 3) -> Path:
    """Tile equal-length rows of uint8 HWC images into one PNG (nearest upscaling ×``scale``)."""
    from PIL import Image

    from fmlab.gan.grid import tile
    from fmlab.utils.io import atomic_path

    grid = tile(np.concatenate(rows), nrow=len(rows[0]), fill=255)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                       Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def write_domains(cfg: DarkSideConfig, out: str | os.PathLike) -> dict[str, Any]:
    """The translator's two unpaired domains as plain npz (``x``: uint8 HWC) and a preview.

    Writes ``OUT/day.npz`` (``data.translator_day`` plentiful day images), ``OUT/night.npz``
    (``night.scarce`` degraded images, disjoint from every metric-learning image) and
    ``OUT/domains.png`` (test queries: day row over their night row).
    """
    from fmlab.utils.io import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dom = load_domains(cfg)
    for name, x in (("day", dom.translator_day), ("night", dom.scarce_night)):
        with atomic_path(out / f"{name}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, x=x)
    _save_rows([dom.query[:12], dom.night_query[:12]], out / "domains.png")
    return {"day": len(dom.translator_day), "night": len(dom.scarce_night), "out": str(out)}


def write_examples(cfg: DarkSideConfig, translator: str | os.PathLike, path: str | os.PathLike,
                   n: int = 12) -> Path:
    """A PNG of ``n`` test queries: day row, real night row (the degradation), translated row."""
    dom = load_domains(cfg)
    fake = translator_fn(os.path.expandvars(str(translator)))(dom.query[:n])
    return _save_rows([dom.query[:n], dom.night_query[:n], fake], path)
