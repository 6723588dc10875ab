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
