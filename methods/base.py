"""The method interface (DESIGN.md section 4).

A method is a loss over a shared batch, not a training loop. The one shared trainer (``bench.trainer``) builds the
batch (latents already scaled by the VAE factor, text conditioning, labels, sample slots), and hands the method a
:class:`StepContext` through which every UNet call, every random draw and every reference forward goes. So the
trainer owns comparability (precision, no_grad/eval for references, per-sample seeds, cost counting) and a method
file only composes pieces: how x_t and its target are obtained, the labels, the loss, and which reference it needs.

Per-sample randomness: ``ctx.randn``/``ctx.timesteps`` draw from a generator derived from
(run seed, optimizer step, sample slot, stream name). A slot is the sample's position in the optimizer step's global
batch, so 1 process x 2b, 2 processes x b and 1 process x b x 2 accumulation see identical (t, noise) for every sample,
and a resumed run draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor


@dataclass
class Cond:
    """UNet conditioning for a batch of images.

    ``encoder_hidden_states``: (B, L, D). ``added``: SDXL's added conditions ``{"text_embeds": (B, 1280),
    "time_ids": (B, 6)}``, or None for SD1.5-style models.
    """

    encoder_hidden_states: Tensor
    added: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return self.encoder_hidden_states.shape[0]

    def repeat(self, n: int) -> "Cond":
        """The batch concatenated ``n`` times along dim 0 (e.g. [winners; losers] share one prompt)."""
        cat = lambda x: torch.cat([x] * n, dim=0)  # noqa: E731
        return Cond(cat(self.encoder_hidden_states), {k: cat(v) for k, v in (self.added or {}).items()} or None)

    def select(self, index: Any) -> "Cond":
        """The conditioning of a sub-batch (an index, slice or boolean mask along dim 0)."""
        return Cond(self.encoder_hidden_states[index], {k: v[index] for k, v in (self.added or {}).items()} or None)

    def to(self, *args: Any, **kwargs: Any) -> "Cond":
        move = lambda x: x.to(*args, **kwargs)  # noqa: E731
        return Cond(move(self.encoder_hidden_states), {k: move(v) for k, v in (self.added or {}).items()} or None)

    def unet_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.encoder_hidden_states}
        if self.added is not None:
            kwargs["added_cond_kwargs"] = self.added
        return kwargs


@dataclass
class PairBatch:
    """A micro-batch of B preference pairs, winner first.

    ``x0_w``/``x0_l``: (B, C, h, w) float32 latents (posterior samples x scaling factor).
    ``cond``: conditioning of the B prompts (already caption-dropped where dropout applies).
    ``label``: (B,) probability that the winner is preferred: 1.0 for human binary labels, the smoothed p for SmPO.
    ``slots``: (B,) int64 positions in the optimizer step's global batch (seed derivation).
    """

    x0_w: Tensor
    x0_l: Tensor
    cond: Cond
    label: Tensor
    slots: Tensor

    def __len__(self) -> int:
        return self.x0_w.shape[0]


@dataclass
class ImageBatch:
    """A micro-batch of B unpaired images (KTO). ``y``: (B,) +1 desirable / -1 undesirable."""

    x0: Tensor
    cond: Cond
    y: Tensor
    slots: Tensor

    def __len__(self) -> int:
        return self.x0.shape[0]


class StepContext(Protocol):
    """What the trainer gives a method for one micro-batch. All returned predictions are float32."""

    alphas_cumprod: Tensor  # (T,) float32 on the compute device
    num_train_timesteps: int
    device: torch.device

    def policy(self, x: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """Policy epsilon prediction WITH grad (train mode). Counted as 3 forward-equivalents per image."""

    def policy_no_grad(self, x: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """Policy prediction without grad, still in train mode (InPO/SmPO inversion). 1 forward-equivalent per image."""

    def reference(self, x: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """Reference prediction: no grad, eval mode (separate frozen module, or LoRA adapters disabled)."""

    def timesteps(self, slots: Tensor, stream: str = "t") -> Tensor:
        """One timestep per slot (int64, on device), from the run's timestep strategy."""

    def randn(self, slots: Tensor, shape: tuple[int, ...], stream: str) -> Tensor:
        """Standard normal noise of ``(len(slots), *shape)``, one derived generator per slot and stream."""

    def noise(self, slots: Tensor, shape: tuple[int, ...], stream: str = "noise") -> Tensor:
        """The forward-diffusion noise eps of ``(len(slots), C, h, w)`` latents: ``randn(stream)``, plus
        ``train.noise_offset`` x ``randn(stream + "/offset")`` of shape (C, 1, 1) when that is set (offset noise: the
        noise the base model was trained with; exactly ``randn(stream)`` when it is 0)."""

    def balance(self, z: Tensor, t: Tensor) -> Tensor:
        """Timestep add-on hook for implicit-reward margins: identity unless timestep-aware training is on."""

    def all_reduce_mean(self, x: Tensor) -> Tensor:
        """Mean across processes (identity single-process); used for KTO's batch KL reference point."""


class Method:
    """Base of every method. Subclasses set the class attributes and implement :meth:`loss`.

    Methods do not inherit from each other; shared math lives in free functions (``methods.diffusion``,
    ``methods.losses``). ``Config`` is a dataclass of the method's hyper-parameters; its defaults are the
    authors' values and the presets in ``bench/presets`` quote their source.
    """

    #: "pairs" (PairBatch) or "images" (ImageBatch, unpaired)
    data: ClassVar[str] = "pairs"
    #: whether the trainer must provide a reference model (ctx.reference)
    uses_reference: ClassVar[bool] = True
    #: horizontal flip of a pair: "independent" (winner and loser each p=0.5) or "joint"
    flip: ClassVar[str] = "independent"
    #: name of a stored label the data must carry (e.g. "reward" for smoothed labels), or None
    labels: ClassVar[str | None] = None
    #: paper reference for ``bench ls methods``
    paper: ClassVar[str] = ""

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def loss(self, batch: Any, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        """Return (scalar float32 loss averaged over the micro-batch, metrics).

        Metrics are detached per-batch tensors or scalars; the trainer averages them over the step. Conventional
        keys: ``acc`` (implicit accuracy), ``err_w``/``err_l`` (policy), ``ref_err_w``/``ref_err_l``.
        """
        raise NotImplementedError

    @classmethod
    def config_fields(cls) -> list[str]:
        return [f.name for f in fields(cls.Config)]

    @classmethod
    def make_config(cls, **overrides: Any) -> Any:
        return replace(cls.Config(), **overrides)


def check_domain(config: Any, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """For a method Config's ``__post_init__``: ValueError naming the field (``method.NAME``) outside its domain."""
    for name in positive:
        if not getattr(config, name) > 0:
            raise ValueError(f"method.{name} must be > 0, got {getattr(config, name)}")
    for name in non_negative:
        if not getattr(config, name) >= 0:
            raise ValueError(f"method.{name} must be >= 0, got {getattr(config, name)}")


def summary_line(method_cls: type[Method]) -> str:
    doc = (method_cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else method_cls.__name__

