"""Plots from run directories (pure functions of what they hold, like ``evaluators.tables``).

matplotlib is used through ``Figure`` + the Agg canvas directly, so importing this module changes no global
backend (safe in notebooks). Each function writes one PNG and returns its path.

* ``plot_win_rates``       win rates over a baseline with their bootstrap CIs as error bars (one bar per run and
                           metric, a dashed line at 50%);
* ``plot_score_distributions``  one panel per metric: the per-image scores of every run as box plots;
* ``image_grid``           rows: prompts (their text as row labels), columns: runs; the stored images.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, ImageOps

from evaluators.rundir import RunDirError
from evaluators.tables import _labels, _order_metrics, _prompt_set, display_name, load_runs, win_rates


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_win_rates(run_dirs: Iterable, baseline_dir, path: str | os.PathLike, prompt_set: str | None = None,
                   metrics: Sequence[str] | None = None, tie_tol: float = 0.0, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> Path:
    """Grouped bars: x = metric, one bar per run, error bars = the bootstrap CI (prompts resampled)."""
    long = win_rates(run_dirs, baseline_dir, prompt_set, metrics, tie_tol, n_boot, seed, level)
    runs = list(dict.fromkeys(long["run"]))
    mets = _order_metrics(set(long["metric"])) if metrics is None else list(metrics)
    width = 0.8 / len(runs)
    fig = Figure(figsize=(max(4.0, 1.6 * len(mets) + 1.5), 3.6))
    ax = fig.add_subplot()
    x = np.arange(len(mets))
    for i, run in enumerate(runs):
        sub = long[long["run"] == run].set_index("metric").reindex(mets)
        rate = sub["win_rate"].to_numpy(dtype=float)
        err = np.vstack([rate - sub["lo"].to_numpy(dtype=float), sub["hi"].to_numpy(dtype=float) - rate])
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, rate, width, yerr=err, capsize=3, label=run)
    ax.axhline(50.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xticks(x, [display_name(m) for m in mets])
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"win rate over {long['baseline'].iloc[0]} (%)")
    ax.set_title(f"paired win rate, {level * 100:g}% CI (prompts resampled)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_score_distributions(run_dirs: Iterable, path: str | os.PathLike, prompt_set: str | None = None,
                             metrics: Sequence[str] | None = None) -> Path:
    """A grid with one panel per metric; in each, one box plot of per-image scores per run (median line)."""
    runs = load_runs(run_dirs)
    ps = _prompt_set(runs, prompt_set)
    evals = [r.eval(ps) for r in runs]
    mets = list(metrics) if metrics is not None else _order_metrics(set().union(*(e.metrics for e in evals)))
    labels = _labels(runs)
    cols = min(2, len(mets))
    rows = -(-len(mets) // cols)
    fig = Figure(figsize=(max(4.0, 0.9 * len(runs) + 2) * cols, 3.2 * rows))
    for i, m in enumerate(mets):
        ax = fig.add_subplot(rows, cols, i + 1)
        data, names = [], []
        for label, e in zip(labels, evals):
            if m in e.metrics:
                data.append(e.scores()[m].to_numpy(dtype=float))
                names.append(label)
        ax.boxplot(data, showmeans=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
        hib = next(e.metrics[m].higher_is_better for e in evals if m in e.metrics)
        ax.set_title(f"{display_name(m)} ({'higher' if hib else 'lower'} is better)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def grid_image(run_name: str, evaluation, scores, prompt_id: int, image_index: int) -> Path:
    """The stored image file of (prompt, image index) in one run's evaluation (``scores`` indexed by prompt_id and
    image_index); a missing row or file is a RunDirError naming it."""
    if (prompt_id, image_index) not in scores.index:
        raise RunDirError(f"run {run_name!r} has no image for prompt {prompt_id}, image {image_index}")
    file = evaluation.image_file(str(scores.loc[(prompt_id, image_index), "image_path"]))
    if not file.is_file():
        raise RunDirError(f"image {file} is missing: the run directory holds no images for this prompt set")
    return file


def thumbnail(file: Path, cell: int) -> Image.Image:
    """The image fitted into a ``cell`` x ``cell`` box; tiny (toy) images are scaled up with crisp pixels."""
    with Image.open(file) as im:
        small_image = im.width * 2 <= cell
        return ImageOps.contain(im.convert("RGB"), (cell, cell),
                                Image.Resampling.NEAREST if small_image else Image.Resampling.BICUBIC)


def image_grid(run_dirs: Iterable, path: str | os.PathLike, prompt_set: str | None = None,
               prompt_ids: Sequence[int] | None = None, max_prompts: int = 4, image_index: int = 0,
               cell: int = 256, label_width: int = 240) -> Path:
    """Rows: prompts (the first ``max_prompts``, or ``prompt_ids``), columns: runs; image ``image_index`` of each.

    The runs must hold the same prompt set (same hash). Prompt texts are drawn as row labels, run names as
    column headers. A missing image file is an error naming it.
    """
    runs = load_runs(run_dirs)
    ps = _prompt_set(runs, prompt_set)
    evals = [r.eval(ps) for r in runs]
    if len({e.prompt_set_hash for e in evals}) > 1:
        raise RunDirError(f"the runs' {ps!r} evaluations used different prompts; cannot put them side by side")
    tables = [e.scores().set_index(["prompt_id", "image_index"]) for e in evals]
    first = tables[0]
    ids = list(prompt_ids) if prompt_ids is not None else \
        sorted(first.index.get_level_values(0).unique().tolist())[:max_prompts]
    header = 28
    font, small = _font(16), _font(13)
    grid = Image.new("RGB", (label_width + cell * len(runs), header + cell * len(ids)), "white")
    draw = ImageDraw.Draw(grid)
    fit = max(4, (cell - 8) // 9)  # characters that fit a column header
    for j, label in enumerate(_labels(runs)):
        label = label if len(label) <= fit else label[:fit - 1] + "…"
        draw.text((label_width + j * cell + 6, 6), label, fill="black", font=font)
    chars = max(10, label_width // 8)
    for i, pid in enumerate(ids):
        y = header + i * cell
        prompt = str(first.loc[(pid, image_index), "prompt"])
        lines = textwrap.wrap(prompt, chars)[: max(1, cell // 18)]
        draw.multiline_text((6, y + 6), "\n".join(lines), fill="black", font=small, spacing=4)
        for j, (e, t) in enumerate(zip(evals, tables)):
            thumb = thumbnail(grid_image(runs[j].name, e, t, pid, image_index), cell)
            grid.paste(thumb, (label_width + j * cell + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
