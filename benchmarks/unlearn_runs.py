"""Adapt-then-Unlearn on the MNIST MLP-GAN: NL2 / EL2 / IL2 vs extrapolation vs fine-tune.

For each digit × seed: stage 0 split, one θ_N (EWC adaptation), then every variant from the same
θ_G/θ_N; prints a table of target share and FID (lenet5_mnist, all samples vs real test images
of the other digits, and of the positives only: "FID-pos") before/after, and writes tradeoff.png
(share change vs FID-pos change per variant, each γ a point). Needs FMLAB_DATA.

The stage-2 defaults (Adam 2e-4 for G and D, 1,000 steps) and the γ grids were chosen on digits 3
and 5 with FID against MNIST *train* images (see docs/benchmarks.md); the reported run uses
digits 1, 7, 9 and the test images:
    python benchmarks/unlearn_runs.py --digits 1,7,9 --seeds 0,1,2 --out runs/unlearn
Smoke: --digits 7 --seeds 0 --nl2 1 --el2 1 --il2 2 --extrap 1.5 --steps 100 --n-eval 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--digits", default="1,7,9")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--nl2", default="0.25,0.5,1", help="NL2 γ sweep (on d/d0)")
    ap.add_argument("--el2", default="1,4", help="EL2 γ sweep")
    ap.add_argument("--il2", default="2,8", help="IL2 γ sweep")
    ap.add_argument("--extrap", default="1.5,2,2.5", help="extrapolation γ sweep")
    ap.add_argument("--adapt-steps", type=int, default=400)
    ap.add_argument("--steps", type=int, default=1000, help="stage-2 steps")
    ap.add_argument("--lr-g", type=float, default=2e-4, help="stage-2 generator lr")
    ap.add_argument("--lr-d", type=float, default=2e-4, help="stage-2 discriminator lr")
    ap.add_argument("--n-eval", type=int, default=5000)
    ap.add_argument("--out", default="/tmp/unlearn_bench")
    ap.add_argument("--merge", nargs="+", default=None, metavar="ROWS_JSON",
                    help="only tabulate and plot these runs' rows.json files together into --out")
    a = ap.parse_args()
    if a.merge:
        merge(a.merge, Path(a.out))
        return

    from fmlab.experiments.unlearn import (
        Evaluator,
        adapt_negatives,
        classifier_fn,
        extrapolated,
        load_classifier,
        unlearn_positives,
    )
    from fmlab.gan import create_discriminator, to_gan_input
    from fmlab.gan.unlearn import StageConfig, split_by_class
    from fmlab.gan.io import load_generator

    root = os.environ.get("FMLAB_DATA")
    if not root:
        raise SystemExit("set FMLAB_DATA")
    w = Path(root) / "weights" / "mnist_small"
    print(f"machine: {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()}")
    G, _ = load_generator(w / "G--300.ckpt", "mlp")
    D = create_discriminator("mlp", weights=w / "D--300.ckpt")
    bb = load_classifier("lenet5_mnist", None, root)
    sweeps = {k: [float(g) for g in getattr(a, k).split(",") if g.strip()]
              for k in ("nl2", "el2", "il2")}
    extr = [float(g) for g in a.extrap.split(",") if g.strip()]
    rows = []
    for digit in [int(x) for x in a.digits.split(",")]:
        ev = Evaluator(bb, digit, "mnist:test", root, a.n_eval)
        before = ev(G)
        for seed in [int(x) for x in a.seeds.split(",")]:
            t0 = time.process_time()
            sp = split_by_class(G, classifier_fn(bb), digit, 5000, seed)
            neg, pos = to_gan_input(sp.negatives), to_gan_input(sp.positives)
            theta_n, _ = adapt_negatives(G, D, neg, StageConfig(steps=a.adapt_steps), 1.0, 32,
                                         seed)

            def add(variant, gamma, g, t0=t0, digit=digit, seed=seed, ev=ev, before=before):
                m = ev(g)
                rows.append({"digit": digit, "seed": seed, "variant": variant, "gamma": gamma,
                             "share_before": before["target_share"],
                             "share_after": m["target_share"], "fid_before": before["fid"],
                             "fid_after": m["fid"],
                             "fidpos_before": before["fid_positives"],
                             "fidpos_after": m["fid_positives"],
                             "cpu_s": time.process_time() - t0})
                r = rows[-1]
                print(f"digit {digit} seed {seed} {variant:9s} γ={gamma!s:5s} share "
                      f"{r['share_before']:.3f}->{r['share_after']:.3f} FID "
                      f"{r['fid_before']:.1f}->{r['fid_after']:.1f} FID-pos "
                      f"{r['fidpos_before']:.1f}->{r['fidpos_after']:.1f}", flush=True)

            cfg = StageConfig(steps=a.steps, lr_g=a.lr_g, lr_d=a.lr_d)
            add("finetune", None, unlearn_positives(G, D, pos, None, cfg, "nl2", 0, seed)[0])
            for kind, gammas in sweeps.items():
                for gm in gammas:
                    add(kind, gm, unlearn_positives(G, D, pos, [theta_n], cfg, kind, gm, seed)[0])
            for gm in extr:
                add("extrap", gm, extrapolated(G, theta_n, gm))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))
    plot(rows, out / "tradeoff.png")
    print(f"wrote {out}/rows.json, tradeoff.png")


def merge(paths: list[str], out: Path) -> None:
    """Table and plot of several runs' rows.json together (e.g. a γ grid extended later)."""
    seen, rows = set(), []
    for p in paths:  # a variant run twice (the fine-tune baseline of every run) counts once
        for r in json.loads(Path(p).read_text()):
            k = (r["digit"], r["seed"], *_key(r))
            if k not in seen:
                seen.add(k)
                rows.append(r)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    plot(rows, out / "tradeoff.png")


def _key(r: dict) -> tuple[str, float]:
    return r["variant"], -1.0 if r["gamma"] is None else float(r["gamma"])


def table(rows: list[dict]) -> str:
    """Per (variant, γ): share and FID-on-positives after, their changes relative to the
    pre-trained G (mean ± std over digits × seeds), and how many runs meet both targets
    (share −90 % or more, FID-pos +25 % or less)."""
    lines = ["| variant | γ | target share after | share change | FID-pos after | FID-pos change "
             "| runs meeting both targets |", "|---|---|---|---|---|---|---|"]
    for v, gm in sorted({_key(r) for r in rows}, key=lambda k: (ORDER.index(k[0]), k[1])):
        sel = [r for r in rows if _key(r) == (v, gm)]
        ds = np.array([r["share_after"] / r["share_before"] - 1 for r in sel]) * 100
        df = np.array([r["fidpos_after"] / r["fidpos_before"] - 1 for r in sel]) * 100
        ok = int(np.sum((ds <= -90) & (df <= 25)))
        sh = np.array([r["share_after"] for r in sel]) * 100
        fp = np.array([r["fidpos_after"] for r in sel])
        lines.append(f"| {v} | {gm if gm >= 0 else '–'} | {sh.mean():.2f} ± {sh.std():.2f} % | "
                     f"{ds.mean():+.0f} ± {ds.std():.0f} % | {fp.mean():.1f} ± {fp.std():.1f} | "
                     f"{df.mean():+.0f} ± {df.std():.0f} % | {ok}/{len(sel)} |")
    before = {}
    for r in rows:
        before.setdefault(r["digit"], (r["share_before"], r["fidpos_before"]))
    lines.append("")
    lines.append("Pre-trained G: " + "; ".join(
        f"digit {d}: share {s * 100:.1f} %, FID-pos {f:.1f}" for d, (s, f) in sorted(before.items())))
    return "\n".join(lines)


ORDER = ["finetune", "nl2", "el2", "il2", "extrap"]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for v in [o for o in ORDER if any(r["variant"] == o for r in rows)]:
        gms = sorted({_key(r)[1] for r in rows if r["variant"] == v})
        xs, ys = [], []
        for gm in gms:
            sel = [r for r in rows if _key(r) == (v, gm)]
            xs.append(100 * np.mean([r["share_after"] / r["share_before"] - 1 for r in sel]))
            ys.append(100 * np.mean([r["fidpos_after"] / r["fidpos_before"] - 1 for r in sel]))
        ax.plot(xs, ys, "o-", label=v)
        for x, y, gm in zip(xs, ys, gms):
            if gm >= 0:
                ax.annotate(f"{gm:g}", (x, y), textcoords="offset points", xytext=(4, 3),
                            fontsize=7)
    lo, hi = ax.get_ylim()
    lo, hi = min(-10.0, lo), max(35.0, hi)
    ax.axvline(-90, color="grey", ls="--", lw=0.8)
    ax.axhline(25, color="grey", ls="--", lw=0.8)
    ax.fill_between([-100, -90], lo, 25, color="green", alpha=0.1,
                    label="target: share −90 %, FID ≤ +25 %")
    ax.set_xlim(-100, 0)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("target-digit share, change vs pre-trained G (%)")
    ax.set_ylabel("FID on positives (lenet5_mnist), change (%)")
    ax.set_title("Adapt-then-Unlearn trade-off (mean over digits × seeds; labels = γ)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)

if __name__ == "__main__":
    main()
