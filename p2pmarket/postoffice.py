"""Direct messages on the node: sealing, keeping, delivering, receiving, receipts.

The :class:`PostOffice` sits between the user's messages in the store and the
network. Every outgoing message is written to the outbox first (with sync), then
delivered by a loop that runs while the node is online:

1. straight to the recipient, whose node answers with a signed receipt
   (*delivered*);
2. if the recipient cannot be reached, left with the mailbox holders closest
   to its id (*sent*), and tried directly again later, with backoff;
3. when a recipient collects mail from a holder, its node sends a receipt of
   its own back through the same outbox, and *read* receipts likewise when the
   user opens the conversation.

A receipt is a letter of kind ``receipt`` whose body lists ``[id, state]``
pairs; only the peer a message was sent to can move it forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgpack
import trio

from p2pmarket.crypto.envelope import MAX_AGE, REPLAY_WINDOW, Letter, open_envelope, seal
from p2pmarket.crypto.peer_id import peer_id_from_public_key, public_key_from_peer_id
from p2pmarket.crypto.signing import Signer
from p2pmarket.errors import (
    EnvelopeOutOfTime,
    InvalidEnvelope,
    InvalidInput,
    Malformed,
    NotYet,
    P2PMarketError,
)
from p2pmarket.events import Event, MessageReceived, MessageStateChanged
from p2pmarket.store.blocklist import BlockList
from p2pmarket.store.messages import Message, MessageStore, State
from p2pmarket.trade import Move, pack_move, unpack_move

if TYPE_CHECKING:
    from p2pmarket.network.service import Network

log = logging.getLogger("p2pmarket.postoffice")

RETRY_FIRST: Final = 5  # seconds before an undelivered message is tried again…
RETRY_MAX: Final = 3600  # …doubling up to an hour
DELIVERY_WORKERS: Final = 8  # peers delivered to at once
MAX_RECEIPT_IDS: Final = 1000
MAX_TEXT: Final = 16 * 1024  # bytes of UTF-8: a chat message, not a file


def _receipt_body(states: list[tuple[bytes, State]]) -> bytes:
    data: bytes = msgpack.packb([[mid, int(state)] for mid, state in states], use_bin_type=True)
    return data


def _parse_receipt(body: bytes) -> list[tuple[bytes, State]]:
    try:
        pairs = msgpack.unpackb(body, raw=False)
        if not isinstance(pairs, list) or len(pairs) > MAX_RECEIPT_IDS:
            raise ValueError
        parsed = []
        for mid, state in pairs:
            if not isinstance(mid, bytes) or type(state) is not int:
                raise ValueError
            if state not in (State.DELIVERED, State.READ):
                raise ValueError
            parsed.append((mid, State(state)))
    except (ValueError, TypeError, msgpack.UnpackException):
        raise InvalidEnvelope("a receipt is a list of [message id, delivered|read]") from None
    return parsed


class PostOffice:
    """The node's direct messages. ``network`` is set while the node is online."""

    def __init__(
        self,
        messages: MessageStore,
        blocked: BlockList,
        *,
        signer: Callable[[], Signer],
        now: Callable[[], int],
        emit: Callable[[Event], None],
        read_receipts: bool = True,
        on_trade: Callable[[Move], bool] = lambda move: False,
    ) -> None:
        self.messages = messages
        self.blocked = blocked
        self._signer = signer
        self._now = now
        self._emit = emit
        self._read_receipts = read_receipts
        self._on_trade = on_trade
        self.network: Network | None = None
        self._wake: trio.Event | None = None
        self._busy: set[bytes] = set()  # peers a delivery task is working on

    # -- the user's side -----------------------------------------------------

    def send(self, recipient: bytes, text: str) -> Message:
        """Seal ``text`` to ``recipient`` and put it in the outbox."""
        body = text.strip().encode()
        if not body:
            raise InvalidInput("an empty message")
        if len(body) > MAX_TEXT:
            raise InvalidInput(f"a message is at most {MAX_TEXT} bytes; this one is {len(body)}")
        return self._queue(recipient, "text", body)

    def send_trade(self, recipient: bytes, move: Move, keep: tuple[bytes, bytes]) -> Message:
        """Queue a trade move for the other party: it travels like a message.
        ``keep`` (the move's entry in the trade store) is written in the same
        batch, so a move is never kept without being sent, nor sent unkept."""
        return self._queue(recipient, "trade", pack_move(move), keep)

    def _queue(
        self, recipient: bytes, kind: str, body: bytes, also: tuple[bytes, bytes] | None = None
    ) -> Message:
        letter, envelope = seal(self._signer(), recipient, kind, body, self._now())
        message = Message(
            recipient, letter.id, True, letter.sent, kind, body, State.QUEUED, envelope=envelope
        )
        self.messages.add_outgoing(message, due=self._now(), also=also)
        self.wake()
        return message

    def mark_read(self, peer: bytes) -> int:
        """Mark a conversation read, and tell the peer (unless read receipts are off)."""
        newly = self.messages.mark_read(peer)
        if newly and self._read_receipts and peer not in self.blocked:
            for start in range(0, len(newly), MAX_RECEIPT_IDS):
                chunk = newly[start : start + MAX_RECEIPT_IDS]
                self._queue(peer, "receipt", _receipt_body([(m.id, State.READ) for m in chunk]))
        return len(newly)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def peer_connected(self, peer_id: str) -> None:
        """A peer came online: what waits for it in the outbox goes now."""
        try:
            key = public_key_from_peer_id(peer_id)
        except InvalidInput:
            return  # not an ed25519 peer (not a p2pmarket node): we never write to it
        if self.messages.expedite(key, self._now()):
            self.wake()

    # -- receiving -------------------------------------------------------------

    def _open(self, data: bytes) -> Letter:
        return open_envelope(data, self._signer(), self._now())

    def receive(self, data: bytes, from_peer: str) -> bytes | None:
        """An envelope handed to us directly: keep it and answer with a receipt
        (also for a replay, so a sender that missed our receipt stops retrying).
        Raises :class:`InvalidEnvelope` for one that does not open or check, and
        :class:`NotYet` for one that must come again later (no receipt, so its
        sender retries); a blocked sender's is dropped without an answer."""
        letter = self._open(data)
        if letter.sender in self.blocked:
            return None
        self._take(letter, "direct")
        body = _receipt_body([(letter.id, State.DELIVERED)])
        return seal(self._signer(), letter.sender, "receipt", body, self._now())[1]

    def receive_mail(self, data: bytes, holder: str) -> bool:
        """An envelope collected from a mailbox holder; True when the holder may
        delete it. What does not open is dropped (the holder cannot tell), except a
        letter dated ahead of our clock: it stays with the holder until our clocks
        agree. A new message is acknowledged to its sender by a receipt through
        the outbox."""
        try:
            letter = self._open(data)
        except EnvelopeOutOfTime as exc:
            log.info("mail from holder %s: %s", holder, exc)
            return not exc.future
        except InvalidEnvelope as exc:  # not signed, not for us: nobody to blame
            log.info("dropped mail from holder %s: %s", holder, exc)
            return True
        if letter.sender in self.blocked:
            return True
        try:
            new = self._take(letter, "mailbox")
        except NotYet as exc:
            log.info("mail from holder %s kept there for now: %s", holder, exc)
            return False
        except InvalidEnvelope as exc:
            # The letter opened and its signature checked, so its sender signed
            # what we cannot take. Dropped (acknowledged): left with the holder it
            # would come first in every fetch and block the mail behind it.
            log.info("dropped a bad letter from %s: %s", letter.sender.hex()[:16], exc)
            self._blame(letter.sender)
            return True
        except Exception:
            # A bug of ours, not the sender's fault: it would fail again at every
            # fetch, so the letter is dropped too rather than blocking the mailbox.
            log.exception("taking a letter from %s failed", letter.sender.hex()[:16])
            return True
        if new:
            self._queue(letter.sender, "receipt", _receipt_body([(letter.id, State.DELIVERED)]))
        return True

    def _take(self, letter: Letter, via: Any) -> bool:
        """Keep a text letter, apply a receipt, or hand a trade move to the node;
        True for something new (that its sender must hear we have)."""
        if letter.kind == "receipt":
            for mid, state in _parse_receipt(letter.body):
                self._advance(mid, state, letter.sender)
            return False
        if letter.kind == "trade":
            try:
                move = unpack_move(letter.body)
            except Malformed as exc:
                raise InvalidEnvelope(str(exc)) from None
            if move.author != letter.sender:
                raise InvalidEnvelope("a trade move signed by someone else than its sender")
            return self._on_trade(move)
        if len(letter.body) > MAX_TEXT:
            raise InvalidEnvelope(f"a text letter of {len(letter.body)} bytes (at most {MAX_TEXT})")
        try:
            letter.body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEnvelope("a text letter that is not UTF-8") from None
        message = Message(
            letter.sender, letter.id, False, letter.sent, letter.kind, letter.body, State.RECEIVED
        )
        if not self.messages.add_incoming(message, keep_until=letter.sent + REPLAY_WINDOW):
            return False
        self._emit(MessageReceived(message, via))
        return True

    def _blame(self, sender: bytes) -> None:
        """Penalise the signer of a letter we could not take (now, or when it
        next connects: the network keeps the debt)."""
        if self.network is not None:
            self.network.penalise(peer_id_from_public_key(sender))

    def _advance(self, mid: bytes, state: State, peer: bytes | None = None) -> bool:
        updated = self.messages.advance(mid, state, peer)
        if updated is not None and updated.kind == "text":
            self._emit(MessageStateChanged(updated))
        return updated is not None

    # -- delivering ------------------------------------------------------------

    async def run(self, network: Network, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver due messages while ``network`` runs: one task per recipient (its
        messages in order), up to :data:`DELIVERY_WORKERS` recipients at once."""
        self.network = network
        self._wake = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    with trio.move_on_after(1):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    free = DELIVERY_WORKERS - len(self._busy)
                    if free <= 0:
                        continue
                    for peer in self.messages.due_peers(self._now(), self._busy, free):
                        self._busy.add(peer)
                        nursery.start_soon(self._deliver_to, peer)
        finally:
            self.network = None
            self._wake = None
            self._busy.clear()

    async def _deliver_to(self, peer: bytes) -> None:
        """Deliver the messages due to one peer, in order. Once one cannot be
        delivered the peer is away: the rest go to mailboxes without trying."""
        try:
            reachable, mailboxes = True, True
            while reachable:
                due = self.messages.due(self._now(), limit=100, peer=peer)
                if not due:
                    return
                for message in due:
                    if reachable and await self._deliver(message):
                        continue
                    reachable = False
                    # Once no mailbox would take one, the rest wait for the retry.
                    mailboxes = await self._fall_back(message, mailboxes)
        finally:
            self._busy.discard(peer)

    async def _deliver(self, message: Message) -> bool:
        """Hand a message to its recipient directly; True once its receipt is in."""
        network = self.network
        if network is None:
            return False
        try:
            receipt = await network.deliver(peer_id_from_public_key(message.peer), message.envelope)
            letter = self._open(receipt)
            if letter.sender != message.peer or letter.kind != "receipt":
                raise InvalidEnvelope("not a receipt from the recipient")
            states = _parse_receipt(letter.body)
            if message.id not in {mid for mid, _ in states}:
                raise InvalidEnvelope("a receipt for another message")
        except P2PMarketError as exc:
            log.debug("delivering %s: %s", message.id.hex(), exc)
            return False
        for mid, state in states:
            self._advance(mid, state, message.peer)
        return True

    async def _fall_back(self, message: Message, mailboxes: bool = True) -> bool:
        """The recipient is away: leave the message with mailboxes, and try it
        directly again later, doubling the wait; give up once it is too old for
        the recipient to accept. Returns whether mailboxes took it.

        It is left with mailboxes the first time, and again at every retry once
        the wait is an hour: holders come and go, and the nearest ones then may
        not be those that took it first (holders keep one copy of an envelope)."""
        if self._now() > message.sent + MAX_AGE:
            self._advance(message.id, State.FAILED)
            return mailboxes
        wait = min(RETRY_FIRST * 2**message.attempts, RETRY_MAX)
        network = self.network
        kept = 0
        if (
            mailboxes
            and network is not None
            and (message.state == State.QUEUED or wait == RETRY_MAX)
        ):
            try:
                kept = await network.leave_mail(
                    peer_id_from_public_key(message.peer), message.envelope
                )
            except P2PMarketError as exc:
                log.debug("leaving %s in mailboxes: %s", message.id.hex(), exc)
            if kept:
                self._advance(message.id, State.SENT)
            mailboxes = kept > 0
        self.messages.reschedule(message.id, due=self._now() + wait)
        return mailboxes
