"""bench: train and evaluate preference-alignment methods for text-to-image diffusion models.

Importing ``bench`` first makes torchvision importable next to a CPU torch (see ``bench_common.compat``).
"""
from bench_common import ensure_torchvision_importable

ensure_torchvision_importable()

__version__ = "0.1.0"
