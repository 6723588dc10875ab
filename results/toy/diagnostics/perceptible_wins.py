"""How much of a toy win rate is below what the panel can tell apart? For results/toy/README.md:

    python results/toy/diagnostics/perceptible_wins.py BASE_RUN RUN... [--set toy]

Per run, from the evaluations' scores.parquet (paired by prompt and seed): the mean change of the panel's utility U
(toy-pickscore / (100 (HI - LO))) with a 95% prompt-clustered bootstrap interval; the share of comparisons whose
|dU| is below the panel's mean tie margin (the raters call such a pair a tie); the plain win rate; and the win rate
with those comparisons counted as ties (0.5), with its interval. Seconds.
"""
import argparse
from pathlib import Path

from bench.toy.validate import panel_change


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--set", default="toy")
    args = ap.parse_args()
    rows = {run.name: panel_change(run, args.base, args.set) for run in args.runs}
    print(f"panel mean tie margin: dU {next(iter(rows.values()))['tie_margin']:.4f}\n")
    print("| run | mean dU [95% CI] | share below the margin | win % | win % with sub-margin ties [95% CI] |")
    print("|---|---|---:|---:|---|")
    for name, p in rows.items():
        print(f"| {name} | {p['mean_dU']:+.4f} [{p['mean_dU_lo']:+.4f}, {p['mean_dU_hi']:+.4f}] | "
              f"{p['share_below_margin']:.2f} | {p['win_rate']:.1f} | {p['win_rate_margin_ties']:.1f} "
              f"[{p['win_rate_margin_ties_lo']:.1f}, {p['win_rate_margin_ties_hi']:.1f}] |")


if __name__ == "__main__":
    main()
