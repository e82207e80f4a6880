"""One target per decoder of outside bytes: what it is fed, and what it may raise.

A decoder may refuse input only with an error of our own tree
(:class:`~p2pmarket.errors.P2PMarketError`: ``Malformed``, ``InvalidRecord``,
``InvalidEnvelope``…), or with the one error its protocol module documents for
ending a session (``ProtocolViolation`` and ``Incomplete`` of sync, ``BadRequest``
of the mailbox). Anything else — a TypeError, KeyError, RecursionError… — is an
*unhandled* exception: the caller that means to drop bad input would not catch it.

Frames read from a stream go through :func:`~p2pmarket.network.streams.read_frame`
on an in-memory stream; its documented refusals (EOFError: the peer stopped short;
ValueError: a frame over the limit) are turned into :class:`Refused` right there,
so a ValueError from the decoding after it still counts as unhandled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import nacl.public
import nacl.signing

from fuzz import corpus
from fuzz.corpus import ME
from fuzz.mutate import pack
from p2pmarket import records, trade
from p2pmarket.crypto import envelope
from p2pmarket.crypto.backup import from_words
from p2pmarket.crypto.keystore import KeyFile
from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.errors import P2PMarketError
from p2pmarket.exchange import read_export
from p2pmarket.home import Home
from p2pmarket.network import dht, mailbox, sync_wire
from p2pmarket.network.peerbook import PeerBook
from p2pmarket.network.reconcile import Incomplete, ProtocolViolation, Reconciler
from p2pmarket.network.streams import read_frame
from p2pmarket.postoffice import _parse_receipt
from p2pmarket.rpc import codec
from tests.factories import NOW, OTHER


class Refused(Exception):
    """A documented refusal outside our tree (see the module docstring)."""


@dataclass
class Target:
    """``call`` decodes one input; ``docs`` are valid inputs (documents, or bytes
    that are not one msgpack value); ``encode`` turns a document into the input."""

    name: str
    call: Callable[[Any], object]
    docs: list[Any]
    kind: str = "bytes"  # "bytes": encode(doc) is fed; "object": the document itself
    encode: Callable[[Any], bytes] = field(default=lambda doc: _opaque(doc))
    allowed: tuple[type[BaseException], ...] = (P2PMarketError, Refused)
    words: list[str] = field(default_factory=list)


def _decoded(items: list[bytes]) -> list[Any]:
    out = []
    for data in items:
        try:
            out.append(msgpack.unpackb(data, raw=False, strict_map_key=False))
        except (ValueError, msgpack.UnpackException):
            out.append(data)
    return out


# -- in-memory streams ------------------------------------------------------------


class _Stream:
    """Just enough of a libp2p stream for read_frame: bytes, then EOF."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    async def read(self, n: int | None = None) -> bytes:
        end = len(self._data) if n is None else self._at + n
        chunk = self._data[self._at : end]
        self._at += len(chunk)
        return chunk


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (its stream is in memory) to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        coro.close()
    raise RuntimeError("a frame reader waited on an in-memory stream")


def _frame(data: bytes, limit: int) -> bytes:
    try:
        body: bytes = _run(read_frame(_Stream(data), limit))  # type: ignore[arg-type]
    except (EOFError, ValueError) as exc:
        raise Refused(str(exc)) from None
    return body


# -- targets ----------------------------------------------------------------------


def _dht_validators() -> Callable[[bytes], None]:
    c = corpus.build()

    def now() -> int:
        return NOW

    checks = [
        (dht.ListingValidator(now), dht.listing_key(c.listing.id)),
        (dht.CatalogueValidator(now), dht.catalogue_key(c.catalogue.seller)),
        (dht.ProfileValidator(now), dht.profile_key(c.profile.owner)),
        (dht.ReviewsValidator(now), dht.reviews_key(c.review.subject)),
    ]

    def call(data: bytes) -> None:
        refusal: P2PMarketError | None = None
        for validator, key in checks:
            try:
                validator.validate(key, data)
            except P2PMarketError as exc:
                refusal = exc
        if refusal is not None:
            raise refusal

    return call


def _letter(inner: bytes) -> envelope.Letter:
    box_key = nacl.signing.VerifyKey(ME.public_key).to_curve25519_public_key()
    sealed = nacl.public.SealedBox(box_key).encrypt(inner)
    outside = msgpack.packb({"box": sealed, "to": ME.public_key, "v": 1}, use_bin_type=True)
    return envelope.open_envelope(outside, ME, NOW)


def _sync(data: bytes) -> object:
    if len(data) >= 4:
        sync_wire.frame_length(data[:4])
    kind, body = sync_wire.parse(data)
    if kind == sync_wire.RANGES:
        return sync_wire.decode_ranges(body)
    if kind == sync_wire.GET:
        return sync_wire.decode_get(body)
    return sync_wire.decode_records(body, 2)


_OURS = corpus.item_set(0)


def _reconcile(data: bytes) -> object:
    kind, body = sync_wire.parse(data)
    if kind != sync_wire.RANGES:
        raise ProtocolViolation("not a ranges frame")
    return Reconciler(_OURS).receive(sync_wire.decode_ranges(body))


class _Holder:
    """The holder side of the mailbox with a real store (opened on first use)."""

    def __init__(self) -> None:
        self._service: mailbox.MailboxService | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        from libp2p.peer.id import ID  # noqa: TID251  (a peer's id, as the holder sees it)

        self.peer = ID.from_base58(peer_id_from_public_key(OTHER.public_key))

    def __call__(self, data: bytes) -> object:
        if self._service is None:
            from p2pmarket.store.db import open_db
            from p2pmarket.store.mailbox import Mailbox

            self._folder = tempfile.TemporaryDirectory(prefix="p2pmarket-fuzz-")
            holder = Mailbox(open_db(Path(self._folder.name) / "store"))
            self._service = mailbox.MailboxService(
                None,  # type: ignore[arg-type]  # hold=False: no host is touched
                holder,
                own_key=ME.public_key,
                now=lambda: NOW,
                on_mail=lambda envelope, peer: True,
                penalise=lambda peer: None,
                hold=False,
            )
        request = _request(_frame(data, mailbox.MAX_REQUEST))
        return self._service._answer(request, self.peer)


def _request(body: bytes) -> list[Any]:
    return _run(mailbox._read(_Stream(corpus.frame(body)), len(body) + 1))  # type: ignore[arg-type,no-any-return]


def _mail_answer(data: bytes) -> object:
    return mailbox._mail(_request(_frame(data, mailbox.MAX_FRAME)))


def _rpc_answer(body: bytes) -> object:
    doc = codec.unpack(body)
    if isinstance(doc, dict) and "error" in doc:
        return codec.parse_error(doc["error"])
    return doc


class _Files:
    """A scratch folder for the targets that read a file."""

    def __init__(self) -> None:
        # In memory where there is a tmpfs: a write to disk costs more than a decode.
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self._folder = tempfile.TemporaryDirectory(prefix="p2pmarket-fuzz-", dir=shm)
        self.root = Path(self._folder.name)

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path


def _files() -> _Files:
    global _FILES
    if _FILES is None:
        _FILES = _Files()
    return _FILES


_FILES: _Files | None = None


def _export(data: bytes) -> int:
    return sum(1 for _ in read_export(_files().write("export.p2pm", data)))


def _key_file(data: bytes) -> object:
    return KeyFile(data, "identity.key").unlock(None)


def _peer_book(data: bytes) -> object:
    return PeerBook.load(_files().write("peers", data))


def _config(data: bytes) -> object:
    _files().write("config.toml", data)
    return Home(_files().root).load_config()


def _words(text: str | bytes) -> object:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return from_words(text)


def _opaque(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else pack(doc)


def _framed(doc: Any) -> bytes:
    """A frame as a peer sends it: the length, then the document."""
    return corpus.frame(_opaque(doc))


def all_targets() -> list[Target]:
    """Every decoder of outside bytes, in the order the table prints them."""
    recs = corpus.record_docs()
    seal_docs = _decoded(corpus.envelopes())
    sync_docs = _decoded(corpus.sync_frames())
    protocol = (P2PMarketError, ProtocolViolation, Incomplete)
    mail = (P2PMarketError, mailbox.BadRequest, Refused)
    words = corpus.backup_words()
    return [
        Target("records.decode", lambda d: records.decode(d, NOW), _decoded(recs)),
        Target("records.decode_signed", lambda d: records.decode_signed(d, NOW), _decoded(recs)),
        Target("records.validate", lambda d: records.validate(d, NOW), _decoded(recs)),
        Target(
            "records.validate_catalogue",
            lambda d: records.validate_catalogue(d, NOW),
            _decoded(recs[-1:] + recs[:1]),
        ),
        Target("dht.validators", _dht_validators(), _decoded(recs + corpus.bundles())),
        Target(
            "dht.unpack_bundle",
            lambda d: dht.unpack_bundle(d, corpus.build().review.subject, NOW),
            _decoded(corpus.bundles()),
        ),
        Target("envelope.recipient_of", envelope.recipient_of, seal_docs),
        Target("envelope.open_envelope", lambda d: envelope.open_envelope(d, ME, NOW), seal_docs),
        Target("envelope.letter", _letter, corpus.letters()),
        Target("trade.unpack_move", trade.unpack_move, _decoded(corpus.moves())),
        Target("trade.parse_terms", trade.parse_terms, corpus.terms(), kind="object"),
        Target("postoffice.receipt", _parse_receipt, _decoded(corpus.receipts())),
        Target("sync_wire.frames", _sync, sync_docs, allowed=protocol),
        Target("reconcile.receive", _reconcile, sync_docs[:3], allowed=protocol),
        Target(
            "mailbox.request", _Holder(), corpus.mailbox_requests(), allowed=mail, encode=_framed
        ),
        Target(
            "mailbox.answer", _mail_answer, corpus.mailbox_answers(), allowed=mail, encode=_framed
        ),
        Target(
            "rpc.request",
            lambda d: codec.parse_request(codec.unpack(d, typed=False)),
            _decoded(corpus.rpc_requests()),
        ),
        Target("rpc.answer", _rpc_answer, _decoded(corpus.rpc_answers())),
        Target("exchange.read_export", _export, corpus.export_files(), encode=corpus.pack_stream),
        Target("keystore.key_file", _key_file, _decoded(corpus.key_files())),
        Target("peerbook.load", _peer_book, _decoded(corpus.peer_books())),
        Target("home.config_toml", _config, corpus.config_files(), encode=_opaque),
        Target("backup.from_words", _words, [w.encode() for w in words], kind="text", words=words),
    ]
