"""Control for results/toy/README.md: is the toy base model a local optimum of the panel score for UNDIRECTED changes?

Takes a trained toy run, measures how far training moved each UNet tensor (||w_run - w_base||), and writes a copy of
the run whose UNet is the base plus a random direction of the same norm per tensor (seeded). Evaluate and tabulate it
against the base model with the harness as any run:

    python results/toy/diagnostics/random_perturbation.py RUN_DIR OUT_DIR [--seed 0]
    bench eval --checkpoint OUT_DIR --prompts toy --images-per-prompt 4 --steps 20 --cfg 4 --resolution 32 \
        --batch-size 128 --quiet
    bench table OUT_DIR --baseline runs/base-toy-<key>

If a random change of the size SmPO makes costs about as much as SmPO's change, SmPO's update carries little
preference signal at that size (the toy score falls under any undirected perturbation).
"""
import argparse
from pathlib import Path

from bench.toy import MODEL_DIR
from bench.toy.validate import random_like


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out_dir.exists():
        raise SystemExit(f"{args.out_dir} exists; pass a new folder")
    moved = random_like(args.run_dir, args.out_dir, MODEL_DIR / "unet", args.seed)
    print(f"{args.out_dir}: base + random direction, per-tensor norm of {args.run_dir.name}'s update "
          f"(total {moved:.4f})")


if __name__ == "__main__":
    main()
