"""The ``bench`` command line (typer). See DESIGN.md section 12 and ``bench --help``."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

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


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _resolve(method: str, model: str, data: str, config: Optional[Path], overrides: list[str]):
    from bench.config import resolve
    from bench.models import resolve_model
    from methods import get_method

    method_cls = get_method(method)
    family = resolve_model(model)[2]
    cfg, sources = resolve(method, model, family, method_cls, str(config) if config else None, overrides)
    if data is not None:
        cfg.data.source = data
    return cfg, sources, method_cls


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


def _train(method: str, model: str, data: Optional[str], config: Optional[Path], overrides: list[str],
           name: Optional[str], output_dir: Optional[Path], resume: bool, num_processes: int,
           help_config: bool, quiet: bool) -> Path:
    from bench.config import ConfigError, all_keys
    from bench.data import DataError
    from bench.models import MissingWeightsError
    from bench_common import UnknownNameError

    if help_config:
        from methods import get_method
        for key, tp, default in all_keys(get_method(method)):
            typer.echo(f"{key:34s} {tp:18s} {default}")
        raise typer.Exit(0)
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        _relaunch(num_processes)
    _quiet_libraries()
    try:
        cfg, sources, _ = _resolve(method, model, data, config, overrides)
        if output_dir is not None:
            cfg.output_dir = str(output_dir)
        if name is not None:
            cfg.name = name
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.output_dir) / (cfg.name or f"{cfg.method}-{Path(cfg.model.name).name}-{stamp}")
        if run_dir.exists() and any(run_dir.iterdir()) and not resume:
            raise ConfigError(f"run directory {run_dir} exists; pass --resume to continue it or choose --name")
        from bench.trainer import train

        is_main = os.environ.get("RANK", "0") == "0"
        if is_main:
            typer.echo(f"config ({', then '.join(sources)}):\n  " + "\n  ".join(_flat(cfg)))
            if cfg.model.name.startswith("tiny") or cfg.data.source == "embedded":
                typer.secho(DRY_RUN_NOTE.format(model=cfg.model.name, data=cfg.data.source), fg=typer.colors.YELLOW)
        out = train(cfg, run_dir, resume=resume, show_progress=not quiet)
        if is_main:
            typer.echo(f"run directory: {out}")
        return out
    except (ConfigError, DataError, MissingWeightsError, UnknownNameError, ImportError) as err:
        _fail(err)


_METHOD = typer.Option("dpo", "--method", "-m", help="a registered method (bench ls methods)")
_MODEL = typer.Option("tiny-sd15", "--model", help="registered model name, local diffusers folder or hub id")
_DATA = typer.Option(None, "--data", help="'embedded', an HF dataset id, a save_to_disk folder or parquet files")
_CONFIG = typer.Option(None, "--config", help="a TOML file of config values (applied after the preset)")
_NAME = typer.Option(None, "--name", help="run directory name (default: method-model-timestamp)")
_OUT = typer.Option(None, "--output-dir", help="parent folder of run directories (default: runs)")
_RESUME = typer.Option(False, "--resume", help="continue the named run from its newest complete checkpoint")
_NPROC = typer.Option(1, "--num-processes", help="processes (GPUs, or CPU processes) via accelerate launch")
_HELPCFG = typer.Option(False, "--help-config", help="list every config key with its type and default")
_QUIET = typer.Option(False, "--quiet", help="no progress bar")


@app.command()
def train(method: str = _METHOD, model: str = _MODEL, data: Optional[str] = _DATA,
          config: Optional[Path] = _CONFIG, overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
          name: Optional[str] = _NAME, output_dir: Optional[Path] = _OUT, resume: bool = _RESUME,
          num_processes: int = _NPROC, help_config: bool = _HELPCFG, quiet: bool = _QUIET) -> None:
    """Train a method on a base model and write a run directory (config, env, metrics, cost, weights)."""
    _train(method, model, data, config, overrides or [], name, output_dir, resume, num_processes, help_config, quiet)


@app.command()
def run(method: str = _METHOD, model: str = _MODEL, data: Optional[str] = _DATA,
        config: Optional[Path] = _CONFIG, overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
        name: Optional[str] = _NAME, output_dir: Optional[Path] = _OUT, resume: bool = _RESUME,
        num_processes: int = _NPROC, help_config: bool = _HELPCFG, quiet: bool = _QUIET) -> None:
    """Train, then evaluate against the base model (evaluation lands with the evaluation harness)."""
    out = _train(method, model, data, config, overrides or [], name, output_dir, resume, num_processes,
                 help_config, quiet)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"training done: {out}. Evaluation is not wired into `bench run` yet; "
                   "see `bench ls` for what is available.")


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
        from bench.models import MODELS
        for n in MODELS.names():
            spec = MODELS.get(n)
            typer.echo(f"{n:12s} {spec.source:45s} {spec.description}")
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


@app.command()
def perf(methods: str = typer.Option("dpo", help="comma-separated methods"),
         model: str = typer.Option("tiny-sd15", help="model name or path"),
         variants: str = typer.Option("cached,no-cache", help="comma-separated variants (bench/perf.py VARIANTS)"),
         batch_size: int = typer.Option(4, help="pairs per step"),
         warmup: int = typer.Option(3), repeats: int = typer.Option(15),
         out: Path = typer.Option(Path("results/perf"), help="folder for the results files"),
         overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP)) -> None:
    """Benchmark the training step of methods under variants; writes JSON + markdown results files."""
    from bench import perf as perf_mod

    _quiet_libraries()
    path = perf_mod.run(methods.split(","), model, variants.split(","), batch_size, warmup, repeats, out,
                        overrides or [])
    typer.echo(f"results: {path} and {path.with_suffix('.md')}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
