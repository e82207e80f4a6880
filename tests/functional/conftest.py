"""Fixtures of the functional tests: real daemons and the CLI as subprocesses
(see daemon_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon_harness import Daemons


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    """Daemons started by one test, each in its own home; all stopped at its
    end, which fails the test if any of them left a problem behind."""
    group = Daemons()
    try:
        yield group
    finally:
        problems = group.close()
    assert not problems, "; ".join(problems)
