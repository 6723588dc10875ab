"""The toy world: procedural 32x32 pictures of one shape on a plain background, and the prompts that describe them.

The vocabulary and grammar live in :mod:`evaluators.toy` (the scorers parse prompts without importing ``bench``):
"a {small|large} {red|orange|yellow|green|blue|purple} {circle|square|triangle} {at the top|in the middle|at the
bottom} on a {white|black|grey} background" -- 324 attribute combinations.

The train / held-out split (260 / 64 attribute combinations) is defined with the grammar in :mod:`evaluators.toy`
(the ``toy`` prompt set is registered there) and re-exported here.

A :class:`Scene` fixes everything about a picture (attributes, centre, half-size, degradation); :func:`draw` renders
it exactly (8x supersampling, box-filtered down to 32x32, so edges are anti-aliased coverage). :func:`sample_scene`
draws a scene for some attributes from a numpy generator. Everything is deterministic given the seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from evaluators.toy import (BACKGROUNDS, COLOURS, SIZE, SIZE_RADIUS, Attributes, heldout_attributes, heldout_prompts,
                            make_prompt, parse_prompt, train_attributes, train_prompts)

__all__ = ["Scene", "draw", "sample_scene", "train_attributes", "heldout_attributes", "train_prompts",
           "heldout_prompts", "Attributes", "make_prompt", "parse_prompt"]

SUPERSAMPLE = 8


@dataclass(frozen=True)
class Scene:
    attrs: Attributes
    cx: float  # centre of the shape's bounding box, pixels (image spans [0, 32])
    cy: float
    r: float  # half the side of the bounding box
    blur: float = 0.0  # Gaussian blur radius (pixels at 32 px)
    noise: float = 0.0  # std of additive pixel noise (0-255 scale)
    fade: float = 0.0  # foreground mixed towards the background by this fraction
    noise_seed: int = 0


def _position_range(position: str, r: float) -> tuple[float, float]:
    """Range of the box centre y for a position (the analysis splits at y = 13 and 19)."""
    if position == "middle":
        return 14.5, 17.5
    lo, hi = (max(r + 1.0, 7.5), max(r + 1.0, 7.5) + 3.0) if r < 6 else (r + 1.0, r + 2.0)
    hi = min(hi, 12.0)
    return (lo, hi) if position == "top" else (SIZE - hi, SIZE - lo)


def sample_scene(attrs: Attributes, rng: np.random.Generator, degrade: float = 0.0) -> Scene:
    """A random placement of ``attrs``; with probability ``degrade`` one degradation (blur, noise or fade)."""
    r = float(rng.uniform(*SIZE_RADIUS[attrs.size]))
    cy = float(rng.uniform(*_position_range(attrs.position, r)))
    cx = float(rng.uniform(r + 1.0, SIZE - r - 1.0))
    scene = Scene(attrs, cx, cy, r, noise_seed=int(rng.integers(2 ** 31)))
    if rng.random() < degrade:
        kind = int(rng.integers(3))
        if kind == 0:
            scene = replace(scene, blur=float(rng.uniform(0.8, 1.6)))
        elif kind == 1:
            scene = replace(scene, noise=float(rng.uniform(12.0, 30.0)))
        else:
            scene = replace(scene, fade=float(rng.uniform(0.3, 0.55)))
    return scene


def draw(scene: Scene) -> Image.Image:
    """Render a scene as a 32x32 RGB image."""
    s = SUPERSAMPLE
    bg = np.asarray(BACKGROUNDS[scene.attrs.background], dtype=np.float64)
    fg = np.asarray(COLOURS[scene.attrs.colour], dtype=np.float64)
    fg = (1 - scene.fade) * fg + scene.fade * bg
    img = Image.new("RGB", (SIZE * s, SIZE * s), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(img)
    cx, cy, r = scene.cx * s, scene.cy * s, scene.r * s
    fill = tuple(int(round(v)) for v in fg)
    box = (round(cx - r), round(cy - r), round(cx + r) - 1, round(cy + r) - 1)
    if scene.attrs.shape == "circle":
        d.ellipse(box, fill=fill)
    elif scene.attrs.shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([((box[0] + box[2] + 1) / 2, box[1]), (box[0], box[3] + 1), (box[2] + 1, box[3] + 1)], fill=fill)
    img = img.resize((SIZE, SIZE), Image.BOX)
    if scene.blur:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur))
    if scene.noise:
        rng = np.random.default_rng(scene.noise_seed)
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0.0, scene.noise, (SIZE, SIZE, 3))
        img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    return img


