"""Preference pairs at other guidance scales, one change against the shipped pairs (same prompts, seeds, panel and
schema), for results/toy/README.md:

    python results/toy/diagnostics/pairs_at_guidance.py OUT.parquet 1,1.5,2 [--zoo DIR]
    bench run --method sft --data OUT.parquet

Without ``--zoo``: every pair compares two base-model samples, as in the first toy build (about 3 minutes on 2 CPU
cores, 4160 images). With ``--zoo DIR`` (the generators kept by ``python -m bench.toy.build --keep-zoo DIR``): the
shipped build's pairings of the base model, toy-mid and toy-large, so that only the guidance scales differ from the
shipped pairs (about 6 minutes, 4680 images).
"""
import argparse
import time
from pathlib import Path


def main() -> None:
    from bench.toy import MODEL_DIR
    from bench.toy.build import BASE_GENERATOR
    from bench.toy.preferences import PairsConfig, make_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("scales", help="guidance scales drawn per half-chunk, comma-separated (shipped: 2,3,4,5,6)")
    ap.add_argument("--zoo", type=Path, help="folder with the build's other generators (toy-mid, toy-large)")
    args = ap.parse_args()
    choices = tuple(float(x) for x in args.scales.split(","))
    dirs = {BASE_GENERATOR: MODEL_DIR}
    cfg = PairsConfig(cfg_choices=choices, pairings=(f"{BASE_GENERATOR}/{BASE_GENERATOR}",))
    if args.zoo is not None:
        dirs.update({d.name: d for d in sorted(args.zoo.iterdir()) if (d / "model_index.json").is_file()})
        cfg = PairsConfig(cfg_choices=choices)
    t0 = time.time()
    make_pairs(dirs, cfg).to_parquet(args.out)
    print(f"{args.out}: pairs from {sorted(dirs)} at guidance {choices} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":  # make_pairs spawns worker processes
    main()
