"""Base models: a registry of named models, loading of diffusers folders / hub ids, tiny models built from config,
and text conditioning (SD1.5: last hidden state; SDXL: both encoders' penultimate states + pooled + time ids).

Real weights are never faked: when a model's files are not available offline, :class:`MissingWeightsError` says which
files are missing and how to get them. Tiny models are built from config with a fixed seed and materialised once as
a real diffusers folder (``StableDiffusionPipeline.from_pretrained`` loads it), so the real loading path runs in tests.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.exact import MODEL_DIR as EXACT_MODEL_DIR
from bench.toy import MODEL_DIR as TOY_MODEL_DIR
from bench_common import Registry, atomic_write_text, dtype_kwarg
from evaluators.scorers._weights import file_sha256
from methods.base import Cond


class MissingWeightsError(FileNotFoundError):
    """A model's weight files are not available locally. The message names them and how to get them."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # hub id, or "built:<name>" for tiny models
    family: str  # "sd15" | "sdxl" | "tiny" (preset family)
    resolution: int
    description: str
    vae: str | None = None  # recommended VAE replacement (not applied unless asked)
    builder: Callable[[Path], None] | None = None
    missing_hint: str | None = None  # how to get the files when a shipped local model is absent
    world: str = "diffusers"  # the bench.worlds.World that loads, trains and evaluates it
    marker: str = "model_index.json"  # the file whose presence means a local model is there
    note: str | None = None  # printed when a run starts on this model (what its numbers mean)
    checkpoint: "Checkpoint | None" = None  # published aligned weights on a registered base (bench/published.py)


@dataclass(frozen=True)
class Checkpoint:
    """Published aligned weights that go on a registered base model (registered in bench/published.py).

    ``layout``: "unet" (a diffusers UNet folder at ``subfolder`` of the repository, "" = its root), "lora" (the LoRA
    file ``weight_name``) or "pipeline" (a full diffusers pipeline; only its own files are used)."""
    base: str
    repo: str
    layout: str
    method: str
    paper: str
    licence: str
    reference: str  # where the id and the file layout were checked
    subfolder: str = ""
    weight_name: str | None = None

    def files(self, family: str) -> list[str]:
        """The repository files loading needs (weights: the .safetensors name; a .bin beside it also loads)."""
        if self.layout == "unet":
            sub = f"{self.subfolder}/" if self.subfolder else ""
            return [f"{sub}config.json", f"{sub}diffusion_pytorch_model.safetensors"]
        if self.layout == "lora":
            return [str(self.weight_name)]
        if self.layout == "pipeline":
            return list(COMPONENT_FILES[family])
        raise ValueError(f"checkpoint {self.repo}: unknown layout {self.layout!r} (unet, lora or pipeline)")


MODELS = Registry("model")


def published_checkpoint(name: str) -> "Checkpoint | None":
    """The published checkpoint a registered model name stands for (bench/published.py), else None."""
    return MODELS.get(name).checkpoint if name in MODELS else None


def _bin_twin(file: str) -> str:
    """The .bin name of a .safetensors weight file (older uploads ship only that)."""
    return file[:-len(".safetensors")] + ".bin"
COMPONENT_FILES = {
    "sd15": ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
             "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
             "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
             "tokenizer/merges.txt"],
}
COMPONENT_FILES["sdxl"] = COMPONENT_FILES["sd15"] + [
    "text_encoder_2/config.json", "text_encoder_2/model.safetensors", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"]


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "bench"))


# ----------------------------------------------------------------------------------------------------------------
# Tiny models built from config
# ----------------------------------------------------------------------------------------------------------------

def clip_tokenizer_files(folder: Path) -> None:
    """Write a full CLIP BPE tokenizer (49408 ids, identical to open_clip's) from the vocabulary open_clip ships."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    byte_chars = _bytes_to_unicode()
    vocab = list(byte_chars) + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True}))


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _tiny_text_config(hidden: int, with_projection: bool):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, projection_dim=hidden,
                          bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)


def sd15_noise_scheduler():
    """The SD1.5 training noise schedule (DDPM, scaled linear 0.00085 -> 0.012, 1000 steps) that the tiny, random and
    exact models are built with."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         clip_sample=False, steps_offset=1)


def build_tiny(folder: Path, sdxl: bool, sample_size: int = 32) -> None:
    """A tiny SD1.5- or SDXL-shaped model from config (seed 0), saved in diffusers format in ``folder``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    text_dim = 32
    unet_kwargs = dict(sample_size=sample_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
                       block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8, norm_num_groups=8)
    if sdxl:
        unet_kwargs.update(cross_attention_dim=2 * text_dim, addition_embed_type="text_time",
                           addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + text_dim,
                           transformer_layers_per_block=1)
    else:
        unet_kwargs.update(cross_attention_dim=text_dim)
    unet = UNet2DConditionModel(**unet_kwargs)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=8, sample_size=sample_size)
    scheduler = sd15_noise_scheduler()
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    scheduler.save_pretrained(folder / "scheduler")
    CLIPTextModel(_tiny_text_config(text_dim, False)).save_pretrained(folder / "text_encoder")
    clip_tokenizer_files(folder / "tokenizer")
    index = {"_class_name": "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline",
             "_diffusers_version": "0.30.0", "scheduler": ["diffusers", "DDPMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    if sdxl:
        CLIPTextModelWithProjection(_tiny_text_config(text_dim, True)).save_pretrained(folder / "text_encoder_2")
        clip_tokenizer_files(folder / "tokenizer_2")
        index.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                     tokenizer_2=["transformers", "CLIPTokenizer"], force_zeros_for_empty_prompt=True)
    else:
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def build_from_published_config(folder: Path, family: str) -> None:
    """The published SD1.5 / SDXL architecture (bench/configs/<family>.json) with random weights (seed 0), saved in
    fp16 as a diffusers folder: for speed and memory benchmarks where the real weights are not needed."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    spec = json.loads((Path(__file__).parent / "configs" / f"{family}.json").read_text())
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    UNet2DConditionModel(**spec["unet"]).half().save_pretrained(folder / "unet")
    AutoencoderKL(**spec["vae"]).half().save_pretrained(folder / "vae")
    sd15_noise_scheduler().save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline",
             "_diffusers_version": "0.30.0", "scheduler": ["diffusers", "DDPMScheduler"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    for i, enc_cfg in enumerate(spec["text_encoders"]):
        sub = "" if i == 0 else "_2"
        cls = CLIPTextModelWithProjection if i == 1 else CLIPTextModel
        cls(CLIPTextConfig(**enc_cfg)).half().save_pretrained(folder / f"text_encoder{sub}")
        clip_tokenizer_files(folder / f"tokenizer{sub}")
        index[f"text_encoder{sub}"] = ["transformers", cls.__name__]
        index[f"tokenizer{sub}"] = ["transformers", "CLIPTokenizer"]
    if family == "sd15":
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


MODELS.register("sd15", ModelSpec("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15", 512,
                                   "Stable Diffusion 1.5 (512 px)"))
MODELS.register("sdxl", ModelSpec("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024,
                                   "SDXL base 1.0 (1024 px); the authors use vae=madebyollin/sdxl-vae-fp16-fix",
                                   vae="madebyollin/sdxl-vae-fp16-fix"))
MODELS.register("sd15-random", ModelSpec("sd15-random", "built:sd15-random", "sd15", 512,
                                          "SD1.5 architecture from its published config, random weights (benchmarks)",
                                          builder=lambda p: build_from_published_config(p, "sd15")))
MODELS.register("sdxl-random", ModelSpec("sdxl-random", "built:sdxl-random", "sdxl", 1024,
                                          "SDXL architecture from its published config, random weights (benchmarks)",
                                          builder=lambda p: build_from_published_config(p, "sdxl")))
MODELS.register("toy", ModelSpec("toy", str(TOY_MODEL_DIR), "toy", 32,
                                   "the embedded toy world's base model (shipped, 32 px; bench toy build remakes it)",
                                   missing_hint="rebuild it with `bench toy build` (about 20 minutes on 2 CPU cores) "
                                                "or reinstall from a git checkout of bench",
                                   note="TOY WORLD: a 32 px base model and panel-labelled pairs shipped with bench; "
                                        "the scores are the toy scorers', meaningful inside the toy world only "
                                        "(README 'The toy world'). The real configuration: --model sd15|sdxl."))
MODELS.register("exact", ModelSpec("exact", str(EXACT_MODEL_DIR), "exact", 0,
                                   "the exact world's base model: a 2-d denoiser whose data density and reward are "
                                   "known in closed form (shipped; bench exact build remakes it)",
                                   missing_hint="rebuild it with `bench exact build` (about a minute on 2 CPU cores) "
                                                "or reinstall from a git checkout of bench",
                                   world="exact", marker="unet/config.json",
                                   note="EXACT WORLD: a 2-d preference world whose density and reward are known in "
                                        "closed form; its numbers say what a method does to reward and fidelity, "
                                        "free of images, VAEs and scorers (results/exact/README.md)."))
MODELS.register("tiny-sd15", ModelSpec("tiny-sd15", "built:tiny-sd15", "tiny", 32,
                                        "tiny random SD1.5-shaped model built from config (dry runs, tests)",
                                        builder=lambda p: build_tiny(p, sdxl=False)))
MODELS.register("tiny-sdxl", ModelSpec("tiny-sdxl", "built:tiny-sdxl", "tiny", 32,
                                        "tiny random SDXL-shaped model built from config (dry runs, tests)",
                                        builder=lambda p: build_tiny(p, sdxl=True)))


# ----------------------------------------------------------------------------------------------------------------
# Resolution and loading
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Components:
    name: str
    path: str  # local folder or hub id the components came from
    family: str  # "sd15" or "sdxl" architecture
    preset_family: str
    resolution: int
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list
    tokenizers: list
    scheduler: object
    identity: str  # stable string identifying the weights (cache keys)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)


def _built_path(spec: ModelSpec) -> Path:
    folder = cache_root() / "models" / spec.name
    if not (folder / "model_index.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=folder.parent))
        spec.builder(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process built it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def hub_cache() -> Path:
    """huggingface_hub's cache folder, read from the environment at call time (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser() / "hub"


def cached_snapshot(repo: str, files: list[str]) -> Path | None:
    """The local snapshot folder of hub repository ``repo`` when every file of ``files`` is in the cache (a weight
    file may be its .bin twin), else None."""
    from huggingface_hub import try_to_load_from_cache

    folder = None
    for f in files:
        found = try_to_load_from_cache(repo, f, cache_dir=str(hub_cache()))
        if not isinstance(found, str) and f.endswith(".safetensors"):
            found = try_to_load_from_cache(repo, _bin_twin(f), cache_dir=str(hub_cache()))
        if not isinstance(found, str):
            return None
        folder = Path(found).parents[len(Path(f).parts) - 1]
    return folder


def local_source(source: str, files: list[str]) -> str:
    """A hub id's cached snapshot folder when it holds ``files`` (so loading reads local files only), else
    ``source`` unchanged (a local folder, or a hub id that is loaded or reported missing as usual)."""
    if Path(source).expanduser().exists() or source.count("/") != 1:
        return source
    folder = cached_snapshot(source, files)
    return str(folder) if folder is not None else source


def checkpoint_folder(name: str) -> Path:
    """The local folder holding registered checkpoint ``name``'s files: a local repository path or the hub cache
    (nothing is downloaded here: :func:`download_model` does that when asked). Raises MissingWeightsError naming the
    files and the download command."""
    spec = MODELS.get(name)
    ckpt = spec.checkpoint
    files = ckpt.files(spec.family)
    if Path(ckpt.repo).expanduser().is_dir():
        folder = Path(ckpt.repo).expanduser()
        missing = [f for f in files if not (folder / f).is_file()
                   and not (f.endswith(".safetensors") and (folder / _bin_twin(f)).is_file())]
    else:
        found = cached_snapshot(ckpt.repo, files)
        if found is not None:
            return found
        from huggingface_hub import try_to_load_from_cache
        folder = None
        missing = [f for f in files if not isinstance(try_to_load_from_cache(ckpt.repo, f,
                                                                              cache_dir=str(hub_cache())), str)]
    if not missing:
        return folder
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    where = (f"is incomplete: {ckpt.repo} lacks {shown}" if folder is not None else
             f"is not available offline: missing {shown} of {ckpt.repo} (looked in {hub_cache()})")
    raise MissingWeightsError(
        f"published checkpoint {name!r} ({ckpt.method} on {ckpt.base}) {where}. Get it with "
        f"`hf download {ckpt.repo} {' '.join(files)}` (about its layout: {ckpt.reference}).")


#: what a diffusers pipeline folder needs (download patterns; COMPONENT_FILES lists the files checked for)
PIPELINE_PATTERNS = ["model_index.json", "scheduler/*", "tokenizer*/*", "text_encoder*/config.json",
                     "text_encoder*/model.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                     "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]


def download_model(name: str, vae: str | None = None) -> None:
    """Fetch into the hub cache what model ``name`` needs (a base model's pipeline files; a release's own files and
    its base's) and the VAE ``vae``: only when asked (``bench scoreboard --download``), never behind a user's back."""
    from huggingface_hub import snapshot_download

    jobs = []
    spec = MODELS.get(name) if name in MODELS else None
    c = published_checkpoint(name)
    if c is not None:
        jobs.append((c.repo, PIPELINE_PATTERNS if c.layout == "pipeline" else c.files(spec.family)))
        if c.layout != "pipeline":
            jobs.append((MODELS.get(c.base).source, PIPELINE_PATTERNS))
    elif spec is None or spec.builder is None and not Path(spec.source).exists():
        jobs.append((spec.source if spec else name, PIPELINE_PATTERNS))
    if vae and not Path(vae).exists():
        jobs.append((vae, ["config.json", "diffusion_pytorch_model.safetensors"]))
    for repo, patterns in jobs:
        snapshot_download(repo, allow_patterns=patterns, cache_dir=str(hub_cache()))
        weights = [p for p in patterns if p.endswith(".safetensors")]
        if weights and cached_snapshot(repo, [p for p in patterns if "*" not in p]) is None:  # an older .bin upload
            snapshot_download(repo, allow_patterns=[_bin_twin(p) for p in weights],
                              cache_dir=str(hub_cache()))


def checkpoint_identity(name: str) -> str:
    """The checkpoint part of a registered checkpoint's weight identity ('' for a plain model)."""
    ckpt = published_checkpoint(name)
    if ckpt is None:
        return ""
    folder = checkpoint_folder(name)
    parts = []
    for f in ckpt.files(MODELS.get(name).family):
        file = folder / f
        file = file if file.is_file() else file.with_suffix(".bin")
        st = file.stat()
        parts.append(f"{f}:{st.st_size}:{int(st.st_mtime)}")
    return f"|{ckpt.repo}:{ckpt.layout}:{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]}"


def identity_of(name: str, vae: str | None = None) -> str:
    """``model_identity`` of a model name (a registered checkpoint adds its own files)."""
    return model_identity(resolve_model(name)[1], vae) + checkpoint_identity(name)


def resolve_model(name: str) -> tuple[str, str, str, int]:
    """(name, path or hub id, preset family, resolution) for a registered name, a local folder or a hub id.

    A hub id whose files are in the hub cache resolves to its snapshot folder. A registered published checkpoint
    resolves to its base model's path (a "pipeline" layout: to its own folder) after checking its files are there;
    :func:`apply_checkpoint` puts its weights on the loaded base."""
    if published_checkpoint(name) is not None:
        spec = MODELS.get(name)
        folder = checkpoint_folder(name)
        _, base_path, family, resolution = resolve_model(spec.checkpoint.base)
        return spec.name, str(folder) if spec.checkpoint.layout == "pipeline" else base_path, family, resolution
    if name in MODELS:
        spec = MODELS.get(name)
        path = str(_built_path(spec)) if spec.builder else \
            local_source(spec.source, COMPONENT_FILES.get(spec.family, ["model_index.json"]))
        if spec.missing_hint and not (Path(path) / spec.marker).is_file():
            raise MissingWeightsError(f"model {name!r}: no model at {path}; {spec.missing_hint}.")
        return spec.name, path, spec.family, spec.resolution
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "model_index.json").is_file():
            raise MissingWeightsError(f"{p} is not a diffusers model folder (no model_index.json). Point --model at "
                                      "a folder saved with `pipeline.save_pretrained(...)`.")
        fam = "sdxl" if "text_encoder_2" in json.loads((p / "model_index.json").read_text()) else "sd15"
        return p.name, str(p), fam, 1024 if fam == "sdxl" else 512
    if name.count("/") == 1 and not name.startswith((".", "/")):
        fam = "sdxl" if "xl" in name.lower() else "sd15"
        return name, local_source(name, COMPONENT_FILES[fam]), fam, 1024 if fam == "sdxl" else 512
    raise MissingWeightsError(f"unknown model {name!r}: not a registered name "
                              f"({', '.join(MODELS.names())}), an existing folder, or a hub id like org/name")


def _missing_files(path: str, family: str) -> list[str]:
    if Path(path).exists():
        base = Path(path)
        need = [f for f in COMPONENT_FILES[family] if not f.endswith(".safetensors")]
        missing = [f for f in need if not (base / f).is_file()]
        for sub in ("unet", "vae", "text_encoder") + (("text_encoder_2",) if family == "sdxl" else ()):
            if not list((base / sub).glob("*.safetensors")) + list((base / sub).glob("*.bin")):
                missing.append(f"{sub}/*.safetensors")
        return missing
    from huggingface_hub import try_to_load_from_cache

    return [f for f in COMPONENT_FILES[family]
            if not isinstance(try_to_load_from_cache(path, f, cache_dir=str(hub_cache())), str)]


def missing_weights_message(name: str, path: str, family: str, missing: list[str]) -> str:
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    if Path(path).exists():
        return f"model {name!r} at {path} is incomplete: missing {shown}."
    return (f"weights of model {name!r} ({path}) are not available offline: missing {shown}. Get them with "
            f"`hf download {path} --exclude '*.bin' '*.ckpt' '*fp16*'` (stored under $HF_HOME, now "
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}), or pass --model /path/to/a/diffusers/folder.")


def load_components(name: str, vae: str | None = None, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, resolution: int | None = None) -> Components:
    """Load UNet, VAE, text encoder(s), tokenizer(s) and the DDPM scheduler of a model (see module docstring)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    name, path, preset_family, native_res = resolve_model(name)
    family = checked_architecture(name, path, preset_family)
    kw = {"local_files_only": bool(os.environ.get("HF_HUB_OFFLINE"))} if not Path(path).exists() else {}
    dkw, tkw = dtype_kwarg("diffusers", dtype), dtype_kwarg("transformers", dtype)
    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **dkw, **kw)
        vae_model = (AutoencoderKL.from_pretrained(local_source(vae, ["config.json"]), **dkw) if vae else
                     AutoencoderKL.from_pretrained(path, subfolder="vae", **dkw, **kw))
        encoders = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **tkw, **kw)]
        tokenizers = [CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)]
        if family == "sdxl":
            encoders.append(CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2",
                                                                        **tkw, **kw))
            tokenizers.append(CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", **kw))
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler", **kw)
    except OSError as err:
        raise MissingWeightsError(missing_weights_message(name, path, family, [str(err).splitlines()[0]])) from err
    if scheduler.config.prediction_type != "epsilon":
        raise ValueError(f"{name}: prediction_type {scheduler.config.prediction_type!r}; the methods here are "
                         "specified for epsilon prediction")
    comps = Components(name, path, family, preset_family, resolution or native_res, unet, vae_model, encoders,
                       tokenizers, scheduler, model_identity(path, vae) + checkpoint_identity(name))
    if published_checkpoint(name) is not None:
        apply_checkpoint_to_components(comps, name, dtype)
    for m in [comps.unet, comps.vae, *comps.text_encoders]:
        m.to(device)
    for m in [comps.vae, *comps.text_encoders]:
        m.requires_grad_(False).eval()
    return comps


def apply_checkpoint(pipe, name: str) -> None:
    """Put registered checkpoint ``name``'s weights on ``pipe``, a pipeline of its base model: its UNet in place of
    the base UNet, or its LoRA loaded (a "pipeline" checkpoint is loaded whole and needs nothing here)."""
    from diffusers import UNet2DConditionModel

    ckpt = MODELS.get(name).checkpoint
    folder = checkpoint_folder(name)
    if ckpt.layout == "unet":
        unet_dir = folder / ckpt.subfolder if ckpt.subfolder else folder
        unet = UNet2DConditionModel.from_pretrained(unet_dir, **dtype_kwarg("diffusers", pipe.unet.dtype))
        pipe.unet = unet.to(pipe.unet.device)
    elif ckpt.layout == "lora":
        pipe.load_lora_weights(str(folder), weight_name=ckpt.weight_name)


def apply_checkpoint_to_components(comps: Components, name: str, dtype: torch.dtype) -> None:
    """The training side of :func:`apply_checkpoint`: the checkpoint's UNet (a LoRA fused into the UNet and text
    encoders it adapts) becomes the model's own weights."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    ckpt = MODELS.get(name).checkpoint
    if ckpt.layout == "pipeline":
        return  # loaded whole from its own folder
    if ckpt.layout == "unet":
        folder = checkpoint_folder(name)
        comps.unet = UNet2DConditionModel.from_pretrained(folder / ckpt.subfolder if ckpt.subfolder else folder,
                                                          **dtype_kwarg("diffusers", dtype))
        return
    parts = dict(vae=comps.vae, text_encoder=comps.text_encoders[0], tokenizer=comps.tokenizers[0], unet=comps.unet,
                 scheduler=comps.scheduler)
    if comps.is_sdxl:
        pipe = StableDiffusionXLPipeline(text_encoder_2=comps.text_encoders[1], tokenizer_2=comps.tokenizers[1],
                                         **parts)
    else:
        pipe = StableDiffusionPipeline(safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                                       **parts)
    apply_checkpoint(pipe, name)
    pipe.fuse_lora()
    pipe.unload_lora_weights()


def init_unet_folder(spec: str) -> Path:
    """The diffusers UNet folder of ``model.init_unet``: a run directory (its weights/unet), a diffusers model folder
    (its unet/) or a UNet folder itself."""
    p = Path(spec).expanduser()
    for folder in (p / "weights" / "unet", p / "unet", p):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"model.init_unet={spec}: no UNet there (looked for weights/unet/config.json, "
                            "unet/config.json and config.json); pass a finished run directory or a diffusers UNet "
                            "folder")


def load_init_unet(comps: Components, spec: str) -> None:
    """Replace ``comps.unet`` by the UNet (or any world's denoiser) of ``model.init_unet`` (same class and architecture
    required, same device/dtype)."""
    folder = init_unet_folder(spec)
    unet = type(comps.unet).from_pretrained(folder, **dtype_kwarg("diffusers", comps.unet.dtype))
    ours, theirs = ({k: v for k, v in dict(u.config).items() if not k.startswith("_")} for u in (comps.unet, unet))
    if ours != theirs:
        diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise ValueError(f"model.init_unet={spec}: its UNet does not match model {comps.name!r} ({', '.join(diff)} "
                         "differ); pass a UNet trained from this model")
    comps.unet = unet.to(comps.unet.device)


def checked_architecture(name: str, path: str, preset_family: str) -> str:
    """"sd15" or "sdxl" for a resolved model; raises MissingWeightsError when its files are not available."""
    family = preset_family if preset_family in ("sd15", "sdxl") else _arch_family(path)
    missing = _missing_files(path, family)
    if missing:
        raise MissingWeightsError(missing_weights_message(name, path, family, missing))
    return family


def _arch_family(path: str) -> str:
    index = Path(path) / "model_index.json"
    return "sdxl" if index.is_file() and "text_encoder_2" in json.loads(index.read_text()) else "sd15"


def model_identity(path: str, vae: str | None = None) -> str:
    """A stable string for the weights a model path (with the VAE ``vae``) loads: cache keys of latents and of
    base-model evaluations. A local folder is identified by its files' content, not by where it lies, so the same
    model in another clone or on another machine keeps its identity (and a ``bench sweep --record`` restored there
    finds its base-model evaluations); a hub id by its resolved snapshot."""
    local = Path(path).exists()
    return f"{'local' if local else path}|vae={vae or 'own'}|{weights_fingerprint(path)}"


#: the files of a diffusers folder that decide what it loads: weights (safetensors or .bin, as ``load_components``
#: accepts both), configs and tokenizer files
_MODEL_FILES = ("*.json", "*/*.json", "*/*.txt", "*/*.safetensors", "*/*.bin")


def weights_fingerprint(path: str) -> str:
    """The content of a local model folder's files (:data:`_MODEL_FILES`), or a hub id's resolved snapshot.

    Each file's SHA-256 is computed once per machine and remembered under its path, size and modification time
    (``$BENCH_CACHE/fingerprints.json``), so later calls cost a stat per file."""
    p = Path(path)
    if not p.exists():
        from huggingface_hub import try_to_load_from_cache
        f = try_to_load_from_cache(path, "unet/config.json")
        return Path(f).parent.parent.name if isinstance(f, str) else "unknown-snapshot"
    files = sorted({f for pattern in _MODEL_FILES for f in p.glob(pattern) if f.is_file()})
    memo_path = cache_root() / "fingerprints.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    parts, changed = [], False
    for f in files:
        st = f.stat()
        key = f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if key not in memo:
            memo[key], changed = file_sha256(str(f)), True
        parts.append(f"{f.relative_to(p).as_posix()}:{memo[key]}")
    if changed:  # a concurrent writer may drop an entry, which is only computed again
        atomic_write_text(memo_path, json.dumps(memo))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------
# Text conditioning
# ----------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_text(comps: Components, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(encoder_hidden_states (B, 77, D), pooled (B, P) or None) in float32.

    SD1.5: ``text_encoder(ids)[0]``. SDXL: ``hidden_states[-2]`` of both encoders concatenated, and encoder 2's
    projected pooled output (implementation_notes.md section 2).
    """
    device = comps.text_encoders[0].device
    states, pooled = [], None
    for enc, tok in zip(comps.text_encoders, comps.tokenizers):
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(device)
        if not comps.is_sdxl:
            states.append(enc(ids)[0])
            continue
        out = enc(ids, output_hidden_states=True)
        states.append(out.hidden_states[-2])
        if hasattr(out, "text_embeds"):
            pooled = out.text_embeds
    hidden = torch.cat(states, dim=-1).float()
    return hidden, None if pooled is None else pooled.float()


def make_cond(comps: Components, hidden: torch.Tensor, pooled: torch.Tensor | None) -> Cond:
    """Cond for a batch; SDXL gets the fixed time ids [res, res, 0, 0, res, res] of the DPO family."""
    if not comps.is_sdxl:
        return Cond(hidden)
    res = comps.resolution
    time_ids = torch.tensor([res, res, 0, 0, res, res], dtype=torch.float32, device=hidden.device)
    return Cond(hidden, {"text_embeds": pooled, "time_ids": time_ids.expand(hidden.shape[0], 6)})


from bench import published as _published  # noqa: E402 - the published checkpoints register on the models above

_published.register()
