"""``fmlab study pretrain-advantage``: the (m, n) grid of the provable-advantage simulation.

For every case (GMM, factor model), seed, knob, number of unlabelled points m and of labelled
points n, it measures the test error of pre-training + ERM and of the supervised-only baselines
(:mod:`fmlab.studies.advantage`), then writes ``results.json``, ``summary.md``, the heat map and
the rate fit (:mod:`fmlab.studies.advantage_report`). Common random numbers keep the grid
smooth: per seed, one problem, one test set, nested unlabelled and labelled samples (the first m
of the largest m), and the same points and label draws under every knob. EM runs once per
(seed, m) and serves every n and knob, since the unlabelled data do not depend on either.
There is no training loop here (EM and PCA are closed-form iterative estimators), so the engine is
not used. ``configs/study/pretrain_advantage.yaml`` holds the defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.engine.config import config_to_dict, load_config
from fmlab.utils.validation import check, finite_float, positive_int

__all__ = ["AdvantageConfig", "load_advantage_config", "run_grid", "run_study"]

CASES = ("gmm", "factor")


@dataclass
class GMMCase:
    d: int = 10  # dimension
    K: int = 4  # components = labels
    separation: float = 3.0  # ‖μ_k‖; the noise is N(0, I)
    covariance: str = "shared"  # EM's covariance model: shared or full
    n_init: int = 4  # EM starts (k-means++), the best likelihood kept

    def validate(self, prefix: str = "gmm") -> None:
        positive_int(f"{prefix}.d", self.d)
        check(isinstance(self.K, int) and self.K >= 2, f"{prefix}.K", self.K, "must be an integer >= 2")
        finite_float(f"{prefix}.separation", self.separation, low=0.0)
        check(self.covariance in ("shared", "full"), f"{prefix}.covariance", self.covariance,
              "must be shared or full")
        positive_int(f"{prefix}.n_init", self.n_init)


@dataclass
class FactorCase:
    d: int = 50  # ambient dimension
    r: int = 3  # factors
    signal: float = 0.3  # singular values of A are signal·√d
    label_noise: float = 0.5  # τ

    def validate(self, prefix: str = "factor") -> None:
        positive_int(f"{prefix}.d", self.d)
        positive_int(f"{prefix}.r", self.r)
        check(self.r <= self.d, f"{prefix}.r", self.r, f"must be <= {prefix}.d ({self.d})")
        finite_float(f"{prefix}.signal", self.signal, low=0.0, low_open=True)
        finite_float(f"{prefix}.label_noise", self.label_noise, low=0.0)


@dataclass
class GridConfig:
    cases: list[str] = field(default_factory=lambda: list(CASES))
    m: list[int] = field(default_factory=lambda: [25, 100, 400, 1600])  # unlabelled points
    n: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 256, 1024])  # labelled points
    knobs: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])  # 1: label ⟂ latent
    seeds: int = 8
    n_test: int = 5000

    def validate(self, prefix: str = "grid") -> None:
        for c in self.cases:
            check(c in CASES, f"{prefix}.cases", self.cases, f"must list cases among {', '.join(CASES)}")
        check(bool(self.cases), f"{prefix}.cases", self.cases, "must not be empty")
        for key in ("m", "n"):
            values = getattr(self, key)
            check(bool(values), f"{prefix}.{key}", values, "must list at least one value")
            for v in values:
                check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{prefix}.{key}",
                      values, "must list integers >= 1")
        check(bool(self.knobs), f"{prefix}.knobs", self.knobs, "must list at least one value")
        for v in self.knobs:
            finite_float(f"{prefix}.knobs", v, low=0.0, high=1.0)
        positive_int(f"{prefix}.seeds", self.seeds)
        positive_int(f"{prefix}.n_test", self.n_test)


@dataclass
class AdvantageConfig:
    """What ``fmlab study pretrain-advantage`` runs."""

    grid: GridConfig = field(default_factory=GridConfig)
    gmm: GMMCase = field(default_factory=GMMCase)
    factor: FactorCase = field(default_factory=FactorCase)
    seed: int = 0  # seed s of the grid runs problem/sample seed (seed + s)

    def validate(self) -> None:
        check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        if "gmm" in self.grid.cases:
            check(min(self.grid.m) >= self.gmm.K, "grid.m", self.grid.m,
                  f"must be >= gmm.K ({self.gmm.K}): EM needs at least one point per component")


def load_advantage_config(path: str | Path | None, overrides=()) -> AdvantageConfig:
    """The study's settings: YAML ``path`` (or the defaults), then ``--set`` overrides.

    Examples:
        >>> load_advantage_config(None, ["grid.m=[50,500]"]).grid.m
        [50, 500]
        >>> load_advantage_config(None, ["grid.n=[0]"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: grid.n: [0] must list integers >= 1
    """
    return load_config(path, AdvantageConfig, overrides)


def _rec(case: str, knob: float, m: int | None, n: int, seed: int, method: str, error: float,
         bayes: float) -> dict[str, Any]:
    return {"case": case, "knob": knob, "m": m, "n": n, "seed": seed, "method": method,
            "error": error, "bayes_error": bayes, "excess_error": error - bayes}


def _gmm_seed(cfg: AdvantageConfig, s: int) -> list[dict[str, Any]]:
    """Every record of the GMM case for seed ``s`` (EM once per m)."""
    from fmlab.studies.advantage import erm_label_map, make_gmm, supervised_errors
    from fmlab.studies.em import fit_gmm

    g, grid = cfg.gmm, cfg.grid
    base = make_gmm(g.d, g.K, g.separation, 0.0, seed=cfg.seed + s)
    rng = np.random.default_rng([cfg.seed + s, 1])
    test_unif = rng.random(grid.n_test), rng.integers(g.K, size=grid.n_test)
    x_test, _, z_test = base.sample(grid.n_test, rng)
    x_unlab, _, _ = base.sample(max(grid.m), rng)
    x_lab, _, z_lab = base.sample(max(grid.n), rng)
    lab_unif = rng.random(len(x_lab)), rng.integers(g.K, size=len(x_lab))
    fits = {m: fit_gmm(x_unlab[:m], g.K, covariance=g.covariance, n_init=g.n_init, seed=cfg.seed + s)
            for m in sorted(set(grid.m))}
    comps = {m: (np.argmax(f.log_joint(x_lab), 1), np.argmax(f.log_joint(x_test), 1))
             for m, f in fits.items()}
    out = []
    for knob in grid.knobs:
        prob = make_gmm(g.d, g.K, g.separation, knob, seed=cfg.seed + s)
        y_test = np.where(test_unif[0] < knob, test_unif[1], prob.perm[z_test])
        y_lab = np.where(lab_unif[0] < knob, lab_unif[1], prob.perm[z_lab])
        bayes = float(np.mean(prob.bayes_predict(x_test) != y_test))
        for n in sorted(set(grid.n)):
            for method, err in supervised_errors(x_lab[:n], y_lab[:n], x_test, y_test).items():
                out.append(_rec("gmm", knob, None, n, s, method, err, bayes))
            for m, (c_lab, c_test) in comps.items():
                f = erm_label_map(c_lab[:n], y_lab[:n], g.K, g.K)
                out.append(_rec("gmm", knob, m, n, s, "pretrain_erm",
                                float(np.mean(f[c_test] != y_test)), bayes))
    return out


def _factor_seed(cfg: AdvantageConfig, s: int) -> list[dict[str, Any]]:
    """Every record of the factor-model case for seed ``s`` (PCA once per m)."""
    from fmlab.studies.advantage import fit_pca, make_factor, ridge_mse

    fc, grid = cfg.factor, cfg.grid
    pcas = None
    out = []
    for knob in grid.knobs:
        prob = make_factor(fc.d, fc.r, fc.signal, knob, seed=cfg.seed + s, label_noise=fc.label_noise)
        draw = np.random.default_rng([cfg.seed + s, 2])  # the same points under every knob
        x_test, y_test = prob.sample(grid.n_test, draw)
        x_unlab, _ = prob.sample(max(grid.m), draw)
        x_lab, y_lab = prob.sample(max(grid.n), draw)
        if pcas is None:
            pcas = {m: fit_pca(x_unlab[:m], fc.r) for m in sorted(set(grid.m))}
        bayes = float(np.mean((prob.bayes_predict(x_test) - y_test) ** 2))
        for n in sorted(set(grid.n)):
            out.append(_rec("factor", knob, None, n, s, "ridge",
                            ridge_mse(x_lab[:n], y_lab[:n], x_test, y_test), bayes))
            for m, (mean, proj) in pcas.items():
                err = ridge_mse((x_lab[:n] - mean) @ proj, y_lab[:n], (x_test - mean) @ proj, y_test)
                out.append(_rec("factor", knob, m, n, s, "pretrain_erm", err, bayes))
    return out


def run_grid(cfg: AdvantageConfig) -> list[dict[str, Any]]:
    """Every (case, knob, m, n, seed, method) record of the grid.

    Baselines use no unlabelled data: their records carry ``m = None``.

    Examples:
        >>> cfg = load_advantage_config(None, ["grid.cases=[gmm]", "grid.m=[40]", "grid.n=[8]",
        ...                                    "grid.knobs=[0.0]", "grid.seeds=1", "grid.n_test=200"])
        >>> sorted({r["method"] for r in run_grid(cfg)})
        ['logreg', 'pretrain_erm', 'qda']
    """
    runners = {"gmm": _gmm_seed, "factor": _factor_seed}
    return [r for case in cfg.grid.cases for s in range(cfg.grid.seeds) for r in runners[case](cfg, s)]


def run_study(cfg: AdvantageConfig, out: str | Path, db: str | Path | None = None) -> dict[str, Any]:
    """Run the grid and write ``results.json``, ``summary.md``, ``advantage_heatmap.png`` and
    ``rate_fit.png`` into ``out`` (atomically); optionally append the records to a results store.

    Returns:
        ``{"records": n, "seconds": s, "slopes": {...}}``.
    """
    from fmlab.studies.advantage_report import plot_heatmap, plot_rates, rate_fits, summary_markdown
    from fmlab.utils.io import atomic_write, write_json

    out = Path(out)
    t0 = time.perf_counter()
    records = run_grid(cfg)
    seconds = round(time.perf_counter() - t0, 2)
    fits = rate_fits(records)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {"config": config_to_dict(cfg), "seconds": seconds,
                                      "rate_fits": fits, "records": records})
    with atomic_write(out / "summary.md", "w") as f:
        f.write(summary_markdown(records, fits, seconds))
    plot_heatmap(records, out / "advantage_heatmap.png")
    plot_rates(records, out / "rate_fit.png")
    if db is not None:
        from fmlab.results import ResultsStore
        from fmlab.results.protocol import Protocol

        ResultsStore(db).record("study_pretrain_advantage",
                                Protocol.of("synthetic:pretrain_advantage", config=config_to_dict(cfg)),
                                records, ("error", "excess_error"), extra_keys=("case", "knob", "m", "n"))
    return {"records": len(records), "seconds": seconds, "rate_fits": fits}
