"""The zero-shot experiment behind ``fmlab zsl``: one method × seeds on a seen/unseen class split.

Features of the source's train and test splits come from the feature cache. Training uses only
the train images of the *seen* classes (and the unseen classes' descriptions); evaluation follows
GBU: ZSL top-1 on the unseen test images among the unseen classes, GZSL S/U/H on seen test +
unseen test among all classes. Outputs: ``results.json`` (one record per seed, each with the
protocol), ``summary.md`` (mean ± std), ``run.json``, ``config.yaml``, for the generative methods
``features_pca.png`` (real vs synthetic unseen features, first seed), and results-store rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError
from fmlab.experiments.zsl_config import ZSLConfig, load_zsl_config
from fmlab.utils.io import atomic_write, write_json

METHODS = ("lisgan", "clswgan", "projection")
METRICS = ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h")


@dataclass
class ZSLRun:
    """What one ``fmlab zsl`` call runs (the hyperparameters are in ``config``/``overrides``)."""

    backbone: str
    data: str
    unseen: str
    method: str
    out: Path
    weights: str | None = None
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    data_root: str | None = None
    db: Path | None = None
    init_seed: int = 0
    validate: str | None = None


def parse_unseen(text: str, class_names: list[str], data: str) -> list[int]:
    """Global indices of the comma-separated unseen class names, refusing bad ones by name.

    Raises:
        ConfigError: an unknown or repeated name, none given, or no seen class left.

    Examples:
        >>> parse_unseen("cat, dog", ["cat", "dog", "frog", "ship"], "x")
        [0, 1]
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--unseen: give at least one class name")
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ConfigError(f"--unseen: {data} has no class {unknown[0]!r}; its classes are "
                          f"{', '.join(class_names)}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--unseen: class {dup[0]!r} is named twice")
    if len(names) >= len(class_names) - 1:
        raise ConfigError(f"--unseen: {len(names)} of {len(class_names)} classes unseen; "
                          "leave at least two seen classes to train on")
    return sorted(class_names.index(n) for n in names)


def _seen_train(X: torch.Tensor, y: np.ndarray, seen: list[int], per_class: int
                ) -> tuple[torch.Tensor, np.ndarray]:
    """The seen classes' training features (the first ``per_class`` of each; 0: all)."""
    rows = [np.flatnonzero(y == c)[: per_class or None] for c in seen]
    idx = np.sort(np.concatenate(rows))
    return X[torch.from_numpy(idx)], y[idx]


def _validation_view(X: torch.Tensor, y: np.ndarray, unseen: list[int], val: list[int],
                     n_classes: int, per_class: int, held_out: float = 0.2
                     ) -> tuple[list[int], list[int], tuple, tuple]:
    """A ZSL problem made of train-split images of the seen classes only (for choosing settings).

    The real unseen classes are dropped; ``val`` (seen classes) play the unseen ones; the last
    ``held_out`` of every remaining class's train images are the test set. Returns
    ``(seen', unseen'=val, (X_train, y_train), (X_test, y_test))`` in global class indices.
    """
    keep = [c for c in range(n_classes) if c not in unseen]
    seen = [c for c in keep if c not in val]
    train_rows, test_rows = [], []
    for c in keep:
        rows = np.flatnonzero(y == c)
        cut = int(round(len(rows) * (1 - held_out)))
        if c in seen:
            train_rows.append(rows[:cut][: per_class or None])
        test_rows.append(rows[cut:])
    tr, te = np.sort(np.concatenate(train_rows)), np.sort(np.concatenate(test_rows))
    return seen, list(val), (X[torch.from_numpy(tr)], y[tr]), (X[torch.from_numpy(te)], y[te])


def _model(cfg: ZSLConfig, method: str, seed: int, run_dir: Path | None):
    """The estimator of ``method`` for ``seed`` (trainer.seed = the split's seed)."""
    if method == "projection":
        from fmlab.zsl.projection import RidgeProjection

        return RidgeProjection(cfg.projection.alpha)
    from dataclasses import replace

    from fmlab.zsl.estimator import GenerativeZSL

    return GenerativeZSL(cfg.gan, replace(cfg.trainer, seed=seed),
                         {"g": cfg.optim_g, "d": cfg.optim_d}, cfg.schedule,
                         soul=method == "lisgan", C=cfg.classifier.C,
                         n_synth=cfg.classifier.n_synth, run_dir=run_dir)


def _evaluate(model, Xt: torch.Tensor, yt: np.ndarray, seen: list[int], unseen: list[int]
              ) -> dict[str, float]:
    from fmlab.zsl.metrics import gzsl_scores, zsl_top1

    u = np.isin(yt, unseen)
    out = {"zsl_top1": zsl_top1(yt[u], model.zsl_decision_function(Xt[torch.from_numpy(u)]), unseen)}
    out.update(gzsl_scores(yt, model.decision_function(Xt), seen, unseen))
    return out


def _summary(records: list[dict], run: ZSLRun, class_names: list[str], unseen: list[int],
             described: str) -> str:
    lines = [f"# fmlab zsl: {run.method} on {run.data} ({records[0]['protocol']['backbone']})", "",
             f"Unseen classes: {', '.join(class_names[c] for c in unseen)}. Class semantics: "
             f"MiniLM embeddings of {described}. Per-class-mean accuracy (%), mean ± std over "
             f"seeds {run.seeds}.", "", "| metric | mean ± std | per seed |", "|---|---|---|"]
    for m in METRICS:
        v = np.array([r[m] for r in records]) * 100
        std = v.std(ddof=1) if len(v) > 1 else 0.0
        lines.append(f"| {m} | {v.mean():.2f} ± {std:.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
    return "\n".join(lines) + "\n"


def _protocol(run: ZSLRun, bb, train, test, test_name: str, class_names, unseen, described,
              cfg: ZSLConfig) -> dict[str, Any]:
    from fmlab.engine.config import config_to_dict

    return {"backbone": bb.name, "weights_sha256": bb.weights_sha256, "source": run.data,
            "train_content_hash": train.content_hash, "test_split": test_name,
            "test_content_hash": test.content_hash,
            "unseen": [class_names[c] for c in unseen], "validate": run.validate,
            "descriptions": described,
            "text_encoder": cfg.data.text_encoder, "config": config_to_dict(cfg)}


def _semantics(cfg: ZSLConfig, names: list[str], data: str) -> tuple[torch.Tensor, str]:
    """(K, S) class vectors (before centring) and what they were made from."""
    from fmlab.zsl.semantics import class_semantics, resolve_descriptions

    descriptions, described = resolve_descriptions(cfg.data.descriptions, data)
    try:
        return class_semantics(names, descriptions, cfg.data.text_encoder), described
    except ConfigError as e:
        raise ConfigError(f"data.descriptions: {e}") from None


def _problem(run: ZSLRun, cfg: ZSLConfig, ftrain, ftest, names: list[str], unseen: list[int]):
    """``(seen, unseen, (X, y), (Xt, yt), validating)``: the test split's problem, or with
    ``--validate`` the pseudo-unseen one built from train images only."""
    if run.validate:  # pseudo-unseen seen classes, train images only: no test image is touched
        val = parse_unseen(run.validate, names, run.data)
        if set(val) & set(unseen):
            raise ConfigError("--validate: name seen classes only (they play the unseen ones)")
        seen, unseen, train, test = _validation_view(
            ftrain.features, ftrain.labels.numpy(), unseen, val, len(names), cfg.data.per_class)
        return seen, unseen, train, test, True
    seen = [c for c in range(len(names)) if c not in unseen]
    train = _seen_train(ftrain.features, ftrain.labels.numpy(), seen, cfg.data.per_class)
    return seen, unseen, train, (ftest.features, ftest.labels.numpy()), False


def _fit_seeds(run: ZSLRun, cfg: ZSLConfig, problem, semantics: torch.Tensor, names: list[str],
               protocol: dict) -> list[dict]:
    """One record per seed; the first GAN seed also draws ``features_pca.png``."""
    seen, unseen, (X, y), (Xt, yt), _ = problem
    out, records = Path(run.out), []
    for seed in run.seeds:
        t1 = time.perf_counter()
        model = _model(cfg, run.method, seed, out / f"seed{seed}" if run.method != "projection" else None)
        model.fit(X, y, semantics, seen, unseen)
        records.append({"method": run.method, "seed": seed, **_evaluate(model, Xt, yt, seen, unseen),
                        "fit_seconds": round(time.perf_counter() - t1, 2), "protocol": protocol})
        if run.method != "projection" and seed == run.seeds[0]:
            from fmlab.zsl.plot import plot_real_vs_synthetic

            plot_real_vs_synthetic(model, Xt, yt, unseen, names, out / "features_pca.png")
    return records


def run_zsl(run: ZSLRun) -> list[dict]:
    """Run ``run.method`` for every seed and write the outputs into ``run.out``.

    Returns:
        One record per seed (``zsl_top1``, ``gzsl_seen``, ``gzsl_unseen``, ``gzsl_h``, ...).
    """
    from fmlab.data.labelled import open_labelled
    from fmlab.engine.config import save_config
    from fmlab.features import cached_features
    from fmlab.models import create_backbone
    from fmlab.results import Protocol, ResultsStore
    from fmlab.zsl.semantics import center_semantics

    t0 = time.perf_counter()
    if run.method not in METHODS:
        raise ConfigError(f"--method: unknown method {run.method!r}; choose from {', '.join(METHODS)}")
    cfg = load_zsl_config(run.config, run.overrides)
    source, train, test, test_name = open_labelled(run.data, run.data_root, command="fmlab zsl")
    names = list(source.class_names)
    unseen = parse_unseen(run.unseen, names, run.data)
    semantics, described = _semantics(cfg, names, run.data)
    bb = create_backbone(run.backbone, weights=run.weights,
                         seed=run.init_seed if run.weights is None else None)
    ftrain, ftest = cached_features(bb, train), cached_features(bb, test)
    problem = _problem(run, cfg, ftrain, ftest, names, unseen)
    seen, unseen, (X, _), (_, yt), validating = problem
    if cfg.data.center_semantics:
        semantics = center_semantics(semantics, seen)
    if validating:
        test_name = "train[held-out 20%]"
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    protocol = _protocol(run, bb, train, test, test_name, names, unseen, described, cfg)
    records = _fit_seeds(run, cfg, problem, semantics, names, protocol)
    write_json(out / "results.json", records)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(_summary(records, run, names, unseen, described))
    if run.db is not None:
        ResultsStore(run.db).record(
            "zsl", Protocol.of(run.data, test_name, backbone=bb, train=train,
                               test=train if validating else test,
                               unseen=protocol["unseen"], descriptions=described),
            records, METRICS, seconds_key="fit_seconds")
    write_json(out / "run.json", {"seconds": round(time.perf_counter() - t0, 2),
                                  "n_seen_train": int(len(X)), "n_test": int(len(yt)),
                                  "feature_cache": {"train": ftrain.meta.get("cache"),
                                                    "test": ftest.meta.get("cache")}})
    return records
