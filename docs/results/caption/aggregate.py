"""Aggregate the caption runs of run.sh into table.md, results.json and success_vs_eps.png.

python docs/results/caption/aggregate.py runs/caption docs/results/caption
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ARMS = [("warmup", "text-only warm-up, no RL"), ("clip_cos", "(a) CLIP-cos, λ=1"),
        ("clip_cos_nat", "(b) CLIP-cos + r_nat, λ=0.7"), ("clip_agg_nat", "(c) CLIP-agg + r_nat, λ=0.7"),
        ("clip_agg", "(d) CLIP-agg, λ=1")]
METRICS = ["bleu4", "cider_d", "perplexity", "digit_acc", "thickness_acc", "slant_acc", "brightness_acc",
           "distinct_captions"]
SEEDS = (0, 1, 2)


def ms(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def captioning(runs: Path) -> tuple[list[str], dict]:
    lines = ["| arm | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    raw = {}
    for arm, label in ARMS:
        evals = [json.loads((runs / f"cgt_{arm}_s{s}" / "eval.json").read_text()) for s in SEEDS]
        raw[arm] = {m: [e[m] for e in evals] for m in METRICS}
        cells = [ms(raw[arm][m], 1 if m == "distinct_captions" else 3) for m in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, raw


def attacks(runs: Path, out: Path) -> tuple[list[str], dict]:
    res = [json.loads((runs / f"attack_s{s}" / "attack.json").read_text()) for s in SEEDS]
    eps = sorted({r["eps"] for r in res[0]["per_image"]})
    keys = ("digit", "exact", "inject", "transfer_digit")
    table: dict = {}
    lines = ["| attack | ε | target digit | exact caption | keyword injection | transfer: target digit |",
             "|---|---|---|---|---|---|"]
    for kind in ("feature", "output"):
        for e in eps:
            rows = [next(r for r in x["per_image"] if r["attack"] == kind and r["eps"] == e) for x in res]
            table[(kind, e)] = {k: [r[k] for r in rows] for k in keys}
            lines.append(f"| {kind} | {e:g} | " + " | ".join(ms(table[(kind, e)][k]) for k in keys) + " |")
    clean = {k: [x["clean"][k] for x in res] for k in keys}
    lines.append("| none (clean images) | 0 | " + " | ".join(ms(clean[k]) for k in keys) + " |")
    gen = {k: [x["generator"][k] for x in res] for k in keys}
    lines.append(f"| generator (fixed target) | {res[0]['generator']['eps']:g} | "
                 + " | ".join(ms(gen[k]) for k in keys) + " |")
    _plot(eps, table, gen, res[0]["generator"]["eps"], out / "success_vs_eps.png")
    return lines, {"per_eps": {f"{k}@{e}": v for (k, e), v in table.items()}, "clean": clean, "generator": gen}


def _plot(eps: list[float], table: dict, gen: dict, geps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for kind, colour in (("feature", "C0"), ("output", "C1")):
        for key, style, name in (("digit", "o-", "target digit"), ("exact", "s:", "exact caption"),
                                 ("transfer_digit", "^--", "transfer: target digit")):
            m = [np.mean(table[(kind, e)][key]) for e in eps]
            s = [np.std(table[(kind, e)][key], ddof=1) for e in eps]
            ax.errorbar(eps, m, yerr=s, fmt=style, color=colour, capsize=3, alpha=0.55 if "transfer" in key else 1,
                        label=f"{kind}: {name}")
    ax.errorbar([geps], [np.mean(gen["digit"])], yerr=[np.std(gen["digit"], ddof=1)], fmt="k*", ms=11,
                capsize=3, label="generator, fixed target: target digit")
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="ε (ℓ∞ bound, pixels in [0, 1])", ylabel="success rate (200 test images)", ylim=(-0.02, 1.02),
           title="Controlled captions on MNIST: mean ± std over 3 seeds")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def arm_sheet(runs: Path, seed: int, path: Path, n: int = 6) -> None:
    """The first n test images and the greedy caption of every arm (one seed)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.experiments.caption import load_captioner, load_splits
    from fmlab.experiments.caption_config import CaptionDataConfig

    bundles = {arm: load_captioner(runs / f"cgt_{arm}_s{seed}") for arm, _ in ARMS}
    sp = load_splits(CaptionDataConfig(**bundles["warmup"].info["data"]))
    imgs = sp.images["test"][:n]
    fig, axes = plt.subplots(len(ARMS) + 2, n, figsize=(2.5 * n, 1.0 * (len(ARMS) + 2) + 1.6),
                             gridspec_kw={"height_ratios": [2.2] + [1] * (len(ARMS) + 1)})
    for i in range(n):
        axes[0, i].imshow(imgs[i], cmap="gray")
        rows = [("reference (held-out phrasing)", sp.references[i][0])]
        rows += [(label, bundles[arm].caption(imgs[i:i + 1])[0]) for arm, label in ARMS]
        for r, (label, text) in enumerate(rows, start=1):
            axes[r, i].text(0.5, 0.5, "\n".join(textwrap.wrap(text, 28)), ha="center", va="center", fontsize=7,
                            transform=axes[r, i].transAxes)
            if i == 0:
                axes[r, 0].set_title(label, fontsize=8, loc="left", color="C3")
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"greedy captions of the first {n} MNIST test images, seed {seed}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    runs, out = Path(sys.argv[1]), Path(sys.argv[2])
    cap_lines, cap_raw = captioning(runs)
    att_lines, att_raw = attacks(runs, out)
    (out / "table.md").write_text("\n".join(cap_lines) + "\n\n" + "\n".join(att_lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"captioning": cap_raw, "attack": att_raw}, indent=1),
                                      encoding="utf-8")
    arm_sheet(runs, 0, out / "captions_by_arm.png")
    print("\n".join(cap_lines + [""] + att_lines))


if __name__ == "__main__":
    main()
