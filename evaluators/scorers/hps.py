"""HPS v2 / v2.1 (Wu et al. 2023): open_clip ViT-H-14 fine-tuned on HPDv2.

Weights: ``xswu/HPSv2``, ``HPS_v2.1_compressed.pt`` (``hpsv21``) or ``HPS_v2_compressed.pt`` (``hpsv2``; the
hpsv2 package's default, not comparable with v2.1). The file is a dict whose ``'state_dict'`` has exactly the
686 keys of open_clip's ``ViT-H-14``; it is loaded strictly into a model created with ``pretrained=None`` (the
hpsv2 package first downloads the 3.9 GB LAION weights only to overwrite them).

Preprocessing (the authors' ``ResizeMaxSize`` eval transform), re-derived in :func:`hps_pixels`: RGB, ToTensor
FIRST, resize the float tensor so the LONGER side is 224 (bicubic, sizes ``round(side * 224 / longer)``,
``antialias=True`` by default: torchvision >= 0.17 behaviour; torchvision < 0.17, which the authors' 2023
numbers may have used, resized tensors WITHOUT antialiasing; pass ``antialias=False`` to reproduce that), pad
with 0 centred (left/top get ``floor(pad / 2)``), OpenAI mean/std; no crop. Differences from the authors' code:
RGBA is converted to RGB (theirs keeps 4 channels and fails), and an image whose longer side is already 224 is
still padded to a square (theirs skips padding and fails on non-square inputs).

Score = cosine of the L2-normalised image and text features, pair i with i, REPORTED x 100 (HPSv2.1 tables read
like the papers: about 23-32). The authors run under CUDA fp16 autocast; here the model runs in ``dtype``
(float32 by default), and features are compared in float32.
"""
from __future__ import annotations

import logging

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from evaluators.scorers._weights import checkpoint, load_torch_file, resolve_files
from evaluators.scorers.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Scorer, unique_prompts


def hps_pixels(image: Image.Image, size: int = 224, antialias: bool = True) -> torch.Tensor:
    x = TF.to_tensor(image.convert("RGB"))
    h, w = x.shape[-2:]
    scale = size / float(max(h, w))
    if scale != 1.0:
        x = TF.resize(x, [round(h * scale), round(w * scale)], interpolation=InterpolationMode.BICUBIC,
                      antialias=antialias)
    pad_h, pad_w = size - x.shape[-2], size - x.shape[-1]
    x = TF.pad(x, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return TF.normalize(x, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def create_open_clip(model_name: str, device="cpu"):
    """open_clip model with no pretrained weights. On the meta device it costs no memory or init time."""
    import open_clip

    quiet = _DropRandomInitWarning()  # open_clip warns "initialized randomly"; the weights come next
    logging.getLogger().addFilter(quiet)
    try:
        with torch.device(device):  # parameters are created on ``device`` directly (no CPU init first)
            return open_clip.create_model(model_name, pretrained=None, device=device)
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def load_open_clip_strict(model_name: str, state_dict: dict[str, torch.Tensor]):
    """Build ``model_name`` on the meta device and load ``state_dict`` into it strictly (``assign``: no random
    init, no copy). The one non-persistent buffer, the causal text mask, is rebuilt as open_clip builds it."""
    model = create_open_clip(model_name, device="meta")
    model.load_state_dict(state_dict, strict=True, assign=True)
    for name, buf in list(model.named_buffers()):
        if buf.device.type != "meta":
            continue
        if name != "attn_mask":
            raise RuntimeError(f"open_clip {model_name}: unexpected non-persistent buffer {name!r}")
        model.attn_mask = torch.full(tuple(buf.shape), float("-inf")).triu_(1)
    return model.float()


class HPSv21(Scorer):
    name = "hpsv21"
    version = "HPS_v2.1+maxside224-aa.1"
    higher_is_better = True
    default_source = "xswu/HPSv2"
    filename = "HPS_v2.1_compressed.pt"
    preprocessing = ("HPS ResizeMaxSize: RGB, ToTensor, longer side -> 224 bicubic on the tensor (antialias=True), "
                     "zero pad centred (floor left/top), OpenAI mean/std, no crop; open_clip tokenizer, 77")

    def __init__(self, model, tokenizer=None, *, antialias: bool = True, **kwargs):
        super().__init__(**kwargs)
        import open_clip

        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.tokenizer = tokenizer or open_clip.get_tokenizer("ViT-H-14")
        self.antialias = antialias
        if not antialias:  # a different preprocessing: a different cache key
            self.version = type(self).version.replace("-aa.", "-noaa.")
            self.preprocessing = type(self).preprocessing.replace("antialias=True", "antialias=False")

    @classmethod
    def from_pretrained(cls, source: str | None = None, *, model_name: str = "ViT-H-14", antialias: bool = True,
                        device="cpu", dtype: torch.dtype = torch.float32, batch_size: int = 16) -> "HPSv21":
        source = source or cls.default_source
        path = resolve_files(cls.name, source, [cls.filename])[cls.filename]
        ckpt = load_torch_file(path)
        state_dict = ckpt["state_dict"] if isinstance(ckpt, dict) and "state_dict" in ckpt else ckpt
        model = load_open_clip_strict(model_name, state_dict)
        return cls(model, antialias=antialias, device=device, dtype=dtype, batch_size=batch_size,
                   checkpoints=[checkpoint(source, cls.filename, path)])

    def _score_batch(self, images, prompts):
        pixels = torch.stack([hps_pixels(im, antialias=self.antialias) for im in images])
        texts, idx = unique_prompts(prompts)
        img = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=True).float()
        txt = self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True).float()
        return 100.0 * (img * txt[idx.to(self.device)]).sum(-1)


class HPSv2(HPSv21):
    name = "hpsv2"
    version = "HPS_v2+maxside224-aa.1"
    filename = "HPS_v2_compressed.pt"
