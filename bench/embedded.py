"""The embedded dry-run preference set: procedural 32x32 pictures in the Pick-a-Pic v2 schema.

Used by the tiny random models (dry runs, tests; the meaningful default is the toy world, bench/toy): a caption
names a shape and a colour ("a red circle on a white background");
the preferred image draws exactly that, the other one gets the colour or the shape wrong, or is noisy. About 10% of
the pairs are ties (label_0 = 0.5) so that the tie filter runs. ``reward_0``/``reward_1`` stand in for a reward
model's raw scores (in PickScore's cosine range: the faithful image ~0.20-0.26, the flawed one ~0.14-0.22, so they
usually but not always agree with the label), which lets SmPO's smoothed labels run on the dry-run set.
Deterministic (seed 0); written once as parquet so the real parquet loading path is what trains on it.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")
VERSION = 2


def draw(shape: str, colour: str, background: str, rng: np.random.Generator, size: int = 32,
         noise: float = 0.0) -> Image.Image:
    img = Image.new("RGB", (size, size), BACKGROUNDS[background])
    d = ImageDraw.Draw(img)
    r = int(rng.integers(7, 12))
    cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    if noise:
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0, noise, (size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_rows(n_pairs: int = 64, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_pairs):
        shape, colour, bg = SHAPES[rng.integers(3)], list(COLOURS)[rng.integers(4)], list(BACKGROUNDS)[rng.integers(2)]
        good = draw(shape, colour, bg, rng)
        flaw = rng.integers(3)
        if flaw == 0:
            bad = draw(shape, list(COLOURS)[(list(COLOURS).index(colour) + 1) % 4], bg, rng)
        elif flaw == 1:
            bad = draw(SHAPES[(SHAPES.index(shape) + 1) % 3], colour, bg, rng)
        else:
            bad = draw(shape, colour, bg, rng, noise=60.0)
        tie = rng.random() < 0.1
        good_first = bool(rng.random() < 0.5)
        a, b = (good, bad) if good_first else (bad, good)
        r_good, r_bad = float(rng.uniform(0.20, 0.26)), float(rng.uniform(0.14, 0.22))
        rows.append({"jpg_0": jpeg(a), "jpg_1": jpeg(b), "label_0": 0.5 if tie else float(good_first),
                     "label_1": 0.5 if tie else float(not good_first),
                     "caption": f"a {colour} {shape} on a {bg} background",
                     "reward_0": r_good if good_first else r_bad, "reward_1": r_bad if good_first else r_good})
    return rows


def embedded_parquet(cache_dir: Path) -> Path:
    """Write (once) and return the embedded set's parquet file."""
    import pandas as pd

    path = Path(cache_dir) / "data" / f"embedded-v{VERSION}" / "train.parquet"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pd.DataFrame(make_rows()).to_parquet(tmp)
        tmp.replace(path)
    return path
