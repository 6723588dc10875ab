"""DDIM inversion by the current policy, with optional eta noise (DDIM-InPO) or one ReNoise correction (SmPO).

DESIGN.md sections 5.4 and 5.5; implementation_notes.md section 5 ("InPO / SmPO inversion").

Grid: diffusers 0.20 ``DDIMInverseScheduler.set_timesteps(n)`` ("leading", steps_offset 1), k = T // n: take
[1, 1 + k, ..., 1 + (n-1)k], roll it by one, set element 0 to element 1 - k. n = 10 gives [-99, 1, 101, ..., 801],
n = 5 gives [-199, 1, 201, 401, 601]. Each step moves tau -> tau + k; abar at a negative tau is abar_0.

Per sample i with sampled t_i (no grad, no guidance, starting from z = x0_i), for every grid tau < t_i in order:

    ddim:     eps = unet(z, tau);  z = step(z, eps)                          [+ eta noise, InPO]
    renoise:  eps1 = unet(z, tau); z' = step(z, eps1); eps2 = unet(z', tau)  (same tau label)
              z = step(z, (eps1 + eps2) / 2)                                  (from the OLD z)
    eta:      z += eta * N(0, I) * sqrt((1 - abar_tau)/(1 - abar_{tau+k}) * (1 - abar_{tau+k}/abar_tau))

where step(z, eps) is the DDIM-inverse move from abar_tau to abar_{tau+k}. Then x_t = z and the target is re-derived
at the SAMPLED t_i: target = (z - sqrt(abar_t) x0) / sqrt(1 - abar_t).

So x_t carries the noise of the grid point above t_i, not of t_i (t = 10 on the 5-step grid: z at tau = 201, labelled
10; the target is then several times unit size). ``end="t"`` is our option that lands the last step on t_i instead
(min(tau + k, t_i), and the last grid point moves all the way to t_i); same UNet calls. Default: the authors' "grid".

The authors cut the grid and read abar_t from batch element 0 (correct only at one pair per GPU). Here every sample
has its own cut-off: at each grid step only the samples with tau < t_i move, and the UNet runs on that sub-batch
only, so the forward count per image equals the authors' (number of grid points below t_i, x2 with ReNoise) and a
batch gives the same result as its samples one by one. All arithmetic is float32 (the authors cast abar to fp16).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from methods.base import Cond, PairBatch, StepContext
from methods.diffusion import abar_at, ddim_step, ddim_variance, epsilon_target

#: unet(x, t, cond) -> eps (float32); t is an int64 (B,) tensor and may hold negative grid times (e.g. -99)
UNetFn = Callable[[Tensor, Tensor, Cond], Tensor]
#: noise(stream, idx) -> standard normal noise for the batch rows ``idx`` (one stream per grid step); a row's noise
#: does not depend on which other rows are drawn with it
NoiseFn = Callable[[str, Tensor], Tensor]

MODES = ("ddim", "renoise")
#: where the last inversion step ends: "grid" (tau + k, the authors) or "t" (the sampled t)
ENDS = ("grid", "t")


def check_end(end: str) -> str:
    """``end`` if it is one of :data:`ENDS` (the methods call this at construction, ``invert`` at every call)."""
    if end not in ENDS:
        raise ValueError(f"unknown inversion end {end!r} (method.inversion_end); use one of {ENDS}")
    return end


def inversion_grid(n_steps: int, T: int = 1000) -> list[int]:
    """The diffusers-0.20 DDIMInverseScheduler grid ("leading", steps_offset 1), ascending, e.g. n=5:
    [-199, 1, 201, 401, 601]."""
    if not 2 <= n_steps <= T:
        raise ValueError(f"inversion_steps must be in [2, {T}], got {n_steps}")
    k = T // n_steps
    grid = [1 + i * k for i in range(n_steps)]
    grid = grid[-1:] + grid[:-1]  # roll by one
    grid[0] = grid[1] - k
    return grid


def inversion_forwards(t: Tensor, n_steps: int, T: int = 1000, renoise: bool = False) -> Tensor:
    """UNet calls per image: the number of grid points below t (x2 with ReNoise)."""
    grid = torch.tensor(inversion_grid(n_steps, T), device=t.device)
    return (grid[None, :] < t[:, None]).sum(1) * (2 if renoise else 1)


def mean_inversion_forwards(n_steps: int, T: int = 1000, renoise: bool = False) -> float:
    """Expected UNet calls per image for t ~ U{0..T-1}: 6.382 (10-step), 7.584 (5-step ReNoise), 12.76 (10, ReNoise)."""
    return inversion_forwards(torch.arange(T), n_steps, T, renoise).double().mean().item()


@torch.no_grad()
def invert(x0: Tensor, t: Tensor, cond: Cond, unet: UNetFn, alphas_cumprod: Tensor, n_steps: int, *,
           mode: str = "ddim", eta: float = 0.0, noise: NoiseFn | None = None,
           end: str = "grid") -> tuple[Tensor, Tensor]:
    """Invert latents ``x0`` (B, C, h, w) to their per-sample times ``t`` (B,); returns (x_t, target), float32.

    ``mode``: "ddim" (InPO) or "renoise" (SmPO). ``eta`` > 0 adds eta * sqrt(DDIM variance) * noise(f"inversion{j}",
    idx) after grid step j to the moving rows idx (InPO: 0.1); ``noise`` must then be given and return noise of shape
    (len(idx), *x0.shape[1:]), row i's noise independent of the other rows drawn (so only moving rows are drawn).
    ``end``: "grid" (the authors): the last step goes to tau + k, past t (or short of it beyond the last grid point),
    so x_t carries the noise of another time than its label; "t" (our option): each step goes to min(tau + k, t_i) and
    the step from the last grid point to t_i, so x_t is at its label's noise level (same grid points, same number of
    UNet calls).
    """
    if mode not in MODES:
        raise ValueError(f"unknown inversion mode {mode!r}; use one of {MODES}")
    check_end(end)
    if eta and noise is None:
        raise ValueError("eta > 0 needs a noise callable (noise(stream, idx) -> noise for the rows idx of x0)")
    if t.shape != (x0.shape[0],):
        raise ValueError(f"t must have shape ({x0.shape[0]},), one timestep per latent; got {tuple(t.shape)}")
    T = len(alphas_cumprod)
    grid = inversion_grid(n_steps, T)
    k = T // n_steps
    x0 = x0.float()
    z = x0.clone()
    for j, tau in enumerate(grid):
        move = t > tau
        if not bool(move.any()):
            break  # the grid ascends: nobody moves at later points either
        idx = move.nonzero().squeeze(1)
        z_sub, c_sub = z[idx], cond.select(idx)
        labels = torch.full((len(idx),), tau, dtype=torch.long, device=z.device)
        a_tau, a_next = abar_at(alphas_cumprod, tau), abar_at(alphas_cumprod, tau + k)
        if end == "t":  # land on t: at most one grid step, and the last grid point goes all the way
            dest = t[idx] if j == len(grid) - 1 else t[idx].clamp(max=tau + k)
            a_next = alphas_cumprod[dest].float()
        eps = unet(z_sub, labels, c_sub).float()
        z_new = ddim_step(z_sub, eps, a_tau, a_next)
        if mode == "renoise":
            eps2 = unet(z_new, labels, c_sub).float()
            z_new = ddim_step(z_sub, (eps + eps2) / 2, a_tau, a_next)
        if eta:
            n = noise(f"inversion{j}", idx).float()
            z_new = z_new + eta * n * ddim_variance(a_tau, a_next).sqrt().reshape(-1, *([1] * (n.ndim - 1)))
        z = z.index_copy(0, idx, z_new)
    return z, epsilon_target(z, x0, t, alphas_cumprod)


def invert_pairs(batch: PairBatch, t: Tensor, ctx: StepContext, n_steps: int, mode: str,
                 eta: float = 0.0, end: str = "grid") -> tuple[Tensor, Tensor]:
    """x_t and targets of [winners; losers] (2B), inverted by the policy (``ctx.policy_no_grad``, train mode) with
    the pair's shared t. Eta noise is drawn per image: stream "<grid stream>/w" for winners, "/l" for losers."""
    shape, n = tuple(batch.x0_w.shape[1:]), len(batch)

    def noise(stream: str, idx: Tensor) -> Tensor:  # idx ascends: the moving winners, then the moving losers
        w, l = idx[idx < n], idx[idx >= n] - n
        return torch.cat([ctx.randn(batch.slots[w.to(batch.slots.device)], shape, f"{stream}/w"),
                          ctx.randn(batch.slots[l.to(batch.slots.device)], shape, f"{stream}/l")])

    x0 = torch.cat([batch.x0_w, batch.x0_l])
    return invert(x0, torch.cat([t, t]), batch.cond.repeat(2), ctx.policy_no_grad, ctx.alphas_cumprod, n_steps,
                  mode=mode, eta=eta, noise=noise if eta else None, end=end)
