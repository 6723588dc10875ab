"""Each scorer equals the authors' reference computation on identical (tiny, random) weights.

The original packages cannot be installed into this environment (hpsv2 pins protobuf<4 / pytest==7.2 and its wheel
lacks the BPE file; image-reward pins timm==0.6.13 and breaks on transformers 5). So the always-run tests compare
against RE-DERIVATIONS written step by step from the authors' public code, independently of the scorer modules:

- PickScore: the README's ``calc_probs`` (processor -> get_*_features -> L2 norm -> logit_scale.exp() * text @ image.T
  -> softmax), with transformers' PIL CLIP image processor (the slow processor the authors used);
- HPS: ``hpsv2.img_score.score``: ``image_transform(224, is_train=False, resize_longest_max=True)`` (RGB, ToTensor,
  ResizeMaxSize, normalise) per image, ``model(image, text)`` -> diagonal of image_features @ text_features.T;
- ImageReward: ``ImageReward.score``: their torchvision Compose, BLIP ``init_tokenizer`` + max_length 35, and the
  ViT (``vit.py``) / med BERT (``med.py``, multimodal mode, -10000 padding mask) / MLP forward written out
  functionally in float64 from the ORIGINAL key names;
- Aesthetic: DiffusionDPO ``aes_utils.Selector.score`` (processor, get_image_features, torch.norm, MLP) and
  ``simple_inference.py``'s numpy ``normalized`` + MLP.

Opt-in direct comparisons with the ORIGINAL packages run when they are importable (e.g. installed with
``pip install --target DIR --no-deps hpsv2==1.2.0 clint args`` + open_clip's ``bpe_simple_vocab_16e6.txt.gz`` copied
into ``hpsv2/src/open_clip/``, and ``image-reward==1.5 fairscale==0.4.13 clip-anytorch "setuptools<81"``, then
``PYTHONPATH=DIR``); they are skipped otherwise. A real-weights check of the aesthetic head runs when
``BENCH_AESTHETIC_HEAD`` points to ``sac+logos+ava1-l14-linearMSE.pth``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

from evaluators.scorers import get_scorer
from tests import fixtures_scorers as fx

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
RGB_IMAGES = [im for im in fx.images() if im.mode != "RGBA"]  # transformers 5 composites RGBA on white; 2023 did not


def _pil_clip_processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    return {"clip": fx.save_clip_dir(root / "clip", fx.tiny_clip_model(16, seed=11)),
            "clip768": fx.save_clip_dir(root / "clip768", fx.tiny_clip_model(768, seed=12)),
            "tok": fx.save_clip_tokenizer(root / "tok", tokenizer_json=True), "root": root}


# ---- PickScore ----------------------------------------------------------------------------------------------------
def test_pickscore_equals_the_readme_computation(dirs):
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(dirs["clip"]).eval()
    tokenizer = CLIPTokenizer.from_pretrained(dirs["tok"])
    processor = _pil_clip_processor()
    scorer = get_scorer("pickscore").from_pretrained(str(dirs["clip"]), processor=str(dirs["tok"]), batch_size=4)
    for prompt in ["fantastic, increadible prompt", "a photo of a cat " * 30]:
        with torch.no_grad():
            image_inputs = processor(images=RGB_IMAGES, return_tensors="pt")
            text_inputs = tokenizer(prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
            image_embs = model.get_image_features(**image_inputs)
            image_embs = getattr(image_embs, "pooler_output", image_embs)
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = model.get_text_features(**text_inputs)
            text_embs = getattr(text_embs, "pooler_output", text_embs)
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
            probs = torch.softmax(scores, dim=-1)
        got = scorer.score(RGB_IMAGES, [prompt] * len(RGB_IMAGES))
        torch.testing.assert_close(got, scores.double(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(torch.softmax(got, -1), probs.double(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(scorer.cosine(RGB_IMAGES, [prompt] * len(RGB_IMAGES)),
                                   (text_embs @ image_embs.T)[0].double(), rtol=1e-5, atol=1e-6)


def test_clip_pixels_equal_transformers_pil_processor():
    from evaluators.scorers.base import clip_processor_pixels

    processor = _pil_clip_processor()
    for im in RGB_IMAGES + [fx.images()[0].resize((225, 331))]:
        ref = processor(images=[im], return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(clip_processor_pixels(im), ref, rtol=0, atol=2e-6)


# ---- HPS ----------------------------------------------------------------------------------------------------------
def _authors_hps_transform(image: Image.Image) -> torch.Tensor:
    """hpsv2 open_clip ``image_transform(224, is_train=False, resize_longest_max=True)``, re-written."""
    if image.mode != "RGBA":  # _convert_to_rgb_or_rgba
        image = image.convert("RGB")
    img = TF.to_tensor(image)
    height, width = img.shape[1:]
    scale = 224 / float(max(height, width))  # ResizeMaxSize(224, fill=0)
    if scale != 1.0:
        new_size = tuple(round(dim * scale) for dim in (height, width))
        img = TF.resize(img, new_size, InterpolationMode.BICUBIC, antialias=True)
        pad_h, pad_w = 224 - new_size[0], 224 - new_size[1]
        img = TF.pad(img, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return Normalize(CLIP_MEAN, CLIP_STD)(img)  # MaskAwareNormalize on 3 channels


def test_hps_equals_the_authors_score_pipeline(tmp_path):
    import open_clip

    model = fx.tiny_open_clip(seed=21)
    fx.save_hps_checkpoint(tmp_path, model)
    scorer = get_scorer("hpsv21").from_pretrained(str(tmp_path), model_name=fx.register_tiny_open_clip(), batch_size=3)
    tokenizer = open_clip.get_tokenizer("ViT-H-14")
    images = [im for im in fx.images() if im.mode != "RGBA"]  # RGBA stays 4-channel in their transform and fails
    prompts = fx.PROMPTS[:len(images)]
    result = []
    for image, prompt in zip(images, prompts):
        with torch.no_grad():
            outputs = model(_authors_hps_transform(image).unsqueeze(0), tokenizer([prompt]))
            if isinstance(outputs, dict):
                image_features, text_features = outputs["image_features"], outputs["text_features"]
            else:
                image_features, text_features = outputs[0], outputs[1]
            result.append(torch.diagonal(image_features @ text_features.T)[0].item())
    torch.testing.assert_close(scorer.score(images, prompts), 100 * torch.tensor(result, dtype=torch.float64),
                               rtol=1e-5, atol=1e-4)


def test_hps_against_the_hpsv2_package_if_importable(tmp_path):
    hoc = pytest.importorskip("hpsv2.src.open_clip", reason="the original hpsv2 package is not importable")
    import hpsv2.src.open_clip.factory as their_factory

    their_factory._MODEL_CONFIGS[fx.TINY_OPEN_CLIP] = copy.deepcopy(fx._TINY_OPEN_CLIP_CFG)
    torch.manual_seed(0)
    model, _, preprocess_val = hoc.create_model_and_transforms(
        fx.TINY_OPEN_CLIP, None, precision="amp", device="cpu", jit=False, force_quick_gelu=False,
        force_custom_text=False, force_patch_dropout=False, force_image_size=None, pretrained_image=False,
        image_mean=None, image_std=None, light_augmentation=True, aug_cfg={}, output_dict=True,
        with_score_predictor=False, with_region_predictor=False)
    fx.randomise_(model, seed=22).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "HPS_v2.1_compressed.pt")
    scorer = get_scorer("hpsv21").from_pretrained(str(tmp_path), model_name=fx.register_tiny_open_clip())
    tokenizer = hoc.get_tokenizer(fx.TINY_OPEN_CLIP)
    images = [im for im in fx.images() if im.mode != "RGBA"]
    prompts = fx.PROMPTS[:len(images)]
    ref = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts):
            out = model(preprocess_val(image).unsqueeze(0), tokenizer([prompt]))
            ref.append(torch.diagonal(out["image_features"] @ out["text_features"].T)[0].item())
    torch.testing.assert_close(scorer.score(images, prompts), 100 * torch.tensor(ref, dtype=torch.float64),
                               rtol=1e-5, atol=1e-4)


# ---- ImageReward --------------------------------------------------------------------------------------------------
def _ln(x, sd, p, eps):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def _lin(x, sd, p):
    return x @ sd[p + ".weight"].T + sd[p + ".bias"]


def _heads(x, n):
    b, t, c = x.shape
    return x.view(b, t, n, c // n).permute(0, 2, 1, 3)


def _authors_imagereward(sd, tokenizer, image, prompt, vit_heads, bert_heads):
    """ImageReward.score(prompt, image), step by step from vit.py / med.py / ImageReward.py, in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    preprocess = Compose([Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224),
                          lambda im: im.convert("RGB"), ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)])
    x = preprocess(image).unsqueeze(0).double()
    # VisionTransformer.forward
    v = "blip.visual_encoder."
    x = F.conv2d(x, sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((sd[v + "cls_token"].expand(1, -1, -1), x), dim=1)
    x = x + sd[v + "pos_embed"][:, :x.size(1), :]
    i = 0
    while f"{v}blocks.{i}.norm1.weight" in sd:
        b = f"{v}blocks.{i}."
        B, N, C = x.shape
        qkv = _lin(_ln(x, sd, b + "norm1", 1e-6), sd, b + "attn.qkv").reshape(B, N, 3, vit_heads, C // vit_heads)
        q, k, val = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (C // vit_heads) ** -0.5).softmax(dim=-1)
        x = x + _lin((attn @ val).transpose(1, 2).reshape(B, N, C), sd, b + "attn.proj")
        h = F.gelu(_lin(_ln(x, sd, b + "norm2", 1e-6), sd, b + "mlp.fc1"))
        x = x + _lin(h, sd, b + "mlp.fc2")
        i += 1
    image_embeds = _ln(x, sd, v + "norm", 1e-6)
    # text: tokenizer as called in ImageReward.score, then med BertModel (is_decoder=False, mode='multimodal')
    text_input = tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    ids, mask = text_input.input_ids, text_input.attention_mask
    t = "blip.text_encoder."
    pos = sd[t + "embeddings.position_ids"][:, :ids.shape[1]].long()
    h = sd[t + "embeddings.word_embeddings.weight"][ids] + sd[t + "embeddings.position_embeddings.weight"][pos]
    h = _ln(h, sd, t + "embeddings.LayerNorm", 1e-12)
    extended = (1.0 - mask[:, None, None, :].double()) * -10000.0
    encoder_extended = (1.0 - torch.ones(image_embeds.shape[:2], dtype=torch.float64)[:, None, None, :]) * -1e30

    def attention(p, hidden, context, additive):
        q = _heads(_lin(hidden, sd, p + ".self.query"), bert_heads)
        k = _heads(_lin(context, sd, p + ".self.key"), bert_heads)
        val = _heads(_lin(context, sd, p + ".self.value"), bert_heads)
        scores = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5) + additive
        ctx = (scores.softmax(-1) @ val).permute(0, 2, 1, 3).reshape(hidden.shape)
        return _ln(_lin(ctx, sd, p + ".output.dense") + hidden, sd, p + ".output.LayerNorm", 1e-12)

    i = 0
    while f"{t}encoder.layer.{i}.attention.self.query.weight" in sd:
        b = f"{t}encoder.layer.{i}."
        h = attention(b + "attention", h, h, extended)
        h = attention(b + "crossattention", h, image_embeds, encoder_extended)
        inter = F.gelu(_lin(h, sd, b + "intermediate.dense"))
        h = _ln(_lin(inter, sd, b + "output.dense") + h, sd, b + "output.LayerNorm", 1e-12)
        i += 1
    r = h[:, 0, :]
    for j in (0, 2, 4, 6, 7):  # MLP: Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear
        r = _lin(r, sd, f"mlp.layers.{j}")
    return ((r - 0.16717362830052426) / 1.0333394966054072).item()


def _blip_init_tokenizer(folder):
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(folder))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def test_imagereward_equals_the_authors_forward(tmp_path):
    bert = fx.write_bert_vocab(tmp_path / "bert-base-uncased")
    vocab = fx.bert_vocab_size(bert) + 2
    sd = fx.tiny_imagereward_state_dict(vocab, seed=31)
    (tmp_path / "ir").mkdir()
    torch.save(sd, tmp_path / "ir" / "ImageReward.pt")
    scorer = get_scorer("imagereward").from_pretrained(str(tmp_path / "ir"), tokenizer=str(bert), batch_size=3,
                                                       config=fx.tiny_imagereward_config(vocab))
    tokenizer = _blip_init_tokenizer(bert)
    images, prompts = fx.images(), fx.PROMPTS
    ref = torch.tensor([_authors_imagereward(sd, tokenizer, im, p, 2, 2) for im, p in zip(images, prompts)],
                       dtype=torch.float64)
    got = scorer.score(images, prompts)
    assert ref.std() > 0.05  # the comparison can tell images apart
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def _imagereward_with_transformers5_shims():
    """image-reward 1.5 on transformers 5 needs five patches (implementation_notes section 9)."""
    pytest.importorskip("fairscale", reason="image-reward's dependencies are not importable")
    import transformers.modeling_utils as mu
    from transformers import BertTokenizer, pytorch_utils

    for name in ("apply_chunking_to_forward", "prune_linear_layer"):
        if not hasattr(mu, name):
            setattr(mu, name, getattr(pytorch_utils, name))
    if not hasattr(mu, "find_pruneable_heads_and_indices"):
        mu.find_pruneable_heads_and_indices = lambda *a, **k: None
    if not hasattr(BertTokenizer, "additional_special_tokens_ids"):
        BertTokenizer.additional_special_tokens_ids = property(lambda s: [s.convert_tokens_to_ids("[ENC]")])
    med = pytest.importorskip("ImageReward.models.BLIP.med", reason="the image-reward package is not importable")

    def invert_attention_mask(self, m):
        return (1.0 - m[:, None, None, :].to(self.dtype)) * torch.finfo(self.dtype).min

    if not hasattr(med.BertModel, "invert_attention_mask"):
        med.BertModel.invert_attention_mask = invert_attention_mask
    if not hasattr(med.BertModel, "get_head_mask"):
        med.BertModel.get_head_mask = lambda self, head_mask, n, *a: [None] * n
    med.BertModel.all_tied_weights_keys = {}
    from ImageReward.ImageReward import ImageReward as Original

    return Original


def test_imagereward_against_the_image_reward_package_if_importable(tmp_path, monkeypatch):
    """Slow when it runs (their BLIP is hard-wired to the full ViT-L); text tower shrunk to 2 layers."""
    try:
        original_cls = _imagereward_with_transformers5_shims()
    except ImportError as err:
        pytest.skip(f"image-reward not importable: {err}")
    from evaluators.scorers.imagereward import ImageRewardConfig

    bert = fx.write_bert_vocab(tmp_path / "bert-base-uncased")  # their from_pretrained finds ./bert-base-uncased
    vocab = fx.bert_vocab_size(bert) + 2
    med = {"hidden_act": "gelu", "hidden_size": 768, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
           "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 2,
           "pad_token_id": 0, "vocab_size": vocab, "encoder_width": 768, "add_cross_attention": True,
           "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "initializer_range": 0.02}
    (tmp_path / "med_config.json").write_text(json.dumps(med))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    original = original_cls(med_config="med_config.json", device="cpu").eval()
    fx.randomise_(original, seed=32, scale=0.02)
    with torch.no_grad():
        for p in original.mlp.parameters():
            p.normal_(0, 0.15)
    (tmp_path / "ir").mkdir()
    torch.save(original.state_dict(), tmp_path / "ir" / "ImageReward.pt")
    scorer = get_scorer("imagereward").from_pretrained(str(tmp_path / "ir"), tokenizer=str(bert),
                                                       config=ImageRewardConfig(vocab_size=vocab, num_layers=2))
    images, prompts = fx.images(), fx.PROMPTS
    with torch.no_grad():
        ref = torch.tensor([original.score(p, im) for p, im in zip(prompts, images)], dtype=torch.float64)
    torch.testing.assert_close(scorer.score(images, prompts), ref, rtol=1e-5, atol=1e-4)


# ---- Aesthetic ----------------------------------------------------------------------------------------------------
def _head_file(path, seed=41):
    g = torch.Generator().manual_seed(seed)
    dims = [768, 1024, 128, 64, 16, 1]
    sd = {}
    for j, (a, b) in zip((0, 2, 4, 6, 7), zip(dims, dims[1:])):
        sd[f"layers.{j}.weight"] = torch.randn(b, a, generator=g) * a ** -0.5 * (30.0 if j == 0 else 1.0)
        sd[f"layers.{j}.bias"] = torch.randn(b, generator=g) * 0.1
    sd["layers.7.bias"] += 5.0
    path.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path / "sac+logos+ava1-l14-linearMSE.pth")
    return sd


def test_aesthetic_equals_diffusiondpo_and_simple_inference(dirs):
    from transformers import CLIPModel

    head = _head_file(dirs["root"] / "aes")
    scorer = get_scorer("aesthetic").from_pretrained(str(dirs["clip768"]), head=str(dirs["root"] / "aes"), batch_size=4)
    model2 = CLIPModel.from_pretrained(dirs["clip768"]).eval()
    mlp = torch.nn.Sequential(torch.nn.Linear(768, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
                              torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
                              torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))
    mlp.load_state_dict({k.removeprefix("layers."): v for k, v in head.items()})
    mlp.eval()
    with torch.no_grad():
        # DiffusionDPO utils/aes_utils.py Selector.score
        image_inputs = _pil_clip_processor()(images=RGB_IMAGES, return_tensors="pt")
        image_embs = model2.get_image_features(**image_inputs)
        image_embs = getattr(image_embs, "pooler_output", image_embs)
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        dpo = mlp(image_embs).flatten()
        # improved-aesthetic-predictor simple_inference.py: numpy normalized() then the MLP
        raw = model2.get_image_features(**image_inputs)
        a = getattr(raw, "pooler_output", raw).numpy()
        l2 = np.atleast_1d(np.linalg.norm(a, 2, -1))
        l2[l2 == 0] = 1
        simple = mlp(torch.from_numpy(a / np.expand_dims(l2, -1)).float()).flatten()
    got = scorer.score(RGB_IMAGES)
    assert dpo.std() > 0.01
    torch.testing.assert_close(got, dpo.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, simple.double(), rtol=1e-5, atol=1e-5)


def test_aesthetic_real_head_if_available():
    """The published head: sha256, strict load, and on random unit vectors mean ~5.26, sd ~0.64 (affine map)."""
    path = os.environ.get("BENCH_AESTHETIC_HEAD")
    if not path or not os.path.isfile(path):
        pytest.skip("set BENCH_AESTHETIC_HEAD to sac+logos+ava1-l14-linearMSE.pth to run")
    from evaluators.scorers._weights import KNOWN_SHA256, load_torch_file
    from evaluators.scorers.aesthetic import AestheticHead

    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == KNOWN_SHA256["sac+logos+ava1-l14-linearMSE.pth"]
    head = AestheticHead()
    head.load_state_dict(load_torch_file(path), strict=True)
    x = torch.randn(20000, 768, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = head.eval()(x / x.norm(dim=-1, keepdim=True)).squeeze(-1)
    assert abs(y.mean().item() - 5.26) < 0.05 and abs(y.std().item() - 0.64) < 0.03
