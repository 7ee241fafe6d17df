"""Wall time of the W2PGNN feasibility score on the staged TU datasets (target: under 30 s each).

Times ``fmlab graph feasibility`` end to end (a fresh process: Python start, reading the TU text
files, graphon estimation, k-means bases, the simplex fit) for the largest case, pre-training on
two datasets; then, in-process with a cold reader cache, every (pre-training, downstream) pair of
the study (benchmarks/w2pgnn_study.py).

    FMLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/bench_graph_feasibility.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from fmlab.data import graphs
from fmlab.experiments.graph import run_feasibility

PAIRS = [("MUTAG", "PROTEINS"), ("MUTAG", "ENZYMES"), ("PROTEINS", "MUTAG"), ("PROTEINS", "ENZYMES"),
         ("ENZYMES", "MUTAG"), ("ENZYMES", "PROTEINS"), ("PROTEINS,ENZYMES", "MUTAG"),
         ("MUTAG,ENZYMES", "PROTEINS"), ("MUTAG,PROTEINS", "ENZYMES")]


def main() -> None:
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "fmlab", "graph", "feasibility", "--pretrain", "PROTEINS,ENZYMES",
           "--downstream", "MUTAG"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ).stdout
    print(f"cli PROTEINS,ENZYMES -> MUTAG: {time.perf_counter() - t:.2f} s ({out.split()[-1]})")
    worst = 0.0
    for pre, down in PAIRS:
        graphs._CACHE.clear()
        t = time.perf_counter()
        score = run_feasibility(pre, down)["score"]
        dt = time.perf_counter() - t
        worst = max(worst, dt)
        print(f"{pre:>18} -> {down:<8} {dt:6.2f} s  feasibility {score:.4f}")
    print(f"slowest pair (cold reader cache, in-process): {worst:.2f} s")


if __name__ == "__main__":
    main()
