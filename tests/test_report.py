"""``bench report``: one self-contained HTML page of a comparison, and its check in a real headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them, as the README
says); where they are absent those tests are skipped with the install command as the reason.
"""
from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from evaluators.browser import BrowserUnavailable, check_page, find_browser
from evaluators.report import build_report, config_differences
from evaluators.tables import load_runs
from tests.test_tables import _with_images


def _browser_or_skip():
    try:
        find_browser()
    except BrowserUnavailable as err:
        pytest.skip(str(err))


def test_report_is_self_contained_and_complete(tmp_path):
    runs = _with_images(tmp_path)
    page = build_report(runs, baseline=runs[0], max_prompts=3, images_per_prompt=1, cell=64)
    for section in ("scores", "wins", "pairwise", "distributions", "grid", "configs"):
        assert f'<section id="{section}">' in page
    srcs = re.findall(r'(?:src|href)="([^"#]*)"', page)
    assert srcs and all(s.startswith("data:") for s in srcs), [s[:40] for s in srcs if not s.startswith("data:")]
    assert "http://" not in page and "https://" not in page and "<script" not in page
    grid = page[page.index('<section id="grid">'):page.index('<section id="', page.index('<section id="grid">') + 1)]
    assert grid.count("<img") == 3 * len(runs)  # the same 3 prompts in every run's column
    assert re.search(r"\d\.\d+ \[\d\.\d+, \d\.\d+\]", page)  # a median with its interval


def test_config_differences_lists_only_what_differs(tmp_path):
    runs = _with_images(tmp_path)[:2]
    for run, lr in zip(runs, (1e-5, 2e-5)):
        (run / "config.json").write_text(json.dumps({"method": "dpo", "train": {"lr": lr, "steps": 10}}))
    diff = config_differences(load_runs(runs))
    assert "train.lr" in diff.index and "train.steps" not in diff.index and "method" not in diff.index
    assert diff.loc["train.lr"].tolist() == ["1e-05", "2e-05"]


def test_bench_report_cli_writes_the_page(tmp_path):
    runs = _with_images(tmp_path)
    out = tmp_path / "r" / "report.html"
    res = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out), "--baseline", str(runs[0])])
    assert res.exit_code == 0, res.output
    assert out.is_file() and out.read_text().startswith("<!doctype html>")
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(out)])
    assert bad.exit_code == 2 and "not a bench run directory" in bad.output


def test_report_opens_in_headless_chromium(tmp_path):
    """The page loads in a real browser with no console errors, shows the tables and the image grid, every image
    decodes, nothing is fetched from outside the page; a full-page screenshot is taken."""
    _browser_or_skip()
    runs = _with_images(tmp_path)
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out), "--baseline", str(runs[0]),
                                   "--check"])
    assert res.exit_code == 0, res.output
    assert "no console errors" in res.output
    result = check_page(out, screenshot=tmp_path / "shot.png")
    assert result.problems == [] and result.console_errors == []
    assert result.tables >= 4 and result.grid_images >= len(runs) and result.broken_images == []
    assert "Scores" in result.headings and "Same prompts, same seeds" in result.headings
    with Image.open(tmp_path / "shot.png") as im:
        assert im.width == 1280 and im.height > 900


def test_browser_check_catches_a_broken_page(tmp_path):
    """The check can fail: a script error, an image that does not decode and a remote fetch are all reported."""
    _browser_or_skip()
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><head><title>x</title><link rel="icon" href="data:,"></head><body>'
                    '<table><tr><td>1</td></tr></table><img src="data:image/png;base64,AAAA">'
                    '<img src="http://127.0.0.1:9/missing.png"><script>notAFunction();</script></body></html>')
    result = check_page(page)
    assert any("notAFunction" in e for e in result.console_errors)
    assert len(result.broken_images) == 2
    assert any("127.0.0.1" in u for u in result.external_requests)
    assert len(result.problems) >= 4
