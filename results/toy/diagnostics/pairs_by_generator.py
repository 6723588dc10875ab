"""Subsets of the shipped toy pairs by the generators that made them, for the controlled experiment of
results/toy/README.md (one change: where the pair images come from; same pair count, prompts, panel and schema):

    python results/toy/diagnostics/pairs_by_generator.py OUT_DIR [--n N] [--seed 0]
    bench run --method sft --data OUT_DIR/base-only.parquet --name sft-base-only
    bench run --method sft --data OUT_DIR/zoo.parquet --name sft-zoo

writes, each with the same number of pairs (default: as many as the smallest non-empty subset has), ``zoo.parquet``
(drawn from all pairings) and, per generator G of the pairs (``toy-base`` shortened to ``base`` and so on),
``G-only.parquet`` (both images from G; ``base-only``: two base-model samples, as in the first toy build) and
``no-G.parquet`` (no image from G). (The table of results/toy/README.md's step 5 used the first zoo's pairs,
toy-base, toy-large and toy-small, and a first version of this script that drew the zoo, no-small and no-base
subsets from one generator in turn; the base-only and large-only subsets were all 390 such pairs.)
"""
import argparse
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from bench.toy import PAIRS_FILE
from bench.toy.preferences import generator_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--n", type=int, default=None, help="pairs per subset (default: all base-only pairs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    df = pd.read_parquet(PAIRS_FILE)
    g0, g1 = df["model_0"].map(generator_of), df["model_1"].map(generator_of)
    gens = sorted(set(g0) | set(g1))
    allowed = {"zoo": set(gens)}
    for g in gens:
        short = g.removeprefix("toy-")
        allowed[f"{short}-only"] = {g}
        allowed[f"no-{short}"] = set(gens) - {g}
    subsets = {k: df[g0.isin(v) & g1.isin(v)] for k, v in allowed.items()}
    subsets = {k: v for k, v in subsets.items() if len(v)}
    n = args.n or min(len(v) for v in subsets.values())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, sub in subsets.items():
        if len(sub) < n:
            raise SystemExit(f"{name}: only {len(sub)} pairs, fewer than --n {n}")
        rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])  # each subset its own draw
        pick = np.sort(rng.choice(len(sub), n, replace=False))
        sub.iloc[pick].to_parquet(args.out_dir / f"{name}.parquet", index=False)
        print(f"{args.out_dir / name}.parquet: {n} of {len(sub)} pairs")


if __name__ == "__main__":
    main()
