"""Preference-alignment methods: the method interface, its registry, one file per method, shared diffusion math.

Never imports ``bench`` or ``evaluators`` (DESIGN.md section 2). Nothing here loads models or data: the trainer
passes in latents, conditioning and a :class:`~methods.base.StepContext` that runs the UNets.
"""
from methods.base import Cond, ImageBatch, Method, PairBatch, StepContext
from methods.registry import METHODS, get_method

__all__ = ["Cond", "ImageBatch", "Method", "PairBatch", "StepContext", "METHODS", "get_method"]
