"""Public names of a package imported on first use (PEP 562), so that a command
through the daemon loads only the modules it needs."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def listing(public: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[], list[str]]:
    """A module ``__dir__`` that lists the lazy names before they are loaded."""
    return lambda: sorted({*namespace, *public})


def attribute_loader(
    package: str, public: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``public`` maps each name to the
    module it lives in; a name is imported once, then kept in ``namespace``."""

    def load(name: str) -> object:
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # once: later lookups do not come here
        return value

    return load
