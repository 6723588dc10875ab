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
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bench.toy import MODEL_DIR

WEIGHTS = "diffusion_pytorch_model.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    trained = load_file(str(args.run_dir / "weights" / "unet" / WEIGHTS))
    base = {k: v.float() for k, v in load_file(str(MODEL_DIR / "unet" / WEIGHTS)).items()}
    gen = torch.Generator().manual_seed(args.seed)
    out, moved = {}, 0.0
    for k in sorted(trained):
        delta = trained[k].float() - base[k]
        direction = torch.randn(delta.shape, generator=gen)
        out[k] = base[k] + direction * (delta.norm() / direction.norm().clamp_min(1e-12))
        moved += float(delta.norm() ** 2)
    if args.out_dir.exists():
        raise SystemExit(f"{args.out_dir} exists; pass a new folder")
    (args.out_dir / "weights").mkdir(parents=True)
    shutil.copytree(args.run_dir / "weights" / "unet", args.out_dir / "weights" / "unet")
    save_file(out, str(args.out_dir / "weights" / "unet" / WEIGHTS))
    for name in ("config.json", "env.json"):
        if (args.run_dir / name).is_file():
            shutil.copy2(args.run_dir / name, args.out_dir / name)
    run = json.loads((args.run_dir / "run.json").read_text())
    run.update(name=args.out_dir.name, method=f"random-like-{run['method']}", perturbation_of=str(args.run_dir),
               perturbation_seed=args.seed)
    (args.out_dir / "run.json").write_text(json.dumps(run, indent=2))
    print(f"{args.out_dir}: base + random direction, per-tensor norm of {args.run_dir.name}'s update "
          f"(total {moved ** 0.5:.4f})")


if __name__ == "__main__":
    main()
