"""Before/after a refactor: engine overhead and GAN training throughput of two source trees, side by side.

Each measurement runs in a fresh subprocess with ``PYTHONPATH`` pointing at one tree's ``src``,
and the two trees alternate (A, B, A, B, ...), so machine load hits both alike.

* **Engine overhead**: each tree's own ``benchmarks/bench_engine_overhead.py`` (the bare PyTorch loop
  and ``Trainer.fit`` interleaved); its steady-state engine/bare ratio of CPU-time throughputs.
* **Loop cost per step**: ``benchmarks/bench_loop_step.py`` (of the ``--after`` tree, run against
  each tree's ``src``): CPU microseconds per ``Trainer.fit`` step of a 10-parameter model, where
  the step is almost all loop; what a change adds per step shows here, not in machine noise.
* **GAN throughput**: ``fmlab gan train`` on MNIST (``configs/gan/mnist_dcgan_hinge.yaml``, batch 64,
  bf16) to ``--long`` and to ``--short`` steps with the same evaluation; the difference of the
  child processes' CPU times divided by ``long - short`` steps is the CPU time of one training
  step, with set-up, data loading and the final evaluation cancelled out.

    FMLAB_DATA=../shared/data python benchmarks/refactor_ab.py --before ../wt-base --after . [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GAN_SETS = ["data.limit=4096", "eval.n=200", "eval.metrics=[fid]", "samples.every=0",
            "trainer.checkpoint_every=0", "trainer.log_every=50"]


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.setdefault("FMLAB_CACHE", tempfile.mkdtemp(prefix="fmlab-ab-cache-"))
    return env


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_child(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """(CPU seconds of the child, its stdout); raises if it fails."""
    before = _child_cpu()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return _child_cpu() - before, p.stdout


def engine_ratio(tree: Path, steps: int) -> float:
    cmd = [sys.executable, "benchmarks/bench_engine_overhead.py", "--threads", "1", "--reps", "2",
           "--steps", str(steps)]
    _, out = run_child(cmd, _env(tree), tree)
    rows = [ln for ln in out.splitlines() if "steady" in ln.lower()]
    nums = re.findall(r"\d+\.\d+", rows[-1]) if rows else []
    if not nums:
        raise RuntimeError(f"no steady-state row in the output of {tree}:\n{out}")
    return float(nums[-1])


def loop_us(tree: Path, script: Path) -> float:
    _, out = run_child([sys.executable, str(script), "--reps", "3"], _env(tree), tree)
    return float(re.search(r"median ([0-9.]+) us", out).group(1))


def gan_cpu(tree: Path, steps: int, config: Path) -> float:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "fmlab", "gan", "train", "--config", str(config), "--out",
               str(Path(d) / "run"), "--no-db", "--set", f"trainer.max_steps={steps}"]
        for s in GAN_SETS:
            cmd += ["--set", s]
        cpu, _ = run_child(cmd, _env(tree), tree)
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engine-steps", type=int, default=200)
    ap.add_argument("--short", type=int, default=50)
    ap.add_argument("--long", type=int, default=350)
    ap.add_argument("--only", choices=("engine", "loop", "gan"), default=None, help="measure one of the three")
    args = ap.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    config = (args.after / "configs/gan/mnist_dcgan_hinge.yaml").resolve()
    eng: dict[str, list[float]] = {k: [] for k in trees}
    loop: dict[str, list[float]] = {k: [] for k in trees}
    loop_script = (args.after / "benchmarks/bench_loop_step.py").resolve()
    gan: dict[str, list[float]] = {k: [] for k in trees}
    t0 = time.time()
    for rep in range(args.reps):
        for name, tree in trees.items():
            if args.only in (None, "engine"):
                eng[name].append(engine_ratio(tree, args.engine_steps))
            if args.only in (None, "loop"):
                loop[name].append(loop_us(tree, loop_script))
            if args.only in (None, "gan"):
                long_cpu = gan_cpu(tree, args.long, config)
                short_cpu = gan_cpu(tree, args.short, config)
                gan[name].append(1000 * (long_cpu - short_cpu) / (args.long - args.short))
            last = {k: (v[name][-1] if v[name] else float("nan")) for k, v in
                    (("eng", eng), ("loop", loop), ("gan", gan))}
            print(f"rep {rep} {name}: engine/bare {last['eng']:.3f}, loop step {last['loop']:.1f} us, "
                  f"GAN step {last['gan']:.1f} ms CPU", flush=True)
    med = {k: tuple(statistics.median(v[k] or [float("nan")]) for v in (eng, gan, loop)) for k in trees}
    print(f"\n{args.reps} repetitions, {time.time() - t0:.0f} s, load average {os.getloadavg()[0]:.1f}\n")
    print("| measure | before (median) | after (median) | after / before |")
    print("|---|---|---|---|")
    b, a = med["before"], med["after"]
    print(f"| engine / bare loop, steady-state CPU throughput | {b[0]:.3f} | {a[0]:.3f} | {a[0] / b[0]:.3f} |")
    print(f"| engine loop step of a 10-parameter model, us CPU (lower is better) | {b[2]:.1f} | {a[2]:.1f} "
          f"| {a[2] / b[2]:.3f} |")
    print(f"| GAN training step, ms CPU (lower is better) | {b[1]:.1f} | {a[1]:.1f} | {a[1] / b[1]:.3f} |")
    print(f"| GAN training steps per CPU-second | {1000 / b[1]:.2f} | {1000 / a[1]:.2f} | {b[1] / a[1]:.3f} |")


if __name__ == "__main__":
    main()
