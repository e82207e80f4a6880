"""The cache cap (``max_listings``) holds on the import path at once, not ten
minutes later, and never costs the user their own listings.

The gossip path is tested with real peers in tests/network/test_seller_limits.py.
Before issue 13 only catch-up sync trimmed at once: an import, gossip or a DHT
fetch left the cache over its cap until the node's upkeep ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from factories import OTHER, THIRD, FakeClock, draft_listing, signed_listing

from p2pmarket import exchange, records
from p2pmarket.cachecap import MAX_STEP, step_for
from p2pmarket.exchange import write_export
from p2pmarket.ingest import CHUNK
from p2pmarket.node import Node
from p2pmarket.records import DAY

CAP = 1000  # the smallest config.toml allows


def _capped(node: Node, clock: FakeClock) -> list[bytes]:
    """Cap ``node`` at CAP and give it three listings of its own, older than any
    other it will hold: the first the cap would take, were they not the user's."""
    node.config = replace(node.config, max_listings=CAP)
    own = [
        node.create_listing(title=f"Milik saya {n}", price=100, category="other").id
        for n in range(3)
    ]
    clock.advance(DAY)
    return own


def _others(clock: FakeClock, count: int) -> list[bytes]:
    return [
        records.encode(
            signed_listing(OTHER if n % 2 else THIRD, created=clock.now - n, title=f"Barang {n}")
        )
        for n in range(count)
    ]


def test_the_step_is_small_for_a_small_cap_and_a_thousand_at_most() -> None:
    assert step_for(1000) == 10
    assert step_for(1_000_000) == MAX_STEP == 1000
    assert step_for(10**9) == 1000
    assert step_for(5) == 1


def test_an_import_keeps_the_cap_as_it_goes_and_spares_own_listings(
    node: Node, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = _capped(node, clock)
    path = tmp_path / "many.p2pm"
    write_export(path, _others(clock, 5 * CAP))

    # Watch the cache while the import reads the file (the reading is real).
    peak = 0
    read_export = exchange.read_export

    def watched(path: Path) -> Iterator[bytes]:
        nonlocal peak
        for item in read_export(path):
            peak = max(peak, node.store.listing_count)
            yield item

    monkeypatch.setattr(exchange, "read_export", watched)
    report = node.import_listings(path)

    assert report.added == 5 * CAP
    assert node.store.listing_count <= CAP
    # Between two checks an import stores at most a chunk more: before the fix
    # the cache grew to all 5,003.
    assert peak <= CAP + step_for(CAP) + CHUNK, peak
    assert [node.get_listing(i).id for i in own] == own


def test_records_ingested_a_few_at_a_time_never_run_more_than_a_step_over(
    node: Node, clock: FakeClock
) -> None:
    own = _capped(node, clock)
    items = _others(clock, CAP + 200)
    counts = []
    for n in range(0, len(items), 7):
        node.ingest(items[n : n + 7])
        counts.append(node.store.listing_count)
    assert max(counts) <= CAP + step_for(CAP), max(counts)
    assert counts[-1] >= CAP  # trimmed to the cap, not far below it
    assert [node.get_listing(i).id for i in own] == own


def test_when_own_listings_alone_fill_the_cap_others_still_come_and_go(
    node: Node, clock: FakeClock
) -> None:
    # The user's own listings are never evicted, even over the cap; others'
    # records then stay within a step of them (and no scan runs per record).
    node.config = replace(node.config, max_listings=CAP)
    node.ingest(
        records.encode(
            records.sign(
                draft_listing(OTHER, seller=node.public_key, title=f"Milik {n}"),
                node._signer_or_unlock().sign,
            )
        )
        for n in range(CAP + 50)
    )
    assert node.store.listing_count == CAP + 50
    node.ingest(_others(clock, 100))
    assert CAP + 50 <= node.store.listing_count <= CAP + 50 + step_for(CAP)
    assert len(node.my_listings()) == CAP + 50
