"""Adapt-then-Unlearn on the MNIST MLP-GAN: NL2 / EL2 / IL2 vs extrapolation vs fine-tune.

For each digit × seed: stage 0 split, one θ_N (EWC adaptation), then every variant from the same
θ_G/θ_N; prints a table of target share and FID (lenet5_mnist, all samples vs real test images
of the other digits) before/after, and writes tradeoff.png (share vs FID per variant, each γ a
point). Needs FMLAB_DATA. Full run (the lead schedules it):
    python benchmarks/unlearn_runs.py --digits 1,7,9 --seeds 0,1,2 --out /tmp/unlearn_bench
Smoke: --digits 7 --seeds 0 --gammas 1 --extrap 1.5 --steps 100 --n-eval 1000
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
    ap.add_argument("--gammas", default="0.5,1,2", help="repulsion γ sweep (on d/d0)")
    ap.add_argument("--extrap", default="1.25,1.5,2", help="extrapolation γ sweep")
    ap.add_argument("--adapt-steps", type=int, default=400)
    ap.add_argument("--steps", type=int, default=400, help="stage-2 steps")
    ap.add_argument("--n-eval", type=int, default=5000)
    ap.add_argument("--out", default="/tmp/unlearn_bench")
    a = ap.parse_args()

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
    from fmlab.experiments.gan_io import load_generator

    root = os.environ.get("FMLAB_DATA")
    if not root:
        raise SystemExit("set FMLAB_DATA")
    w = Path(root) / "weights" / "mnist_small"
    print(f"machine: {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()}")
    G, _ = load_generator(w / "G--300.ckpt", "mlp")
    D = create_discriminator("mlp", weights=w / "D--300.ckpt")
    bb = load_classifier("lenet5_mnist", None, root)
    gammas = [float(g) for g in a.gammas.split(",")]
    extr = [float(g) for g in a.extrap.split(",")]
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

            cfg = StageConfig(steps=a.steps)
            add("finetune", None, unlearn_positives(G, D, pos, None, cfg, "nl2", 0, seed)[0])
            for kind in ("nl2", "el2", "il2"):
                for gm in gammas:
                    add(kind, gm, unlearn_positives(G, D, pos, [theta_n], cfg, kind, gm, seed)[0])
            for gm in extr:
                add("extrap", gm, extrapolated(G, theta_n, gm))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print("\n| variant | γ | share before | share after | FID before | FID after |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(r["variant"], r["gamma"] if r["gamma"] is not None else -1) for r in rows})
    for v, gm in keys:
        sel = [r for r in rows if r["variant"] == v and (r["gamma"] or -1) == gm]
        f = {k: np.mean([r[k] for r in sel]) for k in ("share_before", "share_after",
                                                         "fid_before", "fid_after")}
        print(f"| {v} | {gm if gm >= 0 else '-'} | {f['share_before']:.3f} | "
              f"{f['share_after']:.3f} | {f['fid_before']:.1f} | {f['fid_after']:.1f} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in sorted({r["variant"] for r in rows}):
        pts = sorted({(r["gamma"] or 0) for r in rows if r["variant"] == v})
        xs = [np.mean([r["share_after"] for r in rows if r["variant"] == v
                       and (r["gamma"] or 0) == g]) for g in pts]
        ys = [np.mean([r["fid_after"] for r in rows if r["variant"] == v
                       and (r["gamma"] or 0) == g]) for g in pts]
        ax.plot(xs, ys, "o-", label=v)
    ax.set_xlabel("target-class share after (lower is better)")
    ax.set_ylabel("FID vs other digits (lenet5_mnist)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=120)
    print(f"wrote {out}/rows.json, tradeoff.png")


if __name__ == "__main__":
    main()
