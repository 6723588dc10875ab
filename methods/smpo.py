"""SmPO-Diffusion (Lu et al., ICML 2025, Smoothed Preference Optimization via ReNoise Inversion, arXiv 2506.02698).

Equations (DESIGN.md section 5.5; JaydenLyh/SmPO train.py). One t per pair (shared by winner and loser); with no grad,
the CURRENT policy inverts each x_0 with one ReNoise correction per step of the DDIM-inverse grid (5 steps:
{-199, 1, 201, 401, 601}; no guidance, no added noise):

    for every grid tau < t:  eps1 = policy(z, tau); z' = step(z, eps1); eps2 = policy(z', tau)   (same tau label)
                             z = step(z, (eps1 + eps2) / 2)                                    (from the OLD z)
    x_t = z;   target = (z - sqrt(abar_t) x_0) / sqrt(1 - abar_t)      (re-derived at the SAMPLED t)
    d = (e_w - e_l) - (e_ref_w - e_ref_l);   z_smpo = -0.5 * beta * (2p - 1) * gamma * d
    loss = mean(-logsigmoid(z_smpo));   implicit accuracy = mean(z_smpo > 0)

p = ``batch.label``: the smoothed probability, from reward-model scores computed once before training
(``methods.labels``), that the first image of the pair is preferred (below 0.5 where the reward model disagrees
with the human order; the margin is symmetric, so this equals the authors' reordering by the reward model).
The paper writes the factor as (2 alpha - gamma) with alpha / gamma = p.

The SmPO ablation as configs of this one method (``ABLATION``; beta as in the main run):

    DPO                       inversion="none",    smooth_labels=False, gamma=1   (exactly Diffusion-DPO's loss)
    DPO + DDIM inversion      inversion="ddim",    smooth_labels=False, gamma=1
    + ReNoise                 inversion="renoise", smooth_labels=False, gamma=1
    + smoothed preferences    inversion="renoise", smooth_labels=True,  gamma=10  (= SmPO, the defaults)

smooth_labels=False uses p = 1 (the human winner), so the factor is gamma: keep gamma=1 for the DPO rows (gamma=10
with binary labels is DPO with a 10x beta). inversion="none" draws t and eps exactly as DPO does. The data must
still carry reward labels (the class declares ``labels = "reward"``) even where smooth_labels=False.

Authors' settings: 1024 pairs per step, 200 steps, warmup 100, lr 1.024e-5, beta 2000 (SD1.5, from an SFT
checkpoint) / 5000 (SDXL), gamma 10; grid 5 steps for SD1.5, 10 for SDXL (presets); PickScore bounds
lo 0.11543526500463486, hi 0.28201571106910706. Fixed here: cut-off, abar_t and p per pair (not batch element 0).
Forward-equivalents per pair: DPO's 8 + 2 images x 3.79 ReNoise steps x 2 = 23.2 (5-step grid), 33.5 (10-step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Method, PairBatch, StepContext, check_domain
from methods.diffusion import noise_pair, per_sample_error
from methods.inversion import check_end, invert_pairs
from methods.losses import sigmoid_loss, smpo_margin

INVERSIONS = ("none", "ddim", "renoise")

#: the paper's ablation rows as config overrides of ``smpo``
ABLATION: dict[str, dict[str, object]] = {
    "dpo": {"inversion": "none", "smooth_labels": False, "gamma": 1.0},
    "dpo+ddim": {"inversion": "ddim", "smooth_labels": False, "gamma": 1.0},
    "dpo+ddim+renoise": {"inversion": "renoise", "smooth_labels": False, "gamma": 1.0},
    "smpo": {"inversion": "renoise", "smooth_labels": True, "gamma": 10.0},
}


class SmPO(Method):
    """SmPO-Diffusion: DPO with reward-smoothed preference labels on ReNoise-inverted x_t."""

    data = "pairs"
    uses_reference = True
    flip = "independent"
    labels = "reward"
    paper = "Lu et al. 2025, Smoothed Preference Optimization via ReNoise Inversion for Aligning Diffusion Models " \
            "with Varied Human Preferences, ICML 2025, arXiv 2506.02698"

    @dataclass
    class Config:
        #: the SD1.5 value; the SDXL preset sets 5000
        beta: float = 2000.0
        gamma: float = 10.0
        #: "none" (forward noising as DPO) | "ddim" | "renoise"
        inversion: str = "renoise"
        #: 5 for SD1.5, 10 for SDXL (authors' code)
        inversion_steps: int = 5
        #: eta noise after each inversion step (InPO's 0.1); SmPO adds none
        eta: float = 0.0
        #: "grid" (the authors: the last inversion step goes past t to the next grid point) | "t" (it lands on t)
        inversion_end: str = "grid"
        #: False: p = 1 (the human winner) instead of the smoothed label
        smooth_labels: bool = True

        def __post_init__(self):
            check_domain(self, positive=("beta", "gamma"), non_negative=("eta",))

    def __init__(self, config: "SmPO.Config | None" = None):
        super().__init__(config)
        if self.config.inversion not in INVERSIONS:
            raise ValueError(f"unknown smpo inversion {self.config.inversion!r}; use one of {INVERSIONS}")
        check_end(self.config.inversion_end)

    def loss(self, batch: PairBatch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c, n = self.config, len(batch)
        t = ctx.timesteps(batch.slots)
        t2, cond2 = torch.cat([t, t]), batch.cond.repeat(2)
        if c.inversion == "none":
            x_t, target = noise_pair(batch, t, ctx)
        else:
            x_t, target = invert_pairs(batch, t, ctx, c.inversion_steps, c.inversion, c.eta, c.inversion_end)

        err = per_sample_error(ctx.policy(x_t, t2, cond2), target)
        ref_err = per_sample_error(ctx.reference(x_t, t2, cond2), target)
        err_w, err_l, ref_w, ref_l = err[:n], err[n:], ref_err[:n], ref_err[n:]

        p = batch.label.to(err.dtype) if c.smooth_labels else torch.ones_like(err_w)
        z = ctx.balance(smpo_margin(err_w, err_l, ref_w, ref_l, c.beta, p, c.gamma), t)
        loss = sigmoid_loss(z)
        metrics = {"acc": (z > 0).float(), "err_w": err_w, "err_l": err_l, "ref_err_w": ref_w, "ref_err_l": ref_l,
                   "margin": z, "p": p}
        return loss, {k: v.detach() for k, v in metrics.items()}
