"""`bench run` end to end on the tiny model: train, evaluate run and base model, table and win-rate file."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from bench.cli import app
from evaluators.scorers.registry import SCORERS


class MeanGreen:
    name, version, higher_is_better = "mean-green", "1", True

    @classmethod
    def from_pretrained(cls, source=None, **kwargs):
        return cls()

    def score(self, images, prompts):
        return torch.tensor([np.asarray(im)[..., 1].mean() / 255.0 for im in images])


def test_bench_run_writes_run_table_and_win_rates(tmp_path, monkeypatch):
    monkeypatch.setattr(SCORERS, "_items", {**SCORERS._items, "mean-green": MeanGreen})
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on a white background\na blue square on a black background\n")
    result = CliRunner().invoke(app, [
        "run", "--method", "dpo", "--model", "tiny-sd15", "--output-dir", str(tmp_path / "runs"), "--name", "r",
        "--quiet", "steps=2", "eval.enabled=true", f"eval.prompts={prompts}", "eval.metrics=mean-green", "eval.steps=2",
        "eval.images_per_prompt=2"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "r"
    for f in ("run.json", "config.json", "env.json", "metrics.jsonl", "cost.json", "weights/unet/config.json",
              "table.md", "win_rates.csv", "grid.png", "eval/prompts/summary.json", "eval/prompts/scores.parquet"):
        assert (run / f).is_file(), f
    wins = pd.read_csv(run / "win_rates.csv")
    assert list(wins.metric) == ["mean-green"] and wins.n.tolist() == [4] and 0 <= wins.win_rate[0] <= 100  # percent
    assert wins.lo[0] <= wins.win_rate[0] <= wins.hi[0]
    table = (run / "table.md").read_text()
    assert "| r |" in table and "mean-green" in table and "win%" in table
    base = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("base-tiny-sd15-")]
    assert len(base) == 1 and json.loads((base[0] / "run.json").read_text())["kind"] == "eval"
    scores = pd.read_parquet(run / "eval/prompts/scores.parquet")
    base_scores = pd.read_parquet(base[0] / "eval/prompts/scores.parquet")
    assert scores.seed.tolist() == base_scores.seed.tolist()  # same seeds for run and base


def test_bench_run_on_the_toy_world_defaults(tmp_path):
    """The README's main command on the shipped toy world (reduced steps, prompts and sampler steps): the default
    model, data, prompts and the four toy scorers, end to end."""
    result = CliRunner().invoke(app, [
        "run", "--method", "dpo", "--output-dir", str(tmp_path / "runs"), "--name", "toy", "--quiet",
        "steps=2", "eval.limit=8", "eval.images_per_prompt=2", "eval.steps=4"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "toy"
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["model"]["name"] == "toy" and resolved["data"]["source"] == "toy"
    for f in ("run.json", "env.json", "metrics.jsonl", "cost.json", "weights/unet/config.json", "table.md",
              "win_rates.csv", "grid.png"):
        assert (run / f).is_file(), f
    wins = pd.read_csv(run / "win_rates.csv")
    metrics = ["toy-pickscore", "toy-hps", "toy-imagereward", "toy-aesthetic"]
    assert sorted(wins.metric) == sorted(metrics) and (wins.n == 16).all() and (wins.n_prompts == 8).all()
    assert ((wins.lo <= wins.win_rate) & (wins.win_rate <= wins.hi) & (wins.lo >= 0) & (wins.hi <= 100)).all()
    assert (wins.wins + wins.ties + wins.losses == wins.n).all()
    table = (run / "table.md").read_text()
    assert "| toy |" in table and all(m in table for m in metrics)
    base = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("base-toy-")]
    assert len(base) == 1
