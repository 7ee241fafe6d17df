#!/usr/bin/env bash
# Dark Side augmentation study (issue 24, paper 10): the exact commands behind README.md.
# Usage: bash docs/results/darkside/run.sh [arms...]   (default: none degraded translated)
# Needs FMLAB_DATA (CIFAR-10 JPEG copy, resnet_cifar10 weights); one thread per run.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CFG=configs/retrieval/darkside_cifar10.yaml
R=runs/darkside
STEPS=${STEPS:-200}
[ -f $R/domains/night.npz ] || fmlab retrieval domains --config $CFG --out $R/domains
[ -f $R/initial.json ] || fmlab retrieval eval --config $CFG --out $R/initial.json
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(none degraded translated)
for arm in "${arms[@]}"; do
  for seed in 0 1 2; do
    out=$R/${arm}_s$seed
    [ -f $out/report.json ] && continue
    extra=()
    if [ "$arm" = translated ]; then
      [ -f $R/translator/translator.json ] || fmlab translate train \
          --config configs/translate/day_to_night_cifar10.yaml --out $R/translator
      extra=(--set augment.translator=$R/translator)
    fi
    fmlab retrieval train --config $CFG --out $out --set augment.positives=$arm \
        --set trainer.seed=$seed --set trainer.max_steps=$STEPS "${extra[@]}"
  done
done
