"""The user's own records stored before proof-of-work stamps: store schema 4
stops serving them in sync (peers would refuse them), and the node stamps them
again (no key needed, only work) so they sync once more."""

from __future__ import annotations

from pathlib import Path

import msgpack
import trio
from factories import NOW, OTHER, FakeClock, signed_listing

from p2pmarket import records
from p2pmarket.crypto import stamp
from p2pmarket.node import Node
from p2pmarket.store import layout


def strip_stamp(node: Node, key: bytes) -> None:
    """Make the record under ``key`` what a schema-3 store held: no ``pow``."""
    doc = msgpack.unpackb(node.store.db.get(key))
    del doc["pow"]
    node.store.db.put(key, msgpack.packb(doc), sync=True)


def test_own_records_from_before_stamps_are_stamped_again_and_served(
    home: Path, clock: FakeClock
) -> None:
    with Node.open(home, clock=clock) as node:
        mine = node.create_listing(title="Sepeda lama", price=1000, category="vehicles")
        profile = node.set_profile(name="Bu Sari")
        theirs = signed_listing(OTHER, created=NOW)
        node.ingest([records.encode(theirs)])
        for key in (
            layout.RECORD + mine.id,
            layout.PROFILE + node.public_key,
            layout.RECORD + theirs.id,
        ):
            strip_stamp(node, key)
        node.store.db.put(layout.SCHEMA_KEY, b"3", sync=True)

    with Node.open(home, clock=clock) as node:  # migrated to schema 4 on open
        held = {key: held for key, _, held in node.store.sync_items(NOW)}
        assert not any(held.values())  # none served: peers would refuse them
        waiting = sorted(map(records.sync_key, node.store.unstamped(node.public_key)))
        assert waiting == sorted(map(records.sync_key, [mine, profile]))

        assert trio.run(node._restamp_own) == 2  # the listing and the profile

        for record in (mine, profile):
            served = node.store.sync_record(records.sync_key(record), NOW)
            assert served is not None
            again = records.validate(served, NOW)
            assert again.signature == record.signature  # the same version, now stamped
            assert stamp.check(again.signature, again.stamp)
        # Someone else's record is theirs to stamp: kept for search, not served.
        assert node.store.sync_record(records.sync_key(theirs), NOW) is None
        assert node.get_listing(theirs.id).id == theirs.id
        assert list(node.store.unstamped(node.public_key)) == []
        assert node.store.db.get(layout.UNSTAMPED_KEY) is None  # no scan at the next start
