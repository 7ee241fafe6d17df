#!/usr/bin/env bash
# Issue 23 part B: CgT-GAN arms and the caption attacks, one seed per call (bash run.sh SEED OUT),
# then `bash run.sh attack OUT` once all three seeds are done. One thread per process.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
S=$1; OUT=${2:-runs/caption}
C=configs/caption
if [ "$S" = attack ]; then
  for S in 0 1 2; do
    T=$(( (S + 1) % 3 ))
    fmlab caption attack --config $C/attack_mnist.yaml --out $OUT/attack_s$S \
      --set victim=$OUT/cgt_clip_cos_nat_s$S --set transfer=$OUT/cgt_clip_cos_nat_s$T --set seed=$S
  done
  exit 0
fi
fmlab caption train --config $C/clip_mnist.yaml --out $OUT/clip_s$S --set trainer.seed=$S --set trainer.progress=false
fmlab caption train --config $C/lm_mnist.yaml --out $OUT/lm_s$S --set clip=$OUT/clip_s$S --set trainer.seed=$S \
  --set trainer.progress=false
# warm-up only (400 text-only steps, no policy gradient): the reference point of every arm
fmlab caption train --config $C/cgt_clip_cos.yaml --out $OUT/cgt_warmup_s$S --set clip=$OUT/clip_s$S \
  --set trainer.seed=$S --set trainer.max_steps=400 --set trainer.progress=false
for ARM in clip_cos clip_cos_nat clip_agg_nat clip_agg; do
  fmlab caption train --config $C/cgt_$ARM.yaml --out $OUT/cgt_${ARM}_s$S --set clip=$OUT/clip_s$S \
    --set trainer.seed=$S --set trainer.progress=false
done
for ARM in warmup clip_cos clip_cos_nat clip_agg_nat clip_agg; do
  fmlab caption eval --model $OUT/cgt_${ARM}_s$S --lm $OUT/lm_s$S --json $OUT/cgt_${ARM}_s$S/eval.json \
    --sheet $OUT/cgt_${ARM}_s$S/sheet.png > /dev/null
done
