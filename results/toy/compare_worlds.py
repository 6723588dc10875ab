"""The toy image world's sweep rows beside the exact world's rows, one line per recipe, for the README:

    python results/toy/compare_worlds.py SWEEP_REPORT_DIR [--exact results/exact/changes.csv] [--source mix]
        [--steps 20] > results/toy/worlds.md

Toy: the recipe's selected configuration on the test prompts (``bench sweep``), toy-pickscore and toy-fidelity win
rates against the base model. Exact: the same recipe at its preset on the exact world's source (default ``mix``:
pairs from the base model, the true distribution and the reward-tilted one, as the toy zoo mixes generators of
several qualities), change in expected reward and reward win rate at the given DDIM steps
(``python -m bench.exact.study``). A recipe whose two signs differ is marked: that is where the miniatures disagree.
"""
import argparse
from pathlib import Path

import pandas as pd


def _cell(rate, lo, hi) -> str:
    return f"{rate:.1f} [{lo:.1f}, {hi:.1f}]"


def exact_rows(path: Path, source: str, steps: int) -> pd.DataFrame:
    """The exact world's study rows (``bench.exact.study``'s changes.csv) of one source and step count, by recipe."""
    exact = pd.read_csv(path)
    return exact[(exact.source == source) & (exact.steps == steps)].set_index("run")


def exact_cell(e: pd.Series) -> str:
    """A recipe's change in expected reward with its 95% interval."""
    return f"{e.d_reward:+.3f} [{e.d_reward_lo:+.3f}, {e.d_reward_hi:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_report", type=Path)
    ap.add_argument("--exact", type=Path, default=Path("results/exact/changes.csv"))
    ap.add_argument("--source", default="mix")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    wins = pd.read_csv(args.sweep_report / "win_rates.csv")
    val = pd.read_csv(args.sweep_report / "validation.csv")
    selected = dict(zip(val[val.selected]["run"].map(lambda p: Path(p).name), val[val.selected]["configuration"]))
    exact = exact_rows(args.exact, args.source, args.steps)
    print(f"| recipe | toy: selected | toy-pickscore win % [95% CI] | toy-fidelity win % | exact:{args.source} "
          f"Δ reward [95% CI] ({args.steps} steps) | exact reward win % | agree |")
    print("|---|---|---|---|---|---|---|")
    for run in dict.fromkeys(wins["run"]):
        recipe = run.rsplit("-", 1)[0]
        w = wins[wins.run == run].set_index("metric")
        pick, fid = w.loc["toy-pickscore"], w.loc["toy-fidelity"] if "toy-fidelity" in w.index else None
        toy_sign = 1 if pick.lo > 50 else -1 if pick.hi < 50 else 0
        if recipe in exact.index:
            e = exact.loc[recipe]
            ex = exact_cell(e)
            ex_win = f"{e.win:.0f}"
            ex_sign = 1 if e.d_reward_lo > 0 else -1 if e.d_reward_hi < 0 else 0
            agree = "yes" if toy_sign == ex_sign else "**no**"
        else:
            ex, ex_win, agree = "-", "-", "-"
        print(f"| {recipe} | {selected.get(run, '?')} | {_cell(pick.win_rate, pick.lo, pick.hi)} | "
              f"{_cell(fid.win_rate, fid.lo, fid.hi) if fid is not None else '-'} | {ex} | {ex_win} | {agree} |")


if __name__ == "__main__":
    main()
