"""Losses on per-sample denoising errors (DESIGN.md section 5). Pure functions of float32 tensors.

Conventions: ``err`` is the per-sample denoising error e = mean_{C,H,W}(pred - target)^2 (lower is better), so an
implicit reward is a NEGATIVE error difference. Every function returns per-pair/per-image values or a mean over the
micro-batch (never logsigmoid of a mean).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dpo_margin(err_w: Tensor, err_l: Tensor, ref_err_w: Tensor, ref_err_l: Tensor, beta: float) -> Tensor:
    """Diffusion-DPO implicit-reward margin z = -0.5 * beta * ((e_w - e_l) - (e_ref_w - e_ref_l)), per pair.

    The 0.5 is the authors' (Salesforce train.py); the diffusers LoRA port omits it (twice the strength).
    """
    return -0.5 * beta * ((err_w - err_l) - (ref_err_w - ref_err_l))


def sigmoid_loss(z: Tensor) -> Tensor:
    """mean over pairs of -logsigmoid(z): the mean of logsigmoid, never logsigmoid of a mean (diffusers #6702)."""
    return -F.logsigmoid(z).mean()


# --- SmPO (Lu et al., ICML 2025) --------------------------------------------------------------------------------------
def smpo_margin(err_w: Tensor, err_l: Tensor, ref_err_w: Tensor, ref_err_l: Tensor, beta: float, p: Tensor | float,
                gamma: float = 10.0) -> Tensor:
    """SmPO margin z = -0.5 * beta * (2p - 1) * gamma * ((e_w - e_l) - (e_ref_w - e_ref_l)), per pair.

    ``p`` is the smoothed probability that the FIRST image (``err_w``) is preferred. The authors' code
    (JaydenLyh/SmPO train.py) writes ``-0.5 * beta * (2p - 1) * 10``; the paper's factor (2 alpha - gamma) with
    alpha / gamma = p. p = 1, gamma = 1 is DPO's margin exactly (the factor is the float 1.0). p < 0.5 (the reward model
    prefers the second image) equals swapping the images with 1 - p: the margin is symmetric.
    """
    return dpo_margin(err_w, err_l, ref_err_w, ref_err_l, beta) * ((2.0 * p - 1.0) * gamma)


# --- Diffusion-KTO (Li et al. 2024) -----------------------------------------------------------------------------------
def kto_margin(err: Tensor, ref_err: Tensor, g_mean: Tensor | float, beta: float) -> Tensor:
    """beta * (g - KL) per image, with g = e_ref - e_theta (implicit reward) and the reference point
    KL = clamp(g_mean, min=0), DETACHED. ``g_mean`` is the mean of g over the GLOBAL batch (already all-reduced across
    processes; jacklishufan/diffusion-kto ``--bce_offset none``)."""
    kl = torch.as_tensor(g_mean, dtype=torch.float32, device=err.device).detach().clamp(min=0)
    return beta * ((ref_err - err) - kl)


def kto_utility_loss(margin: Tensor, y: Tensor, lambda_d: float = 1.0, lambda_u: float = 1.0) -> Tensor:
    """mean over images of lambda_y * (1 - sigmoid(y * margin)); y = +1 desirable, -1 undesirable.

    The bounded "sigmoid" utility of the authors' default ``--halo sigmoid`` (not -logsigmoid)."""
    lam = torch.where(y > 0, torch.full_like(margin, lambda_d), torch.full_like(margin, lambda_u))
    return (lam * (1.0 - torch.sigmoid(y.to(margin.dtype) * margin))).mean()


def kto_loss(err: Tensor, ref_err: Tensor, y: Tensor, beta: float, g_mean: Tensor | float, lambda_d: float = 1.0,
             lambda_u: float = 1.0) -> Tensor:
    """Diffusion-KTO loss: ``kto_utility_loss(kto_margin(err, ref_err, g_mean, beta), y, lambda_d, lambda_u)``."""
    return kto_utility_loss(kto_margin(err, ref_err, g_mean, beta), y, lambda_d, lambda_u)


# --- MaPO (Hong et al. 2024) ------------------------------------------------------------------------------------------
def mapo_score(err: Tensor, s: float = 0.5) -> Tensor:
    """f(e) = s e / expm1(s e), the authors' ``snr_value * e / (exp(snr_value * e) - 1)`` (s = 0.5 is a constant).

    f decreases from f(0) = 1 (the limit, returned exactly at e = 0) as the error grows, so f is a likelihood-like
    score: higher is better."""
    x = s * err
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), safe / torch.expm1(safe))


def mapo_log_odds(err_w: Tensor, err_l: Tensor, s: float = 0.5) -> Tensor:
    """log_odds = f(e_w) - f(e_l): positive when the winner's error is LOWER than the loser's."""
    return mapo_score(err_w, s) - mapo_score(err_l, s)


def mapo_loss(err_w: Tensor, err_l: Tensor, beta: float = 0.1, T: float = 1000.0, s: float = 0.5) -> Tensor:
    """MaPO loss = mean(e_w) - beta * mean(logsigmoid(T * log_odds)) (mapo-t2i/mapo train.py, "Full ORPO loss").

    Signs: the first term is the plain diffusion loss on winners (minimised); the second is SUBTRACTED, so raising
    logsigmoid(T * log_odds), i.e. lowering e_w relative to e_l, lowers the loss. T is the number of training
    timesteps (1000)."""
    return err_w.mean() - beta * F.logsigmoid(T * mapo_log_odds(err_w, err_l, s)).mean()
