"""The control protocol's wire format: frames, documents and the values they carry.

Both ends import this module, so it must stay free of trio: the blocking client
that the CLI loads is built on it too.

A *frame* is a 4-byte big-endian length and a msgpack document of at most
:data:`MAX_FRAME` bytes. The documents are::

    request   {"id": int, "method": str, "params": {str: value}}
    result    {"id": int, "result": value}
    error     {"id": int | None, "error": {"type": str, "message": str, "field": str | None}}
    event     {"id": int, "event": value}     (only on a connection that asked for events)

Values are msgpack's own (nil, bool, int, float, str, bin, array, map with str
keys; a tuple travels as an array) plus two extension types, so that a user's map
can never be mistaken for one of ours:

* ext 1, a signed record (Listing, Tombstone, Profile, Review): its canonical bytes;
* ext 2, a dataclass from :data:`DATACLASSES`: a msgpack ``[name, {field: value}]``.

Requests carry plain values only: the daemon turns nothing a client sends into a
record or a dataclass. Responses come from the user's own daemon, which validated
every record before storing it, so the client rebuilds records with
:func:`records.load_trusted` instead of checking each one again.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import os
import struct
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from p2pmarket import errors, records
from p2pmarket.errors import InvalidRecord, P2PMarketError, StoreError
from p2pmarket.quoting import shown

MAX_FRAME: Final = 16 * 1024 * 1024
HEADER: Final = struct.Struct(">I")

# Linux keeps 108 bytes for the path and its terminating NUL; the BSDs and macOS 104.
MAX_SOCKET_PATH: Final = 107 if sys.platform.startswith("linux") else 103

# Everything a Node offers over the socket. ``events`` streams (see server.py).
NODE_METHODS: Final = frozenset(
    (
        "create_listing update_listing withdraw_listing get_listing my_listings search "
        "collect_garbage export_listings import_listings profile set_profile "
        "status peers connect invite join fetch_listing fetch_seller stop events "
        "sync start_sync sync_status send_message thread conversations mark_read "
        "check_mail block unblock blocked offer trade_step trades get_trade "
        "review reviews reputation sellers fetch_reviews"
    ).split()
)

_EXT_RECORD: Final = 1
_EXT_DATACLASS: Final = 2

# Name -> defining module of every dataclass that may cross the socket. Classes are
# imported on first use: the CLI's client then loads p2pmarket.ingest (and with it
# libsodium) only when an import report actually comes back.
DATACLASSES: Final[Mapping[str, str]] = {
    "Page": "p2pmarket.store.search",
    "IngestReport": "p2pmarket.ingest",
    "PeerInfo": "p2pmarket.nodestatus",
    "NodeStatus": "p2pmarket.nodestatus",
    "SyncStatus": "p2pmarket.nodestatus",
    "SyncProgress": "p2pmarket.nodestatus",
    "Message": "p2pmarket.store.messages",
    "Thread": "p2pmarket.store.messages",
    "ListingAdded": "p2pmarket.events",
    "ListingUpdated": "p2pmarket.events",
    "ListingWithdrawn": "p2pmarket.events",
    "ProfileUpdated": "p2pmarket.events",
    "ReviewAdded": "p2pmarket.events",
    "Reputation": "p2pmarket.reputation",
    "SellerInfo": "p2pmarket.reputation",
    "PeerConnected": "p2pmarket.events",
    "PeerDisconnected": "p2pmarket.events",
    "MessageReceived": "p2pmarket.events",
    "MessageStateChanged": "p2pmarket.events",
    "TradeUpdated": "p2pmarket.events",
    "TradeView": "p2pmarket.trade",
    "Terms": "p2pmarket.trade",
    "Contract": "p2pmarket.trade",
}

_SCALARS: Final = (type(None), bool, int, float, str, bytes)

# Error classes a response may name: every P2PMarketError of p2pmarket.errors.
_ERRORS: Final[Mapping[str, type[P2PMarketError]]] = {
    name: value
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, P2PMarketError)
}


class ProtocolError(P2PMarketError):
    """A frame or document broke the control protocol, or a value cannot be sent.

    Between a daemon and a CLI of the same release this means a bug; between
    different releases, that one of them needs upgrading."""


def check_socket_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a socket address, or a one-line error if the OS cannot bind it."""
    address = os.fspath(path)
    size = len(os.fsencode(address))
    if size > MAX_SOCKET_PATH:
        raise P2PMarketError(
            f"the control socket path {address} is {size} bytes, over the "
            f"{MAX_SOCKET_PATH}-byte limit of Unix sockets: use a shorter --home"
        )
    return address


# ---------------------------------------------------------------------------
# Frames


def frame(body: bytes) -> bytes:
    """Prefix ``body`` (from :func:`pack`) with its length."""
    if len(body) > MAX_FRAME:
        raise ProtocolError(
            f"a message of {len(body) / 2**20:.1f} MiB is over the "
            f"{MAX_FRAME // 2**20} MiB the control socket carries: ask for less at a time"
        )
    return HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    """The length a frame header announces; checked before anything is buffered."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"a frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    return int(length)


# ---------------------------------------------------------------------------
# Values


def pack(doc: object, *, typed: bool = True) -> bytes:
    """Encode a document. ``typed=False`` (requests) refuses records and dataclasses."""
    try:
        data: bytes = msgpack.packb(
            doc, use_bin_type=True, default=_to_ext if typed else _refuse_ext
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot send this value over the control socket: {exc}") from None
    return data


def unpack(data: bytes, *, typed: bool = True) -> object:
    """Decode a document; ``typed=False`` (requests) accepts plain values only."""
    try:
        doc = _unpackb(data, _from_ext if typed else _refuse_ext_code)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise ProtocolError(f"not a msgpack document: {exc}") from None
    if not typed:
        _check_plain(doc)
    return doc


def _unpackb(data: bytes, ext_hook: typing.Callable[[int, bytes], object]) -> object:
    # The frame length already caps the buffer; msgpack's per-object caps default
    # to the size of ``data``, so no string, array or map can claim more than that.
    return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True, ext_hook=ext_hook)


def _to_ext(value: object) -> msgpack.ExtType:
    if isinstance(value, records.Listing | records.Tombstone | records.Profile | records.Review):
        return msgpack.ExtType(_EXT_RECORD, records.encode(value))
    cls = type(value)
    if DATACLASSES.get(cls.__qualname__) == cls.__module__:
        fields = {name: getattr(value, name) for name in _field_names(cls.__qualname__)}
        return msgpack.ExtType(_EXT_DATACLASS, pack([cls.__qualname__, fields]))
    raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not in rpc.codec.DATACLASSES")


def _refuse_ext(value: object) -> object:
    raise TypeError(f"a request carries plain values only, not {type(value).__name__}")


def _refuse_ext_code(code: int, data: bytes) -> object:
    raise ProtocolError(f"a request carries plain values only, not extension type {code}")


def _from_ext(code: int, data: bytes) -> object:
    if code == _EXT_RECORD:
        try:
            return records.load_trusted(data)
        except StoreError:
            raise ProtocolError("the daemon sent a record that does not decode") from None
    if code == _EXT_DATACLASS:
        body = _unpackb(data, _from_ext)
        if not (isinstance(body, list) and len(body) == 2 and isinstance(body[1], dict)):
            raise ProtocolError("a dataclass must be sent as [name, {field: value}]")
        name, fields = body
        if not isinstance(name, str) or name not in DATACLASSES:
            raise ProtocolError(f"unknown dataclass {shown(name)}: is the daemon another release?")
        hints = _field_hints(name)
        try:
            return _class(name)(
                **{key: _coerce(value, hints.get(key)) for key, value in fields.items()}
            )
        except TypeError as exc:
            raise ProtocolError(
                f"the daemon sent a {name} this client cannot read: {exc}"
            ) from None
    raise ProtocolError(f"unknown extension type {code}")


@functools.cache
def _class(name: str) -> type[Any]:
    cls: type[Any] = getattr(importlib.import_module(DATACLASSES[name]), name)
    return cls


@functools.cache
def _field_names(name: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(_class(name)))


@functools.cache
def _field_hints(name: str) -> dict[str, Any]:
    return typing.get_type_hints(_class(name))


def _coerce(value: object, hint: Any) -> object:
    """Turn the arrays of ``value`` back into the tuples that ``hint`` declares
    (msgpack has one array type; our dataclasses use tuples for immutable fields),
    and the plain values of enum fields back into their enums."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ProtocolError(f"{shown(value)} is not a {hint.__name__}") from None
    if not isinstance(value, list):
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list and len(args) == 1:
        return [_coerce(item, args[0]) for item in value]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in value)
        if len(args) == len(value):
            return tuple(_coerce(item, arg) for item, arg in zip(value, args, strict=True))
        return tuple(value)
    return value


def _check_plain(doc: object) -> None:
    # Iterative: a hostile request may nest as deep as msgpack allows.
    pending = [doc]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif not isinstance(value, _SCALARS):
            # msgpack turns its timestamp extension into an object without asking ext_hook.
            raise ProtocolError(f"a request carries plain values only, not {type(value).__name__}")


# ---------------------------------------------------------------------------
# Documents


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    params: dict[str, object]


def request_document(
    request_id: int, method: str, params: Mapping[str, object]
) -> dict[str, object]:
    return {"id": request_id, "method": method, "params": dict(params)}


def parse_request(doc: object) -> Request:
    """Check a decoded request's shape; the caller decides what its method means."""
    if not isinstance(doc, dict) or set(doc) != {"id", "method", "params"}:
        raise ProtocolError('a request must be a map of exactly "id", "method" and "params"')
    request_id, method, params = doc["id"], doc["method"], doc["params"]
    if type(request_id) is not int:
        raise ProtocolError("a request id must be an integer")
    if not isinstance(method, str):
        raise ProtocolError("a request's method must be text")
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise ProtocolError("a request's params must be a map with text keys")
    return Request(request_id, method, params)


def error_document(request_id: int | None, exc: P2PMarketError) -> dict[str, object]:
    """Describe ``exc`` by its most specific class in p2pmarket.errors, so that a
    subclass defined elsewhere (say in network/) arrives as the branch it belongs to."""
    name = next(c.__name__ for c in type(exc).__mro__ if _ERRORS.get(c.__name__) is c)
    if isinstance(exc, InvalidRecord):
        detail = {"type": name, "message": exc.reason, "field": exc.field}
    else:
        detail = {"type": name, "message": str(exc), "field": None}
    return {"id": request_id, "error": detail}


def parse_error(detail: object) -> P2PMarketError:
    """The exception an error document describes; unknown names become the root."""
    if not isinstance(detail, dict):
        return ProtocolError("the daemon sent an error this client cannot read")
    name, message, field = detail.get("type"), detail.get("message"), detail.get("field")
    if not isinstance(message, str):
        message = "the daemon reported an error without a message"
    cls = _ERRORS.get(name, P2PMarketError) if isinstance(name, str) else P2PMarketError
    if cls is InvalidRecord:
        return InvalidRecord(field if isinstance(field, str) else None, message)
    try:
        return cls(message)
    except TypeError:  # a class with another constructor: keep the message at least
        return P2PMarketError(message)
