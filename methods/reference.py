"""Reference-model update strategies (what happens to theta_ref between optimizer steps).

The trainer decides HOW the reference runs (a separate frozen module, or the policy with LoRA adapters disabled);
a strategy here decides whether and how its weights move. ``frozen`` never moves them.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench_common import Registry

REFERENCE_UPDATES = Registry("reference update")


class FrozenReference:
    """theta_ref stays the initial model (Diffusion-DPO, KTO, InPO, SmPO as published)."""

    needs_initial_copy = False

    def __init__(self, **kwargs: Any):
        if kwargs:
            raise TypeError(f"the frozen reference takes no options, got {sorted(kwargs)}")

    @torch.no_grad()
    def update(self, step: int, ref: list[Tensor], policy: list[Tensor], initial: list[Tensor] | None) -> bool:
        """Called after every optimizer step (step = steps done so far). Returns True if the reference moved."""
        return False


REFERENCE_UPDATES.register("frozen", FrozenReference)
