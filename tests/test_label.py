"""`bench label`: raw reward scores stored once beside the data, read by training, never recomputed."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench.config import DataConfig
from bench.data import DataError, prepare_pairs
from bench.label import label
from bench.trainer import Trainer
from tests.helpers import tiny_config, write_pairs


class Redness:
    """A reward scorer with a raw score (like PickScore's cosine) and a scaled one."""

    name, version, higher_is_better = "redness", "1", True

    def __init__(self):
        self.calls = 0

    def raw_score(self, images, prompts):
        self.calls += len(images)
        return torch.tensor([0.1 + 0.2 * np.asarray(im)[..., 0].mean() / 255.0 for im in images])

    def score(self, images, prompts):
        return 100 * self.raw_score(images, prompts)


def test_label_then_train_reads_labels(tmp_path):
    src = write_pairs(tmp_path / "pairs.parquet", n=10, rewards=False)
    cfg = DataConfig(source=str(src), cache_dir=str(tmp_path / "cache"))
    scorer = Redness()
    out = label(cfg, scorer, "redness", tmp_path / "labels.parquet", progress=False)
    store = prepare_pairs(cfg, show_progress=False)
    assert scorer.calls == 2 * len(store)
    df = pd.read_parquet(out)
    assert len(df) == len(store) and df[["reward_0", "reward_1"]].to_numpy().max() <= 0.3  # raw, not x100

    run_cfg = tiny_config("smpo", "tiny-sd15", f"data.source={src}", f"data.labels={out}",
                          f"data.cache_dir={tmp_path / 'cache'}")
    tr = Trainer(run_cfg, tmp_path / "run", show_progress=False)
    p = tr.make_batch.labels
    raw = pd.read_parquet(out).set_index("row").loc[tr.store.rows]
    winner_first = np.where(tr.store.swap[:, None], raw[["reward_1", "reward_0"]], raw[["reward_0", "reward_1"]])
    n = (winner_first - 0.11543526500463486) / (0.28201571106910706 - 0.11543526500463486)
    assert np.allclose(p, 1 / (1 + np.exp(-(n[:, 0] - n[:, 1]))))
    tr.train()
    assert scorer.calls == 2 * len(store)  # training never rescored


def test_labels_for_other_data_are_refused(tmp_path):
    a = write_pairs(tmp_path / "a.parquet", n=6, seed=0, rewards=False)
    b = write_pairs(tmp_path / "b.parquet", n=6, seed=1, rewards=False)
    out = label(DataConfig(source=str(a), cache_dir=str(tmp_path / "c")), Redness(), "redness",
                tmp_path / "labels.parquet", progress=False)
    with pytest.raises(DataError, match="computed for other data"):
        prepare_pairs(DataConfig(source=str(b), labels=str(out), cache_dir=str(tmp_path / "c")), show_progress=False)


def test_smpo_without_labels_says_how_to_get_them(tmp_path):
    src = write_pairs(tmp_path / "pairs.parquet", n=6, rewards=False)
    with pytest.raises(ValueError, match="bench label"):
        Trainer(tiny_config("smpo", "tiny-sd15", f"data.source={src}"), tmp_path / "run", show_progress=False)
