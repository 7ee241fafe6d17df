"""The stage-2 tuning grid behind unlearn_runs.py's defaults, on held-out digits and MNIST *train*.

Digits 3 and 5 (not among the reported 1, 7, 9), FID-pos against MNIST train images (never test),
one adaptation θ_N per digit (seed 100), then every (G lr, D lr, steps) × repulsion (γ) setting
from the same θ_G / θ_N. Prints one line per setting.

    FMLAB_DATA=../shared/data python benchmarks/unlearn_tuning.py --digits 3,5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

GRID = [(2e-4, 2e-4, 1000), (5e-4, 2e-4, 1000), (2e-4, 2e-4, 2000)]
VARIANTS = [(None, 0.0), ("nl2", 0.5), ("nl2", 1.0), ("nl2", 1.5), ("el2", 1.0), ("il2", 2.0),
            ("il2", 8.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", default="3,5")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    a = ap.parse_args()
    from fmlab.gan.io import load_generator
    from fmlab.experiments.unlearn import (Evaluator, adapt_negatives, classifier_fn,
                                           extrapolated, load_classifier, unlearn_positives)
    from fmlab.gan import create_discriminator, to_gan_input
    from fmlab.gan.unlearn import StageConfig, split_by_class

    root = os.environ["FMLAB_DATA"]
    w = Path(root) / "weights" / "mnist_small"
    G, _ = load_generator(w / "G--300.ckpt", "mlp")
    D = create_discriminator("mlp", weights=w / "D--300.ckpt")
    bb = load_classifier("lenet5_mnist", None, root)
    rows = []
    for digit in [int(d) for d in a.digits.split(",")]:
        ev = Evaluator(bb, digit, "mnist:train", root, 5000, seed=777)
        b = ev(G)
        print(f"digit {digit}: share {b['target_share']:.4f}, FID-pos {b['fid_positives']:.1f}")
        sp = split_by_class(G, classifier_fn(bb), digit, 5000, 100)
        neg, pos = to_gan_input(sp.negatives), to_gan_input(sp.positives)
        theta_n, _ = adapt_negatives(G, D, neg, StageConfig(steps=400), 1.0, 32, 100)
        for g in (2.0, 2.5, 3.0, 4.0):
            m = ev(extrapolated(G, theta_n, g))
            print(f"  extrap γ={g}: share {m['target_share']:.4f}, FID-pos {m['fid_positives']:.1f}")
        for lr_g, lr_d, steps in GRID:
            cfg = StageConfig(steps=steps, lr_g=lr_g, lr_d=lr_d)
            for kind, gamma in VARIANTS:
                t = time.process_time()
                Gu = unlearn_positives(G, D, pos, None if kind is None else [theta_n], cfg,
                                       kind or "nl2", gamma, 100)[0]
                m = ev(Gu)
                r = {"digit": digit, "lr_g": lr_g, "lr_d": lr_d, "steps": steps,
                     "variant": kind or "finetune", "gamma": gamma,
                     "share_before": b["target_share"], "share_after": m["target_share"],
                     "fidpos_before": b["fid_positives"], "fidpos_after": m["fid_positives"],
                     "cpu_s": time.process_time() - t}
                rows.append(r)
                print(f"  lr G {lr_g:g} D {lr_d:g} {steps} steps {r['variant']:8s} γ={gamma:<4g} "
                      f"share {100 * (r['share_after'] / r['share_before'] - 1):+.0f} %, FID-pos "
                      f"{100 * (r['fidpos_after'] / r['fidpos_before'] - 1):+.0f} %", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
