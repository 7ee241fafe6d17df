"""Issue 23: the runs of docs/results/tganc (caption → video) and docs/results/story (story
continuation), then their tables.

    python benchmarks/video_story_runs.py tganc  [--seeds 0 1 2] [--arms none penalty motion] [--set KEY=VALUE ...]
    python benchmarks/video_story_runs.py story  [--seeds 0 1 2] [--set KEY=VALUE ...]
    python benchmarks/video_story_runs.py rescore [--judge-steps N]   # TGANs-C runs: gan eval --json
    python benchmarks/video_story_runs.py report

Each run is ``fmlab gan train --config configs/gan/<cfg>.yaml --set trainer.seed=S`` (one thread)
into ``runs/<family>/<arm>_s<seed>``; a finished run (results.json) is skipped, a cut one resumed.
TGANs-C arms: ``gan.coherence`` none / penalty (and motion with ``--motion``). Story: one pretrain run per seed, then
the three adaptation methods from it (800 steps each). ``report`` writes results.json (every run) and the mean ± std
table (README fragment, printed) into docs/results/<family>/ and copies the seed-0 sheets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS, DOCS = ROOT / "runs", ROOT / "docs" / "results"
TGANC_ARMS = ("none", "penalty")  # + "motion" (TGANs-C-A) with --motion
STORY_ARMS = ("caption_only", "cross_full", "cross_prompt")
ADAPT_STEPS = 800  # adaptation steps of every story arm (pretraining: the config's 2,000)
METRICS = {"tganc": ("digit_accuracy", "direction_accuracy", "jitter", "real_jitter"),
           "story": ("style_consistency", "colour_consistency", "thickness_consistency",
                     "digit_accuracy")}


def _run(config: str, run: Path, sets: list[str]) -> None:
    if (run / "results.json").is_file():
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "fmlab", "gan", "train"]
    args += (["--resume", str(run)] if (run / "config.yaml").is_file() else
             ["--config", str(ROOT / "configs" / "gan" / f"{config}.yaml"), "--out", str(run)])
    for s in sets:
        args += ["--set", s]
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"{run.name}.log", "w") as f:
        rc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    print(f"{run.name}: exit {rc}", flush=True)


def train(family: str, seeds: list[int], extra: list[str], motion: bool = False,
          arms: list[str] | None = None) -> None:
    for seed in seeds:
        base = [f"trainer.seed={seed}", *extra]
        if family == "tganc":
            for arm in arms or TGANC_ARMS + (("motion",) if motion else ()):
                _run("video_tganc", RUNS / "tganc" / f"{arm}_s{seed}", base + [f"gan.coherence={arm}"])
            continue
        pre = RUNS / "story" / f"pre_s{seed}"
        _run("canvas_story", pre, base)
        for arm in STORY_ARMS:
            _run("canvas_story", RUNS / "story" / f"{arm}_s{seed}",
                 base + ["stage=adapt", f"init={pre}", f"method={arm}",
                         f"trainer.max_steps={ADAPT_STEPS}"])


def rescore(judge_steps: int | None) -> None:
    """Re-score every TGANs-C run with today's judges: ``fmlab gan eval --generator RUN --ref
    mnist:test --json`` → ``RUN/eval.json`` (``report`` prefers it to the run's own results)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for run in sorted((RUNS / "tganc").glob("*_s*/generator.safetensors")):
        args = [sys.executable, "-m", "fmlab", "gan", "eval", "--generator", str(run.parent),
                "--ref", "mnist:test", "--json"]
        args += ["--judge-steps", str(judge_steps)] if judge_steps else []
        out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode:
            print(f"{run.parent.name}: exit {out.returncode}\n{out.stderr[-2000:]}", flush=True)
            continue
        (run.parent / "eval.json").write_text(out.stdout.strip().splitlines()[-1] + "\n")
        print(f"{run.parent.name}: {out.stdout.strip().splitlines()[-1]}", flush=True)


def _table(records: list[dict], arms: tuple[str, ...], metrics: tuple[str, ...]) -> str:
    lines = ["| arm | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for arm in arms:
        rows = [r for r in records if r["arm"] == arm]
        if not rows:
            continue
        cells = []
        for m in metrics:
            v = np.array([r[m] for r in rows], dtype=float)
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}")
        lines.append(f"| {arm} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report() -> None:
    for family, arms, sheet in (("tganc", TGANC_ARMS + ("motion",), "samples.png"),
                                ("story", STORY_ARMS, "story_sheet.png")):
        records = []
        for path in sorted((RUNS / family).glob("*_s*/results.json")):
            arm, _, seed = path.parent.name.rpartition("_s")
            if arm in arms:
                rescored = path.parent / "eval.json"  # `rescore`'s judges, when it ran
                extra = json.loads(rescored.read_text()) if rescored.is_file() else {}
                records.append({"arm": arm, "seed": int(seed), **json.loads(path.read_text()),
                                **extra})
        if not records:
            continue
        out = DOCS / family
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(records, indent=1, default=float))
        metrics = METRICS[family] + tuple(f"real_{m}" for m in METRICS[family][:2])
        table = _table(records, arms, tuple(m for m in metrics if m in records[0]))
        (out / "table.md").write_text(table + "\n")
        print(f"## {family}\n{table}\n")
        from fmlab.studies.arm_report import plot_arm_bars

        bars = [{"arm_name": r["arm"], "task": m.replace("_", " "), "value": r[m]}
                for m in METRICS[family] if m in records[0] and "jitter" not in m for r in records]
        unit = "clips" if family == "tganc" else "frames"
        plot_arm_bars(bars, "value", out / "scores.png", ylabel=f"% of generated {unit}",
                      title=f"{family}: mean ± std over seeds (dots: seeds)")
        for arm in arms:
            src = RUNS / family / f"{arm}_s0" / sheet
            if src.is_file():
                shutil.copy(src, out / f"{arm}_{sheet}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("tganc", "story", "rescore", "report"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--motion", action="store_true", help="tganc: also the motion-D arm")
    p.add_argument("--arms", nargs="+", choices=TGANC_ARMS + ("motion",),
                   help="tganc: only these arms (run arms in parallel processes)")
    p.add_argument("--judge-steps", type=int, default=None, help="rescore: judge training steps")
    a = p.parse_args()
    if a.what == "report":
        report()
    elif a.what == "rescore":
        rescore(a.judge_steps)
    else:
        train(a.what, a.seeds, a.sets, a.motion, a.arms)


if __name__ == "__main__":
    main()
