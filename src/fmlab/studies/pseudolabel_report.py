"""``report.md`` and ``accuracy.png`` of ``fmlab study pseudolabel``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmlab.studies.arm_report import arm_table, plot_arm_bars
from fmlab.studies.cpt_arms import write_report

__all__ = ["write_pseudolabel_report"]


def _col(r: dict[str, Any]) -> str:
    return f"{100 * r['fraction']:g} % ({r['n_labelled']:,} labels)"


def _gains(records: list[dict[str, Any]]) -> list[str]:
    """Paired (same seed, same fraction) accuracy differences between arms, in points."""
    acc = {(r["arm_name"], r["fraction"], r["seed"]): r["accuracy"] for r in records}
    fracs = sorted({r["fraction"] for r in records})
    lines = []
    for a, b in (("pseudolabel", "none"), ("mlm", "none"), ("pseudolabel", "mlm")):
        for f in fracs:
            d = [100 * (v - acc[(b, ff, s)]) for (arm, ff, s), v in acc.items()
                 if arm == a and ff == f and (b, ff, s) in acc]
            if d:
                sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
                lines.append(f"| {a} − {b} | {100 * f:g} % | {np.mean(d):+.1f} ± {sd:.1f} | "
                             f"{sum(x > 0 for x in d)}/{len(d)} |")
    if not lines:
        return []
    return ["Paired gains in test accuracy (points, same seed and labelled set; mean ± sample "
            "std):", "", "| comparison | labels | gain | seeds with gain > 0 |",
            "|---|---|---|---|", *lines, ""]


def write_pseudolabel_report(out: Path, cfg: Any, records: list[dict[str, Any]],
                             pretrains: list[dict[str, Any]], pools: dict[str, Any],
                             command: str | None) -> Path:
    """``OUT/report.md`` and ``OUT/accuracy.png`` (bars per labelled fraction)."""
    rows = [{"arm_name": r["arm_name"], "task": _col(r), "v": r["accuracy"]} for r in records]
    pre = {}
    for p in pretrains:
        pre.setdefault(p["what"].split(" ")[0], p)
    pl = [p for p in pretrains if p["what"].startswith("pseudolabel")]
    ft = cfg.finetune
    intro = [
        "Pseudo-label pre-training (papers.md #18), reduced: per seed a small base MLM "
        f"({pre['base']['tokens_seen']:,} tokens of {cfg.base.corpus}); labelled pool = "
        f"{cfg.pool.labelled:,} SST-2 training phrases (**\"100 %\" is this capped pool, not the "
        f"67,349 of SST-2**), fractions {cfg.pool.fractions} of it (nested); unlabelled "
        f"in-domain pool = {len(pools['unlabelled']):,} other training phrases, labels dropped; "
        f"test = {len(pools['test'])} SST-2 test sentences. Seeds: "
        + ", ".join(map(str, cfg.seeds)) + ".", "",
        "Test accuracy in %, mean ± sample std over seeds (n in brackets):", "",
        arm_table(rows, "v", task="task"), "", *_gains(records),
        f"Budgets: `mlm` and `pseudolabel` pre-train on the same pool for a "
        f"{cfg.budget.tokens:,}-token budget each: mlm "
        + (f"{pre['mlm']['tokens_seen']:,} tokens ({pre['mlm']['step']} steps of packed "
           "128-token blocks)" if "mlm" in pre else "–")
        + "; pseudolabel " + (f"{min(p['tokens_seen'] for p in pl):,}–"
                              f"{max(p['tokens_seen'] for p in pl):,} tokens "
                              "(non-pad tokens of whole pool texts, full batches)" if pl else "–")
        + f" with {cfg.pseudo.targets} teacher targets (teacher = the `none` arm of the same "
        "seed and labelled set; its positive rate on the pool: "
        + (", ".join(f"{p['what'].split('=')[1]}: {p['pseudo_positive']:.2f}" for p in pl[:3])
           if pl else "–")
        + f"). Fine-tuning: ≥ {ft.trainer.epochs} epochs and ≥ {cfg.min_finetune_steps} steps, "
        f"batch {ft.trainer.batch_size}, lr {ft.optim.lr}, new linear head, best validation "
        "epoch kept (validation drawn from the labelled set).", ""]

    def plot(o: Path) -> list[Path]:
        lo, hi = 100 * min(r["v"] for r in rows), 100 * max(r["v"] for r in rows)
        return [plot_arm_bars(rows, "v", o / "accuracy.png", ylabel="SST-2 test accuracy %",
                              title="Pseudo-label vs MLM pre-training vs none (±1 std)",
                              ylim=(max(0.0, lo - 10), min(100.0, hi + 12)), legend_loc="upper left")]

    return write_report(out, "fmlab study pseudolabel", records, intro, command, cfg, plot)
