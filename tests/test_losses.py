"""Losses of every method against hand-derived values, limiting cases, gradient signs and the authors' formulas as
written in their code; and the methods' loss() through a fake StepContext (no trainer, tiny UNet-like module)."""
from __future__ import annotations

import copy
import math
import zlib
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from methods import Cond, ImageBatch, PairBatch, get_method
from methods.diffusion import noise_pair, per_sample_error
from methods.losses import (dpo_margin, kto_loss, kto_margin, kto_utility_loss, mapo_log_odds, mapo_loss, mapo_score,
                            sigmoid_loss, smpo_margin)

LN3 = math.log(3.0)


def t_(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


# --- a fake StepContext: deterministic per-slot streams, call counting, a tiny conditioned "UNet" -----------------
def sd_alphas_cumprod(T: int = 1000) -> torch.Tensor:
    """SD's scaled_linear schedule (beta 0.00085 .. 0.012), float32."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


class TinyUNet(torch.nn.Module):
    """eps(x, t, c) = conv(x) * (1 + 0.1 sin(t / 300)) + proj(mean_L c): depends on input, time and prompt."""

    def __init__(self, channels: int = 4, dim: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.proj = torch.nn.Linear(dim, channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        time = 1.0 + 0.1 * torch.sin(t.float() / 300.0).view(-1, 1, 1, 1)
        return self.conv(x) * time + self.proj(cond.encoder_hidden_states.mean(1))[:, :, None, None]


class FakeContext:
    """A StepContext without the trainer. Streams are derived from (seed, slot, stream) like the trainer's."""

    def __init__(self, policy: torch.nn.Module, reference: torch.nn.Module | None = None, seed: int = 0,
                 t: torch.Tensor | None = None):
        self.alphas_cumprod = sd_alphas_cumprod()
        self.num_train_timesteps, self.device = 1000, torch.device("cpu")
        self.pol, self.ref, self.seed, self.fixed_t = policy, reference, seed, t
        self.calls: Counter = Counter()

    def _gen(self, slot: int, stream: str) -> torch.Generator:
        return torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{slot}/{stream}".encode()))

    def timesteps(self, slots: torch.Tensor, stream: str = "t") -> torch.Tensor:
        if self.fixed_t is not None:
            return self.fixed_t.clone()
        u = torch.cat([torch.rand(1, generator=self._gen(s, stream), dtype=torch.float64) for s in slots.tolist()])
        return (u * 1000).long()

    def randn(self, slots: torch.Tensor, shape: tuple[int, ...], stream: str) -> torch.Tensor:
        self.calls[f"randn:{stream}"] += 1
        return torch.stack([torch.randn(shape, generator=self._gen(s, stream)) for s in slots.tolist()])

    def noise(self, slots: torch.Tensor, shape: tuple[int, ...], stream: str = "noise") -> torch.Tensor:
        return self.randn(slots, shape, stream)  # train.noise_offset 0

    def policy(self, x, t, cond):
        self.calls["policy"] += x.shape[0]
        return self.pol(x, t, cond).float()

    @torch.no_grad()
    def policy_no_grad(self, x, t, cond):
        self.calls["policy_no_grad"] += x.shape[0]
        return self.pol(x, t, cond).float()

    @torch.no_grad()
    def reference(self, x, t, cond):
        if self.ref is None:
            raise RuntimeError("reference called on a reference-free method")
        self.calls["reference"] += x.shape[0]
        return self.ref(x, t, cond).float()

    def balance(self, z, t):
        self.calls["balance"] += 1
        return z

    def all_reduce_mean(self, x):
        self.calls["all_reduce_mean"] += 1
        return x

    def forward_equivalents(self) -> float:
        return 3 * self.calls["policy"] + self.calls["reference"] + self.calls["policy_no_grad"]


def pair_batch(n: int = 3, seed: int = 1, label: torch.Tensor | None = None) -> PairBatch:
    g = torch.Generator().manual_seed(seed)
    return PairBatch(torch.randn(n, 4, 4, 4, generator=g), torch.randn(n, 4, 4, 4, generator=g),
                     Cond(torch.randn(n, 5, 8, generator=g)), torch.ones(n) if label is None else label,
                     torch.arange(n))


def models(perturb: float = 0.0) -> tuple[TinyUNet, TinyUNet]:
    pol = TinyUNet()
    ref = copy.deepcopy(pol).requires_grad_(False)
    if perturb:
        with torch.no_grad():
            pol.conv.weight.add_(perturb)
    return pol, ref


# --- DPO / SmPO / InPO margins --------------------------------------------------------------------------------------
def test_dpo_hand_derived():
    """beta = 2, e_w = 1, e_l = 1 + ln 3, e_ref_w = e_ref_l = 0.5: d_theta = -ln 3, d_ref = 0,
    z = -0.5 * 2 * (-ln 3) = ln 3, loss = -logsigmoid(ln 3) = log(1 + 1/3) = log(4/3)."""
    z = dpo_margin(t_(1.0), t_(1.0 + LN3), t_(0.5), t_(0.5), beta=2.0)
    assert z.item() == pytest.approx(LN3, abs=1e-6)
    assert sigmoid_loss(z).item() == pytest.approx(math.log(4 / 3), abs=1e-6)


def test_smpo_hand_derived_and_symmetric():
    """p = 0.75, gamma = 10: factor (2p - 1) gamma = 5; beta = 0.4 and d_theta - d_ref = -ln 3 give
    z = -0.5 * 0.4 * 5 * (-ln 3) = ln 3, loss log(4/3). Swapping the images with p -> 1 - p gives the same z."""
    z = smpo_margin(t_(1.0), t_(1.0 + LN3), t_(0.5), t_(0.5), beta=0.4, p=t_(0.75), gamma=10.0)
    assert z.item() == pytest.approx(LN3, abs=1e-6)
    assert sigmoid_loss(z).item() == pytest.approx(math.log(4 / 3), abs=1e-6)
    swapped = smpo_margin(t_(1.0 + LN3), t_(1.0), t_(0.5), t_(0.5), beta=0.4, p=t_(0.25), gamma=10.0)
    assert swapped.item() == pytest.approx(LN3, abs=1e-6)
    tie = smpo_margin(t_(1.0), t_(2.0), t_(0.5), t_(0.5), beta=0.4, p=t_(0.5), gamma=10.0)
    assert tie.item() == 0.0  # p = 0.5: no preference, no gradient


def test_policy_equals_reference_gives_log2():
    """e_theta = e_ref for every image: d_theta = d_ref, z = 0, loss = -logsigmoid(0) = log 2 (DPO, InPO, SmPO)."""
    e_w, e_l = torch.rand(6), torch.rand(6)
    assert sigmoid_loss(dpo_margin(e_w, e_l, e_w, e_l, 5000.0)).item() == pytest.approx(math.log(2), abs=1e-7)
    z = smpo_margin(e_w, e_l, e_w, e_l, 2000.0, torch.rand(6), 10.0)
    assert sigmoid_loss(z).item() == pytest.approx(math.log(2), abs=1e-7)


def test_smpo_gamma1_p1_is_dpo_exactly():
    e = torch.rand(4, 8)
    a = smpo_margin(e[0], e[1], e[2], e[3], 2000.0, torch.ones(8), 1.0)
    assert torch.equal(a, dpo_margin(e[0], e[1], e[2], e[3], 2000.0))


def test_gradient_signs():
    """Lowering the winner's error lowers the loss (DPO, SmPO with p > 0.5, MaPO); for KTO lowering a desirable
    image's error and raising an undesirable one's lowers the loss."""
    e_w, e_l = torch.tensor([0.3, 0.5], requires_grad=True), torch.tensor([0.4, 0.2], requires_grad=True)
    r_w, r_l = t_(0.35, 0.45), t_(0.38, 0.25)
    for loss in (sigmoid_loss(dpo_margin(e_w, e_l, r_w, r_l, 50.0)),
                 sigmoid_loss(smpo_margin(e_w, e_l, r_w, r_l, 50.0, t_(0.7, 0.9), 10.0)),
                 mapo_loss(e_w, e_l, beta=0.1)):
        gw, gl = torch.autograd.grad(loss, (e_w, e_l))
        assert (gw > 0).all() and (gl < 0).all()
    err = torch.tensor([0.3, 0.5], requires_grad=True)
    (g,) = torch.autograd.grad(kto_loss(err, t_(0.35, 0.45), t_(1, -1), 10.0, 0.0), (err,))
    assert g[0] > 0 and g[1] < 0


# --- KTO -----------------------------------------------------------------------------------------------------------
def test_kto_hand_derived():
    """e = [0.5, 1], e_ref = [1, 1]: g = [0.5, 0]. With the global mean of g = 0.25, KL = 0.25, g - KL = [0.25, -0.25];
    y = [+1, -1] gives y (g - KL) = [0.25, 0.25]. beta = 4 ln 3: sigmoid(ln 3) = 3/4, so each term 1 - 3/4 = 1/4,
    loss = 1/4; with lambda_D = 2, lambda_U = 1: (2/4 + 1/4) / 2 = 3/8.
    A negative global mean is clamped: g_mean = -1 -> KL = 0, y beta g = [2 ln 3, 0]: terms 1 - 9/10 and 1 - 1/2,
    loss = (0.1 + 0.5) / 2 = 0.3."""
    err, ref, y, beta = t_(0.5, 1.0), t_(1.0, 1.0), t_(1, -1), 4 * LN3
    assert kto_loss(err, ref, y, beta, 0.25).item() == pytest.approx(0.25, abs=1e-6)
    assert kto_loss(err, ref, y, beta, 0.25, lambda_d=2.0).item() == pytest.approx(0.375, abs=1e-6)
    assert kto_loss(err, ref, y, beta, -1.0).item() == pytest.approx(0.3, abs=1e-6)


def test_kto_reference_point_is_detached():
    g_mean = torch.tensor(0.1, requires_grad=True)
    err = torch.tensor([0.2, 0.3], requires_grad=True)
    kto_loss(err, t_(0.3, 0.3), t_(1, -1), 10.0, g_mean).backward()
    assert g_mean.grad is None and err.grad is not None


def test_kto_parity_with_authors_formula():
    """jacklishufan/diffusion-kto (--halo sigmoid, --bce_offset none), written out: labels in {0, 1}."""
    g = torch.Generator().manual_seed(0)
    model_losses, ref_loss = torch.rand(16, generator=g), torch.rand(16, generator=g)
    labels = (torch.rand(16, generator=g) < 0.8).float()
    beta, lam_d, lam_u = 1000.0, 1.0, 1.0
    g_term = -model_losses - (-ref_loss)
    kl = g_term.mean().detach().clamp(min=0)
    h = torch.sigmoid((2 * labels - 1) * beta * (g_term - kl))
    w_y = lam_d * (labels == 1) + lam_u * (labels != 1)
    want = (w_y * (1 - h)).mean()
    got = kto_loss(model_losses, ref_loss, 2 * labels - 1, beta, (ref_loss - model_losses).mean())
    assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-7)
    margin = kto_margin(model_losses, ref_loss, (ref_loss - model_losses).mean(), beta)
    assert kto_utility_loss(margin, 2 * labels - 1).item() == pytest.approx(want.item(), rel=1e-6, abs=1e-7)


# --- MaPO ----------------------------------------------------------------------------------------------------------
def test_mapo_hand_derived():
    """s = 0.5. e_w = 2 ln 2: s e_w = ln 2, expm1 = 1, f(e_w) = ln 2. e_l = 2 ln 3: f(e_l) = ln 3 / 2.
    log_odds = ln 2 - ln 3 / 2 = ln(2 / sqrt 3) > 0 (the winner's error is lower). With T = 1:
    logsigmoid(ln(2/sqrt3)) = -log(1 + sqrt3/2), so loss = 2 ln 2 + beta log(1 + sqrt3/2)."""
    e_w, e_l = t_(2 * math.log(2)), t_(2 * LN3)
    assert mapo_score(e_w).item() == pytest.approx(math.log(2), abs=1e-6)
    assert mapo_log_odds(e_w, e_l).item() == pytest.approx(math.log(2 / math.sqrt(3)), abs=1e-6)
    want = 2 * math.log(2) + 0.1 * math.log(1 + math.sqrt(3) / 2)
    assert mapo_loss(e_w, e_l, beta=0.1, T=1.0).item() == pytest.approx(want, abs=1e-6)
    # T = 1000 saturates the margin term: logsigmoid(143.8) ~ -e^-143.8, the loss is the winners' MSE
    assert mapo_loss(e_w, e_l, beta=0.1, T=1000.0).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_mapo_equal_errors():
    """e_w = e_l = e: log_odds = 0, loss = e - beta logsigmoid(0) = e + beta ln 2."""
    e = t_(0.3, 0.7)
    assert mapo_loss(e, e.clone(), beta=0.1).item() == pytest.approx(0.5 + 0.1 * math.log(2), abs=1e-6)


def test_mapo_zero_error_is_finite():
    """f(0) = 1 (the limit); the gradient there stays finite (expm1 form, no 0/0)."""
    e = torch.tensor([0.0, 0.2], requires_grad=True)
    s = mapo_score(e)
    assert s[0].item() == 1.0
    s.sum().backward()
    assert torch.isfinite(e.grad).all()


def test_mapo_parity_with_authors_formula():
    """mapo-t2i/mapo train.py, written out: exp(.) - 1, logsigmoid(log_odds * T), e_w.mean() - beta * ratio.mean().
    Equal in float64; in float32 the authors' exp(x) - 1 loses digits on small errors (amplified by T = 1000) and the
    expm1 form stays closer to the float64 value."""
    g = torch.Generator().manual_seed(0)
    w, l = (torch.rand(16, generator=g, dtype=torch.float64) * 0.2 for _ in range(2))
    snr, beta, T = 0.5, 0.1, 1000

    def authors(w, l):
        log_odds = (snr * w) / (torch.exp(snr * w) - 1) - (snr * l) / (torch.exp(snr * l) - 1)
        return w.mean() - (beta * F.logsigmoid(log_odds * T)).mean()

    want = authors(w, l).item()
    assert mapo_loss(w, l, beta, float(T), snr).item() == pytest.approx(want, rel=1e-12)
    ours32, theirs32 = mapo_loss(w.float(), l.float(), beta, float(T), snr).item(), authors(w.float(), l.float()).item()
    assert abs(ours32 - want) <= abs(theirs32 - want)


def test_dpo_smpo_parity_with_authors_formula():
    """Salesforce/InPO: inside = -0.5 * beta * (model_diff - ref_diff); SmPO: scale = -0.5 * beta * (2 p - 1) * 10
    (the authors read p from batch element 0; here p is per pair, so the reference formula uses a per-pair p)."""
    g = torch.Generator().manual_seed(0)
    mw, ml, rw, rl, p = (torch.rand(16, generator=g) for _ in range(5))
    model_diff, ref_diff = mw - ml, rw - rl
    want = -F.logsigmoid(-0.5 * 5000.0 * (model_diff - ref_diff)).mean()
    assert sigmoid_loss(dpo_margin(mw, ml, rw, rl, 5000.0)).item() == pytest.approx(want.item(), rel=1e-6)
    inside = -0.5 * 2000.0 * (2 * p - 1) * 10 * (model_diff - ref_diff)
    assert torch.allclose(smpo_margin(mw, ml, rw, rl, 2000.0, p, 10.0), inside, rtol=1e-5, atol=1e-4)


# --- methods through a fake StepContext ------------------------------------------------------------------------------
def test_mapo_never_calls_reference():
    pol, _ = models()
    ctx = FakeContext(pol, reference=None)
    mapo = get_method("mapo")
    assert mapo.uses_reference is False and mapo.flip == "joint"
    loss, m = mapo().loss(pair_batch(), ctx)
    assert torch.isfinite(loss) and ctx.calls["reference"] == 0
    assert ctx.forward_equivalents() / 3 == 6.0  # policy fwd+bwd on 2 images per pair
    assert {"acc", "err_w", "err_l"} <= set(m) and not any(v.requires_grad for v in m.values())


def test_smpo_reduces_to_dpo_exactly():
    """smpo with gamma = 1, binary labels, no inversion gives exactly DPO's loss and margins on the same context."""
    batch = pair_batch(label=torch.tensor([0.9, 0.3, 0.6]))
    dpo = get_method("dpo")(get_method("dpo").Config(beta=2000.0))
    smpo_cls = get_method("smpo")
    smpo = smpo_cls(smpo_cls.Config(beta=2000.0, gamma=1.0, inversion="none", smooth_labels=False))
    a, ma = dpo.loss(batch, FakeContext(*models(0.01)))
    b, mb = smpo.loss(batch, FakeContext(*models(0.01)))
    assert torch.equal(a, b) and torch.equal(ma["margin"], mb["margin"])
    # smooth_labels=True with p = 1 for every pair is the same too
    smpo_p = smpo_cls(smpo_cls.Config(beta=2000.0, gamma=1.0, inversion="none"))
    c, _ = smpo_p.loss(pair_batch(), FakeContext(*models(0.01)))
    assert torch.equal(a, c)


def test_smpo_uses_labels_per_pair():
    """The factor (2p - 1) gamma is applied per pair: margins scale exactly with it against DPO's."""
    p = torch.tensor([0.9, 0.3, 0.5])
    smpo_cls = get_method("smpo")
    smpo = smpo_cls(smpo_cls.Config(beta=2000.0, gamma=10.0, inversion="none"))
    dpo = get_method("dpo")(get_method("dpo").Config(beta=2000.0))
    _, ms = smpo.loss(pair_batch(label=p), FakeContext(*models(0.01)))
    _, md = dpo.loss(pair_batch(), FakeContext(*models(0.01)))
    assert torch.allclose(ms["margin"], md["margin"] * (2 * p - 1) * 10, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown smpo inversion"):
        smpo_cls(smpo_cls.Config(inversion="ddpm"))


@pytest.mark.parametrize("name", ["dpo", "inpo", "smpo"])
def test_dpo_family_log2_at_start_and_balance_hook(name):
    """Policy == reference (identical weights): z = 0 and the loss is log 2, with or without inversion."""
    cls = get_method(name)
    ctx = FakeContext(*models())
    loss, m = cls().loss(pair_batch(label=torch.tensor([0.9, 0.7, 0.6])), ctx)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert ctx.calls["balance"] == 1 and "acc" in m


def test_kto_method():
    """Per-image t and eps; the KL goes through ctx.all_reduce_mean; policy == reference gives g = 0, KL = 0,
    margin 0 and loss mean(1 - sigmoid(0)) = 0.5."""
    kto = get_method("kto")
    assert kto.data == "images" and kto.flip == "independent" and kto.Config().beta == 1000.0
    g = torch.Generator().manual_seed(0)
    batch = ImageBatch(torch.randn(4, 4, 4, 4, generator=g), Cond(torch.randn(4, 5, 8, generator=g)),
                       torch.tensor([1.0, -1.0, 1.0, 1.0]), torch.arange(4))
    ctx = FakeContext(*models())
    loss, m = kto().loss(batch, ctx)
    assert loss.item() == pytest.approx(0.5, abs=1e-6)
    assert ctx.calls["all_reduce_mean"] == 1 and ctx.calls["balance"] == 1
    loss2, m2 = kto().loss(batch, FakeContext(*models(0.01)))
    assert torch.isfinite(loss2) and {"acc", "kl"} <= set(m2)


# --- SFT ------------------------------------------------------------------------------------------------------------
class ConstantUNet(torch.nn.Module):
    """eps(x, t, c) = c0 everywhere (one parameter): e = mean((c0 - eps)^2), de/dc0 = 2 mean(c0 - eps)."""

    def __init__(self, value: float):
        super().__init__()
        self.c0 = torch.nn.Parameter(torch.tensor(value))

    def forward(self, x, t, cond):
        return self.c0.expand_as(x)


def test_sft_hand_derived():
    """SFT with a constant prediction c0 = 1: loss = mean over pairs of mean((1 - eps_w)^2), with eps the pair's
    "noise" stream (DPO's), gradient 2 mean(1 - eps); the losers and the reference are never used."""
    sft = get_method("sft")()
    batch = pair_batch(4)
    ctx = FakeContext(ConstantUNet(1.0))
    loss, metrics = sft.loss(batch, ctx)
    eps = ctx.randn(batch.slots, (4, 4, 4), "noise")
    assert loss.item() == pytest.approx(((1.0 - eps) ** 2).mean().item(), rel=1e-6)
    loss.backward()
    assert ctx.pol.c0.grad.item() == pytest.approx(2 * (1.0 - eps).mean().item(), rel=1e-5)
    assert ctx.calls["policy"] == 4 and ctx.calls["reference"] == 0
    assert metrics["err_w"].shape == (4,)
    other = PairBatch(batch.x0_w, torch.randn_like(batch.x0_l), batch.cond, batch.label, batch.slots)
    assert sft.loss(other, FakeContext(ConstantUNet(1.0)))[0].item() == loss.item()


def test_sft_sees_dpo_winner_noise():
    """SFT's x_t of a pair's winner is DPO's (same t and eps streams): its loss is the policy error on DPO's x_t."""
    pol, _ = models()
    batch, t = pair_batch(3), torch.tensor([5, 500, 999])
    ctx = FakeContext(pol, t=t)
    x_t, target = noise_pair(batch, t, ctx)
    want = per_sample_error(pol(x_t[:3], t, batch.cond), target[:3]).mean()
    assert get_method("sft")().loss(batch, FakeContext(pol, t=t))[0].item() == pytest.approx(want.item(), rel=1e-6)
