"""kill -9 of the *syncing* node, twenty times in a row, during a large catch-up.

A source daemon holds 4,000 listings; a new daemon in another home dials it and
catches up, and is killed with SIGKILL twenty times in a row at varied moments
(just after start-up, as the reconciliation starts, after a batch or a few have
landed), each time started again. After every kill its store must open cleanly
with its parts in agreement, and at the end it must hold exactly the source's
live set: every listing at the source's seq, and nothing else.

The loop itself is :func:`bench.crash.sync_loop`, so that ``make crash`` reports
the figures of the very code this test runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench.crash import sync_loop

KILLS = 20


@pytest.mark.slow
def test_the_syncing_node_killed_twenty_times_ends_with_exactly_the_sources_set() -> None:
    with tempfile.TemporaryDirectory(prefix="p2pm-", dir="/tmp") as folder:
        lines: list[str] = []
        outcome = sync_loop(Path(folder), listings=4000, kills=KILLS, log=lines.append)
        print("\n".join(lines))  # shown when the test fails

    assert outcome.kills == KILLS
    # Every kill interrupted the sync: none came after it was done.
    assert outcome.landed == KILLS, lines
    assert outcome.acknowledged == 4000
    assert outcome.problems == []
    assert outcome.lost == 0


def test_a_store_whose_parts_disagree_is_caught(tmp_path: Path) -> None:
    # Guards the check the loop relies on: it does see a damaged store.
    from bench.crash import check_store
    from p2pmarket import records
    from p2pmarket.node import Node, init_home
    from p2pmarket.store import layout

    home = tmp_path / "home"
    init_home(home, None)
    with Node.open(home) as node:
        node.create_listing(title="Sepeda", price=1000, category="vehicles/bicycles")
        node.create_listing(title="Motor", price=2000, category="vehicles/motorcycles")
    held, problems = check_store(home)
    assert len(held) == 2 and problems == []

    victim = next(iter(held))
    with Node.open(home) as node:
        node.store.db.delete(layout.SYNC + records.SYNC_LISTING + victim)
    assert check_store(home)[1] == ["1 sync entries disagree with the records"]
