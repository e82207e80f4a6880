"""Reviews in the store, and the party index reputation is computed from.

``V`` contract(16) reviewer(32) → the review record (the contract's id, see
:attr:`p2pmarket.trade.Contract.id`). One review per party per contract: a
higher ``seq`` replaces, as for listings. Reviews never expire, and the
store keeps everyone's: they are not hosted by the people they are about.

``U`` key(32) other(32) contract(16) → ``PARTY``: the *party index*. A review by A
about B on contract C writes two entries, ``U A B C`` (A gave stars) and ``U B A C``
(B received them), so everything one key did with others is one prefix scan:
whom it traded with, in which role, which stars it received and gave, and when.

``Y`` key(32) → u32: how many distinct others the key has dealt with, kept on
write, because reputation asks it of every reviewer of every key it rates.

Writes go into the caller's WriteBatch, with the listing store's other changes,
so a review and its index entries are stored together or not at all.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Final, Literal

import plyvel

from p2pmarket import records
from p2pmarket.records import Review
from p2pmarket.reputation import Dealing
from p2pmarket.store import layout

# role of the key (0 buyer, 1 seller), stars received, stars given (0: none), time
PARTY: Final = struct.Struct(">BBBQ")
COUNT: Final = struct.Struct(">I")
_KEY: Final = 32


def _party_key(key: bytes, other: bytes, contract: bytes) -> bytes:
    return layout.PARTY + key + other + contract


class Reviews:
    """Reads and batch writes of reviews over one LevelDB."""

    def __init__(self, db: plyvel.DB) -> None:
        self._db = db
        self.generation = 0  # bumped by every review stored: reputations may change

    def get(self, contract: bytes, reviewer: bytes) -> Review | None:
        raw = self._db.get(layout.REVIEW + contract + reviewer)
        if raw is None:
            return None
        review = records.load_trusted(raw)
        assert isinstance(review, Review)
        return review

    def put(
        self, wb: plyvel.WriteBatch, review: Review, pending: dict[bytes, bytes]
    ) -> Literal["added", "updated", "stale"]:
        """Write ``review`` into ``wb`` if it is news (a higher seq than held);
        ``pending`` holds what this batch wrote already, key → value (b"" for a
        pair of keys that dealt with each other)."""
        key = layout.REVIEW + review.key
        raw = pending.get(key) or self._db.get(key)
        if raw is not None and records.load_trusted(raw).seq >= review.seq:
            return "stale"
        data = records.encode(review)
        wb.put(key, data)
        pending[key] = data
        wb.put(*layout.sync_entry(records.sync_key(review), review.seq, layout.NEVER))
        contract = review.contract
        for key_, other, received, given in (
            (review.reviewer, review.subject, None, review.stars),
            (review.subject, review.reviewer, review.stars, None),
        ):
            party = _party_key(key_, other, contract.id)
            self._count_pair(wb, key_, other, pending)
            old = pending.get(party) or self._db.get(party)
            _, old_received, old_given, _ = PARTY.unpack(old) if old else (0, 0, 0, 0)
            value = PARTY.pack(
                0 if key_ == contract.buyer else 1,
                old_received if received is None else received,
                old_given if given is None else given,
                contract.proposed,
            )
            wb.put(party, value)
            pending[party] = value
        self.generation += 1
        return "added" if raw is None else "updated"

    def dealings(self, key: bytes) -> list[Dealing]:
        """Everything ``key`` did with others that a review shows."""
        start = len(layout.PARTY) + _KEY
        found = []
        for party, value in self._db.iterator(prefix=layout.PARTY + key):
            role, received, given, when = PARTY.unpack(value)
            other, contract = party[start : start + _KEY], party[start + _KEY :]
            found.append(
                Dealing(other, contract, "seller" if role else "buyer", received, given, when)
            )
        return found

    def _count_pair(
        self, wb: plyvel.WriteBatch, key: bytes, other: bytes, pending: dict[bytes, bytes]
    ) -> None:
        """Count ``other`` among ``key``'s counterparties if it is new there."""
        pair = layout.PARTY + key + other
        if pair in pending or any(
            True for _ in self._db.iterator(prefix=pair, include_value=False)
        ):
            return
        pending[pair] = b""
        count_key = layout.COUNTERPARTIES + key
        raw = pending.get(count_key) or self._db.get(count_key)
        value = COUNT.pack((COUNT.unpack(raw)[0] if raw else 0) + 1)
        wb.put(count_key, value)
        pending[count_key] = value

    def counterparties(self, key: bytes) -> int:
        """How many distinct others ``key`` has dealt with (one read)."""
        raw = self._db.get(layout.COUNTERPARTIES + key)
        return COUNT.unpack(raw)[0] if raw else 0

    def about(self, key: bytes) -> list[Review]:
        """The reviews others wrote about ``key``, newest first."""
        return self._newest_first((d.contract, d.other) for d in self.dealings(key) if d.received)

    def by(self, key: bytes) -> list[Review]:
        """The reviews ``key`` wrote, newest first."""
        return self._newest_first((d.contract, key) for d in self.dealings(key) if d.given)

    def _newest_first(self, keys: Iterable[tuple[bytes, bytes]]) -> list[Review]:
        found = [r for r in (self.get(c, reviewer) for c, reviewer in keys) if r is not None]
        return sorted(found, key=lambda r: (r.created, r.key), reverse=True)

    def reviewed(self) -> Iterator[bytes]:
        """Every key that received at least one review, in key order."""
        it = self._db.iterator(prefix=layout.PARTY)
        for party, value in it:
            key = party[1 : 1 + _KEY]
            if PARTY.unpack(value)[1]:
                yield key
                it.seek(_after(layout.PARTY + key))

    def count(self) -> int:
        return sum(1 for _ in self._db.iterator(prefix=layout.REVIEW, include_value=False))


def _after(prefix: bytes) -> bytes:
    """The first key past every key that starts with ``prefix``."""
    return (int.from_bytes(prefix, "big") + 1).to_bytes(len(prefix), "big")
