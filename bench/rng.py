"""Per-sample random streams derived from (run seed, optimizer step, sample slot, stream name).

A slot is a sample's position in its optimizer step's global batch (all micro-steps and processes together), so the
draws do not depend on how the batch is split across processes or accumulation steps, nor on whether the run was
resumed: 1 process x 2b, 2 processes x b and 1 process x b x 2 accumulation see identical randomness.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, step: int, slot: int, stream: str) -> int:
    digest = hashlib.blake2b(f"{seed}/{step}/{slot}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def randn(seed: int, step: int, slots: list[int], shape: tuple[int, ...], stream: str) -> torch.Tensor:
    """(len(slots), *shape) float32 standard normal on the CPU, one derived seed per slot (one Generator object,
    re-seeded per slot: the same draws as a fresh generator per slot, without constructing one each time)."""
    g = torch.Generator()
    return torch.stack([torch.randn(shape, generator=g.manual_seed(derive_seed(seed, step, s, stream)))
                        for s in slots])


def uniform(seed: int, step: int, slots: list[int], stream: str, n: int = 1) -> torch.Tensor:
    """(len(slots), n) float64 uniforms in [0, 1)."""
    g = torch.Generator()
    return torch.stack([torch.rand(n, generator=g.manual_seed(derive_seed(seed, step, s, stream)),
                                   dtype=torch.float64) for s in slots])
