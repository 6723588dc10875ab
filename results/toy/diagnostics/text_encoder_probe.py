"""Does a toy model's text encoder tell the position words apart, and does its UNet use them? For results/toy/README.md:

    python results/toy/diagnostics/text_encoder_probe.py [MODEL_DIR]     (default: the shipped model; seconds)

Prints (1) the distance between the text encoder's outputs (all 77 token states) for a prompt and the same prompt
with one attribute word changed, per attribute; (2) the vertical centre of mass of the foreground in the model's
x0-prediction from pure noise at t = 999 and 700 (16 noise draws), for "at the top" / "in the middle" / "at the
bottom": a model that follows position moves it (top < middle < bottom, in pixels of 32).
"""
import sys
from pathlib import Path

import torch

BASE = "a large red square at the top on a white background"
VARIANTS = {"position": BASE.replace("at the top", "at the bottom"), "colour": BASE.replace("red", "blue"),
            "shape": BASE.replace("square", "circle"), "size": BASE.replace("large", "small"),
            "background": BASE.replace("white", "black")}


def main() -> None:
    import bench  # noqa: F401  (torchvision compat before transformers)
    from bench.toy import MODEL_DIR
    from bench.toy.basemodel import load_pipeline, tokenize

    pipe = load_pipeline(Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL_DIR)
    unet, text, tok, vae = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae
    acp = pipe.scheduler.alphas_cumprod
    with torch.no_grad():
        e0 = text(tokenize(tok, [BASE]))[0]
        dist = {k: float((text(tokenize(tok, [v]))[0] - e0).norm()) for k, v in VARIANTS.items()}
        print("text-encoder output distance to the prompt with one word changed: "
              + ", ".join(f"{k} {v:.2f}" for k, v in dist.items()))
        white = torch.tensor([0.92, 0.92, 0.92]).view(1, 3, 1, 1)
        rows = torch.arange(32).float()
        for t in (999, 700):
            a = acp[t]
            gen = torch.Generator().manual_seed(0)
            eps = torch.randn((16, 4, 16, 16), generator=gen) + 0.25 * torch.randn((16, 4, 1, 1), generator=gen)
            xt = (1 - a).sqrt() * eps
            centres = {}
            for phrase in ("at the top", "in the middle", "at the bottom"):
                hidden = text(tokenize(tok, [BASE.replace("at the top", phrase)]))[0].expand(16, -1, -1)
                x0 = (xt - (1 - a).sqrt() * unet(xt, t, hidden).sample) / a.sqrt()
                img = vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1)
                fg = (img - white).abs().sum(1).mean(0)  # foreground weight per pixel, averaged over the draws
                centres[phrase] = float((fg.sum(1) / fg.sum() * rows).sum())
            print(f"t={t}: vertical centre of the predicted foreground: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in centres.items()))


if __name__ == "__main__":
    main()
