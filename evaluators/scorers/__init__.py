"""Image-preference scorers: PickScore, HPSv2.1 / HPSv2, ImageReward, LAION aesthetic.

Each is a thin adapter loading the ORIGINAL weight files (see ``NOTES.md`` for parity status). Importing this
package imports no model code: scorers are registered lazily in :mod:`evaluators.scorers.registry`.
"""
from evaluators.scorers._weights import MissingWeightsError
from evaluators.scorers.base import Scorer
from evaluators.scorers.registry import SCORERS, get_scorer, load_scorer

__all__ = ["SCORERS", "MissingWeightsError", "Scorer", "get_scorer", "load_scorer"]
