"""MaPO (Hong et al. 2024, Margin-aware Preference Optimization, arXiv 2406.06424): reference-free.

Equations (DESIGN.md section 5.3; mapo-t2i/mapo train.py). ONE t and ONE eps shared by winner and loser, one policy
forward (with grad) on [winners; losers], no reference model:

    e(x) = mean_{C,H,W} (eps_pred - eps)^2                  (float32)
    f(e) = s e / expm1(s e),  s = 0.5 (the constant ``--snr_value``, not a real SNR)
    log_odds = f(e_w) - f(e_l)                              (> 0 when the winner's error is lower)
    loss = mean(e_w) - beta * mean(logsigmoid(T * log_odds)),   T = 1000 (num_train_timesteps), beta 0.1

Sign conventions checked against the authors' code: f decreases in e, so log_odds > 0 means the winner is denoised
better; their ``ratio_losses = beta * logsigmoid(T * log_odds)`` is SUBTRACTED from the winners' MSE. Implicit accuracy:
mean(log_odds > 0).

Authors' settings (SDXL): lr 1e-5 constant, no warmup, 2000 steps, batch 8 x accumulation 2 per GPU, 8-bit Adam,
clip 1.0, fp16, seed 0, NO caption dropout, the flip applied jointly to the pair, ties removed.
Forward-equivalents per pair: policy fwd+bwd on 2 images = 6.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Method, PairBatch, StepContext, check_domain
from methods.diffusion import noise_pair, per_sample_error
from methods.losses import mapo_log_odds, mapo_loss


class MaPO(Method):
    """MaPO: reference-free margin between winner and loser likelihood scores plus the winners' diffusion loss."""

    data = "pairs"
    uses_reference = False
    flip = "joint"
    paper = "Hong et al. 2024, Margin-aware Preference Optimization for Aligning Diffusion Models without Reference, " \
            "arXiv 2406.06424"

    @dataclass
    class Config:
        beta: float = 0.1
        #: s in f(e) = s e / expm1(s e) (the authors' constant --snr_value)
        snr_value: float = 0.5

        def __post_init__(self):
            check_domain(self, positive=("snr_value",), non_negative=("beta",))

    def loss(self, batch: PairBatch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c, n = self.config, len(batch)
        t = ctx.timesteps(batch.slots)
        t2, cond2 = torch.cat([t, t]), batch.cond.repeat(2)
        x_t, target = noise_pair(batch, t, ctx)

        err = per_sample_error(ctx.policy(x_t, t2, cond2), target)
        err_w, err_l = err[:n], err[n:]
        log_odds = mapo_log_odds(err_w, err_l, c.snr_value)
        loss = mapo_loss(err_w, err_l, c.beta, float(ctx.num_train_timesteps), c.snr_value)
        metrics = {"acc": (log_odds > 0).float(), "err_w": err_w, "err_l": err_l, "log_odds": log_odds}
        return loss, {k: v.detach() for k, v in metrics.items()}
