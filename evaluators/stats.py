"""Statistics for evaluation results (DESIGN.md section 7): means and medians with percentile-bootstrap confidence
intervals, and paired win rates with a prompt-clustered bootstrap. numpy only; every random draw takes a ``seed``.

Why the win-rate bootstrap resamples PROMPTS, not images: the images of one prompt share the prompt's difficulty
(a prompt the base model renders badly is one most methods improve on), so their outcomes are correlated.
Resampling images as if independent understates the variance and gives intervals that are too narrow whenever a
run has more than one image per prompt. Resampling whole prompts (a cluster bootstrap) keeps that correlation, and
with one image per prompt it is the ordinary bootstrap. ``summarize`` takes the same ``groups`` option.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

_CHUNK = 256  # bootstrap replicates drawn at once (bounds memory: _CHUNK x n values)


def _as_values(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("no values to summarise (empty input)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{int((~np.isfinite(arr)).sum())} of {arr.size} values are NaN or infinite; "
                         "drop or fix them before computing statistics")
    return arr


def _percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _weighted_medians(sorted_values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise median of ``sorted_values`` repeated ``weights[r, i]`` times (exactly ``np.median`` of that array)."""
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    lo_pos, hi_pos = (total - 1) // 2, total // 2  # 0-based positions of the two middle elements
    lo_idx = (cum < (lo_pos + 1)[:, None]).sum(axis=1)
    hi_idx = (cum < (hi_pos + 1)[:, None]).sum(axis=1)
    return (sorted_values[lo_idx] + sorted_values[hi_idx]) / 2.0


def bootstrap_ci(values: Any, stat: str | Callable[[np.ndarray], float] = "mean", n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95, groups: Any = None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` ("mean", "median" or a callable on a 1-d array).

    With ``groups`` (one label per value, e.g. the prompt id) whole groups are resampled (cluster bootstrap);
    "mean" and "median" then stay exact statistics of the resampled images (weighted by how often each group
    was drawn). A callable ``stat`` gets the concatenated resampled values.
    """
    x = _as_values(values)
    rng = np.random.default_rng(seed)
    if groups is None:
        labels, inverse = np.arange(x.size), np.arange(x.size)
    else:
        g = np.asarray(groups).reshape(-1)
        if g.size != x.size:
            raise ValueError(f"groups has {g.size} labels for {x.size} values")
        labels, inverse = np.unique(g, return_inverse=True)
    k = labels.size
    reps = []
    order = np.argsort(x, kind="stable")
    for start in range(0, n_boot, _CHUNK):
        m = min(_CHUNK, n_boot - start)
        draws = rng.integers(0, k, size=(m, k))
        counts = np.bincount((draws + k * np.arange(m)[:, None]).reshape(-1), minlength=m * k).reshape(m, k)
        weights = counts[:, inverse]  # how often each value is in each replicate
        if stat == "mean":
            reps.append(weights @ x / weights.sum(axis=1))
        elif stat == "median":
            reps.append(_weighted_medians(x[order], weights[:, order]))
        elif callable(stat):
            reps.append(np.array([float(stat(np.repeat(x, w))) for w in weights]))
        else:
            raise ValueError(f"unknown statistic {stat!r}: use 'mean', 'median' or a function of an array")
    return _percentile_interval(np.concatenate(reps), level)


def summarize(values: Any, groups: Any = None, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """{mean, mean_ci, median, median_ci, n} with percentile-bootstrap CIs (clustered by ``groups`` if given)."""
    x = _as_values(values)
    return {"mean": float(x.mean()), "mean_ci": list(bootstrap_ci(x, "mean", n_boot, seed, level, groups)),
            "median": float(np.median(x)), "median_ci": list(bootstrap_ci(x, "median", n_boot, seed, level, groups)),
            "n": int(x.size)}


@dataclass(frozen=True)
class WinRate:
    """Win rate of A over B in [0, 1] (ties count 0.5) with its bootstrap interval."""

    rate: float
    ci: tuple[float, float]
    wins: int
    ties: int
    losses: int
    n: int            # matched pairs (images)
    n_clusters: int   # prompts resampled by the bootstrap

    def as_percent(self) -> tuple[float, float, float]:
        return 100.0 * self.rate, 100.0 * self.ci[0], 100.0 * self.ci[1]


def win_rate(a: Any, b: Any, clusters: Any = None, higher_is_better: bool = True, tie_tol: float = 0.0,
             n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> WinRate:
    """Win rate of aligned score arrays ``a`` over ``b`` (element i of each is the same prompt and seed).

    A pair is a tie when ``|a - b| <= tie_tol`` and counts 0.5. ``clusters`` (the prompt id of each pair) makes the
    bootstrap resample prompts; without it every pair is its own cluster.
    """
    xa, xb = _as_values(a), _as_values(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired scores differ in length: {xa.size} vs {xb.size}")
    diff = (xa - xb) if higher_is_better else (xb - xa)
    tie = np.abs(diff) <= tie_tol
    outcome = np.where(tie, 0.5, (diff > 0).astype(np.float64))
    c = np.arange(outcome.size) if clusters is None else np.asarray(clusters).reshape(-1)
    if c.size != outcome.size:
        raise ValueError(f"clusters has {c.size} labels for {outcome.size} pairs")
    _, inverse = np.unique(c, return_inverse=True)
    sums = np.bincount(inverse, weights=outcome)
    sizes = np.bincount(inverse).astype(np.float64)
    k = sums.size
    rng = np.random.default_rng(seed)
    reps = []
    for start in range(0, n_boot, _CHUNK):
        m = min(_CHUNK, n_boot - start)
        draws = rng.integers(0, k, size=(m, k))
        reps.append(sums[draws].sum(axis=1) / sizes[draws].sum(axis=1))
    wins = int(((diff > 0) & ~tie).sum())
    ties = int(tie.sum())
    return WinRate(rate=float(outcome.mean()), ci=_percentile_interval(np.concatenate(reps), level), wins=wins,
                   ties=ties, losses=int(outcome.size - wins - ties), n=int(outcome.size), n_clusters=int(k))


def _keys(table: Mapping[str, Any], names: Sequence[str]) -> list[tuple]:
    cols = [np.asarray(table[n]).reshape(-1).tolist() for n in names]
    return list(zip(*cols))


def paired_win_rate(a: Mapping[str, Any], b: Mapping[str, Any], metric: str, higher_is_better: bool = True,
                    tie_tol: float = 0.0, keys: Sequence[str] = ("prompt_id", "image_index", "seed"),
                    hash_a: str | None = None, hash_b: str | None = None, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> WinRate:
    """Win rate of run A over run B on ``metric``, pairing images by ``keys`` (prompt id, image index, seed).

    ``a`` and ``b`` are column mappings (a pandas DataFrame or a dict of arrays). Key columns missing from both are
    skipped; the first key is the bootstrap cluster (the prompt). Raises if the prompt-set hashes differ, if a
    key is duplicated, or if the two runs do not hold exactly the same keys (different prompts or seeds are not a
    paired comparison). If both have a ``prompt`` column, the prompt texts of matched keys must agree.
    """
    if hash_a is not None and hash_b is not None and hash_a != hash_b:
        raise ValueError(f"the two runs were evaluated on different prompt sets (hash {hash_a} vs {hash_b}); "
                         "a win rate needs the same prompts and seeds: evaluate both on the same prompt set")
    names = [k for k in keys if k in a or k in b]
    for k in names:
        if k not in a or k not in b:
            raise ValueError(f"key column {k!r} is in only one of the two score tables")
    if not names:
        raise ValueError(f"neither score table has any of the key columns {list(keys)}")
    for side, t in (("A", a), ("B", b)):
        if metric not in t:
            raise ValueError(f"run {side} has no scores for metric {metric!r}")
    ka, kb = _keys(a, names), _keys(b, names)
    index_b = {k: i for i, k in enumerate(kb)}
    for side, ks, idx in (("A", ka, None), ("B", kb, index_b)):
        if len(set(ks) if idx is None else idx) != len(ks):
            raise ValueError(f"run {side} has duplicated ({', '.join(names)}) keys")
    only_a = [k for k in ka if k not in index_b]
    only_b = sorted(set(kb) - set(ka))
    if only_a or only_b:
        ex = f"e.g. {only_a[0]} only in A" if only_a else f"e.g. {only_b[0]} only in B"
        raise ValueError(f"the two runs do not share the same ({', '.join(names)}) keys: {len(only_a)} only in A, "
                         f"{len(only_b)} only in B ({ex}); evaluate both with the same prompt set, seed and "
                         "images per prompt")
    order = np.array([index_b[k] for k in ka], dtype=np.int64)
    if "prompt" in a and "prompt" in b:
        pa = np.asarray(a["prompt"]).reshape(-1)
        pb = np.asarray(b["prompt"]).reshape(-1)[order]
        bad = np.flatnonzero(pa != pb)
        if bad.size:
            raise ValueError(f"{bad.size} matched images have different prompt texts (e.g. {pa[bad[0]]!r} vs "
                             f"{pb[bad[0]]!r}): the prompt ids do not refer to the same prompts")
    va = np.asarray(a[metric], dtype=np.float64).reshape(-1)
    vb = np.asarray(b[metric], dtype=np.float64).reshape(-1)[order]
    clusters = np.asarray(a[names[0]]).reshape(-1)
    return win_rate(va, vb, clusters, higher_is_better, tie_tol, n_boot, seed, level)
