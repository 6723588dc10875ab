"""The method registry. Built-ins are registered lazily by "module:Class"; plugins use the ``bench.methods``
entry-point group (a class implementing :class:`methods.base.Method`)."""
from bench_common import Registry

METHODS = Registry("method", entry_point_group="bench.methods")

METHODS.register("dpo", "methods.dpo:DPO")
METHODS.register("kto", "methods.kto:KTO")
METHODS.register("mapo", "methods.mapo:MaPO")
METHODS.register("inpo", "methods.inpo:InPO")
METHODS.register("smpo", "methods.smpo:SmPO")
METHODS.register("sft", "methods.sft:SFT")


def get_method(name: str):
    """The method class registered under ``name`` (did-you-mean error if unknown)."""
    return METHODS.get(name)
