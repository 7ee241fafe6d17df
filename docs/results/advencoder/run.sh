#!/usr/bin/env bash
# AdvEncoder study (docs/results/advencoder/README.md). One thread; ~15 CPU-minutes in all.
# Each attack: 100 steps x 32 surrogate images (CIFAR-10 train, first 5,000 in a seeded order).
# Each eval: 16-shot linear probe + kNN (split seed 1) fitted on CLEAN features of each
# downstream source, scored on 1,000 test images: clean / with δ / with random ±‖δ‖∞ noise.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
: "${FMLAB_DATA:?set FMLAB_DATA}"
R=${RUNS:-runs/advencoder}
RESNET=$FMLAB_DATA/weights/resnet_cifar10/resnet20-12fca82f.th
# an encoder pre-trained in this project: SimCLR ViT-tiny (vit_tiny_cifar, dim 128, depth 4),
# 100 steps on CIFAR-10 (fmlab pretrain, configs/pretrain/simclr_cifar10.yaml)
SIMCLR=${SIMCLR:-/work/main/runs/i17/a/multitask/simclr/seed1/encoder.safetensors}
DOWN="cifar10 mnist eurosat"
fm() { python -m fmlab "$@"; }

attack() {  # name backbone weights seed extra...
  local name=$1 bb=$2 w=$3 seed=$4; shift 4
  local out=$R/$name/seed$seed
  [ -f "$out/delta.safetensors" ] || fm attack universal --config configs/attack/advencoder.yaml \
      --out "$out" --backbone "$bb" --weights "$w" --surrogate cifar10 \
      --set trainer.max_steps=100 --set trainer.seed="$seed" --set trainer.progress=false "$@"
  [ -f "$out/eval/results.json" ] || fm attack eval --perturbation "$out/delta.safetensors" \
      --backbone "$bb" --weights "$w" --data $DOWN --shots 16 --seeds 1 --test-limit 1000 \
      --out "$out/eval" > /dev/null
}

for s in 1 2 3; do
  attack resnet20_hf resnet20_cifar "$RESNET" $s --eps 10/255
  attack resnet20_nohf resnet20_cifar "$RESNET" $s --eps 10/255 --set attack.lambda_hf=0
  attack simclr_vit_hf vit_tiny_cifar "$SIMCLR" $s --eps 10/255
  attack resnet20_patch resnet20_cifar "$RESNET" $s --patch 0.03
done
python docs/results/advencoder/aggregate.py "$R" docs/results/advencoder
