"""Score finished conditional GAN runs on the class-wise metrics: AC against ADC, as the issue asks.

For every ``OUT/<config>/seed<S>`` run directory that ``benchmarks/gan_runs.py`` left, loads the
final EMA generator, draws 10,000 class-balanced samples (z seed 0, the seed of the runs' own
evaluation, so FID equals the run's final FID) and computes with LeNet-5 features against the
MNIST test split:

- FID and intra-FID (mean over classes of the per-class FID);
- intra-class PRDC (``iprdc``): PRDC between class y's test images and the fakes made for y,
  averaged over classes; its **recall is the intra-class diversity** ADC-GAN's claim is about;
- label recall (``class_recall``): how often LeNet-5 puts a sample made for y in class y.

Writes ``OUT/cond_eval.md`` (mean ± std over seeds and per run) and ``OUT/cond_eval.json``
(per class as well). Nothing is trained.

    FMLAB_DATA=../shared/data python benchmarks/gan_cond_eval.py --out runs/gan15 --configs ac,adc
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmlab.experiments.gan_eval import (
    evaluate_fakes,
    flat_metrics,
    make_extractor,
    open_reference,
)
from fmlab.gan.io import generate_images, load_generator
from fmlab.utils.io import atomic_write
from gan_runs import mean_std  # the same mean ± std as the gan_runs.py tables

METRICS = ["fid", "ifid", "iprdc", "class_recall"]
COLUMNS = (("fid", "FID-LeNet", 1), ("ifid", "intra-FID", 1),
           ("intra_recall", "intra-class recall", 3), ("intra_coverage", "intra-class coverage", 3),
           ("intra_precision", "intra-class precision", 3),
           ("class_recall", "label recall (LeNet)", 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the --out directory of benchmarks/gan_runs.py")
    ap.add_argument("--configs", default="ac,adc")
    ap.add_argument("--n", type=int, default=10000, help="samples per generator")
    ap.add_argument("--seed", type=int, default=0, help="z seed of the samples")
    ap.add_argument("--ref", default="mnist:test")
    ap.add_argument("--data-root", default=None, help="default: $FMLAB_DATA")
    args = ap.parse_args()

    ref = open_reference(args.ref, args.data_root)
    ext = make_extractor("lenet5_mnist", None, args.data_root)
    runs: list[dict] = []
    for name in [c for c in args.configs.split(",") if c]:
        dirs = sorted((Path(args.out) / name).glob("seed*"))
        if not dirs:
            sys.exit(f"no runs of config {name!r} under {args.out}")
        for run in dirs:
            G, info = load_generator(run)
            images, labels = generate_images(G, args.n, args.seed)
            res = evaluate_fakes(images, labels, ref, ext, METRICS,
                                 num_classes=G.num_classes or None, seed=args.seed)
            flat = flat_metrics(res)
            runs.append({"config": name, "seed": int(run.name.removeprefix("seed")),
                         "step": info.get("step"), **flat,
                         "per_class": {"ifid": res["ifid"]["per_class"],
                                       "iprdc": res["iprdc"]["per_class"],
                                       "class_recall": res["class_recall"]["per_class"]}})
            print(f"{name} {run.name}: " + ", ".join(
                f"{label} {flat[key]:.{d}f}" for key, label, d in COLUMNS), flush=True)

    head = "| config | seeds | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [f"# Class-wise metrics of conditional MNIST GANs ({args.n} samples, z seed "
             f"{args.seed}, LeNet-5 features vs {args.ref})", "", head,
             "|" + "---|" * (len(COLUMNS) + 2)]
    for name in dict.fromkeys(r["config"] for r in runs):
        rs = [r for r in runs if r["config"] == name]
        lines.append(f"| {name} | {', '.join(str(r['seed']) for r in rs)} | " + " | ".join(
            mean_std([r[key] for r in rs], d) for key, _, d in COLUMNS) + " |")
    lines += ["", "Per run:", ""]
    for r in runs:
        lines.append(f"- {r['config']} seed {r['seed']} (step {r['step']}): " + ", ".join(
            f"{label} {r[key]:.{d}f}" for key, label, d in COLUMNS))
    lines += ["", "Command:", "", "```", "python " + " ".join(sys.argv), "```", ""]
    out = Path(args.out)
    with atomic_write(out / "cond_eval.md", "w") as f:
        f.write("\n".join(lines))
    with atomic_write(out / "cond_eval.json", "w") as f:
        json.dump(runs, f, indent=1)
    print(f"wrote {out / 'cond_eval.md'}")


if __name__ == "__main__":
    main()
