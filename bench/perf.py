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


#: dense peak FLOP/s by (device-name substring, precision); the MFU denominator. bf16/fp16 tensor-core peaks.
PEAKS = {("H100", "bf16"): 989e12, ("H100", "fp16"): 989e12, ("H200", "bf16"): 989e12, ("H200", "fp16"): 989e12,
         ("A100", "bf16"): 312e12, ("A100", "fp16"): 312e12, ("H100", "no"): 67e12, ("A100", "no"): 19.5e12}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak for the precision, or None (CPUs and unknown GPUs: no MFU is reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for (k, p), v in PEAKS.items() if k in name and p == precision), None)


def measure(method: str, model: str, variant: str, batch_size: int, warmup: int, repeats: int,
            extra: list[str]) -> dict[str, Any]:
    from bench.trainer import Trainer

    family = resolve_model(model)[2]
    overrides = [f"steps={warmup + repeats + 1}", f"batch_size={batch_size}", "grad_accum=1", "effective_batch=none",
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
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:  # one more step, counted (not timed)
            tr._step(warmup + repeats)
        flops_per_pair = counter.get_total_flops() / tr.global_batch
        per_pair = [t / tr.global_batch for t in times[warmup:]]
        q = statistics.quantiles(per_pair, n=4) if len(per_pair) >= 2 else [per_pair[0]] * 3
        fe = tr.cost.forward_equivalents / max(tr.cost.pairs_seen, 1)
        median = statistics.median(per_pair)
        peak = peak_flops(tr.device, cfg.train.mixed_precision)
        return {"flops_per_pair": flops_per_pair, "achieved_flops_per_s": flops_per_pair / median,
                "mfu": flops_per_pair / median / peak if peak else None, "peak_flops_per_s": peak,
                "seconds_per_pair_floor": flops_per_pair / peak if peak else None,"method": method, "model": model, "variant": variant, "batch_size": batch_size,
                "seconds_per_pair_median": median, "seconds_per_pair_q1": q[0],
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
            mfu = f" MFU {100 * row['mfu']:.1f}%" if row["mfu"] is not None else ""
            print(f"{method:8s} {variant:16s} {1e3 * row['seconds_per_pair_median']:9.2f} ms/pair "
                  f"[{1e3 * row['seconds_per_pair_q1']:.2f}, {1e3 * row['seconds_per_pair_q3']:.2f}] "
                  f"fwd-eq/pair {row['forward_equivalents_per_pair']:.2f} "
                  f"{row['flops_per_pair'] / 1e9:.2f} GFLOP/pair {row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s{mfu}")
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"created": stamp, "host": platform.node(), "torch_threads": torch.get_num_threads(),
            "versions": versions(), "git": git_state(), "model": model, "extra_overrides": extra}
    path = out / f"train-step-{model}-{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Training step benchmark: {model}, batch {batch_size} pairs, median of {repeats} steps after "
             f"{warmup} warm-up", "",
             "| method | variant | ms / pair (median) | IQR | fwd-eq / pair | GFLOP / pair | GFLOP/s | MFU | "
             "floor ms / pair | speed-up vs first variant |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = next(x for x in rows if x["method"] == r["method"])
        speedup = first["seconds_per_pair_median"] / r["seconds_per_pair_median"]
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        floor = "-" if r["seconds_per_pair_floor"] is None else f"{1e3 * r['seconds_per_pair_floor']:.2f}"
        lines.append(f"| {r['method']} | {r['variant']} | {1e3 * r['seconds_per_pair_median']:.2f} | "
                     f"{1e3 * r['seconds_per_pair_q1']:.2f}-{1e3 * r['seconds_per_pair_q3']:.2f} | "
                     f"{r['forward_equivalents_per_pair']:.2f} | {r['flops_per_pair'] / 1e9:.2f} | "
                     f"{r['achieved_flops_per_s'] / 1e9:.1f} | {mfu} | {floor} | {speedup:.2f}x |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return path
