"""How much of a toy win rate is below what the panel can tell apart? For results/toy/README.md:

    python results/toy/diagnostics/perceptible_wins.py BASE_RUN RUN... [--set toy]

Per run, from the evaluations' scores.parquet (paired by prompt and seed): the mean change of the panel's utility U
(toy-pickscore / (100 (HI - LO))) with a 95% prompt-clustered bootstrap interval; the share of comparisons whose
|dU| is below the panel's mean tie margin (the raters call such a pair a tie); the plain win rate; and the win rate
with those comparisons counted as ties (0.5), with its interval. Seconds.
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    from evaluators.stats import bootstrap_ci, win_rate
    from evaluators.toy import PICKSCORE_HI, PICKSCORE_LO, Panel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--set", default="toy")
    args = ap.parse_args()
    margin = float(np.mean([r.tie_margin for r in Panel.default().raters]))
    unit = 100 * (PICKSCORE_HI - PICKSCORE_LO)
    base = pd.read_parquet(args.base / "eval" / args.set / "scores.parquet")
    print(f"panel mean tie margin: dU {margin:.4f}\n")
    print("| run | mean dU [95% CI] | share below the margin | win % | win % with sub-margin ties [95% CI] |")
    print("|---|---|---:|---:|---|")
    for run in args.runs:
        s = pd.read_parquet(run / "eval" / args.set / "scores.parquet")
        m = s.merge(base, on=["prompt_id", "image_index"], suffixes=("", "_b"))
        d = (m["toy-pickscore"] - m["toy-pickscore_b"]).to_numpy() / unit
        lo, hi = bootstrap_ci(d, "mean", groups=m["prompt_id"].to_numpy())
        plain = win_rate(m["toy-pickscore"].to_numpy(), m["toy-pickscore_b"].to_numpy(), m["prompt_id"].to_numpy())
        tied = win_rate(m["toy-pickscore"].to_numpy(), m["toy-pickscore_b"].to_numpy(), m["prompt_id"].to_numpy(),
                        tie_tol=margin * unit)
        r, lo_t, hi_t = tied.as_percent()
        print(f"| {run.name} | {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] | {np.mean(np.abs(d) < margin):.2f} | "
              f"{plain.as_percent()[0]:.1f} | {r:.1f} [{lo_t:.1f}, {hi_t:.1f}] |")


if __name__ == "__main__":
    main()
