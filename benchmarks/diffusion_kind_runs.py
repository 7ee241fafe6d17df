"""KIND diversion study (issue 24, paper 43): integrate on MNIST 0–4, divert to 5–9.

One integrated KIND run (seed 0), then for each seed and method (learngene, lora,
scratch_matched, scratch) one transfer run, N DDIM samples (N/5 per class) and ``fmlab gan eval``
against the MNIST test digits 5–9 (a reference npz written here from mnist.npz: FID over all of
them, intra-FID per digit, and the LeNet's class recall). See docs/results/diffusion.

    python benchmarks/diffusion_kind_runs.py --out runs/kind_study [--seeds 0 1 2] [--steps 80]

Writes OUT/runs.json (commands, CPU-s), OUT/results.json (per run and mean ± std), and the
figures OUT/kind_transfer.png (metrics) and OUT/kind_grids.png (samples, one seed per method).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("mer", Path(__file__).with_name("mim_eurosat_runs.py"))
mer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mer)

METHODS = ["learngene", "lora", "scratch_matched", "scratch"]
SMOKE = ["--set", "model.ch=16", "--set", "trainer.batch_size=32", "--set", "trainer.progress=false",
         "--set", "samples.steps=10"]


def reference(out: Path) -> Path:
    """MNIST test digits 5–9 as an npz source (``npz:PATH:test``) for gan eval."""
    path = out / "mnist_test_59.npz"
    if not path.is_file():
        z = np.load(Path(os.environ["FMLAB_DATA"]) / "mnist" / "mnist.npz", allow_pickle=False)
        keep = z["y_test"] >= 5
        np.savez(path, x_test=z["x_test"][keep], y_test=z["y_test"][keep],
                 x_train=z["x_test"][keep], y_train=z["y_test"][keep],
                 class_names=np.array([str(i) for i in range(10)]))
    return path


def eval_json(log: Path) -> dict:
    """The JSON line ``fmlab gan eval --json`` printed into its log."""
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def run(out: Path, seeds: list[int], int_steps: int, steps: int, n: int, methods: list[str],
        ddim: int) -> dict:
    runner = mer.Runner(out)
    src = runner("int04", ["diffusion", "train", "--config", "configs/diffusion/kind_mnist.yaml",
                           "--set", f"trainer.max_steps={int_steps}", *SMOKE])
    ref = reference(out)
    rows = {}
    for seed in seeds:       # seeds outermost: a cut-short study still has every method
        for method in methods:
            key = f"{method}_s{seed}"
            dest = runner(key, ["diffusion", "transfer", "--from", str(src), "--config",
                                "configs/diffusion/transfer_mnist59.yaml", "--method", method,
                                "--set", f"trainer.seed={seed}",
                                "--set", f"trainer.max_steps={steps}", *SMOKE[2:]])
            runner(f"{key}_samples", ["diffusion", "sample", "--model", str(dest), "--n", str(n),
                                      "--steps", str(ddim), "--seed", str(seed), "--out", "{OUT}.png",
                                      "--npz", "{OUT}.npz"])
            runner(f"{key}_eval", ["gan", "eval", "--fake-images", str(out / f"{key}_samples.npz"),
                                   "--ref", f"npz:{ref}:test", "--features", "lenet5_mnist",
                                   "--metrics", "fid,ifid,class_recall", "--json", "--seed", "0",
                                   "--n", str(n), "--db", "{OUT}.db"])
            m = eval_json(out / f"{key}_eval.log")
            meta = json.loads((dest / "model.json").read_text())
            rows[key] = {"method": method, "seed": seed, "fid": m["fid"],
                         "ifid": m["ifid"]["mean"], "class_recall": m["class_recall"]["mean"],
                         "trainable": meta["trainable"], "lora_r": meta.get("lora_r"),
                         "train_cpu_s": runner.done[key]["cpu_s"]}
    return rows


def summarise(rows: dict) -> dict:
    out = {}
    for method in [m for m in METHODS if any(r["method"] == m for r in rows.values())]:
        rs = [r for r in rows.values() if r["method"] == method]
        out[method] = {"n": len(rs), "trainable": rs[0]["trainable"], "lora_r": rs[0]["lora_r"]}
        for k in ("fid", "ifid", "class_recall", "train_cpu_s"):
            vals = [r[k] for r in rs]
            out[method][k] = [statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0]
    return out


def figures(out: Path, summary: dict, seed: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    methods = list(summary)
    colours = {"learngene": "tab:green", "lora": "tab:blue", "scratch_matched": "tab:orange",
               "scratch": "tab:gray"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for ax, (k, title) in zip(axes, [("fid", "FID-LeNet vs test 5-9 (lower better)"),
                                     ("ifid", "intra-FID mean (lower better)"),
                                     ("class_recall", "LeNet class recall (higher better)")]):
        means = [summary[m][k][0] for m in methods]
        stds = [summary[m][k][1] for m in methods]
        ax.bar(range(len(methods)), means, yerr=stds, capsize=4, color=[colours[m] for m in methods])
        ax.set_title(title, fontsize=9)
    labels = [f"{m}\n{summary[m]['trainable']:,}\ntrainable" for m in methods]
    for ax in axes:
        ax.set_xticks(range(len(methods)), labels, fontsize=7)
    fig.suptitle(f"KIND diversion MNIST 0-4 -> 5-9 (mean ± std over {summary[methods[0]]['n']} seeds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "kind_transfer.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(methods), figsize=(3 * len(methods), 3.6), squeeze=False)
    axes = axes[0]
    for ax, m in zip(axes, methods):
        grid = np.asarray(Image.open(out / f"{m}_s{seed}_samples.png"))
        ax.imshow(grid[: 2 + 6 * 30], cmap="gray", vmin=0, vmax=255)  # first 6 rows of 28+2 px
        ax.set_title(f"{m} (seed {seed})\ncolumns = digits 5..9", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "kind_grids.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/kind_study"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--int-steps", type=int, default=300, help="integration steps (batch 32)")
    p.add_argument("--steps", type=int, default=80, help="transfer steps (batch 32)")
    p.add_argument("--n", type=int, default=250, help="samples per run (50 per class)")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--ddim", type=int, default=10, help="DDIM steps of the evaluated samples")
    a = p.parse_args()
    rows = run(a.out, a.seeds, a.int_steps, a.steps, a.n, a.methods, a.ddim)
    summary = summarise(rows)
    from fmlab.utils.io import write_json

    write_json(a.out / "results.json", {"runs": rows, "summary": summary})
    figures(a.out, summary, a.seeds[0])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
