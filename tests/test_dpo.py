"""Diffusion-DPO against hand-derived values, through the method's own loss() with a scripted context."""
from __future__ import annotations

import math

import torch

from methods import Cond, PairBatch, get_method


class ScriptedContext:
    """Policy/reference return eps_target + a per-image offset c, so per-sample error = c^2 exactly."""

    def __init__(self, policy_offsets, ref_offsets):
        self.alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
        self.num_train_timesteps, self.device = 1000, torch.device("cpu")
        self.pol, self.ref, self.eps = torch.tensor(policy_offsets), torch.tensor(ref_offsets), None

    def timesteps(self, slots, stream="t"):
        return torch.full((len(slots),), 500)

    def randn(self, slots, shape, stream):
        self.eps = torch.randn(len(slots), *shape, generator=torch.Generator().manual_seed(0))
        return self.eps

    def noise(self, slots, shape, stream="noise"):
        return self.randn(slots, shape, stream)

    def _pred(self, offsets):
        eps2 = torch.cat([self.eps, self.eps])
        return eps2 + offsets.view(-1, 1, 1, 1)

    def policy(self, x, t, cond):
        return self._pred(self.pol)

    def reference(self, x, t, cond):
        return self._pred(self.ref)

    def balance(self, z, t):
        return z


def _batch(n=2):
    return PairBatch(torch.zeros(n, 4, 2, 2), torch.zeros(n, 4, 2, 2), Cond(torch.zeros(n, 3, 8)), torch.ones(n),
                     torch.arange(n))


def test_hand_derived_loss():
    """Pair 1: e_w = 0.1^2 = 0.01, e_l = 0.3^2 = 0.09, reference errors 0.04 and 0.04; beta = 10:
    d_theta = -0.08, d_ref = 0, z = -0.5 * 10 * (-0.08) = 0.4.  Pair 2: e_w = 0.09, e_l = 0.01, ref 0.04/0.04:
    z = -0.4.  loss = mean(-logsigmoid(0.4), -logsigmoid(-0.4)) = (log(1+e^-0.4) + log(1+e^0.4)) / 2."""
    dpo = get_method("dpo")(get_method("dpo").Config(beta=10.0))
    ctx = ScriptedContext([0.1, 0.3, 0.3, 0.1], [0.2, 0.2, 0.2, 0.2])  # [w1, w2, l1, l2]
    loss, m = dpo.loss(_batch(), ctx)
    want = (math.log1p(math.exp(-0.4)) + math.log1p(math.exp(0.4))) / 2
    assert abs(loss.item() - want) < 1e-6
    assert torch.allclose(m["margin"], torch.tensor([0.4, -0.4]), atol=1e-6)
    assert m["acc"].tolist() == [1.0, 0.0]


def test_policy_equal_reference_gives_log2():
    dpo = get_method("dpo")()
    ctx = ScriptedContext([0.3, 0.5, 0.7, 0.2], [0.3, 0.5, 0.7, 0.2])
    loss, _ = dpo.loss(_batch(), ctx)
    assert abs(loss.item() - math.log(2)) < 1e-7


def test_mean_over_elements_not_sum():
    """A 4x larger latent with the same per-element error gives the same loss: e is a per-element MEAN."""
    dpo = get_method("dpo")(get_method("dpo").Config(beta=10.0))
    small = dpo.loss(_batch(), ScriptedContext([0.1, 0.3, 0.3, 0.1], [0.2] * 4))[0]
    big = PairBatch(torch.zeros(2, 4, 4, 4), torch.zeros(2, 4, 4, 4), Cond(torch.zeros(2, 3, 8)), torch.ones(2),
                    torch.arange(2))
    assert abs(dpo.loss(big, ScriptedContext([0.1, 0.3, 0.3, 0.1], [0.2] * 4))[0].item() - small.item()) < 1e-6  # a sum would differ 4x
