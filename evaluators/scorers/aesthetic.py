"""LAION aesthetic predictor v2 (Schuhmann, improved-aesthetic-predictor): ``sac+logos+ava1-l14-linearMSE``.

Backbone: OpenAI CLIP ViT-L/14 (transformers ``CLIPModel``, ``openai/clip-vit-large-patch14``), its 768-d
projected image embedding, L2-normalised. Head: ``layers.{0,2,4,6,7}`` = Linear 768-1024-128-64-16-1 with NO
activations (dropouts at 1, 3, 5 are identity at eval), loaded from the original ``.pth`` with
``torch.load(weights_only=True)``. Output on the 1-10 scale, prompts ignored.

Preprocessing: the CLIP ViT-L/14 image processor, as DiffusionDPO's ``aes_utils`` (shorter side 224 PIL bicubic,
centre crop 224 with offset ``(extra) // 2``, /255, OpenAI mean/std). The authors' ``simple_inference.py`` used
OpenAI ``clip.load`` preprocessing instead, whose crop offset is ``round(extra / 2)``: it can differ by one pixel
column/row on odd margins.

Head sources (``head=``): a local ``.pth``/``.safetensors`` file, a folder holding
``sac+logos+ava1-l14-linearMSE.pth`` (e.g. a clone of christophschuhmann/improved-aesthetic-predictor or
DiffusionDPO's ``utils/aesthetics_model``), or an HF repo. The default, the HF conversion
``shunk031/aesthetics-predictor-v2-sac-logos-ava1-l14-linearMSE`` (custom code, never executed here), stores the
same head as ``layers.*`` beside a ViT-L/14 vision tower in ``model.safetensors`` (``pytorch_model.bin`` as a
fallback): only its 10 ``layers.*`` tensors are read. That file is about 1.2 GB; the original ``.pth`` is 3.7 MB.
"""
from __future__ import annotations

import torch
from torch import nn

from evaluators.scorers._weights import (checkpoint, load_clip_model, load_state_dict_file, resolve_all,
                                         resolve_clip_files, resolve_first)
from evaluators.scorers.base import Scorer, clip_processor_pixels

HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"


class AestheticHead(nn.Module):
    """The LAION improved-aesthetic-predictor head: Linear(768,1024) Dropout Linear(1024,128) Dropout
    Linear(128,64) Dropout Linear(64,16) Linear(16,1), no activations (keys layers.{0,2,4,6,7}). ImageReward's
    reward head (``mlp.layers``) is the same module."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


class Aesthetic(Scorer):
    name = "aesthetic"
    version = "sac+logos+ava1-l14-linearMSE+clip224pil.1"
    higher_is_better = True
    uses_prompt = False
    default_source = "openai/clip-vit-large-patch14"
    default_head = "shunk031/aesthetics-predictor-v2-sac-logos-ava1-l14-linearMSE"
    preprocessing = ("CLIP ViT-L/14 processor: RGB (alpha dropped), shortest side 224 PIL bicubic, centre crop 224 "
                     "(offset (extra)//2), /255, OpenAI mean/std; L2-normalised 768-d projection -> linear MLP")

    def __init__(self, clip_model, head: AestheticHead, **kwargs):
        super().__init__(**kwargs)
        self.model = clip_model.eval().to(device=self.device, dtype=self.dtype)
        self.head = head.eval().to(device=self.device, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, source: str | None = None, *, head: str | None = None, head_file: str | None = None,
                        device="cpu", dtype: torch.dtype = torch.float32, batch_size: int = 16) -> "Aesthetic":
        source, head = source or cls.default_source, head or cls.default_head
        names = [head_file] if head_file else ["model.safetensors", "pytorch_model.bin"] if head == cls.default_head \
            else [HEAD_FILE]
        (head_file, path), files = resolve_all(cls.name, lambda: resolve_first(cls.name, head, names),
                                               lambda: resolve_clip_files(cls.name, source))
        model = AestheticHead()
        model.load_state_dict(load_state_dict_file(path, prefix="layers."), strict=True)
        clip, ckpt = load_clip_model(cls.name, source, files)
        return cls(clip, model, device=device, dtype=dtype, batch_size=batch_size,
                   checkpoints=[ckpt, checkpoint(head, head_file, path)])

    def _score_batch(self, images, prompts):
        pixels = torch.stack([clip_processor_pixels(im) for im in images]).to(self.device, self.dtype)
        emb = self.model.get_image_features(pixel_values=pixels)
        emb = (emb if isinstance(emb, torch.Tensor) else emb.pooler_output).float()
        return self.head(emb / emb.norm(dim=-1, keepdim=True)).squeeze(-1)
