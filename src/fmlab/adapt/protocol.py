"""The leak-free few-shot protocol: methods × shots × seeds on frozen features.

For every (shots, seed) a split file fixes the training and validation images, both drawn from the
source's train split. Every estimator is fitted, and every hyperparameter chosen, from those two
index sets only; the test features are touched once, by ``predict``, after ``fit`` has returned.
Nothing about a fit can depend on the test data, which the tests check for every method.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.adapt.base import ArrayLike, Estimator, to_labels, to_tensor
from fmlab.adapt.registry import INPUTS, METHODS, MethodSpec, get_method
from fmlab.adapt.splits import FewShotSplit, make_split
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import jsonable

__all__ = ["METHODS", "create_method", "mean_per_class_recall", "plot_accuracy_vs_shots",
           "run_sweep", "summarize"]


def create_method(name: str, *, zeroshot_weights: ArrayLike | None = None, seed: int = 0,
                  inputs: dict[str, Any] | None = None, **params: Any) -> Estimator:
    """Build the estimator registered as ``name`` (unknown names list the known ones).

    Args:
        name: a registered method (``"ncm"``, ``"gda+zs"``, ...).
        zeroshot_weights: the zero-shot class weights, for methods that require them.
        seed: the seed, for estimators whose constructor takes one.
        inputs: further workflow inputs by name (``model``, ``class_names``).
        **params: constructor arguments.

    Returns:
        The unfitted estimator.

    Examples:
        >>> create_method("gda", covariance="oas")
        GDA(covariance='oas', priors='uniform')
    """
    return get_method(name).build({**(inputs or {}), "zeroshot_weights": zeroshot_weights},
                                  seed=seed, **params)


def mean_per_class_recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Average over the classes present in ``y_true`` of the fraction predicted correctly."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def _check_features(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                    test_labels: ArrayLike, train_view_features: ArrayLike | None):
    """The sweep's arrays as tensors/labels, with every shape checked before any work."""
    Xtr = to_tensor(train_features, "train_features")
    ytr = to_labels(train_labels, "train_labels")
    Xte = to_tensor(test_features, "test_features")
    yte = to_labels(test_labels, "test_labels")
    if Xtr.ndim != 2 or Xte.ndim != 2:
        raise DataError(f"train_features and test_features must be (N, D), got "
                        f"{tuple(Xtr.shape)} and {tuple(Xte.shape)}")
    if len(ytr) != Xtr.shape[0] or len(yte) != Xte.shape[0]:
        raise DataError(f"features and labels differ in length: train {Xtr.shape[0]} vs "
                        f"{len(ytr)}, test {Xte.shape[0]} vs {len(yte)}")
    if Xte.shape[1] != Xtr.shape[1]:
        raise DataError(f"test_features have {Xte.shape[1]} features, train_features "
                        f"{Xtr.shape[1]}")
    views = None
    if train_view_features is not None:
        views = to_tensor(train_view_features, "train_view_features", Xtr.dtype)
        if views.ndim != 3 or views.shape[1:] != Xtr.shape:
            raise DataError(f"train_view_features must be (V, {Xtr.shape[0]}, {Xtr.shape[1]}), "
                            f"got {tuple(views.shape)}")
    return Xtr, ytr, Xte, yte, views


def _resolve_methods(methods: Sequence[str], inputs: dict[str, Any],
                     params: dict[str, dict[str, Any]]) -> list[MethodSpec]:
    """Specs of ``methods``; unknown names, missing inputs and stray params fail before any work."""
    specs = [get_method(m) for m in methods]
    for spec in specs:
        given = {k for k, v in inputs.items() if v is not None} | set(params.get(spec.name, {}))
        for key in spec.missing(given):
            raise ConfigError(f"method {spec.name!r} needs {INPUTS.get(key, repr(key))}")
    unknown = set(params) - set(methods)
    if unknown:
        raise ConfigError(f"method_params has entries for methods not in the sweep: "
                          f"{sorted(unknown)}")
    return specs


def _fit_then_predict(spec: MethodSpec, est: Estimator, fit_args: tuple, Xte: torch.Tensor,
                      on_fit: Callable | None, k: int | str, seed: int) -> tuple[np.ndarray, float]:
    """Fit ``est`` (timed), let ``on_fit`` see it, then, and only then, predict the test data."""
    t0 = time.perf_counter()
    est.fit(*fit_args)
    fit_s = time.perf_counter() - t0
    if on_fit is not None:
        on_fit(spec.name, k, seed, est)
    return est.predict(Xte), fit_s


def run_sweep(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
              test_labels: ArrayLike, methods: Sequence[str],
              shots: Iterable[int | str] = (1, 2, 4, 8, 16), seeds: Iterable[int] = (1, 2, 3), *,
              train_view_features: ArrayLike | None = None,
              zeroshot_weights: ArrayLike | None = None,
              class_names: Sequence[str] | None = None, model: Any = None, meta: Any = None,
              split_dir: str | os.PathLike | None = None, n_val: int | None = None,
              method_params: dict[str, dict[str, Any]] | None = None,
              on_fit: Callable[[str, int | str, int, Estimator], None] | None = None,
              ) -> list[dict[str, Any]]:
    """Fit every method on every (shots, seed) split and score it on the test features.

    A method's number never depends on the other methods of the sweep: views reach exactly the
    methods whose class uses them (``views != "none"``), inputs exactly those it ``requires``.

    Args:
        train_features: (N, D) features of the source's whole train split; splits index into it.
        train_labels: (N,) labels of the train split.
        test_features: (M, D) test features (touched only by ``predict``, after ``fit``).
        test_labels: (M,) test labels.
        methods: registered method names (see :data:`fmlab.adapt.METHODS`).
        shots: shots per class (``"all"``: the whole train split).
        seeds: split seeds.
        train_view_features: optional (V, N, D) features of V augmented views of the N images;
            a method that uses views is fitted on ``views[:, split.train]`` (validation always
            uses the un-augmented ``train_features[split.val]``).
        zeroshot_weights: (n_classes, D) text class weights, for methods that require them.
        class_names: the class names (split errors; methods that require them).
        model: the image-text model, for methods that require it (CoOp).
        meta: a meta-trained initialisation, for methods that require it (GRAM).
        split_dir: where split files ``split_{shots}shot_seed{seed}.json`` are written (None:
            the hash is of the bytes that would be written).
        n_val: validation images per class (default: the split's rule).
        method_params: constructor arguments per method name.
        on_fit: called as ``on_fit(method, shots, seed, estimator)`` after each fit, before
            any test data is used.

    Returns:
        One record per method × shots × seed (method, shots, seed, accuracy,
        mean_per_class_recall, fit_seconds, split_sha256, hyperparameters, n_train, n_val,
        n_test, n_views: the views the method was fitted on, 1 without).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> centres = 4 * rng.normal(size=(3, 8))
        >>> ytr, yte = np.repeat(np.arange(3), 10), np.repeat(np.arange(3), 5)
        >>> Xtr = centres[ytr] + rng.normal(size=(30, 8)); Xte = centres[yte] + rng.normal(size=(15, 8))
        >>> recs = run_sweep(Xtr, ytr, Xte, yte, ["ncm", "gda"], shots=(2,), seeds=(1,))
        >>> [(r["method"], r["shots"], r["n_train"], r["accuracy"] > 0.6) for r in recs]
        [('ncm', 2, 6, True), ('gda', 2, 6, True)]
    """
    Xtr, ytr, Xte, yte, views = _check_features(train_features, train_labels, test_features,
                                                 test_labels, train_view_features)
    inputs = {"zeroshot_weights": zeroshot_weights, "class_names": class_names, "model": model,
              "meta": meta}
    params = method_params or {}
    specs = _resolve_methods(list(methods), inputs, params)
    n_classes = len(class_names) if class_names is not None else None
    records: list[dict[str, Any]] = []
    for k in shots:
        for seed in seeds:
            split = make_split(ytr, k, seed, n_val=n_val, class_names=class_names,
                               n_classes=n_classes)
            sha = split.save(Path(split_dir) / f"split_{k}shot_seed{seed}.json") \
                if split_dir is not None else split.sha256
            for spec in specs:
                est = spec.build(inputs, seed=int(seed), **params.get(spec.name, {}))
                fit_args, n_views = _fit_args(split, Xtr, ytr, views if spec.uses_views else None)
                pred, fit_s = _fit_then_predict(spec, est, fit_args, Xte, on_fit, k, int(seed))
                records.append(_record(spec.name, k, int(seed), pred, yte, fit_s, sha, est,
                                       split, n_views))
    return records


def _record(method: str, k: int | str, seed: int, pred: np.ndarray, yte: np.ndarray,
            fit_s: float, sha: str, est: Estimator, split: FewShotSplit, n_views: int
            ) -> dict[str, Any]:
    """One row of the sweep's records (the key order is that of ``results.json``)."""
    return {"method": method, "shots": k, "seed": seed, "accuracy": float(np.mean(pred == yte)),
            "mean_per_class_recall": mean_per_class_recall(yte, pred), "fit_seconds": fit_s,
            "split_sha256": sha, "hyperparameters": jsonable(est.hyperparameters_),
            "n_train": len(split.train), "n_val": len(split.val), "n_test": len(yte),
            "n_views": n_views}


def _fit_args(split: FewShotSplit, Xtr: torch.Tensor, ytr: np.ndarray,
              views: torch.Tensor | None) -> tuple[tuple, int]:
    """``fit``'s positional arguments for one split, and how many views they hold."""
    tr = torch.as_tensor(split.train)
    va = torch.as_tensor(split.val)
    X_fit = views[:, tr] if views is not None else Xtr[tr]
    n_views = int(views.shape[0]) if views is not None else 1
    if len(va):
        return (X_fit, ytr[split.train], Xtr[va], ytr[split.val]), n_views
    return (X_fit, ytr[split.train]), n_views


# -- reporting -----------------------------------------------------------------------------------
def _shot_key(s: int | str) -> float:
    return math.inf if s == "all" else float(s)


def _group(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[int | str], dict]:
    if not records:
        raise DataError("no records to summarise")
    methods = list(dict.fromkeys(r["method"] for r in records))
    shots = sorted({r["shots"] for r in records}, key=_shot_key)
    cells: dict[tuple[str, int | str], list[float]] = {}
    for r in records:
        cells.setdefault((r["method"], r["shots"]), []).append(float(r["accuracy"]))
    return methods, shots, cells


def _mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table: mean ± std (over seeds, ddof=1) test accuracy in % per method × shots,
    and each method's mean fit seconds."""
    methods, shots, cells = _group(records)
    head = "| method | " + " | ".join(f"{s}-shot" if s != "all" else "all" for s in shots)
    lines = [head + " | fit s |", "|---" * (len(shots) + 2) + "|"]
    for m in methods:
        row = [m]
        for s in shots:
            v = cells.get((m, s))
            if v:
                mu, sd = _mean_std(v)
                row.append(f"{100 * mu:.1f} ± {100 * sd:.1f}")
            else:
                row.append("–")
        fit = [r["fit_seconds"] for r in records if r["method"] == m]
        row.append(f"{np.mean(fit):.3f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_shots(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """PNG of test accuracy vs shots: one line per method with a ± std band, log2 x-axis and
    ``all`` after the largest K. Uses the Agg canvas directly (no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fmlab.utils.io import atomic_path

    methods, shots, cells = _group(records)
    numeric = [s for s in shots if s != "all"]
    top = math.log2(max(numeric)) if numeric else 0.0
    xpos = {s: (top + 1.0 if s == "all" else math.log2(float(s))) for s in shots}
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for m in methods:
        xs = [s for s in shots if (m, s) in cells]
        stats = [_mean_std(cells[(m, s)]) for s in xs]
        x = np.array([xpos[s] for s in xs])
        mu = 100 * np.array([a for a, _ in stats])
        sd = 100 * np.array([b for _, b in stats])
        (line,) = ax.plot(x, mu, marker="o", label=m)
        ax.fill_between(x, mu - sd, mu + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    if "all" in shots and numeric:
        ax.axvline(top + 0.5, color="grey", linestyle=":", linewidth=1)  # the axis breaks here
    ax.set_xticks([xpos[s] for s in shots])
    ax.set_xticklabels([str(s) for s in shots])
    ax.set_xlabel("shots per class (log2 scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
