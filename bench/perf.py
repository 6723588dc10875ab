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
                 "checkpoint_every=0", "data.source=embedded", "eval.enabled=false", *VARIANTS[variant], *extra]
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
        out: Path, extra: list[str]) -> tuple[Path, list[dict[str, Any]]]:
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
    return path, rows


def count_forward_equivalents(family: str, method: str, steps: int = 16, batch_size: int = 8) -> float:
    """UNet forward-equivalents per sample of (family, method)'s preset method settings (e.g. SmPO's 10-step SDXL
    grid), counted by the trainer over ``steps`` x ``batch_size`` samples on the tiny model."""
    from bench.config import resolve

    cfg, _ = resolve(method, family, family, get_method(method), None, [])
    method_args = [f"method.{k}={v}" for k, v in cfg.method_args.items()]
    return measure(method, "tiny-sd15", "cached", batch_size, 0, steps, method_args)["forward_equivalents_per_pair"]


def project_from_rows(rows: list[dict[str, Any]], out: Path) -> Path:
    """Projection for the methods in ``rows``, using any H100 timings in them; forward-equivalents are counted
    for each paper configuration's own method settings."""
    methods = {r["method"] for r in rows}
    fe = {(f, m): count_forward_equivalents(f, m) for f, m in PAPER_RUNS if m in methods}
    measured = {}
    for r in rows:
        family = {"sd15-random": "sd15", "sdxl-random": "sdxl", "sd15": "sd15", "sdxl": "sdxl"}.get(r["model"])
        if family and "H100" in str(r["device"].get("name")):
            key = (family, r["method"])
            measured[key] = min(measured.get(key, float("inf")), r["seconds_per_pair_median"])
    project(fe, measured, out)
    return out / "projection.md"


# ----------------------------------------------------------------------------------------------------------------
# Projection of the papers' full configurations
# ----------------------------------------------------------------------------------------------------------------

#: the configurations the papers ran, as (family, method); pairs per step and steps come from our presets
PAPER_RUNS = [("sd15", "dpo"), ("sdxl", "dpo"), ("sd15", "kto"), ("sdxl", "mapo"), ("sd15", "inpo"),
              ("sdxl", "inpo"), ("sd15", "smpo"), ("sdxl", "smpo")]
A800_BF16_PEAK = 312e12
H100_BF16_PEAK = 989e12


def unet_forward_flops(family: str) -> float:
    """FLOPs of one UNet forward of the published architecture at its native resolution, counted on the meta
    device (no memory, no GPU): SD1.5 at 512 px = 0.803 TFLOP, SDXL at 1024 px = 6.761 TFLOP."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    spec = json.loads((Path(__file__).parent / "configs" / f"{family}.json").read_text())["unet"]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**spec)
        side = spec["sample_size"]
        kw: dict[str, Any] = {"encoder_hidden_states": torch.empty(1, 77, spec["cross_attention_dim"])}
        if spec.get("addition_embed_type") == "text_time":
            kw["added_cond_kwargs"] = {"text_embeds": torch.empty(1, 1280), "time_ids": torch.empty(1, 6)}
        with FlopCounterMode(display=False) as counter:
            unet(torch.empty(1, 4, side, side), torch.tensor([500]), **kw)
    return float(counter.get_total_flops())


def paper_gpu_hours() -> dict[tuple[str, str], float]:
    import pandas as pd

    path = Path(__file__).resolve().parent.parent / "results" / "reference" / "paper_results.csv"
    if not path.is_file():
        return {}
    df = pd.read_csv(path)
    df = df[df.metric == "gpu_hours"]
    fam = {"SD1.5": "sd15", "SDXL": "sdxl"}
    return {(fam.get(r.model, r.model), str(r.method).lower()): float(r.value) for r in df.itertuples()}


def project(fe_per_pair: dict[tuple[str, str], float], measured: dict[tuple[str, str], float] | None = None,
            out: Path | None = None) -> list[dict[str, Any]]:
    """Device-hours of each paper configuration: measured seconds/pair where a GPU result exists, and the FLOP floor.

    ``fe_per_pair``: {(family, method): UNet forward-equivalents per pair (per image for KTO)} counted by the trainer.
    ``measured``: {(family, method): seconds per pair on an H100}, from `bench perf` runs on the GPU.
    """
    from bench.config import resolve

    flops = {f: unet_forward_flops(f) for f in ("sd15", "sdxl")}
    reported = paper_gpu_hours()
    rows = []
    for family, method in PAPER_RUNS:
        if (family, method) not in fe_per_pair:  # not measured in this run
            continue
        cfg, _ = resolve(method, family, family, get_method(method), None, [])
        samples = cfg.train.effective_batch * cfg.train.steps
        total = samples * fe_per_pair[family, method] * flops[family]
        sec = (measured or {}).get((family, method))
        paper = reported.get((family, method))
        rows.append({"family": family, "method": method, "samples_per_step": cfg.train.effective_batch,
                     "steps": cfg.train.steps, "samples": samples, "fwd_eq_per_sample": fe_per_pair[family, method],
                     "pflop_total": total / 1e15, "h100_hours_floor": total / H100_BF16_PEAK / 3600,
                     "h100_hours_at_40pct": total / (0.4 * H100_BF16_PEAK) / 3600,
                     "h100_hours_measured": None if sec is None else samples * sec / 3600,
                     "paper_a800_hours": paper,
                     "paper_implied_mfu": None if paper is None else total / (paper * 3600 * A800_BF16_PEAK)})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "projection.json").write_text(json.dumps(rows, indent=2))
        lines = ["# Projected cost of the papers' full configurations",
                 "", "Samples = pairs (images for KTO) per step x steps, from the presets. FLOPs = samples x "
                 "forward-equivalents per sample (counted by the trainer) x UNet forward FLOPs of the published "
                 f"architecture (SD1.5 512 px {flops['sd15'] / 1e12:.3f} TFLOP, SDXL 1024 px "
                 f"{flops['sdxl'] / 1e12:.3f} TFLOP). Floor: at the H100 bf16 dense peak (989 TFLOP/s). "
                 "Implied MFU: the papers' A800-hours against the A800 bf16 peak (312 TFLOP/s).", "",
                 "| model | method | samples/step | steps | fwd-eq/sample | PFLOP | H100-h floor | H100-h at 40% MFU | "
                 "H100-h measured | paper A800-h | paper implied MFU |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        for r in rows:
            mfu = "-" if r["paper_implied_mfu"] is None else f"{100 * r['paper_implied_mfu']:.1f}%"
            lines.append(f"| {r['family']} | {r['method']} | {r['samples_per_step']} | {r['steps']} | "
                         f"{r['fwd_eq_per_sample']:.2f} | {r['pflop_total']:.0f} | {r['h100_hours_floor']:.1f} | "
                         f"{r['h100_hours_at_40pct']:.1f} | {fmt(r['h100_hours_measured'], '.1f')} | "
                         f"{fmt(r['paper_a800_hours'], '.0f')} | {mfu} |")
        (out / "projection.md").write_text("\n".join(lines) + "\n")
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Evaluation throughput
# ----------------------------------------------------------------------------------------------------------------

def eval_throughput(model: str, metrics: list[str], n_images: int, steps: int, cfg_scale: float, batch_size: int,
                    out: Path) -> Path:
    """Images per second generated (the real pipeline, batched, fixed seeds) and scored (scorers loaded once,
    batched), through the evaluation harness, written as JSON + markdown."""
    from bench.evaluate import default_device, evaluate
    from evaluators.harness import GenerationSpec
    from evaluators.prompts import PromptSet
    from evaluators.scorers.registry import load_scorer

    resolution = resolve_model(model)[3]
    spec = GenerationSpec(steps=steps, cfg=cfg_scale, resolution=resolution, seed=0)
    prompts = PromptSet("perf", [f"a photo of object number {i}" for i in range(n_images)], None, "generated")
    scorers = {m: load_scorer(m, device=default_device()) for m in metrics}
    with tempfile.TemporaryDirectory() as tmp:
        folder = evaluate(Path(tmp) / "run", prompts, metrics, spec, model=model, scorers=scorers,
                          batch_size=batch_size, cache_path=Path(tmp) / "cache.sqlite", progress=False)
        timing = json.loads((folder / "timing.json").read_text())
    gen_s, score_s = timing["phases"]["sampling"]["seconds"], timing["phases"].get("scoring", {}).get("seconds", 0.0)
    row = {"model": model, "resolution": resolution, "steps": steps, "cfg": cfg_scale, "batch_size": batch_size,
           "images": n_images, "metrics": metrics, "generate_images_per_s": n_images / gen_s,
           "score_images_per_s": (n_images * len(metrics)) / score_s if metrics and score_s else None,
           "device": device_name()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"eval-{model}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(row, indent=2))
    path.with_suffix(".md").write_text(
        f"# Evaluation throughput: {model} at {resolution} px, {steps} steps, batch {batch_size}\n\n"
        f"| images | generated / s | scored / s (image x metric) | metrics | device |\n|---:|---:|---:|---|---|\n"
        f"| {n_images} | {row['generate_images_per_s']:.2f} | "
        f"{'-' if row['score_images_per_s'] is None else format(row['score_images_per_s'], '.2f')} | "
        f"{', '.join(metrics)} | {row['device']} |\n")
    return path


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"
