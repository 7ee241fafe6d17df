"""Issue 23 (text-conditioned GANs): every run of docs/results/textgan, then its table and figures.

    python benchmarks/textgan_runs.py train   [--seeds 0 1 2] [--jobs 2]   # runs/textgan/<cfg>_s<seed>
    python benchmarks/textgan_runs.py imtext  [--seeds 0 1 2] [--jobs 1]   # RUN/imtext.json
    python benchmarks/textgan_runs.py report                                # docs/results/textgan/

Each run is ``fmlab gan train --config configs/gan/<cfg>.yaml --set trainer.seed=S`` with one
thread (the configs hold every other setting); ``report`` reads each run's metrics.jsonl (final
evaluation, and the GALIP runs' curves), writes results.json, the mean ± std table (markdown,
printed) and the convergence-curve PNG, and copies one caption sheet per config (seed 0).
``imtext`` adds CLIP-score / R-precision (``fmlab gan eval --image-text``) under the MNIST CLIP of
``configs/clip/mnist_digits.yaml`` (trained into runs/clip/mnist_digits first when missing);
``report`` shows them, and the real test images' ceiling, when the runs have them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("mnist_gancls", "mnist_cgan_nomismatch", "mnist_t2i_supcon", "mnist_galip",
           "mnist_galip_scratchD")
METRICS = ("fid", "is", "class_acc", "thickness_agree", "slant_agree")
IMTEXT = ("clip_score", "r_precision", "clip_score_real", "r_precision_real")
RUNS = ROOT / "runs" / "textgan"
CLIP = ROOT / "runs" / "clip" / "mnist_digits"
OUT = ROOT / "docs" / "results" / "textgan"


def _fmlab(args: list[str], log: Path) -> int:
    """``fmlab ARGS`` with one thread, output to ``log``; the exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.run([sys.executable, "-m", "fmlab", *args], stdout=f,
                              stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode


def _train_one(cfg: str, seed: int) -> tuple[str, int, float]:
    run = RUNS / f"{cfg}_s{seed}"
    args = ["gan", "train"] + (["--resume", str(run)] if run.exists() else
                               ["--config", str(ROOT / "configs" / "gan" / f"{cfg}.yaml"),
                                "--out", str(run)])
    args += ["--set", f"trainer.seed={seed}", "--set", "trainer.progress=false"]
    rc = _fmlab(args, run.parent / f"{run.name}.log")
    cpu = _final(run).get("train_cpu_s", float("nan")) if rc == 0 else float("nan")
    return f"{cfg}_s{seed}", rc, cpu


def _evals(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r for r in rows if "eval" in r]


def _final(run: Path) -> dict:
    ev = _evals(run)
    if not ev:
        return {}
    im = run / "imtext.json"  # written by `imtext`
    extra = {k: v for k, v in json.loads(im.read_text()).items() if k in IMTEXT} if im.is_file() else {}
    return {**ev[-1]["eval"], "step": ev[-1]["step"], "train_cpu_s": ev[-1]["train_cpu_s"], **extra}


def _imtext_one(cfg: str, seed: int) -> tuple[str, int]:
    run = RUNS / f"{cfg}_s{seed}"
    log = run.parent / f"{run.name}.imtext.log"
    rc = _fmlab(["gan", "eval", "--generator", str(run), "--ref", "mnist:test", "--features",
                 "lenet5_mnist", "--metrics", "fid", "--n", "2000", "--image-text", str(CLIP),
                 "--json"], log)
    if rc == 0:  # the one JSON line of the output (warnings and progress go around it)
        line = [ln for ln in log.read_text().splitlines() if ln.startswith("{")][-1]
        (run / "imtext.json").write_text(line + "\n")
    return f"{cfg}_s{seed}", rc


def imtext(seeds: list[int], jobs: int) -> None:
    if not (CLIP / "clip_model.json").is_file():
        rc = _fmlab(["clip", "train", "--config", str(ROOT / "configs" / "clip" / "mnist_digits.yaml"),
                     "--out", str(CLIP), "--set", "trainer.progress=false"],
                    CLIP.parent / "mnist_digits.log")
        print(f"clip train: rc={rc}", flush=True)
    todo = [(c, s) for s in seeds for c in CONFIGS if (RUNS / f"{c}_s{s}" / "generator.json").is_file()]
    with ThreadPoolExecutor(jobs) as pool:
        for name, rc in pool.map(lambda cs: _imtext_one(*cs), todo):
            print(f"{name}: imtext rc={rc}", flush=True)


def train(seeds: list[int], jobs: int) -> None:
    todo = [(c, s) for s in seeds for c in CONFIGS]
    with ThreadPoolExecutor(jobs) as pool:
        for name, rc, cpu in pool.map(lambda cs: _train_one(*cs), todo):
            print(f"{name}: rc={rc} train_cpu_s={cpu:.0f}", flush=True)


def _table(results: dict) -> str:
    have = [m for m in IMTEXT if any(m in r for runs in results.values() for r in runs.values())]
    cols = (*METRICS, *have)
    lines = ["| config | seeds | " + " | ".join(cols) + " | train CPU-min |",
             "|---|---|" + "---|" * (len(cols) + 1)]
    for cfg, runs in results.items():
        cells = []
        for m in (*cols, "train_cpu_s"):
            v = np.array([r[m] for r in runs.values() if m in r], dtype=float)
            if m == "train_cpu_s":
                v = v / 60
            prec = 1 if m == "fid" else 2 if m in ("is", "train_cpu_s") else 3
            cells.append(f"{v.mean():.{prec}f} ± {v.std(ddof=1) if len(v) > 1 else 0:.{prec}f}")
        lines.append(f"| {cfg} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _curves(seeds: list[int]) -> dict:
    out = {}
    for cfg in ("mnist_galip", "mnist_galip_scratchD"):
        per_seed = {s: [(r["step"], r["eval"]) for r in _evals(RUNS / f"{cfg}_s{s}")]
                    for s in seeds}
        out[cfg] = {str(s): [{"step": st, **{m: ev[m] for m in METRICS}} for st, ev in v]
                    for s, v in per_seed.items() if v}
    return out


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for cfg, colour in (("mnist_galip", "tab:blue"), ("mnist_galip_scratchD", "tab:orange")):
        runs = list(curves.get(cfg, {}).values())
        if not runs:
            continue
        steps = [p["step"] for p in runs[0]]
        for ax, m in zip(axes, ("fid", "class_acc", "slant_agree")):
            vals = np.array([[p[m] for p in r[:len(steps)]] for r in runs])
            ax.plot(steps, vals.mean(0), "-o", color=colour, label=cfg, ms=3)
            ax.fill_between(steps, vals.min(0), vals.max(0), color=colour, alpha=0.2)
            ax.set_xlabel("step")
            ax.set_title(m + (" (LeNet, lower better)" if m == "fid" else ""))
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"GALIP (frozen pre-trained VAE tower in D) vs same-size scratch D: mean and "
                 f"min–max of {len(runs)} seeds", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def report(seeds: list[int]) -> None:
    results = {c: {str(s): _final(RUNS / f"{c}_s{s}") for s in seeds
                   if _final(RUNS / f"{c}_s{s}")} for c in CONFIGS}
    curves = _curves(seeds)
    OUT.mkdir(parents=True, exist_ok=True)
    from fmlab.utils.io import write_json

    write_json(OUT / "results.json", {"final": results, "galip_curves": curves})
    _plot(curves, OUT / "galip_convergence.png")
    for c in CONFIGS:
        sheets = sorted((RUNS / f"{c}_s0" / "samples").glob("step_*.png"))
        if sheets:
            shutil.copy(sheets[-1], OUT / f"sheet_{c}.png")
    print(_table(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=("train", "imtext", "report"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (the box has 2 cores)")
    a = ap.parse_args()
    {"train": lambda: train(a.seeds, a.jobs), "imtext": lambda: imtext(a.seeds, a.jobs),
     "report": lambda: report(a.seeds)}[a.what]()


if __name__ == "__main__":
    main()
