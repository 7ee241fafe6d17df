"""``report.md`` and ``accuracy.png`` of ``fmlab study uda`` (tables from
:mod:`fmlab.studies.arm_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmlab.studies.arm_report import arm_table, plot_arm_bars
from fmlab.studies.cpt_arms import write_report

__all__ = ["write_uda_report"]

PRETRAIN = {"source_only": "no CPT", "cpt_source": "CPT on source text",
            "cpt_target": "CPT on target text"}


def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per record and metric column: target test accuracy, source validation accuracy."""
    rows = []
    for r in records:
        rows.append({"arm_name": r["arm_name"], "task": "target test accuracy",
                     "v": r["accuracy"]})
        rows.append({"arm_name": r["arm_name"], "task": "target macro-F1", "v": r["macro_f1"]})
        rows.append({"arm_name": r["arm_name"], "task": "source val accuracy",
                     "v": r["val_accuracy"]})
    return rows


def _gain_lines(records: list[dict[str, Any]]) -> list[str]:
    """Paired (same seed) gains of the CPT arms over their source-only baselines."""
    acc = {(r["arm_name"], r["seed"]): r["accuracy"] for r in records}
    lines = []
    for arm, ref in (("cpt_target", "source_only"), ("cpt_source", "source_only"),
                     ("cpt_target", "cpt_source"), ("prompt_cpt_target", "prompt_source_only"),
                     ("prompt_cpt_source", "prompt_source_only"),
                     ("prompt_cpt_target", "prompt_cpt_source")):
        d = [100 * (acc[(arm, s)] - acc[(ref, s)]) for (a, s) in acc if a == arm and (ref, s) in acc]
        if d:
            sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
            lines.append(f"| {arm} − {ref} | {np.mean(d):+.1f} ± {sd:.1f} | {len(d)} | "
                         f"{sum(x > 0 for x in d)}/{len(d)} |")
    if not lines:
        return []
    return ["Paired gains in target accuracy (points, same seed; mean ± sample std):", "",
            "| comparison | gain | seeds | seeds with gain > 0 |", "|---|---|---|---|", *lines, ""]


def write_uda_report(out: Path, cfg: Any, records: list[dict[str, Any]],
                     pretrains: list[dict[str, Any]], facts: dict[str, Any],
                     command: str | None) -> Path:
    """``OUT/report.md`` (tables, shift facts, budgets, command) and ``OUT/accuracy.png``."""
    rows = _rows(records)
    cpt = [p for p in pretrains if p["what"] != "base"]
    base = [p for p in pretrains if p["what"] == "base"]
    ft = cfg.finetune
    intro = [
        "Continued pre-training (CPT) for unsupervised domain adaptation (papers.md #15), "
        "reduced: a small base MLM per seed, source = SST-2 training phrases of at most "
        f"{cfg.shift.source_max_words} words (labelled, {facts['n_source']} records, mean "
        f"{facts['source_words_mean']:.1f} words), target = full sentences: "
        f"{facts['n_target_texts']} unlabelled training phrases of at least "
        f"{cfg.shift.target_min_words} words (mean {facts['target_words_mean']:.1f}) for CPT, "
        f"scored on the {facts['n_target_test']} labelled SST-2 test sentences (mean "
        f"{facts['test_words_mean']:.1f} words). Model selection: validation drawn from the "
        "source only. Seeds: " + ", ".join(map(str, cfg.seeds)) + ".", "",
        "Accuracy / macro-F1 in %, mean ± sample std over seeds (n in brackets):", "",
        arm_table(rows, "v", task="task"), "",
        *_gain_lines(records),
        "Budgets: base MLM " + (f"{base[0]['tokens_seen']:,} tokens ({base[0]['step']} steps)"
                                if base else "–")
        + "; every CPT arm " + (f"{cpt[0]['tokens_seen']:,} tokens ({cpt[0]['step']} steps) of "
                                f"a {cfg.budget.tokens:,}-token budget" if cpt else "–")
        + f"; fine-tuning {ft.trainer.epochs} epochs, batch {ft.trainer.batch_size}, lr "
        f"{ft.optim.lr}, best source-validation epoch kept. Prompt arms: template "
        f"`{cfg.prompt.template}`, label words {cfg.prompt.label_words}.", ""]

    def plot(o: Path) -> list[Path]:
        bars = [{"arm_name": PRETRAIN[r["arm_name"].removeprefix("prompt_")],
                 "task": "prompt (label words)" if r["arm_name"].startswith("prompt")
                 else "linear head", "v": r["accuracy"]} for r in records]
        lo = 100 * min(r["accuracy"] for r in records)
        hi = 100 * max(r["accuracy"] for r in records)
        return [plot_arm_bars(bars, "v", o / "accuracy.png", ylabel="target test accuracy %",
                              title="UDA: SST-2 phrases → sentences (±1 std)",
                              ylim=(max(0.0, lo - 10), min(100.0, hi + 12)), legend_loc="upper left")]

    return write_report(out, "fmlab study uda", records, intro, command, cfg, plot)
