"""Paper-style tables from run directories (DESIGN.md sections 3.6, 3.7, 7, 8). Pure functions of what the run
directories hold: medians and costs are read from summary.json / cost.json, win rates from scores.parquet; no model
is ever run and no score recomputed.

* ``results_table``  rows: runs; columns: the MEDIAN of each metric (PickScore, HPSv2.1, ImageReward, Aesthetic in
  that order, then any other metric), the device, training device-hours (every cost phase except sampling and
  scoring; labelled GPU-h / CPU-h by device kind, device-h when mixed), pairs seen, UNet forward-equivalents per
  pair and peak memory. ``with_reference=True`` appends the papers' rows ("paper: SmPO-SDXL", with their source).
* ``win_rate_table`` rows: runs; per metric the paired win rate over a baseline in percent with its bootstrap CI
  (prompts resampled, ties 0.5; ``evaluators.stats``).
* ``render(df, "md" | "csv" | "latex")``: deterministic number formatting, as the papers print them: PickScore and
  HPSv2.1 2 decimals, ImageReward and Aesthetic (and any other metric) 3, win rates 1 decimal percent.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from evaluators.rundir import Run, RunDirError, read_run
from evaluators.stats import paired_win_rate

METRIC_ORDER = ("pickscore", "hpsv21", "imagereward", "aesthetic")
DISPLAY = {"pickscore": "PickScore", "hpsv21": "HPSv2.1", "imagereward": "ImageReward", "aesthetic": "Aesthetic"}
DECIMALS = {"PickScore": 2, "HPSv2.1": 2, "ImageReward": 3, "Aesthetic": 3}
DEFAULT_DECIMALS = 3
COST_COLUMNS = ("pairs seen", "fwd-eq/pair", "peak mem GiB")
TEXT_COLUMNS = ("device", "source", "vs")
REFERENCE_CSV = Path(__file__).resolve().parent.parent / "results" / "reference" / "paper_results.csv"
GIB = 2 ** 30

def display_name(metric: str) -> str:
    return DISPLAY.get(metric, metric)


def _order_metrics(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def load_runs(run_dirs: Iterable) -> list[Run]:
    return [r if isinstance(r, Run) else read_run(r) for r in run_dirs]


def _labels(runs: Sequence[Run]) -> list[str]:
    """Run names, made unique with the parent folder where two runs share a name."""
    names = [r.name for r in runs]
    return [n if names.count(n) == 1 else f"{r.path.parent.name}/{n}" for n, r in zip(names, runs)]


def _prompt_set(runs: Sequence[Run], prompt_set: str | None) -> str:
    if prompt_set is not None:
        for r in runs:
            r.eval(prompt_set)  # raises naming what the run has
        return prompt_set
    shared = set.intersection(*(set(r.evals) for r in runs))
    if len(shared) == 1:
        return shared.pop()
    have = "; ".join(f"{r.name}: {', '.join(sorted(r.evals)) or 'none'}" for r in runs)
    if not shared:
        raise RunDirError(f"the runs share no evaluated prompt set ({have})")
    raise RunDirError(f"the runs share several prompt sets ({', '.join(sorted(shared))}): choose one with prompt_set=")


def _check_comparable(runs: Sequence[Run], prompt_set: str, metrics: Iterable[str]) -> None:
    evals = [r.eval(prompt_set) for r in runs]
    hashes = {e.prompt_set_hash for e in evals}
    if len(hashes) > 1:
        detail = ", ".join(f"{r.name}: {e.prompt_set_hash}" for r, e in zip(runs, evals))
        raise RunDirError(f"the runs' {prompt_set!r} evaluations used different prompts ({detail}); "
                          "evaluate them on the same prompt set")
    for m in metrics:
        found = {(e.metrics[m].scorer_version, e.metrics[m].higher_is_better) for e in evals if m in e.metrics}
        if len(found) > 1:
            detail = ", ".join(f"{r.name}: {e.metrics[m].scorer_version}" for r, e in zip(runs, evals)
                               if m in e.metrics)
            raise RunDirError(f"metric {m!r} was scored by different scorer versions ({detail}); "
                              "rescore the runs with one version")


def _select_metrics(available: set[str], metrics: Sequence[str] | None) -> list[str]:
    if metrics is None:
        return _order_metrics(available)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise RunDirError(f"no run has the metric(s) {unknown} (available: {', '.join(_order_metrics(available))})")
    return list(metrics)


def _device_text(device: dict) -> str:
    kind, name, count = device.get("kind", "cpu"), device.get("name") or "", int(device.get("count", 1))
    if kind == "cuda":
        return f"{count}x {name}".strip()
    threads = device.get("threads")
    return f"{kind} ({threads} threads)" if threads else str(kind)


def _hours_label(kinds: set[str]) -> str:
    if kinds == {"cuda"}:
        return "train GPU-h"
    if kinds and "cuda" not in kinds:
        return "train CPU-h"
    return "train device-h"


def results_table(run_dirs: Iterable, prompt_set: str | None = None, metrics: Sequence[str] | None = None,
                  with_reference: bool = False, reference_model: str | None = None,
                  with_ci: bool = False) -> pd.DataFrame:
    """One row per run: metric medians on ``prompt_set`` and cost. See the module docstring. ``with_ci`` adds each
    median's bootstrap interval ("<Metric> median-lo" / "median-hi"; ``render`` shows "median [lo, hi]")."""
    runs = load_runs(run_dirs)
    if not runs:
        raise RunDirError("no run directories given")
    ps = _prompt_set(runs, prompt_set)
    evals = [r.eval(ps) for r in runs]
    chosen = _select_metrics(set().union(*(e.metrics for e in evals)), metrics)
    _check_comparable(runs, ps, chosen)
    rows, kinds = [], set()
    for r, e in zip(runs, evals):
        row: dict = {}
        for m in chosen:
            row[display_name(m)] = e.metrics[m].median if m in e.metrics else math.nan
            if with_ci:
                lo, hi = e.metrics[m].median_ci if m in e.metrics else (math.nan, math.nan)
                row[f"{display_name(m)} median-lo"], row[f"{display_name(m)} median-hi"] = lo, hi
        c = r.cost
        if c is not None:
            kinds.add("cuda" if c.device_kind == "cuda" else "cpu")
        trained = c is not None and r.kind != "eval" and c.pairs_seen > 0
        row["device"] = _device_text(c.device) if c is not None else None
        row["hours"] = (c.train_device_hours if trained else None)
        row["pairs seen"] = c.pairs_seen if trained else None
        row["fwd-eq/pair"] = c.forward_equivalents_per_pair if trained else None
        row["peak mem GiB"] = c.peak_memory_bytes / GIB if c is not None and c.peak_memory_bytes else None
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(_labels(runs), name="run"))
    if with_reference:
        model = reference_model or _infer_model(runs)
        ref = reference_table(model=model, metrics=chosen) if model else None
        if ref is None or ref.empty:
            warnings.warn(f"no paper numbers for model {model!r} in {REFERENCE_CSV.name}; no reference rows added",
                          stacklevel=2)
        else:
            kinds.add("cuda")
            df["source"] = "measured"
            df = pd.concat([df, ref.rename(columns={"train GPU-h": "hours"})])
    df = df.rename(columns={"hours": _hours_label(kinds)})
    df.index.name = "run"
    return df


def _norm_model(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _infer_model(runs: Sequence[Run]) -> str | None:
    models = {_norm_model(r.model) for r in runs}
    return runs[0].model if len(models) == 1 else None


def reference_table(model: str | None = None, metrics: Sequence[str] | None = None, table: str = "main",
                    path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The papers' rows of ``table`` (default: SmPO's main table, HPDv2 medians) shaped like ``results_table``.

    ``model`` filters by base model ("sdxl", "SD1.5", "sd15", ...). Rows are labelled "paper: <row name>", with the
    source in a ``source`` column; the papers' GPU-hours go to "train GPU-h" (A800 hours).
    """
    ref = pd.read_csv(path or REFERENCE_CSV, keep_default_na=False)
    ref = ref[ref["table"] == table]
    if model is not None:
        ref = ref[ref["model"].map(_norm_model) == _norm_model(model)]
    wanted = list(metrics) if metrics is not None else list(METRIC_ORDER)
    rows: dict[str, dict] = {}
    for rec in ref.to_dict("records"):
        label = f"paper: {rec['label']}"
        row = rows.setdefault(label, {display_name(m): None for m in wanted} | {"device": None, "train GPU-h": None,
                                                                                   "source": rec["source"]})
        value = float(rec["value"])
        if rec["metric"] in wanted:
            row[display_name(rec["metric"])] = value
        elif rec["metric"] == "gpu_hours":
            row["train GPU-h"] = value
            row["device"] = rec["unit"].split()[0]  # "A800 GPU-hours" -> "A800"
    df = pd.DataFrame(list(rows.values()), index=pd.Index(list(rows), name="run"))
    return df


def win_rates(run_dirs: Iterable, baseline_dir, prompt_set: str | None = None, metrics: Sequence[str] | None = None,
              tie_tol: float = 0.0, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Long form: one row per (run, metric) with win_rate, lo, hi (percent), wins, ties, losses, n, n_prompts."""
    base = baseline_dir if isinstance(baseline_dir, Run) else read_run(baseline_dir)
    runs = [r for r in load_runs(run_dirs) if r.path.resolve() != base.path.resolve()]
    if not runs:
        raise RunDirError("no runs to compare with the baseline (only the baseline was given)")
    ps = _prompt_set([base, *runs], prompt_set)
    be = base.eval(ps)
    chosen = _select_metrics(set(be.metrics), metrics)
    _check_comparable([base, *runs], ps, chosen)
    base_scores = be.scores()
    out = []
    for label, r in zip(_labels(runs), runs):
        e = r.eval(ps)
        scores = e.scores()
        for m in chosen:
            if m not in e.metrics:
                continue
            w = paired_win_rate(scores, base_scores, m, higher_is_better=be.metrics[m].higher_is_better,
                                tie_tol=tie_tol, hash_a=e.prompt_set_hash, hash_b=be.prompt_set_hash,
                                n_boot=n_boot, seed=seed, level=level)
            rate, lo, hi = w.as_percent()
            out.append({"run": label, "baseline": base.name, "metric": m, "win_rate": rate, "lo": lo, "hi": hi,
                        "wins": w.wins, "ties": w.ties, "losses": w.losses, "n": w.n, "n_prompts": w.n_clusters})
    return pd.DataFrame(out)


def win_rate_table(run_dirs: Iterable, baseline_dir, prompt_set: str | None = None,
                   metrics: Sequence[str] | None = None, tie_tol: float = 0.0, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> pd.DataFrame:
    """Rows: runs; columns: ``vs`` (the baseline), then per metric "<Metric> win%", "<Metric> lo", "<Metric> hi"
    (percent; ``render`` shows them as "win% [lo, hi]" in md and latex), then ``pairs`` and ``prompts``."""
    long = win_rates(run_dirs, baseline_dir, prompt_set, metrics, tie_tol, n_boot, seed, level)
    order = list(dict.fromkeys(long["run"]))
    rows = {r: {"vs": None} for r in order}
    for rec in long.to_dict("records"):
        d = display_name(rec["metric"])
        rows[rec["run"]].update({"vs": rec["baseline"], f"{d} win%": rec["win_rate"], f"{d} lo": rec["lo"],
                                 f"{d} hi": rec["hi"], "pairs": rec["n"], "prompts": rec["n_prompts"]})
    cols = ["vs"] + [f"{display_name(m)} {s}" for m in _order_metrics(set(long["metric"]))
                     for s in ("win%", "lo", "hi")] + ["pairs", "prompts"]
    df = pd.DataFrame([rows[r] for r in order], index=pd.Index(order, name="run")).reindex(columns=cols)
    df.attrs["level"] = level
    return df


def pairwise_win_rates(run_dirs: Iterable, prompt_set: str | None = None, metric: str | None = None,
                       n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Every run against every other on one metric (default: the first in paper order): cell (row, column) is the
    row's paired win rate over the column in percent, "win% [lo, hi]" (ties 0.5, prompts resampled)."""
    runs = load_runs(run_dirs)
    ps = _prompt_set(runs, prompt_set)
    evals = [r.eval(ps) for r in runs]
    metric = metric or _order_metrics(set.intersection(*(set(e.metrics) for e in evals)))[0]
    _check_comparable(runs, ps, [metric])
    labels, scores = _labels(runs), [e.scores() for e in evals]
    cells = {a: {b: "" for b in labels} for a in labels}
    for i, (a, ea, sa) in enumerate(zip(labels, evals, scores)):
        for j, (b, eb, sb) in enumerate(zip(labels, evals, scores)):
            if i == j:
                continue
            w = paired_win_rate(sa, sb, metric, higher_is_better=ea.metrics[metric].higher_is_better,
                                hash_a=ea.prompt_set_hash, hash_b=eb.prompt_set_hash, n_boot=n_boot, seed=seed,
                                level=level)
            rate, lo, hi = w.as_percent()
            cells[a][b] = f"{rate:.1f} [{lo:.1f}, {hi:.1f}]"
    df = pd.DataFrame([cells[a] for a in labels], index=pd.Index(labels, name=f"{display_name(metric)}: row wins over"))
    df.attrs["metric"] = metric
    return df


# ---------------------------------------------------------------- rendering

def _decimals(col: str) -> int | None:
    """Decimals of a numeric column; None for integers."""
    if col.endswith((" median-lo", " median-hi")):
        return _decimals(col[:-len(" median-lo")])
    if col in DECIMALS:
        return DECIMALS[col]
    if col.endswith((" win%", " lo", " hi")):
        return 1
    if col in ("pairs seen", "pairs", "prompts"):
        return None
    if col == "fwd-eq/pair":
        return 1
    if col == "peak mem GiB":
        return 2
    return DEFAULT_DECIMALS


def _fmt_hours(x: float) -> str:
    """Three significant digits, never scientific: 976 -> '976', 41 -> '41.0', 0.01234 -> '0.0123'."""
    if x == 0:
        return "0"
    decimals = max(0, min(6, 2 - math.floor(math.log10(abs(x)))))
    return f"{x:.{decimals}f}"


def format_value(col: str, value, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, str):
        return value
    if col.startswith("train ") and col.endswith("-h"):
        return _fmt_hours(float(value))
    d = _decimals(col)
    if d is None:
        return str(int(value))
    text = f"{float(value):.{d}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _cells(df: pd.DataFrame, merge_ci: bool, missing: str) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header, rows of formatted cells (index first) and per-column numeric flags."""
    cols = list(df.columns)
    header, getters, numeric = [df.index.name or ""], [], [False]
    level = df.attrs.get("level", 0.95)
    skip = set()
    for c in cols:
        if c in skip:
            continue
        lo, hi = (f"{c[:-5]} lo", f"{c[:-5]} hi") if c.endswith(" win%") else (f"{c} median-lo", f"{c} median-hi")
        if merge_ci and lo in cols and hi in cols:
            skip |= {lo, hi}
            header.append(f"{c} [{level * 100:g}% CI]")

            def get(row, c=c, lo=lo, hi=hi):
                w = format_value(c, row[c], missing)
                if w == missing:
                    return missing
                return f"{w} [{format_value(lo, row[lo])}, {format_value(hi, row[hi])}]"
            getters.append(get)
        else:
            header.append(c)
            getters.append(lambda row, c=c: format_value(c, row[c], missing))
        numeric.append(c not in TEXT_COLUMNS)
    rows = [[str(idx)] + [g(row) for g in getters] for idx, row in zip(df.index, df.to_dict("records"))]
    return header, rows, numeric


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render(df: pd.DataFrame, fmt: str = "md") -> str:
    """The table as text: ``md`` (GitHub markdown), ``csv`` or ``latex`` (booktabs). Missing values: "-" (md,
    latex) or empty (csv). In md and latex, win-rate columns are shown as "win% [lo, hi]"; csv keeps them apart."""
    fmt = {"markdown": "md", "tex": "latex"}.get(fmt, fmt)
    if fmt == "csv":
        header, rows, _ = _cells(df, merge_ci=False, missing="")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        header, rows, numeric = _cells(df, merge_ci=True, missing="-")
        esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |",
                 "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        header, rows, numeric = _cells(df, merge_ci=True, missing="-")
        lines = [r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", r"\toprule",
                 " & ".join(_latex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(_latex(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown table format {fmt!r}: use md, csv or latex")
