"""The seller id is the libp2p peer id of the same ed25519 key.

p2pmarket derives peer ids without importing libp2p (the offline CLI must start
fast); these tests hold that derivation to py-libp2p's own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pmarket.crypto.peer_id import peer_id_from_public_key, public_key_from_peer_id
from p2pmarket.crypto.signing import Signer
from p2pmarket.node import Node, init_home


def _libp2p_peer_id(seed: bytes) -> str:
    return ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58()


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_peer_id_equals_the_one_libp2p_derives_from_the_same_seed(seed: bytes) -> None:
    signer = Signer(seed)
    expected = _libp2p_peer_id(seed)
    assert peer_id_from_public_key(signer.public_key) == expected
    assert public_key_from_peer_id(expected) == signer.public_key


def test_a_new_home_is_identified_by_the_libp2p_peer_id_of_its_key(tmp_path: Path) -> None:
    from p2pmarket.crypto.keystore import read_key_file

    peer_id = init_home(tmp_path / "home", None)
    seed = read_key_file(tmp_path / "home" / "identity.key").unlock(None).seed()
    assert peer_id == _libp2p_peer_id(seed)
    with Node.open(tmp_path / "home") as node:
        assert node.peer_id == peer_id
        assert node.peer_id.startswith("12D3KooW")


def test_fixed_vector() -> None:
    seed = hashlib.sha256(b"p2pmarket test vector").digest()
    assert peer_id_from_public_key(Signer(seed).public_key) == _libp2p_peer_id(seed)
