"""Name -> object registries used for surrogates, neurons, norms, methods and backends."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """A mapping from names to registered objects that fails with a helpful message.

    >>> NORMS = Registry("norm")
    >>> @NORMS.register("bn")
    ... def make_bn(...): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable:
        """Register ``obj`` under ``name``; without ``obj`` returns a decorator."""

        def add(item: Any) -> Any:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} '{name}'; valid {self.kind}s: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
