"""SFT: supervised fine-tuning on the preferred images (the Diffusion-DPO authors' ``--sft`` baseline, Wallace et al.
2023, arXiv 2311.12908; the InPO/SmPO authors start SD1.5 from such a checkpoint, implementation_notes.md section 5).

The ordinary diffusion loss on the winners of the pairs; the losers are read but not used:

    x_t = sqrt(abar_t) x_w + sqrt(1 - abar_t) eps,   loss = mean_pairs(mean_{C,H,W} (eps_theta(x_t, t, c) - eps)^2)

One t and one eps per pair (the same streams as DPO, so SFT and DPO see the same (t, eps) for a pair's winner).
No reference model. Forward-equivalents per pair: policy fwd+bwd on 1 image = 3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Method, PairBatch, StepContext
from methods.diffusion import forward_noise, per_sample_error


class SFT(Method):
    """SFT: the plain diffusion loss on the preferred image of each pair (a baseline and a warm start)."""

    data = "pairs"
    uses_reference = False
    flip = "independent"
    paper = "Wallace et al. 2023, Diffusion Model Alignment Using Direct Preference Optimization (the SFT baseline), " \
            "arXiv 2311.12908"

    @dataclass
    class Config:
        pass

    def loss(self, batch: PairBatch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = ctx.timesteps(batch.slots)
        eps = ctx.noise(batch.slots, tuple(batch.x0_w.shape[1:]))
        x_t, target = forward_noise(batch.x0_w, t, eps, ctx.alphas_cumprod)
        err = per_sample_error(ctx.policy(x_t, t, batch.cond), target)
        return err.mean(), {"err_w": err.detach()}
