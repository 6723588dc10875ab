"""Toy preference pairs: two samples from a zoo of toy generators per training prompt, labelled by the simulated panel.

For pair ``i`` (``ranking_id``): a training prompt (every prompt in turn, in a seeded order), two images with
different seeds from the two generators of its chunk's pairing (``pairings``: within- and across-generator pairs of
the base model and two stronger ones, as Pick-a-Pic's images come from several, mostly stronger models;
DDIM, ``steps`` steps; each half of a chunk gets its own guidance scale drawn from ``cfg_choices``),
then ONE random rater of the panel judges the pair (as each Pick-a-Pic pair is judged by one user): label_0 is 1, 0
or 0.5 (tie: the rater's noisy utility difference is within their margin). See :mod:`evaluators.toy`.

Stored in the Pick-a-Pic v2 schema: ``jpg_0``/``jpg_1`` (PNG bytes: lossless, so re-analysing the stored pixels
reproduces the labels exactly), ``label_0``, ``label_1``, ``caption``, plus ``user_id`` (the rater), ``ranking_id``
(the pair index: with the labelling seed it fixes the rater's draws), ``model_0``/``model_1`` (generator, sampler settings
and seed) and ``reward_0``/``reward_1``: toy-pickscore raw scores, in SmPO's PickScore bounds.
"""
from __future__ import annotations

import hashlib
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.toy.world import train_prompts


@dataclass
class PairsConfig:
    seed: int = 0
    n_pairs: int = 2340  # 9 per training prompt
    steps: int = 20
    cfg_choices: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0)
    chunk: int = 65  # pairs generated together (one generator and guidance scale per half-chunk)
    # the generators each chunk compares, in turn (names of the build's zoo); the slot order is drawn per chunk.
    # Within- and across-generator pairs of mostly stronger generators than the base model, as in Pick-a-Pic (whose
    # model_0/model_1 name the two images' models): 5/12 of the images each from toy-large and toy-mid, 1/6 from
    # the base model itself
    pairings: tuple[str, ...] = ("toy-large/toy-mid", "toy-large/toy-large", "toy-mid/toy-mid", "toy-large/toy-mid",
                                 "toy-large/toy-base", "toy-mid/toy-base")
    n_raters: int = 15
    panel_seed: int = 0
    processes: int = 2

    def params(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def image_seed(seed: int, pair: int, slot: int) -> int:
    digest = hashlib.blake2b(f"toy-pairs/{seed}/{pair}/{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def pair_prompts(cfg: PairsConfig) -> list[str]:
    """The caption of every pair: all training prompts in turn, each round in a seeded order."""
    prompts = train_prompts()
    rng = np.random.default_rng([cfg.seed, 5])
    out: list[str] = []
    while len(out) < cfg.n_pairs:
        out += [prompts[i] for i in rng.permutation(len(prompts))]
    return out[:cfg.n_pairs]


def label_pairs(f0: np.ndarray, f1: np.ndarray, seed: int, panel) -> tuple[np.ndarray, np.ndarray]:
    """(rater index, label_0) per pair from feature rows, pair i judged with the draws keyed by (seed, i)."""
    judged = [panel.judge(a, b, seed, i) for i, (a, b) in enumerate(zip(f0, f1))]
    return np.array([r for r, _ in judged], dtype=np.int64), np.array([lab for _, lab in judged], dtype=np.float64)


def _generate_chunks(model_dirs: dict[str, str], jobs: list[tuple], steps: int, threads: int = 1) -> list[tuple]:
    """Generate the images of ``jobs`` [(chunk, slot, generator, captions, seeds, scale)] -> [(chunk, slot, [PNG])]."""
    import bench  # noqa: F401  (torchvision compat first, also in a spawned interpreter)
    from bench.toy.basemodel import generate, load_pipeline

    import torch

    torch.set_num_threads(threads)
    pipes: dict = {}
    out = []
    for chunk, slot, gen, caps, seeds, scale in jobs:
        if gen not in pipes:
            pipes[gen] = load_pipeline(Path(model_dirs[gen]))
        out.append((chunk, slot, [png_bytes(im) for im in generate(pipes[gen], caps, seeds, steps=steps, cfg=scale)]))
    return out


def _pool_worker(rank: int, world: int, model_dirs: dict[str, str], jobs: list[tuple], steps: int, tmp: str) -> None:
    import pickle

    out = _generate_chunks(model_dirs, jobs[rank::world], steps)
    Path(tmp, f"part{rank}.pkl").write_bytes(pickle.dumps(out))


def chunk_jobs(cfg: PairsConfig, captions: list[str]) -> list[tuple]:
    """[(chunk, slot, generator, captions, seeds, guidance)]: chunk k compares the generators of pairing k (in turn),
    in a drawn slot order, each half at its own drawn guidance scale."""
    rng = np.random.default_rng([cfg.seed, 6])
    jobs = []
    for chunk, start in enumerate(range(0, cfg.n_pairs, cfg.chunk)):
        idx = list(range(start, min(start + cfg.chunk, cfg.n_pairs)))
        gens = cfg.pairings[chunk % len(cfg.pairings)].split("/")
        if rng.random() < 0.5:
            gens = gens[::-1]
        scales = [float(rng.choice(cfg.cfg_choices)) for _ in range(2)]
        for slot in (0, 1):
            jobs.append((chunk, slot, gens[slot], [captions[i] for i in idx],
                         [image_seed(cfg.seed, i, slot) for i in idx], scales[slot]))
    return jobs


def make_pairs(model_dirs: dict[str, Path], cfg: PairsConfig | None = None, log: Callable[[str], None] = print):
    """A pandas DataFrame of ``n_pairs`` labelled pairs in the Pick-a-Pic v2 schema (see module docstring), sampled
    from the generators ``model_dirs`` (name -> toy model folder) as ``cfg.pairings`` says.

    Images are generated in ``cfg.processes`` spawned CPU processes (chunks dealt in turn; one thread each), which
    does not change them: every image has its own generator and every chunk is generated as one batch.
    """
    import pickle
    import tempfile

    import pandas as pd
    from PIL import Image

    from evaluators.toy import PICKSCORE_HI, PICKSCORE_LO, Panel, features

    cfg = cfg or PairsConfig()
    dirs = {k: str(v) for k, v in model_dirs.items()}
    missing = sorted({g for p in cfg.pairings for g in p.split("/")} - set(dirs))
    if missing:
        raise ValueError(f"pairings name generators without a model folder: {missing}; have {sorted(dirs)}")
    panel = Panel.default(cfg.n_raters, cfg.panel_seed)
    captions = pair_prompts(cfg)
    jobs = chunk_jobs(cfg, captions)
    t0 = time.time()
    if cfg.processes == 1:
        results = _generate_chunks(dirs, jobs, cfg.steps)
    else:
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory(prefix="toy-pairs-") as tmp:
            mp.start_processes(_pool_worker, args=(cfg.processes, dirs, jobs, cfg.steps, tmp),
                               nprocs=cfg.processes, start_method="spawn")
            results = [r for k in range(cfg.processes) for r in pickle.loads(Path(tmp, f"part{k}.pkl").read_bytes())]
    log(f"generated {2 * cfg.n_pairs} images in {time.time() - t0:.0f}s ({cfg.processes} process(es))")
    by_job = {(chunk, slot): pngs for chunk, slot, pngs in results}
    rows = {k: [] for k in ("jpg_0", "jpg_1", "model_0", "model_1")}
    for chunk, slot, gen, caps, seeds, scale in jobs:
        rows[f"jpg_{slot}"] += by_job[(chunk, slot)]
        rows[f"model_{slot}"] += [f"{gen} ddim{cfg.steps} cfg{scale:g} seed{s}" for s in seeds]
    feats = {slot: np.stack([features(Image.open(io.BytesIO(b)).convert("RGB"), c)  # label exactly what is stored
                             for b, c in zip(rows[f"jpg_{slot}"], captions)]) for slot in (0, 1)}
    f0, f1 = feats[0], feats[1]
    raters, label0 = label_pairs(f0, f1, cfg.seed, panel)
    raw = [PICKSCORE_LO + (PICKSCORE_HI - PICKSCORE_LO) * panel.utility(f) for f in (f0, f1)]
    return pd.DataFrame({
        "caption": captions, "jpg_0": rows["jpg_0"], "jpg_1": rows["jpg_1"], "label_0": label0,
        "label_1": np.where(label0 == 0.5, 0.5, 1.0 - label0), "user_id": raters,
        "ranking_id": np.arange(cfg.n_pairs, dtype=np.int64), "model_0": rows["model_0"], "model_1": rows["model_1"],
        "reward_0": raw[0], "reward_1": raw[1]})


def generator_of(model: str) -> str:
    """The generator name of a ``model_0``/``model_1`` entry ("toy-large ddim20 cfg4 seed123" -> "toy-large")."""
    return str(model).split(" ")[0]


def summary(df) -> dict:
    """Label statistics of a pair table: ties, agreement of labels with the toy-pickscore rewards."""
    lab = df["label_0"].to_numpy()
    r0, r1 = df["reward_0"].to_numpy(), df["reward_1"].to_numpy()
    decided = lab != 0.5
    agree = float(np.mean((r0[decided] > r1[decided]) == (lab[decided] == 1.0))) if decided.any() else float("nan")
    return {"pairs": int(len(df)), "ties": int((~decided).sum()), "tie_fraction": float((~decided).mean()),
            "label_0_wins": int((lab == 1.0).sum()), "label_1_wins": int((lab == 0.0).sum()),
            "labels_agree_with_toy_pickscore": agree,
            "mean_reward_gap": float(np.mean(np.abs(r0 - r1))), "raters_used": int(df["user_id"].nunique()),
            "by_generator": by_generator(df)}


def by_generator(df) -> dict:
    """Per generator: images in the pairs, mean toy-pickscore raw reward, and how often its image wins a decided pair
    against another generator (and its share of the preferred images)."""
    lab = df["label_0"].to_numpy()
    g0, g1 = (np.array([generator_of(m) for m in df[f"model_{k}"]]) for k in (0, 1))
    r0, r1 = df["reward_0"].to_numpy(), df["reward_1"].to_numpy()
    decided = lab != 0.5
    winners = np.where(lab == 1.0, g0, g1)[decided]
    out = {}
    for g in sorted(set(g0) | set(g1)):
        across = decided & ((g0 == g) ^ (g1 == g))
        won = ((g0 == g) & (lab == 1.0)) | ((g1 == g) & (lab == 0.0))
        out[str(g)] = {"images": int((g0 == g).sum() + (g1 == g).sum()),
                  "mean_reward": float(np.concatenate([r0[g0 == g], r1[g1 == g]]).mean()),
                  "wins_across": float(won[across].mean()) if across.any() else None,
                  "share_of_winners": float(np.mean(winners == g)) if decided.any() else None}
    return out
