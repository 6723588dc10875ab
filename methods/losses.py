"""Losses on per-sample denoising errors (DESIGN.md section 5). Pure functions of float32 tensors."""
from __future__ import annotations

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
