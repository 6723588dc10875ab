"""Make ``torchvision`` importable next to a CPU build of torch.

PyPI's torchvision wheels are CUDA builds. Installed beside the CPU torch of a GPU-less machine, their compiled
extension fails to load and ``import torchvision`` dies with ``RuntimeError: operator torchvision::nms does not
exist`` (its fake-tensor registrations need the operator schemas the extension would have defined). transformers
imports torchvision whenever it is installed, so CLIPTextModel, diffusers' peft loader and open_clip all break.

``ensure_torchvision_importable()`` imports torchvision; only if that fails with exactly this error does it declare
the two missing schemas through ``torch.library`` and import again. The Python parts of torchvision (transforms,
which open_clip and the scorers use) then work; the compiled detection ops (``torchvision.ops.nms``) stay
unavailable, which nothing in this suite uses. With a normal install (CUDA torch + matching torchvision, or no
torchvision at all) it does nothing. It is called once, at the top of ``bench`` and ``evaluators``.
"""
from __future__ import annotations

import importlib.util
import sys
import warnings

_MISSING_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_state = {"done": False, "patched": False}
_library = None  # keep the torch.library.Library alive: dropping it removes the schemas


def ensure_torchvision_importable() -> bool:
    """Import torchvision if installed, declaring missing operator schemas if needed. Returns True if it patched."""
    global _library
    if _state["done"]:
        return _state["patched"]
    _state["done"] = True
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
        return False
    except RuntimeError as err:
        if "torchvision::" not in str(err) or "does not exist" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    _library = torch.library.Library("torchvision", "FRAGMENT")
    for op, schema in _MISSING_OPS.items():
        try:
            _library.define(schema)
        except RuntimeError:  # already defined (e.g. partially loaded extension)
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchvision  # noqa: F401,F811
    _state["patched"] = True
    return True
