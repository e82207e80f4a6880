"""What the namespace tests share: the skip reason, polling, and CLI helpers.

Named ``netns_support`` (not ``conftest``): a second conftest module would shadow
tests/network/conftest.py when both folders are collected in one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import pytest

from bench.netrig import Host, unavailable_reason

# A first publish waits up to 5 s for a mesh; a daemon that missed the gossip
# catches up by sync: 30 s covers both on a loaded 2-core machine.
REACH_TIMEOUT: Final = 30.0

_REASON = unavailable_reason()
needs_netns = pytest.mark.skipif(_REASON is not None, reason=f"netns tests: {_REASON}")


def wait_until(check: Callable[[], object], what: str, timeout: float = REACH_TIMEOUT) -> None:
    """Poll ``check()`` until it returns something true; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
        except AssertionError as exc:  # a command failed: it may pass later
            last = exc
        if last:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {last!r} after {timeout:g} s")
        time.sleep(0.25)


def create_listing(host: Host, title: str) -> str:
    result = host.cli(
        "listing",
        "create",
        "--title",
        title,
        "--price",
        "150000",
        "--category",
        "vehicles/bicycles",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def finds(host: Host, word: str, listing_id: str) -> bool:
    """Whether ``search WORD`` on ``host`` lists ``listing_id``."""
    hits = host.cli_json("search", word)["results"]
    return any(hit["id"] == listing_id for hit in hits)
