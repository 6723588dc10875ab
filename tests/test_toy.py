"""The embedded toy world: world and analysis, panel, toy scorers, and the SHIPPED assets (never retrained here)."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.toy import ASSETS, MODEL_DIR, PAIRS_FILE
from bench.toy.world import (Scene, draw, heldout_attributes, heldout_prompts, sample_scene, train_attributes,
                             train_prompts)
from evaluators import toy
from evaluators.toy import (ATTRIBUTES, PICKSCORE_HI, PICKSCORE_LO, Attributes, Panel, ToyAesthetic, ToyFidelity,
                            ToyHPS, ToyImageReward, ToyPickScore, ToyQuality, all_attributes, analyse, features,
                            feature_matrix, make_prompt, parse_prompt)


def _png_roundtrip(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


# ---------------------------------------------------------------------------------------------------------------
# World and analysis
# ---------------------------------------------------------------------------------------------------------------

def test_world_is_deterministic_and_splits_are_disjoint():
    a = Attributes("red", "circle", "small", "top", "white")
    one = draw(sample_scene(a, np.random.default_rng(3), degrade=1.0))
    two = draw(sample_scene(a, np.random.default_rng(3), degrade=1.0))
    assert one.size == (32, 32) and one.mode == "RGB"
    assert one.tobytes() == two.tobytes()
    assert train_prompts() == train_prompts() and heldout_prompts() == heldout_prompts()
    train, held = set(train_attributes()), set(heldout_attributes())
    assert len(train) == 260 and len(held) == 64 and not train & held and len(train | held) == 324
    for name in ATTRIBUTES:  # every attribute value is seen in training
        assert {getattr(x, name) for x in train} == {getattr(x, name) for x in held | train}


def test_prompt_grammar_round_trip():
    for a in all_attributes():
        assert parse_prompt(make_prompt(a)) == a
    assert parse_prompt("A large blue square in the middle on a grey background.") == \
        Attributes("blue", "square", "large", "middle", "grey")
    assert parse_prompt("a photo of a cat") is None


def test_analysis_recovers_attributes_of_clean_pictures():
    rng = np.random.default_rng(123)
    combos = all_attributes()
    n, hits = 400, 0
    for _ in range(n):
        a = combos[int(rng.integers(len(combos)))]
        hits += analyse(draw(sample_scene(a, rng))).attributes() == a
    assert hits / n > 0.95


def test_analysis_sees_visual_qualities():
    a = Attributes("green", "square", "large", "middle", "black")
    base = Scene(a, 16.0, 16.0, 9.0)
    clean = analyse(draw(base))
    from dataclasses import replace
    blurred, noisy, faded = (analyse(draw(replace(base, **kw))) for kw in
                             ({"blur": 1.5}, {"noise": 25.0, "noise_seed": 1}, {"fade": 0.5}))
    assert blurred.sharpness < clean.sharpness - 0.5
    assert noisy.cleanliness < clean.cleanliness - 0.5
    assert faded.contrast < clean.contrast - 0.3
    off = analyse(draw(replace(base, cx=10.0)))
    assert off.centred < clean.centred
    empty = analyse(Image.new("RGB", (32, 32), (245, 245, 245)))
    assert not empty.present and empty.attributes() is None


# ---------------------------------------------------------------------------------------------------------------
# Panel
# ---------------------------------------------------------------------------------------------------------------

def _feature_pool(n: int = 120, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Features of clean, degraded and unfaithful pictures, each against a prompt."""
    rng = np.random.default_rng(seed)
    combos = all_attributes()
    prompts, feats = [], []
    for i in range(n):
        want = combos[int(rng.integers(len(combos)))]
        drawn = want if i % 3 else combos[int(rng.integers(len(combos)))]
        img = draw(sample_scene(drawn, rng, degrade=0.5))
        prompts.append(make_prompt(want))
        feats.append(features(img, make_prompt(want)))
    return prompts, np.stack(feats)


def test_panel_raters_differ_and_ties_occur():
    panel = Panel.default()
    assert len({r.archetype for r in panel.raters}) == 5
    assert np.allclose([sum(r.weights) for r in panel.raters], 1.0)
    _, f = _feature_pool()
    pairs = [(i, j) for i in range(0, len(f), 2) for j in (i + 1,)]
    u = np.stack([r.utility(f) for r in panel.raters])  # (raters, images)
    prefs = np.stack([u[:, i] > u[:, j] for i, j in pairs], 1)  # noise-free preferences
    disagreements = sum(int((prefs[a] != prefs[b]).sum()) for a in range(len(prefs)) for b in range(a))
    assert disagreements > 0
    lit = next(k for k, r in enumerate(panel.raters) if r.archetype == "literalist")
    aes = next(k for k, r in enumerate(panel.raters) if r.archetype == "aesthete")
    assert (prefs[lit] != prefs[aes]).any()
    labels = [panel.judge(f[i], f[j], seed=0, pair_index=k)[1] for k, (i, j) in enumerate(pairs * 10)]
    assert set(labels) == {0.0, 0.5, 1.0}
    # deterministic, and the mean utility lies in [0, 1]
    assert panel.judge(f[0], f[1], 0, 5) == panel.judge(f[0], f[1], 0, 5)
    assert Panel.default().identity() == panel.identity()
    assert ((panel.utility(f) >= 0) & (panel.utility(f) <= 1)).all()


# ---------------------------------------------------------------------------------------------------------------
# Toy scorers
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ToyPickScore, ToyHPS, ToyImageReward, ToyAesthetic, ToyFidelity, ToyQuality])
def test_toy_scorer_interface(cls):
    from evaluators.scorers.base import Scorer

    scorer = cls.from_pretrained()
    assert isinstance(scorer, Scorer) and scorer.name.startswith("toy-") and scorer.version
    assert scorer.higher_is_better is True and scorer.cache_key.startswith(f"{scorer.name}/{scorer.version}/")
    assert scorer.describe()["checkpoints"][0]["sha256"]
    prompts = train_prompts()[:5]
    imgs = [draw(sample_scene(parse_prompt(p), np.random.default_rng(i))) for i, p in enumerate(prompts)]
    s = scorer.score(imgs, prompts)
    assert s.dtype == torch.float64 and s.shape == (5,) and torch.isfinite(s).all()
    assert torch.equal(s, scorer.score(imgs, prompts))
    with pytest.raises(ValueError):
        scorer.score(imgs, prompts[:4])


def test_toy_scorers_are_registered():
    from evaluators.scorers.registry import SCORERS

    for name, cls in toy.TOY_SCORERS.items():
        assert SCORERS.get(name) is cls


def test_toy_pickscore_prefers_faithful_images():
    scorer = ToyPickScore.from_pretrained()
    prompt = "a large red circle in the middle on a white background"
    want = parse_prompt(prompt)
    rng = np.random.default_rng(0)
    good = draw(sample_scene(want, rng))
    wrong = [Attributes(**{**want.__dict__, k: v}) for k, v in
             (("colour", "blue"), ("shape", "triangle"), ("size", "small"), ("position", "bottom"),
              ("background", "black"))]
    bad = [draw(sample_scene(w, rng)) for w in wrong]
    s = scorer.score([good] + bad, [prompt] * 6)
    assert (s[0] > s[1:]).all()
    raw = scorer.raw_score([good] + bad, [prompt] * 6)
    assert torch.allclose(s, 100 * raw) and ((raw >= PICKSCORE_LO) & (raw <= PICKSCORE_HI)).all()
    # SmPO's default normalisation recovers the panel's mean utility
    u = scorer.utility([good], [prompt])
    assert torch.allclose((raw[:1] - PICKSCORE_LO) / (PICKSCORE_HI - PICKSCORE_LO), u)
    hps = ToyHPS.from_pretrained().score([good] + bad, [prompt] * 6)
    assert (hps[0] > hps[1:]).all()
    noisy = draw(Scene(want, 16.0, 16.0, 9.0, noise=30.0, noise_seed=2))
    clean = draw(Scene(want, 16.0, 16.0, 9.0))
    aes = ToyAesthetic.from_pretrained().score([clean, noisy], None)
    assert aes[0] > aes[1] and 1.0 <= aes.min() and aes.max() <= 10.0


def test_toy_fidelity_and_quality_report_the_two_halves_separately():
    prompt = "a large red circle in the middle on a white background"
    want = parse_prompt(prompt)
    clean = draw(Scene(want, 16.0, 16.0, 9.0))
    noisy = draw(Scene(want, 16.0, 16.0, 9.0, noise=30.0, noise_seed=2))  # same attributes, worse quality
    wrong = draw(Scene(Attributes("blue", "triangle", "large", "middle", "white"), 16.0, 16.0, 9.0))  # clean
    imgs = [clean, noisy, wrong]
    fid = ToyFidelity.from_pretrained().score(imgs, [prompt] * 3)
    qual = ToyQuality.from_pretrained().score(imgs, None)
    f = feature_matrix(imgs, [prompt] * 3)
    assert torch.allclose(fid, torch.from_numpy(100 * f[:, :5].mean(1)).double())  # hand formula
    assert torch.allclose(qual, torch.from_numpy(100 * f[:, 5:].mean(1)).double())
    assert fid[0] > 90 and fid[2] < fid[0] - 30  # colour and shape wrong: two of five attributes lost
    assert qual[1] < qual[0] - 5 and abs(float(qual[2] - qual[0])) < 2  # noise costs quality; wrong attributes not
    assert abs(float(fid[1] - fid[0])) < 5


def test_val_and_test_prompts_split_the_heldout_prompts():
    from evaluators.prompts import load_prompts

    val, test = load_prompts("toy:val"), load_prompts("toy:test")
    assert len(val.prompts) == len(test.prompts) == 32 and not set(val.prompts) & set(test.prompts)
    assert set(val.prompts) | set(test.prompts) == set(heldout_prompts())
    assert (val.name, test.name) == ("toy-val", "toy-test")


def test_pairs_come_from_the_zoo_pairings(tmp_path):
    from bench.toy.preferences import PairsConfig, by_generator, chunk_jobs, generator_of, make_pairs, pair_prompts

    cfg = PairsConfig(n_pairs=24, chunk=4)
    jobs = chunk_jobs(cfg, pair_prompts(cfg))
    assert len(jobs) == 12 and [j[0] for j in jobs] == [k // 2 for k in range(12)]
    for k in range(6):  # chunk k compares pairing k, in a drawn slot order
        assert sorted(j[2] for j in jobs[2 * k:2 * k + 2]) == sorted(cfg.pairings[k].split("/"))
    assert jobs == chunk_jobs(cfg, pair_prompts(cfg))
    assert {j[5] for j in jobs} <= set(cfg.cfg_choices)
    with pytest.raises(ValueError, match="without a model folder"):
        make_pairs({"toy-base": MODEL_DIR}, cfg)
    assert generator_of("toy-large ddim20 cfg4 seed12") == "toy-large"
    df = pd.DataFrame({"model_0": ["a x", "a x", "b x"], "model_1": ["b x", "a x", "a x"],
                       "label_0": [1.0, 0.5, 1.0], "reward_0": [0.2, 0.1, 0.2], "reward_1": [0.1, 0.1, 0.15]})
    g = by_generator(df)
    assert g["a"]["images"] == 4 and g["b"]["images"] == 2
    assert g["a"]["wins_across"] == 0.5 and g["b"]["wins_across"] == 0.5  # one across-pair win each
    assert g["a"]["share_of_winners"] == 0.5 and np.isclose(g["b"]["mean_reward"], 0.15)


def test_text_pretraining_separates_every_attribute_word(tmp_path):
    from transformers import CLIPTokenizer

    from bench.models import clip_tokenizer_files
    from bench.toy.basemodel import BaseModelConfig, pretrain_text, tokenize

    clip_tokenizer_files(tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    text = pretrain_text(tok, BaseModelConfig(text_pretrain_steps=150, text_lr=3e-3), log=lambda m: None)
    assert not any(p.requires_grad for p in text.parameters())
    base = "a large red square at the top on a white background"
    variants = [base.replace("at the top", "at the bottom"), base.replace("red", "blue"),
                base.replace("square", "circle"), base.replace("large", "small"), base.replace("white", "black")]
    with torch.no_grad():
        e0 = text(tokenize(tok, [base]))[0]
        dist = [float((text(tokenize(tok, [v]))[0] - e0).norm()) for v in variants]
    assert min(dist) > 0.3 * max(dist)  # position as distinct as colour (random joint training: 3%)


# ---------------------------------------------------------------------------------------------------------------
# Shipped assets
# ---------------------------------------------------------------------------------------------------------------

def test_shipped_assets_match_their_manifest():
    from bench.toy.build import verify

    assert (ASSETS / "manifest.json").is_file(), "run `python -m bench.toy.build` to produce bench/toy/assets"
    assert verify(ASSETS) == []
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 16 * 2 ** 20  # model ~7 MB (fp16), pairs ~6 MB


def test_shipped_model_generates_with_stable_diffusion_pipeline():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL_DIR), safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(["a large blue square in the middle on a white background"] * 2, num_inference_steps=4,
               guidance_scale=4.0, height=32, width=32, generator=torch.Generator().manual_seed(0),
               output_type="pil").images
    assert len(out) == 2 and out[0].size == (32, 32)


def test_shipped_pairs_schema_and_labels_agree_with_the_panel():
    df = pd.read_parquet(PAIRS_FILE)
    for col in ("jpg_0", "jpg_1", "label_0", "label_1", "caption", "user_id", "ranking_id", "reward_0", "reward_1"):
        assert col in df.columns
    assert set(df["label_0"].unique()) <= {0.0, 0.5, 1.0} and (df["label_0"] == 0.5).any()
    assert np.allclose(df["label_0"] + df["label_1"], 1.0)
    assert set(df["caption"]) <= set(train_prompts())
    rewards = df[["reward_0", "reward_1"]].to_numpy()
    assert ((rewards >= PICKSCORE_LO) & (rewards <= PICKSCORE_HI)).all()
    seed = json.loads((ASSETS / "manifest.json").read_text())["pairs_config"]["seed"]
    panel = Panel.default(json.loads((ASSETS / "manifest.json").read_text())["pairs_config"]["n_raters"])
    for _, row in df.iloc[:150].iterrows():
        imgs = [Image.open(io.BytesIO(row[f"jpg_{k}"])).convert("RGB") for k in (0, 1)]
        assert imgs[0].size == (32, 32)
        f0, f1 = (features(im, row["caption"]) for im in imgs)
        assert panel.judge(f0, f1, seed, int(row["ranking_id"])) == (int(row["user_id"]), float(row["label_0"]))
        raw = PICKSCORE_LO + (PICKSCORE_HI - PICKSCORE_LO) * panel.utility(np.stack([f0, f1]))
        assert np.allclose(raw, [row["reward_0"], row["reward_1"]], atol=1e-12)


def test_shipped_pairs_load_through_the_data_path(tmp_path):
    from bench.config import DataConfig
    from bench.data import prepare_pairs

    store = prepare_pairs(DataConfig(source=str(PAIRS_FILE), cache_dir=str(tmp_path), max_pairs=64),
                          show_progress=False)
    assert len(store) == 64 and store.rewards is not None and store.rewards.shape == (64, 2)
    win, lose = store.images(0)
    assert win.size == (32, 32) and lose.size == (32, 32)


def test_panel_change_hand_derived(tmp_path):
    """The validation's panel columns on four hand-made comparisons: dU 0.1, -0.1, half the tie margin, 0. Mean dU is
    margin/8; two of four lie below the margin; the plain win rate counts the sub-margin gain as a win (2.5 of 4),
    the tie-aware one counts both sub-margin comparisons as ties (2 of 4)."""
    from bench.toy.validate import panel_change

    margin = float(np.mean([r.tie_margin for r in Panel.default().raters]))
    unit = 100 * (PICKSCORE_HI - PICKSCORE_LO)
    for name, d in (("base", [0.0, 0.0, 0.0, 0.0]), ("run", [0.1, -0.1, margin / 2, 0.0])):
        folder = tmp_path / name / "eval" / "toy-test"
        folder.mkdir(parents=True)
        pd.DataFrame({"prompt_id": [0, 1, 2, 3], "image_index": 0,
                      "toy-pickscore": [20 + unit * x for x in d]}).to_parquet(folder / "scores.parquet")
    p = panel_change(tmp_path / "run", tmp_path / "base", "toy-test")
    assert p["mean_dU"] == pytest.approx(margin / 8) and p["share_below_margin"] == 0.5
    assert p["win_rate"] == pytest.approx(62.5) and p["win_rate_margin_ties"] == pytest.approx(50.0)
    assert p["mean_dU_lo"] <= p["mean_dU"] <= p["mean_dU_hi"]
