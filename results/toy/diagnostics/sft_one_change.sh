#!/usr/bin/env bash
# Issue 14 step 7 (results/toy/README.md): SFT at its selected configuration (lr 1e-5, 200 steps), one change at a
# time (the generator its 390 pairs come from; lr 4e-5 on toy-large's pairs; 800 steps), evaluated on toy:val.
# Writes results/toy/diagnostics/sft_one_change.md. About 12 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=runs/diag14
[ -d $OUT/subsets ] || python results/toy/diagnostics/pairs_by_generator.py $OUT/subsets
for sub in zoo large-only mid-only; do
  [ -f $OUT/sft-$sub/table.md ] || bench run --method sft --data $OUT/subsets/$sub.parquet --name sft-$sub --output-dir $OUT --quiet eval.prompts=toy:val train.lr=1e-5 
done
[ -f $OUT/sft-large-only-4x/table.md ] || bench run --method sft --data $OUT/subsets/large-only.parquet --name sft-large-only-4x --output-dir $OUT --quiet eval.prompts=toy:val train.lr=4e-5 
[ -f $OUT/sft-full-800/table.md ] || bench run --method sft --name sft-full-800 --output-dir $OUT --quiet eval.prompts=toy:val train.lr=1e-5 steps=800 
[ -f $OUT/sft-full/table.md ] || bench run --method sft --name sft-full --output-dir $OUT --quiet eval.prompts=toy:val train.lr=1e-5 
BASE=$(ls -d $OUT/base-toy-* | head -1)
python results/toy/diagnostics/perceptible_wins.py $BASE $OUT/sft-full $OUT/sft-full-800 $OUT/sft-zoo $OUT/sft-large-only $OUT/sft-large-only-4x $OUT/sft-mid-only --set toy-val > results/toy/diagnostics/sft_one_change.md
for r in sft-full sft-full-800 sft-zoo sft-large-only sft-large-only-4x sft-mid-only; do echo "== $r"; cat $OUT/$r/table.md | tail -4; done >> results/toy/diagnostics/sft_one_change.md

# Step 7b: SFT's learning rate beyond the sweep's grid (0.25x-4x of the preset 1e-5, which was copied from DPO's),
# on toy:val, then (a diagnostic, not a selection) on toy:test with 8 seeds against the sweep's base evaluation; and
# the selected SFT run on 64 TRAINING prompts (is its loss a generalisation gap?), with caption dropout off as well.
for lr in 1e-4 3e-4; do
  [ -f $OUT/sft-lr$lr/table.md ] || bench run --method sft --name sft-lr$lr --output-dir $OUT --quiet train.lr=$lr eval.prompts=toy:val
  [ -f $OUT/sft-lr$lr/eval/toy-test/summary.json ] || bench eval --checkpoint $OUT/sft-lr$lr --prompts toy:test --images-per-prompt 8 --quiet
done
[ -f runs/sweep/sft-lr1x/eval/toy-train-n64/summary.json ] || bench eval --checkpoint runs/sweep/sft-lr1x --prompts toy:train --limit 64 --quiet
[ -f runs/sweep/dpo-lr2x/eval/toy-train-n64/summary.json ] || bench eval --checkpoint runs/sweep/dpo-lr2x --prompts toy:train --limit 64 --quiet
bench eval --model toy --prompts toy:train --limit 64 --output-dir runs/sweep --quiet
[ -f runs/sweep/sft-lr1x-nodrop/table.md ] || bench run --method sft --name sft-lr1x-nodrop --output-dir runs/sweep --quiet data.caption_dropout=0 train.lr=1e-5 eval.prompts=toy:train eval.limit=64
{
  echo; echo "## Step 7b: SFT's lr beyond the grid (toy:val, then toy:test x 8 seeds)"
  python results/toy/diagnostics/perceptible_wins.py $BASE $OUT/sft-full $OUT/sft-lr1e-4 $OUT/sft-lr3e-4 --set toy-val
  TESTBASE=$(ls -d runs/sweep/base-toy-* | while read d; do [ -f $d/eval/toy-test/summary.json ] && echo $d; done | head -1)
  python results/toy/diagnostics/perceptible_wins.py $TESTBASE runs/sweep/sft-lr1x $OUT/sft-lr1e-4 $OUT/sft-lr3e-4 --set toy-test
  bench table $OUT/sft-lr1e-4 $OUT/sft-lr3e-4 --baseline $TESTBASE --prompts toy-test
  echo; echo "## Step 7b: on 64 training prompts"
  TRAINBASE=$(ls -d runs/sweep/base-toy-* | while read d; do [ -f $d/eval/toy-train-n64/summary.json ] && echo $d; done | head -1)
  python results/toy/diagnostics/perceptible_wins.py $TRAINBASE runs/sweep/sft-lr1x runs/sweep/sft-lr1x-nodrop runs/sweep/dpo-lr2x --set toy-train-n64
} >> results/toy/diagnostics/sft_one_change.md
