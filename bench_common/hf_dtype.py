"""The dtype keyword of ``from_pretrained`` in diffusers and transformers.

Both libraries renamed it from ``torch_dtype`` to ``dtype`` (transformers 4.56, diffusers 0.40) and now print a
deprecation warning for the old name on every load, several per ``bench eval``. The versions this suite supports
(``pyproject.toml``: diffusers >= 0.30, transformers >= 4.44) straddle the rename, and diffusers before 0.40 does
not accept ``dtype``, so the keyword is chosen by the installed version.
"""
from __future__ import annotations

import importlib

from packaging.version import Version

FIRST_WITH_DTYPE = {"diffusers": "0.40.0", "transformers": "4.56.0"}


def dtype_kwarg(library: str, dtype) -> dict:
    """``{"dtype": dtype}`` if the installed ``library`` ("diffusers" or "transformers") takes that keyword in
    ``from_pretrained``, else ``{"torch_dtype": dtype}``."""
    installed = Version(importlib.import_module(library).__version__)
    return {"dtype" if installed >= Version(FIRST_WITH_DTYPE[library]) else "torch_dtype": dtype}
