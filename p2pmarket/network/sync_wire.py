"""The sync protocols' frames: a 4-byte big-endian length, then one msgpack array.

=================  ===================================================================
frame              body
=================  ===================================================================
ranges             ``[1, [[upper, mode, payload], ...]]`` — ``upper`` bin or nil (the
                   end); payload nil (skip), ``[count, fp16]`` (fingerprint) or a flat
                   ``[key, seq, key, seq, ...]`` (items, reply)
get                ``[2, [key, ...]]`` — at most :data:`MAX_GET` sync keys
records            ``[3, [record | nil, ...]]`` — answers to the first *n* keys of the
                   get, in its order; nil: not held (expired, evicted or unknown)
=================  ===================================================================

Decoding checks every type and cap and raises :class:`ProtocolViolation`, so a
malformed frame ends the session instead of reaching the reconciler.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

from p2pmarket.network.reconcile import MAX_KEY, Item, Mode, ProtocolViolation, Range
from p2pmarket.quoting import shown
from p2pmarket.records import MAX_RECORD_BYTES

MAX_FRAME: Final = 4 << 20
MAX_GET: Final = 512  # keys asked in one get
RANGES: Final = 1
GET: Final = 2
RECORDS: Final = 3
_LENGTH: Final = struct.Struct(">I")
_MAX_SEQ: Final = 2**63 - 1


def frame(body: list[Any]) -> bytes:
    data: bytes = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_FRAME:
        raise ValueError(f"a sync frame of {len(data)} bytes is over the limit")
    return _LENGTH.pack(len(data)) + data


def frame_length(header: bytes) -> int:
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolViolation(f"a frame of {length} bytes (the limit is {MAX_FRAME})")
    return int(length)


def parse(data: bytes) -> tuple[int, list[Any]]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise ProtocolViolation("a frame is not msgpack") from None
    if (
        not isinstance(body, list)
        or len(body) != 2
        or type(body[0]) is not int
        or not isinstance(body[1], list)
    ):
        raise ProtocolViolation("a frame is not [type, body]")
    return body[0], body[1]


# -- ranges ------------------------------------------------------------------


def ranges_frame(message: list[Range]) -> bytes:
    out: list[Any] = []
    for rng in message:
        payload: Any
        if rng.mode is Mode.SKIP:
            payload = None
        elif rng.mode is Mode.FINGERPRINT:
            payload = [rng.count, rng.fingerprint]
        else:
            payload = [x for item in rng.items for x in item]
        out.append([rng.upper, int(rng.mode), payload])
    return frame([RANGES, out])


def decode_ranges(body: list[Any]) -> list[Range]:
    message: list[Range] = []
    for entry in body:
        if not isinstance(entry, list) or len(entry) != 3:
            raise ProtocolViolation("a range is not [upper, mode, payload]")
        upper, mode, payload = entry
        if upper is not None and not _is_key(upper):
            raise ProtocolViolation("a range bound is not a short byte string")
        if type(mode) is not int or mode not in Mode._value2member_map_:
            raise ProtocolViolation(f"unknown range mode {shown(mode)}")
        kind = Mode(mode)
        if kind is Mode.SKIP:
            if payload is not None:
                raise ProtocolViolation("a skipped range carries a payload")
            message.append(Range(upper, kind))
        elif kind is Mode.FINGERPRINT:
            if (
                not isinstance(payload, list)
                or len(payload) != 2
                or type(payload[0]) is not int
                or not 0 <= payload[0] <= _MAX_SEQ
                or not isinstance(payload[1], bytes)
                or len(payload[1]) != 16
            ):
                raise ProtocolViolation("a fingerprint is not [count, 16 bytes]")
            message.append(Range(upper, kind, payload[0], payload[1]))
        else:
            message.append(Range(upper, kind, items=_items(payload)))
    return message


def _items(payload: Any) -> tuple[Item, ...]:
    if not isinstance(payload, list) or len(payload) % 2:
        raise ProtocolViolation("an item list is not [key, seq, ...]")
    items: list[Item] = []
    for i in range(0, len(payload), 2):
        key, seq = payload[i], payload[i + 1]
        if not _is_key(key) or type(seq) is not int or not 0 < abs(seq) <= _MAX_SEQ:
            raise ProtocolViolation("an item is not a key and a seq")
        items.append((key, seq))
    return tuple(items)


def _is_key(value: Any) -> bool:
    return isinstance(value, bytes) and 0 < len(value) <= MAX_KEY


# -- get / records -------------------------------------------------------------


def get_frame(keys: list[bytes]) -> bytes:
    return frame([GET, keys])


def decode_get(body: list[Any]) -> list[bytes]:
    if not 0 < len(body) <= MAX_GET or not all(_is_key(k) for k in body):
        raise ProtocolViolation(f"a get must name 1 to {MAX_GET} sync keys")
    return body


def records_frame(found: list[bytes | None]) -> bytes:
    """Answers in order, stopping before the frame would pass :data:`MAX_FRAME`."""
    size = 64
    kept: list[bytes | None] = []
    for data in found:
        size += 8 + (len(data) if data is not None else 0)
        if size > MAX_FRAME:
            break
        kept.append(data)
    return frame([RECORDS, kept])


def decode_records(body: list[Any], asked: int) -> list[bytes | None]:
    if len(body) > asked or (asked and not body):
        raise ProtocolViolation("an answer to a get has the wrong number of entries")
    for data in body:
        if data is not None and (not isinstance(data, bytes) or len(data) > MAX_RECORD_BYTES):
            raise ProtocolViolation("a record in an answer is not a byte string")
    return body
