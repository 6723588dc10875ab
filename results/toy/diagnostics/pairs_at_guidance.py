"""Pairs of the base model's own samples at other guidance scales (same prompts, seeds, panel and schema as the
shipped pairs; every pair compares two base-model samples, as in the first toy build), for results/toy/README.md:

    python results/toy/diagnostics/pairs_at_guidance.py OUT.parquet 1,1.5,2
    bench run --method smpo --data OUT.parquet

About 3 minutes on 2 CPU cores (4160 images).
"""
import sys
import time


def main() -> None:
    from bench.toy import MODEL_DIR
    from bench.toy.preferences import PairsConfig, make_pairs

    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    choices = tuple(float(x) for x in sys.argv[2].split(","))
    t0 = time.time()
    make_pairs({"toy-base": MODEL_DIR}, PairsConfig(cfg_choices=choices, pairings=("toy-base/toy-base",))).to_parquet(sys.argv[1])
    print(f"{sys.argv[1]}: pairs at guidance {choices} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":  # make_pairs spawns worker processes
    main()
