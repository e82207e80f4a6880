"""Range-based set reconciliation over (sync key, seq) pairs: pure, no I/O.

Two nodes each hold a sorted set of items. They exchange messages made of
contiguous *ranges* of the key space; for each range a message carries either a
fingerprint of the sender's items there, the items themselves, or nothing (the
range is settled). A mismatched fingerprint over many items is answered by
splitting the range into :data:`FANOUT` parts; over few items, by listing them.
The listing is answered by the items the lister lacks. So what crosses the wire
grows with the difference between the sets (times a log of their size), not
with their size. This is the scheme of Meyer's *Range-Based Set Reconciliation*
(2022) and of Negentropy, specialised to versions: an item is a key and a seq,
and the side with the lower seq (or none) for a key is the one that needs it.

Each side ends knowing its own *needs* — keys where the other holds a newer
version — and fetches them itself (see :mod:`p2pmarket.network.sync`). Nothing
here trusts the peer: every message is checked against the caps and the rules
below, and a breach raises :class:`ProtocolViolation`.

A fingerprint is BLAKE2b-128 over the sum modulo 2**256 of the items' BLAKE2b-256
hashes and their count: sums make any range's fingerprint two lookups in a prefix
array, and hashing the sum with the count keeps a forged collision as hard as
Negentropy's.
"""

from __future__ import annotations

import enum
import hashlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

FANOUT: Final = 16  # parts a mismatched range is split into
ITEMS_THRESHOLD: Final = 32  # list a range's items instead of splitting it
MAX_RANGES: Final = 8192  # ranges in one message
MAX_ITEMS: Final = 20_000  # items listed in one message (~0.5 MB)
MAX_ROUNDS: Final = 100  # messages received that list no item: more is a stall
MAX_SESSION_ROUNDS: Final = 1000  # messages in all: then fetch what is known so far
MAX_NEEDS: Final = 2_000_000  # keys one session may ask us to fetch
MAX_KEY: Final = 64  # bytes in a sync key or bound
_MOD: Final = 2**256


class ProtocolViolation(Exception):
    """The peer broke the reconciliation protocol; the session must end."""


class Incomplete(Exception):
    """The session ran out of rounds; what is known so far is still good to fetch.
    Not a lie: a big enough difference takes many rounds honestly."""


class Mode(enum.IntEnum):
    SKIP = 0  # settled: nothing to do
    FINGERPRINT = 1  # payload: (count, fingerprint)
    ITEMS = 2  # payload: all the sender's items in the range; answer with REPLY
    REPLY = 3  # payload: the sender's items in the range that the receiver lacks


Item = tuple[bytes, int]  # (sync key, seq); seq < 0: known, not held (evicted)


@dataclass(frozen=True, slots=True)
class Range:
    """One range of a message: from the previous range's bound (or the start)
    up to ``upper``, exclusive (None: to the end)."""

    upper: bytes | None
    mode: Mode
    count: int = 0
    fingerprint: bytes = b""
    items: tuple[Item, ...] = ()


def item_hash(key: bytes, seq: int) -> int:
    digest = hashlib.blake2b(key + seq.to_bytes(8, "big"), digest_size=32).digest()
    return int.from_bytes(digest, "big")


class ItemSet:
    """A node's side of a session: sorted keys, their seqs, and prefix sums of
    item hashes, so the fingerprint of any range costs two lookups."""

    def __init__(self, keys: list[bytes], seqs: list[int], held: list[bool]) -> None:
        self.keys = keys
        self.seqs = seqs
        self.held = held
        sums = [0] * (len(keys) + 1)
        total = 0
        for i, (key, seq) in enumerate(zip(keys, seqs, strict=True)):
            total = (total + item_hash(key, seq)) % _MOD
            sums[i + 1] = total
        self._sums = sums

    @classmethod
    def build(cls, items: Iterable[tuple[bytes, int, bool]]) -> ItemSet:
        """From (key, seq, held) triples in strictly ascending key order."""
        keys: list[bytes] = []
        seqs: list[int] = []
        held: list[bool] = []
        for key, seq, is_held in items:
            keys.append(key)
            seqs.append(seq)
            held.append(is_held)
        return cls(keys, seqs, held)

    def __len__(self) -> int:
        return len(self.keys)

    def position(self, bound: bytes | None) -> int:
        return len(self.keys) if bound is None else bisect_left(self.keys, bound)

    def fingerprint(self, lo: int, hi: int) -> bytes:
        total = (self._sums[hi] - self._sums[lo]) % _MOD
        return hashlib.blake2b(
            total.to_bytes(32, "big") + (hi - lo).to_bytes(8, "big"), digest_size=16
        ).digest()

    def seq(self, key: bytes) -> int | None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            return self.seqs[i]
        return None

    def listed(self, indexes: list[int]) -> tuple[Item, ...]:
        return tuple((self.keys[i], self.seqs[i]) for i in indexes)

    def wire_items(self, lo: int, hi: int) -> tuple[Item, ...]:
        """Items as listed on the wire: an evicted version's seq is negated, so
        the peer counts it as known to us but does not ask us for it."""
        return tuple(
            (self.keys[i], self.seqs[i] if self.held[i] else -self.seqs[i]) for i in range(lo, hi)
        )


def separator(before: bytes, key: bytes) -> bytes:
    """The shortest prefix of ``key`` that sorts after ``before`` (< ``key``)."""
    for i, (a, b) in enumerate(zip(before, key, strict=False)):
        if a != b:
            return key[: i + 1]
    return key[: len(before) + 1]


class Reconciler:
    """One side of one session. ``first()`` opens it (initiator only); each
    received message goes to ``receive()``, which returns the answer, or None
    when the session is over. ``needs`` collects (key, seq) we should fetch."""

    def __init__(self, items: ItemSet, *, budget: int = MAX_ITEMS) -> None:
        if not 1 <= budget <= MAX_ITEMS:
            raise ValueError("budget out of range")
        self.items = items
        self.needs: dict[bytes, int] = {}
        self._budget = budget
        self.rounds = 0
        self.idle_rounds = 0
        self.done = False
        self.items_sent = 0
        self.items_received = 0

    # -- building ----------------------------------------------------------

    def first(self) -> list[Range]:
        n = len(self.items)
        if n <= ITEMS_THRESHOLD:
            return [Range(None, Mode.ITEMS, items=self.items.wire_items(0, n))]
        return self._split(0, n, None)

    def _split(self, lo: int, hi: int, upper: bytes | None) -> list[Range]:
        """Fingerprints of FANOUT parts of our items in [lo, hi), the last part
        ending at ``upper``."""
        items = self.items
        count = hi - lo
        parts: list[Range] = []
        start = lo
        for k in range(1, FANOUT + 1):
            end = lo + count * k // FANOUT
            if end == start and k < FANOUT:
                continue
            bound = upper if k == FANOUT else separator(items.keys[end - 1], items.keys[end])
            parts.append(Range(bound, Mode.FINGERPRINT, end - start, items.fingerprint(start, end)))
            start = end
        return parts

    # -- receiving ---------------------------------------------------------

    def receive(self, message: list[Range]) -> list[Range] | None:
        self.rounds += 1
        _check_shape(message)
        if not any(r.items for r in message):
            # Honest sessions list items within a few rounds of descent; a peer
            # that only ever sends fingerprints is stalling us.
            self.idle_rounds += 1
            if self.idle_rounds > MAX_ROUNDS:
                raise ProtocolViolation(f"more than {MAX_ROUNDS} rounds without an item")
        if self.rounds > MAX_SESSION_ROUNDS:
            raise Incomplete(f"more than {MAX_SESSION_ROUNDS} rounds")
        if all(r.mode is Mode.SKIP for r in message):
            self.done = True
            return None
        out: list[Range] = []
        budget = self._budget
        lower = b""
        for rng in message:
            lo = self.items.position(lower)
            hi = self.items.position(rng.upper)
            before = len(out)
            self._check_items(rng, lower)
            self.items_received += len(rng.items)
            if rng.mode is Mode.SKIP:
                out.append(Range(rng.upper, Mode.SKIP))
            elif rng.mode is Mode.FINGERPRINT:
                out.extend(self._on_fingerprint(rng, lo, hi, budget, lower))
            elif rng.mode is Mode.ITEMS:
                out.extend(self._on_items(rng, lo, hi, budget))
            else:
                self._on_reply(rng)
                out.append(Range(rng.upper, Mode.SKIP))
            budget -= sum(len(r.items) for r in out[before:])
            lower = rng.upper if rng.upper is not None else b""
        reply = _merge_skips(out)
        if len(reply) > MAX_RANGES:
            reply = self._defer_excess(reply)
        self.items_sent += sum(len(r.items) for r in reply)
        if all(r.mode is Mode.SKIP for r in reply):
            self.done = True
        return reply

    def _on_fingerprint(
        self, rng: Range, lo: int, hi: int, budget: int, lower: bytes
    ) -> list[Range]:
        items = self.items
        mine = hi - lo
        if mine == rng.count and items.fingerprint(lo, hi) == rng.fingerprint:
            return [Range(rng.upper, Mode.SKIP)]
        if rng.count == 0:
            # The peer has nothing here: everything we hold in the range is for it.
            giving = [i for i in range(lo, hi) if items.held[i]]
            return self._reply(rng.upper, lo, hi, giving, budget)
        if budget <= 0:
            # This message is full: hand the range back unsplit, to be answered later.
            return [Range(rng.upper, Mode.FINGERPRINT, mine, items.fingerprint(lo, hi))]
        if mine <= ITEMS_THRESHOLD:
            return [Range(rng.upper, Mode.ITEMS, items=items.wire_items(lo, hi))]
        return self._split(lo, hi, rng.upper)

    def _on_items(self, rng: Range, lo: int, hi: int, budget: int) -> list[Range]:
        items = self.items
        theirs: dict[bytes, int] = {}
        for key, seq in rng.items:
            theirs[key] = seq
            if seq > 0:
                mine = items.seq(key)
                if mine is None or abs(mine) < seq:
                    self._need(key, seq)
        # Ours that they lack or hold older, and that we can give.
        giving = [
            i
            for i in range(lo, hi)
            if items.held[i] and abs(theirs.get(items.keys[i], 0)) < items.seqs[i]
        ]
        return self._reply(rng.upper, lo, hi, giving, budget)

    def _reply(
        self, upper: bytes | None, lo: int, hi: int, giving: list[int], budget: int
    ) -> list[Range]:
        """A REPLY naming ``giving`` (indexes of our items in [lo, hi)); past the
        budget, a REPLY for a first part and our fingerprint for the rest, which
        the peer answers again."""
        items = self.items
        if not giving:
            return [Range(upper, Mode.SKIP)]
        if budget <= 0:
            # This message is full: hand the range back, to be answered later
            # (even one item more per range would add up past MAX_ITEMS).
            return [Range(upper, Mode.FINGERPRINT, hi - lo, items.fingerprint(lo, hi))]
        take = budget
        if len(giving) <= take:
            return [
                Range(
                    upper, Mode.REPLY, items=tuple((items.keys[i], items.seqs[i]) for i in giving)
                )
            ]
        last = giving[take - 1]
        cut = separator(items.keys[last], items.keys[last + 1])
        split = last + 1
        return [
            Range(
                cut, Mode.REPLY, items=tuple((items.keys[i], items.seqs[i]) for i in giving[:take])
            ),
            Range(upper, Mode.FINGERPRINT, hi - split, items.fingerprint(split, hi)),
        ]

    def _need(self, key: bytes, seq: int) -> None:
        if key not in self.needs and len(self.needs) >= MAX_NEEDS:
            raise ProtocolViolation(f"more than {MAX_NEEDS:,} records to fetch in one session")
        self.needs[key] = max(seq, self.needs.get(key, 0))

    def _on_reply(self, rng: Range) -> None:
        for key, seq in rng.items:
            mine = self.items.seq(key)
            if seq <= 0 or (mine is not None and abs(mine) >= seq):
                # We listed our version of this range; an honest peer replies
                # only with versions newer than those.
                raise ProtocolViolation("a reply names a version we did not lack")
            self._need(key, seq)

    def _defer_excess(self, reply: list[Range]) -> list[Range]:
        """Too many ranges for one message: the tail becomes one fingerprint."""
        head = reply[: MAX_RANGES - 1]
        lower = head[-1].upper
        assert lower is not None
        lo = self.items.position(lower)
        hi = len(self.items)
        return [*head, Range(None, Mode.FINGERPRINT, hi - lo, self.items.fingerprint(lo, hi))]

    @staticmethod
    def _check_items(rng: Range, lower: bytes) -> None:
        previous = None
        for key, _ in rng.items:
            if key < lower or (rng.upper is not None and key >= rng.upper):
                raise ProtocolViolation("an item lies outside its range")
            if previous is not None and key <= previous:
                raise ProtocolViolation("items are not in ascending order")
            previous = key


def _check_shape(message: list[Range]) -> None:
    if not message:
        raise ProtocolViolation("an empty message")
    if len(message) > MAX_RANGES:
        raise ProtocolViolation(f"more than {MAX_RANGES} ranges in a message")
    if message[-1].upper is not None:
        raise ProtocolViolation("the last range must reach the end")
    previous = b""
    total = 0
    for rng in message[:-1]:
        if rng.upper is None or rng.upper <= previous:
            raise ProtocolViolation("range bounds are not ascending")
        previous = rng.upper
    for rng in message:
        total += len(rng.items)
        if rng.mode in (Mode.SKIP, Mode.FINGERPRINT) and rng.items:
            raise ProtocolViolation("items in a range that lists none")
    if total > MAX_ITEMS + ITEMS_THRESHOLD:
        raise ProtocolViolation("too many items in a message")


def _merge_skips(ranges: list[Range]) -> list[Range]:
    merged: list[Range] = []
    for rng in ranges:
        if merged and rng.mode is Mode.SKIP and merged[-1].mode is Mode.SKIP:
            merged[-1] = rng
        else:
            merged.append(rng)
    return merged
