"""Diffusion-DPO (Wallace et al. 2023, arXiv 2311.12908).

Equations (DESIGN.md section 5.1). For a pair (x_w, x_l, c), ONE t ~ U{0..T-1} and ONE eps shared by winner and loser:

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,            target eps
    e(x) = mean_{C,H,W} (eps_theta(x_t, t, c) - eps)^2        (float32)
    d_theta = e_theta(w) - e_theta(l);   d_ref = e_ref(w) - e_ref(l)   (frozen reference, no grad)
    z = -0.5 * beta * (d_theta - d_ref);  loss = mean_pairs(-logsigmoid(z));  implicit accuracy = mean(z > 0)

At step 0 with policy == reference, z = 0 and the loss is log 2.

Authors' settings (SalesforceAIResearch/DiffusionDPO launchers): beta 5000 (2000 for SD1.5 in the InPO/SmPO
papers), 2048 pairs per step (16 GPUs x 1 x 128 accumulation), lr 2.048e-5 (1e-8 x batch), constant with warmup
500 (SD1.5) / 200 (SDXL), 2000 steps, AdamW for SD1.5, Adafactor + gradient checkpointing for SDXL, 20% caption
dropout, ties dropped, random horizontal flip of winner and loser independently. Forward-equivalents per pair:
policy fwd+bwd on 2 images (6) + reference fwd on 2 images (2) = 8.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Method, PairBatch, StepContext, check_domain
from methods.diffusion import noise_pair, per_sample_error
from methods.losses import dpo_margin, sigmoid_loss


class DPO(Method):
    """Diffusion-DPO: sigmoid preference loss on denoising errors against a reference."""

    data = "pairs"
    uses_reference = True
    flip = "independent"
    paper = "Wallace et al. 2023, Diffusion Model Alignment Using Direct Preference Optimization, arXiv 2311.12908"

    @dataclass
    class Config:
        beta: float = 5000.0

        def __post_init__(self):
            check_domain(self, positive=("beta",))

    def loss(self, batch: PairBatch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = len(batch)
        t = ctx.timesteps(batch.slots)
        t2, cond2 = torch.cat([t, t]), batch.cond.repeat(2)
        x_t, target = noise_pair(batch, t, ctx)

        err = per_sample_error(ctx.policy(x_t, t2, cond2), target)
        ref_err = per_sample_error(ctx.reference(x_t, t2, cond2), target)
        err_w, err_l, ref_w, ref_l = err[:n], err[n:], ref_err[:n], ref_err[n:]

        z = ctx.balance(dpo_margin(err_w, err_l, ref_w, ref_l, self.config.beta), t)
        loss = sigmoid_loss(z)
        metrics = {"acc": (z > 0).float(), "err_w": err_w, "err_l": err_l, "ref_err_w": ref_w, "ref_err_l": ref_l,
                   "margin": z}
        return loss, {k: v.detach() for k, v in metrics.items()}
