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


class StableReference:
    """Stable reference update ("Rethinking DPO in Diffusion Models", Kang, Lim, Baek, Shim; arXiv 2505.18736).

    Every ``every`` optimizer steps, move the reference toward the policy, then pull it back toward the initial model:

        theta_ref <- (1 - alpha) theta_ref + alpha theta               (EMA toward the policy: exploration)
        theta_ref <- theta_ref + anchor * (theta_init - theta_ref)     (regulariser: stay near the initial model)

    UNCERTAIN: the paper's exact formulas and values (alpha, k, the regulariser's form and weight) could not be read
    (DESIGN.md 5.6); secondary summaries [unverified] give only the EMA form and "reference model regularization
    toward the initial model". This is our reading, configurable through ``train.ref_update_args``. Defaults are
    conservative: a slow EMA (alpha 0.01 every step) and an equal pull to the initial model (anchor 0.01), so a
    reference that trails a steadily moving policy settles about halfway between theta_init and theta
    (fixed point alpha (1 - anchor) / (1 - (1 - alpha)(1 - anchor)) ~ 0.5). The arithmetic runs in the reference's
    dtype (a half-precision reference rounds each update).
    """

    needs_initial_copy = True

    def __init__(self, alpha: float = 0.01, every: int = 1, anchor: float = 0.01):
        if not 0.0 <= alpha <= 1.0 or not 0.0 <= anchor <= 1.0:
            raise ValueError(f"stable reference needs alpha and anchor in [0, 1], got alpha={alpha}, anchor={anchor}")
        if int(every) != every or every < 1:
            raise ValueError(f"stable reference needs an integer every >= 1, got {every}")
        self.alpha, self.every, self.anchor = float(alpha), int(every), float(anchor)

    @torch.no_grad()
    def update(self, step: int, ref: list[Tensor], policy: list[Tensor], initial: list[Tensor] | None) -> bool:
        """Called after every optimizer step (step = steps done so far). Returns True if the reference moved."""
        if initial is None:
            raise ValueError("the stable reference update needs the initial weights (needs_initial_copy = True)")
        if not len(ref) == len(policy) == len(initial):
            raise ValueError(f"reference, policy and initial weights must be parallel lists of parameters, got "
                             f"{len(ref)}, {len(policy)} and {len(initial)} tensors")
        if step % self.every:
            return False
        for r, p, i in zip(ref, policy, initial):
            r.lerp_(p.detach().to(r.dtype), self.alpha)
            r.lerp_(i.to(r.dtype), self.anchor)
        return True


REFERENCE_UPDATES.register("stable", StableReference)
