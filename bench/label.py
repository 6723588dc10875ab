"""``bench label``: score every pair once with a reward scorer and store the RAW scores with the data.

The labels are a sidecar parquet (``row``, ``reward_0``, ``reward_1``, aligned with the source rows' jpg_0/jpg_1)
plus a JSON header naming the scorer, its version and the data fingerprint, rather than a copy of the data: Pick-a-Pic
v2 is hundreds of GB and only two floats per row are new. Training reads them through ``data.labels=FILE`` (or the
data's own reward_0/reward_1 columns) and never rescores. Raw scores are the scorer's ``raw_score`` (PickScore: the
cosine without logit scale, as SmPO's normalisation bounds expect; other scorers: their score).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import DataConfig
from bench.data import data_cache_dir, decode_image, prepare_pairs


def labels_path_for(cfg: DataConfig, scorer_name: str, fingerprint: str) -> Path:
    """The default (cached) place of a data set's labels for a scorer."""
    return data_cache_dir(cfg) / "labels" / f"{fingerprint}-{scorer_name}.parquet"


def label(cfg: DataConfig, scorer, scorer_name: str, out: Path | None = None, batch_size: int = 32,
          progress: bool = True) -> Path:
    """Score jpg_0 and jpg_1 of every usable pair; write ``out`` (default: the label cache) and return it."""
    from tqdm.auto import tqdm

    store = prepare_pairs(cfg, show_progress=progress)
    out = Path(out) if out is not None else labels_path_for(cfg, scorer_name, store.data_fingerprint)
    raw = scorer.raw_score
    rows = [int(r) for r in store.rows]
    scores = np.zeros((len(rows), 2), dtype=np.float64)
    for start in tqdm(range(0, len(rows), batch_size), desc=f"labelling with {scorer_name}", disable=not progress):
        chunk = rows[start:start + batch_size]
        records = [store.ds[r] for r in chunk]
        for col in (0, 1):
            imgs = [decode_image(rec[f"jpg_{col}"]) for rec in records]
            values = raw(imgs, [rec["caption"] for rec in records])
            scores[start:start + len(chunk), col] = np.asarray([float(v) for v in values])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.parquet")
    pd.DataFrame({"row": rows, "reward_0": scores[:, 0], "reward_1": scores[:, 1]}).to_parquet(tmp)
    tmp.replace(out)
    header = {"scorer": scorer_name, "scorer_version": str(getattr(scorer, "version", "")),
              "data_source": cfg.source, "data_fingerprint": store.data_fingerprint,
              "pairs": len(rows), "min": float(scores.min()), "max": float(scores.max())}
    out.with_suffix(".json").write_text(json.dumps(header, indent=2))
    return out

