#!/usr/bin/env bash
# Issue 14 steps 7d and 7f (results/toy/README.md): fine-tuned runs and the base model evaluated on toy:test (8 seeds)
# at guidance 1, 2 and 4 (the protocol's), one change: the guidance. Per guidance: the change of the panel's utility
# (perceptible_wins.py) and of each toy feature and object colour (eval_features.py).
# Defaults (step 7d): the validation's selected SFT and DPO runs (bench sweep --grid wide --val-images-per-prompt 16,
# in runs/sweep-wide), written to results/toy/diagnostics/guidance_drift.md; about 3 minutes on 2 CPU cores.
# NAMES (runs under RUNS) and MD (the output) choose others, e.g. step 7f:
#   NAMES="smpo-ablation-dpo-lr1x smpo-ablation-ddim-lr1x inpo-lr1x smpo-lr1x" \
#     MD=results/toy/diagnostics/guidance_drift_inversion.md results/toy/diagnostics/guidance_drift.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/sweep-wide}
NAMES=${NAMES:-sft-lr30x dpo-lr3x}
OUT=runs/diag14/cfg
MD=${MD:-results/toy/diagnostics/guidance_drift.md}
echo "# ${NAMES// /, } against the base model by evaluation guidance (\`$0\`, runs from $RUNS)" > $MD
for c in 1 2 4; do
  bench eval --model toy --prompts toy:test --images-per-prompt 8 --cfg $c --output-dir $OUT/b$c --quiet > /dev/null
  BASE=$(ls -d $OUT/b$c/base-toy-*)
  DIRS=()
  for r in $NAMES; do  # a copy of the run per guidance, so that the run's own evaluation stays as it is
    D=$OUT/cfg$c/$r
    if [ ! -f $D/eval/toy-test/summary.json ]; then
      rm -rf $D && mkdir -p $D && cp -r $RUNS/$r/{weights,config.json,run.json,env.json} $D/
      bench eval --checkpoint $D --prompts toy:test --images-per-prompt 8 --cfg $c --quiet > /dev/null
    fi
    DIRS+=($D)
  done
  { echo; echo "## Guidance $c"; echo
    python results/toy/diagnostics/perceptible_wins.py $BASE "${DIRS[@]}" --set toy-test
    echo; python results/toy/diagnostics/eval_features.py $BASE "${DIRS[@]}" --prompt-set toy-test | tail -n +4; } >> $MD
done
cat $MD
