"""The shared trainer on tiny SD1.5- and SDXL-shaped models: every registered method, resume, multi-process,
non-finite stops, checkpoints, cache equivalence, the plugin entry point."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import checkpoint
from bench.trainer import NonFiniteError, Trainer, train
from methods import METHODS, get_method
from methods.reference import REFERENCE_UPDATES
from methods.timesteps import TIMESTEP_STRATEGIES
from tests.helpers import base_unet_weights, tiny_config, unet_weights, update_gap, write_pairs

MODELS = ["tiny-sd15", "tiny-sdxl"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> str:
    return str(write_pairs(tmp_path_factory.mktemp("data") / "pairs.parquet", n=12))


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_two_steps(method, model, pairs, tmp_path):
    """Two optimizer steps through the one trainer: finite loss, policy changed, reference unchanged."""
    cfg = tiny_config(method, model, f"data.source={pairs}")
    tr = Trainer(cfg, tmp_path / "run", show_progress=False)
    policy0 = _snapshot(tr.unwrapped)
    ref0 = _snapshot(tr.reference.module) if tr.reference is not None and tr.reference.module is not None else None
    tr.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)
    changed = any(not torch.equal(policy0[k], v) for k, v in tr.unwrapped.state_dict().items())
    assert changed, "the policy did not move"
    if ref0 is not None:
        assert all(torch.equal(ref0[k], v) for k, v in tr.reference.module.state_dict().items())
    assert get_method(method).uses_reference == (tr.reference is not None)
    cost = json.loads((tmp_path / "run" / "cost.json").read_text())
    assert cost["pairs_seen"] == 4 and cost["forward_equivalents"] > 0


@pytest.mark.parametrize("ref_update", REFERENCE_UPDATES.names())
@pytest.mark.parametrize("timesteps", TIMESTEP_STRATEGIES.names())
def test_addons_two_steps(ref_update, timesteps, pairs, tmp_path):
    """Every add-on combination runs on a reference method; a moving reference strategy moves the reference."""
    cfg = tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", f"ref_update={ref_update}",
                      f"timesteps={timesteps}")
    tr = Trainer(cfg, tmp_path / "run", show_progress=False)
    ref0 = _snapshot(tr.reference.module)
    tr.train()
    moved = any(not torch.equal(ref0[k], v) for k, v in tr.reference.module.state_dict().items())
    assert moved == tr.ref_update.needs_initial_copy


def test_step_zero_loss_is_log2(tmp_path):
    """Policy == reference at step 0: z = 0 for every pair, the DPO loss is exactly log 2."""
    cfg = tiny_config("dpo", "tiny-sd15", "steps=1")
    train(cfg, tmp_path / "run", show_progress=False)
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-7)
    assert first["margin"] == 0.0


def test_gradient_step_lowers_winner_relative_error(tmp_path):
    """One optimizer step on a fixed batch raises the implicit margin z (winner's error falls relative to the
    loser's, measured against the reference)."""
    from bench.trainer import Context
    from methods.diffusion import forward_noise, per_sample_error

    cfg = tiny_config("dpo", "tiny-sd15", "lr=1e-4", "batch_size=4", "caption_dropout=0")
    tr = Trainer(cfg, tmp_path / "run", show_progress=False)
    slots = [0, 1, 2, 3]
    batch = tr.make_batch(0, slots, [tr.schedule.item(0, s) for s in slots], tr.device)
    ctx = Context(tr, 0)
    t = ctx.timesteps(batch.slots)
    eps = ctx.randn(batch.slots, tuple(batch.x0_w.shape[1:]), "noise")

    def margin() -> torch.Tensor:
        x_w, _ = forward_noise(batch.x0_w, t, eps, tr.alphas_cumprod)
        x_l, _ = forward_noise(batch.x0_l, t, eps, tr.alphas_cumprod)
        with torch.no_grad():
            e = [per_sample_error(ctx.policy(x, t, batch.cond), eps) for x in (x_w, x_l)]
            r = [per_sample_error(ctx.reference(x, t, batch.cond), eps) for x in (x_w, x_l)]
        return (e[0] - e[1]) - (r[0] - r[1])  # relative error of the winner; z = -0.5 beta * this

    before = margin()
    assert torch.all(before == 0)
    loss, _ = tr.method.loss(batch, Context(tr, 0))  # same step & slots -> same t and eps as above
    loss.backward()
    tr.optimizer.step()
    assert margin().mean() < 0


def test_noise_offset_adds_a_per_channel_constant(tmp_path):
    """ctx.noise = randn("noise") + noise_offset x randn("noise/offset") of shape (C, 1, 1), by hand; with
    noise_offset 0 it is randn("noise") exactly (so DPO's and SFT's draws are unchanged)."""
    from bench.trainer import Context

    slots = torch.tensor([0, 3])
    plain = Context(Trainer(tiny_config("sft", "tiny-sd15"), tmp_path / "a", show_progress=False), 2)
    shape = (4, 8, 8)
    eps = plain.randn(slots, shape, "noise")
    assert torch.equal(plain.noise(slots, shape), eps)
    offset = Context(Trainer(tiny_config("sft", "tiny-sd15", "train.noise_offset=0.25"), tmp_path / "b",
                             show_progress=False), 2)
    shift = offset.randn(slots, (4, 1, 1), "noise/offset")
    got = offset.noise(slots, shape)
    assert torch.allclose(got, eps + 0.25 * shift)
    assert torch.allclose((got - eps).std(dim=(2, 3)), torch.zeros(2, 4), atol=1e-6)  # constant over the image


def test_resume_is_bit_identical(tmp_path, pairs):
    """4 steps straight == 2 steps, stop, resume, 2 more steps: identical weights, bit for bit (CPU)."""
    common = [f"data.source={pairs}", "checkpoint_every=2", "train.batch_size=2", "grad_accum=2"]
    train(tiny_config("dpo", "tiny-sd15", "steps=4", *common), tmp_path / "straight", show_progress=False)
    train(tiny_config("dpo", "tiny-sd15", "steps=2", *common), tmp_path / "resumed", show_progress=False)
    train(tiny_config("dpo", "tiny-sd15", "steps=4", *common), tmp_path / "resumed", resume=True,
          show_progress=False)
    a, b = unet_weights(tmp_path / "straight"), unet_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    log_b = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(log_a) == strip(log_b)
    cost = json.loads((tmp_path / "resumed" / "cost.json").read_text())
    assert cost["pairs_seen"] == 16 and cost["forward_equivalents_per_pair"] == 8.0


def test_accumulation_equals_larger_batch(tmp_path, pairs):
    """1 process x batch 2 x 2 accumulation == 1 process x batch 4 (same slots, same draws). Tolerance: the runs
    differ by under 1e-3 of the update's norm (float32 summation order, amplified by Adam on near-zero
    gradient coordinates; measured 2e-4; a wrong sample or noise draw gives a gap of order 1)."""
    train(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", "batch_size=4"), tmp_path / "big",
          show_progress=False)
    train(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", "batch_size=2", "grad_accum=2"),
          tmp_path / "accum", show_progress=False)
    a, b = unet_weights(tmp_path / "big"), unet_weights(tmp_path / "accum")
    assert update_gap(a, b, base_unet_weights()) < 1e-3


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, pairs):
    """2 CPU processes (gloo) x batch 2 == 1 process x batch 4. Tolerance: the runs differ by under 1e-3 of the
    update's norm (gradients all-reduced in a different float32 order, see helpers.update_gap; a wrong sample or
    noise draw gives a gap of order 1). The learning-rate schedule (here one warmup step, then a cosine decay) is the
    same per optimizer step in both, though accelerate steps a prepared scheduler once per process: warmup and decay
    counted in optimizer steps would end the warmup halfway through the first step with 2 processes (lr x0.75 after
    it) and the decay halfway through the run."""
    args = ["--method", "dpo", "--model", "tiny-sd15", "--quiet", f"data.source={pairs}", "steps=2",
            "lr_scheduler=cosine", "warmup_steps=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bench", "train", "--output-dir", str(tmp_path)]
    subprocess.run(cmd + ["--name", "one"] + args + ["batch_size=4"], check=True, env=env, capture_output=True)
    subprocess.run(cmd + ["--name", "two", "--num-processes", "2"] + args + ["batch_size=2"], check=True, env=env,
                   capture_output=True)
    a, b = unet_weights(tmp_path / "one"), unet_weights(tmp_path / "two")
    assert update_gap(a, b, base_unet_weights()) < 1e-3
    rows_one = [json.loads(r) for r in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows_two = [json.loads(r) for r in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert rows_two[-1]["loss"] == pytest.approx(rows_one[-1]["loss"], rel=1e-5)
    lr = json.loads((tmp_path / "one" / "config.json").read_text())["train"]["lr"]
    for rows in (rows_one, rows_two):  # the lr after each step: 0 during step 1 (warmup), then cosine from lr to 0
        assert [r["lr"] for r in rows] == pytest.approx([lr, 0.0], abs=1e-12)
    env_two = json.loads((tmp_path / "two" / "env.json").read_text())
    assert env_two["devices"]["count"] == 2


def test_cache_and_no_cache_train_the_same(tmp_path, pairs):
    """Cached latents/text embeddings give the same run as encoding on the fly (same draws, same order)."""
    train(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", "data.cache=true"), tmp_path / "c",
          show_progress=False)
    train(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", "data.cache=false"), tmp_path / "n",
          show_progress=False)
    a, b = unet_weights(tmp_path / "c"), unet_weights(tmp_path / "n")
    assert update_gap(a, b, base_unet_weights()) < 1e-3


def test_non_finite_loss_stops_with_step_and_samples(tmp_path):
    cfg = tiny_config("dpo", "tiny-sd15", "beta=1e39", "steps=3")
    with pytest.raises(NonFiniteError, match=r"at step \d+ .*sample slots \[0, 1\], data items \[\d+, \d+\]"):
        train(cfg, tmp_path / "run", show_progress=False)


def test_interrupted_checkpoint_leaves_previous_loadable(tmp_path):
    root = tmp_path / "ckpt"

    def good(folder: Path) -> None:
        (folder / "state.bin").write_bytes(b"x" * 100)

    def crash(folder: Path) -> None:
        (folder / "state.bin").write_bytes(b"partial")
        raise KeyboardInterrupt("killed while writing")

    checkpoint.write(root, 1, good, {}, keep=2)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write(root, 2, crash, {}, keep=2)
    assert checkpoint.latest(root).name == "step-00000001"
    # a step folder whose file was truncated after the manifest is not complete either
    checkpoint.write(root, 3, good, {}, keep=3)
    (root / "step-00000003" / "state.bin").write_bytes(b"trunc")
    assert checkpoint.latest(root).name == "step-00000001"
    assert checkpoint.trainer_state(checkpoint.latest(root))["step"] == 1


def test_lora_run_uses_disabled_adapters_as_reference(tmp_path, pairs):
    """LoRA: no second UNet; step-0 loss is log 2 (adapters start as a perturbation only through training);
    final weights are pytorch_lora_weights.safetensors, loadable by diffusers."""
    from diffusers import StableDiffusionPipeline

    cfg = tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", "model.lora_rank=4", "lr=1e-3")
    tr = Trainer(cfg, tmp_path / "run", show_progress=False)
    assert tr.reference.module is None and tr.reference.mode == "lora-disabled"
    tr.train()
    weights = tmp_path / "run" / "weights" / "pytorch_lora_weights.safetensors"
    assert weights.is_file()
    pipe = StableDiffusionPipeline.from_pretrained(tr.comps.path, safety_checker=None)
    pipe.load_lora_weights(str(weights.parent))


def test_final_weights_load_with_from_pretrained(tmp_path):
    from diffusers import UNet2DConditionModel

    out = train(tiny_config("dpo", "tiny-sdxl"), tmp_path / "run", show_progress=False)
    unet = UNet2DConditionModel.from_pretrained(out / "weights" / "unet")
    assert unet.config.addition_embed_type == "text_time"
    run = json.loads((out / "run.json").read_text())
    env = json.loads((out / "env.json").read_text())
    assert run["schema_version"] == 1 and run["method"] == "dpo" and env["versions"]["torch"]
    assert "commit" in env["git"] and env["devices"]["kind"] == "cpu"
    assert json.loads((out / "config.json").read_text())["method_args"]["beta"] == 5000.0


def test_speed_switches_do_not_change_the_step(tmp_path, pairs):
    """The naive baseline (one image per UNet call, no cache) and channels_last/fused AdamW give the same first
    step as the default batched path (loss equal to float tolerance)."""
    logs = {}
    for name, extra in {"default": [], "naive": ["train.unbatched_forwards=true", "data.cache=false"],
                        "fast": ["train.channels_last=true", "train.fused_optimizer=true"]}.items():
        train(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", *extra), tmp_path / name, show_progress=False)
        logs[name] = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    for name in ("naive", "fast"):
        for a, b in zip(logs["default"], logs[name]):
            assert b["err_w"] == pytest.approx(a["err_w"], rel=1e-5)
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4)


def test_init_unet_starts_policy_and_reference_from_a_run(tmp_path, pairs):
    """model.init_unet=<run dir> (a warm start, e.g. from an SFT run): policy and reference start from that run's
    UNet, not the model's; a UNet of another architecture is refused with a message naming the fix."""
    first = tmp_path / "sft"
    train(tiny_config("sft", "tiny-sd15", f"data.source={pairs}"), first, show_progress=False)
    warm = unet_weights(first)
    assert any(not torch.equal(warm[k], v) for k, v in base_unet_weights("tiny-sd15").items())
    tr = Trainer(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", f"model.init_unet={first}"),
                 tmp_path / "dpo", show_progress=False)
    for module in (tr.unwrapped, tr.reference.module):
        assert all(torch.equal(warm[k], v) for k, v in module.state_dict().items())
    other = tmp_path / "sdxl"
    train(tiny_config("sft", "tiny-sdxl", f"data.source={pairs}", "steps=1"), other, show_progress=False)
    with pytest.raises(ValueError, match="does not match model"):
        Trainer(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", f"model.init_unet={other}"),
                tmp_path / "bad", show_progress=False)
    with pytest.raises(FileNotFoundError, match="no UNet there"):
        Trainer(tiny_config("dpo", "tiny-sd15", f"data.source={pairs}", f"model.init_unet={tmp_path}"),
                tmp_path / "missing", show_progress=False)
