"""Mail this node holds for others while they are offline.

A *holder* keeps sealed envelopes for a recipient until the recipient collects
them or they are :data:`KEEP` old. All it can read of one is the recipient's key
(the envelope's outside) and its size; it also knows which peer left it, which
it needs for the per-sender quotas.

Quotas never push anything out: a deposit over a limit is refused, so a sender
flooding a recipient fills only its own share and other senders' mail stays.

=======================================  =========================================
key                                      value
=======================================  =========================================
``B`` recipient(32) stored(8) digest(16)  depositor(32) envelope
``H`` digest(16)                         recipient(32) stored(8): dedupe, location
=======================================  =========================================

Writes are synced: this is someone's mail, and the sender has been told it is
safe with us.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Final, Literal

import plyvel

from p2pmarket.errors import MailboxFull
from p2pmarket.store.db import write_synced
from p2pmarket.store.layout import HELD, HELD_BY_DIGEST

KEEP: Final = 14 * 86400  # seconds a holder keeps mail (letters older are refused anyway)
# What one envelope costs against the byte quotas beyond its own size: its two
# keys and the depositor, so that many tiny envelopes cannot exceed the quotas.
OVERHEAD: Final = 128
_U64: Final = struct.Struct(">Q")
_KEY: Final = 32

Deposit = Literal["stored", "duplicate"]


@dataclass(frozen=True, slots=True)
class Quotas:
    """How much mail a holder takes. One sender's share of a recipient's mailbox
    is a tenth of it, so one flooding sender cannot crowd out the others."""

    total_bytes: int = 64 * 1024 * 1024
    per_recipient: int = 500
    per_recipient_bytes: int = 8 * 1024 * 1024
    per_sender: int = 50  # envelopes one depositor may leave for one recipient
    per_sender_bytes: int = 1024 * 1024
    per_sender_total_bytes: int = 4 * 1024 * 1024  # one depositor, all recipients


def digest(envelope: bytes) -> bytes:
    return hashlib.blake2b(envelope, digest_size=16).digest()


def _cost(value: bytes) -> int:
    """What a held entry (depositor + envelope) counts against the byte quotas."""
    return len(value) - _KEY + OVERHEAD


class Mailbox:
    """The held mail in the home's LevelDB (the listing store's handle).

    Totals per depositor are counted once, on first use, from the held mail
    itself (a few thousand entries at most), then kept up to date."""

    def __init__(self, db: plyvel.DB, quotas: Quotas | None = None) -> None:
        self._db = db
        self.quotas = quotas or Quotas()
        self._by_depositor: Counter[bytes] | None = None
        self._total = 0
        self._count = 0

    def _totals(self) -> Counter[bytes]:
        if self._by_depositor is None:
            counts: Counter[bytes] = Counter()
            total = number = 0
            for _, value in self._db.iterator(prefix=HELD):
                counts[value[:_KEY]] += _cost(value)
                total += _cost(value)
                number += 1
            self._by_depositor, self._total, self._count = counts, total, number
        return self._by_depositor

    def _write(self, puts: dict[bytes, bytes], deletes: list[bytes]) -> None:
        write_synced(self._db, puts, deletes, "held mail")

    def deposit(self, recipient: bytes, depositor: bytes, envelope: bytes, now: int) -> Deposit:
        """Keep ``envelope`` for ``recipient``; raises :class:`MailboxFull` over a quota."""
        mark = digest(envelope)
        if self._db.get(HELD_BY_DIGEST + mark) is not None:
            return "duplicate"
        q, size = self.quotas, len(envelope) + OVERHEAD
        totals = self._totals()
        count = mine = mine_bytes = held_bytes = 0
        for _, value in self._db.iterator(prefix=HELD + recipient):
            count += 1
            held_bytes += _cost(value)
            if value[:_KEY] == depositor:
                mine += 1
                mine_bytes += _cost(value)
        if mine + 1 > q.per_sender or mine_bytes + size > q.per_sender_bytes:
            raise MailboxFull("your share of this recipient's mailbox is full")
        if totals[depositor] + size > q.per_sender_total_bytes:
            raise MailboxFull("your share of this holder's mail is full")
        if count + 1 > q.per_recipient or held_bytes + size > q.per_recipient_bytes:
            raise MailboxFull("this recipient's mailbox is full")
        if self._total + size > q.total_bytes:
            raise MailboxFull("this holder keeps no more mail")
        where = recipient + _U64.pack(now) + mark
        self._write({HELD + where: depositor + envelope, HELD_BY_DIGEST + mark: where}, [])
        totals[depositor] += size
        self._total += size
        self._count += 1
        return "stored"

    def held_for(self, recipient: bytes) -> int:
        """Envelopes waiting for ``recipient`` (at most the per-recipient quota,
        so counting them is cheap): what a put's stamp must pay for."""
        return sum(1 for _ in self._db.iterator(prefix=HELD + recipient, include_value=False))

    def pending(self, recipient: bytes, max_bytes: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """The oldest mail for ``recipient`` as (digest, envelope), up to
        ``max_bytes`` (at least one envelope); and whether more is left."""
        found: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in self._db.iterator(prefix=HELD + recipient):
            envelope = value[_KEY:]
            if found and size + len(envelope) > max_bytes:
                return found, True
            found.append((key[-16:], envelope))
            size += len(envelope)
        return found, False

    def remove(self, recipient: bytes, digests: list[bytes]) -> int:
        """Delete collected mail; only the recipient's own (the caller checked who asks)."""
        deletes: list[bytes] = []
        freed: list[tuple[bytes, int]] = []
        for mark in digests:
            where = self._db.get(HELD_BY_DIGEST + mark)
            if where is None or where[:_KEY] != recipient:
                continue
            value = self._db.get(HELD + where)
            deletes += [HELD_BY_DIGEST + mark, HELD + where]
            if value is not None:
                freed.append((value[:_KEY], _cost(value)))
        if deletes:
            self._write({}, deletes)
            self._release(freed)
        return len(deletes) // 2

    def collect(self, now: int) -> int:
        """Drop mail kept longer than :data:`KEEP`; return how many envelopes."""
        deletes: list[bytes] = []
        freed: list[tuple[bytes, int]] = []
        for key, value in self._db.iterator(prefix=HELD):
            stored = _U64.unpack(key[1 + _KEY : 9 + _KEY])[0]
            if stored + KEEP < now:
                deletes += [key, HELD_BY_DIGEST + key[-16:]]
                freed.append((value[:_KEY], _cost(value)))
        if deletes:
            self._write({}, deletes)
            self._release(freed)
        return len(freed)

    def _release(self, freed: list[tuple[bytes, int]]) -> None:
        if self._by_depositor is None:
            return
        for depositor, size in freed:
            self._by_depositor[depositor] -= size
            self._total -= size
            self._count -= 1

    def held(self) -> tuple[int, int]:
        """Envelopes held, and what they count against the quotas, for status
        (counted once, then kept up to date)."""
        self._totals()
        return self._count, self._total
