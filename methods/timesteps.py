"""Timestep strategies: how t is drawn for each sample and how implicit-reward margins are balanced across t.

The trainer owns the random draw: for every sample slot it derives a generator and passes a uniform ``u`` in [0, 1)
to :meth:`TimestepStrategy.sample`. ``balance(z, t)`` is the hook DPO-family methods call on their margins.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench_common import Registry

TIMESTEP_STRATEGIES = Registry("timestep strategy")


class TimestepStrategy:
    """Uniform t ~ U{0..T-1} and no balancing (the papers' default)."""

    def __init__(self, num_train_timesteps: int = 1000, **kwargs: Any):
        if kwargs:
            raise TypeError(f"uniform timesteps take no options, got {sorted(kwargs)}")
        self.T = num_train_timesteps

    def sample(self, u: Tensor) -> Tensor:
        return (u * self.T).long().clamp_(0, self.T - 1)

    def balance(self, z: Tensor, t: Tensor) -> Tensor:
        return z

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


TIMESTEP_STRATEGIES.register("uniform", TimestepStrategy)
