"""Offline mail: ``/p2pmarket/mailbox/1.0.0``.

When a recipient cannot be reached, its mail is left with the few peers closest
to its peer id in the DHT, which the recipient asks when it comes back. A stream
carries requests and answers, each one frame (a 4-byte length and msgpack):

=============================  ==============================================
request                        answer
=============================  ==============================================
``[1, envelope, stamp]`` put   ``[0]`` kept, ``[1, reason]`` refused (quota),
                               or ``[3, bits]``: a stamp of ``bits`` needed
``[2]`` fetch                  ``[0, [[digest, envelope], …], more]``
``[3, [digest, …]]`` ack       ``[0, removed]``
=============================  ==============================================

Anyone may put; only the recipient may fetch and ack, and the holder knows it
is the recipient because the connection is authenticated as its peer id (the
peer id *is* the recipient's key). A malformed request is answered
``[2, reason]``, the stream is closed and the peer penalised.

A put pays with a proof-of-work stamp (:mod:`p2pmarket.crypto.stamp`) over the
envelope's hash, and the price rises with the recipient's mailbox: peer ids
are free, so per-depositor quotas alone let a swarm of made-up identities fill
a victim's mailbox for nothing. :func:`mail_bits` is the schedule: a message
to a recipient with little waiting costs ~0.2 s once (one stamp serves every
holder), and filling one holder's share of a mailbox costs the better part of
an hour of CPU.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgpack
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2pmarket.crypto import stamp
from p2pmarket.crypto.envelope import MAX_ENVELOPE, recipient_of
from p2pmarket.crypto.peer_id import public_key_from_peer_id
from p2pmarket.errors import InvalidEnvelope, MailboxFull, NetworkError
from p2pmarket.network.streams import close_quietly, frame, read_frame
from p2pmarket.quoting import shown

log = logging.getLogger("p2pmarket.mailbox")

MAILBOX_PROTOCOL: Final = TProtocol("/p2pmarket/mailbox/1.1.0")  # 1.1: stamped puts
PUT, FETCH, ACK = 1, 2, 3
OK, REFUSED, BAD, STAMP = 0, 1, 2, 3
MAIL_FREE_HELD: Final = 16  # envelopes a recipient may have waiting at the base price
MAIL_MAX_RISE: Final = 6  # bits over the base a sender pays at most (64x); past it, it gives up
_STAMPS_KEPT: Final = 1000  # stamps a sender remembers for hourly re-deposits
BATCH_BYTES: Final = 1024 * 1024  # mail in one fetch answer
MAX_FRAME: Final = BATCH_BYTES + MAX_ENVELOPE + 4096  # an answer
MAX_REQUEST: Final = MAX_ENVELOPE + 1024  # a put is the largest request
MAX_SERVING: Final = 16  # streams a holder serves at once…
MAX_SERVING_PER_PEER: Final = 2  # …and from one peer
MAX_ACK: Final = 1000
MAX_REQUESTS: Final = 200  # on one stream
TIMEOUT: Final = 20.0  # one request and its answer


def mail_base_bits() -> int:
    """The price of a put to a quiet mailbox: one bit under a record's stamp
    (12 bits, ~0.2 s, on the real network; lower on a test network)."""
    return max(stamp.required_bits() - 1, 0)


def mail_bits(held: int) -> int:
    """The stamp a put must carry when ``held`` envelopes wait for its
    recipient: the base price up to :data:`MAIL_FREE_HELD`, then one bit more
    (twice the work) each time the mailbox doubles. At the default quota of
    500 per recipient, the last envelopes cost 2**5 times the first."""
    base = bits = mail_base_bits()
    while held >= MAIL_FREE_HELD << (bits - base):
        bits += 1
    return bits


def mail_subject(envelope: bytes) -> bytes:
    """What a put's stamp is over: the envelope's hash, apart from records'
    stamps (which are over 64-byte signatures)."""
    return b"p2pmarket/mailbox\x00" + hashlib.blake2b(envelope, digest_size=32).digest()


class MailHolder(Protocol):
    """What the holder side needs of the store (:class:`~p2pmarket.store.mailbox.Mailbox`)."""

    def deposit(self, recipient: bytes, depositor: bytes, envelope: bytes, now: int) -> Any: ...
    def held_for(self, recipient: bytes) -> int: ...
    def pending(self, recipient: bytes, max_bytes: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """(digest, envelope) pairs, oldest first, and whether more is left."""
        ...

    def remove(self, recipient: bytes, digests: list[bytes]) -> int: ...


class MailboxRefused(NetworkError):
    """A holder would not take an envelope (a quota); its reason is the text."""


class BadRequest(Exception):
    pass


def _pack(value: Any) -> bytes:
    return frame(msgpack.packb(value, use_bin_type=True))


async def _read(stream: INetStream, limit: int = MAX_FRAME) -> list[Any]:
    data = await read_frame(stream, limit)
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise BadRequest("not msgpack") from None
    if not isinstance(doc, list) or not doc or type(doc[0]) is not int:
        raise BadRequest("not [code, …]")
    return doc


class MailboxService:
    """Holds mail for others, and leaves and collects our own."""

    def __init__(
        self,
        host: IHost,
        holder: MailHolder,
        *,
        own_key: bytes,
        now: Callable[[], int],
        on_mail: Callable[[bytes, str], bool],
        penalise: Callable[[ID], None],
        hold: bool = True,
    ) -> None:
        self._host = host
        self._holder = holder
        self._own_key = own_key
        self._now = now
        self._on_mail = on_mail
        self._penalise = penalise
        self.counters = {
            "mail_held": 0,
            "mail_refused": 0,
            "mail_served": 0,
            "mail_stamp_refused": 0,
        }
        self._stamps: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        self._serving: dict[ID, int] = {}
        if hold:  # a node that holds no mail does not offer to
            host.set_stream_handler(MAILBOX_PROTOCOL, self._serve)

    # -- holder --------------------------------------------------------------

    async def _serve(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if (
            sum(self._serving.values()) >= MAX_SERVING
            or self._serving.get(peer, 0) >= MAX_SERVING_PER_PEER
        ):
            await close_quietly(stream)  # busy: the peer tries again later
            return
        self._serving[peer] = self._serving.get(peer, 0) + 1
        try:
            await self._serve_requests(stream, peer)
        finally:
            self._serving[peer] -= 1
            if not self._serving[peer]:
                del self._serving[peer]

    async def _serve_requests(self, stream: INetStream, peer: ID) -> None:
        try:
            for _ in range(MAX_REQUESTS):
                with trio.fail_after(TIMEOUT):
                    try:
                        request = await _read(stream, MAX_REQUEST)
                    except EOFError:
                        return
                    answer = self._answer(request, peer)
                    await stream.write(_pack(answer))
        except BadRequest as exc:
            log.info("a bad mailbox request from %s: %s", peer, exc)
            self._penalise(peer)
            with trio.move_on_after(2):
                await stream.write(_pack([BAD, str(exc)]))
        except ValueError as exc:  # an oversized frame
            log.info("a bad mailbox request from %s: %s", peer, exc)
            self._penalise(peer)
        except Exception as exc:
            log.debug("a mailbox stream with %s failed: %r", peer, exc)
        finally:
            await close_quietly(stream)

    def _answer(self, request: list[Any], peer: ID) -> list[Any]:
        code = request[0]
        if (
            code == PUT
            and len(request) == 3
            and isinstance(request[1], bytes)
            and isinstance(request[2], bytes)
        ):
            return self._put(request[1], request[2], peer)
        recipient = public_key_from_peer_id(peer.to_base58())
        if code == FETCH and len(request) == 1:
            held, more = self._holder.pending(recipient, BATCH_BYTES)
            self.counters["mail_served"] += len(held)
            return [OK, [list(h) for h in held], more]
        if code == ACK and len(request) == 2 and isinstance(request[1], list):
            digests = request[1]
            if len(digests) > MAX_ACK or not all(
                isinstance(d, bytes) and len(d) == 16 for d in digests
            ):
                raise BadRequest("an ack is a list of up to 1000 16-byte digests")
            return [OK, self._holder.remove(recipient, digests)]
        raise BadRequest(f"unknown request {code!r}")

    def _put(self, envelope: bytes, nonce: bytes, peer: ID) -> list[Any]:
        try:
            recipient = recipient_of(envelope)
        except InvalidEnvelope as exc:
            raise BadRequest(str(exc)) from None
        if recipient == self._own_key:  # left with us for us: it is simply delivered
            self._on_mail(envelope, peer.to_base58())
            return [OK]
        bits = mail_bits(self._holder.held_for(recipient))
        if not stamp.check(mail_subject(envelope), nonce, bits):
            # Not an offence: the price may have risen since the sender asked.
            self.counters["mail_stamp_refused"] += 1
            return [STAMP, bits]
        depositor = public_key_from_peer_id(peer.to_base58())
        try:
            self._holder.deposit(recipient, depositor, envelope, self._now())
        except MailboxFull as exc:
            self.counters["mail_refused"] += 1
            return [REFUSED, str(exc)]
        self.counters["mail_held"] += 1
        return [OK]

    # -- sender and recipient ------------------------------------------------

    async def deposit(self, holder: ID, envelope: bytes) -> None:
        """Leave an envelope with a connected holder, stamped at its price.
        Raises :class:`MailboxRefused` for a quota or a price past
        :data:`MAIL_MAX_RISE` bits over the base, :class:`NetworkError` if the holder cannot take
        it now."""
        base = mail_base_bits()
        most = base + MAIL_MAX_RISE
        bits, nonce = await self._stamp(envelope, base)
        for _ in range(MAIL_MAX_RISE + 1):
            answer = await self._put_once(holder, envelope, nonce)
            if not (answer[0] == STAMP and len(answer) == 2 and type(answer[1]) is int):
                break
            if not bits < answer[1] <= most:
                raise MailboxRefused(
                    f"{holder} asks a stamp of {shown(answer[1])} bits for this mail "
                    f"(at most {most} are paid): the recipient's mailbox is crowded"
                )
            bits, nonce = await self._stamp(envelope, answer[1])
        self._answered(holder, answer)

    async def _stamp(self, envelope: bytes, bits: int) -> tuple[int, bytes]:
        """A stamp of at least ``bits`` over ``envelope``: remembered, since the
        same envelope is left with several holders and again every hour; solved
        in a thread (PyNaCl releases the GIL) so the node's networking goes on."""
        key = mail_subject(envelope)
        kept = self._stamps.get(key)
        if kept is not None and kept[0] >= bits:
            return kept
        nonce = await trio.to_thread.run_sync(stamp.solve, key, bits)
        self._stamps[key] = (bits, nonce)
        while len(self._stamps) > _STAMPS_KEPT:
            self._stamps.popitem(last=False)
        return bits, nonce

    async def _put_once(self, holder: ID, envelope: bytes, nonce: bytes) -> list[Any]:
        try:
            with trio.fail_after(TIMEOUT):
                stream = await self._host.new_stream(holder, [MAILBOX_PROTOCOL])
                try:
                    await stream.write(_pack([PUT, envelope, nonce]))
                    return await _read(stream)
                finally:
                    await close_quietly(stream)
        except trio.TooSlowError:
            raise NetworkError(f"mailbox {holder} did not answer in time") from None
        except Exception as exc:
            raise NetworkError(f"leaving mail with {holder} failed: {exc}") from None

    @staticmethod
    def _answered(holder: ID, answer: list[Any]) -> None:
        # The holder's words are quoted safely: repr of a value nested 1000 deep
        # raised RecursionError here, which ended the sender's post office.
        if answer[0] == REFUSED:
            said = answer[1] if len(answer) == 2 and isinstance(answer[1], str) else ""
            raise MailboxRefused(f"{holder} refused the mail: {said[:200] or shown(answer[1:])}")
        if answer != [OK]:
            raise NetworkError(f"mailbox {holder} answered {shown(answer)}")

    async def collect(self, holder: ID) -> int:
        """Fetch our mail from a connected holder, hand each envelope to the node,
        and acknowledge it so the holder deletes it. Returns how many arrived."""
        arrived = 0
        try:
            stream = await self._host.new_stream(holder, [MAILBOX_PROTOCOL])
        except Exception as exc:
            raise NetworkError(f"asking {holder} for mail failed: {exc}") from None
        try:
            for _ in range(MAX_REQUESTS // 2):
                with trio.fail_after(TIMEOUT):
                    await stream.write(_pack([FETCH]))
                    answer = await _read(stream)
                    mail, more = _mail(answer)
                    done = [
                        d for d, envelope in mail if self._on_mail(envelope, holder.to_base58())
                    ]
                    arrived += len(mail)
                    if done:
                        await stream.write(_pack([ACK, done]))
                        await _read(stream)
                if not more or not done:
                    break  # all fetched, or the rest is what we keep there for later
        except (BadRequest, ValueError) as exc:
            self._penalise(holder)
            raise NetworkError(f"mailbox {holder} answered badly: {exc}") from None
        except trio.TooSlowError:
            raise NetworkError(f"mailbox {holder} did not answer in time") from None
        except Exception as exc:
            raise NetworkError(f"collecting mail from {holder} failed: {exc}") from None
        finally:
            await close_quietly(stream)
        return arrived


def _mail(answer: list[Any]) -> tuple[list[tuple[bytes, bytes]], bool]:
    if len(answer) != 3 or answer[0] != OK or not isinstance(answer[1], list):
        raise BadRequest("a fetch answer is [0, mail, more]")
    mail: list[tuple[bytes, bytes]] = []
    for item in answer[1]:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], bytes)
            and len(item[0]) == 16
            and isinstance(item[1], bytes)
            and len(item[1]) <= MAX_ENVELOPE
        ):
            raise BadRequest("a mail item is [16-byte digest, envelope]")
        mail.append((item[0], item[1]))
    if len(mail) > MAX_ACK:
        raise BadRequest("too much mail in one answer")
    return mail, bool(answer[2])
