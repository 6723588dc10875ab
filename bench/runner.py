"""Orchestration shared by ``bench run`` and ``bench reproduce``: resolve a config, train, evaluate the run and the
base model with the same prompts, seeds, sampler and scorers, and write the comparison (table.md, win_rates.csv)."""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path
from typing import Callable

from bench.config import ConfigError, RunConfig, resolve, resume_changes
from bench.models import resolve_model
from methods import get_method


DEFAULT_METHOD, DEFAULT_MODEL = "dpo", "toy"


def newest_run(output_dir: str, method: str | None, model: str | None) -> Path:
    """The newest resumable run under ``output_dir``: a saved config (of ``method`` and ``model`` when given) and a
    complete checkpoint."""
    from bench import checkpoint

    found = []
    for d in Path(output_dir).glob("*/config.json"):
        if checkpoint.latest(d.parent / "checkpoints") is None:
            continue
        try:
            saved = json.loads(d.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not a run this bench can resume
        if (method is None or saved.get("method") == method) and \
                (model is None or saved.get("model", {}).get("name") == model):
            found.append(d.parent)
    if not found:
        what = " ".join(x for x in (method, model) if x) or "any"
        raise ConfigError(f"--resume: no resumable {what} run (a saved config.json and a checkpoint) under "
                          f"{output_dir}/; pass --name RUN (and --output-dir where it is not runs/)")
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime)


def resolve_run(method: str | None, model: str | None, data: str | None, config: str | None, overrides: list[str],
                name: str | None = None, output_dir: str | None = None, resume: bool = False,
                echo: Callable[[str], None] = lambda s: None) -> tuple[RunConfig, list[str], Path]:
    """The resolved config, the sources it came from, and the run directory (refusing to overwrite one).

    A resumed run (``resume`` and a run directory with a config.json) starts from its SAVED config: the presets are
    not applied again, the given --config, --data and overrides go on top, and any change to what the checkpoint
    fixes (see ``bench.config.MUTABLE_ON_RESUME``) is refused with a ConfigError; the rest apply and are recorded
    when the trainer rewrites config.json. ``method``/``model`` None mean "the saved run's" on resume, else the
    defaults (dpo, toy). ``--resume`` without a name resumes the newest matching run, said through ``echo``."""
    out_dir = output_dir or RunConfig().output_dir
    if resume and name is None:
        name = newest_run(out_dir, method, model).name
        echo(f"--resume without --name: resuming the newest {method or ''} {model or ''} run, {out_dir}/{name}"
             .replace("  ", " "))
    saved_file = Path(out_dir) / (name or "") / "config.json"
    saved = RunConfig.from_dict(json.loads(saved_file.read_text())) if resume and name and saved_file.is_file() \
        else None
    if saved is not None:
        changed = [f"{k}: {a!r} -> {b!r}" for k, a, b in (("method", saved.method, method),
                                                            ("model.name", saved.model.name, model)) if b and a != b]
        if changed:
            raise ConfigError(f"--resume of {saved_file.parent} cannot change what its checkpoint fixes: "
                              f"{'; '.join(changed)}. Drop --method/--model, or start a new run with --name")
    method = method or (saved.method if saved else DEFAULT_METHOD)
    model = model or (saved.model.name if saved else DEFAULT_MODEL)
    family = resolve_model(model)[2]
    base = copy.deepcopy(saved) if saved else None
    cfg, sources = resolve(method, model, family, get_method(method), config, overrides, base=base)
    if data is not None:
        cfg.data.source = data
    if output_dir is not None:
        cfg.output_dir = str(output_dir)
    if name is not None:
        cfg.name = name
    if saved is not None:
        refused, applied = resume_changes(saved, cfg)
        if refused:
            raise ConfigError(f"--resume of {saved_file.parent} cannot change what its checkpoint fixes: "
                              f"{'; '.join(refused)}. Drop those overrides, or start a new run with --name")
        if applied:
            echo(f"resume: applied {'; '.join(applied)}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.output_dir) / (cfg.name or f"{cfg.method}-{Path(cfg.model.name).name}-{stamp}")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise ConfigError(f"run directory {run_dir} exists; pass --resume to continue it or choose --name")
    return cfg, sources, run_dir


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def load_eval_scorers(cfg: RunConfig) -> dict:
    from bench.evaluate import default_device
    from evaluators.scorers.registry import load_scorer

    return {m.strip(): load_scorer(m.strip(), device=default_device()) for m in cfg.eval.metrics.split(",")
            if m.strip()}


def evaluate_and_compare(run_dir: Path, cfg: RunConfig, scorers: dict | None = None, quiet: bool = False,
                         echo: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Evaluate the base model (cached across runs) and the run; write table.md, win_rates.csv and grid.png (base and
    run side by side on the first prompts) in the run."""
    from bench.evaluate import base_run_dir, evaluate, spec_from
    from evaluators.prompts import load_prompts
    from evaluators.tables import render, results_table, win_rate_table, win_rates

    e = cfg.eval
    prompt_set = load_prompts(e.prompts, limit=e.limit)
    spec = spec_from(e, cfg.model.resolution or resolve_model(cfg.model.name)[3])
    scorers = scorers if scorers is not None else load_eval_scorers(cfg)  # loaded once, used for both
    metrics = list(scorers)
    base = base_run_dir(Path(cfg.output_dir), cfg.model.name, spec, cfg.model.vae)
    echo(f"evaluating on {prompt_set.name} ({len(prompt_set.prompts)} prompts x {e.images_per_prompt}), "
         f"{spec.sampler} {spec.steps} steps, cfg {spec.cfg}, metrics {', '.join(metrics)}")
    evaluate(base, prompt_set, metrics, spec, model=cfg.model.name, scorers=scorers, batch_size=e.batch_size,
             progress=not quiet, vae=cfg.model.vae)
    evaluate(run_dir, prompt_set, metrics, spec, run_dir=run_dir, scorers=scorers, batch_size=e.batch_size,
             progress=not quiet)
    table = render(results_table([base, run_dir], prompt_set=prompt_set.name), "md")
    wins = render(win_rate_table([run_dir], base, prompt_set=prompt_set.name), "md")
    (run_dir / "table.md").write_text(table + "\n\n" + wins + "\n")
    win_rates([run_dir], base, prompt_set=prompt_set.name).to_csv(run_dir / "win_rates.csv", index=False)
    from evaluators.plots import image_grid

    image_grid([base, run_dir], run_dir / "grid.png", prompt_set=prompt_set.name, max_prompts=6, cell=128)
    echo(table + "\n\n" + wins)
    return run_dir / "table.md", base


def needs_training(run_dir: Path, cfg: RunConfig) -> bool:
    """False when the run has its final weights for ``cfg.train.steps`` (only its evaluation is missing)."""
    from bench import checkpoint

    if not (run_dir / "weights").is_dir():
        return True
    latest = checkpoint.latest(run_dir / "checkpoints")
    return latest is not None and checkpoint.trainer_state(latest)["step"] < cfg.train.steps


#: the paper-style comparison: every method with its preset, then the SmPO ablation rows (same data, seeds, scorers)
RECIPES: list[tuple[str, str, str | None]] = [
    ("sft", "sft", None), ("dpo", "dpo", None), ("kto", "kto", None), ("mapo", "mapo", None), ("inpo", "inpo", None),
    ("smpo", "smpo", None), ("smpo-ablation-dpo", "smpo", "ablation/smpo-dpo"),
    ("smpo-ablation-ddim", "smpo", "ablation/smpo-ddim"), ("smpo-ablation-renoise", "smpo", "ablation/smpo-renoise"),
]


def reproduce(model: str, output_dir: Path, overrides: list[str], only: list[str] | None = None, quiet: bool = False,
              echo: Callable[[str], None] = print) -> Path:
    """Train and evaluate every recipe on ``model``, then write the report (tables, win rates, plots, and the
    self-contained report.html of ``bench report``) to ``output_dir/report``. Runs already finished (weights and evaluation present) are reused, so it resumes."""
    import time

    from bench.trainer import train
    from bench.worlds import world_of
    from evaluators.tables import render, results_table, win_rate_table, win_rates

    output_dir = Path(output_dir)
    world = world_of(model)
    runs, base, state, seconds, cfg = [], None, {}, {}, None
    for name, method, config in RECIPES:
        if only and name not in only:
            continue
        run_dir = output_dir / name
        done = (run_dir / "table.md").is_file()
        try:
            cfg, _, run_dir = resolve_run(method, model, None, config, overrides, name, str(output_dir), resume=True,
                                          echo=echo)
        except ConfigError as err:
            raise ConfigError(f"{err} (bench reproduce reuses the runs already in {output_dir}: pass another "
                              "--output-dir to start afresh)") from None
        start = time.perf_counter()
        if not done:
            echo(f"== {name} ({method}{', ' + config if config else ''})")
            if needs_training(run_dir, cfg):
                train(cfg, run_dir, resume=True, show_progress=not quiet)
            base = world.evaluate(run_dir, cfg, state, quiet, echo)
        else:
            base = world.base_dir(cfg)
        seconds[name] = time.perf_counter() - start
        runs.append(run_dir)
    if cfg is None:
        raise ConfigError(f"no recipe selected; choose from {', '.join(r[0] for r in RECIPES)}")
    report = output_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    headline = world.headline_set(cfg)
    table = render(results_table([base, *runs], prompt_set=headline), "md")
    wins = render(win_rate_table(runs, base, prompt_set=headline), "md")
    win_rates(runs, base, prompt_set=headline).to_csv(report / "win_rates.csv", index=False)
    paths, extra = world.report(runs, base, report, cfg)
    wall = "\n".join(f"| {k} | {v / 60:.1f} |" for k, v in seconds.items())
    (report / "README.md").write_text(
        f"# bench reproduce on {model}\n\n{table}\n\nWin rates against the base model (paired by prompt and seed, "
        f"ties 0.5, 95% bootstrap intervals over prompts):\n\n{wins}\n\n{extra}| run | wall minutes (this "
        f"invocation) |\n|---|---:|\n{wall}\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in paths) + "\n")
    from evaluators.report import write_report

    write_report([base, *runs], report / "report.html", baseline=base, prompt_set=headline,
                 title=f"bench reproduce on {model}")
    echo(table + "\n\n" + wins + f"\n\nreport: {report}/README.md, {report}/report.html")
    return report
