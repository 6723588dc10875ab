"""Shared diffusion math: per-sample denoising error and forward noising (DESIGN.md sections 4 and 5.1)."""
from __future__ import annotations

import torch
from torch import Tensor


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
