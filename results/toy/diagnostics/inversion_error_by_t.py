"""Diagnostic behind results/toy/README.md, on the first 64 winners of the toy pairs (policy = the base model):

1. by t, the toy model's error on the inverted target for 5- and 10-step ReNoise inversion (methods/inversion.py, the
   authors' grids), with the authors' end of the inversion (``end="grid"``: x_t at the grid point above t) and with
   ``end="t"`` (x_t at t), against forward noising;
2. how Gaussian the inverted latents are: per-sample std, mean |channel mean| and lag-1 horizontal autocorrelation of
   the spatially centred latent, for DDIM and ReNoise inversion (``end="t"``) and for forward noising;
3. the same statistics at t = 999 for fresh samples of the 64 captions (DDIM 20 steps, latents taken before the VAE),
   unguided (cfg 1) and at the evaluation's guidance (cfg 4), against the Gaussian noise they started from.

Run from the repository root:

    python results/toy/diagnostics/inversion_error_by_t.py
"""
import io

import numpy as np
import pandas as pd
import torch
from PIL import Image

import bench  # noqa: F401  (torchvision compat before transformers)
from bench.evaluate import load_pipeline
from bench.models import encode_text, load_components, make_cond
from bench.toy import PAIRS_FILE
from methods.diffusion import forward_noise
from methods.inversion import invert

TIMESTEPS = (10, 100, 190, 210, 300, 500, 700, 900)
STAT_TIMESTEPS = (300, 600, 999)


def stats(z: torch.Tensor) -> str:
    r = z - z.mean(dim=(2, 3), keepdim=True)
    ac = (r[..., 1:] * r[..., :-1]).mean() / r.pow(2).mean()
    return f"{z.std():.2f} / {z.mean(dim=(2, 3)).abs().mean():.2f} / {ac:.2f}"


def main() -> None:
    torch.set_num_threads(1)
    comps = load_components("toy")
    df = pd.read_parquet(PAIRS_FILE).iloc[:64]
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).copy())
                          .permute(2, 0, 1).float() / 127.5 - 1 for b in df.jpg_0])
    with torch.no_grad():
        x0 = comps.vae.encode(pixels).latent_dist.mean * comps.vae_scale
        cond = make_cond(comps, *encode_text(comps, list(df.caption)))
    acp = comps.scheduler.alphas_cumprod.float()

    def unet(x, t, c):
        return comps.unet(x, t, **c.unet_kwargs()).sample

    gen = torch.Generator().manual_seed(0)
    print("| t | target RMS (5-step ReNoise) | error, 5-step ReNoise | 5-step, end=t | error, 10-step ReNoise "
          "| 10-step, end=t | error, forward noise |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for value in TIMESTEPS:
        t = torch.full((len(x0),), value)
        with torch.no_grad():
            row = []
            for steps in (5, 10):
                for end in ("grid", "t"):
                    z, target = invert(x0, t, cond, unet, acp, steps, mode="renoise", end=end)
                    row.append((target.pow(2).mean().sqrt().item(), (unet(z, t, cond) - target).pow(2).mean().item()))
            x_t, target = forward_noise(x0, t, torch.randn(x0.shape, generator=gen), acp)
            forward = (unet(x_t, t, cond) - target).pow(2).mean().item()
        print(f"| {value} | {row[0][0]:.2f} | {row[0][1]:.3f} | {row[1][1]:.3f} | {row[2][1]:.3f} | {row[3][1]:.3f} "
              f"| {forward:.3f} |", flush=True)

    print()
    print("| t | grid | DDIM inversion: std / abs channel mean / autocorrelation | ReNoise inversion | forward noise |")
    print("|---:|---:|---|---|---|")
    for value in STAT_TIMESTEPS:
        t = torch.full((len(x0),), value)
        for steps in (5, 10, 50):
            with torch.no_grad():
                z_ddim, _ = invert(x0, t, cond, unet, acp, steps, mode="ddim", end="t")
                z_re, _ = invert(x0, t, cond, unet, acp, steps, mode="renoise", end="t")
                x_t, _ = forward_noise(x0, t, torch.randn(x0.shape, generator=gen), acp)
            print(f"| {value} | {steps} | {stats(z_ddim)} | {stats(z_re)} | {stats(x_t)} |", flush=True)

    print()
    print("| fresh samples | grid | DDIM inversion to t = 999: std / abs channel mean / autocorrelation |")
    print("|---|---:|---|")
    pipe = load_pipeline("toy", device="cpu", dtype=torch.float32)
    seeds = range(len(x0))
    noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds])
    print(f"| N(0, I), for reference | - | {stats(noise)} |")
    t = torch.full((len(x0),), 999)
    for scale in (1.0, 4.0):
        with torch.no_grad():
            lat = pipe(list(df.caption), num_inference_steps=20, guidance_scale=scale, height=32, width=32,
                       generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="latent").images
            for steps in (20, 50):
                z, _ = invert(lat, t, cond, unet, acp, steps, mode="ddim", end="t")
                print(f"| cfg {scale:g} | {steps} | {stats(z)} |", flush=True)


if __name__ == "__main__":
    main()
