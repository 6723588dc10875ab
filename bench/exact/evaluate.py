"""Exact evaluation in the exact world: fixed initial noises, several DDIM step counts, closed-form metrics.

For every condition of a split and every index k < n, the initial noise is drawn from the seed
``image_seed(seed, condition index, k)`` (the harness's rule), so every model sees the same noises. Each sample gets
the closed-form metrics

    reward     R(x, c), the panel's mean utility (higher is better; the win rate pairs it per (condition, seed))
    logp       log p(x | c) under the true distribution (fidelity; higher is better)
    far        1 if x is farther than 3 sigma from every mode (an off-manifold sample; lower is better)
    on_prompt  1 if x is within 3 sigma of one of the condition's own modes (higher is better)

written as one evaluation per step count, ``RUN_DIR/eval/exact-<split>-ddim<steps>/`` (the harness's schema:
summary.json with prompt-clustered bootstrap intervals, scores.parquet), so ``bench table`` and win rates read them
like any other. Beside them, ``samples.npz`` (the samples, for scatter plots) and ``exact.json``: the energy distance
to the reward-tilted target p_lam and to the true distribution, per condition and averaged.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.exact.model import ddim_sample, encode_conditions
from bench.exact.world import World, energy_distance
from evaluators.harness import image_seed
from evaluators.rundir import write_eval
from methods.base import Cond

METRICS = {"reward": True, "logp": True, "far": False, "on_prompt": True}
VERSION = "exact-1"


def set_name(split: str, steps: int) -> str:
    return f"exact-{split}-ddim{steps}"


def initial_noise(n_conditions: int, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(n_conditions * n, 2) initial noises, condition-major, and their seeds."""
    seeds = np.array([image_seed(seed, p, k) for p in range(n_conditions) for k in range(n)], dtype=np.int64)
    noise = torch.stack([torch.randn(2, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    return noise, seeds


def sample_metrics(world: World, x: np.ndarray, captions: list[str]) -> dict[str, np.ndarray]:
    """The closed-form metrics of samples ``x`` (N, 2) for their per-sample captions."""
    w = np.stack([world.weights(c) for c in captions])
    return {"reward": world.reward(x, w), "logp": world.log_density(x, w), "far": world.far_from_modes(x),
            "on_prompt": world.on_prompt(x, w)}


def generate(world: World, model: torch.nn.Module, captions: list[str], n: int, steps: int, seed: int = 0,
             batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """DDIM samples (len(captions) * n, 2), condition-major, and their seeds."""
    noise, seeds = initial_noise(len(captions), n, seed)
    per = [c for c in captions for _ in range(n)]
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(per), batch):
        cond = Cond(encode_conditions(world, per[i:i + batch]).to(device))
        out.append(ddim_sample(model, noise[i:i + batch].to(device), cond, steps).cpu())
    return torch.cat(out).double().numpy(), seeds


def base_fidelity(world: World, model: torch.nn.Module, n: int = 128, steps: int = 50) -> dict:
    """The base model's fidelity on both splits (for the build manifest and its test)."""
    out = {}
    for split in ("train", "test"):
        caps = world.captions(split)
        x, _ = generate(world, model, caps, n, steps)
        m = sample_metrics(world, x, [c for c in caps for _ in range(n)])
        true = np.mean([world.expected_reward(c) for c in caps])
        out[split] = {"steps": steps, **{k: round(float(v.mean()), 4) for k, v in m.items()},
                      "true_reward": round(float(true), 4)}
    return out


def prompt_set_hash(captions: list[str], n: int, seed: int) -> str:
    return hashlib.sha256(json.dumps([captions, n, seed]).encode()).hexdigest()[:12]


def evaluate(out_dir: Path, world: World, model: torch.nn.Module, split: str, n: int, steps_list: list[int],
             seed: int = 0, target_n: int = 512, key: str = "") -> list[Path]:
    """Write one evaluation per DDIM step count into ``out_dir/eval/``; returns their folders. ``key`` (what was
    evaluated: weights, protocol) is stored in each exact.json, so a later evaluation knows whether it is current."""
    caps = world.captions(split)
    folders = []
    for steps in steps_list:
        x, seeds = generate(world, model, caps, n, steps, seed)
        per = [c for c in caps for _ in range(n)]
        metrics = sample_metrics(world, x, per)
        df = pd.DataFrame({"prompt_id": np.repeat(np.arange(len(caps)), n), "prompt": per,
                           "image_index": np.tile(np.arange(n), len(caps)), "seed": seeds,
                           "image_sha256": [hashlib.sha256(v.tobytes()).hexdigest() for v in x],
                           "image_path": "", **metrics})
        name = set_name(split, steps)
        folder = write_eval(out_dir, name, prompt_set_hash(caps, n, seed), df,
                            {m: {"scorer_version": VERSION, "higher_is_better": hib} for m, hib in METRICS.items()},
                            {"sampler": "ddim", "steps": steps, "cfg": 1.0, "resolution": 0, "seed": seed})
        np.savez_compressed(folder / "samples.npz", x=x, prompt_id=df["prompt_id"].to_numpy())
        (folder / "exact.json").write_text(json.dumps({"key": key, **distances(world, x, caps, n, seed, target_n)},
                                                      indent=2) + "\n")
        folders.append(folder)
    return folders


_TARGETS: dict = {}


def _targets(world: World, caption: str, n: int, seed: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Exact samples of the tilted target and of the true distribution (the same for every model: memoised)."""
    key = (world.cfg, caption, n, seed)
    if key not in _TARGETS:
        g = np.random.default_rng(list(seed))
        _TARGETS[key] = (world.sample_tilted(caption, n, g), world.sample_tilted(caption, n, g, lam=0.0))
    return _TARGETS[key]


def distances(world: World, x: np.ndarray, caps: list[str], n: int, seed: int, target_n: int) -> dict:
    """Energy distance of each condition's samples to exact samples of the tilted target and of the true data."""
    per = {}
    for i, c in enumerate(caps):
        xi = x[i * n:(i + 1) * n]
        tilted, true = _targets(world, c, target_n, (seed, 7, i))
        per[c] = {"to_tilted": energy_distance(xi, tilted), "to_true": energy_distance(xi, true)}
    mean = {k: float(np.mean([v[k] for v in per.values()])) for k in ("to_tilted", "to_true")}
    return {"tilt": world.cfg.tilt, "target_samples": target_n, "mean": mean, "per_condition": per}
