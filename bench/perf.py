"""Training-step benchmark: seconds per pair of each method under named variants, measured in one run.

Each (method, variant) builds the real Trainer, runs ``warmup`` optimizer steps, then times ``repeats`` steps and
reports the median and the interquartile range of seconds per pair (per image for unpaired methods), the UNet
forward-equivalents per pair counted by the trainer, and peak memory. Results go to a JSON and a markdown file.
"""
from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.config import resolve
from bench.models import resolve_model
from bench.rundir import git_state, versions
from methods import get_method

#: variant name -> config overrides. "naive" encodes images and prompts every step and runs the UNet one image
#: at a time in float32 (what a straightforward port does); the others switch the speed-ups on.
VARIANTS: dict[str, list[str]] = {
    "naive": ["data.cache=false", "train.unbatched_forwards=true", "mixed_precision=no"],
    "no-cache": ["data.cache=false"],
    "cached": ["data.cache=true"],
    "fast-cpu": ["data.cache=true", "train.fused_optimizer=true", "train.channels_last=true"],
    "fast-gpu": ["data.cache=true", "train.fused_optimizer=true", "train.channels_last=true", "mixed_precision=bf16"],
    "fast-gpu-compile": ["data.cache=true", "train.fused_optimizer=true", "mixed_precision=bf16", "train.compile=true"],
}


def measure(method: str, model: str, variant: str, batch_size: int, warmup: int, repeats: int,
            extra: list[str]) -> dict[str, Any]:
    from bench.trainer import Trainer

    family = resolve_model(model)[2]
    overrides = [f"steps={warmup + repeats}", f"batch_size={batch_size}", "grad_accum=1", "effective_batch=none",
                 "checkpoint_every=0", *VARIANTS[variant], *extra]
    cfg, _ = resolve(method, model, family, get_method(method), None, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp) / "run", show_progress=False)
        times = []
        for step in range(warmup + repeats):
            t0 = time.perf_counter()
            tr._step(step)
            if tr.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        per_pair = [t / tr.global_batch for t in times[warmup:]]
        q = statistics.quantiles(per_pair, n=4) if len(per_pair) >= 2 else [per_pair[0]] * 3
        fe = tr.cost.forward_equivalents / max(tr.cost.pairs_seen, 1)
        return {"method": method, "model": model, "variant": variant, "batch_size": batch_size,
                "seconds_per_pair_median": statistics.median(per_pair), "seconds_per_pair_q1": q[0],
                "seconds_per_pair_q3": q[2], "repeats": repeats, "warmup": warmup,
                "forward_equivalents_per_pair": fe, "peak_memory_bytes": tr.cost.peak_memory_bytes(),
                "device": tr.cost.record()["device"]}


def run(methods: list[str], model: str, variants: list[str], batch_size: int, warmup: int, repeats: int,
        out: Path, extra: list[str]) -> Path:
    rows = []
    for method in methods:
        for variant in variants:
            row = measure(method, model, variant, batch_size, warmup, repeats, extra)
            rows.append(row)
            print(f"{method:8s} {variant:10s} {1e3 * row['seconds_per_pair_median']:9.2f} ms/pair "
                  f"[{1e3 * row['seconds_per_pair_q1']:.2f}, {1e3 * row['seconds_per_pair_q3']:.2f}] "
                  f"fwd-eq/pair {row['forward_equivalents_per_pair']:.2f}")
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"created": stamp, "host": platform.node(), "torch_threads": torch.get_num_threads(),
            "versions": versions(), "git": git_state(), "model": model, "extra_overrides": extra}
    path = out / f"train-step-{model}-{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Training step benchmark: {model}, batch {batch_size} pairs, median of {repeats} steps after "
             f"{warmup} warm-up", "", "| method | variant | ms / pair (median) | IQR | fwd-eq / pair | vs first variant |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        first = next(x for x in rows if x["method"] == r["method"])
        ratio = r["seconds_per_pair_median"] / first["seconds_per_pair_median"]
        lines.append(f"| {r['method']} | {r['variant']} | {1e3 * r['seconds_per_pair_median']:.2f} | "
                     f"{1e3 * r['seconds_per_pair_q1']:.2f}-{1e3 * r['seconds_per_pair_q3']:.2f} | "
                     f"{r['forward_equivalents_per_pair']:.2f} | {ratio:.2f}x |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return path
