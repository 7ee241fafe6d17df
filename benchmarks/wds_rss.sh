#!/usr/bin/env bash
# Peak RSS of a `wds:` pre-training run at two dataset sizes (issue 26), beside the in-memory
# npz path at the same sizes. Same steps, batch and model everywhere; only the data size differs.
#   benchmarks/wds_rss.sh SHARD_DIR OUT_DIR
# SHARD_DIR: `fmlab data shard cifar10 --split train --out SHARD_DIR --shard-size 5000`
# (10 shards of 5,000; the first shard alone is the 5,000-image dataset).
set -euo pipefail
shards=$1; out=$2; mkdir -p "$out"
common=(--config configs/pretrain/supervised_cifar10.yaml --set data.val_size=0
        --set trainer.max_steps=40 --set trainer.batch_size=64 --set trainer.log_every=10
        --set schedule.warmup_steps=0)
run() {  # name, then --set overrides
  local name=$1; shift
  /usr/bin/time -f "$name maxrss_kb=%M wall_s=%e" python -m fmlab pretrain "${common[@]}" \
    --out "$out/$name" "$@" 2>&1 | grep maxrss_kb
}
run wds_5k  --set "data.source=wds:$shards/train-000000.tar"
run wds_50k --set "data.source=wds:$shards"
run npz_5k  --set data.source=cifar10 --set data.limit=5000
run npz_50k --set data.source=cifar10 --set data.limit=0
