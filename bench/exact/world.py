"""The exact world's distribution, conditions, raters and reward, all in closed form (DESIGN.md section 10).

Data live in R^2. Eight modes ``A..H`` sit on a circle of radius 1; every mode is an isotropic Gaussian of std
``sigma``. A condition (the role of a prompt) selects two or three modes with equal weight; its caption lists them
(``"A C F"``). The true conditional density is the mixture

    p(x | c) = sum_{m in c} (1 / |c|) N(x; mu_m, sigma^2 I).

A panel of raters with varied tastes judges pairs. Rater j's utility of a sample x for condition c is

    u_j(x, c) = a_j * fid(x, c) + b_j * (v_j . x),     fid(x, c) = sum_{m in c} exp(-|x - mu_m|^2 / (2 s^2))

prompt fidelity (a sample on one of the asked-for modes, the sharper the better; s = 2 sigma) plus a taste for a
direction v_j (an "aesthetic": the panel on average likes samples toward +y, individual raters lean left or right).
The panel's mean utility is the closed-form reward

    R(x, c) = mean_j u_j(x, c) = abar * fid(x, c) + w . x,     abar = mean_j a_j,  w = mean_j b_j v_j,

which plays the role of PickScore (the mean of varied human preferences). A rater chooses by Bradley-Terry,
P(x_0 preferred) = sigmoid((u_j(x_0) - u_j(x_1)) / temp_j), and calls a tie when |u_j(x_0) - u_j(x_1)| < tie.

The reward-tilted target is p_lam(x | c) proportional to p(x | c) exp(lam R(x, c)); it is computed by quadrature on
a fine grid (cell 0.006, against sigma 0.08), which also gives its exact expected reward and exact samples (a cell
drawn by its mass, then a uniform position inside it).

Everything here is a pure function of ``WorldConfig``; nothing is learned.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import string
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import torch

MODE_NAMES = string.ascii_uppercase


@dataclass(frozen=True)
class WorldConfig:
    n_modes: int = 8
    radius: float = 1.0
    sigma: float = 0.08
    #: the width of the prompt-fidelity bump, in units of sigma
    fidelity_width: float = 2.0
    #: conditions: every subset of these sizes; a seeded shuffle puts ``n_test`` of them in the held-out split
    subset_sizes: tuple[int, ...] = (2, 3)
    n_test: int = 16
    n_raters: int = 12
    #: rater j: a_j ~ U(a_lo, a_hi), b_j ~ U(b_lo, b_hi), taste angle ~ N(90 deg, angle_sd), temp_j ~ U(t_lo, t_hi)
    a_range: tuple[float, float] = (0.5, 1.5)
    b_range: tuple[float, float] = (0.1, 0.4)
    angle_sd_deg: float = 40.0
    temp_range: tuple[float, float] = (0.05, 0.2)
    #: |u_j(x_0) - u_j(x_1)| below this is a tie (label 0.5)
    tie: float = 0.01
    #: the reward-tilted target's inverse temperature (also the better-than-base source's)
    tilt: float = 4.0
    #: "far from every mode": farther than this many sigma from every mode centre
    far: float = 3.0
    seed: int = 0

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Panel:
    a: np.ndarray  # (R,)
    b: np.ndarray  # (R,)
    v: np.ndarray  # (R, 2) unit taste directions
    temp: np.ndarray  # (R,)


class World:
    """The exact world for a :class:`WorldConfig`: modes, conditions, panel, density, reward, tilted target."""

    def __init__(self, cfg: WorldConfig = WorldConfig()):
        self.cfg = cfg
        ang = 2 * math.pi * np.arange(cfg.n_modes) / cfg.n_modes
        self.means = cfg.radius * np.stack([np.cos(ang), np.sin(ang)], 1)  # (M, 2)
        subsets = [s for k in cfg.subset_sizes for s in itertools.combinations(range(cfg.n_modes), k)]
        order = np.random.default_rng([cfg.seed, 1]).permutation(len(subsets))
        shuffled = [subsets[i] for i in order]
        self.test_conditions = sorted(shuffled[:cfg.n_test])
        self.train_conditions = sorted(shuffled[cfg.n_test:])
        g = np.random.default_rng([cfg.seed, 2])
        a = g.uniform(*cfg.a_range, cfg.n_raters)
        b = g.uniform(*cfg.b_range, cfg.n_raters)
        theta = np.deg2rad(90.0 + cfg.angle_sd_deg * g.standard_normal(cfg.n_raters))
        temp = g.uniform(*cfg.temp_range, cfg.n_raters)
        self.panel = Panel(a, b, np.stack([np.cos(theta), np.sin(theta)], 1), temp)
        self.abar = float(a.mean())
        self.w = (b[:, None] * self.panel.v).mean(0)  # (2,)

    # ---------------------------------------------------------------------------------------------------------
    # Conditions and captions
    # ---------------------------------------------------------------------------------------------------------
    def caption(self, modes: tuple[int, ...]) -> str:
        return " ".join(MODE_NAMES[m] for m in modes)

    def modes_of(self, caption: str) -> tuple[int, ...]:
        """The modes a caption asks for ("" -> none: the unconditional, dropped caption)."""
        out = []
        for tok in caption.split():
            if len(tok) != 1 or tok not in MODE_NAMES[:self.cfg.n_modes]:
                raise ValueError(f"exact world caption {caption!r}: {tok!r} is not a mode name "
                                 f"({', '.join(MODE_NAMES[:self.cfg.n_modes])})")
            out.append(MODE_NAMES.index(tok))
        return tuple(sorted(set(out)))

    def weights(self, caption: str) -> np.ndarray:
        """(M,) mixture weights of a condition: 1/|c| on its modes; zeros for the empty caption."""
        w = np.zeros(self.cfg.n_modes)
        modes = self.modes_of(caption)
        if modes:
            w[list(modes)] = 1.0 / len(modes)
        return w

    def captions(self, split: str) -> list[str]:
        if split not in ("train", "test"):
            raise ValueError(f"exact world split {split!r}: use 'train' or 'test'")
        conds = self.train_conditions if split == "train" else self.test_conditions
        return [self.caption(c) for c in conds]

    # ---------------------------------------------------------------------------------------------------------
    # Closed-form density, fidelity, reward, utilities (numpy, vectorised over samples)
    # ---------------------------------------------------------------------------------------------------------
    def _sq_dist(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64)[:, None, :] - self.means[None]) ** 2).sum(-1)  # (N, M)

    def log_density(self, x: np.ndarray, weights: np.ndarray, d2: np.ndarray | None = None) -> np.ndarray:
        """log p(x | c) for samples x (N, 2) with per-sample mixture weights (N, M) (or one (M,) row).
        ``d2``: the squared distances of x to the modes, when already known."""
        s2 = self.cfg.sigma ** 2
        w = np.broadcast_to(weights, (len(x), self.cfg.n_modes))
        logc = -(self._sq_dist(x) if d2 is None else d2) / (2 * s2) - math.log(2 * math.pi * s2)
        with np.errstate(divide="ignore"):
            lw = np.log(w)
        z = lw + logc
        top = z.max(1, keepdims=True)
        return (top + np.log(np.exp(z - top).sum(1, keepdims=True)))[:, 0]

    def fidelity(self, x: np.ndarray, weights: np.ndarray, d2: np.ndarray | None = None) -> np.ndarray:
        """fid(x, c) = sum over the condition's modes of exp(-|x - mu_m|^2 / (2 s^2))."""
        s = self.cfg.fidelity_width * self.cfg.sigma
        w = np.broadcast_to(weights, (len(x), self.cfg.n_modes))
        return (np.exp(-(self._sq_dist(x) if d2 is None else d2) / (2 * s * s)) * (w > 0)).sum(1)

    def reward(self, x: np.ndarray, weights: np.ndarray, d2: np.ndarray | None = None) -> np.ndarray:
        """The panel's mean utility R(x, c) = abar fid(x, c) + w . x (closed form)."""
        return self.abar * self.fidelity(x, weights, d2) + np.asarray(x, dtype=np.float64) @ self.w

    def utility(self, x: np.ndarray, weights: np.ndarray, rater: np.ndarray) -> np.ndarray:
        """u_j(x, c) for per-sample raters j (N,)."""
        p = self.panel
        x = np.asarray(x, dtype=np.float64)
        return p.a[rater] * self.fidelity(x, weights) + p.b[rater] * (x * p.v[rater]).sum(1)

    def far_from_modes(self, x: np.ndarray) -> np.ndarray:
        """1.0 where x is farther than ``far`` sigma from EVERY mode centre (an off-manifold sample)."""
        return (np.sqrt(self._sq_dist(x).min(1)) > self.cfg.far * self.cfg.sigma).astype(np.float64)

    def on_prompt(self, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """1.0 where x is within ``far`` sigma of one of the condition's own modes."""
        w = np.broadcast_to(weights, (len(x), self.cfg.n_modes))
        d = np.where(w > 0, np.sqrt(self._sq_dist(x)), np.inf).min(1)
        return (d <= self.cfg.far * self.cfg.sigma).astype(np.float64)

    def choose(self, x0: np.ndarray, x1: np.ndarray, weights: np.ndarray, rater: np.ndarray,
               u: np.ndarray) -> np.ndarray:
        """label_0 per pair: 1 (x0 preferred), 0 (x1), 0.5 (tie), from Bradley-Terry with uniforms ``u``."""
        d = self.utility(x0, weights, rater) - self.utility(x1, weights, rater)
        p0 = 1.0 / (1.0 + np.exp(-d / self.panel.temp[rater]))
        return np.where(np.abs(d) < self.cfg.tie, 0.5, (u < p0).astype(np.float64))

    # ---------------------------------------------------------------------------------------------------------
    # Sampling the true and the tilted distributions
    # ---------------------------------------------------------------------------------------------------------
    def sample_true(self, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One exact sample of p(x | c) per row of ``weights`` (N, M)."""
        u = rng.random(len(weights))
        comp = (np.cumsum(weights, 1) < u[:, None]).sum(1).clip(max=self.cfg.n_modes - 1)
        return self.means[comp] + self.cfg.sigma * rng.standard_normal((len(weights), 2))

    @cached_property
    def grid(self) -> tuple[np.ndarray, float]:
        """Cell centres (G*G, 2) of the quadrature grid and the cell side."""
        half = self.cfg.radius + 8 * self.cfg.sigma
        n = 512
        side = 2 * half / n
        c = -half + side * (np.arange(n) + 0.5)
        xx, yy = np.meshgrid(c, c, indexing="xy")
        return np.stack([xx.ravel(), yy.ravel()], 1), side

    @cached_property
    def _grid_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per grid cell and mode: log N(x; mu_m, sigma^2 I) and the fidelity bump; per cell: w . x."""
        pts = self.grid[0]
        d2 = self._sq_dist(pts)
        s2, f = self.cfg.sigma ** 2, (self.cfg.fidelity_width * self.cfg.sigma) ** 2
        return -d2 / (2 * s2) - math.log(2 * math.pi * s2), np.exp(-d2 / (2 * f)), pts @ self.w

    def _grid_log_density_and_reward(self, caption: str) -> tuple[np.ndarray, np.ndarray]:
        """log p(x | c) and R(x, c) on the grid (the same formulas as log_density and reward, column-selected)."""
        logc, bump, lin = self._grid_terms
        modes = list(self.modes_of(caption))
        if not modes:
            raise ValueError("the tilted target needs a condition with modes, not the empty caption")
        z = logc[:, modes]
        top = z.max(1, keepdims=True)
        logp = (top + np.log(np.exp(z - top).sum(1, keepdims=True)))[:, 0] - math.log(len(modes))
        return logp, self.abar * bump[:, modes].sum(1) + lin

    def tilted_cells(self, caption: str, lam: float | None = None) -> np.ndarray:
        """Probability of every grid cell under p_lam(. | c) (lam = 0: the true distribution itself)."""
        lam = self.cfg.tilt if lam is None else lam
        logp, reward = self._grid_log_density_and_reward(caption)
        logp = logp + lam * reward
        p = np.exp(logp - logp.max())
        return p / p.sum()

    def sample_tilted(self, caption: str, n: int, rng: np.random.Generator, lam: float | None = None) -> np.ndarray:
        """n exact samples (up to the grid cell) of p_lam(. | c)."""
        pts, side = self.grid
        cell = rng.choice(len(pts), size=n, p=self.tilted_cells(caption, lam))
        return pts[cell] + side * (rng.random((n, 2)) - 0.5)

    def expected_reward(self, caption: str, lam: float = 0.0) -> float:
        """E[R(x, c)] under p_lam(. | c) by quadrature (lam = 0: the true data)."""
        return float(self.tilted_cells(caption, lam) @ self._grid_log_density_and_reward(caption)[1])


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between two samples (V-statistics; >= 0)."""
    def mean_dist(p: np.ndarray, q: np.ndarray) -> float:
        return float(torch.cdist(torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64))
                     .mean())

    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)
