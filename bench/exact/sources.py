"""The exact world's preference sources, in the Pick-a-Pic v2 meaning, and the trainer's view of them.

A source is named ``exact:<kind>`` (``--data exact:on-policy``); its pairs are generated deterministically on first use
and cached (``$BENCH_CACHE/exact/<key>.parquet``, the key hashing the world, the base model's weights, the kind, the
number of pairs and the seed). Every pair has a train condition (``caption``), two samples ``x_0``/``x_1`` (the role of
``jpg_0``/``jpg_1``), the generator of each (``model_0``/``model_1``: ``base``, ``true`` or ``tilted``), the label of
ONE rater drawn from the panel (``label_0``: 1, 0 or 0.5 for a tie; ``rater``), and the closed-form panel reward of
both samples (``reward_0``/``reward_1``: the reward model whose scores SmPO's smoothed labels read, as PickScore's).

    on-policy    both samples from the base model (DDIM, 50 steps, no guidance): best-of-2 self-play
    off-policy   both from the true distribution p(x | c)
    better       both from the reward-tilted true distribution p_lam(x | c) (generators stronger than the base model,
                 as Pick-a-Pic's images mostly come from models stronger than SD1.5)
    mix          each sample from base, true or tilted with equal chance: pairs within and across generators

A parquet file with the columns x_0, x_1, label_0, caption (and optionally reward_0, reward_1) is read as well.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.config import DataConfig
from bench.data import DataError, data_cache_dir, pairs_report
from bench.exact.model import encode_conditions
from bench.exact.world import World
from methods.base import Cond

KINDS = ("on-policy", "off-policy", "better", "mix")
GENERATORS = ("base", "true", "tilted")
PAIRS = 4096
SAMPLER_STEPS = 50
VERSION = 1


def _draw(world: World, model: torch.nn.Module, generator: str, captions: list[str], seed: int) -> np.ndarray:
    """One sample per caption from ``generator`` (base / true / tilted), deterministic in ``seed``."""
    g = np.random.default_rng(seed)
    if generator == "true":
        return world.sample_true(np.stack([world.weights(c) for c in captions]), g)
    if generator == "tilted":
        out = np.zeros((len(captions), 2))
        for cap in sorted(set(captions)):
            idx = [i for i, c in enumerate(captions) if c == cap]
            out[idx] = world.sample_tilted(cap, len(idx), g)
        return out
    from bench.exact.model import ddim_sample

    noise = torch.from_numpy(g.standard_normal((len(captions), 2))).float()
    return ddim_sample(model, noise, Cond(encode_conditions(world, captions)), SAMPLER_STEPS).double().numpy()


def generate_pairs(world: World, model: torch.nn.Module, kind: str, n: int = PAIRS, seed: int = 0) -> pd.DataFrame:
    """``n`` labelled pairs of the source ``kind`` on the world's train conditions."""
    if kind not in KINDS:
        raise DataError(f"unknown exact-world source {kind!r}; use exact:{' | exact:'.join(KINDS)}")
    g = np.random.default_rng([seed, 11, KINDS.index(kind)])
    train = world.captions("train")
    caps = [train[i] for i in g.integers(0, len(train), n)]
    if kind == "mix":
        gens = g.integers(0, 3, (n, 2))
    else:
        gens = np.full((n, 2), {"on-policy": 0, "off-policy": 1, "better": 2}[kind])
    xs = np.zeros((n, 2, 2))
    for j in (0, 1):
        for k, name in enumerate(GENERATORS):
            idx = np.flatnonzero(gens[:, j] == k)
            if len(idx):
                xs[idx, j] = _draw(world, model, name, [caps[i] for i in idx], seed * 1000 + 10 * j + k + 1)
    weights = np.stack([world.weights(c) for c in caps])
    rater = g.integers(0, world.cfg.n_raters, n)
    label = world.choose(xs[:, 0], xs[:, 1], weights, rater, g.random(n))
    return pd.DataFrame({"caption": caps, "x_0": list(xs[:, 0]), "x_1": list(xs[:, 1]), "label_0": label,
                         "model_0": [GENERATORS[k] for k in gens[:, 0]], "model_1": [GENERATORS[k] for k in gens[:, 1]],
                         "reward_0": world.reward(xs[:, 0], weights), "reward_1": world.reward(xs[:, 1], weights),
                         "rater": rater})


def source_file(source: str, data: DataConfig, world: World, model_dir: Path, load_model) -> Path:
    """The parquet file of ``exact:<kind>`` (generated and cached on first use) or of a given path."""
    if not source.startswith("exact:"):
        p = Path(source).expanduser()
        if not p.is_file():
            raise DataError(f"exact-world data {source!r} is neither exact:<{'|'.join(KINDS)}> nor a parquet file")
        return p
    kind = source.split(":", 1)[1]
    if kind not in KINDS:
        raise DataError(f"unknown exact-world source {source!r}; use one of "
                        f"{', '.join('exact:' + k for k in KINDS)}")
    from bench.models import weights_fingerprint

    key = hashlib.sha256(json.dumps([VERSION, world.cfg.fingerprint(), weights_fingerprint(str(model_dir)), kind,
                                     PAIRS, data.split]).encode()).hexdigest()[:16]
    out = data_cache_dir(data) / "exact" / f"{kind}-{key}.parquet"
    if not out.is_file():
        df = generate_pairs(world, load_model(), kind)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        df.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    return out


@dataclass
class ExactPairs:
    """Usable pairs, winner first: samples (N, 2, 2), captions, generators, raw rewards (N, 2)."""

    x: np.ndarray
    captions: list[str]
    models: np.ndarray
    rewards: np.ndarray | None
    fingerprint: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def report(self) -> str:
        return pairs_report(len(self), self.dropped)


def read_pairs(path: Path, data: DataConfig, world: World) -> ExactPairs:
    """Drop ties (unless keep_ties) and rows with non-finite samples or unknown captions; winner first."""
    df = pd.read_parquet(path)
    missing = [c for c in ("x_0", "x_1", "label_0", "caption") if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; exact-world pairs need x_0, x_1, label_0, caption")
    if len(df) == 0:
        raise DataError(f"{path} has no pairs")
    x = np.stack([np.stack([np.asarray(a, dtype=np.float64) for a in df[c]]) for c in ("x_0", "x_1")], 1)
    label = df["label_0"].to_numpy(dtype=np.float64)
    dropped = {"tie": 0, "bad label": 0, "non-finite sample": 0, "unknown caption": 0}
    keep = []
    for i, (lab, cap) in enumerate(zip(label, df["caption"])):
        reason = ("tie" if lab == 0.5 and not data.keep_ties else "bad label" if lab not in (0.0, 0.5, 1.0) else
                  "non-finite sample" if not np.isfinite(x[i]).all() else None)
        if reason is None:
            try:
                world.modes_of(cap)
            except ValueError:
                reason = "unknown caption"
        if reason:
            dropped[reason] += 1
            continue
        keep.append(i)
        if data.max_pairs is not None and len(keep) >= data.max_pairs:
            break
    if not keep:
        raise DataError(f"no usable pairs in {path} ({dropped}); set data.keep_ties=true if they are all ties")
    rows = np.asarray(keep)
    swap = label[rows] == 0.0
    order = np.where(swap[:, None], [1, 0], [0, 1])
    xw = x[rows][np.arange(len(rows))[:, None], order]
    models = (df[["model_0", "model_1"]].to_numpy()[rows][np.arange(len(rows))[:, None], order]
              if "model_0" in df.columns else np.full((len(rows), 2), "unknown"))
    rewards = None
    if "reward_0" in df.columns and "reward_1" in df.columns:
        r = df[["reward_0", "reward_1"]].to_numpy(dtype=np.float64)[rows]
        rewards = r[np.arange(len(rows))[:, None], order]
    fp = hashlib.sha256(xw.tobytes() + json.dumps([df["caption"].iloc[rows].tolist()]).encode()).hexdigest()[:16]
    return ExactPairs(xw.astype(np.float32), [str(c) for c in df["caption"].iloc[rows]], models, rewards, fp, dropped)


class ExactLatents:
    """The identity codec and the mixture-weight condition encoder (the latent source of BatchMaker)."""

    def __init__(self, store: ExactPairs, world: World):
        self.store, self.world = store, world
        self.shape = (2,)

    def x0(self, step, slots, pairs, which, flips) -> torch.Tensor:  # flips are all False (ExactWorld.latents)
        return torch.from_numpy(np.stack([self.store.x[p, ws] for p, ws in zip(pairs, which)]))

    def cond(self, pairs, dropped, device) -> Cond:
        caps = ["" if d else self.store.captions[p] for p, d in zip(pairs, dropped)]
        return Cond(encode_conditions(self.world, caps).to(device))
