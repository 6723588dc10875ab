#!/usr/bin/env bash
# One change against step 7f's cfg-4 rows: the policy/base UNet is the zoo's toy-large (4.1 M parameters) instead of
# the shipped 1.0 M base model; the same pairs, preset, lr 1e-5, evaluation on toy:test x 8 seeds at guidance 4.
# Needs the zoo of the shipped build: python -m bench.toy.build --out /tmp/rebuild --keep-zoo /tmp/zoo-v3 (about 50 min).
# It copies toy-large's UNet over bench/toy/assets/model/unet for the runs and restores the shipped one on exit.
set -uo pipefail
cd "$(dirname "$0")/../../.."
trap 'git checkout -- bench/toy/assets/model/unet && git status --short bench/toy/assets' EXIT
cp ${ZOO:-/tmp/zoo-v3}/toy-large/unet/* bench/toy/assets/model/unet/
OUT=runs/diag14/capacity
for r in dpo ddim; do
  /usr/bin/time -f "%e s wall" bench run --method smpo --config ablation/smpo-$r --name large-smpo-ablation-$r --output-dir $OUT \
    eval.prompts=toy:test eval.images_per_prompt=8 2>&1 | tail -15
done
