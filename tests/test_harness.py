"""The generation + scoring harness on the tiny model: fixed seeds, PNG metadata, resumable caches."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bench.evaluate import base_run_dir, evaluate
from evaluators.harness import GenerationSpec, image_seed, image_sha256
from evaluators.prompts import load_prompts


class MeanRed:
    """A test scorer: mean red channel. Counts its calls to prove the cache."""

    name, version, higher_is_better = "mean-red", "1", True

    def __init__(self):
        self.calls = 0

    def score(self, images, prompts):
        self.calls += len(images)
        return torch.tensor([np.asarray(im)[..., 0].mean() / 255.0 for im in images])


def test_evaluate_twice_hits_every_cache(tmp_path):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("a red circle\n\na blue square\na green triangle\n")
    prompts = load_prompts(str(prompt_file))
    spec = GenerationSpec(steps=2, cfg=3.0, resolution=32, seed=7, images_per_prompt=2)
    scorer = MeanRed()
    out = base_run_dir(tmp_path / "runs", "tiny-sd15", spec)
    first = evaluate(out, prompts, ["mean-red"], spec, model="tiny-sd15", scorers={"mean-red": scorer})
    t1 = json.loads((first / "timing.json").read_text())
    assert (t1["images_generated"], t1["score_cache_misses"], scorer.calls) == (6, 6, 6)
    scores1 = pd.read_parquet(first / "scores.parquet")
    second = evaluate(out, prompts, ["mean-red"], spec, model="tiny-sd15", scorers={"mean-red": scorer})
    t2 = json.loads((second / "timing.json").read_text())
    assert (t2["images_generated"], t2["score_cache_hits"], t2["score_cache_misses"], scorer.calls) == (0, 6, 0, 6)
    # phases: this call's seconds; cumulative_phases: every call's, so reused images keep what they cost to make
    for k in ("sampling", "scoring"):
        assert t1["cumulative_phases"][k]["seconds"] == t1["phases"][k]["seconds"] > 0
        assert t2["cumulative_phases"][k]["seconds"] == t1["phases"][k]["seconds"] + t2["phases"][k]["seconds"]
    pd.testing.assert_frame_equal(scores1, pd.read_parquet(second / "scores.parquet"))
    # fixed seed per (prompt, image index), recorded in the PNG and in the scores
    row = scores1.iloc[3]
    assert row.seed == image_seed(7, int(row.prompt_id), int(row.image_index))
    with Image.open(first / row.image_path) as im:
        assert im.info["prompt"] == row.prompt and im.info["seed"] == str(row.seed) and im.size == (32, 32)
    summary = json.loads((first / "summary.json").read_text())
    assert summary["n_prompts"] == 3 and summary["images_per_prompt"] == 2
    assert summary["generation"]["steps"] == 2 and summary["prompt_set_hash"] == prompts.hash


def test_same_seeds_same_images_across_runs(tmp_path):
    """Two evaluations of the same model with the same spec produce identical pixels (same initial noise)."""
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("a red circle\n")
    spec = GenerationSpec(steps=2, resolution=32, seed=1)
    a = evaluate(tmp_path / "a", load_prompts(str(prompt_file)), ["m"], spec, model="tiny-sd15",
                 scorers={"m": MeanRed()})
    b = evaluate(tmp_path / "b", load_prompts(str(prompt_file)), ["m"], spec, model="tiny-sd15",
                 scorers={"m": MeanRed()})
    sa, sb = pd.read_parquet(a / "scores.parquet"), pd.read_parquet(b / "scores.parquet")
    assert sa.image_sha256.tolist() == sb.image_sha256.tolist()


def test_base_run_dir_follows_weights_and_vae(tmp_path):
    """A rebuilt or updated base model, or another VAE, never reuses a stale base-model evaluation; the same files
    anywhere else do."""
    import os
    import shutil

    from bench.models import resolve_model

    model = tmp_path / "model"
    shutil.copytree(resolve_model("tiny-sd15")[1], model)
    spec = GenerationSpec(steps=2, cfg=3.0, resolution=32, seed=7)
    first = base_run_dir(tmp_path / "runs", str(model), spec)
    assert first == base_run_dir(tmp_path / "runs", str(model), spec)  # stable while nothing changes
    assert first.name.startswith("base-model-")
    assert base_run_dir(tmp_path / "runs", str(model), spec, vae="some/vae") != first
    assert base_run_dir(tmp_path / "runs", str(model), GenerationSpec(steps=3, cfg=3.0, resolution=32, seed=7)) != first
    # the same files elsewhere (another clone, another machine) or touched keep the key: a restored record's
    # base-model evaluation is found again
    shutil.copytree(model, tmp_path / "elsewhere" / "model")
    assert base_run_dir(tmp_path / "runs", str(tmp_path / "elsewhere" / "model"), spec) == first
    weights = next(model.glob("unet/*.safetensors"))
    os.utime(weights, (1, 1))
    assert base_run_dir(tmp_path / "runs", str(model), spec) == first
    (model / "scheduler" / "scheduler_config.json").write_text(
        (model / "scheduler" / "scheduler_config.json").read_text().replace("}", ', "note": 1}', 1))
    assert base_run_dir(tmp_path / "runs", str(model), spec) != first  # a config loads differently too
    shutil.rmtree(model)
    shutil.copytree(tmp_path / "elsewhere" / "model", model)
    weights.write_bytes(weights.read_bytes() + b"\0")  # new weights (as after `bench toy build`)
    second = base_run_dir(tmp_path / "runs", str(model), spec)
    assert second != first
    (model / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"\0")  # .bin weights count too
    assert base_run_dir(tmp_path / "runs", str(model), spec) not in (first, second)


def test_a_resumed_evaluation_makes_the_images_of_one_made_in_one_go(tmp_path):
    """A sampler's batched arithmetic can move a pixel with the batch's composition, so the harness generates fixed
    batches whole: an evaluation with images deleted (interrupted, or restored from `bench sweep --record`, which
    keeps a few) makes exactly the images of one made in one go. Here the fake sampler's pixels depend on the
    batch, as a real one's may by one unit."""
    from evaluators.harness import generate_images

    def generate(prompts, seeds):  # each pixel: its own seed plus the sum of its batch's seeds
        return [Image.new("RGB", (4, 4), ((s + sum(seeds)) % 256, len(seeds), 0)) for s in seeds]

    spec = GenerationSpec(steps=2, resolution=4, seed=3, images_per_prompt=3)
    prompts = ["a", "b", "c", "d"]
    once, n = generate_images(generate, prompts, spec, tmp_path / "once", batch_size=5)
    assert n == 12
    out = tmp_path / "resumed"
    generate_images(generate, prompts, spec, out, batch_size=5)
    for name in ("00000_02.png", "00003_01.png"):  # in the first and the last batch; the middle one is whole
        (out / "images" / name).unlink()
    again, n = generate_images(generate, prompts, spec, out, batch_size=5)
    assert n == 5 + 2 and [r.image_sha256 for r in again] == [r.image_sha256 for r in once]
    # generating only the missing images, as the harness once did, gives other pixels: the test can fail
    lone = generate(["a"], [image_seed(3, 0, 2)])[0]
    assert image_sha256(lone) != once[2].image_sha256
