"""Schema upgrades, run by :func:`p2pmarket.store.db.open_db` on an older store.

Each step rewrites what the new version adds in one WriteBatch together with the
new version number, so a crash leaves the store at the old version, and the step
runs again on the next open.
"""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import plyvel

from p2pmarket import records
from p2pmarket.records import Listing, Profile, Tombstone
from p2pmarket.store import layout
from p2pmarket.store.terms import summary


def _add_sync_index(db: plyvel.DB) -> None:
    """Version 2 adds the sync index (``S``) over every record and profile."""
    with db.write_batch(transaction=True, sync=True) as wb:
        for _, raw in db.iterator(prefix=layout.RECORD):
            record = records.load_trusted(raw)
            assert isinstance(record, Listing | Tombstone)
            wb.put(
                *layout.sync_entry(layout.listing_sync_key(record.id), record.seq, record.expires)
            )
        for _, raw in db.iterator(prefix=layout.PROFILE):
            profile = records.load_trusted(raw)
            assert isinstance(profile, Profile)
            wb.put(
                *layout.sync_entry(
                    layout.profile_sync_key(profile.owner), profile.seq, layout.NEVER
                )
            )
        wb.put(layout.SCHEMA_KEY, b"2")


def _seller_in_summaries(db: plyvel.DB) -> None:
    """Version 3 adds the seller to each live listing's summary (``T``)."""
    with db.write_batch(transaction=True, sync=True) as wb:
        for key in db.iterator(prefix=layout.TIME, include_value=False):
            raw = db.get(layout.RECORD + layout.suffix_id(key[1:]))
            listing = None if raw is None else records.load_trusted(raw)
            if isinstance(listing, Listing):
                wb.put(key, summary(listing))
            else:  # a leftover no search could reach: drop it
                wb.delete(key)
        wb.put(layout.SCHEMA_KEY, b"3")


def _unstamped_not_served(db: plyvel.DB) -> None:
    """Version 4: records carry proof-of-work stamps, and peers refuse a record
    without one (as a lie, in sync). A record stored before stamps existed is
    kept, and found by search until it expires, but no longer offered to
    peers: its sync entry is marked as not held (like an evicted version), so
    this node neither serves it nor takes the same version again. Its author's
    next version, stamped, replaces it as usual, and the user's own are stamped
    again by the node when it next goes online (``Node._restamp_own``)."""
    with db.write_batch(transaction=True, sync=True) as wb:
        for key, value in db.iterator(prefix=layout.SYNC):
            record_key = layout.record_key(key[len(layout.SYNC) :])
            raw = None if record_key is None else db.get(record_key)
            if raw is None or "pow" in msgpack.unpackb(raw, raw=False):
                continue
            seq, expires, flags = layout.SYNC_VALUE.unpack(value)
            wb.put(key, layout.SYNC_VALUE.pack(seq, expires, flags | layout.EVICTED))
            wb.put(layout.UNSTAMPED_KEY, b"")  # so only such a store ever looks for them
        wb.put(layout.SCHEMA_KEY, b"4")


# from-version -> the step that brings a store to from-version + 1
STEPS: dict[int, Callable[[plyvel.DB], None]] = {
    1: _add_sync_index,
    2: _seller_in_summaries,
    3: _unstamped_not_served,
}


def upgrade(db: plyvel.DB, version: int) -> None:
    while version < layout.SCHEMA_VERSION:
        STEPS[version](db)
        version += 1
