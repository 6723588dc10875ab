"""DDIM / ReNoise inversion (methods.inversion): the authors' grids, round trips, per-sample cut-offs in a batch,
forward counts, eta noise, parity with the authors' loop written with diffusers' schedulers, and a real tiny
diffusers UNet (SDXL-shaped added conditions, negative timestep labels)."""
from __future__ import annotations

import zlib

import pytest
import torch

from methods import Cond, PairBatch, get_method
from methods.diffusion import abar_at, ddim_step, ddim_variance, epsilon_target
from methods.inversion import (invert, invert_pairs, inversion_forwards, inversion_grid, mean_inversion_forwards)
from tests.test_losses import FakeContext, TinyUNet, models, pair_batch, sd_alphas_cumprod

AC = sd_alphas_cumprod()


def levels(t: torch.Tensor) -> torch.Tensor:
    return torch.stack([abar_at(AC, int(v)) for v in t]).view(-1, 1, 1, 1)


def point_mass_eps(x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
    """The exact eps of a data distribution that is a point mass at the prompt's latent (the "prompt" carries x_0):
    along its DDIM trajectory eps is constant, so DDIM inversion and sampling are exact."""
    a = levels(t)
    return (x - a.sqrt() * cond.encoder_hidden_states.reshape(x.shape)) / (1 - a).sqrt()


def gaussian_eps(x: torch.Tensor, t: torch.Tensor, cond: Cond, s2: float = 0.25) -> torch.Tensor:
    """The exact eps of data ~ N(0, s2 I): E[eps | x_t] = sqrt(1 - a) x / (a s2 + 1 - a)."""
    a = levels(t)
    return (1 - a).sqrt() * x / (a * s2 + 1 - a)


def sample_back(z: torch.Tensor, t: torch.Tensor, cond: Cond, eps_fn, n: int) -> torch.Tensor:
    """Deterministic DDIM sampling down the same grid points the inversion went up, one sample at a time."""
    grid, k, out = inversion_grid(n), 1000 // n, []
    for i in range(len(z)):
        zi, ci = z[i:i + 1], cond.select(slice(i, i + 1))
        for tau in reversed([g for g in grid if g < int(t[i])]):
            zi = ddim_step(zi, eps_fn(zi, torch.tensor([tau + k]), ci), abar_at(AC, tau + k), abar_at(AC, tau))
        out.append(zi)
    return torch.cat(out)


def per_sample_noise(x: torch.Tensor, calls: list[str] | None = None):
    """noise(stream, idx) for the rows idx of x; each row depends only on (row identity, stream), like the trainer's
    slots. Without idx (the authors' loop): every row."""
    all_ids = x.flatten(1)[:, 0]

    def noise(stream: str, idx: torch.Tensor | None = None) -> torch.Tensor:
        if calls is not None:
            calls.append(stream)
        ids = all_ids if idx is None else all_ids[idx]
        seeds = [zlib.crc32(f"{float(i)!r}/{stream}".encode()) for i in ids]
        rows = [torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(rows)

    return noise


def test_grids_match_design():
    assert inversion_grid(10) == [-99, 1, 101, 201, 301, 401, 501, 601, 701, 801]
    assert inversion_grid(5) == [-199, 1, 201, 401, 601]
    with pytest.raises(ValueError, match="inversion_steps"):
        inversion_grid(1)


def test_mean_forward_counts_match_design_section_8():
    """t uniform: 6.382 policy forwards per image (10-step), 7.584 (5-step ReNoise), 12.764 (10-step ReNoise);
    + DPO's 8 per pair gives 20.8 (InPO), 23.2 (SmPO SD1.5) and 33.5 (SmPO SDXL) forward-equivalents per pair."""
    assert mean_inversion_forwards(10) == pytest.approx(6.382)
    assert mean_inversion_forwards(5, renoise=True) == pytest.approx(7.584)
    assert mean_inversion_forwards(10, renoise=True) == pytest.approx(12.764)
    assert 8 + 2 * mean_inversion_forwards(10) == pytest.approx(20.8, abs=0.05)
    assert 8 + 2 * mean_inversion_forwards(5, renoise=True) == pytest.approx(23.2, abs=0.05)
    assert 8 + 2 * mean_inversion_forwards(10, renoise=True) == pytest.approx(33.5, abs=0.05)


def test_ddim_round_trip_exact_for_point_mass():
    """With the point-mass eps, inverting then sampling back with DDIM returns x_0 (float32 round-off), and x_t lies on
    the analytic trajectory z = sqrt(a_end) x_0 + sqrt(1 - a_end) eps_0, eps_0 = eps(x_0 at level abar_0)."""
    x0 = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5
    cond, t = Cond(x0.reshape(3, 4, 16).clone()), torch.tensor([999, 500, 37])
    for n in (10, 5):
        z, target = invert(x0, t, cond, point_mass_eps, AC, n)
        assert torch.allclose(sample_back(z, t, cond, point_mass_eps, n), x0, atol=1e-5)
        k = 1000 // n
        a_end = torch.stack([abar_at(AC, max(g for g in inversion_grid(n) if g < int(ti)) + k) for ti in t])
        eps0 = x0 * (1 - AC[0].sqrt()) / (1 - AC[0]).sqrt()
        want = a_end.sqrt().view(-1, 1, 1, 1) * x0 + (1 - a_end).sqrt().view(-1, 1, 1, 1) * eps0
        assert torch.allclose(z, want, atol=1e-5)
        assert torch.allclose(target, epsilon_target(z, x0, t, AC))


@pytest.mark.parametrize("mode", ["ddim", "renoise"])
def test_round_trip_converges_with_steps(mode):
    """With the exact eps of Gaussian data the first-order inversion is not exact; inverting and sampling back returns
    x_0 ever more closely as the grid gets finer (ReNoise too, whose second prediction keeps the tau label)."""
    x0 = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5
    cond, t = Cond(torch.zeros(3, 2, 8)), torch.tensor([999, 500, 37])

    def rel_error(n: int) -> float:
        z, _ = invert(x0, t, cond, gaussian_eps, AC, n, mode=mode)
        back = sample_back(z, t, cond, gaussian_eps, n)
        return float(((back - x0).flatten(1).norm(dim=1) / x0.flatten(1).norm(dim=1)).max())

    coarse, fine = rel_error(10), rel_error(200)
    assert fine < 0.03 and fine < coarse / 5


@pytest.mark.parametrize("end", ["grid", "t"])
@pytest.mark.parametrize("mode,eta", [("ddim", 0.0), ("ddim", 0.1), ("renoise", 0.0)])
def test_batch_equals_one_by_one(mode, eta, end):
    """Pairs with different t in one batch give the same x_t and targets as each sample inverted alone (either end)."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(6, 4, 4, 4, generator=g)
    cond, unet = Cond(torch.randn(6, 5, 8, generator=g)), TinyUNet()
    t = torch.tensor([0, 1, 2, 150, 999, 601])
    with torch.no_grad():
        z, target = invert(x0, t, cond, unet, AC, 5, mode=mode, eta=eta, noise=per_sample_noise(x0), end=end)
        for i in range(6):
            zi, ti = invert(x0[i:i + 1], t[i:i + 1], cond.select(slice(i, i + 1)), unet, AC, 5, mode=mode, eta=eta,
                            noise=per_sample_noise(x0[i:i + 1]), end=end)
            assert torch.allclose(z[i:i + 1], zi, atol=1e-6) and torch.allclose(target[i:i + 1], ti, atol=1e-5)
    assert torch.isfinite(target).all()


@pytest.mark.parametrize("n,mode", [(10, "ddim"), (5, "renoise"), (10, "renoise")])
def test_forward_counts_per_image(n, mode):
    """The UNet runs only on the samples that still move: per image, the number of grid points below its t
    (x2 with ReNoise), with the grid label (negative at the first point) passed as given."""
    t = torch.tensor([0, 1, 2, 101, 102, 450, 999])
    seen: dict[int, int] = {}
    labels: list[int] = []

    def unet(x, tau, cond):
        for row in cond.encoder_hidden_states[:, 0, 0].long().tolist():
            seen[row] = seen.get(row, 0) + 1
        labels.extend(tau.tolist())
        return torch.zeros_like(x)

    cond = Cond(torch.arange(7.0).view(7, 1, 1).expand(7, 2, 3).clone())
    invert(torch.randn(7, 4, 2, 2), t, cond, unet, AC, n, mode=mode)
    want = inversion_forwards(t, n, renoise=mode == "renoise")
    assert [seen.get(i, 0) for i in range(7)] == want.tolist()
    assert min(labels) == inversion_grid(n)[0] < 0


def test_eta_noise_uses_the_callable():
    """t = 1: one step (tau = -99 -> 1). With eps = 0 the step scales x_0 by sqrt(abar_1 / abar_0); the eta term adds
    eta * noise('inversion0') * sqrt((1 - abar_0)/(1 - abar_1) (1 - abar_1/abar_0))."""
    x0 = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    n0 = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    calls: list[str] = []

    def noise(stream, idx):
        calls.append(stream)
        return n0[idx]

    zero = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    z, _ = invert(x0, torch.tensor([1, 1]), Cond(torch.zeros(2, 1, 1)), zero, AC, 10, eta=0.1, noise=noise)
    a0, a1 = AC[0], AC[1]
    var = (1 - a0) / (1 - a1) * (1 - a1 / a0)
    assert calls == ["inversion0"]
    assert torch.allclose(z, (a1 / a0).sqrt() * x0 + 0.1 * n0 * var.sqrt(), atol=1e-7)
    assert torch.allclose(ddim_variance(a0, a1), var)
    with pytest.raises(ValueError, match="noise callable"):
        invert(x0, torch.tensor([1, 1]), Cond(torch.zeros(2, 1, 1)), zero, AC, 10, eta=0.1)
    with pytest.raises(ValueError, match="unknown inversion mode"):
        invert(x0, torch.tensor([1, 1]), Cond(torch.zeros(2, 1, 1)), zero, AC, 10, mode="ddpm")


def authors_inversion(x0, t0: int, cond, unet, n: int, renoise: bool, eta: float, noise):
    """JaydenLyh/InPO and SmPO train.py, written out with diffusers' schedulers (cut-off and abar_t from element 0,
    which is exact when the whole batch shares t). diffusers >= 0.2x changed DDIMInverseScheduler: step(eps, s) now
    moves s - k -> s and set_timesteps no longer rolls, so the 0.20 grid is set explicitly and step gets tau + k."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    cfg = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
               clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    inverse, noise_scheduler = DDIMInverseScheduler(**cfg), DDIMScheduler(**cfg)
    inverse.set_timesteps(n)
    k = 1000 // n
    grid = torch.tensor(inversion_grid(n))
    z = x0.clone()
    for j, tau in enumerate(grid[grid < t0]):
        eps = unet(z, tau.repeat(len(z)), cond)
        if renoise:
            z1 = inverse.step(eps, tau + k, z).prev_sample
            eps = (eps + unet(z1, tau.repeat(len(z)), cond)) / 2
        z = inverse.step(eps, tau + k, z).prev_sample
        if eta:
            z = z + eta * noise(f"inversion{j}") * noise_scheduler._get_variance(tau + k, tau) ** 0.5
    a = noise_scheduler.alphas_cumprod[t0]
    return z, (z - x0 * a ** 0.5) / (1 - a) ** 0.5, inverse.alphas_cumprod


@pytest.mark.parametrize("n,renoise,eta", [(10, False, 0.1), (5, True, 0.0), (10, True, 0.0)])
@pytest.mark.parametrize("t0", [0, 37, 500, 999])
def test_parity_with_authors_loop(n, renoise, eta, t0):
    g = torch.Generator().manual_seed(5)
    x0, cond, unet = torch.randn(2, 4, 4, 4, generator=g), Cond(torch.randn(2, 5, 8, generator=g)), TinyUNet()
    noise = per_sample_noise(x0)
    with torch.no_grad():
        z_a, target_a, ac = authors_inversion(x0, t0, cond, unet, n, renoise, eta, noise)
        z, target = invert(x0, torch.tensor([t0, t0]), cond, unet, ac, n, mode="renoise" if renoise else "ddim",
                           eta=eta, noise=noise)
    assert torch.allclose(z, z_a, atol=1e-5) and torch.allclose(target, target_a, rtol=1e-4, atol=1e-4)


def test_invert_pairs_through_context():
    """Winner and loser share t; their eta noise streams differ; the policy (no grad) is the inverting model."""
    batch = pair_batch(n=3)
    t = torch.tensor([5, 400, 999])
    ctx = FakeContext(*models())
    x_t, target = invert_pairs(batch, t, ctx, 10, "ddim", eta=0.1)
    assert x_t.shape == (6, 4, 4, 4) and ctx.calls["reference"] == 0
    assert ctx.calls["policy_no_grad"] == 2 * int(inversion_forwards(t, 10).sum())
    assert ctx.calls["randn:inversion0/w"] == 1 and ctx.calls["randn:inversion0/l"] == 1
    same = PairBatch(batch.x0_w, batch.x0_w.clone(), batch.cond, batch.label, batch.slots)
    x_same, _ = invert_pairs(same, t, FakeContext(*models()), 10, "ddim", eta=0.1)
    assert not torch.allclose(x_same[:3], x_same[3:])  # same image, independent eta noise for winner and loser
    x_no_eta, _ = invert_pairs(same, t, FakeContext(*models()), 10, "ddim", eta=0.0)
    assert torch.equal(x_no_eta[:3], x_no_eta[3:])


@pytest.mark.parametrize("name,n,renoise", [("inpo", 10, False), ("smpo", 5, True)])
def test_method_forward_equivalents(name, n, renoise):
    """Forward-equivalents of one micro-batch = DPO's 8 per pair + 2 x (grid points below t, x2 for ReNoise)."""
    ctx = FakeContext(*models(0.01))
    batch = pair_batch(n=4, label=torch.tensor([0.8, 0.6, 0.9, 0.55]))
    loss, m = get_method(name)().loss(batch, ctx)
    t = ctx.timesteps(batch.slots)
    want = 8 * 4 + 2 * int(inversion_forwards(t, n, renoise=renoise).sum())
    assert ctx.forward_equivalents() == want and torch.isfinite(loss) and "acc" in m


def test_real_diffusers_unet_sdxl_shaped():
    """A tiny diffusers UNet2DConditionModel with SDXL added conditions, called as the trainer calls it: negative grid
    labels are accepted, sub-batches select the added conditions too, and batch == one by one."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    net = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 + 6 * 4).eval()

    def unet(x, t, cond):
        return net(x, t, **cond.unet_kwargs()).sample.float()

    g = torch.Generator().manual_seed(1)
    cond = Cond(torch.randn(3, 5, 8, generator=g),
                {"text_embeds": torch.randn(3, 6, generator=g), "time_ids": torch.tensor([[8., 8, 0, 0, 8, 8]] * 3)})
    x0, t = torch.randn(3, 4, 8, 8, generator=g), torch.tensor([3, 250, 700])
    with torch.no_grad():
        z, target = invert(x0, t, cond, unet, AC, 5, mode="renoise")
        z1, target1 = invert(x0[1:2], t[1:2], cond.select(slice(1, 2)), unet, AC, 5, mode="renoise")
    assert torch.isfinite(z).all() and torch.isfinite(target).all()
    assert torch.allclose(z[1:2], z1, atol=1e-5) and torch.allclose(target[1:2], target1, atol=1e-4)


def test_end_t_lands_on_the_sampled_t():
    """end="t": with the point-mass eps, DDIM inversion puts x_t exactly at the forward-noised x_0 of its own t
    (target = eps_0; t inside a grid interval, on a grid point and beyond the last grid point); both modes make the
    authors' number of UNet calls."""
    x0 = torch.randn(5, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5
    cond, t = Cond(x0.reshape(5, 4, 16).clone()), torch.tensor([999, 500, 37, 201, 0])
    eps0 = x0 * (1 - AC[0].sqrt()) / (1 - AC[0]).sqrt()
    a_t = AC[t].view(-1, 1, 1, 1)
    for n in (10, 5):
        for mode in ("ddim", "renoise"):
            calls = []

            def unet(x, tt, c):
                calls.append(len(x))
                return point_mass_eps(x, tt, c)

            z, target = invert(x0, t, cond, unet, AC, n, mode=mode, end="t")
            if mode == "ddim":  # ReNoise's second prediction keeps the tau label, so it is not exact here
                assert torch.allclose(z, a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps0, atol=1e-5)
                assert torch.allclose(target, eps0, atol=1e-4)
            assert sum(calls) == int(inversion_forwards(t, n, renoise=mode == "renoise").sum())
    _, grid_target = invert(x0, t, cond, point_mass_eps, AC, 5)  # the authors' end: off by a grid interval
    assert not torch.allclose(grid_target[2], eps0[2], atol=1e-2)
    with pytest.raises(ValueError, match="inversion end"):
        invert(x0, t, cond, point_mass_eps, AC, 5, end="next")

