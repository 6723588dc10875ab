"""Dependency-free helpers shared by the three layers (``bench``, ``methods``, ``evaluators``).

It imports nothing from them, so the layering rule of DESIGN.md section 2 holds: ``methods`` and ``evaluators``
may use this package without importing each other or ``bench``.
"""
from bench_common.compat import ensure_torchvision_importable
from bench_common.files import atomic_write_text
from bench_common.hf_dtype import dtype_kwarg
from bench_common.registry import Registry, UnknownNameError

__all__ = ["Registry", "UnknownNameError", "atomic_write_text", "dtype_kwarg", "ensure_torchvision_importable"]
