"""Wall-clock benchmark of the toy world's commands, as a newcomer runs them (issue: `bench run` < 5 min, `bench
reproduce` < 30 min on 2 CPU cores).

Every repetition is a fresh subprocess with an EMPTY cache (``BENCH_CACHE`` and output folder in a new temporary
directory), so each one pays for everything a first run pays for: loading, data preparation (decoding the pairs,
VAE posteriors, text embeddings), training, evaluating the run AND the base model, scoring, the table. Writes
``OUT/benchmark.json`` (every repetition: wall seconds, the run's toy-pickscore win rate and interval) and
``OUT/benchmark.md``::

    python -m bench.toy.benchmark --repeats 3 --reproduce-repeats 1 --out results/toy [--keep-reproduce DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

LIMITS_S = {"run dpo": 300, "run smpo": 300, "reproduce": 1800}


def _bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *args]


def _timed(cmd: list[str], cache: Path) -> tuple[float, int, str]:
    env = {**os.environ, "BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def _win_rows(csv: Path, metric: str = "toy-pickscore") -> list[dict]:
    if not csv.is_file():
        return []
    df = pd.read_csv(csv)
    return df[df["metric"] == metric].to_dict("records") if "metric" in df.columns else df.to_dict("records")


def run_once(kind: str, work: Path, keep: Path | None = None) -> dict:
    cache, out = work / "cache", work / "runs"
    if kind == "reproduce":
        if keep is not None:  # the report (and its runs) outlive the benchmark; the cache is still a fresh one
            out = keep
        secs, rc, tail = _timed(_bench_cmd("reproduce", "--output-dir", str(out), "--quiet"), cache)
        rows = _win_rows(out / "report" / "win_rates.csv")
    else:
        method = kind.split()[1]
        secs, rc, tail = _timed(_bench_cmd("run", "--method", method, "--output-dir", str(out), "--name", method,
                                           "--quiet"), cache)
        rows = _win_rows(out / method / "win_rates.csv")
    return {"kind": kind, "seconds": round(secs, 1), "returncode": rc, "win_rates": rows,
            **({"output_tail": tail} if rc else {})}


def summarise(records: list[dict]) -> dict:
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in records):
        secs = [r["seconds"] for r in records if r["kind"] == kind and r["returncode"] == 0]
        failed = sum(1 for r in records if r["kind"] == kind and r["returncode"] != 0)
        out[kind] = {"repeats": len(secs), "failed": failed, "limit_s": LIMITS_S[kind],
                     "median_s": statistics.median(secs) if secs else None, "min_s": min(secs, default=None),
                     "max_s": max(secs, default=None), "within_limit": bool(secs) and max(secs) <= LIMITS_S[kind]}
    return out


def markdown(summary: dict, records: list[dict], meta: dict) -> str:
    lines = [f"# Toy-world wall-clock benchmark\n\n`{meta['command']}` on {meta['machine']}, {meta['date']}; "
             "every repetition a fresh process with an empty cache (data preparation, training, evaluation of the "
             "run and of the base model, scoring, tables).\n",
             "| command | repeats | median s | min s | max s | limit s | within limit |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for kind, s in summary.items():
        fmt = (lambda v: "-" if v is None else f"{v:.0f}")
        ok = "yes" if s["within_limit"] else "NO"
        lines.append(f"| `bench {kind}` | {s['repeats']} (+{s['failed']} failed) | {fmt(s['median_s'])} | "
                     f"{fmt(s['min_s'])} | {fmt(s['max_s'])} | {s['limit_s']} | {ok} |")
    lines += ["", "Toy-pickscore win rate against the base model, per repetition (held-out prompts; 95% interval):", "",
              "| command | rep | run | win rate % | 95% interval |", "|---|---:|---|---:|---|"]
    rep: dict[str, int] = {}
    for r in records:
        rep[r["kind"]] = rep.get(r["kind"], 0) + 1
        for w in r["win_rates"]:
            lo, hi = w.get("lo", float("nan")), w.get("hi", float("nan"))
            rate = w.get("win_rate", float("nan"))
            lines.append(f"| `bench {r['kind']}` | {rep[r['kind']]} | {w.get('run', '')} | {rate:.1f} "
                         f"| [{lo:.1f}, {hi:.1f}] |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.toy.benchmark", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="repetitions of each `bench run`")
    ap.add_argument("--reproduce-repeats", type=int, default=1, help="repetitions of `bench reproduce` (0: skip)")
    ap.add_argument("--methods", default="dpo,smpo")
    ap.add_argument("--out", type=Path, default=Path("results/toy"))
    ap.add_argument("--keep-reproduce", type=Path, default=None,
                    help="write the (last) reproduce's runs and report here instead of a temporary folder")
    args = ap.parse_args(argv)
    if args.keep_reproduce is not None and args.keep_reproduce.exists() and any(args.keep_reproduce.iterdir()):
        ap.error(f"--keep-reproduce {args.keep_reproduce} is not empty (reproduce would resume instead of timing "
                 "a full run); remove it or pick another folder")
    kinds = [f"run {m}" for m in args.methods.split(",")] * args.repeats + ["reproduce"] * args.reproduce_repeats
    records = []
    for i, kind in enumerate(kinds):
        with tempfile.TemporaryDirectory(prefix="toy-bench-") as tmp:
            rec = run_once(kind, Path(tmp), args.keep_reproduce)
        records.append(rec)
        print(f"[{i + 1}/{len(kinds)}] bench {kind}: {rec['seconds']:.0f} s (exit {rec['returncode']})", flush=True)
    summary = summarise(records)
    meta = {"command": "python -m bench.toy.benchmark " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads default",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps({"meta": meta, "summary": summary, "records": records},
                                                        indent=2) + "\n")
    (args.out / "benchmark.md").write_text(markdown(summary, records, meta))
    print(markdown(summary, records, meta))
    return 0 if all(s["within_limit"] and not s["failed"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
