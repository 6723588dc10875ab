"""The README's toy table, every cell read from a `bench sweep` report and its run folders (no number typed by hand):

    python results/toy/sweep_table.py runs/validate-600/report [--control runs/validate-600/random-like-dpo]
        [--exact results/exact/changes.csv] [--source mix] [--steps 20] > results/toy/sweep-3x/table.md

One row per selected run (the base model first, the control last): its configuration as values (and as factors of
the preset); toy-pickscore win rate against the base model with its 95% interval (as in the report's
`win_rates.csv`, paired by prompt and seed, prompt-clustered bootstrap); the tie-aware
rate, which counts comparisons below the panel's tie margin as ties (`bench.toy.validate.panel_change`); toy-fidelity
and toy-quality win rates; the share of test images with shape, position and all five attributes right
(`bench.toy.validate.attribute_accuracy`); training minutes on this machine, the fastest of the recipe's
configurations (each `cost.json`; a slower one shared the cores with another job); and the exact world's change in
expected reward for the same recipe at its preset (`compare_worlds.py`). The best value of each win-rate column is
bold. About a minute (it analyses every test image for the attribute columns).
"""
import argparse
import json
from pathlib import Path

import pandas as pd

from bench.toy.validate import attribute_accuracy, panel_change
from evaluators.tables import win_rates
from compare_worlds import exact_cell, exact_rows
from sweep_attributes import test_base

WIN_COLUMNS = ("toy-pickscore", "tie-aware", "toy-fidelity", "toy-quality")


def _value(overrides: str) -> str:
    """'train.lr=3e-05' -> 'lr 3e-5'; 'method.beta=100.0' -> 'beta 100'."""
    parts = []
    for item in overrides.split():
        key, value = item.split("=", 1)
        number = float(value)
        text = f"{number:g}" if number >= 0.01 else f"{number:.0e}".replace("e-0", "e-")
        parts.append(f"{key.rsplit('.', 1)[-1]} {text}")
    return ", ".join(parts) or "preset"


def _factor(configuration: str) -> str:
    """'lr3x' -> 'x3', 'beta0.5x' -> 'x0.5' (of the preset's value)."""
    return "x" + configuration.removeprefix("lr").removeprefix("beta").removesuffix("x")


def _train_minutes(runs: list[Path]) -> float:
    return min(json.loads((r / "cost.json").read_text())["device_hours_total"] * 60 for r in runs
               if (r / "cost.json").is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--control", type=Path, help="a random change of the same size (bench.toy.validate's run)")
    ap.add_argument("--exact", type=Path, default=Path("results/exact/changes.csv"))
    ap.add_argument("--source", default="mix")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    sweep = json.loads((args.report / "sweep.json").read_text())
    test = sweep["test_prompts"]
    val = pd.read_csv(args.report / "validation.csv")
    exact = exact_rows(args.exact, args.source, args.steps)
    runs = {name: Path(v["run"]) for name, v in sweep["selected"].items()}
    base = test_base(runs.values(), test)
    wins = win_rates([*runs.values(), *([args.control] if args.control else [])], base, prompt_set=test)

    rows = []
    for recipe, run in [("base model", base), *runs.items()] + ([("control: a random change of DPO's update "
                                                                   "size", args.control)] if args.control else []):
        row = {"run": recipe, "selected": "-", "train": "-", "exact": "-"}
        if run != base:
            w = wins[wins.run == run.name].set_index("metric")
            for metric in ("toy-pickscore", "toy-fidelity", "toy-quality"):
                row[metric] = (w.loc[metric].win_rate, w.loc[metric].lo, w.loc[metric].hi)
            p = panel_change(run, base, test)
            row["tie-aware"] = (p["win_rate_margin_ties"], p["win_rate_margin_ties_lo"],
                                p["win_rate_margin_ties_hi"])
        if recipe in runs:
            mine = val[val.recipe == recipe]
            chosen = mine[mine.selected].iloc[0]
            row["selected"] = f"{_value(chosen.overrides)} ({_factor(chosen.configuration)})"
            row["train"] = f"{_train_minutes([Path(r) for r in mine.run]):.1f}"
            row["exact"] = exact_cell(exact.loc[recipe]) if recipe in exact.index else "-"
        a = attribute_accuracy(run / "eval" / test)
        row["attributes"] = f"{a['shape']:.2f} / {a['position']:.2f} / {a['all_attributes']:.2f}"
        rows.append(row)

    best = {c: max(r[c][0] for r in rows if c in r and r["run"] in runs) for c in WIN_COLUMNS}

    def cell(row, column, interval):
        if column not in row:
            return "-"
        rate, lo, hi = row[column]
        text = f"{rate:.1f} [{lo:.1f}, {hi:.1f}]" if interval else f"{rate:.1f}"
        return f"**{text}**" if row["run"] in runs and rate == best[column] else text

    print(f"From `python results/toy/sweep_table.py {args.report}"
          + (f" --control {args.control}" if args.control else "") + f"` ({test}, "
          f"{sweep['test_images_per_prompt']} seeds per prompt; exact world: {args.source}, {args.steps} steps):\n")
    print("| run | selected | toy-pickscore win % | tie-aware win % | toy-fidelity win % | toy-quality win % | "
          "shape / position / all five right | train CPU-min | exact world: reward change |")
    print("|---|---|---|---:|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r['run']} | {r['selected']} | {cell(r, 'toy-pickscore', True)} | {cell(r, 'tie-aware', False)} | "
              f"{cell(r, 'toy-fidelity', False)} | {cell(r, 'toy-quality', False)} | {r['attributes']} | "
              f"{r['train']} | {r['exact']} |")


if __name__ == "__main__":
    main()
