"""Helpers for tests: configs for tiny runs, preference parquet files, weight comparison."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from bench.config import RunConfig, resolve
from bench.embedded import make_rows
from methods import get_method


def tiny_config(method: str = "dpo", model: str = "tiny-sd15", *overrides: str) -> RunConfig:
    base = ["steps=2", "batch_size=2", "log_every=1"]
    cfg, _ = resolve(method, model, "tiny", get_method(method), None, base + list(overrides))
    return cfg


def write_pairs(path: Path, n: int = 12, seed: int = 0, rewards: bool = True, corrupt: dict | None = None) -> Path:
    """A Pick-a-Pic-schema parquet of ``n`` procedural pairs (+ reward_0/reward_1 columns, + corrupt images)."""
    rows = make_rows(n, seed=seed)
    for r in rows:
        r.pop("reward_0"), r.pop("reward_1")
    if rewards:
        rng = np.random.default_rng(seed)
        for r in rows:
            r["reward_0"], r["reward_1"] = rng.uniform(0.15, 0.25, size=2).tolist()
    for i, col in (corrupt or {}).items():
        rows[i][col] = b"\xff\xd8 this is not a jpeg"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


def unet_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "weights" / "unet" / "diffusion_pytorch_model.safetensors"))


def base_unet_weights(model: str = "tiny-sd15") -> dict[str, torch.Tensor]:
    from bench.models import resolve_model

    return load_file(str(Path(resolve_model(model)[1]) / "unet" / "diffusion_pytorch_model.safetensors"))


def update_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], w0: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||a - w0||: how far two trained weight sets differ, relative to how far training moved them.

    Adam normalises each coordinate, so float-order noise on near-zero gradients can flip single coordinates by up
    to lr; a norm ratio measures agreement of the whole update instead.
    """
    diff = torch.sqrt(sum(((a[k] - b[k]).double() ** 2).sum() for k in a))
    moved = torch.sqrt(sum(((a[k] - w0[k]).double() ** 2).sum() for k in a))
    return float(diff / moved)


class MeanGreen:
    """A scorer stand-in for end-to-end tests (register with monkeypatch on SCORERS._items): the mean green."""
    name, version, higher_is_better = "mean-green", "1", True

    @classmethod
    def from_pretrained(cls, source=None, **kwargs):
        return cls()

    def score(self, images, prompts):
        return torch.tensor([np.asarray(im)[..., 1].mean() / 255.0 for im in images])
