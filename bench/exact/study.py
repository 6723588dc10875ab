"""The exact world's study: every method (and the SmPO ablation) x every preference source x every DDIM step count.

    python -m bench.exact.study --out results/exact [--work DIR] [--sources on-policy,off-policy,better,mix]

For each source it runs ``bench reproduce --model exact data.source=exact:<source>`` (every method at its exact-world
preset, the same data, seeds, noises and metrics), then gathers the per-step-count changes against the base model
into ``OUT/changes.csv`` and ``OUT/table.md``, and copies each source's scatter plot to ``OUT/scatter-<source>.png``.
``measure`` is the behavioural check the tests use: train one method and return the change in expected reward with
its interval.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.exact.sources import KINDS


def measure(method: str, overrides: list[str], output_dir: Path, name: str, config: str | None = None,
            steps: int = 20) -> tuple[float, float, float]:
    """Train ``method`` on the exact world (its preset, then ``config`` and ``overrides``) and return the change in
    expected reward against the base model at ``steps`` DDIM steps on the held-out conditions: (mean, lo, hi), the
    interval a 95% bootstrap over conditions of the paired per-noise differences."""
    from bench.exact import evaluate as ev
    from bench.exact.plugin import load_denoiser
    from bench.exact.world import World
    from bench.models import resolve_model
    from bench.runner import resolve_run
    from bench.trainer import train
    from evaluators.stats import bootstrap_ci

    cfg, _, run_dir = resolve_run(method, "exact", None, config, overrides, name, str(output_dir), resume=True)
    train(cfg, run_dir, resume=True, show_progress=False)
    world, n = World(), cfg.eval.images_per_prompt
    caps = world.captions("test")
    per = [c for c in caps for _ in range(n)]
    reward = []
    for folder in (Path(resolve_model("exact")[1]) / "unet", run_dir / "weights" / "unet"):
        x, _ = ev.generate(world, load_denoiser(folder), caps, n, steps, cfg.eval.seed)
        reward.append(ev.sample_metrics(world, x, per)["reward"])
    d = reward[1] - reward[0]
    lo, hi = bootstrap_ci(d, "mean", groups=np.repeat(np.arange(len(caps)), n))
    return float(d.mean()), lo, hi


HEADLINE = 20


def matrix(df: pd.DataFrame, steps: int, what: str) -> str:
    """A method x source markdown table at one step count: the reward change (interval, win rate) or fidelity."""
    sources = list(dict.fromkeys(df["source"]))
    d = df[df.steps == steps]
    lines = ["| run | " + " | ".join(f"exact:{s}" for s in sources) + " |", "|---|" + "---|" * len(sources)]
    for run in dict.fromkeys(d["run"]):
        cells = []
        for s in sources:
            r = d[(d.run == run) & (d.source == s)].iloc[0]
            cells.append(f"{r.d_reward:+.3f} [{r.d_reward_lo:+.3f}, {r.d_reward_hi:+.3f}], {r.win:.0f}%"
                         if what == "reward" else f"{r.d_logp:+.2f}; {100 * r.d_far:+.1f}")
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study(out: Path, work: Path, sources: list[str], echo=print) -> Path:
    from bench.exact.plugin import render_changes
    from bench.runner import reproduce

    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for source in sources:
        start = time.perf_counter()
        report = reproduce("exact", work / source, [f"data.source=exact:{source}"], quiet=True, echo=lambda s: None)
        df = pd.read_csv(report / "changes.csv")
        df.insert(0, "source", source)
        frames.append(df)
        shutil.copy(report / "scatter.png", out / f"scatter-{source}.png")
        echo(f"{source}: {time.perf_counter() - start:.0f} s (not a benchmark: see bench.exact.benchmark)")
    all_changes = pd.concat(frames, ignore_index=True)
    all_changes.to_csv(out / "changes.csv", index=False)
    parts = [f"## At {HEADLINE} DDIM steps: Δ expected reward [95% CI], reward win %\n\n"
             + matrix(all_changes, HEADLINE, "reward"),
             f"## At {HEADLINE} DDIM steps: Δ mean log p(x | c); Δ far from every mode (pp)\n\n"
             + matrix(all_changes, HEADLINE, "fidelity")] + [f"## source exact:{s}\n\n" + render_changes(
        all_changes[all_changes.source == s].drop(columns="source")) for s in sources]
    (out / "table.md").write_text("\n\n".join(parts) + "\n")
    return out / "table.md"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/exact"))
    p.add_argument("--work", type=Path, default=Path("runs/exact-study"))
    p.add_argument("--sources", default=",".join(KINDS))
    a = p.parse_args()
    print(study(a.out, a.work, a.sources.split(",")))


if __name__ == "__main__":
    main()
