"""Invite lines (p2pmarket/invite.py; docs/PROTOCOL.md, "Invites"): what survives a
chat group comes back exactly, and what does not is refused with a clear line."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import string
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmarket import invite
from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.errors import InvalidInput
from p2pmarket.events import NodeStatus
from p2pmarket.invites_view import peers_line, qr_text
from p2pmarket.network.peerbook import MIN_BACKOFF, PeerBook

PEER = peer_id_from_public_key(bytes(range(32)))
RELAY = peer_id_from_public_key(bytes(range(1, 33)))
LAN = f"/ip4/192.168.1.5/tcp/4690/p2p/{PEER}"
PUBLIC = f"/ip4/8.8.4.4/tcp/4690/p2p/{PEER}"
LOOPBACK = f"/ip4/127.0.0.1/tcp/4690/p2p/{PEER}"
RELAYED = f"/ip4/9.9.9.9/tcp/4001/p2p/{RELAY}/p2p-circuit/p2p/{PEER}"
IPV6 = f"/ip6/2606:4700::1111/tcp/4690/p2p/{PEER}"

# The test vector of docs/PROTOCOL.md, "Invites".
VECTOR = (
    "p2pmarket:agjmijqaeqeaceraaaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dy"
    "pzdraiatakqaifayjfer6iktoq"
)


def _line(body: bytes) -> str:
    """A line around ``body`` with a correct checksum, built from the spec."""
    check = hashlib.blake2b(body, digest_size=4, person=b"p2pmarket/invite").digest()
    return "p2pmarket:" + base64.b32encode(body + check).decode().rstrip("=").lower()


def test_the_documented_vector() -> None:
    assert invite.encode(PEER, [LAN]) == VECTOR
    assert invite.decode(VECTOR) == invite.Invite(PEER, (LAN,))


def test_round_trip_orders_addresses_best_first_and_drops_loopback() -> None:
    line = invite.encode(PEER, [LOOPBACK, RELAYED, LAN, PUBLIC, IPV6])
    assert line.startswith("p2pmarket:")
    assert set(line[len("p2pmarket:") :]) <= set(string.ascii_lowercase + "234567")
    assert invite.decode(line).addresses == (PUBLIC, IPV6, LAN, RELAYED)
    assert len(line) < 250  # four addresses, one of them relayed: still one short line


def test_loopback_is_kept_when_it_is_all_there_is() -> None:
    assert invite.decode(invite.encode(PEER, [LOOPBACK])).addresses == (LOOPBACK,)


def test_an_invite_needs_an_address_of_its_own() -> None:
    other = f"/ip4/8.8.4.4/tcp/4690/p2p/{RELAY}"
    with pytest.raises(InvalidInput, match="no address"):
        invite.encode(PEER, [other])


def test_a_paste_wrapped_upper_cased_or_spaced_still_reads() -> None:
    line = invite.encode(PEER, [LAN, RELAYED])
    wrapped = "  " + line[:40] + "\n" + line[40:90].upper() + " \r\n" + line[90:] + "\n"
    assert invite.decode(wrapped) == invite.decode(line)
    assert invite.decode(line.capitalize()) == invite.decode(line)


@pytest.mark.parametrize("position", range(len("p2pmarket:"), len(VECTOR)))
def test_every_changed_character_is_caught(position: int) -> None:
    for letter in ("a", "7"):
        if VECTOR[position] == letter:
            continue
        changed = VECTOR[:position] + letter + VECTOR[position + 1 :]
        with pytest.raises(InvalidInput, match=r"damaged|cut short|copy the whole line"):
            invite.decode(changed)


@pytest.mark.parametrize("keep", [len(VECTOR) - 1, len(VECTOR) - 7, 30, 12, 10])
def test_a_truncated_paste_is_caught(keep: int) -> None:
    with pytest.raises(InvalidInput, match=r"cut short|damaged|copy the whole line"):
        invite.decode(VECTOR[:keep])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "/ip4/1.2.3.4/tcp/4690/p2p/" + PEER,
        "p2pmarkt:" + VECTOR[10:],
        "https://example.com/" + VECTOR,
    ],
)
def test_a_wrong_prefix_says_what_an_invite_looks_like(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"not a p2pmarket invite.*p2pmarket:"):
        invite.decode(text)


def test_characters_outside_the_alphabet_are_refused() -> None:
    with pytest.raises(InvalidInput, match="characters an invite never has"):
        invite.decode(VECTOR[:20] + "*" + VECTOR[21:])  # WhatsApp's bold marker
    with pytest.raises(InvalidInput, match="characters an invite never has"):
        invite.decode(VECTOR[:20] + "1" + VECTOR[21:])


def test_a_newer_version_asks_for_an_update() -> None:
    body = bytes([2]) + b"whatever version 2 holds"
    with pytest.raises(InvalidInput, match=r"version 2.*update p2pmarket"):
        invite.decode(_line(body))


def test_an_overlong_line_is_refused_before_decoding() -> None:
    with pytest.raises(InvalidInput, match="too long"):
        invite.decode("p2pmarket:" + "a" * 5000)


@pytest.mark.parametrize(
    "doc",
    [
        [b"\x00\x24" + b"\x08\x01\x12\x20" + bytes(32)],
        ["not bytes", [b"\x04\x01\x02\x03\x04\x06\x12\x52"]],
        [b"\x00\x05abc", [b"\x04\x01\x02\x03\x04\x06\x12\x52"]],  # a bad multihash
        [b"\x00\x24\x08\x01\x12\x20" + bytes(32), []],  # no address
        [b"\x00\x24\x08\x01\x12\x20" + bytes(32), [b"\x04\x01\x02"]],  # truncated ip4
        [b"\x00\x24\x08\x01\x12\x20" + bytes(32), [b"\x04\x01\x02\x03\x04"]],  # no tcp
        [b"\x00\x24\x08\x01\x12\x20" + bytes(32), [b"\xff\xff\xff"]],
        [b"\x00\x24\x08\x01\x12\x20" + bytes(32), [b"\x04\x01\x02\x03\x04\x06\x12\x52"] * 7],
        {"peer": b"x"},
        [1, 2, 3],
    ],
)
def test_a_checksummed_but_malformed_body_is_refused(doc: object) -> None:
    line = _line(bytes([1]) + msgpack.packb(doc, use_bin_type=True))
    with pytest.raises(InvalidInput, match="malformed"):
        invite.decode(line)


def test_trailing_bytes_after_the_body_are_refused() -> None:
    good = base64.b32decode(VECTOR[10:].upper() + "=" * (-len(VECTOR[10:]) % 8))[:-4]
    with pytest.raises(InvalidInput, match="malformed"):
        invite.decode(_line(good + b"\x00"))


@given(st.text(max_size=300))
def test_any_text_gives_an_invite_or_invalid_input(text: str) -> None:
    for candidate in (text, "p2pmarket:" + text):
        with contextlib.suppress(InvalidInput):
            invite.decode(candidate)


_octet = st.integers(min_value=1, max_value=223)
_port = st.integers(min_value=1, max_value=65535)


@given(
    st.binary(min_size=32, max_size=32),
    st.lists(st.tuples(_octet, _octet, _octet, _octet, _port), min_size=1, max_size=8),
)
def test_round_trip_property(key: bytes, hosts: list[tuple[int, int, int, int, int]]) -> None:
    peer = peer_id_from_public_key(key)
    addresses = [f"/ip4/{a}.{b}.{c}.{d}/tcp/{port}/p2p/{peer}" for a, b, c, d, port in hosts]
    found = invite.decode(invite.encode(peer, addresses))
    assert found.peer_id == peer
    assert set(found.addresses) <= set(addresses)
    assert len(found.addresses) == min(
        invite.MAX_ADDRESSES,
        len({a for a in addresses if invite.rank(a) < 3}) or len(set(addresses)),
    )
    assert [invite.rank(a) for a in found.addresses] == sorted(
        invite.rank(a) for a in found.addresses
    )


def test_the_qr_code_is_drawn_with_half_blocks() -> None:
    drawing = qr_text(VECTOR)
    assert set(drawing) <= {" ", "█", "▀", "▄", "\n"}
    assert 20 < len(drawing.splitlines()) < 40  # a phone-sized code


def test_the_status_line_says_how_to_join_when_no_peer_is_known() -> None:
    alone = NodeStatus(PEER, True)
    assert "p2pmarket join" in peers_line(alone) and "p2pmarket invite" in peers_line(alone)
    waiting = NodeStatus(PEER, True, known_peers=2)
    assert peers_line(waiting).startswith("0 connected; 2 known, being retried")
    assert peers_line(NodeStatus(PEER, True, peers=3, known_peers=2)) == "3"


def test_a_remembered_peer_is_retried_after_the_backoff_and_kept_on_disk(tmp_path: Path) -> None:
    book = PeerBook.load(tmp_path / "peers")
    book.remember(PEER, [LAN, RELAYED], now=1000.0)
    assert book.due(1000.0, set()) == []
    assert [p.peer_id for p in book.due(1000.0 + MIN_BACKOFF, set())] == [PEER]
    book.save()
    again = PeerBook.load(tmp_path / "peers")
    assert again.peers[PEER].addrs == [LAN, RELAYED]
    again.remember(PEER, [PUBLIC], now=2000.0)  # a newer invite: its address first
    assert again.peers[PEER].addrs == [PUBLIC, LAN, RELAYED]


def test_protocol_md_gives_the_same_vector() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Invites") :]
    assert f"line     {VECTOR}" in section
    assert f"peer id  {PEER}" in section
