"""`bench run` end to end on the tiny model: train, evaluate run and base model, table and win-rate file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from evaluators.scorers.registry import SCORERS
from tests.helpers import MeanGreen


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
    metrics = ["toy-pickscore", "toy-hps", "toy-imagereward", "toy-aesthetic", "toy-fidelity", "toy-quality"]
    assert sorted(wins.metric) == sorted(metrics) and (wins.n == 16).all() and (wins.n_prompts == 8).all()
    assert ((wins.lo <= wins.win_rate) & (wins.win_rate <= wins.hi) & (wins.lo >= 0) & (wins.hi <= 100)).all()
    assert (wins.wins + wins.ties + wins.losses == wins.n).all()
    table = (run / "table.md").read_text()
    assert "| toy |" in table and all(m in table for m in metrics)
    base = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("base-toy-")]
    assert len(base) == 1


def test_bench_sweep_selects_on_validation_and_reports_on_test(tmp_path):
    """`bench sweep` on the toy world (two recipes, reduced steps and prompts): five configurations each, the selected
    one is the best on the validation prompts, and only it is evaluated on the test prompts."""
    from bench.config import resolve
    from bench.models import resolve_model
    from bench.sweep import grid
    from methods import get_method

    for method, n_beta in (("dpo", 2), ("sft", 0)):
        cfg, _ = resolve(method, "toy", resolve_model("toy")[2], get_method(method), None, [])
        points = grid(cfg)
        assert len(points) == 5 and sum("method.beta" in o[0] for _, o in points) == n_beta
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, [
        "sweep", "--only", "sft,dpo", "--output-dir", str(out), "--quiet", "--test-images-per-prompt", "2",
        "steps=1", "eval.limit=4", "eval.images_per_prompt=1", "eval.steps=2", "eval.metrics=toy-pickscore,toy-fidelity"])
    assert result.exit_code == 0, result.output
    val = pd.read_csv(out / "report" / "validation.csv")
    names = json.loads((out / "report" / "sweep.json").read_text())
    assert (names["val_prompts"], names["test_prompts"]) == ("toy-val-n4", "toy-test-n4")
    assert len(val) == 10 and val.groupby("recipe").selected.sum().tolist() == [1, 1]
    for recipe, rows in val.groupby("recipe"):
        best = rows.loc[rows["val toy-pickscore mean"].idxmax()]
        assert bool(best.selected)
        for r in rows.itertuples():
            assert (Path(r.run) / "eval" / "toy-val-n4" / "summary.json").is_file()
            assert (Path(r.run) / "eval" / "toy-test-n4").is_dir() == bool(r.selected)
    wins = pd.read_csv(out / "report" / "win_rates.csv")
    assert sorted(set(wins.metric)) == ["toy-fidelity", "toy-pickscore"] and (wins.n == 8).all()
    assert (out / "report" / "grid.png").is_file() and "Selected configurations" in (out / "report" / "README.md").read_text()
    # resumed: every run is reused, and the sweep's recorded compute time still counts what the first invocation ran
    result = CliRunner().invoke(app, [
        "sweep", "--only", "sft,dpo", "--output-dir", str(out), "--quiet", "--test-images-per-prompt", "2",
        "steps=1", "eval.limit=4", "eval.images_per_prompt=1", "eval.steps=2", "eval.metrics=toy-pickscore,toy-fidelity"])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "report" / "sweep.json").read_text())
    configs = [f"{r.recipe}-{r.configuration}" for r in val.itertuples()]
    assert all(again["recorded_seconds"][k] == names["recorded_seconds"][k] > 0 for k in configs)
    assert again["recorded_seconds_total"] >= names["recorded_seconds_total"] > 0
    assert "Recorded compute time of the whole sweep" in (out / "report" / "README.md").read_text()


def test_toy_validation_writes_its_four_facts(tmp_path):
    """`python -m bench.toy.validate` end to end at reduced size: SFT and DPO selected by the sweep, the random-change
    control with the selected DPO run's per-tensor update norm, the four verdicts and the attribute accuracies."""
    from safetensors.torch import load_file

    from bench.toy import MODEL_DIR
    from bench.toy.validate import WEIGHTS, validate

    overrides = ["steps=2", "eval.limit=4", "eval.images_per_prompt=1", "eval.steps=2",
                 "eval.metrics=toy-pickscore,toy-fidelity"]
    result = validate(tmp_path / "out", tmp_path / "runs", overrides, test_images_per_prompt=2,
                      record_dir=tmp_path / "record")
    assert len(result["facts"]) == 4 and all(isinstance(v, bool) for v in result["facts"].values())
    assert set(result["attribute_accuracy"]) == {"base", "sft", "dpo", "random-like-dpo"}
    assert set(result["panel_change"]) == {"sft", "dpo", "random-like-dpo"}
    assert "mean dU [95% CI]" in (tmp_path / "out" / "validation.md").read_text()
    for f in ("validation.md", "validation.json", "grid.png"):
        assert (tmp_path / "out" / f).is_file()
    base = load_file(str(MODEL_DIR / "unet" / WEIGHTS))
    dpo = load_file(str(Path(result["runs"]["dpo"]) / "weights" / "unet" / WEIGHTS))
    rand = load_file(str(Path(result["runs"]["random-like-dpo"]) / "weights" / "unet" / WEIGHTS))
    for k in list(base)[:5]:  # the same per-tensor norm of the change, another direction
        d_dpo, d_rand = dpo[k].float() - base[k].float(), rand[k].float() - base[k].float()
        assert torch.isclose(d_dpo.norm(), d_rand.norm(), rtol=1e-3, atol=1e-6)
    assert result["random_change_norm"] > 0
    wins = pd.DataFrame(result["win_rates"])
    assert set(wins.run) == {Path(p).name for p in result["runs"].values()} and (wins.n == 8).all()
    # on a fresh machine, from the record: the selected DPO run trains again (its weights are not recorded) for the
    # control's update size, and every number comes out the same
    assert (tmp_path / "record" / "random-like-dpo" / "eval").is_dir()
    again = validate(tmp_path / "out2", tmp_path / "runs2", overrides, test_images_per_prompt=2,
                     record_dir=tmp_path / "record")
    assert again["random_change_norm"] == pytest.approx(result["random_change_norm"], rel=1e-6)
    assert again["facts"] == result["facts"] and again["attribute_accuracy"] == result["attribute_accuracy"]
    pd.testing.assert_frame_equal(pd.DataFrame(again["win_rates"]), wins)


def test_sweep_wide_grid_and_a_diverged_configuration(tmp_path, monkeypatch):
    """The wide grid gives every method the same eight configurations, the learning rate over three decades; a
    configuration whose training diverges is recorded (NaN, never selected) and the sweep goes on; asking for more
    validation seeds re-evaluates the finished runs without retraining them."""
    from bench import trainer
    from bench.config import ConfigError, resolve
    from bench.models import resolve_model
    from bench.sweep import grid, sweep
    from methods import get_method

    for method in ("dpo", "sft"):
        cfg, _ = resolve(method, "toy", resolve_model("toy")[2], get_method(method), None, [])
        lrs = sorted(float(o[0].split("=")[1]) for _, o in grid(cfg, "wide") if o[0].startswith("train.lr="))
        assert len(grid(cfg, "wide")) == 8 and lrs[-1] / lrs[0] >= 300
    with pytest.raises(ConfigError, match="narrow or wide"):
        grid(cfg, "huge")
    real_train = trainer.train

    trained = []

    def train_or_diverge(cfg, run_dir, **kw):
        trained.append(run_dir.name)
        if run_dir.name == "sft-lr4x":
            raise trainer.NonFiniteError("non-finite loss nan at step 1")
        return real_train(cfg, run_dir, **kw)

    monkeypatch.setattr(trainer, "train", train_or_diverge)
    report = sweep("toy", tmp_path / "sweep", ["steps=1", "eval.limit=4", "eval.images_per_prompt=1", "eval.steps=2",
                                               "eval.metrics=toy-pickscore"], only=["sft"], test_images_per_prompt=1,
                   quiet=True, echo=lambda m: None)
    val = pd.read_csv(report / "validation.csv").set_index("configuration")
    assert np.isnan(val.loc["lr4x", "val toy-pickscore mean"]) and not val.loc["lr4x", "selected"]
    assert val.selected.sum() == 1
    # more validation seeds: every finished run is re-evaluated (not retrained) with them; the diverged one retrains
    n_trained = len(trained)
    report = sweep("toy", tmp_path / "sweep", ["steps=1", "eval.limit=4", "eval.images_per_prompt=1", "eval.steps=2",
                                               "eval.metrics=toy-pickscore"], only=["sft"], test_images_per_prompt=1,
                   quiet=True, echo=lambda m: None, val_images_per_prompt=2)
    assert trained[n_trained:] == ["sft-lr4x"]
    info = json.loads((report / "sweep.json").read_text())
    assert info["val_images_per_prompt"] == 2
    val_eval = Path(info["selected"]["sft"]["run"]) / "eval" / info["val_prompts"]
    summary = json.loads((val_eval / "summary.json").read_text())
    assert summary["images_per_prompt"] == 2 and "(2 seeds per prompt)" in (report / "README.md").read_text()
    # --steps-factor: every configuration trains for that many times its preset's steps (here the override's 1)
    report = sweep("toy", tmp_path / "sweep-x2", ["steps=1", "eval.limit=4", "eval.images_per_prompt=1",
                                                  "eval.steps=2", "eval.metrics=toy-pickscore"], only=["sft"],
                   test_images_per_prompt=1, quiet=True, echo=lambda m: None, steps_factor=2)
    saved = [Path(r) / "config.json" for r in pd.read_csv(report / "validation.csv").run]  # lr4x "diverges" unsaved
    assert {json.loads(f.read_text())["train"]["steps"] for f in saved if f.is_file()} == {2} and len(saved) == 5
    assert json.loads((report / "sweep.json").read_text())["steps_factor"] == 2
    # another budget or sampler into the same folder: refused, never a silent reuse of the finished runs
    for changed, says in (("steps=2", "trained for 1 steps, this sweep asks for 2"),
                          ("eval.cfg=2.0", "evaluation used cfg")):
        with pytest.raises(ConfigError, match=says):
            sweep("toy", tmp_path / "sweep", ["steps=1", "eval.limit=4", "eval.images_per_prompt=1", "eval.steps=2",
                                              "eval.metrics=toy-pickscore", changed], only=["sft"],
                  test_images_per_prompt=1, quiet=True, echo=lambda m: None, val_images_per_prompt=2)


def test_sweep_record_resumes_on_a_fresh_machine(tmp_path, monkeypatch):
    """`bench sweep --record DIR` keeps a small copy of every run folder (no weights or checkpoints, only the images
    the report shows); a sweep into an empty output folder with the same record reports the same without training or
    evaluating anything again, and a recipe whose test evaluation was not recorded trains its selected
    configuration again (same seeds, same result) for it. The toy attribute shares survive the copy through the
    attributes.json they leave beside the images, and a copy without it is an error, not a share of the few images."""
    from bench import trainer
    from bench.sweep import RECORD_SEEDS, sweep
    from bench.toy.validate import attribute_accuracy
    from bench.worlds import DiffusersWorld

    overrides = ["steps=1", "eval.limit=4", "eval.images_per_prompt=3", "eval.steps=2", "eval.metrics=toy-pickscore"]
    kw = dict(only=["sft"], test_images_per_prompt=3, quiet=True, echo=lambda m: None, record_dir=tmp_path / "record")
    first = sweep("toy", tmp_path / "a", overrides, **kw)
    info = json.loads((first / "sweep.json").read_text())
    selected, test = Path(info["selected"]["sft"]["run"]), info["test_prompts"]
    attributes = attribute_accuracy(selected / "eval" / test)  # computed from all 12 images, kept beside them
    sweep("toy", tmp_path / "a", overrides, **kw)  # everything reused; the record gets attributes.json
    record = tmp_path / "record"
    assert {p.name for p in record.iterdir()} == {p.name for p in (tmp_path / "a").iterdir()
                                                  if (p / "run.json").is_file()}
    assert not [p for p in record.rglob("*") if p.name in ("weights", "checkpoints")]
    for images in record.glob("*/eval/*/images"):  # 4 prompts x the first RECORD_SEEDS of 3 seeds
        assert len(list(images.glob("*.png"))) == 4 * RECORD_SEEDS
    assert (record / selected.name / "eval" / test / "attributes.json").is_file()

    def refuse(*a, **k):
        raise AssertionError("a recorded configuration was trained or evaluated again")

    monkeypatch.setattr(trainer, "train", refuse)
    monkeypatch.setattr(DiffusersWorld, "evaluate", refuse)
    second = sweep("toy", tmp_path / "b", overrides, **kw)
    for f in ("win_rates.csv", "validation.csv"):
        a, b = (pd.read_csv(r / f).drop(columns="run", errors="ignore") for r in (first, second))
        pd.testing.assert_frame_equal(a, b)
    assert (second / "grid.png").is_file() and (second / "report.html").is_file()
    assert attribute_accuracy(tmp_path / "b" / selected.name / "eval" / test) == attributes
    (tmp_path / "b" / selected.name / "eval" / test / "attributes.json").unlink()
    with pytest.raises(FileNotFoundError, match="only some of its 12 images"):
        attribute_accuracy(tmp_path / "b" / selected.name / "eval" / test)

    # the selected run's test evaluation lost: only that configuration trains again, with the same result
    shutil.rmtree(record / selected.name / "eval" / test)
    trained = []
    monkeypatch.undo()
    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", lambda cfg, run_dir, **k: trained.append(run_dir.name)
                        or real_train(cfg, run_dir, **k))
    third = sweep("toy", tmp_path / "c", overrides, **kw)
    assert trained == [selected.name]
    a, c = (pd.read_csv(r / "win_rates.csv") for r in (first, third))
    pd.testing.assert_frame_equal(a, c)
