"""``bench eval``: build a pipeline (base model, or base + a run's trained weights), generate with fixed seeds, score,
and write ``eval/<prompt set>/`` (scores.parquet, summary.json, images/) into a run directory.

A base model is evaluated into ``<output_dir>/base-<model>-<key>/`` once, the key hashing the generation spec, the
VAE and the content of the base model's files (:func:`bench.models.model_identity`); every later comparison with the
same prompts, spec and weights reuses it (images and scores are cached), and rebuilt or updated weights get a new
folder instead of a stale baseline.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bench.models import (apply_checkpoint, checked_architecture, identity_of, local_source, published_checkpoint,
                          resolve_model)
from bench.rundir import write_eval_run_json
from bench_common import dtype_kwarg
from evaluators.harness import GenerationSpec, ScoreCache
from evaluators.scorers.registry import load_scorer
from evaluators.harness import evaluate as harness_evaluate

SAMPLERS = {"ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler", "euler": "EulerDiscreteScheduler",
            "ddpm": "DDPMScheduler"}


def load_pipeline(model: str, run_dir: Path | None = None, sampler: str = "ddim",
                  device: str | torch.device | None = None, dtype: torch.dtype | None = None, vae: str | None = None):
    """A diffusers pipeline for ``model`` (with the VAE ``vae`` when given), or for the trained UNet (or LoRA) of
    ``run_dir`` on its base model and VAE (from the run's run.json)."""
    import diffusers
    from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel

    if sampler not in SAMPLERS:
        from bench.config import ConfigError
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    device = torch.device(device or default_device())
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    if run_dir is not None:
        run = json.loads((Path(run_dir) / "run.json").read_text())
        published = published_checkpoint(run["model"]) is not None
        model, vae = run["model"] if published else run.get("model_path") or run["model"], run.get("vae")
    name, path, preset_family, _ = resolve_model(model)
    fam = checked_architecture(name, path, preset_family)
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if fam == "sd15" else {}
    if vae:
        extra["vae"] = AutoencoderKL.from_pretrained(local_source(vae, ["config.json"]),
                                                     **dtype_kwarg("diffusers", dtype))
    pipe = DiffusionPipeline.from_pretrained(path, **dtype_kwarg("diffusers", dtype), **extra)
    if published_checkpoint(name) is not None:
        apply_checkpoint(pipe, name)  # published weights on their base pipeline (bench/published.py)
    if run_dir is not None:
        weights = Path(run_dir) / "weights"
        if (weights / "unet").is_dir():
            pipe.unet = UNet2DConditionModel.from_pretrained(weights / "unet", **dtype_kwarg("diffusers", dtype))
        elif (weights / "pytorch_lora_weights.safetensors").is_file():
            pipe.load_lora_weights(str(weights))
        else:
            from evaluators.rundir import RunDirError
            raise RunDirError(f"{run_dir} has no trained weights (weights/unet or "
                                    "weights/pytorch_lora_weights.safetensors); has training finished?")
    pipe.scheduler = getattr(diffusers, SAMPLERS[sampler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def make_generate(pipe, spec: GenerationSpec):
    """(prompts, seeds) -> images; one CPU generator per image so the initial noise is device independent."""

    def generate(prompts: list[str], seeds: list[int]):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        with torch.inference_mode():
            return pipe(prompts, num_inference_steps=spec.steps, guidance_scale=spec.cfg, height=spec.resolution,
                        width=spec.resolution, generator=gens, output_type="pil").images

    return generate


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def spec_from(e, resolution: int) -> GenerationSpec:
    """The GenerationSpec of an EvalConfig (resolution: the config's, else the given training resolution)."""
    return GenerationSpec(sampler=e.sampler, steps=e.steps, cfg=e.cfg, resolution=e.resolution or resolution,
                          seed=e.seed, images_per_prompt=e.images_per_prompt)


def base_run_dir(output_dir: Path, model: str, spec: GenerationSpec, vae: str | None = None) -> Path:
    """Where the base model ``model`` (with the VAE ``vae``) is evaluated under ``spec``."""
    key = f"{spec.key()}|{identity_of(model, vae)}"
    return Path(output_dir) / f"base-{Path(model).name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def evaluate(out_run_dir: Path, prompt_set, metrics: list[str], spec: GenerationSpec, model: str | None = None,
             run_dir: Path | None = None, scorers: dict | None = None, scorer_sources: dict | None = None,
             batch_size: int = 8, cache_path: Path | None = None, progress: bool = True,
             vae: str | None = None, label: str | None = None) -> Path:
    """Generate + score ``prompt_set`` with ``spec`` into ``out_run_dir/eval/<set>/``; returns that folder.

    ``model`` alone evaluates a base model (with the VAE ``vae`` when given); ``run_dir`` evaluates that run's
    trained weights (on its base model and VAE). ``label``: a base-model evaluation's row name in tables.
    ``scorers`` may pass already-loaded scorers (kept resident across evaluations); otherwise they are loaded from
    the registry (``scorer_sources`` maps a metric to a local path or hub id of its weights).
    """
    out_run_dir = Path(out_run_dir)
    if scorers is None:  # scorers and the pipeline load before anything is written: a failure leaves no folder
        scorers = {m: load_scorer(m, (scorer_sources or {}).get(m), device=default_device()) for m in metrics}
    pipe = load_pipeline(model or "", run_dir=run_dir, sampler=spec.sampler, vae=vae)
    if not (out_run_dir / "run.json").is_file():  # a base-model evaluation gets its own small run.json
        write_eval_run_json(out_run_dir, *resolve_model(model or "")[:2], vae, label)
    cache = ScoreCache(cache_path or (out_run_dir.parent / ".score-cache.sqlite"))
    try:
        return harness_evaluate(out_run_dir, prompt_set, make_generate(pipe, spec), scorers, spec, cache,
                                batch_size=batch_size, progress=progress)
    finally:
        cache.close()

