"""Direct messages in the store: threads per peer, unread state, the outbox.

Keys (their prefixes are in :mod:`p2pmarket.store.layout` with all the others):

=======================================  =========================================
key                                      value
=======================================  =========================================
``M`` peer(32) order(8) id(16)           a message (msgpack, see :meth:`Message.pack`)
``N`` id(16)                             peer(32) order(8): where our message ``id`` is
``O`` due(8) id(16)                      b"" — an outgoing message awaiting a receipt
``Q`` sender(32) id(16)                  expiry(8): a letter already received (replays)
=======================================  =========================================

Only our own messages are indexed by id (receipts name them): an id in an
incoming letter is the sender's choice, and must not be able to take the place
of one of ours.

*order* is this node's clock in microseconds when the message was written,
made strictly increasing: a conversation reads in the order its messages were
written or arrived, as in any chat, whatever the senders' clocks say.

Every write is one WriteBatch written with sync: these are the user's own
messages, and must survive a crash. States only move forward
(queued → sent → delivered → read), so a late or repeated receipt cannot undo one.

Receipts we owe a peer travel like messages (kind ``receipt``) and wait in the
outbox too, but are not part of a conversation: threads show ``text`` only, and
a receipt is forgotten once it is delivered.
"""

from __future__ import annotations

import enum
import struct
import time
from dataclasses import dataclass, replace
from typing import Final

import msgpack
import plyvel

from p2pmarket.store.db import write_synced
from p2pmarket.store.layout import BY_ID, MESSAGE, OUTBOX, SEEN

_U64: Final = struct.Struct(">Q")


class State(enum.IntEnum):
    QUEUED = 0  # written, not yet handed to the recipient or a mailbox
    SENT = 1  # handed over (directly or to mailboxes), no receipt yet
    DELIVERED = 2  # the recipient's node has it
    READ = 3  # the recipient has seen it
    RECEIVED = 4  # an incoming message
    FAILED = 5  # not delivered before recipients would refuse it as too old: given up


MessageState = State  # the name the package exports


@dataclass(frozen=True, slots=True)
class Message:
    peer: bytes  # the other side
    id: bytes
    outgoing: bool
    sent: int  # the letter's time
    kind: str
    body: bytes
    state: State
    read: bool = False  # incoming: the user has seen it
    envelope: bytes = b""  # outgoing, until delivered: what is (re)sent
    attempts: int = 0
    due: int = 0  # outgoing, until delivered: when it is tried next (its outbox key)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def pack(self) -> bytes:
        data: bytes = msgpack.packb(
            [
                self.id,
                self.outgoing,
                self.sent,
                self.kind,
                self.body,
                int(self.state),
                self.read,
                self.envelope,
                self.attempts,
                self.due,
            ],
            use_bin_type=True,
        )
        return data

    @classmethod
    def unpack(cls, peer: bytes, data: bytes) -> Message:
        mid, outgoing, sent, kind, body, state, read, envelope, attempts, due = msgpack.unpackb(
            data, raw=False
        )
        return cls(
            peer, mid, outgoing, sent, kind, body, State(state), read, envelope, attempts, due
        )


@dataclass(frozen=True, slots=True)
class Thread:
    peer: bytes
    last: Message
    unread: int


def _outbox_key(message: Message) -> bytes:
    return OUTBOX + _U64.pack(message.due) + message.id


class MessageStore:
    """Messages in the home's LevelDB (the listing store's handle)."""

    def __init__(self, db: plyvel.DB) -> None:
        self._db = db
        self._last_order = 0
        self._writes = 0  # this handle's writes: counts() is cached between them
        self._counts: tuple[int, tuple[int, int]] | None = None

    def _next_where(self, message: Message) -> bytes:
        self._last_order = max(time.time_ns() // 1000, self._last_order + 1)
        return message.peer + _U64.pack(self._last_order) + message.id

    def _where(self, mid: bytes) -> bytes | None:
        where: bytes | None = self._db.get(BY_ID + mid)
        return where

    def _write(self, puts: dict[bytes, bytes], deletes: list[bytes] | None = None) -> None:
        self._writes += 1
        write_synced(self._db, puts, deletes or (), "a message")

    # -- writes ------------------------------------------------------------

    def add_outgoing(
        self, message: Message, due: int, also: tuple[bytes, bytes] | None = None
    ) -> None:
        """Keep an outgoing message and queue it for sending at ``due``; ``also``
        is one more entry written in the same batch (a trade move: kept if and
        only if it is sent)."""
        where = self._next_where(message)
        puts = {
            MESSAGE + where: replace(message, due=due).pack(),
            BY_ID + message.id: where,
            OUTBOX + _U64.pack(due) + message.id: b"",
        }
        if also is not None:
            puts[also[0]] = also[1]
        self._write(puts)

    def add_incoming(self, message: Message, keep_until: int) -> bool:
        """Keep an incoming message; False (and nothing written) for a replay."""
        seen = SEEN + message.peer + message.id
        if self._db.get(seen) is not None:
            return False
        where = self._next_where(message)
        self._write({MESSAGE + where: message.pack(), seen: _U64.pack(keep_until)})
        return True

    def get(self, mid: bytes) -> Message | None:
        where = self._where(mid)
        if where is None:
            return None
        raw = self._db.get(MESSAGE + where)
        return None if raw is None else Message.unpack(where[:32], raw)

    def advance(self, mid: bytes, state: State, peer: bytes | None = None) -> Message | None:
        """Move an outgoing message (to ``peer``, when given: only its recipient
        may say it arrived) forward to ``state``. A receipt for an unknown message,
        another peer's, or one that would move it back, changes nothing (None)."""
        current = self.get(mid)
        if current is None or not current.outgoing:
            return None
        # Forward only; but a receipt that arrives after we gave up is the truth.
        late = current.state is State.FAILED and state in (State.DELIVERED, State.READ)
        if state <= current.state and not late:
            return None
        if peer is not None and current.peer != peer:
            return None
        where = self._where(mid) or b""
        if current.kind != "text" and state >= State.DELIVERED:
            # A receipt we owed, delivered (or given up on): nothing to keep.
            self._write({}, [_outbox_key(current), MESSAGE + where, BY_ID + mid])
            return replace(current, state=state)
        done = state >= State.DELIVERED
        updated = replace(current, state=state, envelope=b"" if done else current.envelope)
        deletes = [_outbox_key(current)] if done else []
        self._write({MESSAGE + where: updated.pack()}, deletes)
        return updated

    def reschedule(self, mid: bytes, due: int) -> None:
        """Try an outgoing message again at ``due`` (one more attempt counted)."""
        current = self.get(mid)
        if current is None or current.state >= State.DELIVERED:
            return
        where = self._where(mid) or b""
        updated = replace(current, attempts=current.attempts + 1, due=due)
        self._write(
            {MESSAGE + where: updated.pack(), _outbox_key(updated): b""},
            [_outbox_key(current)],
        )

    def expedite(self, peer: bytes, now: int) -> int:
        """Make the outbox's messages to ``peer`` due now (it just came online);
        not counted as attempts. Returns how many."""
        later = [m for m in self.due(2**64 - 2, limit=10_000, peer=peer) if m.due > now]
        for message in later:
            where = self._where(message.id) or b""
            updated = replace(message, due=now)
            self._write(
                {MESSAGE + where: updated.pack(), _outbox_key(updated): b""},
                [_outbox_key(message)],
            )
        return len(later)

    def mark_read(self, peer: bytes) -> list[Message]:
        """Mark a thread's incoming messages read; return those that were unread."""
        changed: dict[bytes, bytes] = {}
        newly: list[Message] = []
        for key, raw in self._db.iterator(prefix=MESSAGE + peer):
            message = Message.unpack(peer, raw)
            if not message.outgoing and not message.read and message.kind == "text":
                newly.append(message)
                changed[key] = replace(message, read=True).pack()
        if changed:
            self._write(changed)
        return newly

    def forget_seen(self, now: int) -> int:
        """Drop replay marks past their time (letters that old are refused anyway)."""
        old = [key for key, value in self._db.iterator(prefix=SEEN) if _U64.unpack(value)[0] < now]
        if old:
            self._write({}, old)
        return len(old)

    # -- reads -------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(unread incoming messages, outbox entries), for status: counted again
        only after this handle wrote (status is polled, by `browse` every second)."""
        if self._counts is None or self._counts[0] != self._writes:
            unread = sum(t.unread for t in self.threads())
            waiting = sum(1 for _ in self._db.iterator(prefix=OUTBOX, include_value=False))
            self._counts = (self._writes, (unread, waiting))
        return self._counts[1]

    def due(self, now: int, limit: int = 100, peer: bytes | None = None) -> list[Message]:
        """Outgoing messages (to ``peer``, if given) whose next attempt is due,
        oldest first."""
        found = []
        stop = OUTBOX + _U64.pack(now + 1)
        for key in self._db.iterator(start=OUTBOX, stop=stop, include_value=False):
            where = self._where(key[-16:])
            if where is None or (peer is not None and where[:32] != peer):
                continue
            message = self.get(key[-16:])
            if message is not None:
                found.append(message)
            if len(found) >= limit:
                break
        return found

    def due_peers(self, now: int, skip: set[bytes], limit: int) -> list[bytes]:
        """Up to ``limit`` distinct recipients with messages due, not in ``skip``,
        those due longest first: reads the id index only, no message."""
        found: list[bytes] = []
        stop = OUTBOX + _U64.pack(now + 1)
        for key in self._db.iterator(start=OUTBOX, stop=stop, include_value=False):
            where = self._where(key[-16:])
            if where is None:
                continue
            peer = where[:32]
            if peer not in skip and peer not in found:
                found.append(peer)
                if len(found) >= limit:
                    break
        return found

    def thread(self, peer: bytes, limit: int = 100) -> list[Message]:
        """The last ``limit`` messages with ``peer``, oldest first."""
        found: list[Message] = []
        for _, raw in self._db.iterator(prefix=MESSAGE + peer, reverse=True):
            message = Message.unpack(peer, raw)
            if message.kind == "text":
                found.append(message)
                if len(found) >= limit:
                    break
        return found[::-1]

    def threads(self) -> list[Thread]:
        """One entry per peer, the most recent conversation first."""
        latest: dict[bytes, tuple[bytes, Message]] = {}  # peer -> (its key, last message)
        unread: dict[bytes, int] = {}
        for key, raw in self._db.iterator(prefix=MESSAGE):
            peer = key[1:33]
            message = Message.unpack(peer, raw)
            if message.kind != "text":
                continue
            latest[peer] = (key[33:41], message)
            unread[peer] = unread.get(peer, 0) + int(not message.outgoing and not message.read)
        ordered = sorted(latest.items(), key=lambda item: item[1][0], reverse=True)
        return [Thread(peer, last, unread[peer]) for peer, (_, last) in ordered]
