#!/usr/bin/env bash
# Issue 14 step 7g (results/toy/README.md): the validation's selected runs and the base model evaluated on the 260
# TRAINING prompts (toy:train, 8 seeds each, seeds unseen in training), as Pick-a-Pic's own test split is prompts from
# the distribution of its training prompts; the protocol's toy:test holds attribute combinations the base model never
# saw (like HPDv2 after Pick-a-Pic). One change against the validation: the prompt set. Runs are copied first, so
# their own evaluations stay as they are. About 12 minutes on 2 CPU cores.
# RUNS and NAMES choose the runs (default: the wide sweep's selected SFT and DPO and the random change); MD the output.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/sweep-wide}
NAMES=${NAMES:-sft-lr30x dpo-lr3x random-like-dpo}
OUT=${OUT:-runs/diag15/train8}
MD=${MD:-results/toy/diagnostics/in_distribution.md}
bench eval --model toy --prompts toy:train --images-per-prompt 8 --output-dir $OUT --quiet > /dev/null
BASE=$(ls -d $OUT/base-toy-*)
DIRS=()
for r in $NAMES; do
  D=$OUT/$r
  if [ ! -f $D/eval/toy-train/summary.json ]; then
    rm -rf $D && mkdir -p $D && cp -r $RUNS/$r/{weights,config.json,run.json,env.json} $D/
    bench eval --checkpoint $D --prompts toy:train --images-per-prompt 8 --quiet > /dev/null
  fi
  DIRS+=($D)
done
{ echo "# ${NAMES// /, } against the base model on the training prompts (\`$0\`, runs from $RUNS)"; echo
  echo "toy:train, 260 prompts x 8 seeds; plain win rates with 95% bootstrap intervals over prompts:"; echo
  bench table "${DIRS[@]}" --baseline "$BASE" --prompts toy-train; echo
  python results/toy/diagnostics/perceptible_wins.py $BASE "${DIRS[@]}" --set toy-train
  echo; python results/toy/diagnostics/eval_features.py $BASE "${DIRS[@]}" --prompt-set toy-train | tail -n +4; } > $MD
cat $MD
