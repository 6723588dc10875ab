"""Prompt sets: user files, HPDv2 from a folder, Pick-a-Pic parquet, errors, hash stability. Nothing is downloaded."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from evaluators.prompts import (HPDV2_STYLES, PROMPT_SETS, PromptSet, PromptSetError, load_hpdv2, load_pickapic_test,
                                load_prompts)


def _hpdv2_folder(root, per_style=3, skip=()):
    root.mkdir(parents=True, exist_ok=True)
    for style in HPDV2_STYLES:
        if style not in skip:
            (root / f"{style}.json").write_text(json.dumps([f"{style} prompt {i}" for i in range(per_style)]))
    return root


def test_txt_skips_blank_lines(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a cat\n\n  \na dog  \n")
    ps = load_prompts(str(f))
    assert ps.prompts == ["a cat", "a dog"] and ps.name == "p" and ps.styles is None


def test_csv_prompt_or_caption_column(tmp_path):
    f = tmp_path / "p.csv"
    pd.DataFrame({"id": [1, 2], "caption": ["a, comma", "b"]}).to_csv(f, index=False)
    assert load_prompts(str(f)).prompts == ["a, comma", "b"]
    g = tmp_path / "q.csv"
    pd.DataFrame({"x": [1]}).to_csv(g, index=False)
    with pytest.raises(PromptSetError, match="'prompt' or 'caption'"):
        load_prompts(str(g))


def test_jsonl(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "one"}\n\n{"caption": "two", "x": 1}\n')
    assert load_prompts(str(f)).prompts == ["one", "two"]


def test_limit(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("\n".join(f"p{i}" for i in range(10)))
    ps = load_prompts(str(f), limit=3)
    assert ps.prompts == ["p0", "p1", "p2"] and ps.name == "p-n3"


def test_hpdv2_from_folder_non_strict(tmp_path):
    folder = _hpdv2_folder(tmp_path / "hpd")
    ps = load_hpdv2(folder, strict=False)
    assert len(ps) == 12 and ps.styles[:3] == ["anime"] * 3 and ps.styles[-1] == "photo"
    assert ps.prompts[3] == "concept-art prompt 0"
    assert load_prompts(f"hpdv2:{folder}?strict=0").prompts == ps.prompts
    # a balanced subset keeps every style
    sub = ps.subset(4)
    assert sorted(sub.styles) == sorted(HPDV2_STYLES) and sub.name == "hpdv2-n4"


def test_hpdv2_strict_counts(tmp_path):
    folder = _hpdv2_folder(tmp_path / "hpd")
    with pytest.raises(PromptSetError, match="800 per style"):
        load_hpdv2(folder)
    full = _hpdv2_folder(tmp_path / "full", per_style=800)
    assert len(load_prompts(f"hpdv2:{full}")) == 3200


def test_hpdv2_missing_files(tmp_path):
    folder = _hpdv2_folder(tmp_path / "hpd", skip=("photo", "anime"))
    with pytest.raises(PromptSetError, match=r"lacks anime.json, photo.json.*hf download zhwang/HPDv2"):
        load_hpdv2(folder, strict=False)


def test_hpdv2_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PromptSetError, match="not available offline.*hf download"):
        load_hpdv2("zhwang/HPDv2-not-cached")


def test_pickapic_parquet_unique_captions(tmp_path):
    folder = tmp_path / "pap" / "data"
    folder.mkdir(parents=True)
    pd.DataFrame({"caption": ["b", "a", "b"], "label_0": [1.0, 0.0, 0.5]}).to_parquet(
        folder / "test_unique-00000-of-00001.parquet")
    pd.DataFrame({"caption": ["zzz"]}).to_parquet(folder / "test-00000-of-00001.parquet")
    pd.DataFrame({"caption": ["train"]}).to_parquet(folder / "train-00000-of-00001.parquet")
    ps = load_pickapic_test(tmp_path / "pap")
    assert ps.prompts == ["b", "a"] and ps.name == "pickapic-test"


def test_hash_stable_and_content_sensitive():
    a = PromptSet("x", ["a cat", "a dog"], None, "test")
    assert a.hash == PromptSet("renamed", ["a cat", "a dog"], None, "elsewhere").hash
    assert a.hash == "f658c42ad55fc07e"  # sha256("a cat\na dog")[:16]: must never change
    assert a.hash != PromptSet("x", ["a dog", "a cat"], None, "test").hash


def test_unknown_name_suggests():
    with pytest.raises(PromptSetError, match="Did you mean 'hpdv2'"):
        load_prompts("hpdv3")
    assert {"hpdv2", "pickapic-test", "partiprompts"} <= set(PROMPT_SETS.names())


def test_unsupported_file_type(tmp_path):
    f = tmp_path / "p.xml"
    f.write_text("<x/>")
    with pytest.raises(PromptSetError, match="unsupported prompt file"):
        load_prompts(str(f))
