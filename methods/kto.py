"""Diffusion-KTO (Li et al. 2024, Aligning Diffusion Models by Optimizing Human Utility, arXiv 2404.04465).

Equations (DESIGN.md section 5.2). Unpaired images, each with y = +1 (desirable) or -1 (undesirable); t and eps drawn
INDEPENDENTLY per image:

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   e(x) = mean_{C,H,W} (eps_pred - eps)^2   (float32)
    g = e_ref - e_theta                                     (implicit reward; frozen reference, no grad)
    KL = clamp(mean of g over the GLOBAL batch, min 0)      (detached, all-reduced across processes)
    loss = mean_images lambda_y * (1 - sigmoid(y * beta * (g - KL))),   lambda_D = lambda_U = 1

Implicit accuracy: mean(y * (g - KL) > 0). The timestep add-on hook ``ctx.balance`` sees beta * (g - KL) per image.

Authors' settings (jacklishufan/diffusion-kto, train_kto_sd_v1.5.py + exps/example.sh): beta 1000, lr 1e-7, 8 images
per step (4 GPUs x 2), 20k steps, 8-bit AdamW (wd 1e-2, clip 1.0), warmup 200, 20% caption dropout, flip per image,
``--halo sigmoid``, ``--bce_offset none``; ~80% desirable samples (weighted sampler with replacement; images that won
some and lost other comparisons count as desirable). Not copied: the authors swap the reference weights into the
policy module every step; here the reference is a separate frozen module (or LoRA adapters disabled).
Forward-equivalents per image: policy fwd+bwd (3) + reference fwd (1) = 4, i.e. 8 per pair's worth of two images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import ImageBatch, Method, StepContext, check_domain
from methods.diffusion import forward_noise, per_sample_error
from methods.losses import kto_margin, kto_utility_loss


class KTO(Method):
    """Diffusion-KTO: bounded utility of unpaired desirable/undesirable images against a reference."""

    data = "images"
    uses_reference = True
    flip = "independent"
    paper = "Li et al. 2024, Aligning Diffusion Models by Optimizing Human Utility, arXiv 2404.04465"

    @dataclass
    class Config:
        beta: float = 1000.0
        lambda_desirable: float = 1.0
        lambda_undesirable: float = 1.0
        #: share of desirable images the data sampler draws (the authors' weighted sampler: 0.8)
        desirable_fraction: float = 0.8

        def __post_init__(self):
            check_domain(self, positive=("beta",), non_negative=("lambda_desirable", "lambda_undesirable"))
            if not 0 < self.desirable_fraction < 1:
                raise ValueError(f"method.desirable_fraction must be in (0, 1), got {self.desirable_fraction}")

    def loss(self, batch: ImageBatch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        t = ctx.timesteps(batch.slots)
        eps = ctx.noise(batch.slots, tuple(batch.x0.shape[1:]))
        x_t, target = forward_noise(batch.x0, t, eps, ctx.alphas_cumprod)

        err = per_sample_error(ctx.policy(x_t, t, batch.cond), target)
        ref_err = per_sample_error(ctx.reference(x_t, t, batch.cond), target)
        g_mean = ctx.all_reduce_mean((ref_err - err).mean().detach())

        margin = ctx.balance(kto_margin(err, ref_err, g_mean, c.beta), t)
        y = batch.y.to(margin.dtype)
        loss = kto_utility_loss(margin, y, c.lambda_desirable, c.lambda_undesirable)
        metrics = {"acc": (y * margin > 0).float(), "err": err, "ref_err": ref_err,
                   "kl": g_mean.clamp(min=0).reshape(1), "desirable": (y > 0).float()}
        return loss, {k: v.detach() for k, v in metrics.items()}
