"""The fine-tuning experiment behind ``fmlab finetune``: PEFT methods through the engine, under the
few-shot adaptation protocol.

One run = (method, shots, seed):

1. the split file is drawn from the source's *train* split by :func:`fmlab.adapt.splits.make_split`
   and written to ``OUT/splits/split_{shots}shot_seed{seed}.json`` — the same bytes and path
   ``fmlab adapt`` writes, so both commands score on the same images; the test split is only
   touched once, after the best state has been chosen;
2. the base backbone is built (from ``--weights``, or a random init drawn after
   ``torch.manual_seed(0)`` so that a reload can rebuild it) and gets a new task head
   ``Linear(feature_dim, num_classes of the source)``, trained by every method;
3. the method's ``prepare_finetune`` hook applies it with :func:`fmlab.peft.apply`
   (``head="head"``); a method may do more there (PELA compresses, distils the compressed student
   against the original on *unlabelled* train-split images through the engine, then chooses what
   the fine-tuning trains), see :mod:`fmlab.peft.recipe`;
4. the head starts at the best scaled nearest-class-mean classifier of the frozen features of the
   training images — at most ``head_init_per_class`` = 256 per class, seeded; class means of the
   centred features, the centring as bias (:func:`fmlab.adapt.linear.class_mean_init`;
   ``head_init=random`` turns it off). Why: the engine gives every parameter the same learning
   rate, and a random head trained at a full-fine-tuning lr of 1e-4 would barely move; starting
   at the class-mean classifier also keeps a random head from distorting pre-trained features in
   the first steps (LP-FT);
5. :class:`fmlab.engine.Trainer` trains :meth:`fmlab.pretrain.Supervised.of_classifier` on the
   split's training images with a batched uint8 augmentation
   (:class:`fmlab.data.recipes.TrainTransform`); after every ``eval_every_epochs`` epochs (and at
   the end) a :class:`fmlab.engine.monitors.ValidationMonitor` scores the split's validation
   images and keeps a copy of the best state (highest accuracy, ties broken by lower
   cross-entropy; the starting state counts too), which is restored before testing;
6. test accuracy, trainable parameters, peak memory (:class:`fmlab.utils.profiling.PeakMemory`)
   and seconds go to ``results.json``, ``summary.md`` and the results store; the adapter (+ head +
   buffers) is saved in ``OUT/<method>_<shots>_<seed>/adapter/`` and :func:`load_finetuned`
   rebuilds the model from it.

Defaults come from each method's ``recipe`` (``fmlab finetune --help`` lists them; settings in
:mod:`fmlab.experiments.finetune_settings`). BatchNorm running statistics (``bn_stats=auto``) are
updated only by methods whose class says ``trains_norm_statistics`` (or whose hook says so): the
methods that train the norm layers; the others keep the backbone's statistics, so a frozen
backbone stays the pre-trained function.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.experiments.finetune_settings import (
    FinetuneConfig,
    FinetuneSettings,
    finetune_method,
    finetune_methods,
    options_for,
    parse_options,
    resolve_settings,
)
from fmlab.experiments.finetune_pvp import init_modules, pvp_init
from fmlab.experiments.finetune_run import (
    RunInputs,
    apply_method,
    build_base,
    load_finetuned,
    run_one,
)
from fmlab.utils.io import atomic_write, write_json

__all__ = ["FinetuneConfig", "FinetuneSettings", "RunInputs", "build_base", "finetune_methods",
           "load_finetuned", "open_data", "parse_options", "resolve_settings", "run_finetune", "run_one"]

METRICS = ("accuracy", "val_accuracy", "trainable_parameters", "peak_memory_mb")


# --------------------------------------------------------------------------- the experiment


def _validate_methods(methods: list[str]) -> None:
    if not methods:
        raise ConfigError("--method: give at least one of " + ", ".join(finetune_methods()))
    for m in methods:
        finetune_method(m)


def _preflight(cfg: FinetuneConfig, num_classes: int) -> nn.Module:
    """Apply every method to a copy of the base, so bad options/targets fail before training.

    Returns:
        The base backbone (its name, weights hash and preprocessing make the protocol).
    """
    base = build_base(cfg.backbone, cfg.weights, num_classes, cfg.init_seed)
    for m in cfg.methods:
        resolve_settings(m, 1, cfg.overrides)
        model = apply_method(copy.deepcopy(base), m, cfg.targets, options_for(cfg, m))
        if cfg.init_from is not None:  # PVP: the saved modules fit this method and options
            init_modules(model, cfg.init_from)
    return base


def open_data(cfg: FinetuneConfig) -> tuple[Any, Any, str, list[str]]:
    """(train split, test split, test split name, class names) of ``cfg.data``.

    ``cfg.train_limit`` = M keeps a random subset of M train images (seed 0, in index order)."""
    from fmlab.data.labelled import open_labelled
    from fmlab.data.sources import SubsetSplit

    source, train, test, test_name = open_labelled(cfg.data, cfg.data_root, cfg.test_split,
                                                   command="fmlab finetune")
    if 0 < cfg.train_limit < len(train):
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:cfg.train_limit])
        train = SubsetSplit(train, keep)
    return train, test, test_name, list(train.class_names or source.class_names)


def _unlabelled_idx(cfg: FinetuneConfig, n_train: int) -> np.ndarray:
    """Train-split indices the methods' hooks ask for: all (0) or a seeded subset."""
    idx = np.zeros(0, dtype=np.int64)
    for m in cfg.methods:
        n = finetune_method(m).unlabelled_images(resolve_settings(m, 1, cfg.overrides))
        if n is not None:
            mine = np.arange(n_train) if n == 0 or n >= n_train else np.sort(
                np.random.default_rng(0).permutation(n_train)[:n])
            idx = np.union1d(idx, mine)
    return idx


def _inputs(cfg: FinetuneConfig, train: Any, test: Any, splits: dict, k: int) -> RunInputs:
    """Decode, once, every train image a run needs and the (subsampled) test split."""
    unlabelled = _unlabelled_idx(cfg, len(train))
    needed = np.unique(np.concatenate([unlabelled] + [np.concatenate([s.train, s.val])
                                                      for s in splits.values()]))
    pos = np.full(len(train), -1, dtype=np.int64)
    pos[needed] = np.arange(len(needed))
    # --max-test: a seeded random subset (sources may be sorted by class), in index order
    test_idx = np.arange(len(test)) if cfg.max_test is None or cfg.max_test >= len(test) else \
        np.sort(np.random.default_rng(0).permutation(len(test))[:cfg.max_test])
    return RunInputs(torch.from_numpy(train.decode(needed)), pos, np.asarray(train.labels),
                     torch.from_numpy(test.decode(test_idx)),
                     torch.as_tensor(np.asarray(test.labels)[test_idx]), k, unlabelled)


def run_finetune(cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Run methods × shots × seeds and write ``results.json``, ``summary.md``, store rows.

    Args:
        cfg: the experiment.

    Returns:
        One record per run (also in ``results.json``).
    """
    from fmlab.adapt.splits import make_split
    from fmlab.results import Protocol, ResultsStore

    _validate_methods(cfg.methods)
    train, test, test_name, names = open_data(cfg)
    k, out = len(names), Path(cfg.out)
    splits = {(shots, seed): make_split(train.labels, shots, seed, n_val=cfg.n_val,
                                        class_names=names, n_classes=k)
              for shots in cfg.shots for seed in cfg.seeds}
    base = _preflight(cfg, k)
    init = {} if cfg.init_from is None else pvp_init(cfg, base, test, test_name)
    for (shots, seed), sp in splits.items():
        sp.save(out / "splits" / f"split_{shots}shot_seed{seed}.json")
    inputs = _inputs(cfg, train, test, splits, k)
    records = []
    for method in cfg.methods:
        for (shots, seed), sp in splits.items():
            rec = run_one(cfg, method, shots, seed, sp, sp.sha256, inputs,
                          out / f"{method}_{shots}_{seed}")
            rec["split_file"] = f"splits/split_{shots}shot_seed{seed}.json"
            if init:
                rec.update(init)
                rec["hyperparameters"]["init"] = init
            records.append(rec)
    n_test = len(inputs.test_labels)
    protocol = {"backbone": base.name, "weights_sha256": base.weights_sha256,
                "preprocess": base.preprocess.to_dict(), "source": cfg.data,
                "train_content_hash": train.content_hash, "test_split": test_name,
                "test_content_hash": test.content_hash, "n_test": n_test, "max_test": cfg.max_test}
    for r in records:
        r["protocol"] = protocol
    write_json(out / "results.json", records)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(summary_markdown(records, cfg, test_name, n_test))
    if cfg.db is not None:
        ResultsStore(cfg.db).record(
            "finetune", Protocol.of(cfg.data, test_name, backbone=base, train=train, test=test),
            records, METRICS,
            extra_keys=("shots", "memory_measure", "best_step", "n_test", "init_sha256"))
    return records


def summary_markdown(records: list[dict[str, Any]], cfg: FinetuneConfig, test_name: str,
                     n_test: int) -> str:
    """One row per (method, shots): test accuracy mean ± std over seeds and the costs.

    Args:
        records: the run records.
        cfg: the experiment.
        test_name: the evaluated split.
        n_test: images scored.

    Returns:
        The markdown text of ``summary.md``.
    """
    lines = [f"# fmlab finetune: {cfg.backbone} on {cfg.data}", "",
             f"Accuracy (%) on {n_test} images of the {test_name} split, mean ± std over seeds "
             f"{cfg.seeds}; the state kept is the best on the split file's validation images.",
             "",
             "| method | shots | accuracy | val accuracy | trainable params | peak memory MB "
             "| seconds |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["shots"]), []).append(r)
    for (m, k), rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs]) * 100
        val = np.array([r["val_accuracy"] for r in rs]) * 100
        mem = np.mean([r["peak_memory_mb"] for r in rs])
        sec = np.mean([r["seconds"] for r in rs])
        lines.append(f"| {m} | {k} | {acc.mean():.2f} ± {acc.std():.2f} | {val.mean():.2f} | "
                     f"{rs[0]['trainable_parameters']:,} | {mem:.0f} | {sec:.1f} |")
    lines += ["", f"Peak memory: {records[0]['memory_measure']} (see fmlab.experiments.finetune)."
              if records else "", ""]
    return "\n".join(lines)
