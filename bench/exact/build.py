"""``bench exact build``: train the exact world's base model by the suite's own deterministic loop, and save it.

The base model is an epsilon-prediction denoiser (:class:`bench.exact.model.ExactDenoiser`) trained with the plain
diffusion loss on exact samples of p(x | c) for the TRAIN conditions only (10% of captions dropped, as the
unconditional), on the SD1.5 noise schedule. It is deliberately short-trained: good, not perfect (its fidelity is
measured in the manifest and in results/exact/README.md). Everything is seeded; on the same machine and torch build
the weights are bit-identical (``bench exact check`` rebuilds and compares).

Assets (``bench/exact/assets``): ``model/unet`` (diffusers format), ``model/scheduler``, ``manifest.json`` (build
parameters, world fingerprint, file sha256, the base model's measured fidelity).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.exact.model import ExactDenoiser, encode_conditions
from bench.models import sd15_noise_scheduler
from bench.exact.world import World, WorldConfig
from bench.assets import file_hashes
from methods.base import Cond
from methods.diffusion import forward_noise, per_sample_error


@dataclass(frozen=True)
class BuildConfig:
    steps: int = 1500
    batch_size: int = 512
    lr: float = 2e-3
    caption_dropout: float = 0.1
    width: int = 128
    blocks: int = 3
    seed: int = 0


def train_base(world: World, cfg: BuildConfig, log: Callable[[str], None] = print) -> ExactDenoiser:
    torch.manual_seed(cfg.seed)
    model = ExactDenoiser(data_dim=2, cond_dim=world.cfg.n_modes, width=cfg.width, blocks=cfg.blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / cfg.steps)))
    abar = sd15_noise_scheduler().alphas_cumprod.float()
    g = np.random.default_rng([cfg.seed, 3])
    tg = torch.Generator().manual_seed(cfg.seed)
    caps = world.captions("train")
    start = time.perf_counter()
    for step in range(cfg.steps):
        chosen = [caps[i] for i in g.integers(0, len(caps), cfg.batch_size)]
        weights = np.stack([world.weights(c) for c in chosen])
        x0 = torch.from_numpy(world.sample_true(weights, g)).float()
        drop = g.random(cfg.batch_size) < cfg.caption_dropout
        cond = Cond(encode_conditions(world, ["" if d else c for c, d in zip(chosen, drop)]))
        t = torch.randint(0, len(abar), (cfg.batch_size,), generator=tg)
        eps = torch.randn(x0.shape, generator=tg)
        x_t, target = forward_noise(x0, t, eps, abar)
        loss = per_sample_error(model(x_t, t, **cond.unet_kwargs()).sample, target).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 250 == 0:
            log(f"base model step {step + 1}/{cfg.steps}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    return model.eval()


def build(out: Path, cfg: BuildConfig = BuildConfig(), world_cfg: WorldConfig = WorldConfig(),
          log: Callable[[str], None] = print) -> Path:
    """Train and write the assets into ``out`` (atomically: a temporary folder renamed at the end)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    world = World(world_cfg)
    model = train_base(world, cfg, log)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".exact-build-", dir=out.parent))
    model.save_pretrained(tmp / "model" / "unet", safe_serialization=True)
    sd15_noise_scheduler().save_pretrained(tmp / "model" / "scheduler")
    from bench.exact.evaluate import base_fidelity

    files = file_hashes(tmp)
    manifest = {"build": asdict(cfg), "world": asdict(world_cfg), "world_fingerprint": world_cfg.fingerprint(),
                "files": files, "torch": torch.__version__, "base_model": base_fidelity(world, model)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log(f"exact world assets written to {out}: {json.dumps(manifest['base_model'])}")
    return out


def check_rebuild(folder: Path, log: Callable[[str], None] = print) -> list[str]:
    """Rebuild with the manifest's parameters in a temporary folder; the files that differ."""
    man = json.loads((Path(folder) / "manifest.json").read_text())
    cfg = BuildConfig(**man["build"])
    wcfg = WorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in man["world"].items()})
    with tempfile.TemporaryDirectory() as tmp:
        new = build(Path(tmp) / "assets", cfg, wcfg, log)
        fresh = json.loads((new / "manifest.json").read_text())["files"]
    return [f"{rel} differs" for rel, sha in man["files"].items() if fresh.get(rel) != sha]
