#!/usr/bin/env bash
# Issue 14 step 7d (results/toy/README.md): where SFT's paired win rate goes. The validation's selected SFT and DPO
# runs (bench sweep --grid wide --val-images-per-prompt 16, in runs/sweep-wide) and the base model, evaluated on
# toy:test (8 seeds) at guidance 1, 2 and 4 (the protocol's), one change: the guidance. Per guidance: the change of the
# panel's utility (perceptible_wins.py) and of each toy feature and object colour (eval_features.py).
# Writes results/toy/diagnostics/guidance_drift.md. About 3 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/sweep-wide}
OUT=runs/diag14/cfg
MD=results/toy/diagnostics/guidance_drift.md
echo "# SFT and DPO against the base model by evaluation guidance (\`$0\`)" > $MD
for c in 1 2 4; do
  bench eval --model toy --prompts toy:test --images-per-prompt 8 --cfg $c --output-dir $OUT/b$c --quiet > /dev/null
  BASE=$(ls -d $OUT/b$c/base-toy-*)
  for r in sft-lr30x dpo-lr3x; do  # a copy of the run per guidance, so that the run's own evaluation stays as it is
    D=$OUT/cfg$c/$r
    if [ ! -f $D/eval/toy-test/summary.json ]; then
      rm -rf $D && mkdir -p $D && cp -r $RUNS/$r/{weights,config.json,run.json,env.json} $D/
      bench eval --checkpoint $D --prompts toy:test --images-per-prompt 8 --cfg $c --quiet > /dev/null
    fi
  done
  { echo; echo "## Guidance $c"; echo
    python results/toy/diagnostics/perceptible_wins.py $BASE $OUT/cfg$c/sft-lr30x $OUT/cfg$c/dpo-lr3x --set toy-test
    echo; python results/toy/diagnostics/eval_features.py $BASE $OUT/cfg$c/sft-lr30x $OUT/cfg$c/dpo-lr3x \
      --prompt-set toy-test | tail -n +4; } >> $MD
done
cat $MD
