"""The workflows behind ``fmlab graph``: W2PGNN feasibility, GraphCL pre-training, GIN fine-tuning.

* :func:`run_feasibility` — graphon bases from the pre-training graphs (k-means of their
  step-function graphons), the downstream dataset's mean graphon, and the score
  1 - min_alpha d(W_D, sum alpha_i B_i) (:mod:`fmlab.graphs.graphon`). No training.
* :func:`run_graph_pretrain` — :class:`fmlab.graphs.objectives.GraphCL` on every graph of the
  pre-training datasets through :class:`fmlab.engine.Trainer` (exports ``encoder.safetensors``).
* :func:`run_graph_finetune` — a GIN + linear head trained with cross-entropy on the downstream
  training split (seeded, stratified; validation carved from train), from a pre-trained encoder
  (``init``) or from a random init; val and test accuracy of the final model go to
  ``results.json``. gain = test accuracy(pre-trained) - test accuracy(scratch), same split and seed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.data.graphs import GraphDataset, GraphSource, graph_split, load_graph_datasets, parse_specs
from fmlab.errors import DataError, ModelError
from fmlab.experiments.graph_config import GraphFinetuneConfig, GraphPretrainConfig
from fmlab.graphs.graphon import dataset_graphons, feasibility, fit_bases
from fmlab.utils.io import write_json

__all__ = ["evaluate_classifier", "load_encoder", "run_feasibility", "run_graph_finetune",
           "run_graph_pretrain"]

IN_DIM = 11  # degree one-hot, capped at 10 (fmlab.data.graphs.degree_features)


def _limited(ds: GraphDataset, limit: int) -> np.ndarray:
    return np.arange(len(ds) if not limit else min(limit, len(ds)))


def run_feasibility(pretrain: str, downstream: str, resolution: int = 16, bases: int = 4,
                    method: str = "sas", seed: int = 0, data_root: str | None = None) -> dict[str, Any]:
    """W2PGNN feasibility of pre-training on ``pretrain`` for ``downstream``.

    Args:
        pretrain: comma-separated dataset specs (their graphs are pooled).
        downstream: one dataset spec (all its graphs; labels unused).
        resolution: K of the K x K step-function graphons.
        bases: k, the number of k-means clusters (graphon bases) of the pre-training graphs.
        method: graphon estimator, ``sas`` or ``usvt``.
        seed: k-means seed.
        data_root: folder holding ``tu_graphs/`` (default ``$FMLAB_DATA``).

    Returns:
        ``{"score", "alpha", "basis_weights", "datasets": [{name, role, graphs, mean_nodes,
        mean_edges}], "seconds", ...}``.
    """
    t0 = time.perf_counter()
    pre = load_graph_datasets(parse_specs(pretrain), data_root)
    if len(parse_specs(downstream)) != 1:
        raise DataError(f"--downstream: {downstream!r} must name one dataset")
    (down,) = load_graph_datasets(parse_specs(downstream), data_root)
    pre_g = np.concatenate([dataset_graphons(ds, resolution, method) for ds in pre])
    fitted = fit_bases(pre_g, k=bases, seed=seed)
    target = dataset_graphons(down, resolution, method).mean(0)
    score, alpha = feasibility(target, fitted)
    rows = [_describe(ds, "pretrain") for ds in pre] + [_describe(down, "downstream")]
    empty = [name for name, g in (("pre-training", pre_g), ("downstream", target)) if not g.any()]
    warning = (f"every {' and '.join(empty)} graphon is all zeros ({method} at this graph size), so the "
               "score says nothing; use method sas" if empty else None)
    return {"warning": warning, "pretrain": pretrain, "downstream": downstream, "resolution": resolution, "bases": len(alpha),
            "method": method, "seed": seed, "score": float(score), "alpha": alpha.round(4).tolist(),
            "basis_weights": fitted.weights.round(4).tolist(), "datasets": rows,
            "seconds": time.perf_counter() - t0}


def _describe(ds: GraphDataset, role: str) -> dict[str, Any]:
    nodes = np.diff(ds.node_ptr)
    return {"name": ds.name, "role": role, "graphs": len(ds), "mean_nodes": float(nodes.mean()),
            "mean_edges": float(ds.edge_index.shape[1] / 2 / len(ds)), "sha256": ds.digest}


def _build_gin(cfg: Any) -> torch.nn.Module:
    from fmlab.models.gin import GIN

    return GIN(in_dim=IN_DIM, hidden=cfg.model.hidden, layers=cfg.model.layers)


def run_graph_pretrain(cfg: GraphPretrainConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Pre-train a GIN with GraphCL on the graphs of ``cfg.data.pretrain`` (labels unused).

    Returns:
        ``{"step", "max_steps", "loss", "encoder", "resumed_from"}``; the run folder holds
        ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and ``encoder.safetensors``.
    """
    from fmlab.engine import Trainer
    from fmlab.graphs.objectives import GRAPH_OBJECTIVES

    datasets = load_graph_datasets(parse_specs(cfg.data.pretrain), cfg.data.data_root)
    source = GraphSource(datasets, [_limited(ds, cfg.data.limit) for ds in datasets])
    torch.manual_seed(cfg.trainer.seed)
    o = cfg.objective
    obj = GRAPH_OBJECTIVES.get(o.name)(_build_gin(cfg), edge_drop=o.edge_drop, feature_mask=o.feature_mask,
                                       temperature=o.temperature, proj_dim=o.proj_dim)
    res = Trainer.from_config(obj, source, cfg, run_dir=out).fit(resume=out if resume else None)
    last = res.history[-1]["loss"] if res.history else None
    return {"step": res.step, "max_steps": res.max_steps, "loss": last, "resumed_from": res.resumed_from,
            "encoder": str(res.encoder_path) if res.encoder_path else None, "graphs": len(source)}


def load_encoder(path: str | Path, encoder: torch.nn.Module) -> torch.nn.Module:
    """Load ``encoder.safetensors`` (or a pre-training run folder holding it) into ``encoder``.

    Raises:
        ModelError: a missing file or weights of another architecture, naming the file.
    """
    from safetensors.torch import load_file

    p = Path(path)
    if p.is_dir():
        p = p / "encoder.safetensors"
    if not p.is_file():
        raise ModelError(f"init: {p}: no such file (give a pre-training run's encoder.safetensors)")
    try:
        encoder.load_state_dict(load_file(str(p)), strict=True)
    except (RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"init: {p}: weights do not fit the GIN of model.hidden/model.layers ({first})") from None
    return encoder


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, ds: GraphDataset, indices: np.ndarray,
                        chunk: int = 256) -> float:
    """Accuracy of ``model`` on graphs ``indices`` of ``ds`` (eval mode; restores train mode)."""
    if len(indices) == 0:
        return float("nan")
    was = model.training
    model.eval()
    source = GraphSource([ds], [indices])
    correct = 0
    for s in range(0, len(indices), chunk):
        b = {k: torch.as_tensor(v) for k, v in source.get_batch(np.arange(s, min(s + chunk, len(indices)))).items()}
        correct += int((model(b).argmax(1) == b["labels"]).sum())
    model.train(was)
    return correct / len(indices)


def run_graph_finetune(cfg: GraphFinetuneConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Fine-tune (encoder + head) on the downstream training split; score val and test.

    Returns:
        The record written to ``OUT/results.json``: test and val accuracy, the split hash, the
        init, steps and seconds.
    """
    from fmlab.engine import Trainer
    from fmlab.graphs.objectives import GraphSupervised
    from fmlab.models.gin import GraphClassifier

    t0 = time.perf_counter()
    (ds,) = load_graph_datasets(parse_specs(cfg.data.downstream)[:1], cfg.data.data_root)
    idx = _limited(ds, cfg.data.limit)
    split = graph_split(ds.labels[idx], cfg.data.split_seed, cfg.data.test_fraction, cfg.data.val_fraction)
    torch.manual_seed(cfg.init_seed)
    encoder = _build_gin(cfg)
    model = GraphClassifier(encoder, ds.num_classes)  # the head is drawn after the encoder either way
    if cfg.init:
        load_encoder(cfg.init, encoder)
    source = GraphSource([ds], [idx[split["train"]]])
    res = Trainer.from_config(GraphSupervised(model), source, cfg, run_dir=out).fit(resume=out if resume else None)
    record = {"dataset": ds.name, "dataset_sha256": ds.digest, "init": cfg.init or "scratch",
              "seed": cfg.trainer.seed, "split_seed": cfg.data.split_seed, "split_hash": split["hash"],
              "train_graphs": len(split["train"]), "step": res.step, "max_steps": res.max_steps,
              "val_accuracy": evaluate_classifier(model, ds, idx[split["val"]]),
              "accuracy": evaluate_classifier(model, ds, idx[split["test"]]),
              "seconds": time.perf_counter() - t0}
    write_json(Path(out) / "results.json", record)
    return record
