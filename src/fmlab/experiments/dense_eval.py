"""``fmlab dense eval``: mIoU of a trained DenseCLIP (or baseline) run on a canvas split.

Metrics: ``miou`` (classes present, background included), ``miou_objects`` (object classes
only; background pixels still count as errors), ``pixel_acc``; with language also the score map
used alone as a segmenter (``argmax [b; s/τ]``, the auxiliary loss's logits): ``scoremap_miou``
and ``scoremap_miou_objects``. Recorded in the results store (one row per metric) with ``db``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.errors import DataError
from fmlab.experiments.dense import load_dense_run, open_split


@torch.no_grad()
def predict_split(obj, batch: dict, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Head predictions, score-map predictions and score maps of every image in ``batch``.

    Args:
        obj: a :class:`~fmlab.multimodal.dense.DenseCLIPObjective` in eval mode.
        batch: ``images`` uint8 (N, S, S, 3) and ``masks`` (N, S, S).
        batch_size: images per forward pass.

    Returns:
        ``pred`` (N, S, S) int64; with language also ``score_pred`` (N, S, S) and ``scores``
        (N, K, h, w) float at the feature resolution.
    """
    size = tuple(batch["masks"].shape[-2:])
    out: dict[str, list] = {"pred": [], "score_pred": [], "scores": []}
    for s in range(0, batch["images"].shape[0], batch_size):
        logits, scores = obj.model(batch["images"][s:s + batch_size])
        out["pred"].append(F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1))
        if scores is not None:
            bg = obj.background.expand(scores.shape[0], 1, *scores.shape[2:])
            aux = F.interpolate(torch.cat([bg, scores / obj.tau], 1), size=size, mode="bilinear", align_corners=False)
            out["score_pred"].append(aux.argmax(1))
            out["scores"].append(scores)
    return {k: torch.cat(v) for k, v in out.items() if v}


def segmentation_metrics(pred, truth, num_classes: int, prefix: str = "") -> dict[str, float]:
    """``miou``, ``miou_objects`` and ``pixel_acc`` of class maps (``num_classes`` with background).

    Examples:
        >>> m = segmentation_metrics(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), 2)
        >>> {k: round(v, 3) for k, v in m.items()}
        {'miou': 0.583, 'miou_objects': 0.667, 'pixel_acc': 0.75}
    """
    from fmlab.metrics.segmentation import mean_iou

    pred, truth = np.asarray(pred), np.asarray(truth)
    return {f"{prefix}miou": float(mean_iou(pred, truth, num_classes)),
            f"{prefix}miou_objects": float(mean_iou(pred, truth, num_classes, ignore_background=True)),
            f"{prefix}pixel_acc": float((pred == truth).mean())}


def run_dense_eval(model: str | Path, data: str | None = None, split: str = "test", limit: int = 0,
                   db: Path | None = None, picture: str | Path | None = None, n_picture: int = 4,
                   batch_size: int = 64) -> dict:
    """Evaluate a ``fmlab dense train`` run; optionally record it and draw the score-map picture.

    Args:
        model: the run directory.
        data: the canvas source spec (default: the run's ``data.source``).
        split: the split to evaluate.
        limit: the first M canvases only (0: all).
        db: the results database, or None.
        picture: a PNG path for the grid of images, truth, prediction and score maps, or None.
        n_picture: images in the picture.
        batch_size: images per forward pass.

    Returns:
        The metrics (floats) and ``n_images``.
    """
    from fmlab.data.synthetic.batches import RenderedSource
    from fmlab.multimodal.dense_objective import canvas_batch

    t0 = time.perf_counter()
    obj, cfg, names = load_dense_run(model)
    spec = data or cfg.data.source
    source, sp = open_split(spec, split, cfg.data.data_root)
    k = len(getattr(source, "class_names", None) or [])
    if k != len(names):
        raise DataError(f"--data {spec}: {k} classes, the model {model} was trained on {len(names)}")
    batch = RenderedSource(sp, canvas_batch, limit=limit).render_all()
    if not len(batch.get("masks", ())):
        raise DataError(f"--data {spec}: the {split} split is empty")
    out = predict_split(obj, batch, batch_size)
    metrics = segmentation_metrics(out["pred"], batch["masks"], k + 1)
    if "score_pred" in out:
        metrics.update(segmentation_metrics(out["score_pred"], batch["masks"], k + 1, prefix="scoremap_"))
    metrics["n_images"] = int(batch["masks"].shape[0])
    seconds = time.perf_counter() - t0
    _record(db, obj, cfg, spec, split, sp.content_hash, metrics, str(model), seconds)
    if picture is not None:
        from fmlab.multimodal.dense_plot import score_map_picture

        n = min(n_picture, metrics["n_images"])
        scores = out["scores"][:n] if "scores" in out else None
        kind = "baseline (no language)"
        if cfg.model.language:
            kind = "DenseCLIP" + ("" if cfg.model.context_prompting else " without context prompting")
        where = "/".join(Path(model).resolve().parts[-3:])
        score_map_picture(picture, batch["images"][:n], batch["masks"][:n], out["pred"][:n], scores, names,
                          f"{kind} ({where}): mIoU {metrics['miou']:.3f}, objects {metrics['miou_objects']:.3f}")
    return metrics


def _record(db, obj, cfg, spec: str, split: str, split_hash: str, metrics: dict, model: str,
            seconds: float) -> None:
    if db is None:
        return
    from dataclasses import asdict

    from fmlab.results import Protocol, ResultsStore

    method = "denseclip" if cfg.model.language else "dense_baseline"
    if cfg.model.language and not cfg.model.context_prompting:
        method = "denseclip_noctx"
    records = [{"method": method, "hyperparameters": {"model": asdict(cfg.model), "loss": asdict(cfg.loss)},
                "metric": key, "value": float(v), "seconds": seconds, "extra": {"model": model}}
               for key, v in metrics.items() if not key.startswith("n_")]
    ResultsStore(db).record("dense_segmentation",
                            Protocol.of(spec, split, backbone=obj.model.encoder.backbone, split_hash=split_hash),
                            records)
