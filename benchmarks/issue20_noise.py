"""Issue 20's label-noise study (NMTune, papers.md #9; docs/results/label_noise): does pre-training
on noisy labels help in-domain and hurt out-of-domain, and does NMTune recover part of it?

Steps, each a CLI command in a child process (one thread), skipped when already recorded in
``OUT/runs.json`` (so the driver resumes after a kill):

1. ``fmlab pretrain --config configs/pretrain/supervised_noise_cifar10.yaml`` per noise level p and
   seed s (``data.label_noise=p``, ``data.noise_seed=s``, ``trainer.seed=s``), shortened to
   ``--steps`` optimiser steps (the shipped 4-epoch budget x 15 runs does not fit one session);
2. ``fmlab features extract`` of each encoder on each evaluation source's test split, then
   ``fmlab adapt spectrum --json`` -> SVE and LSVR;
3. ``fmlab adapt --methods linear,nmtune --shots SHOTS --seeds s`` per encoder and source:
   in-domain CIFAR-10 (the held-out test split) and out-of-domain MNIST and EuroSAT. Seed s uses
   the same split files at every p, so levels differ only by the encoder.

    FMLAB_DATA=/work/shared/data python benchmarks/issue20_noise.py --out runs/i20n
    python benchmarks/issue20_noise.py --out runs/i20n --report   # table + noise_study.png
    # or one process per seed (separate folders), pooled by the report:
    python benchmarks/issue20_noise.py --seeds 2 --out runs/i20n_s2   # ... and so on
    python benchmarks/issue20_noise.py --out runs/i20n,runs/i20n_s2,runs/i20n_s3 --report
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# the drivers' one "run fmlab in a child process, one thread, return its CPU seconds" helper
_spec = importlib.util.spec_from_file_location("mer", Path(__file__).with_name("mim_eurosat_runs.py"))
mer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mer)

CONFIG = "configs/pretrain/supervised_noise_cifar10.yaml"
LEVELS = ["0", "0.05", "0.1", "0.2", "0.3"]
SOURCES = ["cifar10", "mnist", "eurosat"]
METHODS = ["linear", "nmtune"]


Runner = mer.Runner


def run(out: Path, seeds: list[int], steps: int, shots: str) -> None:
    runner = Runner(out)
    # `features extract` fills this cache, so `adapt` below reuses the test-split features.
    os.environ.setdefault("FMLAB_CACHE", str(out / "cache"))
    for s in seeds:
        for p in LEVELS:
            enc = runner(f"pre/p{p}_s{s}", [
                "pretrain", "--config", str(ROOT / CONFIG), "--out", "{OUT}",
                "--set", f"data.label_noise={p}", "--set", f"data.noise_seed={s}",
                "--set", f"trainer.seed={s}", "--set", f"trainer.max_steps={steps}",
                "--set", "monitor.every_epochs=0", "--set", "trainer.progress=false"])
            weights = str(enc / "encoder.safetensors")
            backbone = ["--backbone", "resnet20_cifar", "--weights", weights]
            for data in SOURCES:
                feats = runner(f"feat/p{p}_s{s}_{data}.safetensors", [
                    "features", "extract", *backbone, "--data", data, "--split", "test",
                    "--out", "{OUT}"])
                runner(f"spec/p{p}_s{s}_{data}", ["adapt", "spectrum", "--features", str(feats), "--json"])
                feats.unlink(missing_ok=True)  # spectrum has read it; the cache keeps a copy for adapt
                runner(f"adapt/p{p}_s{s}_{data}", [
                    "adapt", *backbone, "--data", data, "--methods", ",".join(METHODS),
                    "--shots", shots, "--seeds", str(s), "--out", "{OUT}", "--no-db"])


def _spectrum(out: Path, key: str) -> dict:
    text = (out / "spec" / f"{key}.log").read_text().strip().splitlines()
    return json.loads(text[-1])


def collect(outs: list[Path]) -> dict:
    """{(p, source): {"linear@shots": [...], "nmtune@shots": [...], "sve": [...], "lsvr": [...]}}
    over every run recorded in the ``outs`` folders (e.g. one folder per seed, run in parallel)."""
    table: dict = {}
    for out in outs:
        for key in json.loads((out / "runs.json").read_text()):
            if not key.startswith("adapt/"):
                continue
            tag = key.split("/", 1)[1]            # p0.1_s2_cifar10
            p, _, data = tag.split("_", 2)
            cell = table.setdefault((p[1:], data), {})
            for r in json.loads((out / key / "results.json").read_text()):
                cell.setdefault(f"{r['method']}@{r['shots']}", []).append(100 * r["accuracy"])
            spec = _spectrum(out, tag)
            cell.setdefault("sve", []).append(spec["sve"])
            cell.setdefault("lsvr", []).append(spec["lsvr"])
    return table


def _ms(xs: list[float], digits: int = 1) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.{digits}f} ± {sd:.{digits}f} (n={len(xs)})"


def report(outs: list[Path], shots: str) -> str:
    table = collect(outs)
    top = shots.split(",")[-1]
    lines = []
    for data in SOURCES:
        lines += [f"\n{data} (test split; {top}-shot linear probe and NMTune, SVE/LSVR of test features)\n",
                  "| p | linear | nmtune | nmtune − linear | SVE | LSVR |", "|---|---|---|---|---|---|"]
        for p in LEVELS:
            c = table.get((p, data))
            if not c:
                continue
            lin, nmt = c[f"linear@{top}"], c[f"nmtune@{top}"]
            diff = [b - a for a, b in zip(lin, nmt)]
            lines.append(f"| {p} | {_ms(lin)} | {_ms(nmt)} | {_ms(diff)} | {_ms(c['sve'], 3)} | "
                         f"{_ms(c['lsvr'], 3)} |")
    plot(table, top, outs[0] / "noise_study.png")
    return "\n".join(lines)


def plot(table: dict, top: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    xs = [float(p) for p in LEVELS]
    for ax, data in zip(axes, SOURCES):
        for method, style in (("linear", "o-"), ("nmtune", "s--")):
            pts = [(x, table[(p, data)][f"{method}@{top}"]) for x, p in zip(xs, LEVELS) if (p, data) in table]
            if pts:
                ax.errorbar([x for x, _ in pts], [statistics.mean(v) for _, v in pts],
                            yerr=[statistics.pstdev(v) for _, v in pts], fmt=style, capsize=3, label=method)
        ax.set_title(f"{data} ({'in' if data == 'cifar10' else 'out-of'}-domain)")
        ax.set_xlabel("pre-training label noise p")
        ax.set_ylabel(f"test accuracy, {top}-shot (%)")
        ax.legend()
    ax = axes[3]
    for data in SOURCES:
        pts = [(x, table[(p, data)]["sve"]) for x, p in zip(xs, LEVELS) if (p, data) in table]
        if pts:
            ax.errorbar([x for x, _ in pts], [statistics.mean(v) for _, v in pts],
                        yerr=[statistics.pstdev(v) for _, v in pts], fmt="o-", capsize=3, label=data)
    ax.set_title("singular-value entropy of test features")
    ax.set_xlabel("pre-training label noise p")
    ax.set_ylabel("SVE")
    ax.legend()
    fig.suptitle("ResNet-20 pre-trained on CIFAR-10 (JPEG copy) with symmetric label noise; mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True,
                    help="output folder; with --report a comma list of them (pooled)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--steps", type=int, default=250, help="pre-training optimiser steps per run")
    ap.add_argument("--shots", default="10,100", help="shots per class of the probes")
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if a.report:
        print(report([Path(o) for o in a.out.split(",")], a.shots))
    else:
        run(Path(a.out), [int(s) for s in a.seeds.split(",")], a.steps, a.shots)


if __name__ == "__main__":
    main()
