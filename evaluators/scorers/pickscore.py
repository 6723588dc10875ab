"""PickScore (Kirstain et al. 2023): CLIP ViT-H/14 fine-tuned on Pick-a-Pic.

Weights: transformers ``CLIPModel`` from ``yuvalkirstain/PickScore_v1``; tokenizer from the processor repo
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (as in the authors' README). Score = ``logit_scale.exp()`` (learned,
about 100) x cosine of the L2-normalised image and text embeddings, image i against prompt i. :meth:`cosine`
returns the raw cosine (SmPO's labels and DiffusionDPO's evaluation use it).
"""
from __future__ import annotations

import os

import torch

from evaluators.scorers._weights import load_clip_model, resolve_all, resolve_clip_files, resolve_files, resolve_first
from evaluators.scorers.base import Scorer, clip_processor_pixels, unique_prompts


def _features(out) -> torch.Tensor:
    """transformers 5 returns BaseModelOutputWithPooling from get_*_features; 4.x returns the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class PickScore(Scorer):
    name = "pickscore"
    version = "PickScore_v1+clip224pil.1"
    higher_is_better = True
    default_source = "yuvalkirstain/PickScore_v1"
    default_processor = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    preprocessing = ("CLIP processor: RGB (alpha dropped), shortest side 224 PIL bicubic, centre crop 224 (offset "
                     "(extra)//2), /255, OpenAI mean/std; CLIP BPE, padding, truncation at 77")

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(**kwargs)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, source: str | None = None, *, processor: str | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, batch_size: int = 16) -> "PickScore":
        from transformers import CLIPTokenizer

        source = source or cls.default_source
        processor = processor or cls.default_processor
        # tokenizer.json, or the vocab.json + merges.txt pair; the small config files come along when present
        def tokenizer_files():
            first, path = resolve_first(cls.name, processor, ["tokenizer.json", "vocab.json"])
            resolve_files(cls.name, processor, [] if first == "tokenizer.json" else ["merges.txt"],
                          optional=("tokenizer_config.json", "special_tokens_map.json"))
            return os.path.dirname(path)

        folder, files = resolve_all(cls.name, tokenizer_files, lambda: resolve_clip_files(cls.name, source))
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        model, ckpt = load_clip_model(cls.name, source, files)
        return cls(model, tokenizer, device=device, dtype=dtype, batch_size=batch_size, checkpoints=[ckpt])

    def _embed(self, images, prompts):
        pixels = torch.stack([clip_processor_pixels(im) for im in images]).to(self.device, self.dtype)
        img = _features(self.model.get_image_features(pixel_values=pixels)).float()
        texts, idx = unique_prompts(prompts)
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.device)
        txt = _features(self.model.get_text_features(input_ids=tok["input_ids"],
                                                     attention_mask=tok["attention_mask"])).float()
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        return img, txt[idx.to(self.device)]

    def _cosine_batch(self, images, prompts):
        img, txt = self._embed(images, prompts)
        return (img * txt).sum(-1)

    def _score_batch(self, images, prompts):
        return self.model.logit_scale.float().exp() * self._cosine_batch(images, prompts)

    def cosine(self, images, prompts) -> torch.Tensor:
        """Raw cosine similarity (no logit scale), one per (image, prompt) pair, float64 on CPU."""
        return self._batched(self._cosine_batch, images, prompts)

    raw_score = cosine  # SmPO's labels: the cosine, normalised with the authors' bounds
