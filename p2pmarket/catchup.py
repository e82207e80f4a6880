"""The node's side of catch-up sync and of cache upkeep.

:class:`CatchUp` lends the store to :mod:`p2pmarket.network.sync` (which must not
import it): a snapshot of the set to reconcile, lookups, and storing fetched
batches. It also keeps the cache within its cap. Fetched records are checked
exactly as gossip checks them, and must be the record that was asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from p2pmarket import records
from p2pmarket.cachecap import CacheCap
from p2pmarket.crypto.signing import verify_groups
from p2pmarket.errors import InvalidRecord
from p2pmarket.network.reconcile import ItemSet
from p2pmarket.network.sync import Fetched
from p2pmarket.records import CLOCK_SKEW, Record
from p2pmarket.store import ListingStore, Outcome

# A snapshot is reused while the set is unchanged and younger than this: what
# expires meanwhile is still offered, and a fetch of it answers "not held".
SNAPSHOT_AGE: Final = 30


def _check(batch: list[tuple[bytes, int, bytes]], now: int) -> tuple[list[Record], int, int]:
    """Decode and verify a fetched batch (in a worker thread: libsodium releases
    the GIL). A record must carry the key it was fetched under, at least as new
    as the peer said."""
    decoded: list[Record] = []
    signed: list[list[tuple[bytes, bytes, bytes]]] = []
    rejected = expired = 0
    for key, seq, data in batch:
        try:
            record, message = records.decode_signed(data, now)
        except InvalidRecord:
            # Expired on its way, or valid by a clock within the allowed skew of
            # ours: gone, as if the peer no longer held it, and not a lie.
            if _live_at(data, now - CLOCK_SKEW) or _live_at(data, now + CLOCK_SKEW):
                expired += 1
            else:
                rejected += 1
            continue
        if records.sync_key(record) != key:
            rejected += 1
            continue
        if record.seq < seq:
            # The newer version it listed may have expired since (an update can
            # shorten a lifetime): counted as gone; too many gone is a lie.
            expired += 1
            continue
        decoded.append(record)
        signed.append(records.signatures(record, message))
    good = [r for r, ok in zip(decoded, verify_groups(signed), strict=True) if ok]
    return good, rejected + len(decoded) - len(good), expired


def _live_at(data: bytes, when: int) -> bool:
    try:
        records.decode_signed(data, when)
    except InvalidRecord:
        return False
    return True


class CatchUp:
    """A :class:`~p2pmarket.network.sync.SyncSource` over one store."""

    def __init__(
        self,
        store: ListingStore,
        *,
        now: Callable[[], int],
        own_key: bytes,
        cap: CacheCap,
        announce: Callable[[Record, Outcome], None],
    ) -> None:
        self._store = store
        self._now = now
        self._own_key = own_key
        self._cap = cap
        self._announce = announce
        self._snapshot: tuple[int, int, ItemSet] | None = None

    async def snapshot(self) -> ItemSet:
        """The set to reconcile, built in a worker thread (a LevelDB scan and a
        hash per record: ~0.3 s at 100,000) and reused while nothing changed."""
        now = self._now()
        generation = self._store.generation
        cached = self._snapshot
        if cached is not None and cached[0] == generation and now - cached[1] < SNAPSHOT_AGE:
            return cached[2]
        items = await trio.to_thread.run_sync(self._build, now)
        self._snapshot = (generation, now, items)
        return items

    def _build(self, now: int) -> ItemSet:
        return ItemSet.build(self._store.sync_items(now))

    def seq(self, key: bytes) -> int | None:
        return self._store.sync_seq(key, self._now())

    def records(self, keys: list[bytes]) -> list[bytes | None]:
        now = self._now()
        return [self._store.sync_record(key, now) for key in keys]

    async def store(self, batch: list[tuple[bytes, int, bytes]]) -> Fetched:
        if not batch:
            return Fetched()
        good, rejected, expired = await trio.to_thread.run_sync(_check, batch, self._now())
        own = any(records.author(r) == self._own_key for r in good)
        changes = self._store.put_many(good, sync=own)
        stored = 0
        for change in changes:
            if change.outcome.stored:
                stored += 1
                self._announce(change.record, change.outcome)
        # A batch is large already: trim back to the cap after each one.
        if self._store.listing_count > self._cap.cap:
            self._cap.trim()
        return Fetched(stored, len(changes) - stored, rejected, expired)
