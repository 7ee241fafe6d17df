"""Report and picture of ``fmlab study entigraph``: cloze accuracy per arm (mean ± std over seeds),
the paired entigraph − repeat difference, and what every arm trained on.

No text of the corpora is written (the medical abstracts are CC BY-SA and stay in the data root):
only counts, hashes and numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmlab.studies.domain_report import paired_differences
from fmlab.utils.io import atomic_write

__all__ = ["cloze_long", "write_entigraph_report"]

METRICS = {"choice_acc": "choice %",
           "prior_choice_acc": "choice, prior only %",
           "context_gain": "context gain",
           "entity_acc": "whole-entity cloze %", "token_acc": "masked-token cloze %"}


def cloze_long(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (arm, seed, metric) with the metric as ``task`` and its value under
    ``value`` (the shape :func:`fmlab.studies.arm_report.arm_table` groups by)."""
    return [{"arm_name": r["arm_name"], "seed": r["seed"], "task": m, "value": r[m]}
            for r in records for m in (*METRICS, "nll", "prior_nll")]


def _arm_lines(pre: list[dict[str, Any]]) -> list[str]:
    lines = ["| arm | seed | trained on | corpus tokens | tokens trained (this part) | steps | "
             "last MLM loss | seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in pre:
        n = r.get("corpus_tokens")
        lines.append(f"| {r['arm_name']} | {r['seed']} | {r.get('corpus', '–')} | "
                     f"{'–' if n is None else f'{n:,}'} | {r['tokens_seen']:,} | {r['step']} | "
                     f"{r['last_loss']:.3f} | {r.get('seconds', '–')} |")
    return lines


def write_entigraph_report(out: Path, cfg: Any, info: dict[str, Any], commands: list[str]) -> Path:
    """``OUT/report.md``, ``OUT/cloze.png`` and ``OUT/nll.png``."""
    from fmlab.studies.arm_report import arm_table, plot_arm_bars

    cloze, pre = info["cloze"], info["pretrain"]
    seeds = sorted({r["seed"] for r in cloze})
    long = cloze_long(cloze)
    acc = [r for r in long if r["task"] in METRICS]
    nll = [r for r in long if r["task"] in ("nll", "prior_nll")]
    shown = ("choice_acc", "prior_choice_acc", "context_gain")
    plot_arm_bars([{**r, "task": METRICS[r["task"]]} for r in acc if r["task"] in shown], "value",
                  out / "cloze.png",
                  title=f"Closed-book cloze on held-out sentences, {len(seeds)} seed(s)",
                  ylabel="accuracy %")
    plot_arm_bars([{**r, "task": "with context" if r["task"] == "nll" else "prior only"}
                   for r in nll], "value", out / "nll.png", scale=1.0, ylabel="nats per token",
                  title="NLL of the masked entity tokens (lower is better)")
    c, p = info["corpora"], info["probes"]
    rep = next((r for r in pre if r["arm_name"] == "repeat"), {})
    src_tokens = rep.get("corpus_tokens") or 1
    lines = [f"# fmlab study entigraph: synthetic vs repeated continued pre-training, "
             f"{len(seeds)} seed(s)", "", "Commands:", "", "```",
             *(commands or ["(library call)"]), "```", "",
             f"Source: {c['documents']} {cfg.source.corpus} train abstracts (split hash "
             f"{c['source_split_hash'][:12]}), {c['heldout_sentences']} sentences held out "
             f"({cfg.source.heldout_fraction:.0%} per document with ≥ 3 sentences); {c['entities']} "
             f"entities ({c['entity_pairs']} within-document pairs). Base: {c['base_documents']} "
             f"other abstracts of {', '.join(cfg.base.corpus)}, {cfg.base.tokens:,} tokens from "
             f"scratch. Continued budget: {cfg.budget.tokens:,} tokens per arm (repeat: the source's "
             f"training parts ≈ {cfg.budget.tokens / src_tokens:.1f} times; entigraph: "
             "sentence-recombination passages, none repeated). Pre-training: "
             f"{cfg.pretrain.config}; seeds {seeds} (pre-training and synthesis).", "",
             f"Cloze probes: {p['count']} held-out sentences about {p['entities']} entities "
             f"(sha256 {p['sha256'][:12]}); {p['dropped_shared']} dropped because the sentence also "
             "occurs in a pre-training corpus; every mention of the entity is masked; the same "
             "probes for every arm and seed. Entity choice: the held-out entity against every "
             "probe entity with as many pieces (chance "
             f"{100 * sum(r.get('chance', 0) for r in cloze) / len(cloze):.1f} %; "
             f"{cloze[0].get('choice_probes', '–')} probes); prior only: the same choice with the "
             "whole sentence masked; context gain = the difference.", "",
             "## Cloze accuracy % (mean ± sample std over seeds, (n) seeds; best in bold)", "",
             arm_table(acc, "value"), "",
             "## NLL per masked entity token (nats; lower is better; bold marks the highest); "
             "prior_nll: the whole sentence masked", "",
             arm_table(nll, "value", scale=1.0, digits=3), "",
             "## Paired differences over seeds (points; NLL in nats)", "",
             "| metric | entigraph − repeat | entigraph − base | repeat − base |", "|---|---|---|---|"]
    diffs = [paired_differences(long, a, b, "value") for a, b in
             (("entigraph", "repeat"), ("entigraph", "base"), ("repeat", "base"))]
    for m in (*METRICS, "nll", "prior_nll"):
        k, n = (1.0, 3) if "nll" in m else (100.0, 1)
        cells = [f"{k * d[m][0]:+.{n}f} ± {k * d[m][1]:.{n}f}"
                 if m in d else "–" for d in diffs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## What every arm trained on", "", *_arm_lines(pre), "",
              "Probe sentences shared with a synthetic corpus: "
              + ", ".join(str(r.get("probes_shared", 0)) for r in pre
                          if r["arm_name"] == "entigraph") + " (per seed).", "",
              "Pictures: cloze.png, nll.png (bars: seed mean, error bars: ±1 std, dots: seeds).",
              ""]
    with atomic_write(out / "report.md", "w") as f:
        f.write("\n".join(lines))
    return out / "report.md"
