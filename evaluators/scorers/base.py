"""The scorer interface (DESIGN.md principle 5): ``score(images, prompts) -> scores``.

A scorer is a thin adapter that declares ``name``, ``version`` (bumped whenever preprocessing or weights handling
change; part of the score cache key), ``higher_is_better``, its checkpoint identity and a one-line description of
its preprocessing, and owns that preprocessing. ``from_pretrained`` loads the weights once; the harness keeps one
instance per evaluation and calls :meth:`Scorer.score`, which batches internally.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from evaluators.scorers._weights import Checkpoint, MissingWeightsError

__all__ = ["Scorer", "MissingWeightsError", "Checkpoint", "clip_processor_pixels", "unique_prompts", "OPENAI_CLIP_MEAN",
           "OPENAI_CLIP_STD"]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Scorer:
    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    uses_prompt: ClassVar[bool] = True
    preprocessing: ClassVar[str] = ""
    default_source: ClassVar[str | None] = None

    def __init__(self, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 16, checkpoints: Sequence[Checkpoint] = ()):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device, self.dtype, self.batch_size = torch.device(device), dtype, int(batch_size)
        self.checkpoints = tuple(checkpoints)

    @classmethod
    def from_pretrained(cls, source: str | None = None, **kwargs) -> "Scorer":
        raise NotImplementedError

    # -- the one entry point ---------------------------------------------------------------------------------
    def score(self, images: Sequence[Image.Image], prompts: Sequence[str] | None = None) -> torch.Tensor:
        """One float64 score per image (on CPU), image i scored against prompt i."""
        return self._batched(self._score_batch, images, prompts)

    def raw_score(self, images: Sequence[Image.Image], prompts: Sequence[str] | None = None) -> torch.Tensor:
        """The uncalibrated score a reward model's labels are built from (``bench label``). The same as
        :meth:`score` unless a scorer scales its output (PickScore: the cosine without the logit scale)."""
        return self.score(images, prompts)

    @torch.no_grad()
    def _batched(self, fn, images: Sequence[Image.Image], prompts: Sequence[str] | None) -> torch.Tensor:
        images = list(images)
        if not all(isinstance(im, Image.Image) for im in images):
            raise TypeError(f"{self.name}: images must be PIL.Image.Image objects")
        if prompts is None:
            if self.uses_prompt:
                raise ValueError(f"{self.name} needs one prompt per image")
            prompts = [""] * len(images)
        prompts = list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"{self.name}: {len(images)} images but {len(prompts)} prompts")
        if not images:
            return torch.zeros(0, dtype=torch.float64)
        out = [fn(images[i:i + self.batch_size], prompts[i:i + self.batch_size]).double().cpu()
               for i in range(0, len(images), self.batch_size)]
        return torch.cat(out).reshape(-1)

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    # -- identity --------------------------------------------------------------------------------------------
    @property
    def cache_key(self) -> str:
        """name/version/sha256 prefixes of every weight file: changes with the code or the weights."""
        shas = "+".join((c.sha256 or c.source)[:16] for c in self.checkpoints)
        return f"{self.name}/{self.version}/{shas}"

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "higher_is_better": self.higher_is_better,
                "preprocessing": self.preprocessing, "checkpoints": [c.as_dict() for c in self.checkpoints],
                "dtype": str(self.dtype).replace("torch.", ""), "device": str(self.device)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r}, device={str(self.device)!r})"


def unique_prompts(prompts: list[str]) -> tuple[list[str], torch.Tensor]:
    """Distinct prompts (first-seen order) and, per item, the index of its prompt: encode each prompt once."""
    index: dict[str, int] = {}
    for p in prompts:
        index.setdefault(p, len(index))
    return list(index), torch.tensor([index[p] for p in prompts], dtype=torch.long)


def clip_processor_pixels(image: Image.Image, size: int = 224) -> torch.Tensor:
    """The CLIP image processor of the authors' era (transformers' PIL path), re-derived explicitly.

    convert("RGB") (alpha dropped, as transformers < 4.4x did; newer versions composite onto white) -> resize so
    the SHORTER side is ``size``, long side ``int(size * long / short)``, PIL bicubic on uint8 -> centre crop with
    top/left ``(extra) // 2`` -> /255 -> OpenAI CLIP mean/std. Returns float32 (3, size, size).
    """
    image = image.convert("RGB")
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample=Image.BICUBIC)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) * np.float32(1 / 255)).permute(2, 0, 1)
    mean = torch.tensor(OPENAI_CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(OPENAI_CLIP_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std
