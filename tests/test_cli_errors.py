"""A CLI that cannot be misused silently: every bad input gets one line naming the fix, a non-zero exit, no traceback,
and no folder a later `bench table` would read as a result; resume never records a config that is not the one
running; the defaults shown are the defaults run."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app


def _bad_data(tmp: Path) -> None:
    pd.DataFrame({"jpg_0": pd.Series([], dtype=object), "jpg_1": pd.Series([], dtype=object),
                  "label_0": pd.Series([], dtype=float), "caption": pd.Series([], dtype=str)}
                 ).to_parquet(tmp / "empty.parquet")
    (tmp / "zero.parquet").write_bytes(b"")
    (tmp / "notes.txt").write_text("not a dataset\n")


TRAIN = ["train", "--model", "tiny-sd15", "--quiet", "--name", "r", "steps=2"]

#: (case, argv, a phrase the one-line error must contain)
CASES = [
    ("empty parquet", [*TRAIN, "--data", "empty.parquet"], "empty"),
    ("zero-byte parquet", [*TRAIN, "--data", "zero.parquet"], "as parquet"),
    ("missing data file", [*TRAIN, "--data", "nope.parquet"], "does not exist"),
    ("not a dataset", [*TRAIN, "--data", "notes.txt"], "expected a save_to_disk folder"),
    ("negative lr", [*TRAIN, "train.lr=-1"], "train.lr must be > 0"),
    ("negative beta", [*TRAIN, "beta=-5"], "method.beta must be > 0"),
    ("negative checkpoint interval", [*TRAIN, "checkpoint_every=-1"], "train.checkpoint_every must be >= 0"),
    ("negative keep_checkpoints", [*TRAIN, "keep_checkpoints=-1"], "train.keep_checkpoints must be >= 0"),
    ("caption dropout above 1", [*TRAIN, "data.caption_dropout=2"], "data.caption_dropout must be in [0, 1]"),
    ("resolution not a multiple of 8", [*TRAIN, "model.resolution=30"], "model.resolution must be"),
    ("zero eval images", [*TRAIN, "eval.images_per_prompt=0"], "eval.images_per_prompt must be >= 1"),
    ("typo in a config key", [*TRAIN, "train.lrr=1"], "Did you mean 'lr'"),
    ("typo in a method", ["train", "--method", "dpoo", "--model", "tiny-sd15"], "Did you mean 'dpo'"),
    ("typo in a method, --help-config", ["train", "--method", "dpoo", "--help-config"], "Did you mean 'dpo'"),
    ("unknown model", ["train", "--model", "no-such-model"], "unknown model"),
    ("non-finite training", [*TRAIN, "train.lr=1e12", "max_grad_norm=0", "steps=6"], "non-finite"),
    ("--resume with no run", ["train", "--resume", "--model", "tiny-sd15"], "no resumable tiny-sd15 run"),
    ("eval with 0 steps", ["eval", "--model", "tiny-sd15", "--steps", "0"], "eval.steps must be >= 1"),
    ("eval with a scorer typo", ["eval", "--model", "tiny-sd15", "--metrics", "toy-pickscor"],
     "Did you mean 'toy-pickscore'"),
    ("eval of a folder that is no run", ["eval", "--checkpoint", "."], "not a bench run directory"),
    ("table of a folder that is no run", ["table", "nope"], "not a bench run directory"),
]


def _results(root: Path) -> list[Path]:
    """What a later `bench table` would read as a result: evaluations with a summary, or trained weights."""
    return sorted([*root.rglob("summary.json"), *root.rglob("weights")])


@pytest.mark.parametrize("case,argv,phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_leaves_nothing(case, argv, phrase, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _bad_data(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and phrase in errors[0], result.output
    assert _results(tmp_path) == []
    left = {p for p in set(tmp_path.rglob("*")) - before if p.is_dir() and (p / "run.json").is_file()
            and json.loads((p / "run.json").read_text()).get("status") != "failed"}  # a diverged run keeps its log
    assert not left, f"{case}: left {left}"


def _train(tmp: Path, *args: str):
    return CliRunner().invoke(app, ["train", "--model", "tiny-sd15", "--quiet", "--output-dir", str(tmp / "runs"),
                                    *args])


def test_resume_refuses_what_the_checkpoint_fixes_and_records_what_runs(tmp_path):
    r = _train(tmp_path, "--name", "R", "steps=3", "checkpoint_every=1", "train.lr=1e-5")
    assert r.exit_code == 0, r.output
    # changing the lr or the batch mid-run is refused, naming the keys
    bad = _train(tmp_path, "--resume", "--name", "R", "steps=5", "train.lr=1e-3", "batch_size=2")
    assert bad.exit_code == 2 and "train.lr: 1e-05 -> 0.001" in bad.output and "train.batch_size" in bad.output
    # the method is the saved run's when --method is not given; a different one is refused
    other = _train(tmp_path, "--resume", "--name", "R", "--method", "kto", "steps=5")
    assert other.exit_code == 2 and "method: 'dpo' -> 'kto'" in other.output
    # steps and logging can change: applied, recorded, and what is recorded is what ran
    ok = _train(tmp_path, "--resume", "--name", "R", "steps=5")
    assert ok.exit_code == 0, ok.output
    assert "resume: applied train.steps: 3 -> 5" in ok.output
    run = tmp_path / "runs" / "R"
    cfg = json.loads((run / "config.json").read_text())
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert cfg["train"]["steps"] == 5 and [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    assert {m["lr"] for m in metrics} == {cfg["train"]["lr"]} and cfg["train"]["batch_size"] == 4
    # resumed through the CLI (3 steps, then extended to 5) equals 5 uninterrupted steps, bit for bit
    u = _train(tmp_path, "--name", "U", "steps=5", "checkpoint_every=1", "train.lr=1e-5")
    assert u.exit_code == 0, u.output
    from safetensors.torch import load_file
    wr, wu = (load_file(str(tmp_path / "runs" / n / "weights/unet/diffusion_pytorch_model.safetensors"))
              for n in ("R", "U"))
    assert all(torch.equal(wr[k], wu[k]) for k in wr)
    # a run that wrote no checkpoint cannot be extended: refused, not silently retrained from step 0
    assert _train(tmp_path, "--name", "N", "steps=2").exit_code == 0
    n = _train(tmp_path, "--resume", "--name", "N", "steps=3")
    assert n.exit_code == 2 and "cannot be resumed or extended" in n.output and "Traceback" not in n.output
    # --resume without --name resumes the newest matching run (U, just written), and says so
    again = _train(tmp_path, "--resume", "steps=6")
    assert again.exit_code == 0 and "resuming the newest" in again.output and "runs/U" in again.output


def test_stale_temporary_checkpoints_are_removed(tmp_path):
    from bench import checkpoint

    root = tmp_path / "checkpoints"
    (root / ".tmp-step-00000004-999").mkdir(parents=True)  # a writer killed mid-checkpoint
    (root / ".tmp-step-00000004-999" / "model.safetensors").write_bytes(b"x" * 100)
    checkpoint.write(root, 5, lambda tmp: (tmp / "state.bin").write_bytes(b"ok"), {}, keep=2)
    assert [p.name for p in root.iterdir()] == ["step-00000005"]


def test_help_config_shows_the_resolved_values():
    r = CliRunner().invoke(app, ["train", "--method", "dpo", "--model", "toy", "--help-config"])
    assert r.exit_code == 0, r.output
    rows = {ln.split()[0]: ln for ln in r.output.splitlines()[1:]}
    # dataclass default 20 steps, batch 2, beta 5000; the toy DPO preset runs 200 / 32 / 200
    assert rows["train.steps"].split()[2:4] == ["20", "200"] and rows["train.steps"].endswith("*")
    assert rows["train.batch_size"].split()[2:4] == ["2", "32"]
    assert rows["method.beta"].split()[2:4] == ["5000.0", "200.0"]
    assert not rows["train.seed"].endswith("*")


def test_eval_defaults_are_the_family_protocol(tmp_path):
    """`bench eval --model toy` with no options evaluates under the toy family's protocol: the same base folder as
    `bench run` (spec and key), so the two are comparable and reuse each other."""
    from bench.config import family_config
    from bench.evaluate import base_run_dir, spec_from

    e = family_config("toy").eval
    assert (e.steps, e.cfg, e.images_per_prompt) == (20, 4.0, 4)
    from bench.worlds import DiffusersWorld
    from bench.config import RunConfig

    cfg = RunConfig()
    cfg.output_dir = str(tmp_path)
    cfg.model.name = "toy"
    cfg.eval = e
    assert DiffusersWorld().base_dir(cfg) == base_run_dir(tmp_path, "toy", spec_from(e, 32))
