"""The exact world as a :class:`bench.worlds.World`: what the shared trainer and ``bench run`` / ``reproduce`` use.

Training goes through the one trainer and the registered Method classes unchanged: the denoiser has the UNet calling
convention, the latent codec is the identity, the condition encoder maps captions to mixture weights. What this world
refuses, with a named error: LoRA (``model.lora_rank``: the denoiser has no attention layers to adapt), gradient
checkpointing, mixed precision other than "no" (a 2-d MLP gains nothing), flips (``data.random_flip``: a point has
no left and right), and a VAE (``model.vae``).

Evaluation (:mod:`bench.exact.evaluate`) runs at every step count of :data:`STEP_COUNTS` (plus ``eval.steps``, the
headline), on the split ``eval.prompts`` (``exact-test``: the 16 held-out conditions; ``exact-train``), with
``eval.images_per_prompt`` samples per condition.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.config import ConfigError, RunConfig
from bench.exact import evaluate as ev
from bench.exact.model import ExactDenoiser
from bench.exact.sources import ExactLatents, read_pairs, source_file
from bench.exact.world import World
from bench.rundir import write_eval_run_json
from bench.worlds import World as WorldBase
from bench.worlds import require
from bench_common import dtype_kwarg

STEP_COUNTS = (10, 20, 50, 200)
SPLITS = {"exact-test": "test", "exact-train": "train"}


def split_of(prompts: str) -> str:
    if prompts not in SPLITS:
        raise ConfigError(f"eval.prompts={prompts!r}: the exact world evaluates on {' or '.join(SPLITS)}")
    return SPLITS[prompts]


def step_counts(cfg: RunConfig) -> list[int]:
    return sorted(set(STEP_COUNTS) | {cfg.eval.steps})


def load_denoiser(folder: Path) -> ExactDenoiser:
    return ExactDenoiser.from_pretrained(str(folder), **dtype_kwarg("diffusers", torch.float32)).eval()


class ExactWorld(WorldBase):
    name = "exact"

    def __init__(self):
        self.world = World()

    # ---- training ----------------------------------------------------------------------------------------------
    def load(self, cfg: RunConfig, device):
        from diffusers import DDPMScheduler

        from bench.models import Components, load_init_unet, model_identity, resolve_model

        m = cfg.model
        require(m.lora_rank == 0, "model.lora_rank: the exact world's denoiser is an MLP with no attention layers "
                                  "to adapt; train it fully (model.lora_rank=0)")
        require(not m.gradient_checkpointing, "model.gradient_checkpointing: not needed (nor supported) for the "
                                              "exact world's 2-d denoiser; set it to false")
        require(m.vae is None, "model.vae: the exact world has no VAE (its latent codec is the identity)")
        require(cfg.train.mixed_precision == "no", "train.mixed_precision: the exact world trains in float32; set "
                                                   "train.mixed_precision=no")
        require(cfg.train.noise_offset == 0, "train.noise_offset: offset noise is a per-channel image constant; the "
                                             "exact world's base model was trained without it (set it to 0)")
        name, path, family, _ = resolve_model(m.name)
        unet = load_denoiser(Path(path) / "unet").train().to(device)
        scheduler = DDPMScheduler.from_pretrained(str(Path(path) / "scheduler"))  # the shipped training schedule
        comps = Components(name, path, family, family, 0, unet, None, [], [], scheduler,
                           model_identity(path))
        if m.init_unet:
            load_init_unet(comps, m.init_unet)
        return comps

    def pairs(self, cfg, show_progress):
        """The pairs of ``cfg.data.source``; on-policy samples come from the run's starting denoiser (the model's,
        or ``model.init_unet``)."""
        data = cfg.data
        require(data.split == "train", f"data.split={data.split!r}: exact-world pairs are on the train conditions "
                                       "(data.split=train); the held-out ones are for evaluation")
        require(data.labels is None, "data.labels: exact-world pairs carry their closed-form reward_0/reward_1; "
                                     "leave data.labels unset")
        from bench.models import init_unet_folder, resolve_model

        unet = init_unet_folder(cfg.model.init_unet) if cfg.model.init_unet else \
            Path(resolve_model(cfg.model.name)[1]) / "unet"
        file = source_file(data.source, data, self.world, unet.parent, lambda: load_denoiser(unet))
        return read_pairs(file, data, self.world)

    def latents(self, store, comps, data, seed, show_progress):
        require(not data.random_flip, "data.random_flip: the exact world's samples are points; set "
                                      "data.random_flip=false")
        return ExactLatents(store, self.world)

    # ---- evaluation --------------------------------------------------------------------------------------------
    def base_dir(self, cfg: RunConfig) -> Path:
        from bench.models import model_identity, resolve_model

        e = cfg.eval
        key = json.dumps([ev.VERSION, self.world.cfg.fingerprint(), e.prompts, e.images_per_prompt, e.seed,
                          step_counts(cfg), model_identity(resolve_model(cfg.model.name)[1])])
        return Path(cfg.output_dir) / f"base-exact-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def headline_set(self, cfg: RunConfig) -> str:
        return ev.set_name(split_of(cfg.eval.prompts), cfg.eval.steps)

    def _evaluate_one(self, out: Path, unet_folder: Path, cfg: RunConfig) -> None:
        """Evaluate the denoiser in ``unet_folder`` into ``out`` at every step count not already evaluated with these
        exact weights, samples per condition, seed and world (the key stored in each exact.json)."""
        from evaluators.scorers._weights import file_sha256

        split, e = split_of(cfg.eval.prompts), cfg.eval
        weights = [file_sha256(str(f)) for f in sorted(unet_folder.glob("*.safetensors"))]  # 0.9 MB: hash the content
        key = json.dumps([ev.VERSION, self.world.cfg.fingerprint(), e.images_per_prompt, e.seed, weights])

        def current(steps: int) -> bool:
            f = out / "eval" / ev.set_name(split, steps) / "exact.json"
            return f.is_file() and json.loads(f.read_text()).get("key") == key

        todo = [s for s in step_counts(cfg) if not current(s)]
        if todo:
            ev.evaluate(out, self.world, load_denoiser(unet_folder), split, e.images_per_prompt, todo, e.seed, key=key)

    def evaluate(self, run_dir, cfg, state, quiet, echo):
        from bench.models import resolve_model
        from evaluators.tables import render, results_table, win_rate_table, win_rates

        split = split_of(cfg.eval.prompts)
        base = self.base_dir(cfg)
        write_eval_run_json(base, *resolve_model(cfg.model.name)[:2], None)
        echo(f"evaluating exactly on {cfg.eval.prompts} ({len(self.world.captions(split))} conditions x "
             f"{cfg.eval.images_per_prompt} fixed noises), DDIM {', '.join(map(str, step_counts(cfg)))} steps")
        self._evaluate_one(base, Path(resolve_model(cfg.model.name)[1]) / "unet", cfg)
        self._evaluate_one(Path(run_dir), Path(run_dir) / "weights" / "unet", cfg)
        head = self.headline_set(cfg)
        table = render(results_table([base, run_dir], prompt_set=head), "md")
        wins = render(win_rate_table([run_dir], base, prompt_set=head), "md")
        changes = change_table([run_dir], base, split, step_counts(cfg))
        changes.to_csv(run_dir / "changes.csv", index=False)
        text = (f"{table}\n\n{wins}\n\nChange against the base model at every DDIM step count (paired by condition "
                f"and noise; 95% bootstrap intervals over conditions):\n\n{render_changes(changes)}\n")
        (run_dir / "table.md").write_text(text)
        win_rates([run_dir], base, prompt_set=head).to_csv(run_dir / "win_rates.csv", index=False)
        scatter([base, run_dir], run_dir / "scatter.png", self.world, split, cfg.eval.steps)
        echo(text)
        return base

    def report(self, runs, base, folder, cfg):
        split = split_of(cfg.eval.prompts)
        changes = pd.concat([_changes(Path(r), Path(base), split, step_counts(cfg)) for r in runs], ignore_index=True)
        changes.to_csv(folder / "changes.csv", index=False)
        paths = [scatter([base, *runs], folder / "scatter.png", self.world, split, cfg.eval.steps)]
        return paths, (f"Change against the base model at every DDIM step count (paired by condition and noise; 95% "
                       f"bootstrap intervals over conditions):\n\n{render_changes(changes)}\n\n")


# ------------------------------------------------------------------------------------------------------------------
# Change tables and scatter plots (pure functions of run directories)
# ------------------------------------------------------------------------------------------------------------------

def _eval(run: Path, split: str, steps: int) -> tuple[pd.DataFrame, dict]:
    folder = Path(run) / "eval" / ev.set_name(split, steps)
    return pd.read_parquet(folder / "scores.parquet"), json.loads((folder / "exact.json").read_text())


def change_table(runs: list[Path], base: Path, split: str, steps_list: list[int]) -> pd.DataFrame:
    """One row per (run, step count): the paired change in every metric with its interval (clustered by condition),
    the win rate on reward, and the energy distances to the tilted target and to the true data."""
    from evaluators.stats import bootstrap_ci, win_rate

    rows = []
    for steps in steps_list:
        b, bx = _eval(base, split, steps)
        for run in runs:
            r, rx = _eval(run, split, steps)
            if not (r["seed"].to_numpy() == b["seed"].to_numpy()).all():
                raise ValueError(f"{run} and {base} were evaluated on different noises")
            row = {"run": Path(run).name, "base": Path(base).name, "steps": steps}
            for m in ev.METRICS:
                d = r[m].to_numpy() - b[m].to_numpy()
                lo, hi = bootstrap_ci(d, "mean", groups=r["prompt_id"].to_numpy())
                row.update({f"d_{m}": float(d.mean()), f"d_{m}_lo": lo, f"d_{m}_hi": hi, m: float(r[m].mean()),
                            f"base_{m}": float(b[m].mean())})
            w = win_rate(r["reward"].to_numpy(), b["reward"].to_numpy(), clusters=r["prompt_id"].to_numpy())
            row.update({"win": 100 * w.rate, "win_lo": 100 * w.ci[0], "win_hi": 100 * w.ci[1],
                        "ed_tilted": rx["mean"]["to_tilted"], "base_ed_tilted": bx["mean"]["to_tilted"],
                        "ed_true": rx["mean"]["to_true"], "base_ed_true": bx["mean"]["to_true"]})
            rows.append(row)
    return pd.DataFrame(rows)


def _changes(run: Path, base: Path, split: str, steps_list: list[int]) -> pd.DataFrame:
    """The run's changes.csv when evaluate() wrote it against this base at these step counts, else computed."""
    f = run / "changes.csv"
    if f.is_file():
        df = pd.read_csv(f)
        if "base" in df and set(df["base"]) == {base.name} and sorted(df["steps"]) == sorted(steps_list):
            return df
    return change_table([run], base, split, steps_list)


def render_changes(df: pd.DataFrame) -> str:
    head = ("| run | DDIM steps | reward win % | Δ reward | Δ log p (fidelity) | Δ far from modes (pp) | "
            "Δ on prompt (pp) | energy dist. to tilted target (base → run) |\n|---|---:|---|---|---|---|---|---|")
    lines = [head]
    for r in df.to_dict("records"):
        def ci(m: str, scale: float = 1.0, fmt: str = "+.3f") -> str:
            return (f"{scale * r[f'd_{m}']:{fmt}} [{scale * r[f'd_{m}_lo']:{fmt}}, {scale * r[f'd_{m}_hi']:{fmt}}]")
        lines.append(f"| {r['run']} | {r['steps']} | {r['win']:.1f} [{r['win_lo']:.1f}, {r['win_hi']:.1f}] | "
                     f"{ci('reward')} | {ci('logp', fmt='+.2f')} | {ci('far', 100, '+.1f')} | "
                     f"{ci('on_prompt', 100, '+.1f')} | {r['base_ed_tilted']:.4f} → {r['ed_tilted']:.4f} |")
    return "\n".join(lines)


def scatter(runs: list[Path], path: Path, world: World, split: str, steps: int, n_conditions: int = 4) -> Path:
    """Samples of each run (columns; the first is the base model) for the first conditions (rows), coloured by the
    closed-form reward, beside exact samples of the true and the tilted distributions. Asked-for modes are ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = world.captions(split)[:n_conditions]
    cols = ["true p(x|c)", f"tilted (lam {world.cfg.tilt:g})"] + [Path(r).name for r in runs]
    fig, axes = plt.subplots(len(caps), len(cols), figsize=(2.1 * len(cols), 2.1 * len(caps)), squeeze=False)
    samples = []
    for r in runs:
        z = np.load(Path(r) / "eval" / ev.set_name(split, steps) / "samples.npz")
        samples.append((z["x"], z["prompt_id"]))
    lo, hi = -1.4, 1.4
    for i, cap in enumerate(caps):
        g = np.random.default_rng([0, 9, i])
        n = int((samples[0][1] == i).sum())
        panels = [world.sample_tilted(cap, n, g, lam=0.0), world.sample_tilted(cap, n, g)]
        panels += [x[pid == i] for x, pid in samples]
        w = world.weights(cap)
        for j, pts in enumerate(panels):
            ax = axes[i, j]
            ax.scatter(pts[:, 0], pts[:, 1], c=world.reward(pts, w), s=3, cmap="viridis", vmin=-0.3, vmax=1.1)
            for m, mu in enumerate(world.means):
                ax.add_patch(plt.Circle(mu, world.cfg.far * world.cfg.sigma, fill=False, lw=0.8,
                                        color="crimson" if w[m] > 0 else "0.75"))
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(cols[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(f'"{cap}"', fontsize=8)
    fig.suptitle(f"exact world, {split} conditions, DDIM {steps} steps; colour = reward; red rings = asked-for modes",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
