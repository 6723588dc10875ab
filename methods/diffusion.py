"""Shared diffusion math: per-sample denoising error and forward noising (DESIGN.md sections 4 and 5.1)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from methods.base import PairBatch, StepContext


def per_sample_error(pred: Tensor, target: Tensor) -> Tensor:
    """e(x) = mean over C, H, W of (pred - target)^2, in float32. A MEAN, not a sum: the papers' betas assume it."""
    diff = pred.float() - target.float()
    return diff.pow(2).mean(dim=tuple(range(1, diff.ndim)))


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def forward_noise(x0: Tensor, t: Tensor, eps: Tensor, alphas_cumprod: Tensor) -> tuple[Tensor, Tensor]:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; the epsilon-prediction target is eps. Float32."""
    abar = _bcast(alphas_cumprod[t].float(), x0)
    x_t = abar.sqrt() * x0.float() + (1.0 - abar).sqrt() * eps.float()
    return x_t, eps.float()


def abar_at(alphas_cumprod: Tensor, tau: int) -> Tensor:
    """abar at an integer time, float32; a NEGATIVE time (the first DDIM-inverse grid point, e.g. -99) gives abar_0.

    This is diffusers' ``initial_alpha_cumprod`` / ``final_alpha_cumprod`` under SD configs
    (``set_alpha_to_one=False``), as the InPO/SmPO authors run it.
    """
    return alphas_cumprod[max(int(tau), 0)].float()


def ddim_step(z: Tensor, eps: Tensor, abar_from: Tensor, abar_to: Tensor) -> Tensor:
    """Deterministic DDIM move of ``z`` from noise level ``abar_from`` to ``abar_to`` with the prediction ``eps``:

        x0_hat = (z - sqrt(1 - abar_from) eps) / sqrt(abar_from);   z' = sqrt(abar_to) x0_hat + sqrt(1 - abar_to) eps

    abar_to < abar_from is a DDIM-inverse step (diffusers ``DDIMInverseScheduler.step``), abar_to > abar_from a DDIM
    sampling step (eta 0). Scalars or per-sample (B,) levels; float32.
    """
    a_from, a_to = _bcast(abar_from.float().reshape(-1), z), _bcast(abar_to.float().reshape(-1), z)
    x0_hat = (z.float() - (1.0 - a_from).sqrt() * eps.float()) / a_from.sqrt()
    return a_to.sqrt() * x0_hat + (1.0 - a_to).sqrt() * eps.float()


def ddim_variance(abar_tau: Tensor, abar_next: Tensor) -> Tensor:
    """DDIM variance of the step from tau + k back to tau (diffusers ``DDIMScheduler._get_variance(tau + k, tau)``):

        sigma^2 = (1 - abar_tau) / (1 - abar_next) * (1 - abar_next / abar_tau)
    """
    return (1.0 - abar_tau) / (1.0 - abar_next) * (1.0 - abar_next / abar_tau)


def epsilon_target(x_t: Tensor, x0: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """The epsilon that makes ``x_t`` a forward-noised ``x0`` at the per-sample time ``t`` (InPO/SmPO targets):

        target = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)
    """
    abar = _bcast(alphas_cumprod[t].float(), x0)
    return (x_t.float() - abar.sqrt() * x0.float()) / (1.0 - abar).sqrt()


def noise_pair(batch: "PairBatch", t: Tensor, ctx: "StepContext") -> tuple[Tensor, Tensor]:
    """DPO-family forward noising of a pair batch: ONE eps per pair (stream "noise"), shared by winner and loser with
    the given per-pair t. Returns (x_t, target) stacked as [winners; losers]."""
    eps = ctx.noise(batch.slots, tuple(batch.x0_w.shape[1:]))
    return forward_noise(torch.cat([batch.x0_w, batch.x0_l]), torch.cat([t, t]), torch.cat([eps, eps]),
                         ctx.alphas_cumprod)
