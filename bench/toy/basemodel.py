"""Training the toy base model: real diffusers components at tiny size, trained by the suite's own code on the CPU.

1. A training set of procedural pictures of the TRAIN prompts (:mod:`bench.toy.world`), some degraded (blur, noise,
   faded colour), some with an unfaithful caption (one attribute swapped for another training combination), and
   many whose position words are redrawn at random (web captions rarely say where things are), so that the base
   model is imperfect in both prompt fidelity and visual quality: something to align.
2. An ``AutoencoderKL`` (downsampling 2x: 32x32x3 <-> 16x16x4) trained for reconstruction (L1 + MSE, tiny KL);
   its ``scaling_factor`` is set to 1 / std of the training latents, as SD's VAE. (Or reused from another model.)
3. A CLIP text encoder (2 layers, width 32; the real CLIP BPE tokenizer) pre-trained to read each attribute off a
   caption, then frozen, as SD's CLIP text encoder (:func:`pretrain_text`), and a ``UNet2DConditionModel`` trained
   with the standard epsilon-prediction loss on the SD1.5 noise schedule (scaled_linear, 1000 steps), with offset
   noise, captions dropped 10% of the time (classifier-free guidance), AdamW with warmup + cosine decay; an EMA of
   the UNet weights is what is saved. (``text_pretrain_steps=0``: the first build's joint training from random.)
4. Saved in diffusers format (fp16 safetensors, loaded as fp32 by ``StableDiffusionPipeline.from_pretrained``).

Everything is seeded and runs with a fixed number of torch threads, so a rebuild on the same machine reproduces the
files bit for bit (across CPUs, float summation order may differ; see ``bench.toy.build.verify``).
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.toy.world import Attributes, draw, make_prompt, sample_scene, train_attributes

TEXT_DIM = 32


@dataclass
class BaseModelConfig:
    seed: int = 0
    processes: int = 2  # data-parallel CPU processes (gloo)
    threads: int = 1  # torch threads per process
    n_images: int = 16384  # rendered training pictures
    degrade: float = 0.2  # fraction of degraded pictures (blur, noise or fade)
    caption_noise: float = 0.1  # fraction of captions with one attribute wrong
    # fraction of captions whose position phrase is redrawn at random (among training combinations): web captions
    # rarely say where things are, so SD-like models follow position words weakly (better-captioned data, as
    # DALL-E 3's recaptioning, follows them better)
    position_noise: float = 0.5
    caption_dropout: float = 0.1
    # VAE
    vae_channels: tuple[int, ...] = (16, 32)
    vae_steps: int = 1200
    vae_batch: int = 64
    vae_crop: int = 16
    vae_lr: float = 3e-3
    vae_kl: float = 1e-6
    # UNet + text encoder
    unet_channels: tuple[int, ...] = (16, 32, 64)
    unet_down: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    unet_up: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    # noise schedule: SD1.5's (scaled_linear 0.00085..0.012). Its last step keeps alpha_bar = 0.0047, so on 16x16
    # latents the global colour is still visible at t = T and sampling would take the background colour from the
    # initial noise instead of the prompt; offset noise (a per-channel constant added to the noise) fixes that
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    offset_noise: float = 0.25
    unet_scale_shift: bool = False  # FiLM (scale and shift) time/text modulation in the resnets
    unet_text_embed: bool = True  # also add an attention-pooled text embedding to the time embedding (as IF)
    unet_steps: int = 3000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    text_lr: float = 3e-3  # 0 freezes the text encoder (random, or pre-trained when text_pretrain_steps > 0)
    # pre-train the text encoder on its own (the caption's five attributes from its pooled output), then freeze it
    # for the UNet training, as SD's frozen CLIP text encoder; 0: train it jointly with the UNet from random weights
    text_pretrain_steps: int = 300
    warmup: int = 100
    ema: float = 0.998
    log: list = field(default_factory=list, repr=False)

    def params(self) -> dict:
        d = asdict(self)
        d.pop("log")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ------------------------------------------------------------------------------------------------------------------
# Training data
# ------------------------------------------------------------------------------------------------------------------

@dataclass
class ToyData:
    pixels: torch.Tensor  # (N, 3, 32, 32) in [-1, 1]
    captions: list[str]  # caption per picture (possibly unfaithful)
    faithful: np.ndarray  # (N,) bool


def _noisy_caption(attrs: Attributes, allowed: set[Attributes], rng: np.random.Generator) -> Attributes | None:
    from evaluators.toy import VALUES

    name = list(VALUES)[int(rng.integers(len(VALUES)))]
    options = [v for v in VALUES[name] if v != getattr(attrs, name)]
    other = Attributes(**{**asdict(attrs), name: options[int(rng.integers(len(options)))]})
    return other if other in allowed else None


def make_training_data(cfg: BaseModelConfig) -> ToyData:
    """``n_images`` pictures of training combinations (uniform), degraded / mis-captioned at the configured rates."""
    rng = np.random.default_rng([cfg.seed, 1])
    combos = train_attributes()
    allowed = set(combos)
    pix = np.zeros((cfg.n_images, 32, 32, 3), dtype=np.uint8)
    captions, faithful = [], np.ones(cfg.n_images, dtype=bool)
    for i in range(cfg.n_images):
        attrs = combos[int(rng.integers(len(combos)))]
        pix[i] = np.asarray(draw(sample_scene(attrs, rng, cfg.degrade)))
        said = attrs
        if cfg.position_noise and rng.random() < cfg.position_noise:
            from evaluators.toy import POSITIONS

            options = [o for o in (replace(attrs, position=p) for p in POSITIONS) if o in allowed]
            said = options[int(rng.integers(len(options)))]
            faithful[i] = said == attrs
        if rng.random() < cfg.caption_noise:
            other = _noisy_caption(attrs, allowed, rng)
            if other is not None:
                said, faithful[i] = other, False
        captions.append(make_prompt(said))
    pixels = torch.from_numpy(pix).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return ToyData(pixels, captions, faithful)


# ------------------------------------------------------------------------------------------------------------------
# Components
# ------------------------------------------------------------------------------------------------------------------

def text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_DIM, intermediate_size=2 * TEXT_DIM, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, projection_dim=TEXT_DIM,
                          bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)


def make_vae(cfg: BaseModelConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=cfg.vae_channels,
                         down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                         layers_per_block=1, norm_num_groups=8, sample_size=32, mid_block_add_attention=False)


def make_unet(cfg: BaseModelConfig, latent_size: int):
    from diffusers import UNet2DConditionModel

    extra = {"addition_embed_type": "text", "addition_embed_type_num_heads": 4} if cfg.unet_text_embed else {}
    if cfg.unet_scale_shift:
        extra["resnet_time_scale_shift"] = "scale_shift"
    return UNet2DConditionModel(sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=cfg.unet_channels, down_block_types=cfg.unet_down,
                                up_block_types=cfg.unet_up, attention_head_dim=8, norm_num_groups=8,
                                cross_attention_dim=TEXT_DIM, **extra)


def make_scheduler(cfg: BaseModelConfig | None = None):
    from diffusers import DDPMScheduler

    cfg = cfg or BaseModelConfig()
    return DDPMScheduler(beta_start=cfg.beta_start, beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule,
                         num_train_timesteps=1000, clip_sample=False, steps_offset=1)


class Sync:
    """Data parallelism over ``world`` CPU processes (gloo): every process draws the FULL batch's randomness from the
    same generator and computes its own contiguous slice; gradients are averaged, so all processes keep identical
    weights. ``world == 1``: no-op."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    def part(self, n: int) -> slice:
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)

    def grads(self, params: list[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's equal-sized ``x`` in rank order."""
        if self.world == 1:
            return x
        import torch.distributed as dist

        out = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)


def _lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


# ------------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------------

def train_vae(data: ToyData, cfg: BaseModelConfig, log: Callable[[str], None] = print, sync: Sync = Sync()):
    torch.manual_seed(cfg.seed)
    vae = make_vae(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
    n = len(data.pixels)
    t0 = time.time()
    for step in range(cfg.vae_steps):
        for g in opt.param_groups:
            g["lr"] = cfg.vae_lr * _lr(step, cfg.vae_steps, 50)
        idx = torch.randint(0, n, (cfg.vae_batch,), generator=gen)
        x = data.pixels[idx]
        if cfg.vae_crop < 32:  # fully convolutional: train on random crops (4x cheaper at 16 px)
            oy, ox = (2 * torch.randint(0, (32 - cfg.vae_crop) // 2 + 1, (2,), generator=gen)).tolist()
            x = x[:, :, oy:oy + cfg.vae_crop, ox:ox + cfg.vae_crop]
        noise = torch.randn((len(x), 4, x.shape[2] // 2, x.shape[3] // 2), generator=gen)
        part = sync.part(len(x))
        x, noise = x[part], noise[part]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * noise
        rec = vae.decode(z).sample
        kl = post.kl().mean() / z[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.vae_kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = list(vae.parameters())
        sync.grads(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step}/{cfg.vae_steps} loss {sync.mean(loss.item()):.4f} kl {kl.item():.2f} "
                f"({time.time() - t0:.0f}s)")
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def encode_all(vae, pixels: torch.Tensor, batch: int = 512, sync: Sync = Sync()) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior (mean, std) of every picture (each process encodes its share, then all are gathered)."""
    pixels = pixels[sync.part(len(pixels))]
    means, stds = [], []
    for i in range(0, len(pixels), batch):
        post = vae.encode(pixels[i:i + batch]).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return sync.gather(torch.cat(means)), sync.gather(torch.cat(stds))


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def pretrain_text(tokenizer, cfg: BaseModelConfig, log: Callable[[str], None] = print):
    """A CLIP text encoder trained to tell every attribute of a training caption from its pooled output (a linear
    head per attribute, cross-entropy), ``cfg.text_pretrain_steps`` steps of 64 captions; returned frozen.

    Why: trained jointly with the UNet from random weights, the text encoder of the first toy build learned colour,
    size and background but left the position words near their random initialisation (prompts differing only in
    position differed by 3% of a colour change in the encoder's output), so no UNet could follow position.
    """
    from transformers import CLIPTextModel

    from evaluators.toy import ATTRIBUTES, VALUES, parse_prompt

    torch.manual_seed(cfg.seed + 4)
    text = CLIPTextModel(text_config())
    heads = torch.nn.ModuleList(torch.nn.Linear(TEXT_DIM, len(VALUES[a])) for a in ATTRIBUTES)
    prompts = [make_prompt(a) for a in train_attributes()]
    ids = tokenize(tokenizer, prompts)
    targets = torch.tensor([[VALUES[a].index(getattr(parse_prompt(p), a)) for a in ATTRIBUTES] for p in prompts])
    params = list(text.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 4)
    for step in range(cfg.text_pretrain_steps):
        for g in opt.param_groups:
            g["lr"] = cfg.text_lr * _lr(step, cfg.text_pretrain_steps, 20)
        idx = torch.randint(0, len(prompts), (64,), generator=gen)
        pooled = text(ids[idx]).pooler_output
        loss = sum(F.cross_entropy(h(pooled), targets[idx, k]) for k, h in enumerate(heads))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.text_pretrain_steps - 1:
            log(f"text pre-training step {step}/{cfg.text_pretrain_steps} loss {loss.item():.4f}")
    return text.eval().requires_grad_(False)


def train_unet(data: ToyData, latents: tuple[torch.Tensor, torch.Tensor], scale: float, tokenizer,
               cfg: BaseModelConfig, log: Callable[[str], None] = print, callback=None, sync: Sync = Sync()):
    """Joint training of the UNet and the text encoder; returns the EMA copies (eval mode)."""
    from transformers import CLIPTextModel

    torch.manual_seed(cfg.seed + 1)
    mean, std = latents
    unet = make_unet(cfg, mean.shape[-1])
    if cfg.text_pretrain_steps:
        text = pretrain_text(tokenizer, cfg, log)
    else:
        text = CLIPTextModel(text_config())
        if cfg.text_lr == 0:
            text.requires_grad_(False)
    sched = make_scheduler(cfg)
    acp = sched.alphas_cumprod.float()
    unique = sorted(set(data.captions) | {""})
    ids_unique = tokenize(tokenizer, unique)
    cap_index = torch.tensor([unique.index(c) for c in data.captions])
    empty = unique.index("")
    text_params = [p for p in text.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([
        {"params": unet.parameters(), "lr": cfg.unet_lr, "weight_decay": 1e-2, "base": cfg.unet_lr},
        {"params": text_params, "lr": cfg.text_lr, "weight_decay": 0.0, "base": cfg.text_lr}])
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text).requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 3)
    n = len(mean)
    t0 = time.time()
    running = None
    for step in range(cfg.unet_steps):
        for g in opt.param_groups:
            g["lr"] = g["base"] * _lr(step, cfg.unet_steps, cfg.warmup)
        idx = torch.randint(0, n, (cfg.unet_batch,), generator=gen)
        x0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        t = torch.randint(0, len(acp), (cfg.unet_batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        if cfg.offset_noise:
            eps = eps + cfg.offset_noise * torch.randn((x0.shape[0], x0.shape[1], 1, 1), generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        caps = cap_index[idx].clone()
        caps[torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout] = empty
        part = sync.part(cfg.unet_batch)
        hidden = text(ids_unique[caps[part]])[0]
        pred = unet(xt[part], t[part], hidden).sample
        loss = F.mse_loss(pred, eps[part])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = list(unet.parameters()) + [p for p in text.parameters() if p.requires_grad]
        sync.grads(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, model in ((ema_unet, unet), (ema_text, text)):
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
        value = sync.mean(loss.item()) if step % 20 == 0 else loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 100 == 0 or step == cfg.unet_steps - 1:
            log(f"unet step {step}/{cfg.unet_steps} loss {running:.4f} ({time.time() - t0:.0f}s)")
        if callback is not None:
            callback(step + 1, ema_unet, ema_text)
    return ema_unet.eval(), ema_text.eval()


def save_model(folder: Path, vae, unet, text, tokenizer_dir_writer, cfg: BaseModelConfig,
               dtype: torch.dtype = torch.float16) -> None:
    """Write a diffusers StableDiffusionPipeline folder (weights in ``dtype``; configs say float32)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("unet", unet), ("vae", vae)):
        copy.deepcopy(model).to(dtype).save_pretrained(folder / name)
    te = copy.deepcopy(text).to(dtype)
    te.save_pretrained(folder / "text_encoder")
    conf_path = folder / "text_encoder" / "config.json"
    conf = json.loads(conf_path.read_text())
    conf["dtype"] = "float32"  # load as float32 (transformers 5 would otherwise keep the stored fp16)
    conf.pop("transformers_version", None)
    conf_path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    for sub in ("unet", "vae"):
        p = folder / sub / "config.json"
        c = json.loads(p.read_text())
        c.pop("_diffusers_version", None)
        p.write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    make_scheduler(cfg).save_pretrained(folder / "scheduler")
    p = folder / "scheduler" / "scheduler_config.json"
    c = json.loads(p.read_text())
    c.pop("_diffusers_version", None)
    p.write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    tokenizer_dir_writer(folder / "tokenizer")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None],
             "feature_extractor": [None, None], "requires_safety_checker": False}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def train_base_model(folder: Path, cfg: BaseModelConfig | None = None, log: Callable[[str], None] = print,
                     vae_from: Path | None = None) -> dict:
    """Train VAE, then text encoder + UNet, and save the pipeline folder. Returns timings and the VAE's error.

    ``vae_from``: a toy model folder whose VAE to reuse instead of training one (the generator zoo shares the base
    model's VAE, as SD-family models share SD's).

    With ``cfg.processes > 1`` the training runs data-parallel in that many spawned CPU processes (one torch thread
    each; process 0 logs to stdout and writes the folder).
    """
    from bench.models import clip_tokenizer_files

    cfg = cfg or BaseModelConfig()
    folder = Path(folder)
    clip_tokenizer_files(folder / "tokenizer")
    if cfg.processes == 1:
        return _train(folder, cfg, log, Sync(), vae_from)
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="toy-ddp-") as tmp:
        mp.start_processes(_worker, args=(cfg.processes, str(folder), cfg.params(), tmp,
                                          str(vae_from) if vae_from else None),
                           nprocs=cfg.processes, start_method="spawn")
        return json.loads((Path(tmp) / "info.json").read_text())


def _worker(rank: int, world: int, folder: str, params: dict, tmp: str, vae_from: str | None = None) -> None:
    import torch.distributed as dist

    import bench  # noqa: F401  (torchvision compat before transformers, in the spawned interpreter)

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        cfg = BaseModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
        info = _train(Path(folder), cfg, (lambda m: print(m, flush=True)) if rank == 0 else (lambda _m: None), Sync(rank, world),
                      Path(vae_from) if vae_from else None)
        if rank == 0:
            (Path(tmp) / "info.json").write_text(json.dumps(info))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _train(folder: Path, cfg: BaseModelConfig, log: Callable[[str], None], sync: Sync,
           vae_from: Path | None = None) -> dict:
    from transformers import CLIPTokenizer

    from bench.models import clip_tokenizer_files

    torch.set_num_threads(cfg.threads)
    times = {}
    t = time.time()
    data = make_training_data(cfg)
    times["render_s"] = time.time() - t
    log(f"rendered {len(data.captions)} training pictures ({(~data.faithful).sum()} mis-captioned) "
        f"in {times['render_s']:.0f}s; {sync.world} process(es) x {cfg.threads} thread(s)")
    t = time.time()
    if vae_from is not None:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(vae_from).float().eval().requires_grad_(False)
    else:
        vae = train_vae(data, cfg, log, sync)
    mean, std = encode_all(vae, data.pixels, sync=sync)
    with torch.no_grad():
        rec = torch.cat([vae.decode(mean[i:i + 512]).sample for i in range(0, 1024, 512)]).clamp(-1, 1)
    vae_err = float((rec - data.pixels[:1024]).abs().mean() * 127.5)
    scale = float(vae.config.scaling_factor) if vae_from is not None else round(float(1.0 / mean.std()), 6)
    vae.register_to_config(scaling_factor=scale)
    times["vae_s"] = time.time() - t
    log(f"vae: mean abs reconstruction error {vae_err:.2f}/255, latent std {1 / scale:.3f} ({times['vae_s']:.0f}s)")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    t = time.time()
    unet, text = train_unet(data, (mean, std), scale, tokenizer, cfg, log, sync=sync)
    times["unet_s"] = time.time() - t
    if sync.rank == 0:
        save_model(folder, vae, unet, text, clip_tokenizer_files, cfg)
    return {"times": times, "vae_abs_error_255": vae_err, "vae_scaling_factor": scale,
            "mis_captioned": int((~data.faithful).sum()), "processes": sync.world,
            "parameters": {"unet": sum(p.numel() for p in unet.parameters()),
                           "vae": sum(p.numel() for p in vae.parameters()),
                           "text_encoder": sum(p.numel() for p in text.parameters())}}


# ------------------------------------------------------------------------------------------------------------------
# Sampling and fidelity
# ------------------------------------------------------------------------------------------------------------------

def load_pipeline(folder: Path):
    """The evaluation harness's pipeline (``bench.evaluate.load_pipeline``: DDIM, fp32) for a toy model folder."""
    from bench.evaluate import load_pipeline as harness_pipeline

    return harness_pipeline(str(folder), sampler="ddim", device="cpu", dtype=torch.float32)


def generate(pipe, prompts: list[str], seeds: list[int], steps: int = 20, cfg: float = 4.0, batch: int = 128):
    """PIL images, one per (prompt, seed), through ``bench.evaluate.make_generate`` (one CPU generator per image),
    ``batch`` prompts per pipeline call (the batching the shipped assets were generated with)."""
    from bench.evaluate import make_generate
    from evaluators.harness import GenerationSpec

    gen = make_generate(pipe, GenerationSpec(steps=steps, cfg=cfg, resolution=32))
    images = []
    for i in range(0, len(prompts), batch):
        images += gen(prompts[i:i + batch], [int(s) for s in seeds[i:i + batch]])
    return images


def fidelity_report(images, prompts: list[str]) -> dict:
    """Fraction of images whose analysed attributes match the prompt: colour+shape, each attribute, all five."""
    from evaluators.toy import ATTRIBUTES, analyse, parse_prompt

    hits = {a: 0 for a in ATTRIBUTES}
    both = every = 0
    for img, p in zip(images, prompts):
        an, want = analyse(img), parse_prompt(p)
        got = an.attributes()
        if got is None:
            continue
        ok = {a: getattr(got, a) == getattr(want, a) for a in ATTRIBUTES}
        for a in ATTRIBUTES:
            hits[a] += ok[a]
        both += ok["colour"] and ok["shape"]
        every += all(ok.values())
    n = max(1, len(images))
    return {"colour_and_shape": both / n, "all_attributes": every / n, **{a: hits[a] / n for a in ATTRIBUTES},
            "n_images": len(images)}
