"""Tiny random-weight stand-ins for the scorers' original files, written to disk in the original layouts.

Nothing is downloaded: CLIP tokenizers come from open_clip's bundled BPE, the BERT vocabulary is written here,
models are built from small configs. ``original_*_keys`` enumerate the ORIGINAL checkpoints' key names and shapes
from the authors' published module structure (BLIP ``vit.py``/``med.py``/``blip_pretrain.py`` + ImageReward's
``MLP``; open_clip's ``VisionTransformer``/``TextTransformer``), written independently of the scorer code.
"""
from __future__ import annotations

import copy
import json
import os
import string
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_OPEN_CLIP = "bench-tiny-hps"
_TINY_OPEN_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
BERT_WORDS = "a an the photo of cat dog on in with red blue mars horse astronaut riding painting , . !".split()


def images(seed: int = 0) -> list[Image.Image]:
    """Non-square, square, odd-sized, RGBA and greyscale images."""
    rng = np.random.default_rng(seed)
    out = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
           [(100, 300), (300, 100), (224, 224), (97, 301), (512, 384)]]
    out.append(Image.fromarray(rng.integers(0, 256, (150, 260, 4), dtype=np.uint8), "RGBA"))
    out.append(Image.fromarray(rng.integers(0, 256, (120, 90), dtype=np.uint8), "L"))
    return out


PROMPTS = ["a photo of a cat", "An astronaut riding a horse on Mars!", "dog " * 60, "painting, red blue",
           "zzz qqq", "a photo of a cat", "x"]


def randomise_(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter (biases and LayerNorms included) so nothing sits at a trivial init value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


# ---- CLIP (PickScore, aesthetic) --------------------------------------------------------------------------------
def tiny_clip_model(projection_dim: int = 16, seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    cfg = CLIPConfig(text_config=dict(small, vocab_size=49408, max_position_embeddings=77),
                     vision_config=dict(small, image_size=224, patch_size=32), projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = randomise_(CLIPModel(cfg), seed).eval()
    with torch.no_grad():
        model.logit_scale.fill_(4.0)  # exp = 54.6: not the init value, so a missing scale would show
    return model


def save_clip_dir(path: Path, model) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    return path


def save_clip_tokenizer(path: Path, tokenizer_json: bool = False) -> Path:
    """The laion/openai repo layout (vocab.json + merges.txt), or transformers' tokenizer.json."""
    from evaluators.scorers.clip_tokenizer import build_clip_tokenizer, write_clip_tokenizer_files

    if not tokenizer_json:
        return write_clip_tokenizer_files(path)
    path.mkdir(parents=True, exist_ok=True)
    build_clip_tokenizer().save_pretrained(path)
    assert (path / "tokenizer.json").is_file()
    return path


# ---- open_clip (HPS) ------------------------------------------------------------------------------------------
def register_tiny_open_clip() -> str:
    import open_clip.factory as f

    f._MODEL_CONFIGS.setdefault(TINY_OPEN_CLIP, copy.deepcopy(_TINY_OPEN_CLIP_CFG))
    return TINY_OPEN_CLIP


def tiny_open_clip(seed: int = 0):
    import open_clip

    register_tiny_open_clip()
    torch.manual_seed(seed)
    return randomise_(open_clip.create_model(TINY_OPEN_CLIP, pretrained=None), seed).eval()


def original_open_clip_keys(vision_layers=32, vision_width=1280, patch=14, image=224, text_layers=24, text_width=1024,
                            embed_dim=1024, vocab=49408, ctx=77) -> dict[str, tuple]:
    """open_clip CLIP (ViT-H-14 by default) state-dict keys and shapes, as in the HPS checkpoint."""
    def blocks(prefix, n, w):
        out = {}
        for i in range(n):
            b = f"{prefix}transformer.resblocks.{i}."
            out.update({b + "ln_1.weight": (w,), b + "ln_1.bias": (w,), b + "attn.in_proj_weight": (3 * w, w),
                        b + "attn.in_proj_bias": (3 * w,), b + "attn.out_proj.weight": (w, w),
                        b + "attn.out_proj.bias": (w,), b + "ln_2.weight": (w,), b + "ln_2.bias": (w,),
                        b + "mlp.c_fc.weight": (4 * w, w), b + "mlp.c_fc.bias": (4 * w,),
                        b + "mlp.c_proj.weight": (w, 4 * w), b + "mlp.c_proj.bias": (w,)})
        return out

    v, grid = "visual.", (image // patch) ** 2
    keys = {"positional_embedding": (ctx, text_width), "text_projection": (text_width, embed_dim), "logit_scale": (),
            v + "class_embedding": (vision_width,), v + "positional_embedding": (grid + 1, vision_width),
            v + "proj": (vision_width, embed_dim), v + "conv1.weight": (vision_width, 3, patch, patch),
            v + "ln_pre.weight": (vision_width,), v + "ln_pre.bias": (vision_width,),
            v + "ln_post.weight": (vision_width,), v + "ln_post.bias": (vision_width,),
            "token_embedding.weight": (vocab, text_width), "ln_final.weight": (text_width,),
            "ln_final.bias": (text_width,)}
    keys.update(blocks(v, vision_layers, vision_width))
    keys.update(blocks("", text_layers, text_width))
    return keys


def save_hps_checkpoint(path: Path, model, filename: str = "HPS_v2.1_compressed.pt") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, path / filename)
    return path / filename


# ---- ImageReward ----------------------------------------------------------------------------------------------
def write_bert_vocab(path: Path) -> Path:
    """A tiny uncased WordPiece vocabulary ([PAD] is id 0 like bert-base-uncased) + tokenizer_config."""
    path.mkdir(parents=True, exist_ok=True)
    words = sorted(set(BERT_WORDS) | set(string.ascii_lowercase))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + ["##" + c for c in string.ascii_lowercase]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return path


def bert_vocab_size(path: Path) -> int:
    return len((path / "vocab.txt").read_text().split("\n")) - 1


def original_imagereward_keys(vision_width=1024, vision_depth=24, patch=16, image=224, hidden=768, layers=12,
                              intermediate=3072, vocab=30524, max_pos=512, proj=256, head_in=768) -> dict[str, tuple]:
    """ImageReward.pt keys and shapes from the published structure: ImageReward(blip=BLIP_Pretrain(vit='large'),
    mlp=MLP(768)); BLIP_Pretrain = visual_encoder (VisionTransformer) + text_encoder (med BertModel, no pooler)
    + vision_proj + text_proj. 625 keys at full size."""
    v, w = "blip.visual_encoder.", vision_width
    keys = {v + "cls_token": (1, 1, w), v + "pos_embed": (1, (image // patch) ** 2 + 1, w),
            v + "patch_embed.proj.weight": (w, 3, patch, patch), v + "patch_embed.proj.bias": (w,),
            v + "norm.weight": (w,), v + "norm.bias": (w,)}
    for i in range(vision_depth):
        b = f"{v}blocks.{i}."
        keys.update({b + "norm1.weight": (w,), b + "norm1.bias": (w,), b + "attn.qkv.weight": (3 * w, w),
                     b + "attn.qkv.bias": (3 * w,), b + "attn.proj.weight": (w, w), b + "attn.proj.bias": (w,),
                     b + "norm2.weight": (w,), b + "norm2.bias": (w,), b + "mlp.fc1.weight": (4 * w, w),
                     b + "mlp.fc1.bias": (4 * w,), b + "mlp.fc2.weight": (w, 4 * w), b + "mlp.fc2.bias": (w,)})
    t, h = "blip.text_encoder.", hidden
    keys.update({t + "embeddings.position_ids": (1, max_pos), t + "embeddings.word_embeddings.weight": (vocab, h),
                 t + "embeddings.position_embeddings.weight": (max_pos, h),
                 t + "embeddings.LayerNorm.weight": (h,), t + "embeddings.LayerNorm.bias": (h,)})
    for i in range(layers):
        b = f"{t}encoder.layer.{i}."
        for att, kv in (("attention", h), ("crossattention", w)):
            keys.update({f"{b}{att}.self.query.weight": (h, h), f"{b}{att}.self.query.bias": (h,),
                         f"{b}{att}.self.key.weight": (h, kv), f"{b}{att}.self.key.bias": (h,),
                         f"{b}{att}.self.value.weight": (h, kv), f"{b}{att}.self.value.bias": (h,),
                         f"{b}{att}.output.dense.weight": (h, h), f"{b}{att}.output.dense.bias": (h,),
                         f"{b}{att}.output.LayerNorm.weight": (h,), f"{b}{att}.output.LayerNorm.bias": (h,)})
        keys.update({b + "intermediate.dense.weight": (intermediate, h), b + "intermediate.dense.bias": (intermediate,),
                     b + "output.dense.weight": (h, intermediate), b + "output.dense.bias": (h,),
                     b + "output.LayerNorm.weight": (h,), b + "output.LayerNorm.bias": (h,)})
    keys.update({"blip.vision_proj.weight": (proj, w), "blip.vision_proj.bias": (proj,),
                 "blip.text_proj.weight": (proj, h), "blip.text_proj.bias": (proj,)})
    dims = [head_in, 1024, 128, 64, 16, 1]
    for i, (a, b_) in zip((0, 2, 4, 6, 7), zip(dims, dims[1:])):
        keys.update({f"mlp.layers.{i}.weight": (b_, a), f"mlp.layers.{i}.bias": (b_,)})
    return keys


TINY_IR = dict(vision_width=32, vision_depth=2, hidden=32, layers=2, intermediate=64, max_pos=40, proj=8, head_in=32)


def tiny_imagereward_state_dict(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the ORIGINAL key names (tiny dims), LayerNorm weights near 1, position_ids = arange."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in original_imagereward_keys(vocab=vocab, **TINY_IR).items():
        if k.endswith("position_ids"):
            sd[k] = torch.arange(shape[1])[None]
        elif ("norm" in k.lower()) and k.endswith("weight"):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            std = 0.3 if k.startswith("mlp.") else 0.05 if len(shape) > 1 else 0.1
            sd[k] = std * torch.randn(shape, generator=g)
    return sd


def tiny_imagereward_config(vocab: int):
    from evaluators.scorers.imagereward import ImageRewardConfig

    t = TINY_IR
    return ImageRewardConfig(vision_width=t["vision_width"], vision_depth=t["vision_depth"], vision_heads=2,
                             vocab_size=vocab, hidden_size=t["hidden"], num_layers=t["layers"], num_heads=2,
                             intermediate_size=t["intermediate"], max_position_embeddings=t["max_pos"])


# ---- a fake Hugging Face cache (offline resolution of repo ids) -------------------------------------------------
def put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str = "0" * 40) -> None:
    """Lay files out as huggingface_hub does: blobs named by sha256, snapshot symlinks, refs/main."""
    import hashlib

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, src in files.items():
        data = Path(src).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
