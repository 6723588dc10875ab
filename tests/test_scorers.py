"""The scorer interface, registry, preprocessing, weight resolution and key layouts (CPU, no downloads).

Models are tiny random-weight stand-ins written to disk in the original file layouts (tests/fixtures_scorers.py);
the full-size architectures are only built on the meta device (key names and shapes, no memory).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from evaluators.scorers import SCORERS, MissingWeightsError, get_scorer
from evaluators.scorers.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_processor_pixels
from tests import fixtures_scorers as fx

MEAN = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None]
STD = torch.tensor(OPENAI_CLIP_STD)[:, None, None]


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def _rgb(h, w, seed=0, mode="RGB"):
    c = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8), mode)


# ---- fixtures: tiny scorers loaded through from_pretrained from local folders --------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    out = {"root": root}
    out["clip"] = fx.save_clip_dir(root / "pickscore", fx.tiny_clip_model(16, seed=1))
    out["clip768"] = fx.save_clip_dir(root / "clip-l14", fx.tiny_clip_model(768, seed=2))
    out["tok"] = fx.save_clip_tokenizer(root / "clip-processor")
    out["hps_model"] = fx.tiny_open_clip(seed=3)
    out["hps"] = fx.save_hps_checkpoint(root / "hps", out["hps_model"]).parent
    fx.save_hps_checkpoint(root / "hps", out["hps_model"], "HPS_v2_compressed.pt")
    out["bert"] = fx.write_bert_vocab(root / "bert")
    vocab = fx.bert_vocab_size(out["bert"]) + 2
    (root / "ir").mkdir()
    torch.save(fx.tiny_imagereward_state_dict(vocab, seed=4), root / "ir" / "ImageReward.pt")
    out["ir"], out["ir_cfg"] = root / "ir", fx.tiny_imagereward_config(vocab)
    dims = [(768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]
    head = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in dims])
    names = [0, 2, 4, 6, 7]
    head_sd = {f"layers.{names[i]}.{p}": t for i, lin in enumerate(head) for p, t in lin.state_dict().items()}
    (root / "aes").mkdir()
    torch.save(head_sd, root / "aes" / "sac+logos+ava1-l14-linearMSE.pth")
    out["aes_head"], out["aes_head_sd"] = root / "aes", head_sd
    return out


def load(built, name, **kw):
    if name == "pickscore":
        return get_scorer(name).from_pretrained(str(built["clip"]), processor=str(built["tok"]), **kw)
    if name in ("hpsv21", "hpsv2"):
        return get_scorer(name).from_pretrained(str(built["hps"]), model_name=fx.register_tiny_open_clip(), **kw)
    if name == "imagereward":
        return get_scorer(name).from_pretrained(str(built["ir"]), tokenizer=str(built["bert"]), config=built["ir_cfg"],
                                                **kw)
    if name == "aesthetic":
        return get_scorer(name).from_pretrained(str(built["clip768"]), head=str(built["aes_head"]), **kw)
    raise KeyError(name)


NAMES = ["pickscore", "hpsv21", "hpsv2", "imagereward", "aesthetic"]


# ---- registry and identity ----------------------------------------------------------------------------------------
def test_registry_lists_the_five_and_suggests_on_typo():
    assert set(NAMES) <= set(SCORERS.names())
    with pytest.raises(KeyError, match="Did you mean 'pickscore'"):
        get_scorer("pikscore")
    with pytest.raises(KeyError, match="hpsv21"):
        get_scorer("hpsv2.1")


def test_identity_attributes_differ_across_scorers():
    classes = [get_scorer(n) for n in NAMES]
    assert [c.name for c in classes] == NAMES
    assert len({c.version for c in classes}) == 5
    for c in classes:
        assert c.version and c.preprocessing and c.higher_is_better is True and c.default_source
    assert get_scorer("hpsv21").filename == "HPS_v2.1_compressed.pt"
    assert get_scorer("hpsv2").filename == "HPS_v2_compressed.pt"


def test_describe_and_cache_key_carry_the_weight_sha(built):
    s = load(built, "hpsv21")
    sha = hashlib.sha256((built["hps"] / "HPS_v2.1_compressed.pt").read_bytes()).hexdigest()
    d = s.describe()
    assert d["checkpoints"][0]["sha256"] == sha and d["checkpoints"][0]["filename"] == "HPS_v2.1_compressed.pt"
    assert d["checkpoints"][0]["expected_sha256"].startswith("c57a38fb")
    assert s.checkpoints[0].matches_original is False  # random weights are not the published file
    assert s.cache_key == f"hpsv21/{s.version}/{sha[:16]}"
    assert load(built, "hpsv21", antialias=False).cache_key != s.cache_key


# ---- score(): batching, shapes, validation -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_by_one(built, name):
    ims, prompts = fx.images(), fx.PROMPTS
    batched = load(built, name, batch_size=3).score(ims, prompts)
    single = load(built, name, batch_size=1)
    one = torch.cat([single.score([im], [p]) for im, p in zip(ims, prompts)])
    assert batched.dtype == torch.float64 and batched.shape == (len(ims),)
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched, one, rtol=1e-5, atol=1e-5)
    assert batched.std() > 0  # images are told apart


def test_score_validates_inputs(built):
    s = load(built, "hpsv21")
    with pytest.raises(ValueError, match="prompts"):
        s.score(fx.images()[:2], ["one"])
    with pytest.raises(ValueError, match="prompt"):
        s.score(fx.images()[:1])
    with pytest.raises(TypeError):
        s.score([np.zeros((4, 4, 3))], ["x"])
    assert s.score([], []).shape == (0,)
    a = load(built, "aesthetic")
    torch.testing.assert_close(a.score(fx.images()[:2]), a.score(fx.images()[:2], ["x", "y"]))


def test_pickscore_is_logit_scale_times_cosine(built):
    s = load(built, "pickscore")
    ims, prompts = fx.images()[:3], fx.PROMPTS[:3]
    scale = float(s.model.logit_scale.detach().exp())
    assert abs(scale - np.exp(4.0)) < 1e-3
    torch.testing.assert_close(s.score(ims, prompts), scale * s.cosine(ims, prompts), rtol=1e-6, atol=1e-6)
    assert s.cosine(ims, prompts).abs().max() <= 1.0


# ---- preprocessing, re-derived by hand --------------------------------------------------------------------------
def test_hps_pads_a_wide_image_centred():
    from evaluators.scorers.hps import hps_pixels

    im = _rgb(100, 300)  # w=300, h=100 -> 224 x round(100*224/300)=75, pad 149 = 74 top + 75 bottom
    x = hps_pixels(im)
    content = TF.resize(TF.to_tensor(im), [75, 224], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    pad_value = _norm(torch.zeros(3, 1, 1))
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x[:, :74], pad_value.expand(3, 74, 224))
    torch.testing.assert_close(x[:, 74 + 75:], pad_value.expand(3, 75, 224))
    torch.testing.assert_close(x[:, 74:74 + 75], _norm(content))
    assert not torch.allclose(x[:, 73], x[:, 74])


def test_hps_pads_a_tall_odd_image_and_no_crop():
    from evaluators.scorers.hps import hps_pixels

    im = _rgb(301, 97)  # h=301, w=97 -> 224 x round(97*224/301)=72, pad 152 = 76 left + 76 right
    x = hps_pixels(im)
    content = TF.resize(TF.to_tensor(im), [224, 72], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    torch.testing.assert_close(x[:, :, 76:148], _norm(content))
    torch.testing.assert_close(x[:, :, :76], _norm(torch.zeros(3, 224, 76)))
    # the longer side already 224: no resize, still padded to a square (the authors' code would skip the pad)
    y = hps_pixels(_rgb(224, 100, seed=1))
    torch.testing.assert_close(y[:, :, 62:162], _norm(TF.to_tensor(_rgb(224, 100, seed=1))))
    # antialias is explicit and matters when downscaling
    big = _rgb(900, 600, seed=2)
    assert not torch.allclose(hps_pixels(big, antialias=True), hps_pixels(big, antialias=False))


def test_hps_rgba_is_converted_to_rgb_first():
    from evaluators.scorers.hps import hps_pixels

    im = _rgb(150, 260, mode="RGBA")
    torch.testing.assert_close(hps_pixels(im), hps_pixels(im.convert("RGB")))


def test_clip_processor_pixels_by_hand():
    im = _rgb(100, 300)  # shorter side 100 -> (672, 224), crop left (672-224)//2 = 224
    ref = im.resize((672, 224), Image.BICUBIC).crop((224, 0, 448, 224))
    expected = _norm(torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255).permute(2, 0, 1))
    torch.testing.assert_close(clip_processor_pixels(im), expected)
    im = _rgb(301, 97)  # w=97 -> (224, int(224*301/97)=695), crop top (695-224)//2 = 235 (torchvision would take 236)
    ref = im.resize((224, 695), Image.BICUBIC).crop((0, 235, 224, 459))
    expected = _norm(torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255).permute(2, 0, 1))
    torch.testing.assert_close(clip_processor_pixels(im), expected)
    rgba = _rgb(150, 260, mode="RGBA")  # alpha dropped, not composited
    torch.testing.assert_close(clip_processor_pixels(rgba), clip_processor_pixels(rgba.convert("RGB")))


def test_imagereward_pixels_by_hand():
    from evaluators.scorers.imagereward import imagereward_pixels

    im = _rgb(301, 97)  # w=97 -> (224, 695); torchvision CenterCrop top = round(471/2) = 236
    ref = im.resize((224, 695), Image.BICUBIC).crop((0, 236, 224, 460))
    torch.testing.assert_close(imagereward_pixels(im), _norm(TF.to_tensor(ref)))
    # RGBA: resized in RGBA (PIL premultiplies alpha), cropped, THEN converted, as in the authors' Compose order
    rgba = _rgb(100, 300, mode="RGBA")
    ref = rgba.resize((672, 224), Image.BICUBIC).crop((224, 0, 448, 224)).convert("RGB")
    torch.testing.assert_close(imagereward_pixels(rgba), _norm(TF.to_tensor(ref)))


def test_imagereward_tokenizer_layout(built):
    s = load(built, "imagereward")
    tok = s.tokenizer
    n = fx.bert_vocab_size(built["bert"])
    assert len(tok) == n + 2
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [n, n + 1] and tok.bos_token == "[DEC]"
    ids = tok(["a photo of a cat", "dog " * 60], padding="max_length", truncation=True, max_length=35)["input_ids"]
    cls, sep, pad = tok.convert_tokens_to_ids(["[CLS]", "[SEP]", "[PAD]"])
    assert all(len(r) == 35 and r[0] == cls for r in ids)  # [CLS] stays first ([ENC] is not substituted)
    assert ids[1][-1] == sep and ids[0][-1] == pad == 0


# ---- weights: resolution, errors, strictness ---------------------------------------------------------------------
@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.mark.parametrize("name, missing", [("pickscore", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
                                           ("hpsv21", "HPS_v2.1_compressed.pt"), ("hpsv2", "HPS_v2_compressed.pt"),
                                           ("imagereward", "ImageReward.pt"),
                                           ("aesthetic", "shunk031/aesthetics-predictor-v2")])
def test_missing_weights_offline_give_one_concise_error(empty_hub, name, missing):
    with pytest.raises(MissingWeightsError) as err:
        get_scorer(name).from_pretrained()
    msg = str(err.value)
    assert missing in msg and "hf download" in msg and "HF_HUB_OFFLINE" in msg and "local path" in msg
    assert len(msg) < 600 and "\n" not in msg
    assert isinstance(err.value, FileNotFoundError)


def test_missing_local_file_names_it(tmp_path):
    with pytest.raises(MissingWeightsError, match="ImageReward.pt"):
        get_scorer("imagereward").from_pretrained(str(tmp_path))
    with pytest.raises(MissingWeightsError, match="vocab.txt"):
        get_scorer("imagereward").from_pretrained(str(tmp_path / "nope.pt"), tokenizer=str(tmp_path))


def test_hub_cache_resolution_offline(built, empty_hub):
    ckpt = built["hps"] / "HPS_v2.1_compressed.pt"
    fx.put_in_hub_cache(empty_hub, "xswu/HPSv2", {"HPS_v2.1_compressed.pt": ckpt})
    s = get_scorer("hpsv21").from_pretrained(model_name=fx.register_tiny_open_clip())
    assert s.checkpoints[0].source == "xswu/HPSv2"
    assert s.checkpoints[0].sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()  # read from the blob name
    torch.testing.assert_close(s.score(fx.images()[:2], fx.PROMPTS[:2]),
                               load(built, "hpsv21").score(fx.images()[:2], fx.PROMPTS[:2]))


def test_hps_meta_build_equals_a_normal_build(built):
    """The fast loader (meta device, assign, rebuilt causal mask) gives open_clip's own model."""
    from evaluators.scorers.hps import load_open_clip_strict

    ref = built["hps_model"]
    fast = load_open_clip_strict(fx.register_tiny_open_clip(), ref.state_dict())
    assert torch.equal(fast.attn_mask, ref.attn_mask)
    pix, tok = torch.randn(2, 3, 224, 224), torch.randint(0, 49408, (2, 77))
    with torch.no_grad():
        torch.testing.assert_close(fast.encode_image(pix), ref.encode_image(pix))
        torch.testing.assert_close(fast.encode_text(tok), ref.encode_text(tok))


def test_hps_strict_load_rejects_a_foreign_checkpoint(built):
    from evaluators.scorers.hps import load_open_clip_strict

    sd = dict(built["hps_model"].state_dict())
    sd.pop("ln_final.bias")
    with pytest.raises(RuntimeError, match="ln_final.bias"):
        load_open_clip_strict(fx.register_tiny_open_clip(), sd)


def test_clip_strict_load_rejects_missing_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    d = fx.save_clip_dir(tmp_path / "clip", fx.tiny_clip_model())
    sd = load_file(d / "model.safetensors")
    sd.pop("visual_projection.weight")
    save_file(sd, d / "model.safetensors")
    with pytest.raises(RuntimeError, match="visual_projection"):
        get_scorer("pickscore").from_pretrained(str(d), processor=str(fx.save_clip_tokenizer(tmp_path / "tok")))


def test_imagereward_key_mapping_is_strict(built):
    from evaluators.scorers.imagereward import ImageRewardModel, map_original_state_dict

    vocab = built["ir_cfg"].vocab_size
    sd = fx.tiny_imagereward_state_dict(vocab)
    mapped = map_original_state_dict(sd)
    assert len(sd) - len(mapped) == 5  # vision_proj, text_proj (w, b) and position_ids
    with pytest.raises(KeyError, match="blip.text_decoder"):
        map_original_state_dict({**sd, "blip.text_decoder.bert.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="position_ids"):
        map_original_state_dict({**sd, "blip.text_encoder.embeddings.position_ids": torch.zeros(1, 40).long()})
    mapped.pop("text_encoder.encoder.layer.1.crossattention.self.key.weight")
    with pytest.raises(RuntimeError, match="crossattention.self.key.weight"):
        ImageRewardModel(built["ir_cfg"]).load_state_dict(mapped, strict=True)


def test_aesthetic_head_from_a_converted_safetensors(built, tmp_path):
    """shunk031's conversion stores the head as layers.* beside a vision tower: only the head is read from it."""
    from safetensors.torch import save_file

    sd = {**built["aes_head_sd"], "vision_model.embeddings.class_embedding": torch.zeros(32),
          "visual_projection.weight": torch.zeros(768, 32)}
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    a = get_scorer("aesthetic").from_pretrained(str(built["clip768"]), head=str(tmp_path),
                                                head_file="model.safetensors")
    b = load(built, "aesthetic")
    torch.testing.assert_close(a.score(fx.images()[:2]), b.score(fx.images()[:2]))


# ---- the full-size architectures have exactly the original checkpoints' keys and shapes (meta device) --------
def test_hps_full_size_keys_are_the_original_686():
    from evaluators.scorers.hps import create_open_clip, load_open_clip_strict

    expected = fx.original_open_clip_keys()
    got = {k: tuple(v.shape) for k, v in create_open_clip("ViT-H-14", device="meta").state_dict().items()}
    assert len(expected) == 686 and got == expected
    with torch.device("meta"):
        sd = {k: torch.empty(s) for k, s in expected.items()}
    load_open_clip_strict("ViT-H-14", sd)  # strict, no memory


def test_imagereward_full_size_loads_the_original_625_keys_strictly():
    from evaluators.scorers.imagereward import ImageRewardModel, map_original_state_dict

    expected = fx.original_imagereward_keys()
    assert len(expected) == 625
    with torch.device("meta"):
        sd = {k: torch.empty(s) for k, s in expected.items()}
        model = ImageRewardModel()
    model.load_state_dict(map_original_state_dict(sd), strict=True, assign=True)
    size = lambda k: int(np.prod(expected[k]))  # noqa: E731
    n_orig = sum(size(k) for k in expected if not k.endswith("position_ids"))
    n_proj = sum(size(k) for k in expected if k.startswith(("blip.vision_proj", "blip.text_proj")))
    assert abs(n_orig / 1e6 - 446.7) < 0.05  # the published 446.7 M parameters
    assert sum(p.numel() for p in model.parameters()) == n_orig - n_proj


def test_aesthetic_head_has_the_original_10_keys():
    from evaluators.scorers.aesthetic import AestheticHead

    with torch.device("meta"):
        got = {k: tuple(v.shape) for k, v in AestheticHead().state_dict().items()}
    assert got == {"layers.0.weight": (1024, 768), "layers.0.bias": (1024,), "layers.2.weight": (128, 1024),
                   "layers.2.bias": (128,), "layers.4.weight": (64, 128), "layers.4.bias": (64,),
                   "layers.6.weight": (16, 64), "layers.6.bias": (16,), "layers.7.weight": (1, 16),
                   "layers.7.bias": (1,)}
