"""Evaluation behind ``fmlab video eval``: accuracy per label kind (appearance, direction, speed) with chance.

For every kind the run trained (``data.targets``), ``acc_<kind>`` is the accuracy of the class-text
logits (X-CLIP's classifier: cosine of the video embedding with the (prompted) class embeddings).
For every kind, trained or not, ``probe_<kind>`` is a logistic-regression probe on the frozen,
normalised video embedding v (standardised per feature, fit on ``probe_train`` train clips, scored on the test clips): it shows
what the video embedding holds about appearance and motion whatever it was trained for.
``chance_<kind>`` is one over the number of classes. For direction, ``acc_direction_axis`` also
counts a prediction right when it has the right axis but the opposite sense (d and d+4): an
order-blind video embedding (mean pooling) sees the same set of frames for a clip and its time
reverse, so it can reach at most 0.5 on direction but up to 1.0 on the axis.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError, DataError
from fmlab.experiments.video import KINDS, META_FILE, MODEL_FILE, build_objective, class_names


def load_video_model(run: str | Path) -> tuple[Any, dict]:
    """The trained objective (eval mode) and its ``video_model.json`` from a ``fmlab video train`` run.

    Args:
        run: the run directory.

    Returns:
        ``(objective, meta)``.
    """
    from safetensors.torch import load_file


    run = Path(run)
    if not (run / META_FILE).is_file() or not (run / MODEL_FILE).is_file():
        raise ConfigError(f"--model {run}: no {META_FILE}/{MODEL_FILE} there (not a finished fmlab video train run)")
    meta = json.loads((run / META_FILE).read_text(encoding="utf-8"))
    k = sum(len(meta["class_names"][t]) for t in meta["targets"])
    feats = None if meta.get("text_feature_dim") is None else torch.zeros(k, meta["text_feature_dim"])
    obj = build_objective(meta, feats)
    obj.load_state_dict(load_file(str(run / MODEL_FILE)))
    return obj.eval(), meta


def _all_labels(rendered: dict) -> dict[str, torch.Tensor]:
    out = {"images": torch.as_tensor(rendered["images"])}
    out.update({k: torch.as_tensor(np.asarray(rendered[v])[:, 0].astype(np.int64)) for k, v in KINDS.items()})
    return out


@torch.no_grad()
def embed_and_predict(obj: Any, split: Any, n: int, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Video embeddings, logits and every kind's labels of the first ``n`` clips of ``split``.

    Returns:
        ``{"v": (n, E) normalised, "logits": (n, K), "appearance"/"direction"/"speed": (n,)}``.
    """
    from fmlab.data.synthetic.batches import RenderedSource

    src = RenderedSource(split, to_batch=_all_labels, limit=n)
    parts: dict[str, list] = {}
    for s in range(0, len(src), batch_size):
        b = src.get_batch(np.arange(s, min(s + batch_size, len(src))))
        v, t = obj.model(b["images"], obj.class_embeddings())
        v = F.normalize(v, dim=-1)
        sims = torch.einsum("be,bke->bk", v, F.normalize(t, dim=-1))
        for key, val in (("v", v), ("logits", sims), *((k, b[k]) for k in KINDS)):
            parts.setdefault(key, []).append(val)
    return {k: torch.cat(v) for k, v in parts.items()}


def zero_shot_metrics(out: dict, meta: dict) -> dict[str, float]:
    """``acc_<kind>`` and ``chance_<kind>`` of each trained kind (and ``acc_direction_axis``)."""
    metrics: dict[str, float] = {}
    sizes = [len(meta["class_names"][t]) for t in meta["targets"]]
    for kind, logits in zip(meta["targets"], out["logits"].split(sizes, dim=1), strict=True):
        pred, true = logits.argmax(dim=1), out[kind]
        metrics[f"acc_{kind}"] = (pred == true).float().mean().item()
        metrics[f"chance_{kind}"] = 1.0 / logits.shape[1]
        if kind == "direction":
            metrics["acc_direction_axis"] = (pred % 4 == true % 4).float().mean().item()
    return metrics


def probe_metrics(train: dict, test: dict, n_classes: dict[str, int], seed: int = 0) -> dict[str, float]:
    """``probe_<kind>`` (logistic regression on v) and ``chance_<kind>`` for every label kind."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    metrics: dict[str, float] = {}
    scaler = StandardScaler().fit(train["v"].numpy())  # v can be nearly constant: scale each feature
    x_tr, x_te = scaler.transform(train["v"].numpy()), scaler.transform(test["v"].numpy())
    for kind in KINDS:
        y_tr = train[kind].numpy()
        if len(np.unique(y_tr)) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs "not converged" on near-separable features
            clf = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(x_tr, y_tr)
        metrics[f"probe_{kind}"] = float((clf.predict(x_te) == test[kind].numpy()).mean())
        metrics.setdefault(f"chance_{kind}", 1.0 / n_classes[kind])
    return metrics


def run_video_eval(model_ref: str | Path, data: str | None = None, db: Path | None = None,
                   probe: bool = True) -> dict[str, float]:
    """Evaluate a ``fmlab video train`` run on the test split of its source (or ``data``).

    Args:
        model_ref: the run directory.
        data: a ``video?...`` source spec (default: the one trained on); its clips must have the
            trained number of frames (or fewer) and side.
        db: results database to record into (None: do not record).
        probe: also fit the linear probes (``probe_<kind>``).

    Returns:
        Metrics: ``acc_<kind>`` / ``probe_<kind>`` / ``chance_<kind>`` and ``n_test``.
    """
    from fmlab.data import open_source

    t0 = time.perf_counter()
    obj, meta = load_video_model(model_ref)
    spec = data or meta["source"]
    source = open_source(spec, meta.get("data_root"))
    if "appearance" in meta["targets"] and class_names("appearance", source) != meta["class_names"]["appearance"]:
        raise DataError(f"--data {spec}: its object classes differ from the ones the model was trained on")
    test = source.split("test")
    bs = int(meta.get("eval_batch_size", 256))
    out = embed_and_predict(obj, test, len(test), bs)
    metrics = zero_shot_metrics(out, meta)
    n_probe = int(meta.get("probe_train", 2000))
    if probe and n_probe:
        names = {"appearance": len(class_names("appearance", source)), "direction": 8, "speed": 2}
        metrics.update(probe_metrics(embed_and_predict(obj, source.split("train"), n_probe, bs), out, names))
    metrics["n_test"] = float(len(test))
    _record(db, spec, test, meta, model_ref, metrics, time.perf_counter() - t0)
    return metrics


def _record(db: Path | None, spec: str, test: Any, meta: dict, model_ref: str | Path, metrics: dict,
            seconds: float) -> None:
    """One results-store row per metric (chance levels and counts are context, not results)."""
    if db is None:
        return
    from fmlab.results import Protocol, ResultsStore
    from fmlab.utils.io import sha256_file

    model = SimpleNamespace(name=f"video_{meta['method']}", weights_sha256=sha256_file(Path(model_ref) / MODEL_FILE))
    extra = {"model": str(model_ref), "targets": meta["targets"], "n_train": meta.get("n_train"),
             **{k: v for k, v in metrics.items() if k.startswith(("chance_", "n_"))}}
    records = [{"method": meta["method"], "hyperparameters": meta["xclip"], "metric": k, "value": float(v),
                "seconds": seconds, "extra": extra}
               for k, v in metrics.items() if not k.startswith(("n_", "chance_"))]
    ResultsStore(db).record("video", Protocol.of(spec, "test", backbone=model, split_hash=test.content_hash), records)
