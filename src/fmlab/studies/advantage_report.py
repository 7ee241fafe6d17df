"""Tables, rate fits and pictures of the provable-advantage grid (``fmlab study pretrain-advantage``).

The advantage of a (case, knob, m, n, seed) cell is error(best supervised baseline) −
error(pre-train + ERM), the best baseline chosen per seed on the test set (an oracle choice,
so the comparison is conservative for pre-training). The rate fits regress the seed-mean excess
error (error − Bayes error on the same test set) of pre-train + ERM on log m and log n, and fit
the additive forms c₀ + a/√m + b/√n (the paper's bound) and c₀ + a/m + b/n (papers.md 37's form).
The theorem gives an upper bound, so a slope steeper than the bound's is consistent with it; a
flatter slope over a range where the excess is still large is not evidence against it either (the
bound holds up to constants and logs, for m, n past a burn-in).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import numpy as np

from fmlab.utils.io import atomic_path

__all__ = ["advantage_table", "plot_heatmap", "plot_rates", "rate_fits", "summary_markdown"]

BASELINES = {"gmm": ("logreg", "qda"), "factor": ("ridge",)}


def _index(records: list[dict[str, Any]]) -> dict[tuple, float]:
    return {(r["case"], r["knob"], r["m"], r["n"], r["seed"], r["method"]): r for r in records}


def _axes(records: list[dict[str, Any]], case: str):
    rows = [r for r in records if r["case"] == case]
    knobs = sorted({r["knob"] for r in rows})
    ms = sorted({r["m"] for r in rows if r["m"] is not None})
    ns = sorted({r["n"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    return knobs, ms, ns, seeds


def advantage_table(records: list[dict[str, Any]], case: str, knob: float,
                    key: str = "advantage") -> dict[tuple[int, int], np.ndarray]:
    """Per (m, n): the per-seed values of ``key``: ``advantage``, ``pretrain`` (its error),
    ``supervised`` (the best baseline's error) or ``excess`` (pre-training's excess error).

    Examples:
        >>> recs = [dict(case="gmm", knob=0.0, m=None, n=4, seed=0, method="logreg", error=0.5, bayes_error=0.1),
        ...         dict(case="gmm", knob=0.0, m=None, n=4, seed=0, method="qda", error=0.4, bayes_error=0.1),
        ...         dict(case="gmm", knob=0.0, m=9, n=4, seed=0, method="pretrain_erm", error=0.1, bayes_error=0.1)]
        >>> advantage_table(recs, "gmm", 0.0)[(9, 4)].round(3)
        array([0.3])
    """
    idx = _index(records)
    _, ms, ns, seeds = _axes(records, case)
    table = {}
    for m in ms:
        for n in ns:
            vals = []
            for s in seeds:
                pre = idx[(case, knob, m, n, s, "pretrain_erm")]
                sup = min(idx[(case, knob, None, n, s, b)]["error"] for b in BASELINES[case])
                vals.append({"advantage": sup - pre["error"], "pretrain": pre["error"],
                             "supervised": sup, "excess": pre["error"] - pre["bayes_error"]}[key])
            table[(m, n)] = np.asarray(vals)
    return table


def _slopes(ms: list[int], ns: list[int], excess: dict[tuple[int, int], float]) -> dict[str, Any]:
    """Log-log slopes and the two additive fits of the seed-mean excess error over the grid."""
    cells = [(m, n, e) for (m, n), e in excess.items()]
    m_arr, n_arr, e_arr = (np.array([c[i] for c in cells], dtype=float) for i in range(3))
    out: dict[str, Any] = {}
    pos = e_arr > 0
    if pos.sum() >= 3:
        a = np.c_[np.ones(pos.sum()), np.log(m_arr[pos]), np.log(n_arr[pos])]
        coef = np.linalg.lstsq(a, np.log(e_arr[pos]), rcond=None)[0]
        out["loglog_slope_m"], out["loglog_slope_n"] = float(coef[1]), float(coef[2])
    for name, power in (("sqrt", 0.5), ("linear", 1.0)):
        a = np.c_[np.ones(len(e_arr)), m_arr ** -power, n_arr ** -power]
        coef = np.linalg.lstsq(a, e_arr, rcond=None)[0]
        resid = e_arr - a @ coef
        r2 = 1 - float(resid @ resid) / max(float(((e_arr - e_arr.mean()) ** 2).sum()), 1e-300)
        out[f"additive_{name}"] = {"c0": float(coef[0]), "C_m": float(coef[1]),
                                   "C_n": float(coef[2]), "r2": r2}
    return out


def rate_fits(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per case and knob: the pre-training rate fits, and the best baseline's log-log slope in n.

    Returns:
        ``{"<case>@knob=<k>": {"loglog_slope_m", "loglog_slope_n", "additive_sqrt",
        "additive_linear", "supervised_slope_n"}}``.
    """
    fits = {}
    for case in sorted({r["case"] for r in records}):
        knobs, ms, ns, seeds = _axes(records, case)
        for knob in knobs:
            excess = {k: float(v.mean()) for k, v in advantage_table(records, case, knob, "excess").items()}
            fit = _slopes(ms, ns, excess)
            sup = defaultdict(list)
            for r in records:
                if r["case"] == case and r["knob"] == knob and r["m"] is None:
                    sup[(r["n"], r["seed"])].append(r["error"] - r["bayes_error"])
            per_n = np.array([np.mean([min(sup[(n, s)]) for s in seeds]) for n in ns])
            if len(ns) >= 2 and np.all(per_n > 0):
                fit["supervised_slope_n"] = float(np.polyfit(np.log(ns), np.log(per_n), 1)[0])
            fits[f"{case}@knob={knob:g}"] = fit
    return fits


def _pm(v: np.ndarray) -> str:
    return f"{v.mean():+.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def _case_tables(records: list[dict[str, Any]], case: str) -> list[str]:
    knobs, ms, ns, seeds = _axes(records, case)
    err = "test MSE" if case == "factor" else "test error"
    lines = []
    for knob in knobs:
        adv = advantage_table(records, case, knob)
        pre = advantage_table(records, case, knob, "pretrain")
        sup = advantage_table(records, case, knob, "supervised")
        lines += [f"### {case}, knob = {knob:g} ({len(seeds)} seeds, mean ± std)", "",
                  f"Advantage = {err} of the best supervised baseline − {err} of pre-train + ERM "
                  "(positive: pre-training helps).", "",
                  "| n \\ m | " + " | ".join(str(m) for m in ms) + " | best supervised " + err + " |",
                  "|---" * (len(ms) + 2) + "|"]
        for n in ns:
            lines.append(f"| {n} | " + " | ".join(_pm(adv[(m, n)]) for m in ms)
                         + f" | {_pm(sup[(ms[0], n)]).lstrip('+')} |")
        lines += ["", f"Pre-train + ERM {err}:", "",
                  "| n \\ m | " + " | ".join(str(m) for m in ms) + " |", "|---" * (len(ms) + 1) + "|"]
        for n in ns:
            lines.append(f"| {n} | " + " | ".join(_pm(pre[(m, n)]).lstrip("+") for m in ms) + " |")
        lines.append("")
    return lines


def summary_markdown(records: list[dict[str, Any]], fits: dict[str, Any], seconds: float) -> str:
    """The study's ``summary.md``: per case and knob the advantage and error grids, then the fits."""
    lines = ["# Provable advantage of unsupervised pre-training (simulation)", "",
             f"{len(records)} records in {seconds:.1f} s. Baselines: GMM — the better of logistic "
             "regression and QDA per seed; factor model — ridge (leave-one-out penalty) on raw x.", ""]
    for case in sorted({r["case"] for r in records}):
        lines += _case_tables(records, case)
    lines += ["## Rate fits of pre-train + ERM excess error (seed means over the grid)", "",
              "Bound (paper): Õ(√(C_Φ/m) + √(C_Ψ/n)) → slopes −1/2; papers.md form Õ(C_Φ/m + C_Ψ/n)"
              " → slopes −1. Upper bounds: steeper observed slopes are consistent with them.", "",
              "| case@knob | slope m | slope n | R² a/√m+b/√n | R² a/m+b/n | supervised slope n |",
              "|---|---|---|---|---|---|"]
    for key, f in fits.items():
        def g(name: str, f: dict = f) -> str:
            return f"{f[name]:+.2f}" if name in f else "n/a"
        lines.append(f"| {key} | {g('loglog_slope_m')} | {g('loglog_slope_n')} | "
                     f"{f['additive_sqrt']['r2']:.2f} | {f['additive_linear']['r2']:.2f} | "
                     f"{g('supervised_slope_n')} |")
    return "\n".join(lines) + "\n"


def plot_heatmap(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """One panel per (case, knob): the seed-mean advantage over the (m, n) grid, 0 in white."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cases = sorted({r["case"] for r in records})
    knobs = sorted({r["knob"] for r in records})
    fig = Figure(figsize=(4.2 * len(knobs), 3.6 * len(cases)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(cases), len(knobs), squeeze=False))
    for i, case in enumerate(cases):
        _, ms, ns, _ = _axes(records, case)
        tabs = {k: advantage_table(records, case, k) for k in knobs}
        # the colour scale stops at the 95th percentile of |advantage| so one extreme cell (a
        # tiny n) does not wash out the rest; the printed numbers are exact
        vmax = max(1e-9, float(np.percentile([abs(float(v.mean())) for t in tabs.values()
                                              for v in t.values()], 95)))
        for j, knob in enumerate(knobs):
            ax = axes[i, j]
            grid = np.array([[tabs[knob][(m, n)].mean() for m in ms] for n in ns])
            im = ax.imshow(grid, cmap="RdBu", vmin=-vmax, vmax=vmax, origin="lower", aspect="auto")
            for (a, b), v in np.ndenumerate(grid):
                ax.text(b, a, f"{v:+.2f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(ms)), [str(m) for m in ms])
            ax.set_yticks(range(len(ns)), [str(n) for n in ns])
            ax.set_xlabel("m (unlabelled)")
            ax.set_ylabel("n (labelled)")
            ax.set_title(f"{case}, knob={knob:g}", fontsize=10)
        fig.colorbar(im, ax=axes[i, :].tolist(), label="advantage (error reduction)", shrink=0.9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_rates(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Excess error of pre-train + ERM vs m (one line per n) and vs n (one line per m) at the
    smallest knob of each case, log-log, with −1/2 and −1 reference slopes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cases = sorted({r["case"] for r in records})
    fig = Figure(figsize=(9, 3.6 * len(cases)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(cases), 2, squeeze=False)
    for i, case in enumerate(cases):
        knobs, ms, ns, _ = _axes(records, case)
        exc = {k: max(float(v.mean()), 1e-4)
               for k, v in advantage_table(records, case, knobs[0], "excess").items()}
        for ax, xs, others, label, along_m in ((axes[i, 0], ms, ns, "n", True),
                                               (axes[i, 1], ns, ms, "m", False)):
            for o in others:
                ys = [exc[(x, o) if along_m else (o, x)] for x in xs]
                ax.plot(xs, ys, marker="o", ms=3, label=f"{label}={o}")
            x0, y0 = xs[0], max(exc.values())
            for p, ls in ((0.5, "--"), (1.0, ":")):
                ax.plot(xs, [y0 * (x / x0) ** -p for x in xs], color="k", ls=ls, lw=1,
                        label=f"slope −{p:g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("m (unlabelled)" if along_m else "n (labelled)")
            ax.set_ylabel("excess error (floored at 1e-4)")
            ax.set_title(f"{case}, knob={knobs[0]:g}: pre-train + ERM", fontsize=10)
            ax.legend(fontsize=6, ncol=2)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
