"""Decoders of outside bytes refuse anything malformed with our own error, and only that.

Each case here is a hole ``make fuzz`` found: an input on which a decoder raised
something other than an error of p2pmarket.errors (TypeError, RecursionError, a
bare ValueError), which a caller that drops bad input does not catch. The issue's
example was a trade move whose kind is a list: the TypeError aborted mailbox
collection before its acknowledgement, so the letter blocked the victim's mail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import nacl.public
import nacl.signing
import pytest
from factories import NOW, OTHER, SELLER

from p2pmarket import records
from p2pmarket.crypto.envelope import open_envelope, recipient_of, seal
from p2pmarket.crypto.keystore import KeyFile
from p2pmarket.errors import IdentityError, InvalidEnvelope, InvalidRecord, Malformed
from p2pmarket.network import sync_wire
from p2pmarket.network.peerbook import PeerBook
from p2pmarket.network.reconcile import ProtocolViolation
from p2pmarket.quoting import shown
from p2pmarket.rpc import codec
from p2pmarket.trade import Terms, make_offer, pack_move, parse_terms, unpack_move

# Nested this deep, msgpack still decodes a value (its limit is 1024 levels) but
# repr() of it raises RecursionError.
DEEP = 1010


def deep_list() -> Any:
    value: Any = None
    for _ in range(DEEP):
        value = [value]
    return value


def deep_bytes() -> bytes:
    """msgpack of a list nested DEEP levels (msgpack's packer stops at 512)."""
    return b"\x91" * DEEP + b"\xc0"


def test_deep_nesting_is_what_breaks_repr() -> None:
    """The premise of the tests below: msgpack decodes it, repr cannot show it."""
    value = msgpack.unpackb(deep_bytes())
    with pytest.raises(RecursionError):
        repr(value)


# -- trade moves (issue 13, defect 1) ------------------------------------------------


def offer_fields() -> list[Any]:
    terms = Terms(b"\x0b" * 16, 1, 100, "IDR", 1, "", b"")
    move = make_offer(OTHER, SELLER.public_key, terms, NOW, b"\x0a" * 16)
    fields: list[Any] = msgpack.unpackb(pack_move(move))
    return fields


@pytest.mark.parametrize("kind", [["offer"], {"offer": 1}, [], {}], ids=repr)
def test_a_move_whose_kind_is_a_list_or_a_map_is_malformed(kind: Any) -> None:
    """Was TypeError (unhashable) from ``kind in _KINDS``."""
    fields = offer_fields()
    fields[3] = kind
    with pytest.raises(Malformed, match="kind is not text"):
        unpack_move(msgpack.packb(fields))


def test_the_issues_move_is_malformed() -> None:
    body = [1, b"\x0a" * 16, OTHER.public_key, ["offer"], b"", 1, NOW, None, b"", b""]
    with pytest.raises(Malformed):
        unpack_move(msgpack.packb(body))


def test_every_malformed_move_and_terms_raise_malformed_which_is_a_value_error() -> None:
    """Was a bare ValueError, which is not of our tree."""
    for data in (b"\xc1", msgpack.packb([2]), msgpack.packb([True, *offer_fields()[1:]])):
        with pytest.raises(Malformed):
            unpack_move(data)
    with pytest.raises(Malformed, match="7 fields"):
        parse_terms([1, 2])
    assert issubclass(Malformed, ValueError)


# -- records, envelopes and the control socket: a deep value in a refusal ----------------


def test_a_record_with_a_deep_version_is_an_invalid_record() -> None:
    """Was RecursionError: the refusal quoted the version with repr."""
    data = b"\x82\xa4type\xa7listing\xa1v" + deep_bytes()
    with pytest.raises(InvalidRecord, match="unsupported format version a list of 1"):
        records.decode(data, NOW)


def test_a_record_with_a_deep_type_is_an_invalid_record() -> None:
    data = b"\x81\xa4type" + deep_bytes()
    with pytest.raises(InvalidRecord, match="unknown record type a list of 1"):
        records.decode(data, NOW)


def _outside(version: bytes, box: bytes = b"\x00" * 64, to: bytes = b"\x01" * 32) -> bytes:
    return (
        b"\x83\xa3box"
        + msgpack.packb(box, use_bin_type=True)
        + b"\xa2to"
        + msgpack.packb(to, use_bin_type=True)
        + b"\xa1v"
        + version
    )


def test_an_envelope_with_a_deep_version_is_an_invalid_envelope() -> None:
    """Was RecursionError, for a mailbox holder (recipient_of) and a recipient."""
    with pytest.raises(InvalidEnvelope, match="version a list of 1"):
        recipient_of(_outside(deep_bytes()))
    with pytest.raises(InvalidEnvelope, match="version a list of 1"):
        open_envelope(_outside(deep_bytes(), to=SELLER.public_key), SELLER, NOW)


def test_a_letter_with_a_deep_kind_is_an_invalid_envelope() -> None:
    """The letter inside a genuine box: its kind quoted with repr raised RecursionError."""
    letter, _ = seal(OTHER, SELLER.public_key, "text", b"hi", NOW)
    head = msgpack.packb([1, letter.sender, letter.recipient, letter.id, letter.sent])
    inner = b"\x98" + head[1:] + deep_bytes() + msgpack.packb(b"hi") + msgpack.packb(b"")
    box_key = nacl.signing.VerifyKey(SELLER.public_key).to_curve25519_public_key()
    box = nacl.public.SealedBox(box_key).encrypt(inner)
    envelope = msgpack.packb({"box": box, "to": SELLER.public_key, "v": 1})
    with pytest.raises(InvalidEnvelope, match="unknown letter kind a list of 1"):
        open_envelope(envelope, SELLER, NOW)


def test_an_answer_naming_a_deep_dataclass_is_a_protocol_error() -> None:
    """Not a hole (the codec turned the RecursionError into "not a msgpack
    document: maximum recursion depth exceeded…"), but a wrong reason: the name
    was quoted with repr."""
    body = b"\x92" + deep_bytes() + b"\x80"  # [name, {}] with a deep name
    ext = b"\xc8" + len(body).to_bytes(2, "big") + b"\x02" + body  # ext 16, type 2
    with pytest.raises(codec.ProtocolError, match="unknown dataclass a list of 1"):
        codec.unpack(b"\x81\xa6result" + ext)


def test_shown_quotes_scalars_short_and_names_containers() -> None:
    assert shown("offer") == "'offer'"
    assert shown("x" * 100) == "'" + "x" * 38 + "…"
    assert shown(deep_list()) == "a list of 1"
    assert shown({"a": 1, "b": 2}) == "a dict of 2"
    assert shown(2**64 - 1) == "18446744073709551615"


# -- sync frames and files a node reads ------------------------------------------------


def test_a_range_with_a_deep_mode_is_a_protocol_violation() -> None:
    """Was RecursionError: the unknown mode was quoted with repr."""
    with pytest.raises(ProtocolViolation, match="unknown range mode a list of 1"):
        sync_wire.decode_ranges([[None, deep_list(), None]])


def test_a_key_file_with_a_deep_protection_is_an_identity_error() -> None:
    """Was RecursionError: the unknown kdf was quoted with repr."""
    head = {"format": "p2pmarket-key", "v": 1, "public_key": SELLER.public_key}
    data = msgpack.packb(head, use_bin_type=True)
    data = bytes([data[0] + 1]) + data[1:] + b"\xa3kdf" + deep_bytes()  # one more key: kdf
    with pytest.raises(IdentityError, match="unknown key protection a list of 1"):
        KeyFile(data, "identity.key").unlock(None)


def test_a_peer_book_with_a_deep_id_is_read_as_damaged(tmp_path: Path) -> None:
    """Was RecursionError from str() of the id, past load's catch-all; a damaged
    book is an empty one (it is a cache)."""
    entry = b"\x84\xa2id" + deep_bytes() + msgpack.packb({"addrs": ["/ip4/1.2.3.4/tcp/1"]})[1:]
    entry += b"\xa4seen\x01\xa4fail\x00"
    path = tmp_path / "peers"
    path.write_bytes(b"\x81\xa5peers\x91" + entry)
    assert PeerBook.load(path).peers == {}


def test_a_peer_book_entry_that_is_not_text_is_read_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "peers"
    doc = {"peers": [{"id": 5, "addrs": [b"/ip4/1.2.3.4/tcp/1"], "seen": 1, "fail": 0}]}
    path.write_bytes(msgpack.packb(doc, use_bin_type=True))
    assert PeerBook.load(path).peers == {}
