"""The one shared trainer. Every method runs through this loop; nothing here branches on a method's name.

It owns everything that affects comparability: data order and per-sample randomness (``bench.rng``), gradient
accumulation, mixed precision, the reference model (separate frozen module, or LoRA adapters disabled), the
timestep strategy, optimiser and schedule, gradient clipping, non-finite checks, logging, atomic checkpoints,
resume, and cost accounting. A method only computes a loss from a batch through the :class:`Context` below.

Read top to bottom: ``train()`` sets up, then runs ``steps`` optimizer steps of ``grad_accum`` micro-steps.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench import checkpoint, rng
from bench.config import ConfigError, RunConfig, grad_accum_for, method_config
from bench.cost import CostMeter
from bench.data import BatchMaker, DataError, Schedule, slots_for
from bench.models import Components
from bench.rundir import write_run_files
from bench.worlds import world_of
from methods import get_method
from methods.base import Cond
from methods.reference import REFERENCE_UPDATES
from methods.timesteps import TIMESTEP_STRATEGIES


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient. Training stops; the message names the step and the samples."""


class Context:
    """The StepContext a method sees for one micro-batch (see methods.base.StepContext)."""

    def __init__(self, trainer: "Trainer", step: int):
        self.tr, self.step = trainer, step
        self.alphas_cumprod = trainer.alphas_cumprod
        self.num_train_timesteps = len(trainer.alphas_cumprod)
        self.device = trainer.device

    def _run(self, fn, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Batched call, or one image at a time (train.unbatched_forwards: the naive baseline of bench perf)."""
        if not self.tr.cfg.train.unbatched_forwards:
            return fn(x, t, cond)
        return torch.cat([fn(x[i:i + 1], t[i:i + 1], cond.select(slice(i, i + 1))) for i in range(x.shape[0])])

    def _policy(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        return self.tr.policy(x, t, **cond.unet_kwargs()).sample.float()

    def policy(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        self.tr.cost.count_forward(x.shape[0], with_grad=True)
        return self._run(self._policy, x, t, cond)

    @torch.no_grad()
    def policy_no_grad(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        self.tr.cost.count_forward(x.shape[0], with_grad=False)
        with self.tr.cost.phase("inversion"):
            return self._run(self._policy, x, t, cond)

    @torch.no_grad()
    def reference(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        if self.tr.reference is None:
            raise RuntimeError("this method declared uses_reference = False but called ctx.reference")
        self.tr.cost.count_forward(x.shape[0], with_grad=False)
        with self.tr.cost.phase("reference_forward"):
            return self._run(self.tr.reference, x, t, cond)

    def timesteps(self, slots: torch.Tensor, stream: str = "t") -> torch.Tensor:
        u = rng.uniform(self.tr.seed, self.step, slots.tolist(), stream)[:, 0]
        return self.tr.timestep_strategy.sample(u).to(self.device)

    def randn(self, slots: torch.Tensor, shape: tuple[int, ...], stream: str) -> torch.Tensor:
        return rng.randn(self.tr.seed, self.step, slots.tolist(), tuple(shape), stream).to(self.device)

    def noise(self, slots: torch.Tensor, shape: tuple[int, ...], stream: str = "noise") -> torch.Tensor:
        eps = self.randn(slots, shape, stream)
        if self.tr.cfg.train.noise_offset:
            eps = eps + self.tr.cfg.train.noise_offset * self.randn(slots, (shape[0], 1, 1), f"{stream}/offset")
        return eps

    def balance(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.tr.timestep_strategy.balance(z, t)

    def all_reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.tr.accelerator.reduce(x.detach().clone(), reduction="mean")


class Reference:
    """Reference predictions: a separate frozen copy (eval mode), or the policy with its LoRA adapters disabled."""

    def __init__(self, trainer: "Trainer", unet: torch.nn.Module, mode: str, dtype: torch.dtype):
        self.mode, self.dtype, self.trainer = mode, dtype, trainer
        self.module = None
        if mode == "copy":
            self.module = copy.deepcopy(unet).to(dtype).requires_grad_(False).eval()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        if self.module is not None:
            return self.module(x.to(self.dtype), t, **cond.to(self.dtype).unet_kwargs()).sample.float()
        unet = self.trainer.unwrapped
        unet.eval()
        unet.disable_adapters()
        try:
            with self.trainer.accelerator.autocast():
                return unet(x, t, **cond.unet_kwargs()).sample.float()
        finally:
            unet.enable_adapters()
            unet.train()

    def parameters(self) -> list[torch.Tensor]:
        return [] if self.module is None else list(self.module.parameters())


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path, accelerator=None, show_progress: bool = True):
        from accelerate import Accelerator

        self.cfg, self.run_dir, self.show_progress = cfg, Path(run_dir), show_progress
        t = cfg.train
        distributed_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = accelerator or Accelerator(
            mixed_precision=t.mixed_precision, log_with=t.tracker, project_dir=str(self.run_dir), cpu=distributed_cpu)
        acc = self.accelerator
        self.device, self.seed = acc.device, t.seed
        self.num_processes, self.process_index = acc.num_processes, acc.process_index
        self.grad_accum = grad_accum_for(cfg, self.num_processes)
        self.global_batch = t.batch_size * self.num_processes * self.grad_accum
        self.cost = CostMeter(self.device, self.num_processes)
        self.method_cls = get_method(cfg.method)
        self.method = self.method_cls(method_config(cfg, self.method_cls))
        self.weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[t.mixed_precision]

        # --- model, data (supplied by the model's world: bench.worlds) ------------------------------------------
        self.world = world_of(cfg.model.name)
        self.comps: Components = self.world.load(cfg, self.device)
        frozen_dtype = self.weight_dtype if self.device.type == "cuda" else torch.float32
        for m in [self.comps.vae, *self.comps.text_encoders]:  # cast only when needed: diffusers warns on any cast
            if m is not None and next(m.parameters()).dtype != frozen_dtype:
                m.to(frozen_dtype)
        self.alphas_cumprod = self.comps.scheduler.alphas_cumprod.to(self.device, torch.float32)
        with acc.main_process_first(), self.cost.phase("cache"):
            progress = show_progress and acc.is_main_process
            self.store = self.world.pairs(cfg, progress)
            source = self.world.latents(self.store, self.comps, cfg.data, self.seed, progress)
        labels = self._labels()
        unpaired = self.method_cls.data == "images"
        self.schedule = Schedule(len(self.store), self.seed, self.global_batch, unpaired,
                                 getattr(self.method.config, "desirable_fraction", 0.8))
        self.make_batch = BatchMaker(self.store, source, cfg.data, self.seed, self.method_cls.flip, unpaired, labels)

        # --- policy, reference, strategies -----------------------------------------------------------------
        unet = self.comps.unet
        if cfg.model.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        ref_mode = t.reference if t.reference != "auto" else ("lora-disabled" if cfg.model.lora_rank else "copy")
        if cfg.model.lora_rank:
            from peft import LoraConfig

            unet.requires_grad_(False)
            unet.add_adapter(LoraConfig(r=cfg.model.lora_rank, lora_alpha=cfg.model.lora_alpha or
                                        cfg.model.lora_rank, init_lora_weights="gaussian",
                                        target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        self.reference = (Reference(self, unet, ref_mode, self.weight_dtype)
                          if self.method_cls.uses_reference else None)
        self.ref_update = REFERENCE_UPDATES.get(t.ref_update)(**t.ref_update_args)
        if self.reference is not None and self.ref_update.needs_initial_copy and ref_mode != "copy":
            raise ConfigError(f"train.ref_update={t.ref_update} moves the reference weights, which needs "
                             "train.reference=copy (a LoRA-disabled reference is the base model itself)")
        self.initial = ([p.detach().clone() for p in self.reference.parameters()]
                        if self.reference is not None and self.ref_update.needs_initial_copy else None)
        self.timestep_strategy = TIMESTEP_STRATEGIES.get(t.timesteps)(
            num_train_timesteps=len(self.alphas_cumprod), **t.timesteps_args)
        if t.channels_last:
            unet.to(memory_format=torch.channels_last)
            if self.reference is not None and self.reference.module is not None:
                self.reference.module.to(memory_format=torch.channels_last)
        unet.train()
        self.trainable = [p for p in unet.parameters() if p.requires_grad]
        self.lr = t.lr * (self.global_batch if t.scale_lr else 1)
        optimizer = self._optimizer(self.trainable)
        from diffusers.optimization import get_scheduler

        # the prepared scheduler steps once per process at every optimizer step (accelerate, without split_batches),
        # so its warmup and length are counted in process-steps, as the diffusers training scripts do
        scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.warmup_steps * self.num_processes,
                                  num_training_steps=t.steps * self.num_processes)
        self.policy, self.optimizer, self.scheduler = acc.prepare(unet, optimizer, scheduler)
        self.unwrapped = acc.unwrap_model(self.policy)
        if t.compile:
            self.policy = torch.compile(self.policy)

    # ----------------------------------------------------------------------------------------------------------
    def _labels(self):
        """Per-pair label for PairBatch.label: the smoothed p for methods that declare ``labels = "reward"``."""
        need = self.method_cls.labels
        if need is None:
            return None
        if need != "reward":
            raise ConfigError(f"method {self.cfg.method!r} needs labels {need!r}, which this trainer cannot provide")
        if self.store.rewards is None:
            raise DataError(f"method {self.cfg.method!r} needs reward labels but {self.cfg.data.source!r} has no "
                             "reward_0/reward_1 columns: run `bench label --data SRC --out FILE` and train with "
                             "data.labels=FILE")
        from methods.labels import score_bounds, smoothed_preference

        d = self.cfg.data
        r = torch.as_tensor(self.store.rewards.copy())
        lo, hi = score_bounds(r) if d.reward_bounds_from_data else (d.reward_lo, d.reward_hi)
        self.reward_bounds = (lo, hi)
        return smoothed_preference(r[:, 0], r[:, 1], lo, hi).numpy()

    def _optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        t = self.cfg.train
        if t.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps,
                                     weight_decay=t.weight_decay, fused=t.fused_optimizer or None)
        if t.optimizer == "adafactor":
            from transformers.optimization import Adafactor

            return Adafactor(params, lr=self.lr, weight_decay=t.weight_decay, clip_threshold=1.0,
                             scale_parameter=False, relative_step=False)
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("train.optimizer=adamw8bit needs bitsandbytes: pip install 'bench-align[bnb]' (or "
                              "train.optimizer=adamw)") from None
        return bnb.optim.AdamW8bit(params, lr=self.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps,
                                   weight_decay=t.weight_decay)

    def describe(self) -> str:
        c, t = self.cfg, self.cfg.train
        where = self.comps.family + (f", {self.comps.resolution}px" if self.comps.resolution else "")
        return (f"method {c.method} on {self.comps.name} ({where}) | data "
                f"{self.store.report()} | effective batch {self.global_batch} = {t.batch_size} per device x "
                f"{self.grad_accum} accumulation x {self.num_processes} processes | lr {self.lr:g} | "
                f"{self.method_cls.__name__}{asdict(self.method.config)} | steps {t.steps} | precision "
                f"{t.mixed_precision} | reference {getattr(self.reference, 'mode', 'none')}, update {t.ref_update} | "
                f"timesteps {t.timesteps} | cache {'on' if c.data.cache else 'off'}")

    # ----------------------------------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> Path:
        acc, cfg = self.accelerator, self.cfg
        start = self._resume() if resume else 0
        if acc.is_main_process:
            write_run_files(self.run_dir, cfg, self.comps, self.accelerator, kind="train")
            if cfg.train.tracker:
                acc.init_trackers("bench", config=json.loads(json.dumps(cfg.to_dict(), default=str)))
        log_path = self.run_dir / "metrics.jsonl"
        self._truncate_log(log_path, start)
        from tqdm.auto import tqdm

        bar = tqdm(range(start, cfg.train.steps), initial=start, total=cfg.train.steps, desc=f"{cfg.method}",
                   disable=not (self.show_progress and acc.is_main_process))
        for step in bar:
            t0 = time.perf_counter()
            metrics = self._step(step)
            metrics.update(step=step + 1, lr=self.scheduler.get_last_lr()[0], seconds=time.perf_counter() - t0)
            if acc.is_main_process and (step + 1) % cfg.train.log_every == 0:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(metrics) + "\n")
                if cfg.train.tracker:
                    acc.log({k: v for k, v in metrics.items() if k != "step"}, step=step + 1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics.get('acc', float('nan')):.2f}")
            done = step + 1
            every = cfg.train.checkpoint_every
            if every and (done % every == 0 or done == cfg.train.steps):  # the last one lets a run be extended
                self.save_checkpoint(done)
        self._finish()
        return self.run_dir

    def _step(self, step: int) -> dict[str, Any]:
        acc, t = self.accelerator, self.cfg.train
        sums: dict[str, list[torch.Tensor]] = {}
        seen: list[int] = []
        for micro in range(self.grad_accum):
            slots = slots_for(micro, self.process_index, t.batch_size, self.num_processes)
            items = [self.schedule.item(step, s) for s in slots]
            seen += items
            with self.cost.phase("data"):
                batch = self.make_batch(step, slots, items, self.device)
            sync = micro == self.grad_accum - 1
            with nullcontext() if sync else acc.no_sync(self.policy), self.cost.phase("train_forward_backward"):
                loss, metrics = self.method.loss(batch, Context(self, step))
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"non-finite loss {loss.item()} at step {step + 1} (micro-step {micro + 1}; "
                                         f"metrics.jsonl counts steps from 1), sample slots {slots}, data items "
                                         f"{items}. Lower train.lr or the method's beta, or try mixed_precision=no")
                acc.backward(loss / self.grad_accum)
            for k, v in {"loss": loss.detach(), **metrics}.items():
                sums.setdefault(k, []).append(v.float().reshape(-1).mean())
        with self.cost.phase("optimizer"):
            grad_norm = self._clip(step, seen)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.reference is not None:
                self.ref_update.update(step + 1, self.reference.parameters(), self._policy_params(), self.initial)
        self.cost.pairs_seen += self.global_batch
        local = torch.stack([torch.stack(v).mean() for v in sums.values()])
        means = acc.reduce(local, reduction="mean").tolist()
        out = dict(zip(sums.keys(), means))
        out["grad_norm"] = grad_norm
        return out

    def _clip(self, step: int, items: list[int]) -> float:
        acc, t = self.accelerator, self.cfg.train
        if acc.scaler is not None:  # fp16: an overflow step is skipped by the scaler, as in the authors' runs
            acc.unscale_gradients()
        if t.max_grad_norm > 0:
            norm = acc.clip_grad_norm_(self.trainable, t.max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.trainable if p.grad is not None]))
        norm = float(norm)
        if not math.isfinite(norm) and acc.scaler is None:
            shown = ", ".join(map(str, items[:16])) + (f" and {len(items) - 16} more" if len(items) > 16 else "")
            raise NonFiniteError(f"non-finite gradient norm ({norm}) at step {step + 1} (metrics.jsonl counts steps "
                                 f"from 1), from the data items {shown} of this process. Lower train.lr or the "
                                 "method's beta, or try mixed_precision=no")
        return norm

    def _policy_params(self) -> list[torch.Tensor]:
        return [p for p in self.unwrapped.parameters()]

    # ----------------------------------------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        extra = {"timesteps": self.timestep_strategy.state_dict(), "cost": self._global_cost_state()}

        def save(tmp: Path) -> None:
            acc.save_state(str(tmp), safe_serialization=True)
            if self.reference is not None and self.ref_update.needs_initial_copy:
                from safetensors.torch import save_file
                save_file({f"p{i}": p.contiguous() for i, p in enumerate(self.reference.parameters())},
                          str(tmp / "reference.safetensors"))

        with self.cost.phase("checkpoint"):
            if acc.is_main_process:
                checkpoint.write(self.run_dir / "checkpoints", step, save, extra, self.cfg.train.keep_checkpoints)
        acc.wait_for_everyone()

    def _resume(self) -> int:
        folder = checkpoint.latest(self.run_dir / "checkpoints")
        if folder is None:
            if (self.run_dir / "weights").is_dir():
                raise ConfigError(f"{self.run_dir} finished without checkpoints (train.checkpoint_every=0), so it "
                                  "cannot be resumed or extended; train a new run (--name) with checkpoint_every > 0")
            return 0
        self.accelerator.load_state(str(folder))
        state = checkpoint.trainer_state(folder)
        self.timestep_strategy.load_state_dict(state["timesteps"])
        self.cost.load_state_dict(state["cost"])
        if (folder / "reference.safetensors").is_file():
            from safetensors.torch import load_file
            saved = load_file(str(folder / "reference.safetensors"))
            with torch.no_grad():
                for i, p in enumerate(self.reference.parameters()):
                    p.copy_(saved[f"p{i}"])
        if self.accelerator.is_main_process:
            print(f"resumed from {folder} (step {state['step']})")
        return int(state["step"])

    def _truncate_log(self, path: Path, start: int) -> None:
        if not self.accelerator.is_main_process:
            return
        if start == 0 or not path.is_file():
            path.write_text("")
            return
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
        path.write_text("".join(ln + "\n" for ln in lines))

    def _global_cost_state(self) -> dict:
        state = self.cost.state_dict()
        fe = torch.tensor([state["forward_equivalents"]], dtype=torch.float64, device=self.device)
        state["forward_equivalents"] = float(self.accelerator.reduce(fe, reduction="sum"))
        return state

    def _finish(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        total = self._global_cost_state()
        if acc.is_main_process:
            self.save_weights(self.run_dir / "weights")
            self.cost.forward_equivalents = total["forward_equivalents"]
            self.cost.write(self.run_dir / "cost.json")
        if self.cfg.train.tracker:
            acc.end_training()
        acc.wait_for_everyone()

    def save_weights(self, folder: Path) -> None:
        """Final weights in diffusers format: the UNet folder, or pytorch_lora_weights.safetensors for LoRA."""
        folder.mkdir(parents=True, exist_ok=True)
        unet = self.unwrapped
        if self.cfg.model.lora_rank:
            from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
            pipe_cls = StableDiffusionXLPipeline if self.comps.is_sdxl else StableDiffusionPipeline
            pipe_cls.save_lora_weights(str(folder), unet_lora_layers=layers)
        else:
            unet.save_pretrained(str(folder / "unet"), safe_serialization=True)


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, show_progress: bool = True, accelerator=None) -> Path:
    trainer = Trainer(cfg, run_dir, accelerator=accelerator, show_progress=show_progress)
    if trainer.accelerator.is_main_process:
        print(trainer.describe())
    return trainer.train(resume=resume)
