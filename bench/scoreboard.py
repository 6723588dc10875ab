"""``bench scoreboard``: a base model and every registered published checkpoint on it (bench/published.py), under
ONE protocol: the same prompt set, seeds, sampler, steps, CFG, resolution, VAE and scorers for every model.

The protocol is the base model's family evaluation (``bench/presets/<family>/family.toml``; SD1.5 and SDXL: the
3200 HPDv2 test prompts, DDIM 50 steps, CFG 7.5 / 5.0, one image per prompt, the four real scorers), with any
option given on the command line applied to every model alike. The VAE is the base model's registered one for
every model (SDXL: madebyollin/sdxl-vae-fp16-fix, which the MaPO, SmPO, InPO and SPO authors used and which decodes
in fp16; the DPO authors' examples used SDXL's own).

Each model is evaluated into ``OUT/base-<model>-<key>/``, the key hashing the protocol, the model's name and the
VAE (unlike ``bench eval``'s, not the weight files), so a rerun reuses every image and score, and a finished
evaluation is not even reloaded: the scoreboard renders from cached results on a machine without the weights.
Delete a model's folder to score a new revision of its weights. ``OUT/scoreboard-<base>/`` gets README.md (the table of medians with intervals and the papers' own numbers beside ours, win rates against the base,
every model against every other), CSV files and report.html (``bench report``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from bench.config import ConfigError, RunConfig, family_config, validate
from bench.models import (MODELS, MissingWeightsError, checked_architecture, download_model, published_checkpoint,
                          resolve_model)

#: the papers' protocols, printed beside their numbers (evaluators/tables.reference_table rows)
PAPER_PROTOCOL = ("paper rows: the SmPO paper's main table (HPDv2 test prompts, medians; GPU-hours on A800s; "
                  "a secondary summary, results/reference/README.md); sampler, CFG and seeds are not stated there, "
                  "so they are not comparable digit for digit with the rows measured here")


def protocol(base: str, **given) -> tuple:
    """(EvalConfig, GenerationSpec, VAE) of the scoreboard on ``base``: its family's evaluation with ``given``
    (prompts, limit, metrics, images_per_prompt, sampler, steps, cfg, resolution, seed, batch_size) applied."""
    from bench.evaluate import spec_from

    if base not in MODELS or published_checkpoint(base) is not None:
        bases = sorted({published_checkpoint(n).base for n in MODELS.names() if published_checkpoint(n)})
        raise ConfigError(f"--base {base!r}: choose a base model with published checkpoints ({', '.join(bases)})")
    spec = MODELS.get(base)
    e = dataclasses.replace(family_config(spec.family).eval, **{k: v for k, v in given.items() if v is not None})
    validate(RunConfig(eval=e))
    return e, spec_from(e, spec.resolution), spec.vae


def models_of(base: str, only: list[str] | None = None) -> list[str]:
    """The base model, then its registered published checkpoints (``only``: a subset, by name)."""
    from bench.published import published_of

    names = [base, *published_of(base)]
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(f"--models: {unknown} are not {base} or its published checkpoints "
                              f"({', '.join(names[1:])}); see bench ls models")
        names = [base, *[n for n in names[1:] if n in only]]
    return names


def _missing_weights(name: str) -> str | None:
    """Why model ``name`` cannot be loaded here (MissingWeightsError's message), or None when its files are here."""
    try:
        checked_architecture(*resolve_model(name)[:3])
    except MissingWeightsError as err:
        return str(err)
    return None


def _done(folder: Path, prompt_set: str, metrics: list[str]) -> bool:
    summary = folder / "eval" / prompt_set / "summary.json"
    if not summary.is_file():
        return False
    return set(metrics) <= set(json.loads(summary.read_text()).get("metrics", {}))


def scoreboard(base: str, output_dir: Path, only: list[str] | None = None, skip_missing: bool = False,
               download: bool = False, scorers: dict | None = None, scorer_sources: dict | None = None,
               quiet: bool = False, echo: Callable[[str], None] = print, **given) -> Path:
    """Evaluate ``base`` and its published checkpoints under one protocol; write the scoreboard; return its folder.
    ``download``: first fetch the weights a model lacks (its files only) into the hub cache."""
    import hashlib

    from bench.evaluate import default_device, evaluate
    from evaluators.prompts import load_prompts
    from evaluators.report import write_report
    from evaluators.scorers.registry import SCORERS, load_scorer
    from evaluators.tables import pairwise_win_rates, render, results_table, win_rate_table, win_rates

    e, spec, vae = protocol(base, **given)
    names = models_of(base, only)
    metrics = [m.strip() for m in e.metrics.split(",") if m.strip()]
    for m in metrics:
        SCORERS.get(m)
    prompt_set = load_prompts(e.prompts, limit=e.limit)
    output_dir = Path(output_dir)

    def folder_of(name: str) -> Path:  # like bench.evaluate.base_run_dir, but it needs no weights when cached
        key = f"{spec.key()}|{name}|vae={vae or 'own'}"
        return output_dir / f"base-{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    folders, missing = {}, {}
    for name in names:
        folder = folder_of(name)
        if _done(folder, prompt_set.name, metrics):
            folders[name] = folder
            continue
        error = _missing_weights(name)
        if error and download:
            echo(f"downloading {name} ...")
            download_model(name, vae)
            error = _missing_weights(name)
        if error:
            missing[name] = error
            continue
        folders[name] = folder
    if missing and not skip_missing:
        lines = "\n".join(f"  {n}: {msg}" for n, msg in missing.items())
        raise MissingWeightsError(f"{len(missing)} of {len(names)} models have no weights here:\n{lines}\n"
                                  "Download them (the commands above, or rerun with --download), or pass "
                                  "--skip-missing to score the others.")
    if base not in folders:
        raise MissingWeightsError(f"the base model {base!r} has no weights here: {missing.get(base)}")
    echo(f"scoreboard on {base}: {', '.join(folders)}" + (f" (no weights, skipped: {', '.join(missing)})"
                                                          if missing else ""))
    echo(f"protocol: {prompt_set.name} ({len(prompt_set.prompts)} prompts x {e.images_per_prompt}), {spec.sampler} "
         f"{spec.steps} steps, cfg {spec.cfg}, {spec.resolution} px, seed {spec.seed}, VAE {vae or 'own'}, "
         f"metrics {', '.join(metrics)}")
    todo = [n for n, f in folders.items() if not _done(f, prompt_set.name, metrics)]
    if todo and scorers is None:
        scorers = {m: load_scorer(m, (scorer_sources or {}).get(m), device=default_device()) for m in metrics}
    for name in todo:
        echo(f"== {name}")
        evaluate(folders[name], prompt_set, metrics, spec, model=name, scorers=scorers, batch_size=e.batch_size,
                 progress=not quiet, vae=vae, label=name)
    runs = list(folders.values())
    base_dir = folders[base]
    out = output_dir / f"scoreboard-{base}"
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(runs, prompt_set=prompt_set.name, with_reference=True, reference_model=base,
                          with_ci=True).dropna(axis=1, how="all")
    table.to_csv(out / "table.csv")
    parts = [f"# Published checkpoints on {base}, one protocol\n",
             f"Protocol: {prompt_set.name}, {len(prompt_set.prompts)} prompts x {e.images_per_prompt} images, "
             f"{spec.sampler} {spec.steps} steps, CFG {spec.cfg}, {spec.resolution} px, seed {spec.seed}, VAE "
             f"{vae or 'each model its own'}, scorers {', '.join(metrics)}. Medians with 95% bootstrap intervals.\n",
             render(table, "md"), f"\n{PAPER_PROTOCOL}.\n"]
    others = [f for n, f in folders.items() if n != base]
    if others:
        wins = win_rate_table(others, base_dir, prompt_set=prompt_set.name)
        win_rates(others, base_dir, prompt_set=prompt_set.name).to_csv(out / "win_rates.csv", index=False)
        parts += [f"\n## Win rates against {base}\n\nPaired by prompt and seed, ties 0.5, 95% bootstrap intervals "
                  "over prompts.\n", render(wins, "md")]
    if len(runs) >= 3:
        pw = pairwise_win_rates(runs, prompt_set=prompt_set.name)
        pw.to_csv(out / "pairwise.csv")
        parts += [f"\n## Every model against every other ({pw.index.name} the column)\n", render(pw, "md")]
    if missing:
        parts += ["\n## Not scored (no weights here)\n", *[f"- {n}: {m}\n" for n, m in missing.items()]]
    sources = "".join(f"- {n}: {c.repo} ({c.layout}; {c.paper}; licence {c.licence})\n"
                      for n, c in ((n, published_checkpoint(n)) for n in folders) if c is not None)
    parts += ["\n## Checkpoints\n", sources or "(none)\n", "\n[report.html](report.html): tables, plots, the same "
              "prompts' images side by side, each model's configuration.\n"]
    (out / "README.md").write_text("\n".join(parts))
    write_report(runs, out / "report.html", baseline=base_dir, prompt_set=prompt_set.name,
                 title=f"Published checkpoints on {base}, one protocol")
    echo(render(table, "md"))
    echo(f"scoreboard: {out}/README.md, {out}/report.html")
    return out
