"""Worlds: what a family of models supplies to the one shared trainer and to ``bench run`` / ``bench reproduce``.

A world supplies its denoiser (with the UNet calling convention ``denoiser(x_t, t, **cond.unet_kwargs()).sample``),
its noise schedule, its preference data, its latent codec and condition encoder (a latent source, see
:class:`bench.data.BatchMaker`), and its evaluation. The trainer, the methods, the data schedule and per-sample
randomness, checkpoints, cost accounting and the run-directory schema are the same for every world; nothing shared
branches on a world's or a method's name. A registered model names its world (``ModelSpec.world``); anything else
(a local diffusers folder, a hub id) is the ``diffusers`` world.

    diffusers   SD1.5, SDXL, the tiny and random models, the toy image world: VAE latents, CLIP text encoders,
                images scored by the registered scorers (bench.evaluate, evaluators.harness)
    exact       a 2-d preference world with closed-form density and reward (bench.exact)

Third-party worlds register through the ``bench.worlds`` entry-point group, and their models through
``bench.models.MODELS``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.config import ConfigError, DataConfig, RunConfig
from bench_common import Registry


class World:
    """The interface. ``bench.worlds.DiffusersWorld`` is the reference implementation."""

    name = "world"

    def load(self, cfg: RunConfig, device) -> Any:
        """A :class:`bench.models.Components` with the policy's initial denoiser in ``unet`` (after
        ``model.init_unet``) and the training noise schedule in ``scheduler.alphas_cumprod``."""
        raise NotImplementedError

    def pairs(self, cfg: RunConfig, show_progress: bool) -> Any:
        """The usable pairs of ``cfg.data``, winner first: ``len()``, ``report()``, ``captions``, ``rewards`` ((N, 2)
        or None). The whole config comes in: a world may generate pairs with the run's starting model."""
        raise NotImplementedError

    def latents(self, store: Any, comps: Any, data: DataConfig, seed: int, show_progress: bool) -> Any:
        """The latent source of :class:`bench.data.BatchMaker` (``x0(...)`` and ``cond(...)``)."""
        raise NotImplementedError

    def evaluate(self, run_dir: Path, cfg: RunConfig, state: dict, quiet: bool, echo: Callable[[str], None]) -> Path:
        """Evaluate the trained run and the base model under the same protocol, write ``table.md`` and
        ``win_rates.csv`` (and pictures) into the run; return the base model's evaluation directory. ``state`` is kept
        across the runs of one ``bench reproduce`` (loaded scorers, say)."""
        raise NotImplementedError

    def base_dir(self, cfg: RunConfig) -> Path:
        """Where the base model's evaluation for ``cfg`` lives (whether or not it exists yet)."""
        raise NotImplementedError

    def headline_set(self, cfg: RunConfig) -> str | None:
        """The evaluation (prompt set name) reports and tables use; None when a run has only one."""
        return None

    def report(self, runs: list[Path], base: Path, folder: Path, cfg: RunConfig) -> tuple[list[Path], str]:
        """Pictures and extra markdown for ``bench reproduce``'s report."""
        return [], ""


class DiffusersWorld(World):
    """Diffusers text-to-image models (SD1.5, SDXL, tiny, toy): bench.models, bench.data, bench.evaluate."""

    name = "diffusers"

    def load(self, cfg: RunConfig, device):
        import torch

        from bench.models import load_components, load_init_unet

        comps = load_components(cfg.model.name, cfg.model.vae, device, torch.float32, cfg.model.resolution)
        if cfg.model.init_unet:
            load_init_unet(comps, cfg.model.init_unet)
        return comps

    def pairs(self, cfg: RunConfig, show_progress: bool):
        from bench.data import prepare_pairs

        return prepare_pairs(cfg.data, show_progress=show_progress)

    def latents(self, store, comps, data: DataConfig, seed: int, show_progress: bool):
        from bench.data import VaeLatents, build_cache

        cache = build_cache(store, comps, data, show_progress=show_progress) if data.cache else None
        return VaeLatents(store, comps, cache, seed)

    def evaluate(self, run_dir, cfg, state, quiet, echo):
        from bench.runner import evaluate_and_compare, load_eval_scorers

        if "scorers" not in state:
            state["scorers"] = load_eval_scorers(cfg)
        return evaluate_and_compare(run_dir, cfg, state["scorers"], quiet, echo)[1]

    def base_dir(self, cfg):
        from bench.evaluate import base_run_dir, spec_from
        from bench.models import resolve_model

        spec = spec_from(cfg.eval, cfg.model.resolution or resolve_model(cfg.model.name)[3])
        return base_run_dir(Path(cfg.output_dir), cfg.model.name, spec, cfg.model.vae)

    def report(self, runs, base, folder, cfg):
        from evaluators import plots

        return [plots.plot_win_rates(runs, base, folder / "win_rates.png"),
                plots.plot_score_distributions([base, *runs], folder / "scores.png"),
                plots.image_grid([base, *runs], folder / "grid.png")], ""


WORLDS = Registry("world", "bench.worlds")
WORLDS.register("diffusers", DiffusersWorld)
WORLDS.register("exact", "bench.exact.plugin:ExactWorld")


def world_of(model: str) -> World:
    """The world of a model name (a registered model's ``world``; any folder or hub id is a diffusers model)."""
    from bench.models import MODELS

    name = MODELS.get(model).world if model in MODELS else "diffusers"
    return WORLDS.get(name)()


def require(condition: bool, message: str) -> None:
    """A world's refusal of a setting it cannot honour (LoRA on an MLP, flips of a point): a named ConfigError."""
    if not condition:
        raise ConfigError(message)
