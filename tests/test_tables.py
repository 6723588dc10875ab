"""Tables and plots from run directories: golden text files, schema refusal, cost labels, plots."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from evaluators.plots import image_grid, plot_score_distributions, plot_win_rates
from evaluators.rundir import RunDirError, read_run, write_eval
from evaluators.tables import reference_table, render, results_table, win_rate_table

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from make_golden import RUN_SPECS, expected_tables  # noqa: E402

RUNS = [GOLDEN / "rundirs" / name for name, *_ in RUN_SPECS]


@pytest.mark.parametrize("name", ["table.md", "table.csv", "table_reference.md", "winrate.md", "winrate.tex"])
def test_golden_tables(name):
    """Tables rendered from the committed run directories equal the committed text exactly.
    (If a deliberate change alters them: python tests/golden/make_golden.py, then review the diff.)"""
    assert expected_tables()[name] == (GOLDEN / name).read_text()


def test_results_table_values():
    df = results_table(RUNS)
    assert list(df.index) == ["sdxl-base", "dpo-sdxl", "smpo-sdxl"]
    assert list(df.columns[:5]) == ["PickScore", "HPSv2.1", "ImageReward", "Aesthetic", "artifacts"]
    summary = json.loads((RUNS[1] / "eval" / "golden" / "summary.json").read_text())
    assert df.loc["dpo-sdxl", "PickScore"] == summary["metrics"]["pickscore"]["median"]  # read, not recomputed
    assert df.loc["dpo-sdxl", "train GPU-h"] == pytest.approx(90.8)  # sampling and scoring excluded
    assert df.loc["smpo-sdxl", "fwd-eq/pair"] == pytest.approx(33.5)
    assert pd.isna(df.loc["sdxl-base", "pairs seen"])


def test_win_rate_table_vs_base():
    df = win_rate_table(RUNS, RUNS[0], metrics=["pickscore"], n_boot=200)
    assert list(df.index) == ["dpo-sdxl", "smpo-sdxl"]  # the baseline itself is skipped
    assert (df["vs"] == "sdxl-base").all() and (df["pairs"] == 12).all() and (df["prompts"] == 6).all()
    assert (df["PickScore lo"] <= df["PickScore win%"]).all() and (df["PickScore win%"] <= df["PickScore hi"]).all()


def test_cpu_runs_are_labelled_cpu_hours(tmp_path):
    run = tmp_path / "cpu-run"
    shutil.copytree(RUNS[1], run)
    cost = json.loads((run / "cost.json").read_text())
    cost["device"] = {"kind": "cpu", "name": "x86_64", "count": 1, "threads": 2}
    (run / "cost.json").write_text(json.dumps(cost))
    df = results_table([run])
    assert "train CPU-h" in df.columns and df.loc["dpo-sdxl", "device"] == "cpu (2 threads)"
    assert "train device-h" in results_table([run, RUNS[2]]).columns


def test_reference_table():
    ref = reference_table(model="SD1.5")
    assert "paper: SmPO-SD1.5" in ref.index and "paper: SmPO-SDXL" not in ref.index
    assert ref.loc["paper: SmPO-SD1.5", "ImageReward"] == pytest.approx(0.885)
    assert ref.loc["paper: KTO-SD1.5", "train GPU-h"] == 1056
    assert reference_table(model="tiny-sd15").empty
    with pytest.warns(UserWarning, match="no paper numbers"):
        assert len(results_table(RUNS, with_reference=True, reference_model="tiny-sd15")) == 3
    csv = pd.read_csv(GOLDEN.parent.parent / "results" / "reference" / "paper_results.csv")
    main = csv[csv["table"] == "main"]
    assert main["note"].str.contains("secondary summary").all()


def test_unknown_schema_version_refused(tmp_path):
    run = tmp_path / "future"
    shutil.copytree(RUNS[0], run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "schema_version": 2}))
    with pytest.raises(RunDirError, match=r"schema_version 2 is newer than this bench \(1\): upgrade bench"):
        results_table([run])
    (run / "run.json").write_text(json.dumps(info))
    summary = run / "eval" / "golden" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "schema_version": 7}))
    with pytest.raises(RunDirError, match="schema_version 7 is newer"):
        read_run(run)


def test_write_eval_validates_columns(tmp_path):
    scores = pd.read_parquet(RUNS[0] / "eval" / "golden" / "scores.parquet").drop(columns=["seed"])
    with pytest.raises(ValueError, match="lack the columns"):
        write_eval(tmp_path, "golden", "x", scores, {"pickscore": {"scorer_version": "1", "higher_is_better": True}},
                   {"sampler": "ddim", "steps": 1, "cfg": 1.0, "resolution": 32, "seed": 0})


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match=r"is not a bench run directory \(missing run.json\)"):
        read_run(tmp_path)


def test_prompt_set_mismatch_refused(tmp_path):
    run = tmp_path / "other"
    shutil.copytree(RUNS[1], run)
    summary = run / "eval" / "golden" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "prompt_set_hash": "0123456789abcdef"}))
    with pytest.raises(RunDirError, match="different prompts"):
        win_rate_table([run], RUNS[0])
    with pytest.raises(RunDirError, match="no evaluation on 'hpdv2'"):
        results_table([RUNS[0]], prompt_set="hpdv2")


def test_render_rejects_unknown_format():
    with pytest.raises(ValueError, match="md, csv or latex"):
        render(results_table(RUNS), "html")


def _with_images(tmp_path) -> list[Path]:
    out = []
    for i, src in enumerate(RUNS):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        scores = pd.read_parquet(dst / "eval" / "golden" / "scores.parquet")
        for rec in scores.to_dict("records"):
            f = dst / "eval" / "golden" / rec["image_path"]
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 24), (60 * i, 20 * rec["prompt_id"], 120)).save(f)
        out.append(dst)
    return out


def test_plots_write_nonempty_pngs(tmp_path):
    runs = _with_images(tmp_path)
    paths = [plot_win_rates(runs, runs[0], tmp_path / "plots" / "win.png", n_boot=100),
             plot_score_distributions(runs, tmp_path / "plots" / "dist.png"),
             image_grid(runs, tmp_path / "plots" / "grid.png", max_prompts=3, cell=64)]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100
    with Image.open(paths[2]) as im:
        assert im.size == (240 + 3 * 64, 28 + 3 * 64)


def test_image_grid_missing_images_error(tmp_path):
    with pytest.raises(RunDirError, match="is missing"):
        image_grid(RUNS, tmp_path / "grid.png")
