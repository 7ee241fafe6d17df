"""ParGANDA on digits (issue 24): raw vs translated synthetic training data, tested on real MNIST.

For each seed S (the translator's and the classifiers' seed):

1. render 10,000 ``fontdigits`` training digits once (``OUT/synth_train.npz``: x, y, boxes);
2. ``fmlab translate train --config configs/translate/fontdigits_to_mnist.yaml --out
   OUT/translator_sS --set data.a=OUT/synth_train.npz --set data.a_limit=5000 --set trainer.seed=S``
   (the first 5,000 synthetic digits vs 5,000 unlabelled MNIST train images; skipped when done);
3. ``fmlab translate apply --model OUT/translator_sS --input OUT/synth_train.npz --out
   OUT/translated_sS.npz`` (all 10,000, labels and boxes copied);
4. train the same small CNN (:func:`fmlab.experiments.parganda.train_classifier`) on (a) raw
   synthetic, (b) translated synthetic, (c) 10,000 real MNIST train images with labels (upper
   bound), and test each on the 10,000 MNIST test images;
5. label preservation: the held-out LeNet-5 (``lenet5_mnist``) on raw and translated digits.

Writes ``OUT/seedS.json`` per seed, ``OUT/summary.md`` (mean ± std) and ``OUT/grid_sS.png``
(rows: raw synthetic, translated, for the same 16 digits); a seed whose json exists is
read back, not rerun::

    FMLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/parganda_runs.py \
        --seeds 0,1,2 --out runs/parganda
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fmlab.experiments.parganda import (ClassifierRecipe, accuracy, label_preservation, load_xy,
                                        render_npz, train_classifier)

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "translate" / "fontdigits_to_mnist.yaml"


def fmlab(*args: str) -> None:
    print("$ fmlab " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "fmlab", *args], check=True)


def grid_png(raw: np.ndarray, trans: np.ndarray, path: Path, n: int = 16) -> None:
    from PIL import Image

    from fmlab.gan.grid import tile

    rows = np.concatenate([raw[:n], trans[:n]])[..., None]
    Image.fromarray(tile(rows, n)[..., 0]).resize(((n * 30 + 2) * 2, (2 * 30 + 2) * 2),
                                                  Image.NEAREST).save(path)


def run_seed(seed: int, out: Path, test: tuple[np.ndarray, np.ndarray],
             real: tuple[np.ndarray, np.ndarray], recipe: ClassifierRecipe,
             args: argparse.Namespace) -> dict:
    synth = out / "synth_train.npz"
    tag = args.tag
    tdir, tnpz = out / f"translator{tag}_s{seed}", out / f"translated{tag}_s{seed}.npz"
    done = out / f"seed{tag}{seed}.json"
    if done.is_file():  # a finished seed is read back (delete the file to redo it)
        return json.loads(done.read_text())
    if not (tdir / "translator.json").is_file():
        extra = [a for kv in args.train_set for a in ("--set", kv)]
        fmlab("translate", "train", "--config", str(CONFIG), "--out", str(tdir), "--set",
              f"data.a={synth}", "--set", "data.a_limit=5000", "--set", f"trainer.seed={seed}",
              *extra)
    if not tnpz.is_file():
        fmlab("translate", "apply", "--model", str(tdir), "--input", str(synth), "--out", str(tnpz))
    (xs, ys), (xt, yt) = load_xy(synth), load_xy(tnpz)
    assert np.array_equal(ys, yt)
    res: dict = {"seed": seed}
    sets = {"raw_synthetic": (xs, ys), "translated_synthetic": (xt, yt), "real_mnist": real}
    if args.only_translated:  # a variant of the translator: the other two do not change
        sets = {"translated_synthetic": (xt, yt)}
    for name, (x, y) in sets.items():
        t = time.process_time()
        net = train_classifier(x, y, seed, recipe)
        res[f"acc_{name}"] = accuracy(net, *test)
        res[f"cpu_s_{name}"] = round(time.process_time() - t, 1)
        print(f"seed {seed} {name}: MNIST test acc {res[f'acc_{name}']:.4f}", flush=True)
    res["preserve_raw"] = label_preservation(xs, ys) if not args.only_translated else None
    res["preserve_translated"] = label_preservation(xt, yt)
    metrics = [json.loads(line) for line in (tdir / "metrics.jsonl").read_text().splitlines()]
    res["translator_train_cpu_s"] = max((m.get("train_cpu_s", 0) for m in metrics), default=0)
    grid_png(xs, xt, out / f"grid{tag}_s{seed}.png")
    done.write_text(json.dumps(res, indent=2))
    return res


def summary(results: list[dict]) -> str:
    def ms(k: str) -> str:
        v = [r[k] * 100 for r in results]
        return f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"

    seeds = ",".join(str(r["seed"]) for r in results)
    lines = [f"seeds {seeds}; mean ± std (sample std) in %", "",
             "| training data (10,000 images) | MNIST test accuracy | LeNet-5 label preservation |",
             "|---|---|---|",
             f"| raw synthetic (fonts) | {ms('acc_raw_synthetic')} | {ms('preserve_raw')} |",
             f"| translated synthetic (ParGANDA) | {ms('acc_translated_synthetic')} | "
             f"{ms('preserve_translated')} |",
             f"| real MNIST labels (upper bound) | {ms('acc_real_mnist')} | – |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="runs/parganda")
    p.add_argument("--steps", type=int, default=600, help="classifier steps (batch 64)")
    p.add_argument("--tag", default="", help="variant name in the translator/output file names")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra --set for `fmlab translate train` (a variant; use with --tag)")
    p.add_argument("--only-translated", action="store_true",
                   help="train only the translated-synthetic classifier (variants)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "synth_train.npz").is_file():
        render_npz("fontdigits?n_train=10000&n_test=10&seed=0", "train", out / "synth_train.npz")
    from fmlab.data import open_source

    mn = open_source("mnist")
    te, tr = mn.split("test"), mn.split("train")
    test = (np.asarray(te.get_batch(np.arange(len(te)))), np.asarray(te.labels))
    real = (np.asarray(tr.get_batch(np.arange(10000))), np.asarray(tr.labels)[:10000])
    recipe = ClassifierRecipe(steps=args.steps)
    results = [run_seed(int(s), out, test, real, recipe, args) for s in args.seeds.split(",")]
    if args.only_translated:
        print(json.dumps(results, indent=1))
        return
    text = summary(results)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
