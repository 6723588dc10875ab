"""The exact world: closed-form density and reward against hand-derived values, the shipped base model's fidelity,
determinism, the shared trainer's code paths, and the behavioural test of every registered method."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import PRESET_DIR, ConfigError
from bench.exact import ASSETS, MODEL_DIR
from bench.exact.world import World, energy_distance

W = World()


def test_conditions_split_and_captions():
    assert len(W.train_conditions) == 68 and len(W.test_conditions) == 16
    assert not set(W.train_conditions) & set(W.test_conditions)
    assert W.modes_of("C A") == (0, 2) and W.caption((0, 2)) == "A C"
    assert np.allclose(W.weights("A C"), [0.5, 0, 0.5, 0, 0, 0, 0, 0]) and not W.weights("").any()
    with pytest.raises(ValueError, match="not a mode name"):
        W.modes_of("A Z")


def test_density_against_hand_values():
    """At mode A = (1, 0) under "A C": 0.5 N(0; 0, s^2 I) + 0.5 N(mu_A - mu_C) and |mu_A - mu_C|^2 = 2."""
    s2 = 0.08 ** 2
    want = math.log(0.5 / (2 * math.pi * s2) * (1 + math.exp(-2 / (2 * s2))))
    assert W.log_density(np.array([[1.0, 0.0]]), W.weights("A C"))[0] == pytest.approx(want, rel=1e-12)
    # halfway between A and C, both components at distance^2 0.5
    mid = np.array([[0.5, 0.5]])
    assert W.log_density(mid, W.weights("A C"))[0] == pytest.approx(-0.5 / (2 * s2) - math.log(2 * math.pi * s2))
    # the quadrature grid integrates it to 1
    pts, side = W.grid
    assert np.exp(W.log_density(pts, W.weights("B E G"))).sum() * side ** 2 == pytest.approx(1.0, abs=1e-6)


def test_reward_utility_and_choice_against_hand_values():
    p = W.panel
    assert W.abar == pytest.approx(p.a.mean()) and np.allclose(W.w, (p.b[:, None] * p.v).mean(0))
    x = np.array([[1.0, 0.0], [0.0, 0.0]])
    wts = W.weights("A C")
    fid_a = 1 + math.exp(-2 / (2 * 0.16 ** 2))  # at mu_A: its own bump (1) and C's at distance^2 2
    fid_0 = 2 * math.exp(-1 / (2 * 0.16 ** 2))  # the centre is at distance 1 from both
    assert np.allclose(W.fidelity(x, wts), [fid_a, fid_0])
    assert np.allclose(W.reward(x, wts), [W.abar * fid_a + W.w[0], W.abar * fid_0])
    j = np.array([3, 3])
    assert np.allclose(W.utility(x, wts, j), [p.a[3] * fid_a + p.b[3] * p.v[3, 0], p.a[3] * fid_0])
    # Bradley-Terry: rater 3 prefers x[0] with probability sigmoid(du / temp); u below it picks x[0]
    du = W.utility(x[:1], wts, j[:1])[0] - W.utility(x[1:], wts, j[:1])[0]
    p0 = 1 / (1 + math.exp(-du / p.temp[3]))
    assert W.choose(x[:1], x[1:], wts, j[:1], np.array([p0 - 1e-9]))[0] == 1.0
    assert W.choose(x[:1], x[1:], wts, j[:1], np.array([p0 + 1e-9]))[0] == 0.0
    assert W.choose(x[:1], x[:1] + 1e-4, wts, j[:1], np.array([0.0]))[0] == 0.5  # |du| < tie
    assert list(W.far_from_modes(np.array([[1.0, 0.0], [0.5, 0.0]]))) == [0.0, 1.0]
    assert list(W.on_prompt(np.array([[1.0, 0.0], [0.0, -1.0]]), wts)) == [1.0, 0.0]  # (0, -1) is mode G


def test_tilted_target_raises_the_reward_and_sampling_is_exact():
    cap = "A C F"
    assert W.expected_reward(cap, 4.0) > W.expected_reward(cap, 0.0)
    g = np.random.default_rng(0)
    true = W.sample_tilted(cap, 4000, g, lam=0.0)
    exact = W.sample_true(np.tile(W.weights(cap), (4000, 1)), g)
    assert energy_distance(true, exact) < 0.01
    assert W.reward(true, W.weights(cap)).mean() == pytest.approx(W.expected_reward(cap), abs=0.02)


def test_shipped_base_model_is_good_not_perfect():
    from bench.assets import verify
    from bench.exact.evaluate import base_fidelity
    from bench.exact.plugin import load_denoiser

    assert verify(ASSETS) == []
    fid = base_fidelity(W, load_denoiser(MODEL_DIR / "unet"), n=64, steps=50)
    for split in ("train", "test"):
        f = fid[split]
        assert 0.6 < f["on_prompt"] < 0.95 and 0.02 < f["far"] < 0.3, f  # clearly above chance, clearly imperfect
        assert f["reward"] < f["true_reward"] - 0.03, f  # room for alignment to reach the true data, and beyond


def test_sources_are_deterministic_and_in_the_pick_a_pic_meaning():
    from bench.exact.plugin import load_denoiser
    from bench.exact.sources import generate_pairs

    model = load_denoiser(MODEL_DIR / "unet")
    a = generate_pairs(W, model, "mix", n=96)
    b = generate_pairs(W, model, "mix", n=96)
    assert a.drop(columns=["x_0", "x_1"]).equals(b.drop(columns=["x_0", "x_1"]))
    assert np.array_equal(np.stack(a.x_0), np.stack(b.x_0))
    assert set(a.model_0) | set(a.model_1) == {"base", "true", "tilted"}
    assert set(a.caption) <= set(W.captions("train")) and set(a.label_0) <= {0.0, 0.5, 1.0}
    on = generate_pairs(W, model, "on-policy", n=32)
    assert set(on.model_0) == set(on.model_1) == {"base"}
    better = generate_pairs(W, model, "better", n=400)
    off = generate_pairs(W, model, "off-policy", n=400)
    assert better[["reward_0", "reward_1"]].to_numpy().mean() > off[["reward_0", "reward_1"]].to_numpy().mean()


def _run(tmp_path: Path, method: str, *overrides: str, name: str = "r", config: str | None = None) -> Path:
    from bench.runner import resolve_run
    from bench.trainer import train

    cfg, _, run_dir = resolve_run(method, "exact", None, config, list(overrides), name, str(tmp_path))
    return train(cfg, run_dir, show_progress=False)


def test_training_through_the_shared_trainer_is_deterministic_and_refuses_what_it_cannot_do(tmp_path):
    from safetensors.torch import load_file

    a = _run(tmp_path, "inpo", "steps=3", "batch_size=8", name="a")
    b = _run(tmp_path, "inpo", "steps=3", "batch_size=8", name="b")
    wa, wb = (load_file(str(d / "weights/unet/diffusion_pytorch_model.safetensors")) for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    base = load_file(str(MODEL_DIR / "unet/diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(wa[k], base[k]) for k in wa)
    with pytest.raises(ConfigError, match="random_flip"):
        _run(tmp_path, "dpo", "steps=1", "data.random_flip=true", name="c")
    with pytest.raises(ConfigError, match="lora_rank"):
        _run(tmp_path, "dpo", "steps=1", "model.lora_rank=4", name="d")


def test_bench_run_writes_the_same_run_directory_schema(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bench.cli import app
    from evaluators.rundir import read_run
    from evaluators.tables import results_table

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "--model", "exact", "--method", "kto", "--name", "k", "--quiet",
                                   "steps=4", "batch_size=16", "eval.images_per_prompt=8"])
    assert res.exit_code == 0, res.output
    run = read_run(tmp_path / "runs/k")
    assert set(run.evals) == {f"exact-test-ddim{s}" for s in (10, 20, 50, 200)}
    for f in ("table.md", "changes.csv", "win_rates.csv", "scatter.png", "cost.json", "config.json", "env.json"):
        assert (run.path / f).is_file(), f
    base = next(p for p in (tmp_path / "runs").iterdir() if p.name.startswith("base-exact-"))
    df = results_table([base, run.path], prompt_set="exact-test-ddim20")
    assert list(df.index) == [base.name, "k"]
    ls = CliRunner().invoke(app, ["ls", "models"])
    assert "exact" in ls.output
    # new weights in the run (here: the base model's own) are re-evaluated by `bench eval --checkpoint`, never
    # reported from the old samples; with the base's weights and the same noises the run equals the base exactly
    import shutil

    import pandas as pd

    shutil.copy(MODEL_DIR / "unet/diffusion_pytorch_model.safetensors",
                run.path / "weights/unet/diffusion_pytorch_model.safetensors")
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(run.path), "--quiet"])
    assert res.exit_code == 0, res.output
    ours, theirs = (pd.read_parquet(p / "eval/exact-test-ddim20/scores.parquet") for p in (run.path, base))
    assert ours["reward"].tolist() == theirs["reward"].tolist()


# --------------------------------------------------------------------------------------------------------------------
# Behaviour: every registered method at its exact-world preset raises the expected reward (interval above zero); a
# deliberately broken method does not.
# --------------------------------------------------------------------------------------------------------------------

def _registered_methods() -> list[str]:
    from methods import METHODS

    return METHODS.names()


@pytest.mark.parametrize("method", _registered_methods())
def test_every_method_raises_the_expected_reward(method, tmp_path):
    from bench.exact.study import measure

    mean, lo, hi = measure(method, [], tmp_path, method)
    assert lo > 0, f"{method}: change in expected reward {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] does not exclude 0"


def test_the_behaviour_test_fails_for_a_flipped_loss_sign(tmp_path):
    """DPO with its loss sign flipped (it pushes the loser's error down and the winner's up), at DPO's exact preset:
    the same check reports an interval that does not lie above zero (in fact below it)."""
    from bench.exact.study import measure
    from methods import METHODS
    from methods.dpo import DPO

    class FlippedDPO(DPO):
        """DPO with the loss sign flipped (a deliberately broken method)."""

        @dataclass
        class Config:
            beta: float = 5000.0

        def loss(self, batch, ctx):
            loss, metrics = super().loss(batch, ctx)
            return -loss, metrics

    METHODS.register("flipped-dpo", FlippedDPO)
    try:
        mean, lo, hi = measure("flipped-dpo", [], tmp_path, "flipped", config=str(PRESET_DIR / "exact" / "dpo.toml"))
    finally:
        METHODS._items.pop("flipped-dpo")
    assert not lo > 0 and hi < 0, (mean, lo, hi)
