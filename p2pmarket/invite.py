"""Invite lines: how a new user joins the market from a message in a chat group.

A member runs ``p2pmarket invite`` and pastes the line into the group; a newcomer
runs ``p2pmarket join LINE``. There is no server of ours anywhere: the line holds
the inviter's peer id and the addresses its node announces (public, LAN, and
relayed ``/p2p-circuit`` ones). Format (docs/PROTOCOL.md, "Invites")::

    p2pmarket:<base32 of  version (1 byte) | body | checksum (4 bytes)>

* body: msgpack ``[peer id (multihash bytes), [binary multiaddr, ...]]``, each
  address without its trailing ``/p2p/<peer id>`` (it is implied): binary
  multiaddrs are a third of their text size, so a line with three addresses fits
  in about 200 characters.
* checksum: BLAKE2b-32 (personalised ``p2pmarket/invite``) over everything before
  it, in every version, so a mistyped, truncated or mangled paste is caught before
  anything else is read, and a newer version is recognised as such.
* base32 (RFC 4648, lower case, no padding): letters and the digits 2-7 only, no
  ``*``, ``_``, ``~`` or backquote that WhatsApp turns into formatting, nothing
  autocorrect changes; read case-insensitively (a phone capitalises the first
  letter), with spaces and line breaks ignored (a paste wrapped across lines).
  Upper-cased, the whole line is in QR code's compact alphanumeric mode.

Pure: no I/O, no libp2p (only ``multiaddr``, which the CLI already uses offline).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Final

import base58
import msgpack
import multiaddr  # type: ignore[import-untyped]

from p2pmarket.errors import InvalidInput

__all__ = ["PREFIX", "VERSION", "Invite", "decode", "encode", "rank"]

PREFIX: Final = "p2pmarket:"
VERSION: Final = 1
MAX_ADDRESSES: Final = 6  # a line stays short; the inviter picks its best ones
MAX_ADDRESS_BYTES: Final = 200
MAX_LINE: Final = 2000  # characters; anything longer is not an invite we wrote
_CHECKSUM: Final = 4
_PERSON: Final = b"p2pmarket/invite"  # BLAKE2b personalisation (16 bytes at most)
_SPACE: Final = re.compile(r"\s+")
_COPY_AGAIN: Final = "copy the whole line again"


@dataclass(frozen=True, slots=True)
class Invite:
    """A peer to join: its id and where it may be reached, best first."""

    peer_id: str  # base58 (12D3KooW…)
    addresses: tuple[str, ...]  # full multiaddrs, each ending in /p2p/<peer_id>


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_CHECKSUM, person=_PERSON).digest()


def _peer_bytes(peer_id: str) -> bytes:
    try:
        raw = base58.b58decode(peer_id)
    except ValueError:
        raw = b""
    if not _is_multihash(raw):
        raise InvalidInput(f"{peer_id!r} is not a peer id")
    return raw


def _is_multihash(raw: bytes) -> bool:
    """A peer id's multihash: identity (a key of 42 bytes or less) or sha2-256."""
    if len(raw) < 2:
        return False
    if raw[0] == 0x00:
        return 0 < raw[1] <= 42 and len(raw) == 2 + raw[1]
    return raw[0] == 0x12 and raw[1] == 0x20 and len(raw) == 34


def _split(address: str) -> tuple[str, str]:
    """(the address without its last ``/p2p/<id>``, that id)."""
    head, sep, peer = address.rpartition("/p2p/")
    if not sep or "/" in peer:
        raise InvalidInput(f"{address!r} does not end in /p2p/<peer id>")
    return head, peer


def rank(address: str) -> int:
    """How good ``address`` is for a peer elsewhere, lower first: public, then on
    a LAN, then relayed (works everywhere, but slowest), then this machine only."""
    if "/p2p-circuit" in address:
        return 2
    parts = address.split("/")
    host = parts[2] if len(parts) > 2 and parts[1] in ("ip4", "ip6") else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return 1  # a DNS name: probably meant to be reached
    if ip.is_loopback or ip.is_unspecified:
        return 3
    return 1 if ip.is_private or ip.is_link_local else 0


def encode(peer_id: str, addresses: list[str] | tuple[str, ...]) -> str:
    """The invite line for ``peer_id`` reachable at ``addresses`` (full multiaddrs
    with ``/p2p/<peer_id>``, as ``status`` shows them). Addresses are ordered best
    first; this machine's own (loopback) ones are kept only when there is nothing
    else, and at most :data:`MAX_ADDRESSES` go in. InvalidInput when none is left."""
    own = [a for a in addresses if a.endswith(f"/p2p/{peer_id}")]
    chosen = sorted(dict.fromkeys(own), key=rank)
    if any(rank(a) < 3 for a in chosen):
        chosen = [a for a in chosen if rank(a) < 3]
    if not chosen:
        raise InvalidInput("this node announces no address yet, so there is nothing to invite to")
    binary = []
    for address in chosen[:MAX_ADDRESSES]:
        head, _ = _split(address)
        binary.append(multiaddr.Multiaddr(head).to_bytes())
    body = bytes([VERSION]) + msgpack.packb([_peer_bytes(peer_id), binary], use_bin_type=True)
    text = base64.b32encode(body + _checksum(body)).decode("ascii").rstrip("=").lower()
    return PREFIX + text


def decode(line: str) -> Invite:
    """The invite in ``line``; InvalidInput with a one-line reason if it is not one
    (wrong prefix, a character changed or missing, a newer version, garbage)."""
    text = _SPACE.sub("", line).lower()
    if len(text) > MAX_LINE:
        raise InvalidInput(f"that is not an invite: it is too long ({len(text)} characters)")
    if not text.startswith(PREFIX):
        raise InvalidInput(
            f"that is not a p2pmarket invite: an invite starts with {PREFIX!r} "
            "(ask for one made with `p2pmarket invite`)"
        )
    letters = text[len(PREFIX) :].upper()
    try:
        raw = base64.b32decode(letters + "=" * (-len(letters) % 8))
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise InvalidInput(
            "the invite has characters an invite never has, or is cut short: " + _COPY_AGAIN
        ) from None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != letters:
        # A last letter whose unused bits differ: refused, so that every change
        # of a character is caught (base32 would read it as the same bytes).
        raise InvalidInput("the invite is cut short or damaged: " + _COPY_AGAIN)
    if len(raw) < 1 + _CHECKSUM + 3:
        raise InvalidInput("the invite is cut short: " + _COPY_AGAIN)
    body, check = raw[:-_CHECKSUM], raw[-_CHECKSUM:]
    if _checksum(body) != check:
        raise InvalidInput(
            "the invite is damaged (a character is wrong or missing): " + _COPY_AGAIN
        )
    if body[0] != VERSION:
        raise InvalidInput(
            f"the invite is version {body[0]}, newer than this p2pmarket reads "
            f"({VERSION}): update p2pmarket"
        )
    return _read_body(body[1:])


def _read_body(data: bytes) -> Invite:
    """The msgpack body of a checksummed invite. Reached only by a line whose
    checksum holds, so a failure here is a bad inviter, not a typo."""
    bad = InvalidInput("the invite is malformed (made by a faulty program?)")
    try:
        doc = msgpack.unpackb(data, raw=True, max_bin_len=MAX_LINE, max_array_len=16)
    except (ValueError, msgpack.UnpackException):
        raise bad from None
    if not isinstance(doc, list) or len(doc) != 2:
        raise bad
    peer, binary = doc
    if not isinstance(peer, bytes) or not _is_multihash(peer) or not isinstance(binary, list):
        raise bad
    if not 1 <= len(binary) <= MAX_ADDRESSES:
        raise bad
    peer_id = base58.b58encode(peer).decode("ascii")
    addresses: list[str] = []
    for item in binary:
        if not isinstance(item, bytes) or not 0 < len(item) <= MAX_ADDRESS_BYTES:
            raise bad
        addresses.append(f"{_address(item, bad)}/p2p/{peer_id}")
    return Invite(peer_id, tuple(dict.fromkeys(addresses)))


def _address(item: bytes, bad: InvalidInput) -> str:
    """The text of a binary multiaddr, if it is one exactly (py-multiaddr 0.2
    reads some truncated values without complaint, hence the round trip)."""
    try:
        text = str(multiaddr.Multiaddr(item))
        if multiaddr.Multiaddr(text).to_bytes() != item:
            raise ValueError("not canonical")
    except Exception:  # py-multiaddr raises many types for bad bytes
        raise bad from None
    if "/tcp/" not in text or "/p2p/" in text.rsplit("/p2p-circuit", 1)[-1]:
        raise bad  # we dial TCP only; the peer's own /p2p/ is added, never carried
    return text
