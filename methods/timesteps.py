"""Timestep strategies: how t is drawn for each sample and how implicit-reward margins are balanced across t.

The trainer owns the random draw: for every sample slot it derives a generator and passes a uniform ``u`` in [0, 1)
to :meth:`TimestepStrategy.sample`. ``balance(z, t)`` is the hook DPO-family methods call on their margins.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench_common import Registry

TIMESTEP_STRATEGIES = Registry("timestep strategy")


class TimestepStrategy:
    """Uniform t ~ U{low..high-1} (default U{0..T-1}, the papers') and no balancing.

    ``low``/``high`` restrict t to a range: a diagnostic (e.g. which timesteps a method's gain or harm comes from),
    not any paper's setting.
    """

    def __init__(self, num_train_timesteps: int = 1000, low: int = 0, high: int | None = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"uniform timesteps take only low and high, got {sorted(kwargs)}")
        self.T = num_train_timesteps
        self.low, self.high = int(low), int(high if high is not None else num_train_timesteps)
        if not 0 <= self.low < self.high <= self.T:
            raise ValueError(f"uniform timesteps need 0 <= low < high <= {self.T}, got low={low}, high={high}")

    def sample(self, u: Tensor) -> Tensor:
        return (self.low + u * (self.high - self.low)).long().clamp_(self.low, self.high - 1)

    def balance(self, z: Tensor, t: Tensor) -> Tensor:
        return z

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


TIMESTEP_STRATEGIES.register("uniform", TimestepStrategy)


class TimestepAware(TimestepStrategy):
    """Timestep-aware training ("Rethinking DPO in Diffusion Models", Kang, Lim, Baek, Shim; arXiv 2505.18736).

    Balances the implicit-reward scale across timesteps. It keeps, per timestep bucket b (``buckets`` equal ranges of
    t), a running scale s_b = EMA of mean |z| over the margins it has seen (``decay``; the first observation of a
    bucket sets it), and the relative scale r_b = s_b / mean_b'(s_b') over observed buckets (1 for unobserved ones),
    clipped to [1/clip, clip].

    - mode "weight" (default): ``balance`` returns z / r_b(t), a constant (detached) per-sample factor; ``sample`` is
      uniform.
    - mode "sample": ``balance`` returns z unchanged; ``sample`` draws t with P(bucket b) proportional to
      |bucket b| / r_b (uniform within the bucket), by inverse CDF on the trainer's uniform u.

    Both favour timesteps whose margins are small, so that no range of t dominates the gradient. Before any
    observation it is the identity (uniform t, z unchanged). ``balance`` scales with the statistics as they were
    BEFORE the call, then adds the call's |z| (so the first call is the identity too).

    UNCERTAIN: the paper's weighting w(t) could not be read (DESIGN.md 5.6); secondary summaries [unverified] say
    that reward signals are weak at high-noise and strong at low-noise timesteps and that an adaptive weight balances
    them. The statistic (mean |z|), bucket count, EMA decay, clipping and the 1/r sampling weight are our choices.
    Running statistics are PER PROCESS (each process sees only its own margins; no all-reduce), so multi-process runs
    see slightly different factors per process; they are deterministic given the data and seeds, and
    ``state_dict``/``load_state_dict`` carry them across a resume (the trainer saves process 0's).
    """

    MODES = ("weight", "sample")

    def __init__(self, num_train_timesteps: int = 1000, mode: str = "weight", buckets: int = 10, decay: float = 0.99,
                 clip: float = 4.0):
        if mode not in self.MODES:
            raise ValueError(f"unknown timestep-aware mode {mode!r}; use one of {self.MODES}")
        if not 1 <= buckets <= num_train_timesteps:
            raise ValueError(f"buckets must be in [1, {num_train_timesteps}], got {buckets}")
        if not 0.0 <= decay < 1.0 or clip < 1.0:
            raise ValueError(f"need 0 <= decay < 1 and clip >= 1, got decay={decay}, clip={clip}")
        super().__init__(num_train_timesteps)
        self.mode, self.n, self.decay, self.clip = mode, int(buckets), float(decay), float(clip)
        self.edges = torch.tensor([b * self.T // self.n for b in range(self.n + 1)], dtype=torch.long)
        self.scale = torch.zeros(self.n, dtype=torch.float64)
        self.count = torch.zeros(self.n, dtype=torch.long)

    def bucket(self, t: Tensor) -> Tensor:
        return torch.bucketize(t.detach().long().cpu(), self.edges[1:], right=True).clamp_(0, self.n - 1)

    def relative_scale(self) -> Tensor:
        """r_b: (buckets,) float64, 1 where unobserved."""
        seen = self.count > 0
        if not bool(seen.any()):
            return torch.ones(self.n, dtype=torch.float64)
        mean = self.scale[seen].mean()
        if float(mean) <= 0.0:
            return torch.ones(self.n, dtype=torch.float64)
        r = torch.where(seen, self.scale / mean, torch.ones_like(self.scale))
        return r.clamp(1.0 / self.clip, self.clip)

    def bucket_probs(self) -> Tensor:
        w = (self.edges[1:] - self.edges[:-1]).double() / self.relative_scale()
        return w / w.sum()

    def sample(self, u: Tensor) -> Tensor:
        if self.mode != "sample" or not bool((self.count > 0).any()):
            return super().sample(u)
        u64 = u.detach().double().cpu()
        probs = self.bucket_probs()
        cdf = probs.cumsum(0)
        b = torch.searchsorted(cdf, u64, right=True).clamp_(0, self.n - 1)
        lower = cdf[b] - probs[b]
        within = ((u64 - lower) / probs[b]).clamp(0.0, 1.0 - 1e-12)
        size = self.edges[b + 1] - self.edges[b]
        t = self.edges[b] + (within * size.double()).long()
        return torch.minimum(t, self.edges[b + 1] - 1).to(u.device)

    def balance(self, z: Tensor, t: Tensor) -> Tensor:
        b = self.bucket(t)
        out = z
        if self.mode == "weight" and bool((self.count > 0).any()):
            out = z / self.relative_scale()[b].to(device=z.device, dtype=z.dtype)
        self._observe(z.detach().abs().double().cpu(), b)
        return out

    def _observe(self, absz: Tensor, b: Tensor) -> None:
        for k in b.unique().tolist():
            m = absz[b == k].mean()
            if self.count[k] == 0:
                self.scale[k] = m
            else:
                self.scale[k] = self.decay * self.scale[k] + (1.0 - self.decay) * m
            self.count[k] += int((b == k).sum())

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale.tolist(), "count": self.count.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("scale", [])) != self.n:
            raise ValueError(f"timestep-aware state has {len(state.get('scale', []))} buckets, this run {self.n}; "
                             "resume with the same train.timesteps_args")
        self.scale = torch.tensor(state["scale"], dtype=torch.float64)
        self.count = torch.tensor(state["count"], dtype=torch.long)


TIMESTEP_STRATEGIES.register("aware", TimestepAware)
