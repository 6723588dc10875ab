"""The scorer registry. Built-ins are registered lazily by "module:Class" (one line each, nothing imported until
used); plugins use the ``bench.scorers`` entry-point group. Items are :class:`evaluators.scorers.base.Scorer`
subclasses (or factories) with a ``from_pretrained(source=None, device=..., dtype=..., batch_size=...)``."""
from bench_common import Registry

SCORERS = Registry("scorer", entry_point_group="bench.scorers")

SCORERS.register("pickscore", "evaluators.scorers.pickscore:PickScore")
SCORERS.register("hpsv21", "evaluators.scorers.hps:HPSv21")
SCORERS.register("hpsv2", "evaluators.scorers.hps:HPSv2")
SCORERS.register("imagereward", "evaluators.scorers.imagereward:ImageReward")
SCORERS.register("aesthetic", "evaluators.scorers.aesthetic:Aesthetic")
# the toy world's programmatic judges (no weights; evaluators/toy.py), mirroring the four columns above
SCORERS.register("toy-pickscore", "evaluators.toy:ToyPickScore")
SCORERS.register("toy-hps", "evaluators.toy:ToyHPS")
SCORERS.register("toy-imagereward", "evaluators.toy:ToyImageReward")
SCORERS.register("toy-aesthetic", "evaluators.toy:ToyAesthetic")
SCORERS.register("toy-fidelity", "evaluators.toy:ToyFidelity")  # attribute fidelity alone
SCORERS.register("toy-quality", "evaluators.toy:ToyQuality")  # visual quality alone


def get_scorer(name: str):
    """The scorer class registered under ``name`` (did-you-mean error if unknown)."""
    return SCORERS.get(name)


def load_scorer(name: str, source: str | None = None, **kwargs):
    """``get_scorer(name).from_pretrained(source, **kwargs)``: the loaded scorer, weights read once."""
    return get_scorer(name).from_pretrained(source, **kwargs)
