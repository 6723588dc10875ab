"""Continue the toy base model's OWN training loop (bench.toy.basemodel: its rendered pictures with 20% degraded and
10% mis-captioned, its caption dropout 0.1, its offset noise unless told otherwise) from the shipped weights, for
results/toy/README.md. The text encoder stays frozen, no EMA: a fine-tune, as the trainer's.

    python results/toy/diagnostics/continue_base_training.py OUT_UNET [--lr 1e-5] [--steps 200] [--offset 0.25]
    bench run --method sft --name NAME train.lr=0 train.steps=1 model.init_unet=OUT_UNET   # evaluate it vs the base

About 1 minute on 2 CPU cores (rendering and encoding 16384 pictures included).
"""
import argparse


def main() -> None:
    import bench  # noqa: F401  (torchvision compat first)
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from bench.toy import MODEL_DIR
    from bench.toy.basemodel import BaseModelConfig, encode_all, make_scheduler, make_training_data, tokenize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--offset", type=float, default=BaseModelConfig().offset_noise)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = BaseModelConfig()
    vae = AutoencoderKL.from_pretrained(MODEL_DIR / "vae").float().eval()
    data = make_training_data(cfg)
    mean, std = encode_all(vae, data.pixels)
    scale = vae.config.scaling_factor
    unet = UNet2DConditionModel.from_pretrained(MODEL_DIR / "unet").float().train()
    text = CLIPTextModel.from_pretrained(MODEL_DIR / "text_encoder").float().eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(MODEL_DIR / "tokenizer")
    acp = make_scheduler(cfg).alphas_cumprod.float()
    unique = sorted(set(data.captions) | {""})
    with torch.no_grad():
        hidden = torch.cat([text(tokenize(tokenizer, unique[i:i + 256]))[0] for i in range(0, len(unique), 256)])
    cap_index = torch.tensor([unique.index(c) for c in data.captions])
    empty = unique.index("")
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(args.seed)
    batch = cfg.unet_batch
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 10)
        idx = torch.randint(0, len(mean), (batch,), generator=gen)
        x0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        t = torch.randint(0, len(acp), (batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        if args.offset:
            eps = eps + args.offset * torch.randn((batch, x0.shape[1], 1, 1), generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        caps = cap_index[idx].clone()
        caps[torch.rand(batch, generator=gen) < cfg.caption_dropout] = empty
        loss = F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * eps, t, hidden[caps]).sample, eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    unet.eval().save_pretrained(args.out)
    print(f"saved {args.out} (lr {args.lr}, {args.steps} steps, offset noise {args.offset})")


if __name__ == "__main__":
    main()
