"""ImageReward (Xu et al. 2023): BLIP ViT-L/16 + BERT-base with cross-attention + a linear MLP head.

Re-implemented here in plain PyTorch (the ``image-reward`` package pins timm 0.6 and breaks on transformers 5;
transformers' BertModel cannot take 1024-wide cross-attention inputs nor drop token-type embeddings), with the
original module names, so ``ImageReward.pt`` (``THUDM/ImageReward``) loads STRICTLY through
:func:`map_original_state_dict` (the authors load ``strict=False``).

Forward, as the authors' ``ImageReward.score``: image -> Resize(224, bicubic, shorter side) on the PIL image in
its own mode -> CenterCrop(224) (torchvision: offset ``round(extra / 2)``) -> RGB -> ToTensor -> OpenAI mean/std
-> ViT (all tokens, final LayerNorm). Prompt -> ``bert-base-uncased`` with ``[DEC]`` as bos and ``[ENC]`` as an
extra special token (vocab 30524), ``padding='max_length'``, truncation, ``max_length=35``; the first token stays
``[CLS]`` (the authors do not substitute ``[ENC]``). BERT self-attends with the padding mask (additive -10000)
and cross-attends to every ViT token (all-ones mask); ``last_hidden_state[:, 0]`` in float32 -> MLP
768-1024-128-64-16-1 (no activations; dropouts are identity at eval) -> ``(r - 0.16717362830052426) /
1.0333394966054072``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode

from evaluators.scorers._weights import checkpoint, load_torch_file, resolve_all, resolve_files
from evaluators.scorers.aesthetic import AestheticHead
from evaluators.scorers.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Scorer

REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072


@dataclass(frozen=True)
class ImageRewardConfig:
    """Defaults = BLIP ``vit='large'`` at 224 px + the published ``med_config.json`` (encoder_width set to 1024)."""

    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 1024
    vision_depth: int = 24
    vision_heads: int = 16
    vocab_size: int = 30524
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    pad_token_id: int = 0


# ---- BLIP vision transformer (timm-style names: patch_embed.proj, blocks.i.attn.qkv, ...) ----------------------
class _ViTAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _ViTMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _ViTBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = _ViTAttention(dim, heads), _ViTMlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class BlipVisionTransformer(nn.Module):
    def __init__(self, cfg: ImageRewardConfig):
        super().__init__()
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = _PatchEmbed(cfg.patch_size, cfg.vision_width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.vision_width))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, cfg.vision_width))
        self.blocks = nn.ModuleList([_ViTBlock(cfg.vision_width, cfg.vision_heads) for _ in range(cfg.vision_depth)])
        self.norm = nn.LayerNorm(cfg.vision_width, eps=1e-6)

    def forward(self, pixels):
        x = self.patch_embed(pixels)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed[:, :x.shape[1] + 1]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


# ---- BLIP "med" BERT: no token-type embeddings, cross-attention keys/values from the 1024-wide ViT -----------------
class _BertSelfAttention(nn.Module):
    def __init__(self, hidden, heads, kv_width):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key, self.value = nn.Linear(kv_width, hidden), nn.Linear(kv_width, hidden)

    def forward(self, x, context, additive_mask):
        b = x.shape[0]
        split = lambda t: t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(context)), split(self.value(context))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask)
        return out.transpose(1, 2).reshape(b, x.shape[1], -1)


class _DenseNorm(nn.Module):  # BertSelfOutput / BertOutput: LayerNorm(dense(x) + residual)
    def __init__(self, d_in, hidden):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(d_in, hidden), nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _BertAttention(nn.Module):
    def __init__(self, hidden, heads, kv_width):
        super().__init__()
        self.self, self.output = _BertSelfAttention(hidden, heads, kv_width), _DenseNorm(hidden, hidden)

    def forward(self, x, context, additive_mask):
        return self.output(self.self(x, context, additive_mask), x)


class _Dense(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)

    def forward(self, x):
        return F.gelu(self.dense(x))


class _BertLayer(nn.Module):
    def __init__(self, cfg: ImageRewardConfig):
        super().__init__()
        h = cfg.hidden_size
        self.attention = _BertAttention(h, cfg.num_heads, h)
        self.crossattention = _BertAttention(h, cfg.num_heads, cfg.vision_width)
        self.intermediate = _Dense(h, cfg.intermediate_size)
        self.output = _DenseNorm(cfg.intermediate_size, h)

    def forward(self, x, self_mask, image_embeds, cross_mask):
        x = self.attention(x, x, self_mask)
        x = self.crossattention(x, image_embeds, cross_mask)
        return self.output(self.intermediate(x), x)


class _BertEmbeddings(nn.Module):
    def __init__(self, cfg: ImageRewardConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(pos)[None])


class _BertEncoder(nn.Module):
    def __init__(self, cfg: ImageRewardConfig):
        super().__init__()
        self.layer = nn.ModuleList([_BertLayer(cfg) for _ in range(cfg.num_layers)])


class BlipTextEncoder(nn.Module):
    """BERT encoder in BLIP's 'multimodal' mode: bidirectional self-attention, then cross-attention, per layer."""

    def __init__(self, cfg: ImageRewardConfig):
        super().__init__()
        self.embeddings, self.encoder = _BertEmbeddings(cfg), _BertEncoder(cfg)

    def forward(self, input_ids, attention_mask, image_embeds):
        x = self.embeddings(input_ids)
        self_mask = ((1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0)
        for layer in self.encoder.layer:  # image mask is all ones: nothing to add in cross-attention
            x = layer(x, self_mask, image_embeds, None)
        return x


#: ``mlp.layers``: the same affine 768-1024-128-64-16-1 head as LAION's aesthetic predictor (the ReLUs are commented
#: out in the authors' code), so one module serves both.
RewardHead = AestheticHead


class ImageRewardModel(nn.Module):
    def __init__(self, cfg: ImageRewardConfig = ImageRewardConfig()):
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = BlipVisionTransformer(cfg)
        self.text_encoder = BlipTextEncoder(cfg)
        self.mlp = RewardHead(cfg.hidden_size)

    def forward(self, pixels, input_ids, attention_mask):
        """Raw reward (before z-normalisation), shape (B,)."""
        image_embeds = self.visual_encoder(pixels)
        text = self.text_encoder(input_ids, attention_mask, image_embeds)
        head_dtype = self.mlp.layers[0].weight.dtype
        return self.mlp(text[:, 0].float().to(head_dtype)).float().squeeze(-1)


# ---- the original checkpoint's keys -> this module's keys -----------------------------------------------------------
_PREFIX_MAP = {"blip.visual_encoder.": "visual_encoder.", "blip.text_encoder.": "text_encoder.", "mlp.": "mlp."}
_UNUSED = ("blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias")
_POSITION_IDS = "blip.text_encoder.embeddings.position_ids"


def map_original_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``ImageReward.pt`` keys for :class:`ImageRewardModel`.

    ``blip.visual_encoder.*`` -> ``visual_encoder.*``, ``blip.text_encoder.*`` -> ``text_encoder.*``, ``mlp.*``
    kept. Dropped on purpose: BLIP's contrastive projections ``blip.{vision,text}_proj.*`` (not used by the reward)
    and the ``position_ids`` buffer (checked to be 0..n-1; positions are recomputed). Any other key is an error,
    and :meth:`torch.nn.Module.load_state_dict` with ``strict=True`` then catches missing ones.
    """
    out, unknown = {}, []
    for key, value in sd.items():
        if key in _UNUSED:
            continue
        if key == _POSITION_IDS:
            if value.device.type != "meta" and not torch.equal(value.reshape(-1).long(),
                                                                torch.arange(value.numel())):
                raise ValueError(f"{key} is not 0..{value.numel() - 1}; refusing to drop it")
            continue
        for old, new in _PREFIX_MAP.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        more = " ..." if len(unknown) > 10 else ""
        raise KeyError(f"ImageReward checkpoint has unexpected keys: {unknown[:10]}{more}")
    return out


def imagereward_pixels(image: Image.Image, size: int = 224) -> torch.Tensor:
    """The authors' transform: Resize (shorter side, bicubic, PIL, in the image's own mode) -> CenterCrop ->
    convert('RGB') -> ToTensor -> OpenAI mean/std."""
    image = TF.center_crop(TF.resize(image, size, interpolation=InterpolationMode.BICUBIC), size)
    return TF.normalize(TF.to_tensor(image.convert("RGB")), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def build_blip_tokenizer(vocab_file: str):
    """bert-base-uncased WordPiece + ``[DEC]`` (bos) + ``[ENC]`` (an additional special token), as BLIP's
    ``init_tokenizer``."""
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab_file, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


class ImageReward(Scorer):
    name = "imagereward"
    version = "ImageReward-v1.0+blip224.1"
    higher_is_better = True
    default_source = "THUDM/ImageReward"
    default_tokenizer = "bert-base-uncased"
    filename = "ImageReward.pt"
    preprocessing = ("ImageReward: Resize 224 shorter side bicubic (PIL, own mode), CenterCrop 224 (round offset), "
                     "RGB, ToTensor, OpenAI mean/std; bert-base-uncased+[DEC]+[ENC], max_length 35, [CLS] kept; "
                     "z = (r - 0.16717362830052426) / 1.0333394966054072")

    def __init__(self, model: ImageRewardModel, tokenizer, **kwargs):
        super().__init__(**kwargs)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.model.mlp.float()  # the head runs in float32, as the authors' .float() before it
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, source: str | None = None, *, tokenizer: str | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, batch_size: int = 16,
                        config: ImageRewardConfig = ImageRewardConfig()) -> "ImageReward":
        source, tokenizer = source or cls.default_source, tokenizer or cls.default_tokenizer
        path, vocab = resolve_all(cls.name, lambda: resolve_files(cls.name, source, [cls.filename])[cls.filename],
                                  lambda: resolve_files(cls.name, tokenizer, ["vocab.txt"])["vocab.txt"])
        with torch.device("meta"):
            model = ImageRewardModel(config)
        model.load_state_dict(map_original_state_dict(load_torch_file(path)), strict=True, assign=True)
        return cls(model.float(), build_blip_tokenizer(vocab), device=device, dtype=dtype, batch_size=batch_size,
                   checkpoints=[checkpoint(source, cls.filename, path), checkpoint(tokenizer, "vocab.txt", vocab)])

    def _score_batch(self, images, prompts):
        pixels = torch.stack([imagereward_pixels(im) for im in images]).to(self.device, self.dtype)
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        raw = self.model(pixels, tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))
        return (raw - REWARD_MEAN) / REWARD_STD

