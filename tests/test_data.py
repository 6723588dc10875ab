"""Preference data: schema errors, ties, corrupt images dropping exactly their pair, winner-first ordering."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.config import DataConfig
from bench.data import DataError, prepare_pairs
from tests.helpers import write_pairs


def _colour(img: Image.Image) -> tuple:
    return tuple(np.asarray(img).reshape(-1, 3).mean(0).round())


def test_corrupt_image_drops_exactly_its_pair(tmp_path):
    src = write_pairs(tmp_path / "ok.parquet", n=10, rewards=False)
    bad = write_pairs(tmp_path / "bad.parquet", n=10, rewards=False, corrupt={3: "jpg_1", 7: "jpg_0"})
    ok_store = prepare_pairs(DataConfig(source=str(src), cache_dir=str(tmp_path / "c1")), show_progress=False)
    bad_store = prepare_pairs(DataConfig(source=str(bad), cache_dir=str(tmp_path / "c2")), show_progress=False)
    assert bad_store.dropped["corrupt image"] == 2
    kept_ok = [int(r) for r in ok_store.rows if r not in (3, 7)]
    assert [int(r) for r in bad_store.rows] == kept_ok
    ok_by_row = {int(r): i for i, r in enumerate(ok_store.rows)}
    for i, row in enumerate(bad_store.rows):  # winners and losers stay aligned with their captions
        j = ok_by_row[int(row)]
        assert bad_store.captions[i] == ok_store.captions[j]
        for a, b in zip(bad_store.images(i), ok_store.images(j)):
            assert _colour(a) == _colour(b)
    assert "2 dropped (corrupt image)" in bad_store.report()


def test_winner_first_and_ties(tmp_path):
    rows = pd.read_parquet(write_pairs(tmp_path / "p.parquet", n=20, rewards=True))
    store = prepare_pairs(DataConfig(source=str(tmp_path / "p.parquet"), cache_dir=str(tmp_path / "c")),
                          show_progress=False)
    ties = int((rows.label_0 == 0.5).sum())
    assert ties > 0 and store.dropped["tie"] == ties and len(store) == 20 - ties
    for i, r in enumerate(store.rows):
        src = rows.iloc[int(r)]
        win = src.jpg_0 if src.label_0 == 1.0 else src.jpg_1
        assert _colour(store.images(i)[0]) == _colour(Image.open(io.BytesIO(win)).convert("RGB"))
        want = (src.reward_0, src.reward_1) if src.label_0 == 1.0 else (src.reward_1, src.reward_0)
        assert tuple(store.rewards[i]) == pytest.approx(want)
    kept = prepare_pairs(DataConfig(source=str(tmp_path / "p.parquet"), keep_ties=True, cache_dir=str(tmp_path / "c")),
                         show_progress=False)
    assert len(kept) == 20


def test_missing_column_and_empty(tmp_path):
    pd.DataFrame({"jpg_0": [b"x"], "caption": ["a"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['jpg_1', 'label_0'\]"):
        prepare_pairs(DataConfig(source=str(tmp_path / "bad.parquet")), show_progress=False)
    pd.DataFrame({"jpg_0": [b"x"], "jpg_1": [b"y"], "label_0": [0.5], "caption": ["a"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="no usable pairs"):
        prepare_pairs(DataConfig(source=str(tmp_path / "t.parquet"), cache_dir=str(tmp_path / "c")),
                      show_progress=False)
    with pytest.raises(DataError, match="not 'embedded', 'toy', an existing path"):
        prepare_pairs(DataConfig(source="nonsense"), show_progress=False)


def test_save_to_disk_source(tmp_path):
    import datasets

    df = pd.read_parquet(write_pairs(tmp_path / "p.parquet", n=6, rewards=False))
    datasets.Dataset.from_pandas(df).save_to_disk(str(tmp_path / "disk"))
    store = prepare_pairs(DataConfig(source=str(tmp_path / "disk"), cache_dir=str(tmp_path / "c")), show_progress=False)
    assert len(store) == int((df.label_0 != 0.5).sum())


def test_hub_id_offline_error_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="hf download nobody/no-such-dataset --repo-type dataset"):
        prepare_pairs(DataConfig(source="nobody/no-such-dataset"), show_progress=False)


def test_per_step_randomness_is_per_slot():
    """Flip and caption-dropout draws depend on (seed, step, slot) only: stable, and different across steps."""
    from bench.data import draw_item

    cfg = DataConfig(caption_dropout=0.5)
    a = [draw_item(0, 3, s, 2, "independent", cfg) for s in range(64)]
    assert a == [draw_item(0, 3, s, 2, "independent", cfg) for s in range(64)]
    assert a != [draw_item(0, 4, s, 2, "independent", cfg) for s in range(64)]
    assert any(d.flips[0] != d.flips[1] for d in a)
    assert all(d.flips[0] == d.flips[1] for d in (draw_item(0, 3, s, 2, "joint", cfg) for s in range(64)))
    assert 16 < sum(d.drop_caption for d in a) < 48
