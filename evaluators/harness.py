"""The generation + scoring harness (DESIGN.md section 7).

It knows nothing about models: ``bench`` passes a ``generate(prompts, seeds) -> list[PIL.Image]`` callable and the
loaded scorers. Every image has a fixed seed derived from (base seed, prompt index, image index), so two models
evaluated with the same spec see the same initial noise. Images are saved as PNG with their metadata; an image
already on disk with the same metadata is not generated again. Scores are cached by (image sha256, prompt, scorer
name, scorer version) in a SQLite file, so an interrupted or repeated evaluation never scores twice.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, PngImagePlugin

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that determines the generated images besides the model. Recorded with every result."""

    sampler: str = "ddim"
    steps: int = 25
    cfg: float = 5.0
    resolution: int = 512
    seed: int = 0
    images_per_prompt: int = 1

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def image_seed(base_seed: int, prompt_index: int, image_index: int) -> int:
    digest = hashlib.blake2b(f"{base_seed}/{prompt_index}/{image_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def image_sha256(img: Image.Image) -> str:
    """Content hash of the decoded RGB pixels (independent of PNG metadata or compression)."""
    arr = np.asarray(img.convert("RGB"))
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()


@dataclass
class ImageRecord:
    prompt_id: int
    prompt: str
    image_index: int
    seed: int
    image_path: str  # relative to the evaluation folder
    image_sha256: str


class ScoreCache:
    """(image sha256, prompt, scorer, version) -> score, in SQLite (safe to interrupt at any point)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (sha TEXT, prompt TEXT, scorer TEXT, version TEXT, "
                        "score REAL, PRIMARY KEY (sha, prompt, scorer, version))")
        self.hits = 0
        self.misses = 0

    def get(self, sha: str, prompt: str, scorer: str, version: str) -> float | None:
        row = self.db.execute("SELECT score FROM scores WHERE sha=? AND prompt=? AND scorer=? AND version=?",
                              (sha, prompt, scorer, version)).fetchone()
        return None if row is None else float(row[0])

    def put_many(self, rows: Iterable[tuple[str, str, str, str, float]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)", list(rows))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def generate_images(generate: Callable[[list[str], list[int]], list[Image.Image]], prompts: list[str],
                    spec: GenerationSpec, out_dir: Path, batch_size: int = 8, progress: bool = True,
                    timings: dict[str, float] | None = None) -> tuple[list[ImageRecord], int]:
    """Generate (or find on disk) every (prompt, image index) image of ``spec`` under ``out_dir/images``.
    Returns the records and how many images were generated (not found on disk).

    The images go in fixed batches of ``batch_size`` in (prompt, image index) order, and a batch with any image
    missing is generated and written whole: a sampler's batched arithmetic can move a pixel by one with the batch's
    composition, so generating only the missing images would make a resumed, extended or restored evaluation (``bench
    sweep --record`` keeps a few images) differ from one made in one go. This way the images depend on the prompts,
    seeds, spec and batch size only."""
    from tqdm.auto import tqdm

    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    items, found = [], {}
    for pid, prompt in enumerate(prompts):
        for k in range(spec.images_per_prompt):
            seed = image_seed(spec.seed, pid, k)
            rel = f"images/{pid:05d}_{k:02d}.png"
            items.append((pid, prompt, k, seed, rel))
            path = out_dir / rel
            if path.is_file():
                with Image.open(path) as im:
                    meta = im.info
                    if meta.get("prompt") == prompt and meta.get("seed") == str(seed) and \
                            meta.get("spec") == spec.key():
                        found[rel] = ImageRecord(pid, prompt, k, seed, rel, image_sha256(im))
    todo, records = [], []
    for batch in _batches(items, batch_size):
        if all(c[4] in found for c in batch):
            records += [found[c[4]] for c in batch]
        else:
            todo.append(batch)
    start = time.perf_counter()
    n_todo = sum(len(b) for b in todo)
    with tqdm(total=n_todo, desc="generating", disable=not progress or not todo, leave=False) as bar:
        for chunk in todo:
            images = generate([c[1] for c in chunk], [c[3] for c in chunk])
            for (pid, prompt, k, seed, rel), img in zip(chunk, images):
                info = PngImagePlugin.PngInfo()
                for key, value in {"prompt": prompt, "seed": str(seed), "spec": spec.key(),
                                   "generation": json.dumps(asdict(spec))}.items():
                    info.add_text(key, value)
                tmp = out_dir / (rel + ".tmp")
                img.save(tmp, format="PNG", pnginfo=info)
                tmp.replace(out_dir / rel)
                records.append(ImageRecord(pid, prompt, k, seed, rel, image_sha256(img)))
            bar.update(len(chunk))
    if timings is not None:
        timings["sampling"] = timings.get("sampling", 0.0) + time.perf_counter() - start
    records.sort(key=lambda r: (r.prompt_id, r.image_index))
    return records, n_todo


def score_images(records: list[ImageRecord], out_dir: Path, scorers: dict, cache: ScoreCache,
                 batch_size: int = 16, progress: bool = True,
                 timings: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Scores per metric in record order; only cache misses are computed (batched, scorer loaded once)."""
    from tqdm.auto import tqdm

    out: dict[str, list[float]] = {}
    start = time.perf_counter()
    for name, scorer in scorers.items():
        version = str(scorer.version)
        values = [cache.get(r.image_sha256, r.prompt, name, version) for r in records]
        cache.hits += sum(v is not None for v in values)
        missing = [i for i, v in enumerate(values) if v is None]
        cache.misses += len(missing)
        for chunk in tqdm(list(_batches(missing, batch_size)), desc=f"scoring {name}", leave=False,
                          disable=not progress or not missing):
            imgs = [Image.open(out_dir / records[i].image_path).convert("RGB") for i in chunk]
            scores = scorer.score(imgs, [records[i].prompt for i in chunk])
            scores = [float(s) for s in scores]
            for i, s in zip(chunk, scores):
                values[i] = s
            cache.put_many((records[i].image_sha256, records[i].prompt, name, version, s)
                           for i, s in zip(chunk, scores))
        out[name] = values  # type: ignore[assignment]
    if timings is not None:
        timings["scoring"] = timings.get("scoring", 0.0) + time.perf_counter() - start
    return out



def evaluate(out_run_dir: Path, prompt_set, generate: Callable[[list[str], list[int]], list[Image.Image]],
             scorers: dict, spec: GenerationSpec, cache: ScoreCache, batch_size: int = 8,
             score_batch_size: int = 16, progress: bool = True) -> Path:
    """Generate (missing images only), score (cache misses only) and write ``out_run_dir/eval/<set>/``.

    ``prompt_set``: an ``evaluators.prompts.PromptSet``; ``scorers``: ``{metric name: loaded scorer}``.
    Also writes ``eval/<set>/timing.json`` with the wall seconds of sampling and scoring (``phases``: this call;
    ``cumulative_phases``: every call on this folder so far, so reused images keep the cost they were made with) and
    the cache counts.
    """
    import pandas as pd

    from evaluators.rundir import write_eval

    eval_dir = Path(out_run_dir) / "eval" / prompt_set.name
    timings: dict[str, float] = {}
    records, generated = generate_images(generate, prompt_set.prompts, spec, eval_dir, batch_size, progress,
                                         timings)
    hits, misses = cache.hits, cache.misses
    scores = score_images(records, eval_dir, scorers, cache, score_batch_size, progress, timings)
    df = pd.DataFrame([asdict(r) for r in records])
    for name, values in scores.items():
        df[name] = values
    metrics = {name: {"scorer_version": str(s.version), "higher_is_better": bool(s.higher_is_better)}
               for name, s in scorers.items()}
    generation = {k: v for k, v in asdict(spec).items() if k != "images_per_prompt"}
    write_eval(out_run_dir, prompt_set.name, prompt_set.hash, df, metrics, generation)
    timing_path = eval_dir / "timing.json"
    earlier = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    earlier = earlier.get("cumulative_phases", earlier.get("phases", {}))
    cumulative = {k: {"seconds": earlier.get(k, {}).get("seconds", 0.0) + timings.get(k, 0.0)}
                  for k in sorted({*earlier, *timings})}
    timing_path.write_text(json.dumps({
        "phases": {k: {"seconds": v} for k, v in timings.items()}, "cumulative_phases": cumulative,
        "images": len(records), "images_generated": generated,
        "score_cache_hits": cache.hits - hits, "score_cache_misses": cache.misses - misses}, indent=2))
    return eval_dir
