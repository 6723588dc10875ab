"""Polyak averaging of a fine-tune's last checkpoints, for results/toy/README.md (issue 14, step 7g): is the cost of a
fine-tune in image quality the noise of its last iterate? Writes a copy of RUN whose ``weights/unet`` holds the mean
of the UNet weights of its last K checkpoints (the run must have been trained with ``train.checkpoint_every`` and
``train.keep_checkpoints=0``), ready for ``bench eval --checkpoint OUT``:

    bench run --method sft --name sft-ckpt train.lr=3e-4 train.checkpoint_every=20 train.keep_checkpoints=0
    python results/toy/diagnostics/average_checkpoints.py runs/sft-ckpt runs/sft-ckpt-avg5 --last 5
    bench eval --checkpoint runs/sft-ckpt-avg5 --prompts toy:test --images-per-prompt 32
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bench import checkpoint
from bench.toy.validate import WEIGHTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--last", type=int, default=5, help="how many of the last checkpoints to average")
    args = ap.parse_args()
    folders = checkpoint.complete(args.run / "checkpoints")[-args.last:]
    if len(folders) < args.last:
        raise SystemExit(f"{args.run}: {len(folders)} complete checkpoints, {args.last} asked for")
    states = [load_file(str(f / "model.safetensors")) for f in folders]
    mean = {k: torch.stack([s[k].double() for s in states]).mean(0).to(states[-1][k].dtype) for k in states[-1]}
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    for name in ("config.json", "env.json"):
        shutil.copy(args.run / name, args.out / name)
    run = json.loads((args.run / "run.json").read_text())
    (args.out / "run.json").write_text(json.dumps({**run, "name": args.out.name}, indent=2) + "\n")
    shutil.copytree(args.run / "weights", args.out / "weights")
    save_file(mean, str(args.out / "weights" / "unet" / WEIGHTS))
    print(f"{args.out}: mean of {', '.join(f.name for f in folders)}")


if __name__ == "__main__":
    main()
