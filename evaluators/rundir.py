"""Reading run directories (schema version 1, DESIGN.md section 12), and writing the evaluation part of one.

A run directory (written by ``bench``'s trainer and evaluation harness)::

    RUN_DIR/run.json  config.json  env.json  metrics.jsonl  cost.json
    RUN_DIR/eval/SET_NAME/summary.json  scores.parquet  images/*.png

``read_run`` checks ``schema_version`` in run.json, cost.json and every summary.json and refuses versions it does
not know. Tables and plots only read what is here: they never recompute a score. ``write_eval`` writes
``summary.json`` and ``scores.parquet`` from per-image scores; the harness and the test fixtures both use it.
``image_path`` in scores.parquet is relative to the evaluation folder (``eval/SET_NAME``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from evaluators.stats import summarize

SCHEMA_VERSION = 1
SCORE_COLUMNS = ("prompt_id", "prompt", "image_index", "seed", "image_sha256", "image_path")
EVAL_PHASES = ("sampling", "scoring")  # cost phases that are evaluation, not training


class RunDirError(ValueError):
    """A folder that is not a readable run directory of a schema this bench knows."""


def _check_schema(data: Any, file: Path) -> None:
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RunDirError(f"{file} has no schema_version: not written by bench")
    v = data["schema_version"]
    if isinstance(v, int) and v > SCHEMA_VERSION:
        raise RunDirError(f"{file}: schema_version {v} is newer than this bench ({SCHEMA_VERSION}): upgrade bench")
    if v != SCHEMA_VERSION:
        raise RunDirError(f"{file}: unknown schema_version {v!r} (this bench reads {SCHEMA_VERSION})")


def _read_json(file: Path, required: bool = True, schema: bool = False) -> Any:
    if not file.is_file():
        if required:
            raise RunDirError(f"{file.parent} is not a complete bench run directory (missing {file.name})")
        return None
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise RunDirError(f"{file} is not valid JSON ({err})") from err
    if schema:
        _check_schema(data, file)
    return data


@dataclass(frozen=True)
class MetricSummary:
    scorer_version: str
    higher_is_better: bool
    mean: float
    mean_ci: tuple[float, float]
    median: float
    median_ci: tuple[float, float]
    n: int


@dataclass
class EvalResult:
    """One evaluation of a run on one prompt set (``RUN_DIR/eval/SET_NAME``)."""

    path: Path
    prompt_set: str
    prompt_set_hash: str
    n_prompts: int
    images_per_prompt: int
    generation: dict
    metrics: dict[str, MetricSummary]
    _scores: pd.DataFrame | None = field(default=None, repr=False)

    def scores(self) -> pd.DataFrame:
        """Per-image scores (one row per image), read once."""
        if self._scores is None:
            file = self.path / "scores.parquet"
            if not file.is_file():
                raise RunDirError(f"{self.path} has a summary but no scores.parquet: rerun the evaluation")
            self._scores = pd.read_parquet(file)
        return self._scores

    def image_file(self, image_path: str) -> Path:
        return self.path / image_path


@dataclass
class Cost:
    device: dict
    phases: dict[str, dict]
    device_hours_total: float
    peak_memory_bytes: int | None
    pairs_seen: int
    forward_equivalents: float
    forward_equivalents_per_pair: float | None

    @property
    def device_kind(self) -> str:
        return str(self.device.get("kind", "cpu"))

    @property
    def train_device_hours(self) -> float | None:
        """Device-hours of every phase except evaluation (sampling, scoring); None if there are none."""
        train = [p["device_hours"] for k, p in self.phases.items() if k not in EVAL_PHASES]
        return float(sum(train)) if train else None


@dataclass
class Run:
    path: Path
    name: str
    kind: str
    method: str | None
    model: str
    created: str
    info: dict                      # the whole run.json
    config: dict | None
    env: dict | None
    cost: Cost | None
    evals: dict[str, EvalResult]
    incomplete_evals: list[str] = field(default_factory=list)

    def eval(self, prompt_set: str | None = None) -> EvalResult:
        """The evaluation on ``prompt_set`` (or the only one when None)."""
        if prompt_set is None:
            if len(self.evals) == 1:
                return next(iter(self.evals.values()))
            if not self.evals:
                raise RunDirError(f"run {self.name!r} ({self.path}) has no evaluation: run `bench eval` on it")
            raise RunDirError(f"run {self.name!r} has several evaluations ({', '.join(sorted(self.evals))}): "
                              "choose one with --prompts")
        if prompt_set in self.evals:
            return self.evals[prompt_set]
        if prompt_set in self.incomplete_evals:
            raise RunDirError(f"evaluation {prompt_set!r} of run {self.name!r} is incomplete (missing summary.json):"
                              " rerun `bench eval`")
        have = ", ".join(sorted(self.evals)) or "none"
        raise RunDirError(f"run {self.name!r} ({self.path}) has no evaluation on {prompt_set!r} (has: {have})")


def _metric(name: str, d: dict, file: Path) -> MetricSummary:
    try:
        return MetricSummary(str(d["scorer_version"]), bool(d["higher_is_better"]), float(d["mean"]),
                             tuple(float(v) for v in d["mean_ci"]), float(d["median"]),  # type: ignore[arg-type]
                             tuple(float(v) for v in d["median_ci"]), int(d["n"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as err:
        raise RunDirError(f"{file}: metric {name!r} is malformed ({err!r})") from err


def read_eval(path: str | os.PathLike) -> EvalResult:
    path = Path(path)
    file = path / "summary.json"
    s = _read_json(file, schema=True)
    try:
        gen = dict(s["generation"])
        metrics = {m: _metric(m, d, file) for m, d in s["metrics"].items()}
        return EvalResult(path, str(s["prompt_set"]), str(s["prompt_set_hash"]), int(s["n_prompts"]),
                          int(s["images_per_prompt"]), gen, metrics)
    except KeyError as err:
        raise RunDirError(f"{file} lacks the field {err.args[0]!r}") from err


def read_cost(file: Path) -> Cost | None:
    c = _read_json(file, required=False, schema=True)
    if c is None:
        return None
    try:
        return Cost(dict(c["device"]), dict(c["phases"]), float(c["device_hours_total"]), c.get("peak_memory_bytes"),
                    int(c["pairs_seen"]), float(c["forward_equivalents"]), c.get("forward_equivalents_per_pair"))
    except KeyError as err:
        raise RunDirError(f"{file} lacks the field {err.args[0]!r}") from err


def read_run(path: str | os.PathLike) -> Run:
    """Read a run directory. config.json, env.json, cost.json and evaluations are optional; run.json is not."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path} is not a bench run directory (no such directory)")
    if not (path / "run.json").is_file():
        raise RunDirError(f"{path} is not a bench run directory (missing run.json)")
    info = _read_json(path / "run.json", schema=True)
    evals, incomplete = {}, []
    eval_root = path / "eval"
    if eval_root.is_dir():
        for d in sorted(p for p in eval_root.iterdir() if p.is_dir()):
            if (d / "summary.json").is_file():
                evals[d.name] = read_eval(d)
            else:
                incomplete.append(d.name)
    return Run(path=path, name=str(info.get("label") or info.get("name") or path.name),
               kind=str(info.get("kind", "train")),
               method=info.get("method"), model=str(info.get("model", "")), created=str(info.get("created", "")),
               info=info, config=_read_json(path / "config.json", required=False),
               env=_read_json(path / "env.json", required=False), cost=read_cost(path / "cost.json"),
               evals=evals, incomplete_evals=incomplete)


def _atomic_write(file: Path, text: str) -> None:
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(file)


def write_eval(run_dir: str | os.PathLike, prompt_set: str, prompt_set_hash: str, scores: pd.DataFrame,
               metrics: Mapping[str, Mapping[str, Any]], generation: Mapping[str, Any], n_boot: int = 2000,
               seed: int = 0) -> Path:
    """Write ``RUN_DIR/eval/PROMPT_SET/{scores.parquet,summary.json}`` and return that folder.

    ``scores``: one row per image with the columns of ``SCORE_COLUMNS`` plus one float column per metric.
    ``metrics``: ``{metric: {"scorer_version": str, "higher_is_better": bool}}``; each metric needs a column.
    ``generation``: ``{"sampler", "steps", "cfg", "resolution", "seed"}``. Confidence intervals resample prompts
    (``evaluators.stats``), so they stay honest with several images per prompt. Images are the caller's to save
    under ``eval/PROMPT_SET/images`` (``image_path`` is relative to the evaluation folder).
    """
    missing = [c for c in (*SCORE_COLUMNS, *metrics) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack the columns {missing} (need {list(SCORE_COLUMNS)} + one per metric)")
    for key in ("sampler", "steps", "cfg", "resolution", "seed"):
        if key not in generation:
            raise ValueError(f"generation lacks {key!r} (need sampler, steps, cfg, resolution, seed)")
    if scores.duplicated(["prompt_id", "image_index"]).any():
        raise ValueError("scores have duplicated (prompt_id, image_index) rows")
    df = scores.sort_values(["prompt_id", "image_index"], kind="stable").reset_index(drop=True)
    df = df.astype({"prompt_id": "int64", "image_index": "int64", "seed": "int64", "prompt": str,
                    "image_sha256": str, "image_path": str, **{m: "float64" for m in metrics}})
    per_prompt = df.groupby("prompt_id").size()
    if per_prompt.nunique() != 1:
        raise ValueError("every prompt must have the same number of images "
                         f"(found {sorted(per_prompt.unique().tolist())})")
    summary_metrics = {}
    for m, meta in metrics.items():
        stats = summarize(df[m].to_numpy(), groups=df["prompt_id"].to_numpy(), n_boot=n_boot, seed=seed)
        summary_metrics[m] = {"scorer_version": str(meta["scorer_version"]),
                              "higher_is_better": bool(meta["higher_is_better"]), **stats}
    gen = dict(generation)
    if isinstance(gen.get("cfg"), (int, float)) and not math.isnan(gen["cfg"]):
        gen["cfg"] = float(gen["cfg"])
    summary = {"schema_version": SCHEMA_VERSION, "prompt_set": prompt_set, "prompt_set_hash": prompt_set_hash,
               "n_prompts": int(per_prompt.size), "images_per_prompt": int(per_prompt.iloc[0]),
               "generation": gen, "metrics": summary_metrics}
    out = Path(run_dir) / "eval" / prompt_set
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "scores.parquet.tmp"
    df.to_parquet(tmp, index=False)
    tmp.replace(out / "scores.parquet")
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return out
