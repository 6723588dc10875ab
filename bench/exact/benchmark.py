"""Benchmark: wall time of ``bench run --model exact`` and ``bench reproduce --model exact`` on this machine.

    python -m bench.exact.benchmark --out results/exact/benchmark.md [--repeats 1]

Each command runs as a fresh process (imports included) in an empty output folder with an empty cache
(``BENCH_CACHE``), so the preference pairs are generated and the base model evaluated inside the timing, as a
newcomer's first run would. Run it while nothing else runs: 2 cores shared with another job make every figure
meaningless. Writes a markdown results file with the machine, the commit and each wall time.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.rundir import git_state

COMMANDS = {
    "bench run --model exact --method dpo": ["run", "--model", "exact", "--method", "dpo", "--quiet"],
    "bench run --model exact --method smpo": ["run", "--model", "exact", "--method", "smpo", "--quiet"],
    "bench reproduce --model exact": ["reproduce", "--model", "exact", "--quiet"],
}


def time_command(args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BENCH_CACHE": str(Path(tmp) / "cache")}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", *args, "--output-dir", str(Path(tmp) / "runs")], cwd=tmp,
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/exact/benchmark.md"))
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    rows = []
    for label, args in COMMANDS.items():
        times = [time_command(args) for _ in range(a.repeats)]
        rows.append(f"| `{label}` | {', '.join(f'{t:.0f}' for t in times)} |")
        print(rows[-1], flush=True)
    g = git_state()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        f"# Exact-world benchmark\n\n`python -m bench.exact.benchmark --repeats {a.repeats}` at commit {g['commit']}"
        f"{' (dirty)' if g['dirty'] else ''}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
        f"cores, nothing else running. Each command in a fresh process from an empty cache (pairs generated, base "
        f"model evaluated inside the timing).\n\n| command | wall seconds |\n|---|---:|\n" + "\n".join(rows) + "\n")
    print(a.out)


if __name__ == "__main__":
    main()
