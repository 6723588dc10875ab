"""The "Rethinking DPO" add-ons: the stable reference update (methods.reference) and timestep-aware training
(methods.timesteps): arithmetic by hand, identity before observations, rebalancing after, state round trip."""
from __future__ import annotations

import pytest
import torch

from methods.reference import REFERENCE_UPDATES, StableReference
from methods.timesteps import TIMESTEP_STRATEGIES, TimestepAware, TimestepStrategy


# --- stable reference --------------------------------------------------------------------------------------------
def test_stable_update_by_hand():
    """alpha = 0.5, anchor = 0.25, ref = 2, policy = 4, init = 0:
    EMA: 0.5 * 2 + 0.5 * 4 = 3; anchor: 3 + 0.25 * (0 - 3) = 2.25. A second update with policy 4:
    0.5 * 2.25 + 0.5 * 4 = 3.125; 3.125 - 0.25 * 3.125 = 2.34375."""
    upd = REFERENCE_UPDATES.get("stable")(alpha=0.5, every=1, anchor=0.25)
    assert upd.needs_initial_copy is True
    ref, pol, init = [torch.tensor([2.0, -2.0])], [torch.tensor([4.0, 0.0])], [torch.tensor([0.0, 0.0])]
    assert upd.update(1, ref, pol, init) is True
    assert ref[0].tolist() == [2.25, -0.75]  # second entry: 0.5*-2 + 0 = -1; -1 + 0.25 * 1 = -0.75
    upd.update(2, ref, pol, init)
    assert ref[0][0].item() == pytest.approx(2.34375)


def test_stable_every_k_and_extremes():
    upd = StableReference(alpha=1.0, every=3, anchor=0.0)
    ref, pol, init = [torch.zeros(2)], [torch.ones(2)], [torch.zeros(2)]
    assert [upd.update(s, ref, pol, init) for s in (1, 2)] == [False, False] and ref[0].sum() == 0
    assert upd.update(3, ref, pol, init) is True and ref[0].tolist() == [1.0, 1.0]  # alpha 1: copy the policy
    StableReference(alpha=0.3, anchor=1.0).update(1, ref, pol, init)
    assert ref[0].tolist() == [0.0, 0.0]  # anchor 1: back to the initial model


def test_stable_errors():
    with pytest.raises(ValueError, match="alpha and anchor"):
        StableReference(alpha=1.5)
    with pytest.raises(ValueError, match="every"):
        StableReference(every=0)
    with pytest.raises(ValueError, match="initial weights"):
        StableReference().update(1, [torch.zeros(1)], [torch.zeros(1)], None)
    with pytest.raises(ValueError, match="parallel lists"):
        StableReference().update(1, [torch.zeros(1)], [], [torch.zeros(1)])


def test_stable_half_precision_reference():
    ref, pol, init = [torch.zeros(3, dtype=torch.float16)], [torch.ones(3)], [torch.zeros(3, dtype=torch.float16)]
    StableReference(alpha=0.5, anchor=0.0).update(1, ref, pol, init)
    assert ref[0].dtype == torch.float16 and ref[0].tolist() == [0.5] * 3


# --- timestep-aware ----------------------------------------------------------------------------------------------
def test_aware_is_identity_before_observations():
    u = torch.rand(64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for mode in ("weight", "sample"):
        s = TIMESTEP_STRATEGIES.get("aware")(num_train_timesteps=1000, mode=mode)
        assert torch.equal(s.sample(u), TimestepStrategy(1000).sample(u))
        z, t = torch.tensor([1.0, -2.0]), torch.tensor([10, 990])
        assert torch.equal(s.balance(z, t), z)  # the first call scales with no statistics
    with pytest.raises(ValueError, match="unknown timestep-aware mode"):
        TimestepAware(mode="resample")


def test_aware_weight_rebalances():
    """Margins of scale 4 at low t (bucket 0) and 1 at high t (bucket 9): mean scale 2.5, relative scales 1.6 and 0.4,
    so after one observation z / 1.6 and z / 0.4 equalise them; unobserved buckets keep factor 1."""
    s = TimestepAware(1000, mode="weight", buckets=10, decay=0.9, clip=4.0)
    t = torch.tensor([5, 50, 950, 999])
    s.balance(torch.tensor([4.0, -4.0, 1.0, -1.0]), t)
    out = s.balance(torch.tensor([4.0, -4.0, 1.0, 1.0, 3.0]), torch.tensor([5, 50, 950, 999, 500]))
    assert out.tolist() == pytest.approx([2.5, -2.5, 2.5, 2.5, 3.0])
    z = torch.tensor([4.0, 1.0], requires_grad=True)
    s.balance(z, torch.tensor([5, 950])).sum().backward()
    assert z.grad.tolist() == pytest.approx([1 / s.relative_scale()[0].item(), 1 / s.relative_scale()[9].item()])


def test_aware_sample_favours_small_margins_and_is_deterministic():
    """mode sample: P(bucket) proportional to its width / relative scale; inverse CDF on u is deterministic and stays
    inside [0, T)."""
    s = TimestepAware(1000, mode="sample", buckets=2, clip=10.0)
    s.balance(torch.tensor([3.0, 1.0]), torch.tensor([100, 900]))  # scales 3 (t < 500) and 1 (t >= 500)
    probs = s.bucket_probs()
    assert probs.tolist() == pytest.approx([0.25, 0.75])  # widths 500/1.5 and 500/0.5
    u = torch.linspace(0, 1 - 1e-9, 4001, dtype=torch.float64)
    t = s.sample(u)
    assert t.min() >= 0 and t.max() <= 999 and torch.equal(t, s.sample(u))
    assert (t < 500).double().mean().item() == pytest.approx(0.25, abs=1e-3)
    assert t[0].item() == 0 and t[-1].item() == 999
    assert torch.equal(s.balance(torch.tensor([2.0]), torch.tensor([0])), torch.tensor([2.0]))  # no reweighting


def test_aware_state_round_trip():
    a = TimestepAware(1000, mode="sample", buckets=5, decay=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        a.balance(torch.randn(8, generator=g), torch.randint(0, 1000, (8,), generator=g))
    b = TimestepAware(1000, mode="sample", buckets=5, decay=0.5)
    b.load_state_dict(a.state_dict())
    u = torch.rand(100, dtype=torch.float64, generator=g)
    assert torch.equal(a.sample(u), b.sample(u)) and torch.equal(a.scale, b.scale)
    z, t = torch.randn(8, generator=g), torch.randint(0, 1000, (8,), generator=g)
    assert torch.equal(a.balance(z, t), b.balance(z, t)) and a.state_dict() == b.state_dict()
    with pytest.raises(ValueError, match="buckets"):
        TimestepAware(1000, buckets=4).load_state_dict(a.state_dict())


def test_uniform_range():
    """uniform with low/high: t ~ U{low..high-1} from the trainer's u (u = 0 -> low, u -> 1 -> high - 1)."""
    s = TIMESTEP_STRATEGIES.get("uniform")(1000, low=100, high=300)
    t = s.sample(torch.tensor([0.0, 0.5, 0.999999]))
    assert t.tolist() == [100, 200, 299]
    assert TIMESTEP_STRATEGIES.get("uniform")(1000).sample(torch.tensor([0.0, 0.999999])).tolist() == [0, 999]
    with pytest.raises(ValueError, match="low < high"):
        TIMESTEP_STRATEGIES.get("uniform")(1000, low=300, high=300)
    with pytest.raises(TypeError, match="only low and high"):
        TIMESTEP_STRATEGIES.get("uniform")(1000, mode="sample")
