"""Statistics: hand-computed win rates and medians, CI coverage, key matching, lower-is-better metrics."""
from __future__ import annotations

import numpy as np
import pytest

from evaluators.stats import bootstrap_ci, paired_win_rate, summarize, win_rate


def _table(values, prompt_ids=None, image_index=None, seeds=None):
    n = len(values)
    return {"prompt_id": np.arange(n) if prompt_ids is None else np.asarray(prompt_ids),
            "image_index": np.zeros(n, int) if image_index is None else np.asarray(image_index),
            "seed": np.arange(n) if seeds is None else np.asarray(seeds), "score": np.asarray(values, float)}


def test_win_rate_with_ties_by_hand():
    # win, loss, tie, win -> (1 + 0 + 0.5 + 1) / 4 = 62.5%
    w = win_rate([2.0, 1.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert w.rate == pytest.approx(0.625)
    assert (w.wins, w.ties, w.losses, w.n) == (2, 1, 1, 4)
    assert w.ci[0] <= w.rate <= w.ci[1]
    assert w.as_percent()[0] == pytest.approx(62.5)


def test_tie_tolerance():
    w = win_rate([1.0005, 2.0], [1.0, 1.0], tie_tol=1e-3)
    assert (w.wins, w.ties) == (1, 1) and w.rate == pytest.approx(0.75)
    assert win_rate([1.0005], [1.0]).rate == 1.0  # default: only exact ties


def test_lower_is_better():
    w = win_rate([0.1, 0.5, 0.3], [0.2, 0.4, 0.3], higher_is_better=False)
    assert (w.wins, w.losses, w.ties) == (1, 1, 1) and w.rate == pytest.approx(0.5)
    a, b = _table([0.1, 0.2, 0.3]), _table([0.2, 0.3, 0.4])
    assert paired_win_rate(a, b, "score", higher_is_better=False).rate == 1.0
    assert paired_win_rate(a, b, "score", higher_is_better=True).rate == 0.0


def test_median_by_hand():
    s = summarize([5.0, 1.0, 3.0, 2.0], n_boot=200)
    assert s["median"] == 2.5 and s["mean"] == 2.75 and s["n"] == 4
    assert summarize([7.0, 1.0, 3.0], n_boot=200)["median"] == 3.0


def test_clustered_median_matches_replicated_array():
    """The weighted-median shortcut equals np.median of the explicitly resampled images."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    groups = np.repeat(np.arange(10), 3)
    lo, hi = bootstrap_ci(x, "median", n_boot=300, seed=3, groups=groups)
    lo2, hi2 = bootstrap_ci(x, np.median, n_boot=300, seed=3, groups=groups)
    assert (lo, hi) == pytest.approx((lo2, hi2))


def test_bootstrap_deterministic_with_seed():
    x = np.arange(50.0)
    assert bootstrap_ci(x, "mean", seed=7) == bootstrap_ci(x, "mean", seed=7)
    assert bootstrap_ci(x, "mean", seed=7) != bootstrap_ci(x, "mean", seed=8)


def test_mean_ci_coverage_in_simulation():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        lo, hi = bootstrap_ci(rng.normal(3.0, 2.0, size=100), "mean", n_boot=500, seed=rep)
        hits += lo <= 3.0 <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_paired_matching_reorders_by_key():
    a = _table([1.0, 2.0, 3.0])
    b = {k: v[::-1] for k, v in _table([0.5, 2.5, 2.0]).items()}  # same keys in reversed row order: ids 2, 1, 0
    # key 0: 1.0 vs 0.5 win; key 1: 2.0 vs 2.5 loss; key 2: 3.0 vs 2.0 win
    assert paired_win_rate(a, b, "score").rate == pytest.approx(2 / 3)


def test_mismatched_keys_error():
    a = _table([1.0, 2.0, 3.0])
    b = _table([1.0, 2.0, 3.0], seeds=[0, 1, 99])
    with pytest.raises(ValueError, match="do not share the same"):
        paired_win_rate(a, b, "score")
    with pytest.raises(ValueError, match="do not share the same"):
        paired_win_rate(a, _table([1.0, 2.0]), "score")


def test_different_prompt_set_hash_error():
    a = _table([1.0, 2.0])
    with pytest.raises(ValueError, match="different prompt sets"):
        paired_win_rate(a, a, "score", hash_a="abc", hash_b="abd")


def test_prompt_text_mismatch_error():
    a, b = _table([1.0, 2.0]), _table([1.0, 2.0])
    a["prompt"], b["prompt"] = np.array(["x", "y"]), np.array(["x", "z"])
    with pytest.raises(ValueError, match="different prompt texts"):
        paired_win_rate(a, b, "score")


def test_cluster_bootstrap_is_wider_with_correlated_images():
    """8 images per prompt with identical outcomes: resampling prompts gives a wider CI than resampling images."""
    rng = np.random.default_rng(0)
    per_prompt = rng.normal(0.3, 1.0, size=20)
    a = np.repeat(per_prompt, 8)
    b = np.zeros_like(a)
    clustered = win_rate(a, b, clusters=np.repeat(np.arange(20), 8), seed=0)
    naive = win_rate(a, b, seed=0)
    assert clustered.rate == naive.rate
    assert clustered.ci[1] - clustered.ci[0] > 1.5 * (naive.ci[1] - naive.ci[0])
    assert clustered.n_clusters == 20


def test_non_finite_rejected():
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, float("nan")])
