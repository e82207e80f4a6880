"""Quoting a value from outside in an error message, whatever it is.

A refusal that quotes the offending value with ``{value!r}`` fails itself when a
peer sends a list nested a thousand deep (``repr`` raises RecursionError; msgpack
decodes up to 1024 levels) and grows to megabytes for a long one. Fuzzing found
both: the refusal escaped as RecursionError instead of our own error. So text,
numbers and bytes are quoted (cut short), containers only named.
"""

from __future__ import annotations

from typing import Final

LIMIT: Final = 40  # characters of a quoted value


def shown(value: object, limit: int = LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` for a scalar, its type (and size) otherwise."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        # Cut before repr: repr of 64 KiB of text is cheap, but no need to make it.
        text = repr(value[: limit + 1] if isinstance(value, str | bytes) else value)
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
