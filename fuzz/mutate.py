"""Ways to spoil a valid input: byte mutations, type confusion, and hypothesis strategies.

Two generators share one vocabulary of hostile values (:func:`odd_value`):

* :class:`Mutator`, driven by a seeded ``random.Random``, spoils valid encodings
  fast (tens of microseconds a case): bit flips, msgpack-header bytes, cuts,
  insertions, splices of two valid inputs, and *structural* edits that decode the
  msgpack, replace one node by a value of another type (a list where text was
  expected — the shape of the hole the issue found in ``trade.unpack_move`` —, a
  huge or negative int, a float, nil, a bool, a deep nest, a map), and re-encode.
* :func:`hypothesis_inputs` draws the same kinds of edits through hypothesis, so
  hypothesis chooses which node of which valid input changes and into what; it is
  slower per case (milliseconds) but explores the types systematically.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack
from hypothesis import strategies as st

# Bytes that start msgpack values of every family: fixmap/fixarray/fixstr edges,
# nil, the never-used 0xc1, bools, bin/ext/float/int/str/array/map headers.
HEADER_BYTES: Final = bytes(
    [
        0x00,
        0x01,
        0x7F,
        0x80,
        0x81,
        0x8F,
        0x90,
        0x91,
        0x9F,
        0xA0,
        0xA3,
        0xBF,
        *range(0xC0, 0xE1),
        0xFF,
    ]
)
BOUNDARY_INTS: Final = (
    0, 1, -1, 2, 7, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, 2**32, 2**40,
    2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**7), -(2**31), -(2**63),
)  # fmt: skip
ODD_TEXT: Final = (
    "", " ", "offer", "sell", "IDR", "listing", "review", "\x00", "\x1b[31mred", "\u202e",
    "\n", "é" * 3, "x" * 300, "a/b", "ß", "İ", "\ufeff",
)  # fmt: skip
KEY_SIZES: Final = (0, 1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100, 1000)


def deep(depth: int, leaf: Any = None, *, as_map: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_map else [value]
    return value


def odd_value(rnd: random.Random, depth: int = 0) -> Any:
    """A value of any msgpack type, biased to the edges decoders forget."""
    roll = rnd.randrange(20)
    if roll == 0:
        return None
    if roll == 1:
        return rnd.choice((True, False))
    if roll in (2, 3):
        return rnd.choice(BOUNDARY_INTS) + rnd.choice((0, 0, 0, 1, -1))
    if roll == 4:
        return rnd.randint(-(2**63), 2**64 - 1)
    if roll == 5:
        return rnd.choice((0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 1e300, 2.0**63))
    if roll in (6, 7):
        return rnd.choice(ODD_TEXT)
    if roll == 8:
        return "".join(chr(rnd.randrange(0x20, 0x3000)) for _ in range(rnd.randrange(8)))
    if roll in (9, 10):
        return rnd.randbytes(rnd.choice(KEY_SIZES))
    if roll == 11 and depth < 3:
        return [odd_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    if roll == 12 and depth < 3:
        return {rnd.choice(ODD_TEXT): odd_value(rnd, depth + 1) for _ in range(rnd.randrange(4))}
    if roll == 13:
        return deep(rnd.choice((2, 50, 500, 998, 1005, 1020, 1100)), as_map=rnd.random() < 0.3)
    if roll == 14:
        return [None] * rnd.choice((100, 2000))
    if roll == 15:
        return msgpack.ExtType(rnd.randrange(0, 128), rnd.randbytes(rnd.randrange(12)))
    if roll == 16:
        return msgpack.Timestamp(rnd.randrange(2**34), rnd.randrange(10**9))
    if roll == 17 and depth < 3:
        return {rnd.choice((1, -1, None, True, 1.5, b"k", "", "type")): odd_value(rnd, 3)}
    return [] if roll == 18 else {}


# -- structural edits ------------------------------------------------------------


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every node of a decoded document, the root included."""
    found = [path]
    if isinstance(doc, list) and len(path) < 12:
        for i, item in enumerate(doc[:64]):
            found += _nodes(item, (*path, i))
    elif isinstance(doc, dict) and len(path) < 12:
        for key in list(doc)[:64]:
            found += _nodes(doc[key], (*path, key))
    return found


def _copy(doc: Any, depth: int = 0) -> Any:
    # Only as deep as _nodes reaches: below that, the nodes are shared, never edited.
    if depth > 13:
        return doc
    if isinstance(doc, list):
        return [_copy(v, depth + 1) for v in doc]
    if isinstance(doc, dict):
        return {k: _copy(v, depth + 1) for k, v in doc.items()}
    return doc


EDITS: Final = ("replace", "wrap", "delete", "append", "duplicate", "swap", "rekey", "retype")


def edit(doc: Any, pick: int, edit_name: str, value: Any) -> Any:
    """A copy of ``doc`` with one node (the ``pick``-th, modulo their count) edited.

    ``wrap`` puts the node in a one-element list (``"offer"`` → ``["offer"]``);
    ``retype`` turns it into the same content of another type (text ↔ bytes,
    int → float or text, list ↔ map)."""
    doc = _copy(doc)
    paths = _nodes(doc)
    path = paths[pick % len(paths)]
    old = _get(doc, path)
    if edit_name == "replace":
        new = value
    elif edit_name == "wrap":
        new = [old]
    elif edit_name == "retype":
        new = _retyped(old)
    elif isinstance(old, list) and old and edit_name in ("delete", "duplicate", "swap"):
        i = pick % len(old)
        new = list(old)
        if edit_name == "delete":
            del new[i]
        elif edit_name == "duplicate":
            new.insert(i, new[i])
        else:
            new[i], new[-1] = new[-1], new[i]
    elif isinstance(old, list):
        new = [*old, value]
    elif isinstance(old, dict) and old:
        new = dict(old)
        key = list(new)[pick % len(new)]
        if edit_name == "delete":
            del new[key]
        elif edit_name == "rekey":
            new[value if _hashable(value) else type(value).__name__] = new.pop(key)
        else:
            new["zz"] = value
    else:
        new = value
    return _set(doc, path, new)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _retyped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return float(value) if abs(value) < 2**60 else str(value)
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def pack(doc: Any) -> bytes:
    """msgpack bytes of ``doc``; nests deeper than msgpack's packer goes (512) are
    written by :func:`_pack_deep`, since a decoder must survive what a peer sends."""
    try:
        data: bytes = msgpack.packb(doc, use_bin_type=True)
    except ValueError:
        return _pack_deep(doc)
    except (TypeError, OverflowError):
        return b""
    return data


def _pack_deep(doc: Any) -> bytes:
    """Arrays and maps by their headers, without recursion; anything else by msgpack."""
    out: list[bytes] = []
    pending = [doc]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            n = len(value)
            out.append(bytes([0x90 | n]) if n < 16 else b"\xdd" + n.to_bytes(4, "big"))
            pending.extend(reversed(value))
        elif isinstance(value, dict):
            n = len(value)
            out.append(bytes([0x80 | n]) if n < 16 else b"\xdf" + n.to_bytes(4, "big"))
            pending.extend(reversed([x for pair in value.items() for x in pair]))
        else:
            try:
                out.append(msgpack.packb(value, use_bin_type=True))
            except (ValueError, TypeError, OverflowError):
                out.append(b"\xc0")
    return b"".join(out)


def unpack(data: bytes) -> Any:
    """The document in a valid encoding; the bytes themselves when there is none
    (an export file is several msgpack values in a row)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return data


# -- the fast, seeded mutator --------------------------------------------------


class Mutator:
    """Spoils valid inputs with a seeded ``random.Random``. ``docs`` are decoded
    documents (or opaque bytes), ``encode`` makes the decoder's input of one."""

    def __init__(
        self, docs: Sequence[Any], encode: Callable[[Any], bytes], rnd: random.Random
    ) -> None:
        self.docs = list(docs)
        self.encode = encode
        self.corpus = [encode(doc) for doc in self.docs]
        self.rnd = rnd

    def document(self) -> Any:
        """A valid document with one to three nodes edited, or an odd value."""
        rnd = self.rnd
        if rnd.random() < 0.1:
            return odd_value(rnd)
        doc = rnd.choice(self.docs)
        for _ in range(rnd.choice((1, 1, 1, 2, 3))):
            doc = edit(doc, rnd.randrange(1 << 30), rnd.choice(EDITS), odd_value(rnd))
        return doc

    def case(self) -> bytes:
        rnd = self.rnd
        index = rnd.randrange(len(self.corpus))
        if rnd.random() < 0.45 and not isinstance(self.docs[index], bytes):
            doc = self.docs[index]
            for _ in range(rnd.choice((1, 1, 1, 2, 3))):
                doc = edit(doc, rnd.randrange(1 << 30), rnd.choice(EDITS), odd_value(rnd))
            data = self.encode(doc)
            if rnd.random() < 0.8:
                return data
        else:
            data = self.corpus[index]
        for _ in range(rnd.choice((1, 1, 2, 3, 5))):
            data = self._byte_op(data)
        return data

    def _byte_op(self, data: bytes) -> bytes:
        rnd = self.rnd
        size = len(data)
        at = rnd.randrange(size + 1)
        op = rnd.randrange(11)
        if op <= 1 and size:  # flip one to four bits
            out = bytearray(data)
            for _ in range(rnd.randint(1, 4)):
                out[rnd.randrange(size)] ^= 1 << rnd.randrange(8)
            return bytes(out)
        if op == 2 and size:  # a msgpack header byte in place of another byte
            return data[: at - 1 if at else 0] + bytes([rnd.choice(HEADER_BYTES)]) + data[at:]
        if op == 3:  # cut
            return data[:at]
        if op == 4:  # drop a slice
            return data[:at] + data[at + rnd.randrange(1, 40) :]
        if op == 5:  # insert random or header bytes
            chunk = rnd.randbytes(rnd.randrange(1, 9))
            if rnd.random() < 0.5:
                chunk = bytes(rnd.choice(HEADER_BYTES) for _ in range(rnd.randrange(1, 4)))
            return data[:at] + chunk + data[at:]
        if op == 6:  # splice with another valid input
            other = rnd.choice(self.corpus)
            return data[:at] + other[rnd.randrange(len(other) + 1) :]
        if op == 7 and size:  # repeat a slice
            end = min(size, at + rnd.randrange(1, 64))
            return data[:end] + data[at:end] * rnd.randrange(1, 4) + data[end:]
        if op == 8:  # a length field or int pushed to its limit
            return data[:at] + rnd.choice((b"\xff\xff\xff\xff", b"\x00\x00", b"\x7f")) + data[at:]
        if op == 9:  # a deep nest
            head = rnd.choice((b"\x91", b"\x81\xa1k"))
            return data[:at] + head * rnd.choice((600, 1000, 1010, 1022, 1100)) + b"\xc0"
        return rnd.randbytes(rnd.randrange(0, 80))  # noise


# -- hypothesis strategies -------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.sampled_from(BOUNDARY_INTS)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.sampled_from(ODD_TEXT)
    | st.text(max_size=12)
    | st.binary(max_size=70)
    | st.sampled_from(KEY_SIZES).map(lambda n: b"\x05" * n)
)
VALUES: Final = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(ODD_TEXT) | st.text(max_size=6), inner, max_size=4)
        | st.integers(1, 1030).map(deep)
    ),
    max_leaves=6,
)


def hypothesis_documents(corpus: Sequence[Any]) -> st.SearchStrategy[Any]:
    """Documents: a valid one with one or two nodes edited, or any value at all."""
    docs = st.sampled_from(list(corpus))
    one = st.builds(edit, docs, st.integers(0, 1 << 30), st.sampled_from(EDITS), VALUES)
    two = st.builds(edit, one, st.integers(0, 1 << 30), st.sampled_from(EDITS), VALUES)
    return st.one_of(one, one, two, VALUES)


def _flip(data: bytes, at: int, value: int) -> bytes:
    if not data:
        return bytes([value])
    at %= len(data)
    return data[:at] + bytes([value]) + data[at + 1 :]


def hypothesis_inputs(
    documents: Sequence[Any], encode: Callable[[Any], bytes]
) -> st.SearchStrategy[bytes]:
    """Bytes: structural edits of valid documents, a byte of a valid encoding set
    to any value, a valid encoding cut short, or any bytes."""
    docs = [doc for doc in documents if not isinstance(doc, bytes)]
    encodings = st.sampled_from([encode(doc) for doc in documents])
    strategies: list[st.SearchStrategy[bytes]] = [
        st.builds(_flip, encodings, st.integers(0, 1 << 20), st.integers(0, 255)),
        st.builds(lambda d, n: d[: n % (len(d) + 1)], encodings, st.integers(0, 1 << 20)),
        st.binary(max_size=200),
    ]
    if docs:
        strategies += [hypothesis_documents(docs).map(encode)] * 3
    return st.one_of(strategies)


def text_strategy(corpus: Sequence[str], words: Sequence[str]) -> st.SearchStrategy[str]:
    """Text: a valid text with words replaced, dropped or added, or any text."""

    def respell(text: str, picks: list[tuple[int, int, str]]) -> str:
        parts = text.split()
        for at, how, word in picks:
            at %= len(parts) + 1
            if how == 0 and at < len(parts):
                parts[at] = word
            elif how == 1 and at < len(parts):
                del parts[at]
            else:
                parts.insert(at, word)
        return " ".join(parts)

    word = st.sampled_from(list(words)) | st.text(max_size=10)
    picks = st.lists(st.tuples(st.integers(0, 64), st.integers(0, 2), word), max_size=3)
    return st.builds(respell, st.sampled_from(list(corpus)), picks) | st.text(max_size=300)
