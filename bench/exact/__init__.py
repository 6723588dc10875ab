"""The exact world (DESIGN.md section 10): a preference world whose data density and reward are known in closed form.

``bench.exact.world`` (density, conditions, raters, reward, tilted target), ``bench.exact.model`` (the denoiser, its
condition encoder, DDIM sampling), ``bench.exact.build`` (the base model's deterministic training and shipped
assets, checked by ``bench.assets.verify``), ``bench.exact.sources`` (the preference sources in the Pick-a-Pic schema), ``bench.exact.evaluate`` (exact
evaluation and plots) and ``bench.exact.plugin`` (the :class:`bench.worlds.World` that the trainer and ``bench run``
use). See results/exact/README.md.
"""
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
MODEL_DIR = ASSETS / "model"
