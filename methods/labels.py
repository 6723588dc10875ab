"""Smoothed preference labels from reward-model scores (SmPO, DESIGN.md section 5.5; implementation_notes.md 5).

The authors (JaydenLyh/SmPO `` preprocessing.py`` and ``train.py``) score both images with PickScore as a raw
cosine (no logit scale), min-max normalise with fixed bounds, n = (s - lo) / (hi - lo), make the image the reward
model prefers the winner (``ps_label_0 = score_0 > score_1``, so an exact tie picks image 1) and use

    p = exp(n_w) / (exp(n_w) + exp(n_l))  = sigmoid(n_w - n_l)   (>= 0.5)

:func:`reward_winner` is that literal form. :func:`smoothed_preference` gives the probability that its FIRST argument
is preferred, for pairs kept in their human order (the data pipeline stores the human winner first): it is below 0.5
where the reward model disagrees. SmPO's margin is symmetric, z(a, b, p) = z(b, a, 1 - p), so training on
(human order, P(first)) is exactly training on (reward-model order, p_w); ties give p = 0.5 either way.

Pure functions: torch tensors in, tensors out (numpy arrays in, numpy arrays out), float64 kept as float64.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: the SmPO authors' PickScore bounds (their origin is undocumented; see implementation_notes.md section 11)
SMPO_LO = 0.11543526500463486
SMPO_HI = 0.28201571106910706


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))


def _like(out: Tensor, x: Any) -> Any:
    return out.numpy() if isinstance(x, np.ndarray) else out


def normalize_scores(s: Any, lo: float = SMPO_LO, hi: float = SMPO_HI) -> Any:
    """n = (s - lo) / (hi - lo)."""
    if not hi > lo:
        raise ValueError(f"reward bounds need hi > lo, got lo={lo}, hi={hi}; compute them with score_bounds(scores)")
    return _like((_tensor(s) - lo) / (hi - lo), s)


def smoothed_preference(s_a: Any, s_b: Any, lo: float = SMPO_LO, hi: float = SMPO_HI) -> Any:
    """P(a preferred over b) = exp(n_a) / (exp(n_a) + exp(n_b)) for raw scores of two images of each pair."""
    n_a, n_b = _tensor(normalize_scores(s_a, lo, hi)), _tensor(normalize_scores(s_b, lo, hi))
    return _like(torch.sigmoid(n_a - n_b), s_a)


def reward_winner(s_0: Any, s_1: Any, lo: float = SMPO_LO, hi: float = SMPO_HI) -> tuple[Any, Any]:
    """The authors' literal form: (image 0 wins, p of the winner). Image 0 wins iff s_0 > s_1 (an exact tie picks
    image 1, p = 0.5); p = exp(n_w) / (exp(n_w) + exp(n_l)) >= 0.5."""
    a, b = _tensor(s_0), _tensor(s_1)
    first = a > b
    p = _tensor(smoothed_preference(torch.where(first, a, b), torch.where(first, b, a), lo, hi))
    return _like(first, s_0), _like(p, s_0)


def score_bounds(scores: Any) -> tuple[float, float]:
    """(lo, hi) = (min, max) over all scores (both images of every pair): the "computed from the data" option."""
    s = _tensor(scores).reshape(-1)
    if s.numel() == 0:
        raise ValueError("score_bounds needs at least one score")
    if not torch.isfinite(s).all():
        raise ValueError("score_bounds got non-finite scores; drop or rescore those pairs first")
    return float(s.min()), float(s.max())
