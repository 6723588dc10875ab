"""Validate the toy world against facts known from the real setting (SD1.5 aligned on Pick-a-Pic), never against
method rankings. ``python -m bench.toy.validate --out results/toy/validation`` trains and evaluates (resuming what
exists under ``--runs``, by default ``bench sweep``'s folder, which then reuses them), then writes ``validation.md``,
``validation.json`` and ``grid.png`` into ``--out``.

SFT and DPO each get ``bench sweep``'s equal tuning budget (its narrow or ``--grid wide`` grid around the preset,
selected on the ``toy:val`` prompts by the mean toy-pickscore); the facts are measured on the disjoint ``toy:test``
prompts, paired by prompt and seed against the base model (toy-pickscore win rate, 95% bootstrap interval over prompts):

1. SFT on the data's preferred images beats the base model (the Diffusion-DPO and Diffusion-KTO papers' SFT rows;
   the InPO and SmPO authors start SD1.5 from such a checkpoint): win rate above 55% and interval above 50%.
2. DPO beats the base model: the same bar.
3. A random weight change of the same size as DPO's update (the same norm per UNet tensor, a seeded random
   direction) does not: its interval includes 50% or lies below. Without this control, a world in which any change
   wins would pass facts 1 and 2.
4. The gain shows in attribute fidelity: the toy-fidelity win rate of SFT and DPO lies above 50%, and the share of
   images showing every asked-for attribute rises; ``grid.png`` shows the same prompts and seeds.

Beside the facts (reported, not tested): each run's change of the panel's mean utility with its interval, and the
win rate that counts comparisons below the raters' tie margin as ties (:func:`panel_change`). The current protocol
(results/toy/README.md, step 7d) is ``--grid wide --val-images-per-prompt 16 --test-images-per-prompt 32``.

The verdicts are reported, not enforced: the script exits 1 when a fact fails, so it can gate a rebuild.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

WEIGHTS = "diffusion_pytorch_model.safetensors"
HEADLINE, FIDELITY = "toy-pickscore", "toy-fidelity"
BAR_RATE, BAR_LO = 55.0, 50.0


def random_like(run_dir: Path, out_dir: Path, base_unet: Path, seed: int = 0) -> float:
    """Write a run folder ``out_dir`` whose UNet is the base UNet plus a seeded random direction with, per tensor,
    the norm of ``run_dir``'s change. Returns the total norm of that change."""
    import torch
    from safetensors.torch import load_file, save_file

    trained = load_file(str(Path(run_dir) / "weights" / "unet" / WEIGHTS))
    base = {k: v.float() for k, v in load_file(str(Path(base_unet) / WEIGHTS)).items()}
    gen = torch.Generator().manual_seed(seed)
    out, moved = {}, 0.0
    for k in sorted(trained):
        delta = trained[k].float() - base[k]
        direction = torch.randn(delta.shape, generator=gen)
        out[k] = base[k] + direction * (delta.norm() / direction.norm().clamp_min(1e-12))
        moved += float(delta.norm() ** 2)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "weights").mkdir(parents=True)
    shutil.copytree(Path(run_dir) / "weights" / "unet", out_dir / "weights" / "unet")
    save_file(out, str(out_dir / "weights" / "unet" / WEIGHTS))
    for name in ("config.json", "env.json"):
        if (Path(run_dir) / name).is_file():
            shutil.copy2(Path(run_dir) / name, out_dir / name)
    run = json.loads((Path(run_dir) / "run.json").read_text())
    run.update(name=out_dir.name, method=f"random-like-{run['method']}", perturbation_of=str(run_dir),
               perturbation_seed=seed)
    (out_dir / "run.json").write_text(json.dumps(run, indent=2))
    return moved ** 0.5


def panel_change(run_dir: Path, base_dir: Path, prompt_set: str) -> dict:
    """The run's change of the raters' panel utility against the base model, paired by prompt and seed: the mean
    change dU (toy-pickscore on the utility's scale) with its 95% prompt-clustered interval, the share of comparisons
    below the panel's mean tie margin (a rater calls such a pair a tie), the plain win rate, and the win rate that
    counts those comparisons as ties, with its interval (results/toy/diagnostics/perceptible_wins.py)."""
    import numpy as np
    import pandas as pd

    from evaluators.stats import bootstrap_ci, win_rate
    from evaluators.toy import PICKSCORE_HI, PICKSCORE_LO, Panel

    margin = float(np.mean([r.tie_margin for r in Panel.default().raters]))
    unit = 100 * (PICKSCORE_HI - PICKSCORE_LO)
    base = pd.read_parquet(Path(base_dir) / "eval" / prompt_set / "scores.parquet")
    run = pd.read_parquet(Path(run_dir) / "eval" / prompt_set / "scores.parquet")
    m = run.merge(base, on=["prompt_id", "image_index"], suffixes=("", "_b"))
    a, b, prompts = m[HEADLINE].to_numpy(), m[f"{HEADLINE}_b"].to_numpy(), m["prompt_id"].to_numpy()
    d = (a - b) / unit
    lo, hi = bootstrap_ci(d, "mean", groups=prompts)
    tied = win_rate(a, b, prompts, tie_tol=margin * unit).as_percent()
    return {"mean_dU": float(d.mean()), "mean_dU_lo": float(lo), "mean_dU_hi": float(hi), "tie_margin": margin,
            "share_below_margin": float(np.mean(np.abs(d) < margin)),
            "win_rate": win_rate(a, b, prompts).as_percent()[0], "win_rate_margin_ties": tied[0],
            "win_rate_margin_ties_lo": tied[1], "win_rate_margin_ties_hi": tied[2]}


def attribute_accuracy(eval_dir: Path) -> dict:
    """Per attribute, the share of an evaluation's images whose analysed attribute is the prompt's (and all five).

    Computed from every image of the evaluation (its scores.parquet lists them) and kept in ``attributes.json``
    beside them, so that a recorded copy of the folder (``bench sweep --record``, which keeps a few images only)
    still has it; a folder with neither all its images nor that file is an error, never a share of the few."""
    import pandas as pd
    from PIL import Image

    from bench.toy.basemodel import fidelity_report

    eval_dir = Path(eval_dir)
    paths = pd.read_parquet(eval_dir / "scores.parquet")["image_path"].tolist()
    cached = eval_dir / "attributes.json"
    if all((eval_dir / p).is_file() for p in paths):
        images, prompts = [], []
        for path in paths:
            with Image.open(eval_dir / path) as im:
                prompts.append(im.info["prompt"])
                images.append(im.convert("RGB"))
        report = fidelity_report(images, prompts)
        cached.write_text(json.dumps(report, indent=2) + "\n")
        return report
    if cached.is_file() and json.loads(cached.read_text()).get("n_images") == len(paths):
        return json.loads(cached.read_text())
    raise FileNotFoundError(f"{eval_dir} holds only some of its {len(paths)} images (a recorded copy, bench sweep "
                            "--record) and no attributes.json made from all of them: evaluate the run again")


def validate(out: Path, runs: Path, overrides: list[str] | None = None, seed: int = 0, quiet: bool = True,
             test_images_per_prompt: int | None = None, grid: str = "narrow",
             val_images_per_prompt: int | None = None, record_dir: Path | None = None) -> dict:
    """Run the four checks (module docstring) and write the report; returns the results dict. ``record_dir``: the
    sweep's ``--record`` (the control's folder and the attribute shares are recorded too)."""
    from bench.config import RunConfig
    from bench.runner import needs_training
    from bench.sweep import _with_eval, record, sweep
    from bench.trainer import train
    from bench.toy import MODEL_DIR
    from bench.worlds import world_of
    from evaluators.plots import image_grid
    from evaluators.tables import render, win_rate_table, win_rates

    overrides = list(overrides or [])
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    report = sweep("toy", runs, overrides, only=["sft", "dpo"], test_images_per_prompt=test_images_per_prompt,
                   quiet=quiet, echo=print if not quiet else (lambda m: None), grid_kind=grid,
                   val_images_per_prompt=val_images_per_prompt, record_dir=record_dir)
    seconds = {"sft and dpo (bench sweep --only sft,dpo)": time.perf_counter() - t}
    info = json.loads((report / "sweep.json").read_text())
    dirs = {m: Path(info["selected"][m]["run"]) for m in ("sft", "dpo")}
    cfg = RunConfig.from_dict(json.loads((dirs["dpo"] / "config.json").read_text()))
    test = _with_eval(cfg, cfg.eval.test_prompts, info["test_images_per_prompt"])
    t = time.perf_counter()
    name = "random-like-dpo"
    if needs_training(dirs["dpo"], cfg):  # restored from a record: the same seeds again for the update's size
        train(cfg, dirs["dpo"], resume=True, show_progress=not quiet)
    norm = random_like(dirs["dpo"], runs / name, MODEL_DIR / "unet", seed)
    base = world_of("toy").evaluate(runs / name, test, {}, quiet, lambda m: None)
    dirs[name] = runs / name
    seconds[name] = time.perf_counter() - t
    ps = info["test_prompts"]
    rows = win_rates(list(dirs.values()), base, prompt_set=ps)
    rate = {(r["run"], r["metric"]): r for r in rows.to_dict("records")}
    label = {k: Path(v).name for k, v in dirs.items()}

    def beats(run: str, metric: str = HEADLINE) -> bool:
        r = rate[(label[run], metric)]
        return r["win_rate"] > BAR_RATE and r["lo"] > BAR_LO

    acc = {"base": attribute_accuracy(Path(base) / "eval" / ps)}
    acc.update({k: attribute_accuracy(Path(v) / "eval" / ps) for k, v in dirs.items()})
    panel = {k: panel_change(v, base, ps) for k, v in dirs.items()}
    r_rand = rate[(label[name], HEADLINE)]
    facts = {
        "1 SFT on the preferred images beats the base model": beats("sft"),
        "2 DPO beats the base model": beats("dpo"),
        "3 a random change of DPO's size does not": bool(r_rand["lo"] <= BAR_LO),
        "4 the gain shows in attribute fidelity (toy-fidelity win rate interval above 50%, all-five share up)": bool(
            all(rate[(label[m], FIDELITY)]["lo"] > BAR_LO for m in ("sft", "dpo"))
            and all(acc[m]["all_attributes"] > acc["base"]["all_attributes"] for m in ("sft", "dpo"))),
    }
    image_grid([base, *dirs.values()], out / "grid.png", prompt_set=ps, max_prompts=8, cell=96)
    wins = render(win_rate_table(list(dirs.values()), base, prompt_set=ps), "md")
    attrs = ("colour", "shape", "size", "position", "background", "all_attributes")
    acc_md = "| model | " + " | ".join(attrs) + " |\n|---|" + "---:|" * len(attrs) + "\n" + "\n".join(
        f"| {k} | " + " | ".join(f"{a[x]:.3f}" for x in attrs) + " |" for k, a in acc.items())
    command = " ".join(["python -m bench.toy.validate", f"--out {out}", f"--runs {runs}", f"--grid {grid}",
                        *([f"--val-images-per-prompt {val_images_per_prompt}"] if val_images_per_prompt else []),
                        *([f"--test-images-per-prompt {test_images_per_prompt}"] if test_images_per_prompt else []),
                        *([f"--seed {seed}"] if seed else []),
                        *([f"--record {record_dir}"] if record_dir else []), *overrides])
    panel_md = ("| run | mean dU [95% CI] | share below the tie margin | win % | win % with sub-margin ties [95% CI] |"
                "\n|---|---|---:|---:|---|\n" + "\n".join(
                    f"| {k} | {p['mean_dU']:+.4f} [{p['mean_dU_lo']:+.4f}, {p['mean_dU_hi']:+.4f}] | "
                    f"{p['share_below_margin']:.2f} | {p['win_rate']:.1f} | {p['win_rate_margin_ties']:.1f} "
                    f"[{p['win_rate_margin_ties_lo']:.1f}, {p['win_rate_margin_ties_hi']:.1f}] |"
                    for k, p in panel.items()))
    verdicts = "\n".join(f"| {k} | {'yes' if v else '**NO**'} |" for k, v in facts.items())
    chosen = ", ".join(f"{m}: {info['selected'][m]['configuration']}" for m in ("sft", "dpo"))
    result = {"facts": facts, "win_rates": rows.to_dict("records"), "attribute_accuracy": acc, "panel_change": panel,
              "selected": info["selected"], "random_change_norm": norm,
              "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "runs": {k: str(v) for k, v in dirs.items()}, "base": str(base), "prompt_set": ps,
              "overrides": overrides, "grid": grid, "command": command}
    (out / "validation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "validation.md").write_text(
        f"# Toy world validation\n\n`{command}`\n\n"
        f"| fact | holds |\n|---|---|\n{verdicts}\n\n"
        f"SFT and DPO each get `bench sweep`'s {grid} grid of configurations around their preset, selected on "
        f"`{info['val_prompts']}` ({info['val_images_per_prompt']} seeds per prompt; selected: {chosen}; every "
        f"configuration: `{report}/README.md`). Win rates "
        f"against the base model on the disjoint `{ps}` ({info['test_images_per_prompt']} seeds per prompt; paired "
        f"by prompt and seed, ties 0.5, 95% bootstrap intervals over prompts); `random-like-dpo` is the base model "
        f"plus a random change with the norm of the selected DPO run's update per UNet tensor (total {norm:.4f}, "
        f"seed {seed}):\n\n{wins}\n\n"
        f"The change of the panel's utility beside (reported, not a fact's test; a pair whose utilities differ by less "
        f"than the raters' mean tie margin, dU {panel[name]['tie_margin']:.4f}, is one a rater calls a tie):\n\n"
        f"{panel_md}\n\n"
        f"Share of the test images whose analysed attribute is the prompt's:\n\n{acc_md}\n\n"
        f"Wall seconds (this invocation): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        + "\n\n![grid](grid.png)\n")
    if record_dir is not None:
        record(runs, record_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.toy.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/toy/validation"))
    ap.add_argument("--runs", type=Path, default=Path("runs/sweep"),
                    help="where the runs go (resumed; the default is `bench sweep`'s, which then reuses them)")
    ap.add_argument("--test-images-per-prompt", type=int, default=None)
    ap.add_argument("--val-images-per-prompt", type=int, default=None,
                    help="seeds per validation prompt for the selection (default: the family's eval.images_per_prompt)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random direction")
    ap.add_argument("--grid", default="narrow", help="the sweep's grid: narrow or wide (bench/sweep.py GRIDS)")
    ap.add_argument("--record", type=Path, default=None,
                    help="bench sweep's --record: a small copy of the run folders to resume from on a fresh machine")
    ap.add_argument("overrides", nargs="*", help="config overrides for both trainings (key=value)")
    args = ap.parse_args(argv)
    import bench  # noqa: F401  (torchvision compat before transformers)

    result = validate(args.out, args.runs, args.overrides, args.seed, quiet=True,
                      test_images_per_prompt=args.test_images_per_prompt, grid=args.grid,
                      val_images_per_prompt=args.val_images_per_prompt, record_dir=args.record)
    print((args.out / "validation.md").read_text())
    return 0 if all(result["facts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
