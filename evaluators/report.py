"""``bench report``: one self-contained HTML page of a comparison, built from run directories only.

The page holds, with every image and plot embedded as a data URI (no network access, no script, no external file
is needed to view it, so it can be mailed or attached as it is):

* the scores table (medians with their bootstrap intervals, and cost: device, training device-hours, pairs seen,
  forward-equivalents per pair, peak memory);
* win rates against the baseline (table and plot) and, for three runs or more, every run against every other on the
  headline metric;
* the per-image score distributions;
* an image grid: the same prompts and seeds across the runs (for evaluations that stored images);
* each run's cost by phase, the differences between the runs' resolved configurations, and every configuration in
  full (folded).

It is a pure function of the run directories, like ``evaluators.tables`` and ``evaluators.plots``.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from evaluators import plots as P
from evaluators.rundir import Run, RunDirError, _atomic_write
from evaluators.tables import (_cells, _labels, _prompt_set, display_name, load_runs, pairwise_win_rates,
                               results_table, win_rate_table)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1.5em;
color:#1d1d1f}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.3em .6em;vertical-align:top}th{background:#f3f3f3;text-align:left}
td.num{text-align:right;white-space:nowrap}
table.grid td{padding:2px;text-align:center}table.grid td.prompt{max-width:16em;text-align:left;font-size:.9em}
table.grid img{display:block;image-rendering:pixelated}
img.plot{max-width:100%;border:1px solid #eee}
.scroll{overflow-x:auto;max-width:100%}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:12px}details{margin:.3em 0}
"""


def _html_table(df: pd.DataFrame, cls: str = "") -> str:
    header, rows, numeric = _cells(df, merge_ci=True, missing="-")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if n and k else ""}>{html.escape(c)}</td>'
                                    for k, (c, n) in enumerate(zip(r, numeric))) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _plot(make, *args, **kwargs) -> str:
    """A plot function of ``evaluators.plots`` run into a temporary file, returned as an <img> tag."""
    with tempfile.TemporaryDirectory() as tmp:
        path = make(*args, Path(tmp) / "plot.png", **kwargs) if args else make(Path(tmp) / "plot.png", **kwargs)
        return f'<img class="plot" alt="{html.escape(path.stem)}" src="{_data_uri(path.read_bytes())}">'


def _thumb(file: Path, cell: int) -> str:
    thumb = P.thumbnail(file, cell)
    buf = io.BytesIO()
    thumb.save(buf, format="PNG", optimize=True)
    return f'<img width="{thumb.width}" height="{thumb.height}" alt="" src="{_data_uri(buf.getvalue())}">'


def _grid(runs: Sequence[Run], prompt_set: str, max_prompts: int, images_per_prompt: int, cell: int) -> str:
    """Rows: prompts (and seeds), columns: runs; the same prompt and seed in every column."""
    evals = [r.eval(prompt_set) for r in runs]
    tables = [e.scores().set_index(["prompt_id", "image_index"]) for e in evals]
    first = tables[0]
    ids = sorted(first.index.get_level_values(0).unique().tolist())[:max_prompts]
    head = "<th>prompt</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in _labels(runs))
    rows = []
    for pid in ids:
        for k in range(images_per_prompt):
            if (pid, k) not in first.index:
                continue
            rec = first.loc[(pid, k)]
            label = f"{html.escape(str(rec['prompt']))}<br><small>seed {int(rec['seed'])}</small>" \
                if "seed" in rec else html.escape(str(rec["prompt"]))
            cells = [f'<td class="prompt">{label}</td>']
            for run, e, t in zip(runs, evals, tables):
                cells.append(f"<td>{_thumb(P.grid_image(run.name, e, t, pid, k), cell)}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            '</table></div>')


def _flatten(d, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str)
    return out


def _identity(run: Run) -> dict:
    """What a run is, beyond its config: method, model, VAE, weights (run.json)."""
    return {k: run.info.get(k) for k in ("kind", "method", "model", "model_path", "vae", "lora") if k in run.info}


def config_differences(runs: Sequence[Run]) -> pd.DataFrame:
    """Rows: the settings (dotted keys of run.json's identity and config.json) whose values differ between the runs
    (config keys: between the runs that have a config); columns: the runs. A run without a config (a base-model
    evaluation) shows "-" for config keys."""
    flat = [_flatten({"run": _identity(r), **(r.config or {})}) for r in runs]
    keys = sorted(set().union(*flat))
    labels = _labels(runs)
    configured = [f for f, r in zip(flat, runs) if r.config is not None]

    def differs(k: str) -> bool:  # config keys are compared among the runs that have a config
        among = flat if k.startswith("run.") else configured
        return len({f.get(k, "-") for f in among}) > 1
    rows = {k: [f.get(k, "-") for f in flat] for k in keys if differs(k)}
    return pd.DataFrame(list(rows.values()), index=pd.Index(list(rows), name="setting"), columns=labels)


def _cost_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Device-hours by phase, per run (every phase that cost.json records), and the total."""
    phases = sorted(set().union(*(set(r.cost.phases) for r in runs if r.cost is not None)))
    rows = []
    for r in runs:
        c = r.cost
        row = {"device": None if c is None else str(c.device.get("name") or c.device.get("kind", "")),
               **{f"{p} h": (c.phases[p].get("device_hours") if c is not None and p in c.phases else None)
                  for p in phases},
               "total h": None if c is None else c.device_hours_total}
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(_labels(runs), name="run"))


def _fmt_cost(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda col: col.map(lambda v: "-" if v is None or (isinstance(v, float) and v != v) else
                                        (f"{v:.4g}" if isinstance(v, float) else str(v))))


def _default_baseline(runs: Sequence[Run]) -> Run | None:
    """The base-model evaluation among the runs (the first, when several)."""
    return next((r for r in runs if r.kind == "eval"), None)


def build_report(run_dirs: Iterable, baseline=None, prompt_set: str | None = None, title: str | None = None,
                 intro: str = "", max_prompts: int = 6, images_per_prompt: int = 2, cell: int | None = None) -> str:
    """The report page as one HTML string (see the module docstring). ``baseline``: a run directory (default: the
    base-model evaluation among ``run_dirs``, if any); ``intro``: HTML put under the title; ``cell``: the grid's
    image size in pixels (default: as large as fits the page width, 64-160)."""
    runs = load_runs(run_dirs)
    if not runs:
        raise RunDirError("no run directories given")
    ps = _prompt_set(runs, prompt_set)
    base = load_runs([baseline])[0] if baseline is not None else _default_baseline(runs)
    if base is not None and all(r.path.resolve() != base.path.resolve() for r in runs):
        runs = [base, *runs]
    others = [r for r in runs if base is None or r.path.resolve() != base.path.resolve()]
    ev = runs[0].eval(ps)
    cell = cell or max(64, min(160, 960 // len(runs)))
    gen = ", ".join(f"{k} {v}" for k, v in ev.generation.items())
    title = title or f"bench report: {len(runs)} runs on {ps}"
    sections: list[tuple[str, str, str]] = []
    sections.append(("scores", "Scores", "<p>Medians over all images, with 95% bootstrap intervals (prompts "
                     "resampled); cost columns from each run's cost.json.</p>"
                     + _html_table(results_table(runs, prompt_set=ps, with_ci=True).dropna(axis=1, how="all"))))
    if base is not None and others:
        sections.append(("wins", f"Win rates against {html.escape(base.name)}",
                         "<p>Paired by prompt and seed, ties count 0.5, 95% bootstrap intervals over prompts.</p>"
                         + _html_table(win_rate_table(others, base, prompt_set=ps))
                         + _plot(P.plot_win_rates, others, base, prompt_set=ps)))
    if len(runs) >= 3:
        pw = pairwise_win_rates(runs, prompt_set=ps)
        sections.append(("pairwise", "Every run against every other",
                         "<p>Cell: the row's paired win rate over the column on "
                         f"{html.escape(display_name(pw.attrs['metric']))}, in percent [95% CI].</p>"
                         + _html_table(pw)))
    sections.append(("distributions", "Score distributions",
                     _plot(P.plot_score_distributions, runs, prompt_set=ps)))
    if str(ev.scores()["image_path"].iloc[0]):  # worlds without pictures (exact) store no image paths
        sections.append(("grid", "Same prompts, same seeds",
                         f"<p>The first {max_prompts} prompts of {html.escape(ps)}, {images_per_prompt} seeds each;"
                         " every column was sampled with the same initial noise.</p>"
                         + _grid(runs, ps, max_prompts, min(images_per_prompt, ev.images_per_prompt), cell)))
    if any(r.cost is not None for r in runs):
        sections.append(("cost", "Cost by phase (device-hours)", _html_table(_fmt_cost(_cost_table(runs)))))
    diff = config_differences(runs)
    configs = "".join(f"<details><summary>{html.escape(label)} ({html.escape(str(r.path))})</summary><pre>"
                      f"{html.escape(json.dumps({'run': _identity(r), 'config': r.config}, indent=2, default=str))}"
                      "</pre></details>" for label, r in zip(_labels(runs), runs))
    sections.append(("configs", "Configurations",
                     ("<p>Settings that differ between the runs:</p>" + _html_table(diff) if len(diff) else
                      "<p>The runs' resolved configurations are identical.</p>") + configs))
    nav = "".join(f'<a href="#{sid}">{html.escape(h.split(" against ")[0])}</a>' for sid, h, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{h}</h2>{content}</section>' for sid, h, content in sections)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{ev.n_prompts} prompts of {html.escape(ps)} &times; {ev.images_per_prompt} images; "
            f"{html.escape(gen)}. Generated {stamp} from {len(runs)} run directories.")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style>'
            f'<link rel="icon" href="data:,"></head><body><h1>{html.escape(title)}</h1>'
            f'<p class="meta">{meta}</p>{intro}<nav>{nav}</nav>{body}</body></html>\n')


def write_report(run_dirs: Iterable, out: str | Path, **kwargs) -> Path:
    """Write :func:`build_report`'s page to ``out`` (atomically) and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, build_report(run_dirs, **kwargs))
    return out
