"""A small registry with lazy lookup, did-you-mean errors and entry-point plugins.

Items are registered either as objects or as ``"module:attribute"`` strings that are imported on first use, so
``bench ls`` and the CLI never import every method or scorer. Third-party packages register items through the
entry-point group given at construction (e.g. ``bench.methods``), without touching this repository::

    [project.entry-points."bench.methods"]
    my_method = "my_pkg.my_method:MyMethod"
"""
from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Callable


class UnknownNameError(KeyError):
    """A name that is not registered. The message names the close matches and every registered name."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the message as written
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, Any] = {}
        self._entry_points_loaded = False

    def register(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj`` it returns a decorator. ``obj`` may be a lazy
        ``"module:attribute"`` string."""
        if obj is None:
            def decorator(o: Any) -> Any:
                self.register(name, o)
                return o
            return decorator
        existing = self._items.get(name)
        if existing is not None and existing is not obj and not isinstance(existing, str):
            raise ValueError(f"{self.kind} {name!r} is registered twice ({existing!r} and {obj!r})")
        self._items[name] = obj
        return obj

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.entry_point_group is None:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            self._items.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def get(self, name: str) -> Any:
        self._load_entry_points()
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        obj = self._items[name]
        if isinstance(obj, str):
            module_name, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            self._items[name] = obj
        return obj

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {', '.join(names) or '(none)'}."


def did_you_mean(name: str, choices: list[str]) -> str:
    """' Did you mean 'x'?' or '' — for errors outside registries (config keys, CLI choices)."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


Factory = Callable[..., Any]
