"""The embedded toy world (DESIGN.md section 10): procedural pictures and prompts, a tiny diffusers base model trained
by the suite's own code, panel-labelled preference pairs in the Pick-a-Pic v2 schema, and shipped assets.

``bench.toy.world`` (pictures, prompts, splits), ``bench.toy.basemodel`` (VAE + text-conditioned UNet training),
``bench.toy.preferences`` (pairs from a generator zoo + panel labels), ``bench.toy.build`` (``build(out_dir)``,
manifest, verification), ``bench.toy.validate`` (the world checked against facts of the real setting).
The judges (analysis, panel, toy scorers) are in :mod:`evaluators.toy`. See ``bench/toy/README.md``.
"""
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
MODEL_DIR = ASSETS / "model"
PAIRS_FILE = ASSETS / "pairs.parquet"


def pairs_file() -> Path:
    """The shipped preference pairs; a clear error naming the fix when they are missing."""
    if not PAIRS_FILE.is_file():
        from bench.data import DataError

        raise DataError(f"the toy preference pairs are missing ({PAIRS_FILE}); rebuild them with `bench toy build` "
                        "(about 50 minutes on 2 CPU cores) or reinstall from a git checkout of bench")
    return PAIRS_FILE
