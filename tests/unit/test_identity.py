"""The identity: key file (sealed or plain), printable backup words, peer ids."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import msgpack
import pytest
from factories import OTHER, SELLER

from p2pmarket.crypto import backup, keystore
from p2pmarket.crypto.keystore import KeyFile, read_key_file, seal, write_key_file
from p2pmarket.crypto.peer_id import peer_id_from_public_key, public_key_from_peer_id
from p2pmarket.crypto.signing import Signer, verify
from p2pmarket.errors import IdentityError, InvalidInput, WrongPassphrase
from p2pmarket.node import init_home

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def sealed() -> bytes:
    """SELLER's key file sealed with PASSPHRASE (one Argon2 run for the module)."""
    return seal(SELLER, PASSPHRASE)


# -- key file ------------------------------------------------------------------


def test_a_sealed_key_opens_with_its_passphrase(sealed: bytes) -> None:
    key_file = KeyFile(sealed, "identity.key")

    signer = key_file.unlock(PASSPHRASE)

    assert key_file.encrypted
    assert signer.public_key == SELLER.public_key
    assert signer.seed() == SELLER.seed()


def test_a_sealed_key_does_not_hold_the_seed_in_the_clear(sealed: bytes) -> None:
    assert SELLER.seed() not in sealed


def test_a_wrong_passphrase_is_wrong_passphrase(sealed: bytes) -> None:
    with pytest.raises(WrongPassphrase, match=r"wrong passphrase for identity\.key"):
        KeyFile(sealed, "identity.key").unlock("not the passphrase")


def test_a_sealed_key_without_a_passphrase_says_how_to_give_one(sealed: bytes) -> None:
    with pytest.raises(IdentityError, match="P2PMARKET_PASSPHRASE") as caught:
        KeyFile(sealed, "identity.key").unlock(None)

    assert not isinstance(caught.value, WrongPassphrase)


def test_the_public_key_is_readable_without_the_passphrase(sealed: bytes) -> None:
    assert KeyFile(sealed, "identity.key").public_key == SELLER.public_key


def test_an_empty_passphrase_is_refused() -> None:
    with pytest.raises(IdentityError, match="--no-passphrase"):
        seal(SELLER, "")


def test_a_plain_key_opens_without_a_passphrase() -> None:
    key_file = KeyFile(seal(SELLER, None), "identity.key")

    assert not key_file.encrypted
    assert key_file.unlock(None).public_key == SELLER.public_key


def test_a_plain_home_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    init_home(tmp_path / "home", None)

    mode = (tmp_path / "home" / "identity.key").stat().st_mode

    assert stat.S_IMODE(mode) == 0o600


def test_a_key_file_is_written_0600_even_over_a_looser_file(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"old")
    path.chmod(0o644)

    write_key_file(path, seal(SELLER, None))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).public_key == SELLER.public_key
    assert not (tmp_path / "identity.key.tmp").exists()


def test_a_missing_key_file_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="p2pmarket init"):
        read_key_file(tmp_path / "identity.key")


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", msgpack.packb({"format": "something-else", "v": 1}), msgpack.packb([1])],
    ids=["empty", "garbage", "other format", "not a map"],
)
def test_a_file_that_is_not_a_key_file_is_identity_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(data)

    with pytest.raises(IdentityError, match=re.escape(f"{path} is not a p2pmarket key file")):
        read_key_file(path)


def _doc(data: bytes) -> dict[str, object]:
    return dict(msgpack.unpackb(data, raw=False))


def _repack(doc: dict[str, object]) -> bytes:
    return bytes(msgpack.packb(doc, use_bin_type=True))


def test_a_key_file_with_a_truncated_body_is_identity_error() -> None:
    data = seal(SELLER, None)

    with pytest.raises(IdentityError, match="not a p2pmarket key file"):
        KeyFile(data[: len(data) // 2], "identity.key")


def test_a_damaged_public_key_is_reported_as_damage() -> None:
    doc = _doc(seal(SELLER, None)) | {"public_key": b"\x00" * 5}

    with pytest.raises(IdentityError, match=r"identity\.key is damaged: its public key"):
        KeyFile(_repack(doc), "identity.key")


def test_a_seed_that_does_not_match_the_public_key_is_reported_as_damage() -> None:
    doc = _doc(seal(SELLER, None)) | {"seed": OTHER.seed()}

    with pytest.raises(IdentityError, match="damaged: the key does not match"):
        KeyFile(_repack(doc), "identity.key").unlock(None)


def test_a_seed_of_the_wrong_size_is_reported_as_damage() -> None:
    doc = _doc(seal(SELLER, None)) | {"seed": b"\x01" * 31}

    with pytest.raises(IdentityError, match="damaged: the key is not 32 bytes"):
        KeyFile(_repack(doc), "identity.key").unlock(None)


def test_a_sealed_key_with_missing_kdf_settings_is_reported_as_damage(sealed: bytes) -> None:
    doc = _doc(sealed)
    del doc["salt"]

    with pytest.raises(IdentityError, match="damaged: its sealed key is unreadable") as caught:
        KeyFile(_repack(doc), "identity.key").unlock(PASSPHRASE)

    assert not isinstance(caught.value, WrongPassphrase)


def test_an_unknown_key_protection_is_named() -> None:
    doc = _doc(seal(SELLER, None)) | {"kdf": "rot13"}

    with pytest.raises(IdentityError, match="unknown key protection 'rot13'"):
        KeyFile(_repack(doc), "identity.key").unlock(None)


def test_the_kdf_costs_are_read_from_the_file(sealed: bytes) -> None:
    doc = _doc(sealed)

    assert (doc["opslimit"], doc["memlimit"]) == (keystore.OPSLIMIT, keystore.MEMLIMIT)


# -- signatures ----------------------------------------------------------------


def test_a_signature_verifies_with_its_key_only() -> None:
    signature = SELLER.sign(b"message")

    assert verify(SELLER.public_key, b"message", signature)
    assert not verify(OTHER.public_key, b"message", signature)
    assert not verify(SELLER.public_key, b"other message", signature)
    assert not verify(SELLER.public_key, b"message", signature[:-1])


def test_a_seed_determines_the_key() -> None:
    assert Signer(SELLER.seed()).public_key == SELLER.public_key
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"\x00" * 31)


# -- backup words --------------------------------------------------------------


def test_backup_words_are_24_words_that_restore_the_same_key() -> None:
    words = backup.to_words(SELLER)

    assert len(words.split()) == 24
    assert backup.from_words(words).seed() == SELLER.seed()


def test_backup_words_tolerate_case_and_extra_whitespace() -> None:
    words = backup.to_words(SELLER)
    typed = "\n  " + "   ".join(w.upper() for w in words.split()) + "\n"

    assert backup.from_words(typed).public_key == SELLER.public_key


def test_a_mistyped_backup_word_is_invalid_input() -> None:
    words = backup.to_words(SELLER).split()
    words[5] = words[5][:-1] + ("x" if words[5][-1] != "x" else "y")

    with pytest.raises(InvalidInput, match="mistyped"):
        backup.from_words(" ".join(words))


def test_swapped_backup_words_fail_the_checksum() -> None:
    words = backup.to_words(SELLER).split()
    assert words[0] != words[1]
    words[0], words[1] = words[1], words[0]

    with pytest.raises(InvalidInput, match="mistyped"):
        backup.from_words(" ".join(words))


@pytest.mark.parametrize("count", [0, 12, 23, 25])
def test_backup_words_of_the_wrong_count_say_how_many_there_are(count: int) -> None:
    words = (backup.to_words(SELLER).split() * 2)[:count]

    with pytest.raises(InvalidInput, match=f"24 words; got {count}"):
        backup.from_words(" ".join(words))


# -- peer ids ------------------------------------------------------------------


@pytest.mark.parametrize("signer", [SELLER, OTHER], ids=["seller", "other"])
def test_a_peer_id_holds_its_public_key(signer: Signer) -> None:
    peer_id = peer_id_from_public_key(signer.public_key)

    assert peer_id.startswith("12D3KooW")
    assert len(peer_id) == 52
    assert public_key_from_peer_id(peer_id) == signer.public_key
    assert public_key_from_peer_id(f"  {peer_id}\n") == signer.public_key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "0OIl",  # not base58 at all
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # an RSA (sha2-256) peer id
        peer_id_from_public_key(SELLER.public_key)[:-1],
        peer_id_from_public_key(SELLER.public_key) + "1",
    ],
    ids=["empty", "word", "not base58", "rsa peer id", "one short", "one long"],
)
def test_text_that_is_not_an_ed25519_peer_id_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="12D3KooW"):
        public_key_from_peer_id(text)


def test_a_public_key_must_be_32_bytes_to_have_a_peer_id() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        peer_id_from_public_key(b"\x00" * 31)


@pytest.mark.parametrize(
    ("key", "value"),
    [("memlimit", 2**45), ("opslimit", 10**6), ("salt", b"short")],
    ids=["huge memory", "huge time", "short salt"],
)
def test_a_key_file_asking_for_absurd_costs_is_damage_not_a_wrong_passphrase(
    key: str, value: object
) -> None:
    doc = msgpack.unpackb(seal(SELLER, "pass phrase"), raw=False)
    doc[key] = value
    with pytest.raises(IdentityError, match="damaged") as caught:
        KeyFile(msgpack.packb(doc, use_bin_type=True), "crafted.key").unlock("pass phrase")
    assert not isinstance(caught.value, WrongPassphrase)
