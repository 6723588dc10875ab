"""``bench sweep``: every method gets the same tuning budget, is selected on validation prompts and reported on
disjoint test prompts.

For each recipe of ``bench reproduce`` (:data:`bench.runner.RECIPES`), :func:`grid` gives the same number of
configurations around its preset:

* the learning rate at 0.5x, 1x and 2x the preset's;
* the method's strength ``method.beta`` at 0.5x and 2x the preset's (at the preset's learning rate); a method
  without a beta (SFT) gets the learning rate at 0.25x and 4x instead, so that every method has five.

That is the ``narrow`` grid (the default). ``--grid wide`` gives every method eight: the learning rate at 0.1x, 0.3x,
1x, 3x, 10x and 30x the preset's, and beta at 0.5x and 2x (a method without beta: the learning rate at 0.03x and
100x too). The narrow grid inherits each preset's scale, so a method whose preset is far from its good learning
rate (the toy SFT preset's was copied from DPO's) never reaches it there (results/toy/README.md, step 7b). A
configuration whose training diverges is recorded (NaN) and never selected.

Every configuration is trained with the same data, seeds and budget (steps, batch) and evaluated on the family's
validation prompt set (``eval.val_prompts``; the toy world: ``toy:val``, half of its held-out prompts) with
``--val-images-per-prompt`` seeds per prompt (default ``eval.images_per_prompt``; more seeds make the selection less
noisy, results/toy/README.md step 7d). The configuration with the highest validation mean of the headline metric (the
first of ``eval.metrics``) is selected,
and only it is evaluated on the test prompt set (``eval.test_prompts``; ``toy:test``, the other half) with
``test_images_per_prompt`` seeds per prompt. ``OUT/report/`` gets the test table (medians with intervals, win rates
against the base model, cost), each method's selected configuration beside every configuration's validation score,
and the image grid of the selected runs. Everything resumes: finished runs and evaluations are reused.
``--steps-factor F`` trains every configuration for F times its recipe's preset steps (a larger budget, the same
for every method; results/toy/README.md step 7h), into its own output folder: a run made with other steps or another
sampler is never reused. ``sweep.json`` gives the invocation's wall seconds and the compute seconds the run folders
record (training and evaluation phases), which a resumed sweep still counts for the runs an earlier invocation made.

``--record DIR`` lets a sweep outlive the machine it runs on (a CI runner, a cloud instance, a session whose disk is
wiped): after every configuration the sweep copies each evaluated run folder of ``OUT`` into ``DIR`` without what
can be rebuilt or is large (checkpoints, weights, and the images the report does not show: it keeps the first
:data:`RECORD_PROMPTS` prompts x :data:`RECORD_SEEDS` seeds of every evaluation), about 250 kB per toy
configuration, small enough to commit. A later invocation with the same ``--record`` on a fresh machine first copies
the recorded folders it lacks back into ``OUT`` and resumes from them: a configuration whose validation is recorded
is not trained again, a recipe whose test evaluation is recorded is not evaluated again (its selected run is
retrained, with the same seeds, only when its test evaluation is missing; the harness then regenerates the missing
images exactly, evaluators.harness.generate_images).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

from bench.config import ConfigError, RunConfig

LR_FACTORS = (0.5, 1.0, 2.0)
BETA_FACTORS = (0.5, 2.0)
LR_ONLY_EXTRA = (0.25, 4.0)  # for methods without a beta, so every method gets len(LR_FACTORS) + 2 configurations
#: (lr factors, beta factors, extra lr factors of a method without beta) of each grid. "narrow": five configurations
#: within x4 of the preset; "wide": eight, the learning rate over three decades (a preset far from a method's good
#: learning rate, e.g. one copied from another method, is not a limit), the same for every method.
GRIDS = {"narrow": (LR_FACTORS, BETA_FACTORS, LR_ONLY_EXTRA),
         "wide": ((0.1, 0.3, 1.0, 3.0, 10.0, 30.0), BETA_FACTORS, (0.03, 100.0))}


def _num(x: float) -> str:
    return f"{x:g}"


def grid(cfg: RunConfig, kind: str = "narrow") -> list[tuple[str, list[str]]]:
    """[(label, overrides)] of the configurations of one recipe, resolved to ``cfg`` (its preset), on grid ``kind``
    (:data:`GRIDS`)."""
    if kind not in GRIDS:
        raise ConfigError(f"unknown sweep grid {kind!r}; choose {' or '.join(GRIDS)}")
    lr_factors, beta_factors, lr_only_extra = GRIDS[kind]
    lr = cfg.train.lr
    points = [(f"lr{_num(f)}x", [f"train.lr={lr * f!r}"]) for f in lr_factors]
    from bench.config import method_config
    from methods.registry import get_method

    beta = getattr(method_config(cfg, get_method(cfg.method)), "beta", None)
    if beta is not None:
        points += [(f"beta{_num(f)}x", [f"method.beta={beta * f!r}"]) for f in beta_factors]
    else:
        points += [(f"lr{_num(f)}x", [f"train.lr={lr * f!r}"]) for f in lr_only_extra]
    return points


#: what ``--record`` keeps of an evaluation's images: the first prompts x seeds, which the report's grids show
#: (the sweep's grid: 8 prompts, seed 0; report.html: 6 prompts, 2 seeds)
RECORD_PROMPTS, RECORD_SEEDS = 8, 2
_RECORD_SKIP = ("checkpoints", "weights")  # rebuilt by training again; never needed to report a finished run


def _recorded(rel: Path, shown: set[str]) -> bool:
    """Whether ``--record`` keeps the file ``rel`` (relative to its run folder); ``shown``: the image paths kept."""
    if rel.parts[0] in _RECORD_SKIP:
        return False
    if rel.parent.name == "images":
        return rel.as_posix() in shown
    return rel.suffix != ".png"  # a run's own pictures (bench run's grid.png) are drawn from images it drops


def _shown_images(run: Path) -> set[str]:
    """The image paths (relative to ``run``) of each evaluation's first RECORD_PROMPTS prompts x RECORD_SEEDS seeds
    (image files are named ``<prompt id>_<seed index>.png``, evaluators.harness)."""
    shown = set()
    for images in run.glob("eval/*/images"):
        files = sorted(images.glob("*.png"))
        pids = sorted({f.stem.split("_")[0] for f in files})[:RECORD_PROMPTS]
        shown |= {f.relative_to(run).as_posix() for f in files
                  if f.stem.split("_")[0] in pids and int(f.stem.split("_")[1]) < RECORD_SEEDS}
    return shown


def record(output_dir: Path, dest: Path) -> int:
    """Copy every evaluated run folder of ``output_dir`` (a run.json and an ``eval/*/summary.json``: a run still
    training is left for the next call) into ``dest``, leaving out checkpoints, weights and the images the report
    does not show (module docstring); files already recorded unchanged are not copied again, files the run no longer
    has are removed. Returns the number of files copied."""
    import shutil

    output_dir, dest = Path(output_dir), Path(dest)
    copied = 0
    evaluated = [p for p in output_dir.iterdir()
                 if (p / "run.json").is_file() and any(p.glob("eval/*/summary.json"))]
    for run in sorted(evaluated):
        shown = _shown_images(run)
        keep = {f.relative_to(run) for f in run.rglob("*") if f.is_file() and _recorded(f.relative_to(run), shown)}
        target = dest / run.name
        for rel in sorted(keep):
            src, dst = run / rel, target / rel
            if dst.is_file() and dst.stat().st_size == src.stat().st_size and src.read_bytes() == dst.read_bytes():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)  # atomic: an interrupted record never leaves half a file
            copied += 1
        for f in [f for f in target.rglob("*") if f.is_file() and f.relative_to(target) not in keep]:
            f.unlink()
    return copied


def restore(dest: Path, output_dir: Path) -> list[str]:
    """Copy the run folders recorded in ``dest`` that ``output_dir`` lacks into it; returns their names. A folder
    ``output_dir`` already has is left as it is (it is the newer)."""
    import shutil

    dest, output_dir = Path(dest), Path(output_dir)
    if not dest.is_dir():
        return []
    restored = []
    for run in sorted(p for p in dest.iterdir() if (p / "run.json").is_file()):
        if not (output_dir / run.name).exists():
            shutil.copytree(run, output_dir / run.name)
            restored.append(run.name)
    return restored


def _with_eval(cfg: RunConfig, prompts: str, images_per_prompt: int) -> RunConfig:
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, prompts=prompts,
                                                             images_per_prompt=images_per_prompt))


def _images_per_prompt(run_dir: Path, prompt_set: str) -> int | None:
    """Seeds per prompt of the run's finished evaluation on ``prompt_set`` (None when it has none)."""
    summary = Path(run_dir) / "eval" / prompt_set / "summary.json"
    return int(json.loads(summary.read_text())["images_per_prompt"]) if summary.is_file() else None


def _mean(run_dir: Path, prompt_set: str, metric: str) -> float:
    from evaluators.rundir import read_run

    return read_run(run_dir).eval(prompt_set).metrics[metric].mean


def reuse_problem(run_dir: Path, cfg: RunConfig, prompt_set: str) -> str | None:
    """Why the finished run in ``run_dir`` cannot stand for ``cfg`` (None when it can): trained for other steps
    (a resumed run may change them) or evaluated on ``prompt_set`` with another sampler, steps, guidance or seed."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    if saved.is_file():
        steps = json.loads(saved.read_text()).get("train", {}).get("steps")
        if steps is not None and steps != cfg.train.steps:
            return f"it was trained for {steps} steps, this sweep asks for {cfg.train.steps}"
    summary = run_dir / "eval" / prompt_set / "summary.json"
    if summary.is_file():
        done = json.loads(summary.read_text()).get("generation", {})
        e = cfg.eval
        diff = [f"{k} {done[k]} (asked {v})" for k, v in (("sampler", e.sampler), ("steps", e.steps), ("cfg", e.cfg),
                                                        ("seed", e.seed)) if k in done and done[k] != v]
        if diff:
            return f"its {prompt_set} evaluation used {', '.join(diff)}"
    return None


def _phase_seconds(path: Path) -> float:
    """The sum of the phases' seconds in a ``cost.json`` or a ``timing.json`` (its cumulative phases where it has
    them: every evaluation call on that folder; 0 when the file does not exist)."""
    if not path.is_file():
        return 0.0
    record = json.loads(path.read_text())
    phases = record.get("cumulative_phases", record.get("phases", {}))
    return sum(float(v.get("seconds", 0.0)) for v in phases.values())


def recorded_seconds(run_dir: Path, prompt_set: str | None = None, train: bool = True) -> float:
    """The compute seconds a run folder records: its training phases (``cost.json``; none for a base model) unless
    ``train`` is False, and with ``prompt_set`` its evaluations there (``eval/<set>/timing.json``: sampling and
    scoring, every call on that folder, earlier ones at other seed counts included). Process start-up and model
    loading are not in them. They stay with the folder, so a resumed sweep still counts what an earlier invocation
    ran."""
    run_dir = Path(run_dir)
    return ((_phase_seconds(run_dir / "cost.json") if train else 0.0)
            + (_phase_seconds(run_dir / "eval" / prompt_set / "timing.json") if prompt_set else 0.0))


def sweep(model: str, output_dir: Path, overrides: list[str], only: list[str] | None = None,
          test_images_per_prompt: int | None = None, quiet: bool = False,
          echo: Callable[[str], None] = print, grid_kind: str = "narrow",
          val_images_per_prompt: int | None = None, steps_factor: int = 1, record_dir: Path | None = None) -> Path:
    """Train, select and report (module docstring); returns ``output_dir/report``. ``record_dir``: ``--record``."""
    from bench.runner import RECIPES, needs_training, resolve_run
    from bench.trainer import NonFiniteError, train
    from bench.worlds import world_of
    from evaluators.plots import image_grid
    from evaluators.prompts import load_prompts
    from evaluators.tables import render, results_table, win_rate_table, win_rates

    output_dir = Path(output_dir)
    world = world_of(model)
    state: dict = {}
    chosen, val_rows, seconds, base_test = {}, [], {}, None
    recorded: dict[str, float] = {}  # what each run folder records, whichever invocation made it
    if steps_factor < 1:
        raise ConfigError(f"--steps-factor must be a whole number >= 1, got {steps_factor}")
    recipes = [r for r in RECIPES if not only or r[0] in only]
    if not recipes:
        raise ConfigError(f"no recipe selected; choose from {', '.join(r[0] for r in RECIPES)}")
    if record_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        restored = restore(record_dir, output_dir)
        if restored:
            echo(f"restored {len(restored)} recorded run folders from {record_dir}")

    def keep_record() -> None:
        if record_dir is not None:
            record(output_dir, record_dir)
    for name, method, config in recipes:
        preset, _, _ = resolve_run(method, model, None, config, overrides, f"{name}-preset", str(output_dir),
                                   resume=True, echo=lambda m: None)
        # the budget: every recipe's own preset steps times the same factor (inversion presets run fewer steps)
        budget = [*overrides, f"train.steps={preset.train.steps * steps_factor}"] if steps_factor != 1 else overrides
        e = preset.eval
        if not (e.val_prompts and e.test_prompts):
            raise ConfigError(f"model {model!r} defines no validation/test prompt sets for bench sweep: pass "
                              "eval.val_prompts=NAME eval.test_prompts=NAME (disjoint prompt sets)")
        val_set, test_set = (load_prompts(p, limit=e.limit).name for p in (e.val_prompts, e.test_prompts))
        metric = e.metrics.split(",")[0].strip()
        n_val = val_images_per_prompt or e.images_per_prompt
        best = None
        for label, extra in grid(preset, grid_kind):
            run_name = f"{name}-{label}"
            cfg, _, run_dir = resolve_run(method, model, None, config,
                                          [*budget, *extra, f"eval.prompts={e.val_prompts}"], run_name,
                                          str(output_dir), resume=True, echo=lambda m: None)
            problem = reuse_problem(run_dir, cfg, val_set) or reuse_problem(run_dir, cfg, test_set)
            if problem:
                raise ConfigError(f"{run_dir} cannot be reused: {problem}. Sweep into another --output-dir (each "
                                  "setting of the budget or the evaluation protocol gets its own)")
            start = time.perf_counter()
            try:
                if _images_per_prompt(run_dir, val_set) != n_val:
                    echo(f"== {run_name} ({method}{', ' + config if config else ''}; {' '.join(extra)})")
                    if needs_training(run_dir, cfg):
                        train(cfg, run_dir, resume=True, show_progress=not quiet)
                    world.evaluate(run_dir, _with_eval(cfg, e.val_prompts, n_val), state, True,
                                   lambda m: None)
                score = _mean(run_dir, val_set, metric)
            except NonFiniteError as err:  # a diverged configuration is a result (never selected), not a crash
                score = float("nan")
                echo(f"{run_name}: diverged ({str(err).splitlines()[0][:120]})")
            seconds[run_name] = time.perf_counter() - start
            recorded[run_name] = recorded_seconds(run_dir, val_set)
            val_rows.append({"recipe": name, "configuration": label, "overrides": " ".join(extra),
                             f"val {metric} mean": score, "run": str(run_dir)})
            echo(f"{run_name}: validation {metric} mean {score:.4f}")
            keep_record()
            if score == score and (best is None or score > best[0]):
                best = (score, label, run_dir, cfg)
        if best is None:
            raise ConfigError(f"{name}: every configuration diverged; lower train.lr")
        _, label, run_dir, cfg = best
        n_test = test_images_per_prompt or 2 * e.images_per_prompt
        start = time.perf_counter()
        test_cfg = _with_eval(cfg, e.test_prompts, n_test)
        base_test = world.base_dir(test_cfg)
        if _images_per_prompt(run_dir, test_set) != n_test or _images_per_prompt(base_test, test_set) != n_test:
            if needs_training(run_dir, cfg):  # a recorded run (--record) keeps no weights: the same seeds again
                echo(f"== {name}-{label}: training again for its test evaluation (its weights are not here)")
                train(cfg, run_dir, resume=True, show_progress=not quiet)
            base_test = world.evaluate(run_dir, test_cfg, state, True, lambda m: None)
        seconds[f"{name} test"] = time.perf_counter() - start
        recorded[f"{name} test"] = recorded_seconds(run_dir, test_set, train=False)
        base_val = world.base_dir(_with_eval(cfg, e.val_prompts, n_val))
        recorded[f"base model {val_set} ({n_val} seeds)"] = recorded_seconds(base_val, val_set)
        recorded[f"base model {test_set} ({n_test} seeds)"] = recorded_seconds(base_test, test_set)
        chosen[name] = (label, run_dir)
        echo(f"{name}: selected {label}")
        keep_record()
    report = output_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    runs = [run_dir for _, run_dir in chosen.values()]
    table = render(results_table([base_test, *runs], prompt_set=test_set), "md")
    wins = render(win_rate_table(runs, base_test, prompt_set=test_set), "md")
    win_rates(runs, base_test, prompt_set=test_set).to_csv(report / "win_rates.csv", index=False)
    image_grid([base_test, *runs], report / "grid.png", prompt_set=test_set, max_prompts=8, cell=96)
    import pandas as pd

    val = pd.DataFrame(val_rows)
    val["selected"] = [chosen[r][0] == c for r, c in zip(val["recipe"], val["configuration"])]
    val.to_csv(report / "validation.csv", index=False)
    val_md = "| recipe | configuration | overrides | validation mean | selected |\n|---|---|---|---:|---|\n" + "\n".join(
        f"| {r['recipe']} | {r['configuration']} | `{r['overrides']}` | {r[f'val {metric} mean']:.4f} | "
        f"{'**yes**' if r['selected'] else ''} |" for r in val.to_dict("records"))
    sel = "\n".join(f"| {name} | {label} | `{run_dir.name}` |" for name, (label, run_dir) in chosen.items())
    total, total_recorded = sum(seconds.values()), sum(recorded.values())
    (report / "README.md").write_text(
        f"# bench sweep on {model}\n\nEvery recipe: {len(grid(cfg, grid_kind))} configurations ({grid_kind} grid: "
        f"learning rate x {', '.join(_num(f) for f in GRIDS[grid_kind][0])}; beta x "
        f"{', '.join(_num(f) for f in GRIDS[grid_kind][1])}, or for a method without beta the learning rate x "
        f"{', '.join(_num(f) for f in GRIDS[grid_kind][2])}), each selected on "
        f"`{val_set}` by the mean {metric} ({n_val} seeds per prompt) and reported on `{test_set}` ({n_test} seeds "
        f"per prompt).\n\n"
        f"## Test prompts\n\n{table}\n\nWin rates against the base model (paired by prompt and seed, ties 0.5, 95% "
        f"bootstrap intervals over prompts):\n\n{wins}\n\n![grid](grid.png)\n\n## Selected configurations\n\n"
        f"| recipe | selected | run |\n|---|---|---|\n{sel}\n\n## Every configuration on the validation prompts\n\n"
        f"{val_md}\n\nWall time of this invocation: {total / 60:.1f} minutes (training and evaluation; reused runs "
        f"count their evaluation only). Recorded compute time of the whole sweep: {total_recorded / 60:.1f} minutes "
        f"(the training and evaluation phases each run folder records, whichever invocation ran them, and the base "
        f"model's evaluations; process start-up and model loading not included).\n")
    (report / "sweep.json").write_text(json.dumps(
        {"model": model, "grid": grid_kind, "overrides": overrides, "steps_factor": steps_factor,
         "val_prompts": val_set, "test_prompts": test_set, "val_images_per_prompt": n_val,
         "test_images_per_prompt": n_test,
         "metric": metric, "selected": {k: {"configuration": v[0], "run": str(v[1])} for k, v in chosen.items()},
         "seconds": {k: round(v, 1) for k, v in seconds.items()},
         "recorded_seconds": {k: round(v, 1) for k, v in recorded.items()},
         "recorded_seconds_total": round(total_recorded, 1)}, indent=2) + "\n")
    from evaluators.report import write_report

    write_report([base_test, *runs], report / "report.html", baseline=base_test, prompt_set=test_set,
                 title=f"bench sweep on {model}: the selected configurations on {test_set}")
    echo(table + "\n\n" + wins + f"\n\nreport: {report}/README.md, {report}/report.html")
    return report
