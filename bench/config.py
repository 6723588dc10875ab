"""Typed run configuration: dataclass defaults < preset (model family, method) < --config FILE < key=value overrides.

Defaults live here and only here. Presets (``bench/presets/<family>/<method>.toml``) quote the authors' values in
comments. Overrides are dotted (``train.lr=1e-5``, ``method.beta=2000``) or bare (``steps=10``, ``beta=2000``,
``ref_update=stable``): a bare name means the method's field if it has one and no section does, else the first of
train, model, data, eval that has it. Unknown keys are rejected with a did-you-mean.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from bench_common.registry import did_you_mean

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A bad configuration key or value. The message names the key and the fix."""


@dataclass
class ModelConfig:
    #: a registered model name (``bench ls models``), a local diffusers folder or a hub id
    name: str = "toy"
    #: replace the VAE (a hub id or folder), e.g. "madebyollin/sdxl-vae-fp16-fix" for SDXL
    vae: str | None = None
    #: start policy and reference from this UNet instead of the model's (the InPO/SmPO authors start SD1.5 from an
    #: SFT checkpoint): a diffusers UNet folder, or a run directory (its weights/unet). The baseline stays the model.
    init_unet: str | None = None
    #: training resolution in pixels; None = the model's native resolution
    resolution: int | None = None
    #: LoRA rank; 0 trains the full UNet
    lora_rank: int = 0
    lora_alpha: float | None = None
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    #: "toy" (the toy world's pairs), "embedded" (the tiny models' dry-run set), an HF dataset id, a save_to_disk
    #: folder, or parquet file(s)/folder
    source: str = "embedded"
    split: str = "train"
    #: keep human ties (label_0 == 0.5); the DPO family drops them
    keep_ties: bool = False
    #: probability that a caption is replaced by "" (the authors: 0.2; MaPO: 0)
    caption_dropout: float = 0.2
    #: random horizontal flips (how, "independent" or "joint", is the method's choice)
    random_flip: bool = True
    #: use at most this many pairs (after dropping ties and corrupt images); None = all
    max_pairs: int | None = None
    #: cache VAE posteriors and text embeddings (they do not depend on trainable weights)
    cache: bool = True
    #: where caches and the embedded data live; None = $BENCH_CACHE or ~/.cache/bench
    cache_dir: str | None = None
    #: raw reward scores per pair written by `bench label` (a parquet file); None = the data's reward_0/reward_1
    #: columns, or, under `bench run`, labels computed once with label_scorer and cached
    labels: str | None = None
    label_scorer: str = "pickscore"
    #: normalisation bounds of raw reward scores for smoothed labels (SmPO authors' values)
    reward_lo: float = 0.11543526500463486
    reward_hi: float = 0.28201571106910706
    #: compute (lo, hi) as the min and max of the stored scores instead (for other scorers than PickScore)
    reward_bounds_from_data: bool = False
    num_workers: int = 0


@dataclass
class TrainConfig:
    steps: int = 20
    #: pairs (or images, for unpaired methods) per device per micro-step
    batch_size: int = 2
    grad_accum: int = 1
    #: if set, grad_accum = effective_batch / (batch_size x processes); must divide evenly
    effective_batch: int | None = None
    lr: float = 1e-5
    #: lr = lr x effective batch (the authors' --scale_lr with lr 1e-8)
    scale_lr: bool = False
    warmup_steps: int = 0
    #: learning-rate schedule after the warmup (diffusers' get_scheduler, as the authors' --lr_scheduler):
    #: constant_with_warmup (the authors' launchers), or linear / cosine decay to 0 at train.steps
    lr_scheduler: str = "constant_with_warmup"
    optimizer: str = "adamw"  # adamw | adafactor | adamw8bit
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    #: offset noise (Guttenberg 2023; diffusers' --noise_offset): every forward-diffusion eps gets noise_offset x
    #: N(0, 1) per sample and latent channel added, constant over the image. Match the base model's own training:
    #: 0 for SD1.5 / SDXL as the authors fine-tune them, 0.25 for the toy base model (its toy family preset). A
    #: fine-tune with other noise than its base model's training degrades samples even on clean data
    noise_offset: float = 0.0
    mixed_precision: str = "no"  # no | fp16 | bf16
    seed: int = 0
    #: "auto" (LoRA runs: adapters disabled; full fine-tunes: a separate frozen copy), "copy" or "lora-disabled"
    reference: str = "auto"
    #: reference-update strategy: frozen | stable ("Rethinking DPO" add-on)
    ref_update: str = "frozen"
    ref_update_args: dict[str, Any] = field(default_factory=dict)
    #: timestep strategy: uniform | aware ("Rethinking DPO" add-on)
    timesteps: str = "uniform"
    timesteps_args: dict[str, Any] = field(default_factory=dict)
    #: speed switches (bench perf compares them): fused AdamW kernel, channels_last UNet memory layout,
    #: torch.compile of the policy UNet, and the naive baseline that runs the UNet one image at a time
    fused_optimizer: bool = False
    channels_last: bool = False
    compile: bool = False
    unbatched_forwards: bool = False
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 1
    #: an accelerate tracker ("tensorboard", "wandb") or None
    tracker: str | None = None


@dataclass
class EvalConfig:
    """What `bench run` evaluates after training (and `bench eval` defaults). Presets set each family's protocol."""

    enabled: bool = True
    #: a registered prompt set (bench ls prompts) or a prompt file
    prompts: str = "toy"
    #: use only the first N prompts (an equal share per style); None = all
    limit: int | None = None
    #: comma-separated registered scorers (bench ls scorers)
    metrics: str = "toy-pickscore,toy-hps,toy-imagereward,toy-aesthetic,toy-fidelity,toy-quality"
    images_per_prompt: int = 1
    sampler: str = "ddim"
    steps: int = 25
    cfg: float = 5.0
    #: None = the training resolution
    resolution: int | None = None
    #: `bench sweep`: the prompt set every configuration is selected on and the disjoint one the selected
    #: configuration is reported on (None: the family defines none; pass them as eval.val_prompts=...)
    val_prompts: str | None = None
    test_prompts: str | None = None
    seed: int = 0
    batch_size: int = 8


@dataclass
class RunConfig:
    method: str = "dpo"
    #: the method's hyper-parameters (validated against the method's Config dataclass)
    method_args: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: parent folder of run directories
    output_dir: str = "runs"
    #: run directory name; None = "<method>-<model>-<timestamp>"
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """The config a run directory's config.json records (unknown keys are an error: written by another bench)."""
        try:
            sections = {k: c(**d[k]) for k, c in SECTIONS.items()}
            rest = {k: v for k, v in d.items() if k not in SECTIONS}
            return cls(**sections, **rest)
        except TypeError as err:
            raise ConfigError(f"a saved config.json does not match this bench's keys ({err}); resume it with the "
                              "bench version that wrote it") from None


SECTIONS = {"train": TrainConfig, "model": ModelConfig, "data": DataConfig, "eval": EvalConfig}


def _field_paths() -> dict[str, str]:
    """bare field name -> dotted path. A top-level field (name, output_dir) first; a name in several sections
    means the first of train, model, data, eval (``steps=10`` is train.steps; write eval.steps=50 for the other)."""
    paths = {f.name: f.name for f in fields(RunConfig) if f.name not in SECTIONS}  # name, output_dir, method
    for section, cls in SECTIONS.items():  # insertion order is the priority
        for f in fields(cls):
            paths.setdefault(f.name, f"{section}.{f.name}")
    return paths


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a CLI string (or TOML value) to the annotated type."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, str):
                return int(float(value)) if "e" in value.lower() else int(value)
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{key}: expected a table; set single entries as {key}.NAME=VALUE")
    return value


def parse_scalar(text: str) -> Any:
    """A CLI value for a free-form (dict) entry: JSON if it parses (numbers, booleans), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply(cfg: RunConfig, key: str, value: Any, method_fields: dict[str, Any]) -> None:
    """Set one (possibly dotted or bare) key on cfg. ``method_fields`` maps the method's config fields to types."""
    parts = key.split(".")
    if len(parts) == 1:
        bare = parts[0]
        if bare in method_fields and bare not in _field_paths():
            parts = ["method", bare]
        elif bare in _field_paths():
            parts = _field_paths()[bare].split(".")
        else:
            known = sorted(set(_field_paths()) | set(method_fields))
            raise ConfigError(f"unknown config key {key!r}.{did_you_mean(bare, known)} "
                              f"Use a dotted key (e.g. train.lr=1e-5); `bench train --help-config` lists them all.")
        key = ".".join(parts)
    head = parts[0]
    if head in ("method", "method_args"):
        if len(parts) != 2:
            raise ConfigError(f"method keys look like method.NAME=VALUE, got {key!r}")
        name = parts[1]
        if name not in method_fields:
            raise ConfigError(f"unknown key {key!r} for method {cfg.method!r}."
                              f"{did_you_mean(name, list(method_fields))} Its keys: {', '.join(method_fields)}.")
        cfg.method_args[name] = _coerce(value, method_fields[name], key)
        return
    if head in SECTIONS:
        section = getattr(cfg, head)
        hints = get_type_hints(type(section))
        if len(parts) < 2 or parts[1] not in hints:
            sub = parts[1] if len(parts) > 1 else ""
            raise ConfigError(f"unknown config key {key!r}.{did_you_mean(sub, list(hints))} "
                              f"Keys of [{head}]: {', '.join(hints)}.")
        if len(parts) == 3 and get_origin(hints[parts[1]]) is dict:
            getattr(section, parts[1])[parts[2]] = parse_scalar(value) if isinstance(value, str) else value
            return
        if len(parts) != 2:
            raise ConfigError(f"config key {key!r} is too deep")
        setattr(section, parts[1], _coerce(value, hints[parts[1]], key))
        return
    top = get_type_hints(RunConfig)
    if head in top and len(parts) == 1 and head not in SECTIONS:
        setattr(cfg, head, _coerce(value, top[head], key))
        return
    known = list(SECTIONS) + [f.name for f in fields(RunConfig)]
    raise ConfigError(f"unknown config key {key!r}.{did_you_mean(head, known)}")


def apply_mapping(cfg: RunConfig, mapping: dict[str, Any], method_fields: dict[str, Any], prefix: str = "") -> None:
    """Apply a nested mapping (a TOML file) as dotted keys."""
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        is_free_dict = key.split(".")[-1] in ("ref_update_args", "timesteps_args")
        if isinstance(v, dict) and not is_free_dict:
            apply_mapping(cfg, v, method_fields, prefix=f"{key}.")
        else:
            apply(cfg, key, v, method_fields)


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. train.lr=1e-5 or beta=2000)")
        k, v = item.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def preset_path(family: str, method: str) -> Path:
    return PRESET_DIR / family / f"{method}.toml"


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file; a path that does not exist may name a packaged preset (``ablation/smpo-ddim``)."""
    p = Path(path)
    if not p.is_file() and (PRESET_DIR / f"{path}.toml").is_file():
        p = PRESET_DIR / f"{path}.toml"
    if not p.is_file():
        packaged = sorted(str(f.relative_to(PRESET_DIR).with_suffix("")) for f in PRESET_DIR.glob("*/*.toml"))
        raise ConfigError(f"config file {str(p)!r} does not exist (nor a packaged preset: {', '.join(packaged)})")
    with p.open("rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{p}: not valid TOML ({err})") from None


def family_config(family: str | None) -> RunConfig:
    """The dataclass defaults with a model family's preset (``family.toml``) on top: its data and its evaluation
    protocol, the one ``bench run`` and ``bench eval`` share."""
    cfg = RunConfig()
    if family is not None and (PRESET_DIR / family / "family.toml").is_file():
        apply_mapping(cfg, load_toml(PRESET_DIR / family / "family.toml"), {})
    return cfg


def method_field_types(method_cls: type) -> dict[str, Any]:
    hints = get_type_hints(method_cls.Config)
    return {f.name: hints[f.name] for f in fields(method_cls.Config)}


def resolve(method: str, model: str, family: str | None, method_cls: type, config_file: str | None,
            overrides: list[str], base: RunConfig | None = None) -> tuple[RunConfig, list[str]]:
    """Build the resolved config. Returns it and the list of sources applied (for printing). With ``base`` (a resumed
    run's saved config) the presets are not applied again: the saved config already holds them."""
    cfg = base or RunConfig()
    cfg.method, cfg.model.name = method, model
    mfields = method_field_types(method_cls)
    sources = ["defaults"] if base is None else ["the run's saved config.json"]
    if base is None and family is not None and (PRESET_DIR / family / "family.toml").is_file():
        apply_mapping(cfg, load_toml(PRESET_DIR / family / "family.toml"), mfields)
        sources.append(f"preset {family}/family")
    if base is None and family is not None and preset_path(family, method).is_file():
        apply_mapping(cfg, load_toml(preset_path(family, method)), mfields)
        sources.append(f"preset {family}/{method}")
    if config_file:
        apply_mapping(cfg, load_toml(config_file), mfields)
        sources.append(f"file {config_file}")
    for k, v in parse_overrides(overrides):
        apply(cfg, k, v, mfields)
    if overrides:
        sources.append("overrides " + " ".join(overrides))
    validate(cfg, method_cls)
    return cfg, sources


#: the domain of every numeric field: (section, field) -> (test, what the error says it must be)
_DOMAINS = {
    **{("train", f): (lambda v: v >= 1, ">= 1") for f in ("steps", "batch_size", "grad_accum", "log_every")},
    ("train", "keep_checkpoints"): (lambda v: v >= 0, ">= 0 (0 keeps every checkpoint)"),
    ("train", "effective_batch"): (lambda v: v is None or v >= 1, ">= 1 (or none)"),
    ("train", "lr"): (lambda v: v > 0, "> 0"),
    ("train", "adam_eps"): (lambda v: v > 0, "> 0"),
    **{("train", f): (lambda v: v >= 0, ">= 0") for f in ("warmup_steps", "weight_decay", "max_grad_norm",
                                                       "checkpoint_every")},
    **{("train", f): (lambda v: 0 <= v < 1, "in [0, 1)") for f in ("adam_beta1", "adam_beta2")},
    ("train", "noise_offset"): (lambda v: v >= 0, ">= 0 (the std of the per-channel offset)"),
    ("data", "caption_dropout"): (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    ("data", "max_pairs"): (lambda v: v is None or v >= 1, ">= 1 (or none for all)"),
    ("data", "num_workers"): (lambda v: v >= 0, ">= 0"),
    ("model", "resolution"): (lambda v: v is None or (v > 0 and v % 8 == 0), "a positive multiple of 8 (or none)"),
    ("model", "lora_rank"): (lambda v: v >= 0, ">= 0 (0 trains the full UNet)"),
    ("model", "lora_alpha"): (lambda v: v is None or v > 0, "> 0 (or none for the rank)"),
    ("eval", "steps"): (lambda v: v >= 1, ">= 1"),
    ("eval", "cfg"): (lambda v: v >= 0, ">= 0"),
    ("eval", "images_per_prompt"): (lambda v: v >= 1, ">= 1"),
    ("eval", "batch_size"): (lambda v: v >= 1, ">= 1"),
    ("eval", "limit"): (lambda v: v is None or v >= 1, ">= 1 (or none for all)"),
    ("eval", "resolution"): (lambda v: v is None or (v > 0 and v % 8 == 0), "a positive multiple of 8 (or none)"),
}


def validate(cfg: RunConfig, method_cls: type | None = None) -> None:
    """Every choice and numeric domain, and the method's own (its Config's ``__post_init__``): a ConfigError naming
    the key, its value and what it must be."""
    t = cfg.train
    choices = {"train.optimizer": (t.optimizer, {"adamw", "adafactor", "adamw8bit"}),
               "train.mixed_precision": (t.mixed_precision, {"no", "fp16", "bf16"}),
               "train.lr_scheduler": (t.lr_scheduler, {"constant_with_warmup", "linear", "cosine"}),
               "train.reference": (t.reference, {"auto", "copy", "lora-disabled"})}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {sorted(allowed)}.{did_you_mean(value, list(allowed))}")
    for (section, name), (ok, must) in _DOMAINS.items():
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise ConfigError(f"{section}.{name} must be {must}, got {value}")
    if cfg.data.reward_lo >= cfg.data.reward_hi:
        raise ConfigError(f"data.reward_lo ({cfg.data.reward_lo}) must be below data.reward_hi ({cfg.data.reward_hi})")
    if t.reference == "lora-disabled" and cfg.model.lora_rank <= 0:
        raise ConfigError("train.reference=lora-disabled needs a LoRA run: set model.lora_rank (e.g. 8)")
    if method_cls is not None:
        try:
            method_config(cfg, method_cls)
        except (ValueError, TypeError) as err:  # a value out of its domain, or a key the method does not have
            raise ConfigError(f"{err} (method {cfg.method!r})") from None


#: what a resumed run may change: how long it runs, how it checkpoints and logs, how it is evaluated, and speed
#: switches that do not change the math. Everything else (method, model, data, batch, accumulation, seed, lr,
#: optimizer, precision, ...) is fixed by the checkpoint and refused with a named error.
MUTABLE_ON_RESUME = ("train.steps", "train.checkpoint_every", "train.keep_checkpoints", "train.log_every",
                     "train.tracker", "train.fused_optimizer", "train.channels_last", "train.compile", "eval.",
                     "output_dir", "name")


def flat_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("ref_update_args", "timesteps_args"):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_changes(saved: RunConfig, new: RunConfig) -> tuple[list[str], list[str]]:
    """(refused, applied) differences "key: saved -> new" between a run's saved config and a resumed invocation's."""
    a, b = flat_dict(json.loads(json.dumps(saved.to_dict(), default=str))), \
        flat_dict(json.loads(json.dumps(new.to_dict(), default=str)))
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    # a decaying schedule is a function of train.steps: changing them mid-run would bend the schedule already used
    fixed = ("train.steps",) if new.train.lr_scheduler != "constant_with_warmup" else ()
    mutable = [k for k in diff if k.startswith(MUTABLE_ON_RESUME) and k not in fixed]
    refused = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff if k not in mutable]
    applied = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in mutable]
    return refused, applied


def method_config(cfg: RunConfig, method_cls: type) -> Any:
    return dataclasses.replace(method_cls.Config(), **cfg.method_args)


def grad_accum_for(cfg: RunConfig, num_processes: int) -> int:
    """Accumulation steps: from train.effective_batch when set, else train.grad_accum."""
    t = cfg.train
    if t.effective_batch is None:
        return t.grad_accum
    per = t.batch_size * num_processes
    if t.effective_batch % per:
        raise ConfigError(f"train.effective_batch={t.effective_batch} is not a multiple of batch_size x processes "
                          f"= {t.batch_size} x {num_processes}; change one of them")
    return t.effective_batch // per


def all_keys(method_cls: type | None = None) -> list[tuple[str, str, Any]]:
    """(dotted key, type, default) for every config key; for --help-config."""
    rows = []
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        inst = cls()
        for f in fields(cls):
            rows.append((f"{section}.{f.name}", getattr(hints[f.name], "__name__", str(hints[f.name])),
                         getattr(inst, f.name)))
    if method_cls is not None:
        inst = method_cls.Config()
        for name, tp in method_field_types(method_cls).items():
            rows.append((f"method.{name}", getattr(tp, "__name__", str(tp)), getattr(inst, name)))
    return rows
