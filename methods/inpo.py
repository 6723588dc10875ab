"""DDIM-InPO (Lu et al., CVPR 2025, arXiv 2503.18454).

InPO: Inversion Preference Optimization with Reparametrized DDIM for Efficient Diffusion Model Alignment.

Equations (DESIGN.md section 5.4; JaydenLyh/InPO train.py). The loss is Diffusion-DPO's; only x_t and its target
change. One t per pair (shared by winner and loser); with no grad, the CURRENT policy (train mode, no guidance, the
same possibly-dropped caption) inverts each x_0 along the 10-step DDIM-inverse grid {-99, 1, 101, ..., 801}:

    for every grid tau < t:  eps = policy(z, tau, c);  z = DDIM-inverse step tau -> tau + 100
                             z += eta * N(0, I) * sqrt((1 - a_tau) / (1 - a_next) * (1 - a_next / a_tau))
    x_t = z;   target = (z - sqrt(abar_t) x_0) / sqrt(1 - abar_t)       (re-derived at the SAMPLED t)
    e(x) = mean_{C,H,W} (eps_pred(x_t, t) - target)^2;   z_dpo = -0.5 beta ((e_w - e_l) - (e_ref_w - e_ref_l))
    loss = mean(-logsigmoid(z_dpo)),   implicit accuracy = mean(z_dpo > 0)

with a_tau = abar_tau, a_next = abar_{tau+100}, eta = 0.1, abar at a negative time = abar_0. The eta noise is drawn
per image (winner and loser separately). Fixed here (authors' bugs): the cut-off and abar_t are per pair, not read
from batch element 0; abar in float32.

Authors' settings: 1024 pairs per step (8 GPUs x 1 x 128), lr 1.024e-5, 400 steps, warmup 200, beta 2000 for SD1.5
(from an SFT checkpoint) and 5000 for SDXL, 20% caption dropout, independent flips, fp16.
Forward-equivalents per pair: DPO's 8 + 2 x 6.38 mean inversion forwards (t uniform) = 20.8.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Method, PairBatch, StepContext, check_domain
from methods.diffusion import per_sample_error
from methods.inversion import check_end, invert_pairs
from methods.losses import dpo_margin, sigmoid_loss


class InPO(Method):
    """DDIM-InPO: Diffusion-DPO on x_t obtained by DDIM inversion (eta noise) of the data by the current policy."""

    data = "pairs"
    uses_reference = True
    flip = "independent"
    paper = "Lu et al. 2025, InPO: Inversion Preference Optimization with Reparametrized DDIM for Efficient " \
            "Diffusion Model Alignment, CVPR 2025, arXiv 2503.18454"

    @dataclass
    class Config:
        #: the SDXL value; the SD1.5 preset sets 2000
        beta: float = 5000.0
        inversion_steps: int = 10
        eta: float = 0.1
        #: "grid" (the authors: the last inversion step goes past t to the next grid point) | "t" (it lands on t)
        inversion_end: str = "grid"

        def __post_init__(self):
            check_domain(self, positive=("beta",), non_negative=("eta",))

    def __init__(self, config: "InPO.Config | None" = None):
        super().__init__(config)
        check_end(self.config.inversion_end)

    def loss(self, batch: PairBatch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c, n = self.config, len(batch)
        t = ctx.timesteps(batch.slots)
        x_t, target = invert_pairs(batch, t, ctx, c.inversion_steps, "ddim", c.eta, c.inversion_end)
        t2, cond2 = torch.cat([t, t]), batch.cond.repeat(2)

        err = per_sample_error(ctx.policy(x_t, t2, cond2), target)
        ref_err = per_sample_error(ctx.reference(x_t, t2, cond2), target)
        err_w, err_l, ref_w, ref_l = err[:n], err[n:], ref_err[:n], ref_err[n:]

        z = ctx.balance(dpo_margin(err_w, err_l, ref_w, ref_l, c.beta), t)
        loss = sigmoid_loss(z)
        metrics = {"acc": (z > 0).float(), "err_w": err_w, "err_l": err_l, "ref_err_w": ref_w, "ref_err_l": ref_l,
                   "margin": z}
        return loss, {k: v.detach() for k, v in metrics.items()}
