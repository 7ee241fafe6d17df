"""``fmlab attack eval``: what a universal perturbation does to downstream probes.

For each downstream source the ``fmlab adapt`` protocol runs unchanged on CLEAN features (split
files drawn from the train split, :func:`fmlab.adapt.protocol.run_sweep`); each fitted
estimator is then also scored on the test images perturbed by δ and by random noise of the same
ℓ∞ norm (a fixed, seeded ±‖δ‖∞ sign pattern; for a patch, a seeded uniform-noise patch of the
same size pasted at the same seeded positions). Perturbed features are extracted here, outside
the feature cache, so they can never be mistaken for clean ones; clean features use the cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError

__all__ = ["AttackEvalConfig", "load_perturbation", "noise_like", "perturbed_features",
           "run_attack_eval"]

CONDITIONS = ("clean", "delta", "noise")


@dataclass
class AttackEvalConfig:
    """What ``fmlab attack eval`` runs (defaults: 16 shots, split seed 1, 2,000 test images)."""

    perturbation: Path
    backbone: str
    data: list[str]
    out: Path
    weights: str | None = None
    methods: list[str] = field(default_factory=lambda: ["linear", "knn"])
    shots: list[int | str] = field(default_factory=lambda: [16])
    seeds: list[int] = field(default_factory=lambda: [1])
    test_limit: int = 2000  # first M test images in a seeded order (0: all)
    noise_seed: int = 0  # seeds the random-noise baseline and the eval patch positions
    data_root: str | None = None
    db: Path | None = None
    init_seed: int = 0


def load_perturbation(path: str | os.PathLike) -> tuple[torch.Tensor, str]:
    """(δ or patch tensor (C, h, w), kind "linf" | "patch") from ``delta.safetensors``."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--perturbation {p}: no such file")
    try:
        with safe_open(str(p), framework="pt") as f:
            kind = (f.metadata() or {}).get("kind", "linf")
            delta = f.get_tensor("delta").float()
    except Exception as e:  # a corrupt or foreign file: one clear error
        raise ConfigError(f"--perturbation {p}: not a delta.safetensors file ({e})") from None
    if delta.ndim != 3 or kind not in ("linf", "patch"):
        raise ConfigError(f"--perturbation {p}: expected a (C, H, W) 'delta' of kind linf/patch, "
                          f"got shape {tuple(delta.shape)} kind {kind!r}")
    return delta, kind


def noise_like(delta: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """The random baseline: ±‖δ‖∞ signs (same ℓ∞ norm), or a uniform [0, 1] patch.

    Examples:
        >>> d = torch.full((3, 4, 4), 0.01); d[0, 0, 0] = -0.04
        >>> float(noise_like(d, "linf", 0).abs().max()) == float(d.abs().max())
        True
    """
    g = torch.Generator().manual_seed(int(seed))
    if kind == "patch":
        return torch.rand(delta.shape, generator=g)
    signs = torch.randint(0, 2, delta.shape, generator=g).float() * 2 - 1
    return signs * delta.abs().max()


@torch.no_grad()
def perturbed_features(bb: Any, split: Any, delta: torch.Tensor | None, kind: str, seed: int,
                       batch_size: int = 256) -> torch.Tensor:
    """Features of ``split`` after δ (pixel space, before normalisation); None = clean.

    Never cached (see the module docstring). Patch positions come from a generator seeded with
    ``seed``, so δ and its noise baseline are pasted at the same places.
    """
    import dataclasses

    from fmlab.attack.advencoder import apply_delta, paste_patches

    spec = bb.preprocess
    c = spec.channels
    pixels = dataclasses.replace(spec, mean=(0.0,) * c, std=(1.0,) * c)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    bb = bb.eval()
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for _, images in split.iter_batches(batch_size):
        x = pixels(torch.from_numpy(images))
        if delta is not None:
            x = paste_patches(x, delta, gen) if kind == "patch" else apply_delta(x, delta)
        out.append(bb.trunk((x - mean) / std).float())
    return torch.cat(out)


def _test_subset(test: Any, limit: int) -> Any:
    from fmlab.data.sources import SubsetSplit

    if not limit or limit >= len(test):
        return test
    idx = np.sort(np.random.default_rng(0).permutation(len(test))[:limit])
    return SubsetSplit(test, idx)


def _evaluate_source(cfg: AttackEvalConfig, bb: Any, spec: str, delta: torch.Tensor, kind: str
                     ) -> list[dict[str, Any]]:
    """Records (one per method × shots × seed × condition) for one downstream source."""
    from fmlab.adapt.protocol import run_sweep
    from fmlab.data.labelled import open_labelled
    from fmlab.experiments.adapt import _split_rows, _train_features
    from fmlab.features import cached_features

    source, train, test, test_name = open_labelled(spec, cfg.data_root, None,
                                                   command="fmlab attack eval")
    test = _test_subset(test, cfg.test_limit)
    rows = None if "all" in cfg.shots else _split_rows(train.labels, cfg.shots, cfg.seeds,
                                                       source.class_names)
    ftrain = _train_features(bb, train, rows, 0, False)
    ftest = cached_features(bb, test, progress=False)
    yte = ftest.labels.numpy()
    feats = {"delta": perturbed_features(bb, test, delta, kind, cfg.noise_seed),
             "noise": perturbed_features(bb, test, noise_like(delta, kind, cfg.noise_seed),
                                         kind, cfg.noise_seed)}
    fitted: dict[tuple, Any] = {}
    records = run_sweep(ftrain.features, ftrain.labels, ftest.features, ftest.labels,
                        cfg.methods, shots=tuple(cfg.shots), seeds=tuple(cfg.seeds),
                        class_names=source.class_names,
                        split_dir=Path(cfg.out) / "splits" / spec.replace(":", "_").replace("/", "_"),
                        on_fit=lambda m, k, s, est: fitted.__setitem__((m, k, s), est))
    out = []
    for r in records:
        est = fitted[(r["method"], r["shots"], r["seed"])]
        base = {"source": spec, "test_split": test_name, "n_test": len(yte), **{
            k: r[k] for k in ("method", "shots", "seed", "split_sha256")}}
        out.append({**base, "condition": "clean", "accuracy": r["accuracy"], "drop": 0.0})
        for cond, x in feats.items():
            acc = float(np.mean(est.predict(x) == yte))
            out.append({**base, "condition": cond, "accuracy": acc,
                        "drop": r["accuracy"] - acc})
    return out


def summarize_attack(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table: accuracy (%) clean / with δ / with noise and the two drops, per row."""
    lines = ["| source | method | shots | seed | clean | δ | noise | drop δ | drop noise |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    by: dict[tuple, dict[str, float]] = {}
    for r in records:
        by.setdefault((r["source"], r["method"], r["shots"], r["seed"]), {})[r["condition"]] = \
            100 * r["accuracy"]
    for (src, m, k, s), acc in by.items():
        lines.append(f"| {src} | {m} | {k} | {s} | {acc['clean']:.1f} | {acc['delta']:.1f} | "
                     f"{acc['noise']:.1f} | {acc['clean'] - acc['delta']:.1f} | "
                     f"{acc['clean'] - acc['noise']:.1f} |")
    return "\n".join(lines)


def run_attack_eval(cfg: AttackEvalConfig) -> list[dict[str, Any]]:
    """Evaluate ``cfg.perturbation`` on every source of ``cfg.data``; write the reports.

    Args:
        cfg: what to run.

    Returns:
        The records written to ``results.json``.
    """
    from fmlab.models import create_backbone
    from fmlab.results import Protocol, ResultsStore
    from fmlab.utils.io import atomic_write, sha256_file, write_json

    t0 = time.perf_counter()
    if not cfg.data:
        raise ConfigError("--data: give at least one downstream source")
    delta, kind = load_perturbation(cfg.perturbation)
    bb = create_backbone(cfg.backbone, weights=cfg.weights,
                         seed=cfg.init_seed if cfg.weights is None else None)
    info = {"perturbation": str(cfg.perturbation), "kind": kind,
            "perturbation_sha256": sha256_file(cfg.perturbation),
            "linf": float(delta.abs().max()) if kind == "linf" else None,
            "backbone": bb.name, "weights_sha256": bb.weights_sha256,
            "noise_seed": cfg.noise_seed, "test_limit": cfg.test_limit}
    records = []
    for spec in cfg.data:
        records += [{**r, "protocol": info} for r in _evaluate_source(cfg, bb, spec, delta, kind)]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", records)
    baseline = (f"noise: a seeded ±{info['linf']:.6f} sign pattern, δ's ℓ∞ norm" if kind == "linf"
                else "noise: a seeded uniform [0, 1] patch of the same size at the same positions")
    with atomic_write(out / "summary.md", "w") as f:
        f.write(f"# fmlab attack eval: {kind} perturbation on {bb.name}\n\n"
                f"Accuracy (%) of probes fitted on clean features, scored on clean / perturbed / "
                f"random-noise test images ({baseline}).\n\n"
                + summarize_attack(records) + "\n")
    if cfg.db is not None:
        store = ResultsStore(cfg.db)
        for spec in cfg.data:
            rows = [r for r in records if r["source"] == spec]
            store.record("attack", Protocol.of(spec, rows[0]["test_split"], backbone=bb,
                                               perturbation=info["perturbation_sha256"],
                                               kind=kind), rows, ("accuracy", "drop"),
                         extra_keys=("shots", "condition"))
    write_json(out / "run.json", {**info, "seconds": round(time.perf_counter() - t0, 2)})
    return records
