"""The record cache: listings by id under the seq rule with their indexes, and
profiles and reviews (:mod:`p2pmarket.store.reviews`) by their authors.

Rules (the same for every source: own writes, import, and later gossip and sync):

* a listing replaces the stored one only with a strictly higher ``seq``;
* a tombstone hides its listing for good: while it lives, no listing with that id
  is accepted again, whatever its seq, so a withdrawn listing cannot come back;
* expired records are never returned and are collected by :meth:`collect_expired`.

Every call that changes the store writes one LevelDB WriteBatch, so a crash leaves
either all of a change or none of it. ``sync=True`` (the user's own records) makes
the batch durable before the call returns.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import plyvel

from p2pmarket import records
from p2pmarket.errors import StoreError
from p2pmarket.records import Listing, Profile, Record, Review, Tombstone
from p2pmarket.store import layout
from p2pmarket.store.db import open_db
from p2pmarket.store.reviews import Reviews
from p2pmarket.store.search import Page, Query, Searcher
from p2pmarket.store.terms import summary, term_keys


class Outcome(enum.Enum):
    ADDED = "added"
    UPDATED = "updated"
    WITHDRAWN = "withdrawn"
    STALE = "stale"  # not newer than what is stored
    DEAD = "dead"  # the id was withdrawn

    @property
    def stored(self) -> bool:
        return self in (Outcome.ADDED, Outcome.UPDATED, Outcome.WITHDRAWN)


@dataclass(frozen=True, slots=True)
class Change:
    record: Record
    outcome: Outcome


class ListingStore:
    """The store of one home. Not thread-safe: one writer, as LevelDB's lock ensures
    across processes and the node's single trio thread ensures within one."""

    def __init__(self, path: Path, *, resident: bool = False) -> None:
        self.path = path
        self._db: plyvel.DB | None = open_db(path, resident=resident)
        raw = self._db.get(layout.COUNT_KEY)
        self._count = int(raw) if raw else 0
        # Until something is evicted, no write needs to look for eviction marks
        # (a LevelDB read per new record: ~5% of bulk ingest).
        self._evictions = self._db.get(layout.EVICTED_KEY) is not None
        # Bumped by every change to the set sync compares, so a sync snapshot of
        # the set can be reused while it is unchanged.
        self.generation = 0
        self.reviews = Reviews(self._db)

    # -- lifecycle ---------------------------------------------------------

    @property
    def db(self) -> plyvel.DB:
        if self._db is None:
            raise StoreError("the store is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def closed(self) -> bool:
        return self._db is None

    def __enter__(self) -> ListingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------

    @property
    def listing_count(self) -> int:
        """Live (not withdrawn) listings in the cache, expired ones until collected."""
        return self._count

    def get_record(self, listing_id: bytes) -> Listing | Tombstone | None:
        raw = self.db.get(layout.RECORD + listing_id)
        if raw is None:
            return None
        record = records.load_trusted(raw)
        assert isinstance(record, Listing | Tombstone)
        return record

    def get(self, listing_id: bytes, now: int) -> Listing | Tombstone | None:
        """The live listing or the tombstone with this id; None if unknown or expired."""
        record = self.get_record(listing_id)
        if record is None or record.expires <= now:
            return None
        return record

    def by_seller(self, seller: bytes, now: int) -> list[Listing]:
        """A seller's live listings, newest first."""
        prefix = layout.term_prefix(f"#s:{seller.hex()}")
        found = []
        for key in self.db.iterator(prefix=prefix, include_value=False):
            record = self.get(layout.suffix_id(key[len(prefix) :]), now)
            if isinstance(record, Listing):
                found.append(record)
        return found

    def iter_records(self, now: int) -> Iterator[Listing | Tombstone]:
        """Every unexpired listing and tombstone, in id order (for export)."""
        for _, raw in self.db.iterator(prefix=layout.RECORD):
            record = records.load_trusted(raw)
            if isinstance(record, Listing | Tombstone) and record.expires > now:
                yield record

    def search(self, query: Query, now: int) -> Page:
        return Searcher(self.db).search(query, now)

    def get_profile(self, owner: bytes) -> Profile | None:
        raw = self.db.get(layout.PROFILE + owner)
        if raw is None:
            return None
        record = records.load_trusted(raw)
        assert isinstance(record, Profile)
        return record

    # -- writes ------------------------------------------------------------

    def put(self, record: Record, *, sync: bool = False) -> Outcome:
        return self.put_many([record], sync=sync)[0].outcome

    def put_many(self, batch: Iterable[Record], *, sync: bool = False) -> list[Change]:
        """Apply validated records under the seq rule, all in one WriteBatch.

        The caller validates (signature included) before calling; the store trusts
        its input to be well-formed but decides, per record, whether it is news.
        """
        pending: dict[bytes, Listing | Tombstone | None] = {}
        profiles: dict[bytes, Profile] = {}
        reviews: dict[bytes, bytes] = {}
        changes: list[Change] = []
        count = self._count
        db = self.db
        try:
            # transaction=True: an exception inside the block discards the whole batch.
            with db.write_batch(transaction=True, sync=sync) as wb:
                for record in batch:
                    if isinstance(record, Profile):
                        changes.append(Change(record, self._put_profile(wb, record, profiles)))
                        continue
                    if isinstance(record, Review):
                        outcome = Outcome(self.reviews.put(wb, record, reviews))
                        changes.append(Change(record, outcome))
                        continue
                    rid = record.id
                    current = pending[rid] if rid in pending else self.get_record(rid)
                    outcome = self._decide(record, current)
                    if (
                        current is None
                        and outcome.stored
                        and self._evictions
                        and self._evicted_at_least(record)
                    ):
                        outcome = Outcome.STALE
                    if outcome.stored:
                        if isinstance(current, Listing):
                            self._unindex(wb, current)
                            count -= 1
                        elif isinstance(current, Tombstone):
                            wb.delete(layout.expiry_key(current.expires, rid))
                        self._index(wb, record)
                        if isinstance(record, Listing):
                            count += 1
                        pending[rid] = record
                    changes.append(Change(record, outcome))
                if count != self._count:
                    wb.put(layout.COUNT_KEY, str(count).encode())
        except plyvel.Error as exc:
            raise StoreError(f"writing to the store at {self.path} failed: {exc}") from None
        self._count = count
        if any(c.outcome.stored for c in changes):
            self.generation += 1
        return changes

    def _evicted_at_least(self, record: Listing | Tombstone) -> bool:
        """True if this version (or a newer one) of the listing was evicted."""
        entry = self._sync_entry(layout.listing_sync_key(record.id))
        return entry is not None and record.seq <= entry[0] and isinstance(record, Listing)

    @staticmethod
    def _decide(record: Listing | Tombstone, current: Listing | Tombstone | None) -> Outcome:
        if isinstance(current, Tombstone):
            return Outcome.DEAD
        if current is not None and record.seq <= current.seq:
            return Outcome.STALE
        if isinstance(record, Tombstone):
            return Outcome.WITHDRAWN
        return Outcome.ADDED if current is None else Outcome.UPDATED

    def _put_profile(
        self, wb: plyvel.WriteBatch, profile: Profile, pending: dict[bytes, Profile]
    ) -> Outcome:
        current = pending.get(profile.owner) or self.get_profile(profile.owner)
        if current is not None and profile.seq <= current.seq:
            return Outcome.STALE
        wb.put(layout.PROFILE + profile.owner, records.encode(profile))
        wb.put(
            *layout.sync_entry(layout.profile_sync_key(profile.owner), profile.seq, layout.NEVER)
        )
        pending[profile.owner] = profile
        return Outcome.ADDED if current is None else Outcome.UPDATED

    @staticmethod
    def _index(wb: plyvel.WriteBatch, record: Listing | Tombstone) -> None:
        rid = record.id
        wb.put(layout.RECORD + rid, records.encode(record))
        wb.put(layout.expiry_key(record.expires, rid), b"")
        wb.put(*layout.sync_entry(layout.listing_sync_key(rid), record.seq, record.expires))
        if isinstance(record, Tombstone):
            return
        sfx = layout.suffix(record.created, rid)
        wb.put(layout.TIME + sfx, summary(record))
        wb.put(layout.price_key(record.currency, record.price, sfx), b"")
        for key in term_keys(record, sfx):
            wb.put(key, b"")

    @staticmethod
    def _unindex(wb: plyvel.WriteBatch, listing: Listing) -> None:
        rid = listing.id
        sfx = layout.suffix(listing.created, rid)
        wb.delete(layout.expiry_key(listing.expires, rid))
        wb.delete(layout.TIME + sfx)
        wb.delete(layout.price_key(listing.currency, listing.price, sfx))
        for key in term_keys(listing, sfx):
            wb.delete(key)

    def collect_expired(self, now: int, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records whose expiry has passed; return how many."""
        db = self.db
        doomed: list[bytes] = []
        for key in db.iterator(
            start=layout.EXPIRY, stop=layout.expiry_bound(now), include_value=False
        ):
            doomed.append(key)
            if len(doomed) >= limit:
                break
        if not doomed:
            return 0
        count = self._count
        collected = 0
        with db.write_batch(transaction=True) as wb:
            for key in doomed:
                wb.delete(key)
                expires, rid = int.from_bytes(key[1 : 1 + 8], "big"), key[1 + 8 :]
                sync_key = layout.SYNC + layout.listing_sync_key(rid)
                record = self.get_record(rid)
                if record is None:  # evicted: only its sync entry is left
                    entry = self._sync_entry(layout.listing_sync_key(rid))
                    if entry is not None and entry[1] == expires:
                        wb.delete(sync_key)
                        collected += 1
                    continue
                if record.expires != expires:
                    # A leftover key: the record was replaced (or an evicted
                    # version put again) since, and goes under its own expiry key.
                    continue
                if isinstance(record, Listing):
                    self._unindex(wb, record)
                    count -= 1
                wb.delete(layout.RECORD + rid)
                wb.delete(sync_key)
                collected += 1
            wb.put(layout.COUNT_KEY, str(count).encode())
        self._count = count
        self.generation += 1
        return collected

    def evict(self, limit: int, keep: bytes, *, step: int = 1000) -> int:
        """Evict the oldest listings until at most ``limit`` are cached; return how
        many went. Listings by ``keep`` (the user's own key) and tombstones are
        never evicted. An evicted version leaves its sync entry behind, flagged, so
        that sync does not fetch it again and the store refuses it (a newer
        version is still accepted: it is news)."""
        db = self.db
        own = layout.term_prefix(f"#s:{keep.hex()}")
        evicted = 0
        while self._count > limit:
            victims: list[Listing] = []
            # The time index is newest first, so oldest first is its reverse.
            for key in db.iterator(prefix=layout.TIME, reverse=True, include_value=False):
                sfx = key[1:]
                if db.get(own + sfx) is not None:
                    continue
                record = self.get_record(layout.suffix_id(sfx))
                if isinstance(record, Listing):
                    victims.append(record)
                if len(victims) >= min(step, self._count - limit):
                    break
            if not victims:
                break  # only the user's own listings are left
            with db.write_batch(transaction=True) as wb:
                for listing in victims:
                    self._unindex(wb, listing)
                    # The expiry key stays: collect_expired drops the sync entry.
                    wb.put(layout.expiry_key(listing.expires, listing.id), b"")
                    wb.delete(layout.RECORD + listing.id)
                    wb.put(
                        *layout.sync_entry(
                            layout.listing_sync_key(listing.id),
                            listing.seq,
                            listing.expires,
                            layout.EVICTED,
                        )
                    )
                wb.put(layout.COUNT_KEY, str(self._count - len(victims)).encode())
                wb.put(layout.EVICTED_KEY, b"1")
            self._evictions = True
            self._count -= len(victims)
            evicted += len(victims)
        if evicted:
            self.generation += 1
        return evicted

    # -- the sync set ------------------------------------------------------

    @property
    def last_synced(self) -> int:
        raw = self.db.get(layout.SYNCED_KEY)
        return int(raw) if raw and raw.isdigit() else 0

    def mark_synced(self, when: int) -> None:
        self.db.put(layout.SYNCED_KEY, str(when).encode())

    def _sync_entry(self, key: bytes) -> tuple[int, int, int] | None:
        raw = self.db.get(layout.SYNC + key)
        if raw is None:
            return None
        seq, expires, flags = layout.SYNC_VALUE.unpack(raw)
        return seq, expires, flags

    def sync_items(self, now: int) -> Iterator[tuple[bytes, int, bool]]:
        """(sync key, seq, held) of every unexpired record and profile, in key
        order; ``held`` is False for an evicted version."""
        unpack = layout.SYNC_VALUE.unpack
        start = len(layout.SYNC)
        for key, raw in self.db.iterator(prefix=layout.SYNC):
            seq, expires, flags = unpack(raw)
            if expires > now:
                yield key[start:], seq, not flags & layout.EVICTED

    def sync_seq(self, key: bytes, now: int) -> int | None:
        """The seq we hold or evicted under a sync key; None if unknown or expired."""
        entry = self._sync_entry(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def unstamped(self, author: bytes) -> Iterator[Record]:
        """``author``'s records stored before proof-of-work stamps (schema 4 marked
        them not held, so they are not synced): to be stamped again (:meth:`restamp`).
        A scan of the sync index, made only in a store the upgrade marked."""
        if self.db.get(layout.UNSTAMPED_KEY) is None:
            return
        for key, value in self.db.iterator(prefix=layout.SYNC):
            if not layout.SYNC_VALUE.unpack(value)[2] & layout.EVICTED:
                continue
            record_key = layout.record_key(key[len(layout.SYNC) :])
            raw = None if record_key is None else self.db.get(record_key)
            if raw is None:
                continue  # evicted for the cache cap: nothing held
            record = records.load_trusted(raw)
            if not record.stamp and records.author(record) == author:
                yield record

    def restamped_all(self) -> None:
        """The user's own pre-stamp records are all stamped: no more scans."""
        self.db.delete(layout.UNSTAMPED_KEY, sync=True)

    def restamp(self, record: Record) -> bool:
        """Replace a held record's bytes by the same version with a stamp, and
        serve it in sync again; False if the store holds another version now."""
        sync_key = records.sync_key(record)
        record_key = layout.record_key(sync_key)
        entry = self._sync_entry(sync_key)
        raw = None if record_key is None else self.db.get(record_key)
        if record_key is None or entry is None or raw is None or not record.stamp:
            return False
        if records.load_trusted(raw).seq != record.seq:
            return False
        seq, expires, flags = entry
        with self.db.write_batch(transaction=True, sync=True) as wb:
            wb.put(record_key, records.encode(record))
            wb.put(
                layout.SYNC + sync_key,
                layout.SYNC_VALUE.pack(seq, expires, flags & ~layout.EVICTED),
            )
        return True

    def sync_record(self, key: bytes, now: int) -> bytes | None:
        """The encoded record under a sync key, if held and unexpired."""
        entry = self._sync_entry(key)
        if entry is None or entry[1] <= now or entry[2] & layout.EVICTED:
            return None
        record_key = layout.record_key(key)
        raw: bytes | None = None if record_key is None else self.db.get(record_key)
        return raw
