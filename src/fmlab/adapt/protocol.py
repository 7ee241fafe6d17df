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
from fmlab.adapt.ensemble import ZeroShotEnsemble
from fmlab.adapt.gda import GDA
from fmlab.adapt.knn import KNN
from fmlab.adapt.linear import LinearProbe
from fmlab.adapt.ncm import NCM
from fmlab.adapt.splits import make_split
from fmlab.adapt.tip import TipAdapter, TipAdapterF
from fmlab.adapt.zeroshot import ZeroShot
from fmlab.errors import ConfigError, DataError
from fmlab.registry import Registry

MethodFactory = Callable[..., Estimator]
METHODS: Registry[MethodFactory] = Registry("adapt method")
"""name -> factory(*, zeroshot_weights, seed, **params) -> Estimator."""

BASE_METHODS = ("ncm", "knn", "linear", "gda", "tip", "tipf")


def _needs_zs(name: str, zs: ArrayLike | None) -> ArrayLike:
    if zs is None:
        raise ConfigError(f"method {name!r} needs zero-shot class weights (zeroshot_weights=...)")
    return zs


def _plain(cls: type[Estimator]) -> MethodFactory:
    def factory(*, zeroshot_weights: ArrayLike | None = None, seed: int = 0,
                **params: Any) -> Estimator:
        return cls(**params)
    return factory


METHODS.add("ncm", _plain(NCM))
METHODS.add("knn", _plain(KNN))
METHODS.add("linear", _plain(LinearProbe))
METHODS.add("gda", _plain(GDA))
METHODS.add("tip", _plain(TipAdapter))
METHODS.add("tipf", lambda *, zeroshot_weights=None, seed=0, **p: TipAdapterF(seed=seed, **p))
METHODS.add("zeroshot", lambda *, zeroshot_weights=None, seed=0, **p: ZeroShot(
    _needs_zs("zeroshot", zeroshot_weights), **p))
# Tip-Adapter's own fusion (α and β searched jointly) is its zero-shot ensemble.
METHODS.add("tip+zs", lambda *, zeroshot_weights=None, seed=0, **p: TipAdapter(
    zeroshot_weights=_needs_zs("tip+zs", zeroshot_weights), **p))
METHODS.add("tipf+zs", lambda *, zeroshot_weights=None, seed=0, **p: TipAdapterF(
    zeroshot_weights=_needs_zs("tipf+zs", zeroshot_weights), seed=seed, **p))


def _coop(*, zeroshot_weights: ArrayLike | None = None, seed: int = 0, model=None,
          class_names: Sequence[str] | None = None, **params: Any) -> Estimator:
    """CoOp needs the image-text model whose image embeddings the features are and the class
    names (``fmlab adapt --clip-model`` passes both through ``method_params``)."""
    from fmlab.adapt.coop import CoOp

    if model is None or class_names is None:
        raise ConfigError("method 'coop' needs an image-text model and class names: run fmlab "
                          "adapt with --clip-model RUN_DIR|open_clip:<arch> (its image embeddings "
                          "are then the features)")
    return CoOp(model, class_names, seed=seed, **params)


METHODS.add("coop", _coop)


def _ensemble(base: str) -> MethodFactory:
    def factory(*, zeroshot_weights: ArrayLike | None = None, seed: int = 0,
                alpha: float | None = None, **params: Any) -> Estimator:
        zs = _needs_zs(f"{base}+zs", zeroshot_weights)
        inner = METHODS.get(base)(zeroshot_weights=None, seed=seed, **params)
        return ZeroShotEnsemble(inner, zs, alpha=alpha)
    return factory


for _base in ("ncm", "knn", "linear", "gda"):
    METHODS.add(f"{_base}+zs", _ensemble(_base))


def create_method(name: str, *, zeroshot_weights: ArrayLike | None = None, seed: int = 0,
                  **params: Any) -> Estimator:
    """Build the estimator registered as ``name`` (unknown names list the known ones)."""
    try:
        return METHODS.get(name)(zeroshot_weights=zeroshot_weights, seed=seed, **params)
    except TypeError as e:
        raise ConfigError(f"bad parameters for adapt method {name!r}: {e}") from None


def mean_per_class_recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Average over the classes present in ``y_true`` of the fraction predicted correctly."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic, torch.Tensor)):
        return v.item()
    return v


def run_sweep(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
              test_labels: ArrayLike, methods: Sequence[str],
              shots: Iterable[int | str] = (1, 2, 4, 8, 16), seeds: Iterable[int] = (1, 2, 3), *,
              train_view_features: ArrayLike | None = None,
              zeroshot_weights: ArrayLike | None = None,
              class_names: Sequence[str] | None = None,
              split_dir: str | os.PathLike | None = None, n_val: int | None = None,
              method_params: dict[str, dict[str, Any]] | None = None,
              on_fit: Callable[[str, int | str, int, Estimator], None] | None = None,
              ) -> list[dict[str, Any]]:
    """Fit every method on every (shots, seed) split and score it on the test features.

    ``train_features`` (N, D) / ``train_labels`` (N,) are the source's whole train split; splits
    index into them. ``train_view_features`` (V, N, D), optional, are features of V augmented
    views of the same N images: when given, estimators are fitted on ``views[:, split.train]``
    (each uses views as its ``views`` attribute says); validation always uses the un-augmented
    ``train_features[split.val]``. ``split_dir``: where the split files are written
    (``split_{shots}shot_seed{seed}.json``); without it the hash is of the bytes that would be
    written. ``method_params``: constructor arguments per method name. ``on_fit(method, shots,
    seed, estimator)`` is called after each fit, before any test data is used.

    Returns one record per method × shots × seed (see the keys below).
    """
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
    methods = list(methods)
    for m in methods:
        METHODS.get(m)  # unknown names fail before any work
        if (m == "zeroshot" or m.endswith("+zs")) and zeroshot_weights is None:
            _needs_zs(m, None)
    params = method_params or {}
    unknown = set(params) - set(methods)
    if unknown:
        raise ConfigError(f"method_params has entries for methods not in the sweep: "
                          f"{sorted(unknown)}")
    n_classes = len(class_names) if class_names is not None else None
    records: list[dict[str, Any]] = []
    for k in shots:
        for seed in seeds:
            split = make_split(ytr, k, seed, n_val=n_val, class_names=class_names,
                               n_classes=n_classes)
            if split_dir is not None:
                sha = split.save(Path(split_dir) / f"split_{k}shot_seed{seed}.json")
            else:
                sha = split.sha256
            tr = torch.as_tensor(split.train)
            va = torch.as_tensor(split.val)
            X_fit = views[:, tr] if views is not None else Xtr[tr]
            y_fit, y_val = ytr[split.train], ytr[split.val]
            X_val = Xtr[va]
            for m in methods:
                est = create_method(m, zeroshot_weights=zeroshot_weights, seed=int(seed),
                                    **params.get(m, {}))
                t0 = time.perf_counter()
                if len(va):
                    est.fit(X_fit, y_fit, X_val=X_val, y_val=y_val)
                else:
                    est.fit(X_fit, y_fit)
                fit_s = time.perf_counter() - t0
                if on_fit is not None:
                    on_fit(m, k, int(seed), est)
                pred = est.predict(Xte)
                records.append({
                    "method": m,
                    "shots": k,
                    "seed": int(seed),
                    "accuracy": float(np.mean(pred == yte)),
                    "mean_per_class_recall": mean_per_class_recall(yte, pred),
                    "fit_seconds": fit_s,
                    "split_sha256": sha,
                    "hyperparameters": _jsonable(est.hyperparameters_),
                    "n_train": len(split.train),
                    "n_val": len(split.val),
                    "n_test": len(yte),
                    "n_views": int(views.shape[0]) if views is not None else 1,
                })
    return records


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
