"""The toy world's judges: prompt grammar, image analysis, a simulated rater panel and four toy scorers.

Everything here is programmatic (numpy + PIL; torch only for the returned tensors) and imports neither ``bench`` nor
``methods``: the vocabulary of the toy world lives HERE and ``bench.toy.world`` (which draws the pictures) imports it.

* **Grammar.** ``a {size} {colour} {shape} {position} on a {background} background``, e.g. "a small red circle at
  the top on a white background". Positions are vertical only (top / middle / bottom), so that the trainer's random
  horizontal flip never turns a faithful image into an unfaithful one; the horizontal offset is free and counts as a
  visual quality (centredness). :func:`parse_prompt` inverts :func:`make_prompt`.
* **Analysis** (:func:`analyse`) of a 32x32 RGB image: background colour (median of the 2-pixel border), foreground
  colour (median of the pixels furthest from the background), an alpha map (projection of each pixel on the
  background->foreground colour axis), the largest connected object at alpha > 0.5, its bounding box, the shape by
  IoU against circle / square / triangle templates fitted to the box, size (half the box extent), vertical position
  (box centre) and visual qualities: sharpness (width of the alpha transition per boundary pixel), cleanliness
  (residual of the two-colour reconstruction), contrast (observed / expected colour distance), horizontal
  centredness and single-object-ness. Each attribute comes with soft class probabilities.
* **Features** (:func:`features`): ten numbers in [0, 1] for an (image, prompt) pair, five of prompt fidelity (the
  soft probability of the prompt's colour, shape, size, position, background) and five visual qualities.
* **Panel** (:class:`Panel`): raters of five archetypes (literalist, aesthete, colourist, composer, balanced), each a
  positive weight vector over the ten features (jittered per rater), a judgement noise and a tie margin. A rater's
  utility is ``w . f``; judging a pair adds Gaussian noise to the utility difference and calls a tie within the
  margin. The panel's mean utility ``U = mean_r(w_r) . f`` is what toy-pickscore reports.
* **Scorers** (``toy-fidelity`` and ``toy-quality`` report the two halves separately, 0-100): ``toy-pickscore`` (panel mean utility; raw score ``LO + (HI - LO) * U`` with SmPO's PickScore bounds,
  so SmPO's default normalisation recovers exactly U; score = 100 x raw), ``toy-hps`` (fidelity heavy, "cosine" x 100),
  ``toy-imagereward`` (fidelity + quality, z-normalised with fixed constants), ``toy-aesthetic`` (quality only,
  1-10, prompt ignored).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from evaluators.scorers.base import Checkpoint, Scorer

VERSION = "toy-1"
SIZE = 32

# ------------------------------------------------------------------------------------------------------------------
# Vocabulary and grammar
# ------------------------------------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "orange": (245, 135, 30), "yellow": (240, 220, 40),
    "green": (40, 170, 70), "blue": (40, 80, 220), "purple": (150, 60, 200)}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (245, 245, 245), "black": (20, 20, 20),
                                                 "grey": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
POSITIONS = ("top", "middle", "bottom")
POSITION_PHRASES = {"top": "at the top", "middle": "in the middle", "bottom": "at the bottom"}
ATTRIBUTES = ("colour", "shape", "size", "position", "background")
VALUES: dict[str, tuple[str, ...]] = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES, "position": POSITIONS,
                                      "background": tuple(BACKGROUNDS)}  # the allowed values, in ATTRIBUTES order
FEATURES = ("colour", "shape", "size", "position", "background",  # prompt fidelity
            "sharpness", "cleanliness", "contrast", "centred", "single")  # visual quality
FIDELITY, QUALITY = FEATURES[:5], FEATURES[5:]

# geometry the drawing follows and the analysis expects (pixel units; the image spans [0, 32])
SIZE_RADIUS = {"small": (3.5, 5.0), "large": (8.0, 10.0)}  # half the bounding-box side
SIZE_SPLIT = 6.5  # radius between the two ranges
POSITION_SPLIT = (13.0, 19.0)  # box centre y: top < 13 <= middle <= 19 < bottom
SHAPE_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.55}  # area / (width x height), as measured
SHAPE_SKEW = {"circle": 0.0, "square": 0.0, "triangle": -0.5}  # skewness of the mass along y, as measured
SHARP_WIDTH = (1.2, 4.5)  # transition pixels per boundary pixel: sharpness 1 at or below, 0 at or above


@dataclass(frozen=True)
class Attributes:
    colour: str
    shape: str
    size: str
    position: str
    background: str

    def __post_init__(self):
        for name, allowed in VALUES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; one of {list(allowed)}")


def make_prompt(a: Attributes) -> str:
    return f"a {a.size} {a.colour} {a.shape} {POSITION_PHRASES[a.position]} on a {a.background} background"


_PROMPT_RE = re.compile(
    r"^an? (?P<size>{}) (?P<colour>{}) (?P<shape>{}) (?P<pos>{}) on an? (?P<bg>{}) background$".format(
        "|".join(SIZES), "|".join(COLOURS), "|".join(SHAPES), "|".join(POSITION_PHRASES.values()),
        "|".join(BACKGROUNDS)))


def parse_prompt(prompt: str) -> Attributes | None:
    """The attributes a toy prompt asks for, or None when it is not a toy prompt."""
    m = _PROMPT_RE.match(prompt.strip().lower().rstrip("."))
    if m is None:
        return None
    pos = {v: k for k, v in POSITION_PHRASES.items()}[m["pos"]]
    return Attributes(m["colour"], m["shape"], m["size"], pos, m["bg"])


def all_attributes() -> list[Attributes]:
    """Every combination, in a fixed order (6 colours x 3 shapes x 2 sizes x 3 positions x 3 backgrounds = 324)."""
    return [Attributes(c, s, z, p, b) for c in COLOURS for s in SHAPES for z in SIZES for p in POSITIONS
            for b in BACKGROUNDS]


# Splits are over attribute COMBINATIONS: a seeded permutation puts 64 combinations in the held-out set and the other
# 260 in the training set. Every attribute value occurs in training; the held-out prompts are combinations the base
# model never saw (compositional generalisation, like evaluating on HPDv2 after training on Pick-a-Pic).
SPLIT_SEED = 0
N_HELDOUT = 64


def _split() -> tuple[list[Attributes], list[Attributes]]:
    combos = all_attributes()
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(combos))
    held = sorted(int(i) for i in perm[:N_HELDOUT])
    train = sorted(int(i) for i in perm[N_HELDOUT:])
    return [combos[i] for i in train], [combos[i] for i in held]


def train_attributes() -> list[Attributes]:
    return _split()[0]


def heldout_attributes() -> list[Attributes]:
    return _split()[1]


def train_prompts() -> list[str]:
    """The 260 training prompts (combinations seen by the base model and in the preference pairs)."""
    return [make_prompt(a) for a in train_attributes()]


def heldout_prompts() -> list[str]:
    """The 64 held-out prompts (attribute combinations never seen in training), in a fixed order."""
    return [make_prompt(a) for a in heldout_attributes()]


def val_test_prompts() -> tuple[list[str], list[str]]:
    """The held-out prompts split in two halves of 32 (a seeded permutation): ``toy:val`` to select a method's
    configuration on, ``toy:test`` to report it on (``bench sweep``)."""
    held = heldout_prompts()
    perm = np.random.default_rng([SPLIT_SEED, 1]).permutation(len(held))
    half = len(held) // 2
    return [held[i] for i in sorted(perm[:half])], [held[i] for i in sorted(perm[half:])]


TOY_SPLITS = ("heldout", "train", "val", "test")


def toy_prompt_set(source: str | None = None, split: str = "heldout"):
    """The ``toy`` prompt set: the 64 held-out prompts; ``toy:train`` (or ``split=train``) the 260 training ones,
    ``toy:val`` / ``toy:test`` the two halves of the held-out ones (:func:`val_test_prompts`)."""
    from evaluators.prompts import PromptSet, PromptSetError

    split = source or split
    if split not in TOY_SPLITS:
        raise PromptSetError(f"toy prompt set: split {split!r} is not one of {', '.join(TOY_SPLITS)} "
                             "(e.g. --prompts toy:train)")
    prompts = {"heldout": heldout_prompts, "train": train_prompts, "val": lambda: val_test_prompts()[0],
               "test": lambda: val_test_prompts()[1]}[split]()
    return PromptSet("toy" if split == "heldout" else f"toy-{split}", prompts, None, f"evaluators.toy ({split} split)")


# ------------------------------------------------------------------------------------------------------------------
# Image analysis
# ------------------------------------------------------------------------------------------------------------------

def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _colour_probs(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]], sigma: float = 30.0) -> dict[str, float]:
    d2 = np.array([np.sum((rgb - np.array(c, dtype=np.float64)) ** 2) for c in palette.values()])
    return dict(zip(palette, _softmax(-d2 / (2 * sigma ** 2)).tolist()))


def _dilate(mask: np.ndarray, n: int = 1) -> np.ndarray:
    for _ in range(n):
        p = np.pad(mask, 1)
        mask = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return mask


def _erode(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (ties: the first found in raster order)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        comp, queue = [], deque([(int(y0), int(x0))])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            comp.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def shape_template(shape: str, x0: int, y0: int, x1: int, y1: int, ss: int = 4) -> np.ndarray:
    """Coverage > 0.5 of ``shape`` inscribed in the pixel box [x0, x1) x [y0, y1) (triangles point up)."""
    w, h = x1 - x0, y1 - y0
    off = (np.arange(ss) + 0.5) / ss
    px = (np.arange(w)[:, None] + off[None, :]).reshape(-1)  # sub-sample x coordinates in box units
    py = (np.arange(h)[:, None] + off[None, :]).reshape(-1)
    X, Y = np.meshgrid(px, py)
    if shape == "square":
        inside = np.ones_like(X, dtype=bool)
    elif shape == "circle":
        inside = ((X - w / 2) / (w / 2)) ** 2 + ((Y - h / 2) / (h / 2)) ** 2 <= 1.0
    elif shape == "triangle":
        inside = np.abs(X - w / 2) <= (Y / h) * (w / 2)
    else:
        raise ValueError(shape)
    cov = inside.reshape(h, ss, w, ss).mean(axis=(1, 3))
    return cov > 0.5


@dataclass
class Analysis:
    """What :func:`analyse` sees in one image. Probabilities are soft class scores summing to 1 per attribute."""

    present: bool
    background_rgb: tuple[float, float, float]
    foreground_rgb: tuple[float, float, float]
    background: dict[str, float]
    colour: dict[str, float] = field(default_factory=dict)
    shape: dict[str, float] = field(default_factory=dict)
    size: dict[str, float] = field(default_factory=dict)
    position: dict[str, float] = field(default_factory=dict)
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 (exclusive)
    fill: float = 0.0
    skew: float = 0.0
    blur_width: float = 0.0
    residual: float = 0.0
    radius: float = 0.0
    centre: tuple[float, float] = (0.0, 0.0)
    area: int = 0
    sharpness: float = 0.0
    cleanliness: float = 0.0
    contrast: float = 0.0
    centred: float = 0.0
    single: float = 0.0

    def best(self, attr: str) -> str | None:
        probs = getattr(self, attr)
        return max(probs, key=probs.get) if probs else None

    def attributes(self) -> Attributes | None:
        if not self.present:
            return None
        return Attributes(*(self.best(a) for a in ATTRIBUTES))


def _as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        if image.size != (SIZE, SIZE):
            image = image.resize((SIZE, SIZE), Image.BOX)
    return np.asarray(image, dtype=np.float64)


def analyse(image: Image.Image | np.ndarray) -> Analysis:
    """Deterministic analysis of a toy picture (resized to 32x32 with a box filter if it has another size)."""
    arr = _as_array(image)
    h, w, _ = arr.shape
    border = np.concatenate([arr[:2].reshape(-1, 3), arr[-2:].reshape(-1, 3), arr[2:-2, :2].reshape(-1, 3),
                             arr[2:-2, -2:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    bg_probs = _colour_probs(bg, BACKGROUNDS)
    dist = np.sqrt(((arr - bg) ** 2).sum(-1))
    top = float(np.percentile(dist, 99))
    empty = Analysis(False, tuple(bg.tolist()), tuple(bg.tolist()), bg_probs)
    if top < 40.0:  # nothing stands out from the background
        return empty
    core = dist >= 0.8 * top
    fg = np.median(arr[core], axis=0)
    axis = fg - bg
    span = float(np.linalg.norm(axis))
    alpha = ((arr - bg) @ axis) / span ** 2
    obj = _largest_component(alpha > 0.5)
    area = int(obj.sum())
    if area < 4:
        return empty
    ys, xs = np.nonzero(obj)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    # shape from the soft (alpha) mass in the object's neighbourhood (component dilated by 2 pixels): fill ratio =
    # area / (max row sum x max column sum) -- square 1, circle pi/4, triangle 1/2 -- and the skewness of the mass
    # along y (an upward triangle's rows grow linearly: skew -0.57; circle, square: 0)
    a = np.clip(alpha, 0.0, 1.0)
    near = _dilate(obj, 2)
    soft = np.where(near, np.clip((alpha - 0.15) / 0.7, 0.0, 1.0), 0.0)
    mass = float(soft.sum())
    fill = float(mass / max(1e-6, soft.sum(1).max() * soft.sum(0).max()))
    rows = soft.sum(1) / max(mass, 1e-6)
    yy = np.arange(h) + 0.5
    mu = float((rows * yy).sum())
    var = float((rows * (yy - mu) ** 2).sum())
    skew = float((rows * (yy - mu) ** 3).sum() / max(var, 1e-6) ** 1.5)
    logits = np.array([-0.5 * (((fill - SHAPE_FILL[s]) / 0.07) ** 2 + ((skew - SHAPE_SKEW[s]) / 0.15) ** 2)
                       for s in SHAPES])
    shape_probs = dict(zip(SHAPES, _softmax(logits).tolist()))
    radius = ((x1 - x0) + (y1 - y0)) / 4.0
    p_large = _sigmoid((radius - SIZE_SPLIT) / 0.6)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    p_top, p_bottom = _sigmoid((POSITION_SPLIT[0] - cy) / 0.7), _sigmoid((cy - POSITION_SPLIT[1]) / 0.7)
    p_mid = max(0.0, 1.0 - p_top - p_bottom)
    z = p_top + p_mid + p_bottom
    # visual qualities. Sharpness: pixels of intermediate alpha near the object per boundary pixel (a crisp
    # anti-aliased edge has about one; blur widens the transition)
    edge = obj & ~_erode(obj)
    mid = int(((a > 0.1) & (a < 0.9) & _dilate(obj, 3)).sum())
    blur_width = mid / max(1, int(edge.sum()))
    sharpness = float(np.clip((SHARP_WIDTH[1] - blur_width) / (SHARP_WIDTH[1] - SHARP_WIDTH[0]), 0.0, 1.0))
    recon = bg + a[..., None] * axis
    residual = float(np.sqrt(((arr - recon) ** 2).mean()))
    cleanliness = float(np.exp(-residual / 10.0))
    colour_probs = _colour_probs(fg, COLOURS)
    expected = np.linalg.norm(np.array(COLOURS[max(colour_probs, key=colour_probs.get)], dtype=np.float64)
                              - np.array(BACKGROUNDS[max(bg_probs, key=bg_probs.get)], dtype=np.float64))
    contrast = float(np.clip(span / max(expected, 1.0), 0.0, 1.0))
    centred = float(np.clip(1.0 - abs(cx - w / 2.0) / 12.0, 0.0, 1.0))
    stray = int(((alpha > 0.5) & ~obj).sum())
    single = float(np.clip(1.0 - stray / area, 0.0, 1.0))
    return Analysis(True, tuple(bg.tolist()), tuple(fg.tolist()), bg_probs, colour_probs, shape_probs,
                    {"small": 1.0 - p_large, "large": p_large},
                    {"top": p_top / z, "middle": p_mid / z, "bottom": p_bottom / z},
                    (x0, y0, x1, y1), fill, skew, blur_width, residual, radius, (cx, cy), area, sharpness,
                    cleanliness, contrast, centred, single)


def features(image: Image.Image | np.ndarray | Analysis, prompt: str | Attributes) -> np.ndarray:
    """The ten features (:data:`FEATURES`) of an image against a prompt, each in [0, 1].

    Fidelity features are the soft probability of the prompt's value (0 when nothing is drawn; for a prompt outside
    the toy grammar, 0.5 each: no opinion). Quality features do not look at the prompt.
    """
    an = image if isinstance(image, Analysis) else analyse(image)
    attrs = prompt if isinstance(prompt, Attributes) else parse_prompt(prompt)
    if attrs is None:
        fid = [0.5] * 5
    elif not an.present:
        fid = [0.0, 0.0, 0.0, 0.0, an.background[attrs.background]]
    else:
        fid = [an.colour[attrs.colour], an.shape[attrs.shape], an.size[attrs.size], an.position[attrs.position],
               an.background[attrs.background]]
    qual = [an.sharpness, an.cleanliness, an.contrast, an.centred, an.single]
    return np.asarray(fid + qual, dtype=np.float64)


def feature_matrix(images: Sequence[Image.Image | Analysis], prompts: Sequence[str]) -> np.ndarray:
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    return np.stack([features(im, p) for im, p in zip(images, prompts)]) if images else np.zeros((0, len(FEATURES)))


def is_faithful(image: Image.Image | Analysis, prompt: str, attrs: Sequence[str] = ("colour", "shape")) -> bool:
    """Whether the analysed ``attrs`` (default colour and shape, the fidelity the build reports) match the prompt."""
    an = image if isinstance(image, Analysis) else analyse(image)
    want = parse_prompt(prompt)
    return bool(an.present and want is not None and all(an.best(a) == getattr(want, a) for a in attrs))


# ------------------------------------------------------------------------------------------------------------------
# The panel
# ------------------------------------------------------------------------------------------------------------------

# weights over FEATURES: colour shape size position background | sharpness cleanliness contrast centred single
ARCHETYPES: dict[str, tuple[float, ...]] = {
    "literalist": (3.0, 3.0, 2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 0.2, 0.5),
    "aesthete": (1.0, 1.0, 0.3, 0.3, 0.5, 3.0, 3.0, 2.0, 1.5, 1.0),
    "colourist": (4.0, 1.0, 0.5, 0.5, 2.0, 0.5, 1.0, 3.0, 0.2, 0.5),
    "composer": (1.0, 2.0, 2.0, 3.0, 0.5, 1.0, 0.5, 0.5, 3.0, 1.0),
    "balanced": (1.0,) * 10,
}


@dataclass(frozen=True)
class Rater:
    name: str
    archetype: str
    weights: tuple[float, ...]  # over FEATURES, summing to 1
    noise: float  # std of the judgement noise on the utility difference
    tie_margin: float  # |noisy difference| below this is a tie

    def utility(self, f: np.ndarray) -> np.ndarray:
        """Utility in [0, 1] of feature rows ``f`` (..., 10)."""
        return np.asarray(f) @ np.asarray(self.weights)

    def judge(self, f0: np.ndarray, f1: np.ndarray, rng: np.random.Generator) -> float:
        """label_0 for a pair: 1 (image 0 preferred), 0 (image 1) or 0.5 (tie). Draws one normal from ``rng``."""
        d = float(self.utility(f0) - self.utility(f1)) + self.noise * float(rng.standard_normal())
        return 0.5 if abs(d) < self.tie_margin else float(d > 0)


@dataclass(frozen=True)
class Panel:
    raters: tuple[Rater, ...]
    seed: int

    @classmethod
    def default(cls, n_raters: int = 15, seed: int = 0) -> "Panel":
        """``n_raters`` raters, archetypes in turn, weights jittered (log-normal, sd 0.35) and normalised."""
        rng = np.random.default_rng([seed, 7])
        names = list(ARCHETYPES)
        raters = []
        for i in range(n_raters):
            arch = names[i % len(names)]
            w = np.asarray(ARCHETYPES[arch]) * np.exp(0.35 * rng.standard_normal(len(FEATURES)))
            w = w / w.sum()
            raters.append(Rater(f"rater{i:02d}-{arch}", arch, tuple(float(round(v, 6)) for v in w),
                                float(round(rng.uniform(0.02, 0.06), 6)), float(round(rng.uniform(0.01, 0.03), 6))))
        return cls(tuple(raters), seed)

    @property
    def mean_weights(self) -> np.ndarray:
        return np.mean([r.weights for r in self.raters], axis=0)

    def utility(self, f: np.ndarray) -> np.ndarray:
        """The panel's mean (noise-free) utility, in [0, 1]."""
        return np.asarray(f) @ self.mean_weights

    def judge(self, f0: np.ndarray, f1: np.ndarray, seed: int, pair_index: int) -> tuple[int, float]:
        """(rater index, label_0) of pair ``pair_index``: a random rater of the panel, as Pick-a-Pic's users."""
        rng = np.random.default_rng([seed, pair_index, 11])
        r = int(rng.integers(len(self.raters)))
        return r, self.raters[r].judge(f0, f1, rng)

    def identity(self) -> str:
        blob = json.dumps({"version": VERSION, "raters": [asdict(r) for r in self.raters]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------------------------
# Toy scorers (the Scorer interface of evaluators/scorers/base.py)
# ------------------------------------------------------------------------------------------------------------------

PICKSCORE_LO, PICKSCORE_HI = 0.11543526500463486, 0.28201571106910706  # SmPO's PickScore normalisation bounds
FIDELITY_MEAN_W = np.asarray([0.25, 0.25, 0.15, 0.15, 0.20])  # toy-hps / toy-imagereward fidelity weights
QUALITY_MEAN_W = np.asarray([0.30, 0.30, 0.20, 0.10, 0.10])  # toy-aesthetic / toy-imagereward quality weights
IMAGEREWARD_MEAN, IMAGEREWARD_STD = 0.6, 0.2  # fixed z-normalisation constants of toy-imagereward


class _ToyScorer(Scorer):
    """Base of the toy scorers: analysis features -> a number. No weights; the identity is the formula's hash."""

    version = VERSION
    higher_is_better = True
    default_source = "builtin:evaluators.toy"

    def __init__(self, panel: Panel | None = None, **kwargs):
        self.panel = panel or Panel.default()
        kwargs.setdefault("checkpoints", [Checkpoint(self.default_source, self.name, self._identity())])
        super().__init__(**kwargs)

    def _identity(self) -> str:
        blob = json.dumps({"name": self.name, "version": self.version, "panel": self.panel.identity(),
                           "fid": FIDELITY_MEAN_W.tolist(), "qual": QUALITY_MEAN_W.tolist(),
                           "ir": [IMAGEREWARD_MEAN, IMAGEREWARD_STD]})
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def from_pretrained(cls, source: str | None = None, *, device="cpu", dtype: torch.dtype = torch.float32,
                        batch_size: int = 64, **_ignored) -> "_ToyScorer":
        return cls(device=device, dtype=dtype, batch_size=batch_size)

    def _value(self, f: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _score_batch(self, images, prompts):
        return torch.from_numpy(self._value(feature_matrix(images, prompts))).double()


class ToyPickScore(_ToyScorer):
    """The panel's mean preference utility U in [0, 1]: score = 100 x raw, raw = LO + (HI - LO) x U.

    LO/HI are SmPO's PickScore bounds (0.1154, 0.2820), so SmPO's default normalisation (raw - LO) / (HI - LO)
    gives back U exactly and its smoothed label is p = exp(U_w) / (exp(U_w) + exp(U_l)).
    """

    name = "toy-pickscore"
    preprocessing = "toy analysis (32x32 box resize); panel mean utility of 10 features; 100 x (LO + (HI-LO) U)"

    def utility(self, images, prompts) -> torch.Tensor:
        return self._batched(lambda i, p: torch.from_numpy(self.panel.utility(feature_matrix(i, p))), images, prompts)

    def _raw(self, f: np.ndarray) -> np.ndarray:
        return PICKSCORE_LO + (PICKSCORE_HI - PICKSCORE_LO) * self.panel.utility(f)

    def _value(self, f):
        return 100.0 * self._raw(f)

    def raw_score(self, images, prompts) -> torch.Tensor:
        """The "cosine" (no logit scale) in [0.1154, 0.2820]: what SmPO's labels and reward_0/reward_1 store."""
        return self._batched(lambda i, p: torch.from_numpy(self._raw(feature_matrix(i, p))), images, prompts)


class ToyHPS(_ToyScorer):
    """Prompt fidelity heavy (85% fidelity, 15% quality), on HPS's scale: 100 x (0.20 + 0.10 x mix), 20-30."""

    name = "toy-hps"
    preprocessing = "toy analysis (32x32 box resize); 0.85 fidelity + 0.15 quality; 100 x (0.2 + 0.1 mix)"

    def _value(self, f):
        mix = 0.85 * f[:, :5] @ FIDELITY_MEAN_W + 0.15 * f[:, 5:] @ QUALITY_MEAN_W
        return 100.0 * (0.20 + 0.10 * mix)


class ToyImageReward(_ToyScorer):
    """Fidelity and quality (60/40), z-normalised with fixed constants (mean 0.6, std 0.2), as ImageReward."""

    name = "toy-imagereward"
    preprocessing = "toy analysis (32x32 box resize); (0.6 fidelity + 0.4 quality - 0.6) / 0.2"

    def _value(self, f):
        mix = 0.6 * f[:, :5] @ FIDELITY_MEAN_W + 0.4 * f[:, 5:] @ QUALITY_MEAN_W
        return (mix - IMAGEREWARD_MEAN) / IMAGEREWARD_STD


class ToyAesthetic(_ToyScorer):
    """Visual quality only (sharpness, cleanliness, contrast, centredness, single object), 1-10; prompt ignored."""

    name = "toy-aesthetic"
    uses_prompt = False
    preprocessing = "toy analysis (32x32 box resize); 1 + 9 x quality"

    def _value(self, f):
        return 1.0 + 9.0 * (f[:, 5:] @ QUALITY_MEAN_W)


class ToyFidelity(_ToyScorer):
    """Attribute fidelity alone: 100 x the mean of the five fidelity features (the soft probability that the image
    shows the prompt's colour, shape, size, position and background), 0-100. No quality term."""

    name = "toy-fidelity"
    preprocessing = "toy analysis (32x32 box resize); 100 x mean of the five fidelity features"

    def _value(self, f):
        return 100.0 * f[:, :5].mean(axis=1)


class ToyQuality(_ToyScorer):
    """Visual quality alone: 100 x the mean of the five quality features, 0-100; prompt ignored (toy-aesthetic is
    the same features weighted on a 1-10 scale)."""

    name = "toy-quality"
    uses_prompt = False
    preprocessing = "toy analysis (32x32 box resize); 100 x mean of the five quality features"

    def _value(self, f):
        return 100.0 * f[:, 5:].mean(axis=1)


TOY_SCORERS = {c.name: c for c in (ToyPickScore, ToyHPS, ToyImageReward, ToyAesthetic, ToyFidelity, ToyQuality)}
