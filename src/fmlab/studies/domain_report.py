"""The vocabulary analysis, report and pictures of ``fmlab study domain``.

Vocabulary analysis (PubMedBERT's argument for a domain vocabulary): with the tokenizers the
general and domain arms trained (first seed; the continued arm keeps the general one),

- tokens per whitespace word on the held-out (test) texts of each corpus
  (:func:`fmlab.text.tokenizer.tokenizer_stats`);
- the domain terms (log-odds z of D against G, :func:`fmlab.studies.vocab.domain_terms`, on the
  train texts) and the share of them each vocabulary splits into pieces, with the ten split most
  by the general vocabulary (:func:`fmlab.studies.vocab.fragmentation_table`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.report.aggregate import mean_std
from fmlab.utils.io import atomic_path, atomic_write

__all__ = ["paired_differences", "plot_tokens_per_word", "vocabulary_analysis",
           "write_domain_report"]


def vocabulary_analysis(cfg: Any, general_model: Path, domain_model: Path, domain: list[str],
                        general: list[str]) -> dict[str, Any]:
    """Tokens per word of each vocabulary on each corpus's test texts; domain-term fragmentation.

    Args:
        cfg: the study's :class:`~fmlab.studies.domain.DomainConfig`.
        general_model, domain_model: the ``RUN_DIR/model`` folders (tokenizer inside).
        domain, general: the corpora's train texts (for the domain terms).
    """
    from transformers import PreTrainedTokenizerFast

    from fmlab.studies.text_study import load_corpus
    from fmlab.studies.vocab import domain_terms, fragmentation_table
    from fmlab.text.tokenizer import tokenizer_stats

    toks = {"general": PreTrainedTokenizerFast.from_pretrained(str(general_model)),
            "domain": PreTrainedTokenizerFast.from_pretrained(str(domain_model))}
    c = cfg.corpora
    held = {"domain": load_corpus(c.domain, "test", limit=c.limit, data_root=c.data_root)[0],
            "general": load_corpus(c.general, "test", limit=c.limit, data_root=c.data_root)[0]}
    stats = {v: {corpus: tokenizer_stats(tok, texts) for corpus, texts in held.items()}
             for v, tok in toks.items()}
    a = cfg.analysis
    terms = domain_terms(domain, general, top_n=a.terms, min_count=a.min_count)
    table = fragmentation_table(toks, [t for t, _ in terms], k=a.top)
    return {"tokens_per_word": stats, "terms": len(terms), "fragmentation": table,
            "tokenizers": {"general": str(general_model), "domain": str(domain_model)}}


def paired_differences(records: list[dict[str, Any]], a: str, b: str, metric: str = "accuracy"
                       ) -> dict[str, tuple[float, float, int]]:
    """Per task: mean ± std over seeds of metric(arm ``a``) − metric(arm ``b``), paired by seed
    (an arm ``b`` with a single run, such as a shared base model, is paired with every seed).

    Examples:
        >>> recs = [{"arm_name": arm, "task": "t", "seed": s, "accuracy": v}
        ...         for arm, s, v in [("a", 0, .6), ("b", 0, .5), ("a", 1, .7), ("b", 1, .5)]]
        >>> {k: tuple(round(x, 3) for x in v) for k, v in paired_differences(recs, "a", "b").items()}
        {'t': (0.15, 0.071, 2)}
    """
    by: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in records:
        by[(r["arm_name"], r["task"])][r["seed"]] = float(r[metric])
    out = {}
    for task in dict.fromkeys(r["task"] for r in records):
        xa, xb = by.get((a, task), {}), by.get((b, task), {})
        if len(xb) == 1:  # one shared reference run (e.g. one base model): paired with every seed
            xb = dict.fromkeys(xa, next(iter(xb.values())))
        diffs = [xa[s] - xb[s] for s in sorted(set(xa) & set(xb))]
        if diffs:
            mu, sd = mean_std(diffs)
            out[task] = (mu, sd, len(diffs))
    return out


def plot_tokens_per_word(stats: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """Bars: tokens per word of each vocabulary (colour) on each corpus's test texts (group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vocabs = list(stats)
    corpora = list(next(iter(stats.values())))
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    width = 0.8 / len(vocabs)
    for i, v in enumerate(vocabs):
        xs = np.arange(len(corpora)) + (i - (len(vocabs) - 1) / 2) * width
        ys = [stats[v][c]["tokens_per_word"] for c in corpora]
        ax.bar(xs, ys, width * 0.95, label=f"{v} vocabulary")
        for x, y in zip(xs, ys):
            ax.text(x, y + 0.02, f"{y:.2f}", ha="center", fontsize=8)
    ax.set_xticks(np.arange(len(corpora)), [f"{c} corpus (test)" for c in corpora])
    ax.set_ylabel("tokens per word")
    ax.set_title("Tokens per whitespace word, by vocabulary", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _budget_lines(pre: list[dict[str, Any]]) -> list[str]:
    lines = ["| arm | seed | corpus parts (tokens) | total tokens | steps | last MLM loss | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in pre:
        parts = " + ".join(f"{k} {v:,}" for k, v in r["parts"].items())
        loss = "–" if r.get("last_loss") is None else f"{r['last_loss']:.3f}"
        lines.append(f"| {r['arm_name']} | {r['seed']} | {parts} | {r['tokens']:,} | {r['step']} | "
                     f"{loss} | {r.get('seconds', '–')} |")
    return lines


def _vocab_lines(vocab: dict[str, Any]) -> list[str]:
    tpw = vocab["tokens_per_word"]
    corpora = list(next(iter(tpw.values())))
    lines = ["| vocabulary | " + " | ".join(f"tokens/word, {c} test" for c in corpora)
             + " | domain terms split | pieces per term | terms with [UNK] |",
             "|---" * (len(corpora) + 4) + "|"]
    summ = vocab["fragmentation"]["summary"]
    for v in tpw:
        cells = [f"{tpw[v][c]['tokens_per_word']:.3f}" for c in corpora]
        s = summ[v]
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {100 * s['split_share']:.1f} % | "
                     f"{s['pieces_per_term']:.2f} | {100 * s['unknown_share']:.1f} % |")
    lines += ["", "The domain terms split the most by the general vocabulary (pieces under each "
              f"vocabulary; {vocab['terms']} terms by log-odds z of D against G):", "",
              "| term | general | domain |", "|---|---|---|"]
    for row in vocab["fragmentation"]["most_fragmented"]:
        lines.append(f"| {row['term']} | {row['general']} | {row['domain']} |")
    return lines


def _probe_lines(probe: list[dict[str, Any]], out: Path, title: str) -> list[str]:
    """The linear-probe section (and ``probe_accuracy.png``)."""
    from fmlab.studies.arm_report import arm_table, plot_arm_bars

    plot_arm_bars(probe, "accuracy", out / "probe_accuracy.png", title=f"Linear probe, {title}",
                  ylabel="test accuracy %")
    d = paired_differences(probe, "domain", "continued")
    g = paired_differences(probe, "domain", "general")
    lines = ["", "## Linear probe on frozen features (test accuracy %; C chosen on validation)", "",
             arm_table(probe, "accuracy"), "", "Macro-F1 %:", "", arm_table(probe, "macro_f1"), "",
             "| task | probe: domain − continued | probe: domain − general |", "|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in probe):
        cells = [f"{100 * x[task][0]:+.1f} ± {100 * x[task][1]:.1f}" if task in x else "–"
                 for x in (d, g)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def write_domain_report(out: Path, cfg: Any, info: dict[str, Any], commands: list[str]) -> Path:
    """``OUT/report.md`` and its pictures (``accuracy.png``, ``macro_f1.png``,
    ``tokens_per_word.png``)."""
    from fmlab.studies.arm_report import arm_table, plot_arm_bars

    fine, pre = info["finetune"], info["pretrain"]
    seeds = sorted({r["seed"] for r in fine})
    title = f"Domain vs general vs continued pre-training, {len(seeds)} seed(s)"
    plot_arm_bars(fine, "accuracy", out / "accuracy.png", title=title, ylabel="test accuracy %")
    plot_arm_bars(fine, "macro_f1", out / "macro_f1.png", title=title, ylabel="test macro-F1 %")
    plot_tokens_per_word(info["vocab"]["tokens_per_word"], out / "tokens_per_word.png")
    ft = cfg.finetune
    lines = [f"# fmlab study domain: {title}", "",
             "Commands:", "", "```", *(commands or ["(library call)"]), "```", "",
             f"Corpora (train splits pre-trained on): domain D = {', '.join(cfg.corpora.domain)}, "
             f"general G = {', '.join(cfg.corpora.general)}"
             + (f" (at most {cfg.corpora.limit} records each)" if cfg.corpora.limit else "")
             + f". Pre-training: {cfg.pretrain.config} (--set {', '.join(cfg.pretrain.set) or 'none'}); "
             f"budget {cfg.budget.tokens:,} tokens per arm (continued: + {cfg.budget.continued:,} "
             "on D). Fine-tuning: fmlab text finetune's protocol, "
             f"{ft.trainer.epochs} epochs, batch {ft.trainer.batch_size}, lr {ft.optim.lr}, "
             f"data.limit {ft.data.limit}, max_length {ft.data.max_length}; pre-training seed = "
             f"fine-tuning seed; seeds {seeds}.", "",
             "## Pre-training budget (every arm's tokens as trained)", "", *_budget_lines(pre), "",
             "## Test accuracy % (mean ± sample std over seeds, (n) seeds; best per task in bold)", "",
             arm_table(fine, "accuracy"), "", "## Test macro-F1 %", "", arm_table(fine, "macro_f1"), "",
             "## Paired differences (accuracy points, mean ± std over seeds)", "",
             "| task | domain − continued | domain − general | continued − general |",
             "|---|---|---|---|"]
    diffs = [paired_differences(fine, a, b) for a, b in
             (("domain", "continued"), ("domain", "general"), ("continued", "general"))]
    for task in dict.fromkeys(r["task"] for r in fine):
        cells = [f"{100 * d[task][0]:+.1f} ± {100 * d[task][1]:.1f}" if task in d else "–"
                 for d in diffs]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if info.get("probe"):
        lines += _probe_lines(info["probe"], out, title)
    lines += ["", "## Vocabulary analysis (first seed's tokenizers)", "",
              *_vocab_lines(info["vocab"]), "",
              "Pictures: accuracy.png, macro_f1.png, probe_accuracy.png (bars: seed mean, error "
              "bars: ±1 std, dots: seeds), tokens_per_word.png.", ""]
    with atomic_write(out / "report.md", "w") as f:
        f.write("\n".join(lines))
    return out / "report.md"
