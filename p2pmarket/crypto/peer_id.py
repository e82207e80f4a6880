"""libp2p peer ids for ed25519 keys, computed without importing libp2p.

The offline CLI must start fast and importing libp2p costs about a second, so the
peer id is derived here from the spec, and a test checks it against py-libp2p's
own ``ID.from_pubkey``. Per the libp2p peer-id spec, a public key is serialised as
the protobuf ``PublicKey { Type = Ed25519 (1); Data = 32 bytes }``; keys of 42
bytes or less use the identity multihash (code 0x00) instead of sha2-256, and the
text form is base58btc of the multihash.
"""

from __future__ import annotations

from typing import Final

import base58

from p2pmarket.errors import InvalidInput

# protobuf: field 1 varint = 1 (Ed25519); field 2 length-delimited, 32 bytes.
_PROTOBUF_ED25519_PREFIX: Final = b"\x08\x01\x12\x20"
# multihash: code 0x00 (identity), length 0x24 (36 = 4 + 32).
_IDENTITY_MULTIHASH_PREFIX: Final = b"\x00\x24"
_PREFIX: Final = _IDENTITY_MULTIHASH_PREFIX + _PROTOBUF_ED25519_PREFIX


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id (``12D3KooW…``) of an ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    return base58.b58encode(_PREFIX + public_key).decode("ascii")


def public_key_from_peer_id(peer_id: str) -> bytes:
    """The ed25519 public key inside a peer id; InvalidInput if it holds none."""
    try:
        raw = base58.b58decode(peer_id.strip())
    except ValueError:
        raw = b""
    if len(raw) != len(_PREFIX) + 32 or not raw.startswith(_PREFIX):
        raise InvalidInput(
            f"{peer_id!r} is not an ed25519 peer id "
            "(those start with 12D3KooW and are 52 characters)"
        )
    return raw[len(_PREFIX) :]
