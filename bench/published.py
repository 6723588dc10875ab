"""The published preference-aligned checkpoints, registered as models (``bench ls models``; ``bench scoreboard``).

Each entry names the Hub repository, its file layout, the base model it goes on, the method, the paper and the
licence, and where the id and layout were checked (``reference``). Most releases are a UNet only; they are loaded
into their base model's pipeline (:func:`bench.models.apply_checkpoint`), so the scheduler, text encoders and VAE
are the base model's (the evaluation protocol then sets the sampler and, for SDXL, the VAE for every model alike).

Layouts as the authors publish them (checked against their READMEs, example code and the Hub's file trees; the
entries marked "layout unverified" follow the authors' training code, which saves a diffusers UNet folder, and
third-party loaders, since the Hub page itself could not be read from here):

========================  =========================================================  ==========================
name                      repository                                                 layout
========================  =========================================================  ==========================
dpo-sd15 / dpo-sdxl       mhdang/dpo-sd1.5-text2image-v1 / mhdang/dpo-sdxl-...-v1     unet/ (fp32 safetensors)
mapo-sdxl                 mapo-t2i/mapo-beta                                         UNet at the root (fp32)
kto-sd15                  jacklishufan/diffusion-kto                                 unet/
smpo-sd15 / smpo-sdxl     JaydenLu666/SmPO-SD1.5 / JaydenLu666/SmPO-SDXL             unet/ (layout unverified)
inpo-sd15 / inpo-sdxl     JaydenLu666/InPO-SD1.5 / JaydenLu666/InPO-SDXL             unet/ (layout unverified)
spo-sd15 / spo-sdxl       SPO-Diffusion-Models/SPO-SD-v1-5_4k-p_10ep / SPO-SDXL_...  full pipeline
spo-sd15-lora / -sdxl-    SPO-Diffusion-Models/..._LoRA                              one LoRA file
========================  =========================================================  ==========================

A missing checkpoint (offline, not in the hub cache) raises :class:`bench.models.MissingWeightsError` naming the
files and the ``hf download`` command that fetches them.
"""
from __future__ import annotations

from bench.models import MODELS, Checkpoint, ModelSpec, published_checkpoint

DPO = ("Diffusion Model Alignment Using Direct Preference Optimization (Wallace et al., CVPR 2024, arXiv "
       "2311.12908)")
MAPO = ("Margin-aware Preference Optimization for Aligning Diffusion Models without Reference (Hong et al., arXiv "
        "2406.06424)")
KTO = "Aligning Diffusion Models by Optimizing Human Utility (Li et al., NeurIPS 2024, arXiv 2404.04465)"
SMPO = ("Smoothed Preference Optimization via ReNoise Inversion for Aligning Diffusion Models with Varied Human "
        "Preferences (Lu et al., ICML 2025, arXiv 2506.02698)")
INPO = ("InPO: Inversion Preference Optimization with Reparametrized DDIM for Efficient Diffusion Model Alignment "
        "(Lu et al., CVPR 2025, arXiv 2503.18454)")
SPO = ("Aesthetic Post-Training Diffusion Models from Generic Preferences with Step-by-step Preference "
       "Optimization (Liang et al., CVPR 2025, arXiv 2406.04314)")

DPO_GH = "github.com/SalesforceAIResearch/DiffusionDPO README and quick_samples.ipynb (subfolder='unet')"
SMPO_GH = "github.com/JaydenLyh/SmPO README 'Our Models'; layout unverified (the training code saves unet/)"
INPO_GH = "github.com/JaydenLyh/InPO README 'Our Models'; layout unverified (the training code saves unet/)"
SPO_GH = "github.com/RockeyCoss/SPO README and inference_scripts/"

PUBLISHED: list[tuple[str, Checkpoint, str]] = [
    ("dpo-sd15", Checkpoint("sd15", "mhdang/dpo-sd1.5-text2image-v1", "unet", "dpo", DPO, "openrail++",
                            DPO_GH, subfolder="unet"), "Diffusion-DPO on SD1.5 (Pick-a-Pic v2)"),
    ("dpo-sdxl", Checkpoint("sdxl", "mhdang/dpo-sdxl-text2image-v1", "unet", "dpo", DPO, "openrail++",
                            DPO_GH, subfolder="unet"), "Diffusion-DPO on SDXL (Pick-a-Pic v2)"),
    ("mapo-sdxl", Checkpoint("sdxl", "mapo-t2i/mapo-beta", "unet", "mapo", MAPO, "openrail++",
                             "github.com/mapo-t2i/mapo README 'Inference' (UNet2DConditionModel.from_pretrained("
                             "'mapo-t2i/mapo-beta'), no subfolder; VAE madebyollin/sdxl-vae-fp16-fix)"),
     "MaPO on SDXL (Pick-a-Pic v2)"),
    ("kto-sd15", Checkpoint("sd15", "jacklishufan/diffusion-kto", "unet", "kto", KTO, "not stated",
                            "github.com/jacklishufan/diffusion-kto README 'Usage' (subfolder='unet'); re-released "
                            "2024-08-21", subfolder="unet"), "Diffusion-KTO on SD1.5 (Pick-a-Pic v2)"),
    ("smpo-sd15", Checkpoint("sd15", "JaydenLu666/SmPO-SD1.5", "unet", "smpo", SMPO, "not stated (code: Apache-2.0)",
                             SMPO_GH, subfolder="unet"), "SmPO-Diffusion on SD1.5 (Pick-a-Pic v2)"),
    ("smpo-sdxl", Checkpoint("sdxl", "JaydenLu666/SmPO-SDXL", "unet", "smpo", SMPO, "not stated (code: Apache-2.0)",
                             SMPO_GH, subfolder="unet"), "SmPO-Diffusion on SDXL (Pick-a-Pic v2)"),
    ("inpo-sd15", Checkpoint("sd15", "JaydenLu666/InPO-SD1.5", "unet", "inpo", INPO, "not stated (code: Apache-2.0)",
                             INPO_GH, subfolder="unet"), "DDIM-InPO on SD1.5 (Pick-a-Pic v2)"),
    ("inpo-sdxl", Checkpoint("sdxl", "JaydenLu666/InPO-SDXL", "unet", "inpo", INPO, "not stated (code: Apache-2.0)",
                             INPO_GH, subfolder="unet"), "DDIM-InPO on SDXL (Pick-a-Pic v2)"),
    ("spo-sd15", Checkpoint("sd15", "SPO-Diffusion-Models/SPO-SD-v1-5_4k-p_10ep", "pipeline", "spo", SPO,
                            "apache-2.0", SPO_GH + " (full pipeline)"), "SPO on SD1.5 (4k prompts, 10 epochs)"),
    ("spo-sdxl", Checkpoint("sdxl", "SPO-Diffusion-Models/SPO-SDXL_4k-p_10ep", "pipeline", "spo", SPO, "apache-2.0",
                            SPO_GH + " (full pipeline, fp16 weights)"), "SPO on SDXL (4k prompts, 10 epochs)"),
    ("spo-sd15-lora", Checkpoint("sd15", "SPO-Diffusion-Models/SPO-SD-v1-5_4k-p_10ep_LoRA", "lora", "spo", SPO,
                                 "apache-2.0", SPO_GH + " (LoRA)",
                                 weight_name="spo-sd-v1-5_4k-p_10ep_lora_diffusers.safetensors"),
     "SPO on SD1.5, LoRA release"),
    ("spo-sdxl-lora", Checkpoint("sdxl", "SPO-Diffusion-Models/SPO-SDXL_4k-p_10ep_LoRA", "lora", "spo", SPO,
                                 "apache-2.0", SPO_GH + " (LoRA)",
                                 weight_name="spo_sdxl_10ep_4k-data_lora_diffusers.safetensors"),
     "SPO on SDXL, LoRA release"),
]


def register() -> None:
    for name, ckpt, description in PUBLISHED:
        base = MODELS.get(ckpt.base)
        MODELS.register(name, ModelSpec(name, ckpt.repo, base.family, base.resolution, description, vae=base.vae,
                                        checkpoint=ckpt))


def published_of(base: str) -> list[str]:
    """The registered published checkpoints on base model ``base``, in registry order."""
    return [n for n in MODELS.names() if getattr(published_checkpoint(n), "base", None) == base]
