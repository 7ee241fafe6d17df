#!/usr/bin/env bash
# Reproduce docs/results/str: every seed, one after another, single-threaded (about 35 CPU minutes in all).
# RUNS defaults to runs/str; the shapes pool is written by examples/make_shapes_pool.py.
set -euo pipefail
RUNS=${RUNS:-runs/str}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python benchmarks/issue21_str.py --objects mnist --out "$RUNS/mnist"
python benchmarks/issue21_str.py --objects mnist --out "$RUNS/mnist" --figure docs/results/str/mnist_examples.png
SHAPES=${SHAPES:-runs/pools/shapes.npz}
[ -f "$SHAPES" ] || python examples/make_shapes_pool.py --out "$SHAPES"
python benchmarks/issue21_str.py --objects "npz:$SHAPES" --out "$RUNS/shapes" --sizes 100
python benchmarks/issue21_str.py --objects "npz:$SHAPES" --out "$RUNS/shapes" --sizes 10 100 1000
python benchmarks/issue21_str.py --objects "npz:$SHAPES" --out "$RUNS/shapes" --figure docs/results/str/shapes_examples.png
# ablation: ORP at ten times the paper's scale (beta ~ U(0, 1)), MNIST, 100 labelled strings
python benchmarks/issue21_str.py --objects mnist --out "$RUNS/mnist_beta1" --towers "$RUNS/mnist/align" \
    --sizes 100 --inits orp --set orp.beta_max=1.0
# ablation: towers aligned by pooled embeddings only (the CLIP score), MNIST
python benchmarks/issue21_str.py --objects mnist --out "$RUNS/mnist_clipalign" --align-set towers.loss=clip
