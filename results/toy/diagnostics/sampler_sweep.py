"""Issue 14, diagnosis 1: does the evaluation sampler explain "SFT on the shipped winners loses"? One trained run
(SFT on the shipped pairs' winners, the toy preset) and the base model, evaluated under several (DDIM steps, CFG)
settings, each with the same prompts, seeds and scorers; only the sampler changes between rows.

    bench train --method sft --name sft-toy --output-dir runs/diag      # about a minute
    python results/toy/diagnostics/sampler_sweep.py runs/diag/sft-toy OUT.md [STEPS:CFG ...]

Default settings: 20:4 (the toy protocol), 50:4, 100:4, 20:1 (no guidance), 20:7.5. Writes a markdown table of the
run's toy-pickscore win rate against the base model (and the other three scorers') per setting.
"""
import sys
from pathlib import Path

DEFAULT = ["20:4", "50:4", "100:4", "20:1", "20:7.5"]


def main() -> None:
    import bench  # noqa: F401  (torchvision compat first)
    import dataclasses

    from bench.config import family_config
    from bench.evaluate import base_run_dir, evaluate, spec_from
    from bench.runner import load_eval_scorers
    from evaluators.prompts import load_prompts
    from evaluators.tables import win_rates

    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    settings = sys.argv[3:] or DEFAULT
    cfg = family_config("toy")
    prompts = load_prompts(cfg.eval.prompts, limit=cfg.eval.limit)
    scorers = load_eval_scorers(cfg)
    rows = ["| DDIM steps | CFG | " + " | ".join(f"{m} win % [95% CI]" for m in scorers) + " |",
            "|---:|---:|" + "---|" * len(scorers)]
    for setting in settings:
        steps, guidance = setting.split(":")
        e = dataclasses.replace(cfg.eval, steps=int(steps), cfg=float(guidance))
        spec = spec_from(e, 32)
        base = base_run_dir(run.parent, "toy", spec)
        evaluate(base, prompts, list(scorers), spec, model="toy", scorers=scorers, batch_size=e.batch_size,
                 progress=False)
        target = run.parent / f"{run.name}-s{steps}-c{guidance}"  # the run's weights, evaluated under this setting
        target.mkdir(exist_ok=True)
        (target / "run.json").write_text((run / "run.json").read_text())
        evaluate(target, prompts, list(scorers), spec, run_dir=run, scorers=scorers, batch_size=e.batch_size,
                 progress=False)
        w = win_rates([target], base).set_index("metric")
        cells = [f"{w.loc[m, 'win_rate']:.1f} [{w.loc[m, 'lo']:.1f}, {w.loc[m, 'hi']:.1f}]" for m in scorers]
        rows.append(f"| {steps} | {guidance} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
