"""Sealed envelopes: only the recipient reads them, and it knows who wrote them."""

from __future__ import annotations

import msgpack
import pytest
from factories import NOW, OTHER, SELLER, THIRD
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmarket.crypto.envelope import (
    MAX_AGE,
    MAX_ENVELOPE,
    Letter,
    open_envelope,
    recipient_of,
    seal,
)
from p2pmarket.crypto.signing import Signer
from p2pmarket.errors import EnvelopeOutOfTime, InvalidEnvelope

SECRET = b"Bisa kurang? Saya ambil besok di Sleman."


def sealed(body: bytes = SECRET, sender: Signer = SELLER, to: Signer = OTHER) -> bytes:
    return seal(sender, to.public_key, "text", body, NOW)[1]


def test_the_recipient_opens_it_and_learns_the_sender() -> None:
    letter, envelope = seal(SELLER, OTHER.public_key, "text", SECRET, NOW)

    opened = open_envelope(envelope, OTHER, NOW + 5)

    assert opened == letter
    assert opened == Letter(SELLER.public_key, OTHER.public_key, letter.id, NOW, "text", SECRET)


def test_the_envelope_shows_the_recipient_and_nothing_of_the_letter() -> None:
    envelope = sealed()

    assert recipient_of(envelope) == OTHER.public_key
    assert SECRET not in envelope and SECRET[:8] not in envelope
    assert SELLER.public_key not in envelope  # the sender is inside the box


def test_each_envelope_is_sealed_afresh_even_for_the_same_letter() -> None:
    first = seal(SELLER, OTHER.public_key, "text", SECRET, NOW, letter_id=b"\x01" * 16)[1]
    second = seal(SELLER, OTHER.public_key, "text", SECRET, NOW, letter_id=b"\x01" * 16)[1]

    assert first != second  # a new ephemeral key each time


def test_nobody_else_can_open_it_not_even_the_sender() -> None:
    envelope = sealed()

    for stranger in (THIRD, SELLER):
        with pytest.raises(InvalidEnvelope, match="another recipient"):
            open_envelope(envelope, stranger, NOW)


def test_an_envelope_readdressed_to_someone_else_does_not_open() -> None:
    doc = msgpack.unpackb(sealed(), raw=False)
    doc["to"] = THIRD.public_key

    with pytest.raises(InvalidEnvelope, match="does not open"):
        open_envelope(msgpack.packb(doc, use_bin_type=True), THIRD, NOW)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_altered_byte_is_refused(data: st.DataObject) -> None:
    envelope = bytearray(sealed())
    i = data.draw(st.integers(0, len(envelope) - 1))
    envelope[i] ^= data.draw(st.integers(1, 255))

    with pytest.raises(InvalidEnvelope):
        open_envelope(bytes(envelope), OTHER, NOW)


@pytest.mark.parametrize("cut", [0, 1, 10, 40, 80, -1])
def test_a_truncated_envelope_is_refused(cut: int) -> None:
    with pytest.raises(InvalidEnvelope):
        open_envelope(sealed()[:cut], OTHER, NOW)


def test_a_letter_over_the_size_cap_cannot_be_sealed_or_opened() -> None:
    with pytest.raises(InvalidEnvelope, match="limit"):
        sealed(b"x" * MAX_ENVELOPE)
    oversize = msgpack.packb(
        {"box": b"x" * MAX_ENVELOPE, "to": OTHER.public_key, "v": 1}, use_bin_type=True
    )
    with pytest.raises(InvalidEnvelope, match="limit"):
        recipient_of(oversize)


def test_a_letter_signed_by_someone_else_than_its_sender_is_refused() -> None:
    # THIRD seals a letter that claims to come from SELLER.
    import nacl.public
    import nacl.signing

    from p2pmarket.crypto import envelope as env

    claim = Letter(SELLER.public_key, OTHER.public_key, b"\x02" * 16, NOW, "text", SECRET)
    forged_inner = env._pack([1, *env._fields(claim), THIRD.sign(env._signed_part(claim))])
    box_key = nacl.signing.VerifyKey(OTHER.public_key).to_curve25519_public_key()
    box = nacl.public.SealedBox(box_key).encrypt(forged_inner)
    forged = env._pack({"box": box, "to": OTHER.public_key, "v": 1})

    with pytest.raises(InvalidEnvelope, match="signature"):
        open_envelope(forged, OTHER, NOW)


@pytest.mark.parametrize(("offset", "future"), [(MAX_AGE + 11 * 60, False), (-11 * 60, True)])
def test_a_letter_outside_the_time_window_is_refused_as_a_clock_matter(
    offset: int, future: bool
) -> None:
    envelope = sealed()

    with pytest.raises(EnvelopeOutOfTime) as refused:
        open_envelope(envelope, OTHER, NOW + offset)
    assert refused.value.future is future


def test_a_recipient_that_is_not_a_curve_point_is_refused_on_the_outside() -> None:
    envelope = msgpack.packb({"box": b"\x00" * 64, "to": b"\x02" + b"\x00" * 31, "v": 1})
    with pytest.raises(InvalidEnvelope, match="not an ed25519 key"):
        recipient_of(envelope)


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        {"to": OTHER.public_key, "box": b"x" * 80, "v": 1},  # keys out of order
        {"box": b"x" * 80, "to": b"short", "v": 1},
        {"box": b"x" * 80, "to": OTHER.public_key, "v": 2},
        {"box": b"x" * 10, "to": OTHER.public_key, "v": 1},
    ],
)
def test_a_malformed_outside_is_refused_by_anyone(doc: object) -> None:
    with pytest.raises(InvalidEnvelope):
        recipient_of(msgpack.packb(doc, use_bin_type=True))


def test_an_unknown_kind_or_a_bad_recipient_key_cannot_be_sealed() -> None:
    with pytest.raises(InvalidEnvelope, match="kind"):
        seal(SELLER, OTHER.public_key, "poem", SECRET, NOW)
    with pytest.raises(InvalidEnvelope, match="32-byte"):
        seal(SELLER, b"short", "text", SECRET, NOW)
