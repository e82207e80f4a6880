"""Shared fixtures: a fixed clock, an initialised (unencrypted) home, a node, a store.

Plain builders (keys, signed records) live in ``tests/factories.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import NOW, FakeClock

from p2pmarket.node import Node, init_home
from p2pmarket.store import ListingStore

# The suite runs a test network (like Bitcoin's regtest): proof-of-work stamps
# of 1 bit, so the thousands of records tests sign cost ~0.1 ms each instead of
# ~0.45 s, while every stamp is still computed and checked. Set before any node
# starts, and passed on to the daemons the functional tests run. The network's
# real difficulty has tests of its own (tests/unit/test_stamp.py).
os.environ.setdefault("P2PMARKET_STAMP_BITS", "1")


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up the developer's own home or passphrase."""
    monkeypatch.delenv("P2PMARKET_HOME", raising=False)
    monkeypatch.delenv("P2PMARKET_PASSPHRASE", raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An initialised home with an unencrypted key (Argon2 only where it is the point)."""
    path = tmp_path / "home"
    init_home(path, None)
    return path


@pytest.fixture
def node(home: Path, clock: FakeClock) -> Iterator[Node]:
    with Node.open(home, clock=clock) as opened:
        yield opened


@pytest.fixture
def other_node(tmp_path: Path, clock: FakeClock) -> Iterator[Node]:
    """A second node with its own home and identity, on the same clock."""
    path = tmp_path / "other-home"
    init_home(path, None)
    with Node.open(path, clock=clock) as opened:
        yield opened


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ListingStore]:
    with ListingStore(tmp_path / "store") as opened:
        yield opened
