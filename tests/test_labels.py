"""Smoothed preference labels (methods.labels) for hand-picked reward scores, ties, and bounds from the data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from methods.labels import SMPO_HI, SMPO_LO, normalize_scores, reward_winner, score_bounds, smoothed_preference


def test_hand_picked_scores():
    """lo = 0, hi = 1 (n = s): s_w = ln 3, s_l = 0 gives p = 3 / (3 + 1) = 0.75. With the authors' bounds, scores one
    full range apart (n_w - n_l = 1) give p = e / (e + 1) = sigmoid(1)."""
    p = smoothed_preference(np.array([math.log(3.0)]), np.array([0.0]), lo=0.0, hi=1.0)
    assert p.item() == pytest.approx(0.75, abs=1e-12)
    p = smoothed_preference(np.array([SMPO_HI]), np.array([SMPO_LO]))
    assert p.item() == pytest.approx(math.e / (math.e + 1), abs=1e-12)
    assert normalize_scores(torch.tensor([SMPO_LO, SMPO_HI])).tolist() == pytest.approx([0.0, 1.0])


def test_authors_formula_and_probability_of_first():
    """p = exp(n_w) / (exp(n_w) + exp(n_l)) as in JaydenLyh/SmPO train.py; smoothed_preference(a, b) is the probability
    that a wins, so it is 1 - p when the reward model prefers b."""
    g = torch.Generator().manual_seed(0)
    s0, s1 = (0.15 + 0.1 * torch.rand(50, generator=g, dtype=torch.float64) for _ in range(2))
    first, p = reward_winner(s0, s1)
    sw, sl = torch.where(first, s0, s1), torch.where(first, s1, s0)
    nw, nl = (sw - SMPO_LO) / (SMPO_HI - SMPO_LO), (sl - SMPO_LO) / (SMPO_HI - SMPO_LO)
    assert torch.allclose(p, torch.exp(nw) / (torch.exp(nw) + torch.exp(nl)), atol=1e-12)
    assert (p >= 0.5).all() and p.dtype == torch.float64
    q = smoothed_preference(s0, s1)
    assert torch.allclose(q, torch.where(first, p, 1 - p), atol=1e-12)


def test_tie_picks_image_1_with_half():
    """ps_label_0 = score_0 > score_1: an exact tie makes image 1 the winner, with p = 0.5."""
    first, p = reward_winner(torch.tensor([0.2, 0.25]), torch.tensor([0.2, 0.2]))
    assert first.tolist() == [False, True] and p[0].item() == 0.5
    assert smoothed_preference(torch.tensor([0.2]), torch.tensor([0.2])).item() == 0.5


def test_numpy_in_numpy_out():
    p = smoothed_preference(np.array([0.2, 0.15]), np.array([0.15, 0.2]))
    assert isinstance(p, np.ndarray) and p[0] == pytest.approx(1 - p[1])


def test_bounds_from_data():
    scores = torch.tensor([[0.21, 0.18], [0.30, 0.12], [0.19, 0.25]])
    lo, hi = score_bounds(scores)
    assert (lo, hi) == (pytest.approx(0.12), pytest.approx(0.30))
    n = normalize_scores(scores, lo, hi)
    assert n.min().item() == pytest.approx(0.0) and n.max().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="hi > lo"):
        smoothed_preference(torch.tensor([0.2]), torch.tensor([0.1]), lo=0.3, hi=0.3)
    with pytest.raises(ValueError, match="non-finite"):
        score_bounds(torch.tensor([0.1, float("nan")]))
