"""The ``bench`` command line (typer). See DESIGN.md section 12 and ``bench --help``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate preference-alignment methods for text-to-image diffusion models.")

OVERRIDES_HELP = "KEY=VALUE overrides: dotted (train.lr=1e-5, method.beta=2000) or bare when unique (steps=10)."
DRY_RUN_NOTE = ("DRY RUN: model {model!r} is a tiny random model built from config and data {data!r} is the "
                "suite's procedural set; this checks the pipeline end to end, its scores mean nothing. For real "
                "runs pass --model sd15|sdxl|PATH --data yuvalkirstain/pickapic_v2 (see README).")


def _quiet_libraries() -> None:
    import datasets
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    dlog.set_verbosity_error()
    datasets.disable_progress_bars()


def _fail(err: Exception | str) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _expected() -> tuple[type[BaseException], ...]:
    """The failures a user can meet and fix (bad input, missing weights, non-finite training): one line each."""
    from bench.config import ConfigError
    from bench.data import DataError
    from bench.models import MissingWeightsError
    from bench.trainer import NonFiniteError
    from bench_common import UnknownNameError
    from evaluators.prompts import PromptSetError
    from evaluators.rundir import RunDirError
    from evaluators.scorers._weights import MissingWeightsError as ScorerWeightsError

    return (ConfigError, DataError, MissingWeightsError, ScorerWeightsError, UnknownNameError, NonFiniteError,
            RunDirError, PromptSetError)


@contextmanager
def _one_line_errors(cleanup: Callable[[Exception], str] | None = None):
    """Every expected failure prints one line naming the problem and the fix and exits 2; ``cleanup(err)`` (removing
    what the failed command left half-made) runs first and may add to the line. Unexpected errors keep their
    traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as err:  # noqa: BLE001 - sorted below
        if not isinstance(err, _expected()):
            raise
        _fail(f"{err}{cleanup(err) if cleanup is not None else ''}")


def _flat(cfg) -> list[str]:
    out = []
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict) and key not in ("method_args",):
            out += [f"{key}.{k}={v}" for k, v in value.items()]
        else:
            out.append(f"{key}={value}")
    return out


def _relaunch(num_processes: int) -> None:
    """Re-run this exact command with N processes (torch.distributed.run; one per GPU, or gloo CPU processes)."""
    argv = [a for a in sys.argv[1:]]
    for i, a in enumerate(argv):
        if a.startswith("--num-processes"):
            del argv[i: i + (1 if "=" in a else 2)]
            break
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes),
           "-m", "bench"] + argv
    raise typer.Exit(subprocess.call(cmd))


def _help_config(method: Optional[str], model: Optional[str]) -> None:
    """Every key with its type, its dataclass default and the value the chosen model family and method resolve to."""
    from bench.config import all_keys, flat_dict, method_config, resolve
    from bench.models import resolve_model
    from bench.runner import DEFAULT_METHOD, DEFAULT_MODEL
    from methods import get_method

    method, model = method or DEFAULT_METHOD, model or DEFAULT_MODEL
    cfg, sources = resolve(method, model, resolve_model(model)[2], get_method(method), None, [])
    resolved = flat_dict(cfg.to_dict())
    resolved.update({f"method.{k}": v for k, v in vars(method_config(cfg, get_method(method))).items()})
    typer.echo(f"{'key':34s} {'type':18s} {'default':>12s}  resolved for --method {method} --model {model} "
               f"({', then '.join(sources)}; * = differs)")
    for key, tp, default in all_keys(get_method(method)):
        value = resolved.get(key, default)
        typer.echo(f"{key:34s} {tp:18s} {str(default):>12s}  {value}{'  *' if value != default else ''}")


def _train(method: Optional[str], model: Optional[str], data: Optional[str], config: Optional[Path],
           overrides: list[str], name: Optional[str], output_dir: Optional[Path], resume: bool, num_processes: int,
           help_config: bool, quiet: bool):
    """Resolve the config, train, and return (run directory, resolved config). An expected failure removes the run
    directory this command created when it holds no checkpoint (nothing to resume), and says so."""
    if help_config:
        with _one_line_errors():
            _help_config(method, model)
        raise typer.Exit(0)
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        _relaunch(num_processes)
    _quiet_libraries()
    made: list[Path] = []

    def cleanup(err: Exception) -> str:
        from bench import checkpoint
        from bench.trainer import NonFiniteError

        if not made or not made[0].exists():
            return ""
        run_dir = made[0]
        if checkpoint.latest(run_dir / "checkpoints") is not None:
            return f" (run directory {run_dir} kept: it has a checkpoint for --resume)"
        if isinstance(err, NonFiniteError):  # kept for its metrics.jsonl, marked failed; it has no weights
            info = run_dir / "run.json"
            if info.is_file():
                info.write_text(json.dumps({**json.loads(info.read_text()), "status": "failed", "error": str(err)},
                                           indent=2))
            return f" (run directory {run_dir} kept for its metrics.jsonl, marked failed in run.json)"
        shutil.rmtree(run_dir, ignore_errors=True)
        return f" (the half-made run directory {run_dir} was removed)"

    with _one_line_errors(cleanup):
        from bench.runner import is_main_process, resolve_run

        is_main = is_main_process()
        cfg, sources, run_dir = resolve_run(method, model, data, str(config) if config else None, overrides, name,
                                            str(output_dir) if output_dir else None, resume,
                                            echo=typer.echo if is_main else lambda s: None)
        from bench.trainer import train

        if is_main:
            typer.echo(f"config ({', then '.join(sources)}):\n  " + "\n  ".join(_flat(cfg)))
            if cfg.model.name.startswith("tiny") or cfg.data.source == "embedded":
                typer.secho(DRY_RUN_NOTE.format(model=cfg.model.name, data=cfg.data.source), fg=typer.colors.YELLOW)
            else:
                from bench.models import MODELS
                if cfg.model.name in MODELS and MODELS.get(cfg.model.name).note:
                    typer.secho(MODELS.get(cfg.model.name).note, fg=typer.colors.YELLOW)
        if not run_dir.exists() and is_main:
            made.append(run_dir)
        out = train(cfg, run_dir, resume=resume, show_progress=not quiet)
        if is_main:
            typer.echo(f"run directory: {out}")
        return out, cfg


_METHOD = typer.Option(None, "--method", "-m", help="a registered method (bench ls methods); default dpo, or the "
                      "resumed run's")
_MODEL = typer.Option(None, "--model", help="registered model name (bench ls models), local diffusers folder or "
                     "hub id; default: the embedded toy world, or the resumed run's")
_DATA = typer.Option(None, "--data", help="'toy', 'embedded', an HF dataset id, a save_to_disk folder or parquet "
                     "files (default: the model family's preset)")
_CONFIG = typer.Option(None, "--config", help="a TOML file of config values (applied after the preset)")
_NAME = typer.Option(None, "--name", help="run directory name (default: method-model-timestamp)")
_OUT = typer.Option(None, "--output-dir", help="parent folder of run directories (default: runs)")
_RESUME = typer.Option(False, "--resume", help="continue the named run from its newest complete checkpoint")
_NPROC = typer.Option(1, "--num-processes", help="processes (GPUs, or CPU processes) via accelerate launch")
_HELPCFG = typer.Option(False, "--help-config", help="list every config key with its type, its default and the value "
                        "the chosen --model and --method resolve to")
_QUIET = typer.Option(False, "--quiet", help="no progress bar")


@app.command()
def train(method: Optional[str] = _METHOD, model: Optional[str] = _MODEL, data: Optional[str] = _DATA,
          config: Optional[Path] = _CONFIG, overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
          name: Optional[str] = _NAME, output_dir: Optional[Path] = _OUT, resume: bool = _RESUME,
          num_processes: int = _NPROC, help_config: bool = _HELPCFG, quiet: bool = _QUIET) -> None:
    """Train a method on a base model and write a run directory (config, env, metrics, cost, weights)."""
    _train(method, model, data, config, overrides or [], name, output_dir, resume, num_processes, help_config, quiet)


@app.command()
def run(method: Optional[str] = _METHOD, model: Optional[str] = _MODEL, data: Optional[str] = _DATA,
        config: Optional[Path] = _CONFIG, overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
        name: Optional[str] = _NAME, output_dir: Optional[Path] = _OUT, resume: bool = _RESUME,
        num_processes: int = _NPROC, help_config: bool = _HELPCFG, quiet: bool = _QUIET) -> None:
    """Train, evaluate the run and the base model (same prompts, seeds, sampler, scorers), print the table row."""
    out, cfg = _train(method, model, data, config, overrides or [], name, output_dir, resume, num_processes,
                      help_config, quiet)
    if os.environ.get("RANK", "0") != "0":
        return
    if not cfg.eval.enabled:
        typer.echo("evaluation skipped: eval.enabled=false, the default for tiny dry-run models; set "
                   "eval.enabled=true eval.prompts=FILE eval.metrics=NAMES to evaluate")
        return
    from bench.worlds import world_of

    try:
        world_of(cfg.model.name).evaluate(out, cfg, {}, quiet, typer.echo)
    except Exception as err:  # noqa: BLE001 - the trained run is kept; say how to finish the evaluation
        _fail(f"training finished ({out}) but evaluation failed: {err}. Fix it and run `bench eval --checkpoint {out}`")
    typer.echo(f"run directory: {out} (table.md, win_rates.csv)")


def _recipes(only: str | None) -> list[str] | None:
    """The recipe names of ``--only`` (None: all), each checked against bench.runner.RECIPES."""
    from bench.runner import RECIPES

    names = [r[0] for r in RECIPES]
    chosen = only.split(",") if only else None
    unknown = [n for n in chosen or [] if n not in names]
    if unknown:
        _fail(ValueError(f"unknown recipe(s) {unknown}; choose from {', '.join(names)}"))
    return chosen


@app.command()
def reproduce(model: str = typer.Option("toy", "--model", help="registered model name, local diffusers folder or "
                                        "hub id; default: the embedded toy world"),
              output_dir: Path = typer.Option(Path("runs/reproduce"), "--output-dir"),
              only: Optional[str] = typer.Option(None, help="comma-separated recipe names (default: all)"),
              overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP + " Applied to every run."),
              quiet: bool = _QUIET) -> None:
    """The paper-style comparison: base + every method + the SmPO ablation on one model, with tables and plots."""
    from bench.runner import reproduce as run_reproduce

    _quiet_libraries()
    chosen = _recipes(only)
    with _one_line_errors():
        run_reproduce(model, output_dir, overrides or [], chosen, quiet, echo=typer.echo)


@app.command()
def sweep(model: str = typer.Option("toy", "--model", help="registered model name; default: the embedded toy world"),
          output_dir: Path = typer.Option(Path("runs/sweep"), "--output-dir"),
          only: Optional[str] = typer.Option(None, help="comma-separated recipe names (default: all)"),
          test_images_per_prompt: Optional[int] = typer.Option(
              None, help="seeds per test prompt (default: twice eval.images_per_prompt)"),
          val_images_per_prompt: Optional[int] = typer.Option(
              None, help="seeds per validation prompt, on which the configuration is selected (default: "
              "eval.images_per_prompt)"),
          grid: str = typer.Option("narrow", help="narrow: 5 configurations within x4 of each preset; wide: 8, "
                                   "the learning rate over three decades (bench/sweep.py GRIDS)"),
          steps_factor: int = typer.Option(1, help="train every configuration for this many times its recipe's "
                                           "preset steps (the same budget factor for every method)"),
          record: Optional[Path] = typer.Option(
              None, help="keep a small copy of every run folder here (no weights, checkpoints or unshown images), "
              "and resume from it on a fresh machine (bench/sweep.py)"),
          overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP + " Applied to every run."),
          quiet: bool = _QUIET) -> None:
    """Equal tuning budget: five configurations per method around its preset (--grid wide: eight), selected on
    validation prompts, reported on disjoint test prompts (bench/sweep.py)."""
    from bench.sweep import sweep as run_sweep

    _quiet_libraries()
    chosen = _recipes(only)
    with _one_line_errors():
        run_sweep(model, output_dir, overrides or [], chosen, test_images_per_prompt, quiet, echo=typer.echo,
                  grid_kind=grid, val_images_per_prompt=val_images_per_prompt, steps_factor=steps_factor,
                  record_dir=record)


def _scorer_sources(scorer_weights: list[str] | None) -> dict[str, str]:
    """``--scorer-weights METRIC=PATH|HUB_ID`` (repeatable) as {metric: source}."""
    return dict(item.split("=", 1) for item in scorer_weights or [])


@app.command("eval")
def eval_(model: Optional[str] = typer.Option(None, "--model", help="a base model to evaluate"),
          checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="a run directory to evaluate"),
          prompts: Optional[str] = typer.Option(None, "--prompts", help="prompt set name or file (bench ls prompts)"),
          metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated scorers (bench ls scorers)"),
          images_per_prompt: Optional[int] = typer.Option(None), seed: Optional[int] = typer.Option(None),
          sampler: Optional[str] = typer.Option(None), steps: Optional[int] = typer.Option(None),
          cfg_scale: Optional[float] = typer.Option(None, "--cfg"),
          resolution: Optional[int] = typer.Option(None, help="default: the model's native resolution"),
          limit: Optional[int] = typer.Option(None, help="only the first N prompts (equal share per style)"),
          batch_size: Optional[int] = typer.Option(None), output_dir: Path = typer.Option(Path("runs"), "--output-dir"),
          scorer_weights: Optional[list[str]] = typer.Option(None, "--scorer-weights",
                                                             help="METRIC=PATH|HUB_ID for a scorer's weights"),
          quiet: bool = _QUIET) -> None:
    """Generate with fixed seeds and score: a base model (--model) or a trained run (--checkpoint). Every option not
    given is the model family's evaluation protocol (the one `bench run` uses), so the results are comparable with,
    and reused by, `bench run`."""
    import dataclasses

    from bench.config import ConfigError, RunConfig, family_config, validate
    from bench.evaluate import base_run_dir, evaluate, spec_from
    from bench.models import resolve_model
    from bench.worlds import DiffusersWorld, world_of
    from evaluators.prompts import load_prompts
    from evaluators.rundir import RunDirError
    from evaluators.scorers.registry import SCORERS

    if (model is None) == (checkpoint is None):
        _fail(ConfigError("pass exactly one of --model NAME|PATH or --checkpoint RUN_DIR"))
    _quiet_libraries()
    with _one_line_errors():
        if checkpoint is not None and not (checkpoint / "run.json").is_file():
            raise RunDirError(f"{checkpoint} is not a bench run directory (no run.json); pass a run's folder")
        base_model = model or json.loads((checkpoint / "run.json").read_text())["model"]
        world = world_of(base_model)
        if not isinstance(world, DiffusersWorld):
            if checkpoint is None:
                raise ConfigError(f"{base_model!r} is not an image model: `bench run --model {base_model}` evaluates "
                                  "it with the run, or `bench eval --checkpoint RUN_DIR` re-evaluates a run of it")
            world.evaluate(checkpoint, RunConfig.from_dict(json.loads((checkpoint / "config.json").read_text())), {},
                           quiet, typer.echo)
            return
        given = {"prompts": prompts, "limit": limit, "metrics": metrics, "images_per_prompt": images_per_prompt,
                 "sampler": sampler, "steps": steps, "cfg": cfg_scale, "resolution": resolution, "seed": seed,
                 "batch_size": batch_size}
        e = dataclasses.replace(family_config(resolve_model(base_model)[2]).eval,
                                **{k: v for k, v in given.items() if v is not None})
        validate(RunConfig(eval=e))
        names = [m.strip() for m in e.metrics.split(",") if m.strip()]
        for name in names:
            SCORERS.get(name)  # an unknown scorer fails here, before anything is written
        spec = spec_from(e, resolve_model(base_model)[3])
        sources = _scorer_sources(scorer_weights)
        prompt_set = load_prompts(e.prompts, limit=e.limit)
        out = checkpoint or base_run_dir(output_dir, model, spec)
        folder = evaluate(out, prompt_set, names, spec, model=model, run_dir=checkpoint, scorer_sources=sources,
                          batch_size=e.batch_size, progress=not quiet)
    typer.echo(json.dumps(json.loads((folder / "summary.json").read_text())["metrics"], indent=1))
    typer.echo(f"evaluation: {folder}")


@app.command()
def table(run_dirs: list[Path] = typer.Argument(..., help="run directories (rows)"),
          baseline: Optional[Path] = typer.Option(None, help="run directory to compute win rates against"),
          fmt: str = typer.Option("md", "--format", help="md | csv | latex"),
          prompts: Optional[str] = typer.Option(None, "--prompts", help="prompt set (default: the one they share)"),
          with_reference: bool = typer.Option(False, help="add the papers' reported numbers for the same model"),
          plots: Optional[Path] = typer.Option(None, help="also write plots (win rates, distributions, grid) here")) -> None:
    """Paper-style tables (medians, cost) and win rates, from run directories only (no model is run)."""
    from evaluators import plots as P
    from evaluators.rundir import RunDirError
    from evaluators.tables import render, results_table, win_rate_table

    try:
        typer.echo(render(results_table(run_dirs, prompt_set=prompts, with_reference=with_reference), fmt))
        if baseline is not None:
            typer.echo("\n" + render(win_rate_table(run_dirs, baseline, prompt_set=prompts), fmt))
        if plots is not None:
            plots.mkdir(parents=True, exist_ok=True)
            paths = [P.plot_score_distributions(run_dirs, plots / "scores.png", prompt_set=prompts),
                     P.image_grid(([baseline] if baseline else []) + list(run_dirs), plots / "grid.png",
                                  prompt_set=prompts)]
            if baseline is not None:
                paths.append(P.plot_win_rates(run_dirs, baseline, plots / "win_rates.png", prompt_set=prompts))
            typer.echo("plots: " + ", ".join(str(p) for p in paths))
    except (RunDirError, ValueError) as err:
        _fail(err)


@app.command()
def scoreboard(base: str = typer.Option(..., "--base", help="base model: sd15 or sdxl (bench ls models)"),
               models: Optional[str] = typer.Option(None, "--models", help="comma-separated published checkpoints "
                                                    "(default: every one registered on the base)"),
               skip_missing: bool = typer.Option(False, "--skip-missing", help="score the models whose weights are "
                                                 "here and list the others, instead of failing"),
               download: bool = typer.Option(False, "--download", help="first download the weights a model lacks "
                                             "(its files only) into the Hugging Face cache"),
               prompts: Optional[str] = typer.Option(None, "--prompts", help="prompt set (default: the family's)"),
               limit: Optional[int] = typer.Option(None, help="only the first N prompts (equal share per style)"),
               metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated scorers"),
               images_per_prompt: Optional[int] = typer.Option(None), seed: Optional[int] = typer.Option(None),
               sampler: Optional[str] = typer.Option(None), steps: Optional[int] = typer.Option(None),
               cfg_scale: Optional[float] = typer.Option(None, "--cfg"),
               resolution: Optional[int] = typer.Option(None, help="default: the base model's native resolution"),
               batch_size: Optional[int] = typer.Option(None),
               output_dir: Path = typer.Option(Path("runs/scoreboard"), "--output-dir"),
               scorer_weights: Optional[list[str]] = typer.Option(None, "--scorer-weights",
                                                                  help="METRIC=PATH|HUB_ID for a scorer's weights"),
               quiet: bool = _QUIET) -> None:
    """The published aligned checkpoints of a base model and the base itself under ONE protocol (the family's
    evaluation; options apply to every model alike): table with the papers' numbers, win rates, report.html."""
    from bench.scoreboard import scoreboard as run_scoreboard

    _quiet_libraries()
    with _one_line_errors():
        run_scoreboard(base, output_dir, only=models.split(",") if models else None, skip_missing=skip_missing,
                       download=download,
                       scorer_sources=_scorer_sources(scorer_weights), quiet=quiet,
                       echo=typer.echo, prompts=prompts, limit=limit, metrics=metrics,
                       images_per_prompt=images_per_prompt, seed=seed, sampler=sampler, steps=steps, cfg=cfg_scale,
                       resolution=resolution, batch_size=batch_size)


@app.command()
def report(run_dirs: list[Path] = typer.Argument(..., help="run directories (a base-model evaluation among them "
                                                 "is the baseline unless --baseline is given)"),
           out: Path = typer.Option(Path("report.html"), "--out", help="the HTML file to write"),
           baseline: Optional[Path] = typer.Option(None, help="run directory to compute win rates against"),
           prompts: Optional[str] = typer.Option(None, "--prompts", help="prompt set (default: the one they share)"),
           title: Optional[str] = typer.Option(None),
           check: bool = typer.Option(False, "--check", help="open the page in headless Chromium and fail on "
                                      "console errors or images that do not load (needs Debian's chromium)")) -> None:
    """One self-contained HTML page of a comparison (tables, win-rate and score plots, image grids of the same
    prompts and seeds, cost, config differences); images embedded, viewable offline."""
    from evaluators.report import write_report
    from evaluators.rundir import RunDirError

    try:
        path = write_report(run_dirs, out, baseline=baseline, prompt_set=prompts, title=title)
    except (RunDirError, ValueError) as err:
        _fail(err)
    typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if check:
        from evaluators.browser import BrowserUnavailable, check_page

        try:
            result = check_page(path)
        except BrowserUnavailable as err:
            _fail(err)
        if result.problems:
            _fail("; ".join(result.problems))
        typer.echo(f"checked in headless Chromium: {result.tables} tables, {result.images} images, no console "
                   "errors, nothing fetched from outside the page")


@app.command()
def label(data: str = typer.Option(..., "--data", help="preference data source (as for --data of train)"),
          scorer: str = typer.Option("pickscore", "--scorer", help="a registered scorer"),
          out: Optional[Path] = typer.Option(None, "--out", help="labels parquet (default: the label cache)"),
          weights: Optional[str] = typer.Option(None, "--weights", help="scorer weights: local path or hub id"),
          split: str = typer.Option("train"), keep_ties: bool = typer.Option(False),
          batch_size: int = typer.Option(32)) -> None:
    """Score every pair once with a reward scorer (raw scores, e.g. PickScore's cosine) for smoothed labels."""
    from bench.config import DataConfig
    from bench.data import DataError
    from bench.evaluate import default_device
    from bench.label import label as run_label
    from evaluators.scorers.registry import load_scorer

    _quiet_libraries()
    try:
        path = run_label(DataConfig(source=data, split=split, keep_ties=keep_ties),
                         load_scorer(scorer, weights, device=default_device()), scorer, out, batch_size)
    except (DataError, FileNotFoundError, ValueError) as err:
        _fail(err)
    typer.echo(f"labels: {path} (train with data.labels={path})")


@app.command("ls")
def ls(what: str = typer.Argument(..., help="methods | models | scorers | prompts")) -> None:
    """List registered methods, models, scorers or prompt sets."""
    from bench_common.registry import did_you_mean

    if what == "methods":
        from methods import METHODS
        from methods.base import summary_line
        for n in METHODS.names():
            cls = METHODS.get(n)
            typer.echo(f"{n:12s} {summary_line(cls)}  [{cls.paper}]")
    elif what == "models":
        from bench.models import MODELS, published_checkpoint
        names = MODELS.names()
        for n in (n for n in names if published_checkpoint(n) is None):
            spec = MODELS.get(n)
            typer.echo(f"{n:12s} {spec.source:45s} {spec.description}")
        typer.echo("\npublished checkpoints (bench scoreboard; bench/published.py):")
        for n in (n for n in names if published_checkpoint(n) is not None):
            c = published_checkpoint(n)
            typer.echo(f"{n:14s} base {c.base:5s} {c.method:5s} {c.repo:45s} licence: {c.licence}\n"
                       f"{'':14s} {c.paper}")
    elif what in ("scorers", "prompts"):
        try:
            if what == "scorers":
                from evaluators.scorers.registry import SCORERS as reg
            else:
                from evaluators.prompts import PROMPT_SETS as reg
        except ImportError:
            _fail(RuntimeError(f"no {what} are registered in this version"))
        for n in reg.names():
            typer.echo(n)
    else:
        _fail(ValueError(f"cannot list {what!r}.{did_you_mean(what, ['methods', 'models', 'scorers', 'prompts'])} "
                         "Choose methods, models, scorers or prompts."))


def _exit_with(problems: list[str], ok: str) -> None:
    """Print the problems (or ``ok``) and exit 1 if there are any: the assets' verify and check commands."""
    typer.echo("\n".join(problems) or ok)
    raise typer.Exit(1 if problems else 0)


toy_app = typer.Typer(no_args_is_help=True, help="The embedded toy world: rebuild, verify or re-check its assets.")
app.add_typer(toy_app, name="toy")


@toy_app.command("build")
def toy_build(out: Optional[Path] = typer.Option(None, help="output folder (default: the shipped bench/toy/assets)"),
              seed: int = typer.Option(0)) -> None:
    """Train the toy base model and the generator zoo, sample and panel-label the preference pairs, write model/,
    pairs.parquet, manifest.json, report.json (about 50 minutes on 2 CPU cores)."""
    from bench.toy import ASSETS
    from bench.toy.build import build

    _quiet_libraries()
    build(out or ASSETS, seed, log=typer.echo)


@toy_app.command("verify")
def toy_verify(folder: Optional[Path] = typer.Argument(None, help="assets folder (default: the shipped one)")) -> None:
    """Check the toy assets against their manifest's sha256 (seconds)."""
    from bench.toy import ASSETS
    from bench.toy.build import verify

    _exit_with(verify(folder or ASSETS), "intact")


@toy_app.command("check")
def toy_check(folder: Optional[Path] = typer.Argument(None, help="assets folder (default: the shipped one)")) -> None:
    """Rebuild with the manifest's parameters in a temporary folder and compare file by file (about 50 minutes)."""
    from bench.toy import ASSETS
    from bench.toy.build import check_rebuild

    _quiet_libraries()
    _exit_with(check_rebuild(folder or ASSETS, log=typer.echo), "identical")


exact_app = typer.Typer(no_args_is_help=True, help="The exact world: rebuild, verify or re-check its base model.")
app.add_typer(exact_app, name="exact")


@exact_app.command("build")
def exact_build(out: Optional[Path] = typer.Option(None, help="output folder (default: the shipped bench/exact/assets)"),
                seed: int = typer.Option(0)) -> None:
    """Train the exact world's base model (deterministic, about a minute) and write model/ and manifest.json."""
    from bench.exact import ASSETS
    from bench.exact.build import BuildConfig, build

    build(out or ASSETS, BuildConfig(seed=seed), log=typer.echo)


@exact_app.command("verify")
def exact_verify(folder: Optional[Path] = typer.Argument(None, help="assets folder (default: the shipped one)")) -> None:
    """Check the exact world's assets against their manifest's sha256."""
    from bench.assets import verify
    from bench.exact import ASSETS

    _exit_with(verify(folder or ASSETS), "intact")


@exact_app.command("check")
def exact_check(folder: Optional[Path] = typer.Argument(None, help="assets folder (default: the shipped one)")) -> None:
    """Rebuild with the manifest's parameters in a temporary folder and compare file by file."""
    from bench.exact import ASSETS
    from bench.exact.build import check_rebuild

    _exit_with(check_rebuild(folder or ASSETS, log=typer.echo), "identical")


@app.command()
def perf(methods: str = typer.Option("dpo", help="comma-separated methods"),
         model: str = typer.Option("tiny-sd15", help="model name or path"),
         variants: str = typer.Option("cached,no-cache", help="comma-separated variants (bench/perf.py VARIANTS)"),
         batch_size: int = typer.Option(4, help="pairs per step"),
         warmup: int = typer.Option(3), repeats: int = typer.Option(15),
         out: Path = typer.Option(Path("results/perf"), help="folder for the results files"),
         project: bool = typer.Option(False, help="also project the papers' full configurations (cost table)"),
         eval_metrics: Optional[str] = typer.Option(None, "--eval", help="measure evaluation throughput instead: "
                                                    "comma-separated scorers ('' for generation only)"),
         eval_images: int = typer.Option(32, help="images generated for --eval"),
         eval_steps: int = typer.Option(25, help="sampler steps for --eval"),
         overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP)) -> None:
    """Benchmark the training step of methods under variants; writes JSON + markdown results files."""
    from bench import perf as perf_mod

    _quiet_libraries()
    if eval_metrics is not None:
        path = perf_mod.eval_throughput(model, [m for m in eval_metrics.split(",") if m], eval_images, eval_steps,
                                        5.0, batch_size, out)
        typer.echo(path.with_suffix(".md").read_text())
        return
    path, rows = perf_mod.run(methods.split(","), model, variants.split(","), batch_size, warmup, repeats, out,
                              overrides or [])
    typer.echo(f"results: {path} and {path.with_suffix('.md')}")
    if project:
        typer.echo(f"projection: {perf_mod.project_from_rows(rows, out)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
