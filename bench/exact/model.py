"""The exact world's denoiser, its condition encoder, and its DDIM sampler.

The denoiser is a small residual MLP that predicts epsilon from (x_t, t, condition). It is a diffusers ``ModelMixin``
with the UNet calling convention, ``denoiser(x_t, t, encoder_hidden_states=...).sample``, so the shared trainer, its
reference copy, checkpoints and ``save_pretrained`` / ``from_pretrained`` treat it exactly like a UNet.

The condition encoder (the role of the text encoder) maps a caption to its mixture weights over the modes,
(B, 1, M): "A C" -> 1/2 on A and C; the dropped caption "" -> zeros. It is fixed (nothing to learn), so held-out
conditions are new combinations of known modes.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import ConfigMixin, DDIMScheduler, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from bench.models import sd15_noise_scheduler
from methods.base import Cond


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly negative, e.g. the inversion grid's -99) integer or float timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


class ExactDenoiser(ModelMixin, ConfigMixin):
    """eps_theta(x_t, t, c): residual MLP, time and condition embeddings added to every block's input."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, data_dim: int = 2, cond_dim: int = 8, width: int = 128, blocks: int = 3, time_dim: int = 64):
        super().__init__()
        self.inp = nn.Linear(data_dim, width)
        self.time = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width)
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(),
                                                  nn.Linear(2 * width, width)) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, data_dim))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                encoder_hidden_states: torch.Tensor, added_cond_kwargs=None, return_dict: bool = True):
        if added_cond_kwargs:
            raise ValueError("the exact world's denoiser takes no added conditions (it is not SDXL-shaped)")
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t.expand(sample.shape[0])
        emb = self.time(timestep_embedding(t, self.config.time_dim)) + self.cond(
            encoder_hidden_states.reshape(sample.shape[0], -1).to(sample.dtype))
        h = self.inp(sample) + emb
        for block in self.layers:
            h = h + block(h + emb)
        eps = self.out(h)
        return SimpleNamespace(sample=eps) if return_dict else (eps,)


def encode_conditions(world, captions: list[str]) -> torch.Tensor:
    """(B, 1, M) mixture weights of each caption (the exact world's "text encoder")."""
    return torch.from_numpy(np.stack([world.weights(c) for c in captions]).astype(np.float32))[:, None, :]


@torch.no_grad()
def ddim_sample(denoiser: nn.Module, noise: torch.Tensor, cond: Cond, steps: int,
                scheduler_config=None) -> torch.Tensor:
    """Deterministic DDIM (eta 0, no guidance) from the initial noise ``noise`` (B, D) with ``steps`` steps, with
    diffusers' DDIMScheduler on the model's training schedule (SD1.5 settings: leading spacing, steps_offset 1,
    set_alpha_to_one False)."""
    sched = DDIMScheduler.from_config(scheduler_config or sd15_noise_scheduler().config)
    sched.set_timesteps(steps)
    x = noise.float() * sched.init_noise_sigma
    for t in sched.timesteps:
        eps = denoiser(x, t.expand(x.shape[0]).to(x.device), **cond.unet_kwargs()).sample.float()
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return x
