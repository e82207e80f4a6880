"""Sealed envelopes: what a direct message looks like between two identities.

An envelope is a msgpack map ``{"box": sealed, "to": recipient key, "v": 1}``. Only
``to`` is readable on the way: relays and mailbox holders learn the recipient and
the size, nothing else.

``box`` is libsodium's sealed box (``crypto_box_seal``) to the recipient's X25519
key, derived from its ed25519 identity key: a fresh ephemeral X25519 key per
message, XSalsa20-Poly1305, so no one but the recipient can read or alter it.
Inside is the *letter*: sender, recipient, a random 16-byte id, the send time, a
kind (``text``, ``receipt``…) and the body, signed by the sender's ed25519 key
over a domain-separated encoding that names the recipient. So the recipient
knows who sent it, and cannot pass it on as if it had been sent to someone else.

Forward secrecy: the ephemeral key protects sent messages if the *sender's*
identity key is stolen later (the sender keeps nothing that opens them). It does
not protect against a later theft of the *recipient's* key, which opens every
box sealed to it; that needs recipient prekeys published and rotated (X3DH),
which this version does not have. The signature also means a recipient can show
others what a sender wrote (no deniability): chosen on purpose, since trade
terms must be provable.

Replays are caught by the receiver, which remembers (sender, id) for as long as
a letter's time is accepted: :data:`MAX_AGE` plus the clock skew.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from p2pmarket.crypto.signing import Signer, verify
from p2pmarket.errors import EnvelopeOutOfTime, InvalidEnvelope
from p2pmarket.quoting import shown

VERSION: Final = 1
MAX_ENVELOPE: Final = 64 * 1024  # bytes, on the wire and in a mailbox
ID_SIZE: Final = 16
KEY_SIZE: Final = 32
MAX_AGE: Final = 14 * 86400  # a letter older than this is refused (mailboxes keep 14 days)
CLOCK_SKEW: Final = 10 * 60
# A receiver remembers a letter's (sender, id) this long after its time: older
# letters are refused anyway, so a replay can never get past both.
REPLAY_WINDOW: Final = MAX_AGE + CLOCK_SKEW
KINDS: Final = frozenset({"text", "receipt", "trade"})
_DOMAIN: Final = b"p2pmarket/letter/v1\x00"
_SEAL_OVERHEAD: Final = nacl.bindings.crypto_box_SEALBYTES


@dataclass(frozen=True, slots=True)
class Letter:
    """What an envelope holds, once opened and checked."""

    sender: bytes
    recipient: bytes
    id: bytes
    sent: int  # Unix time, by the sender's clock
    kind: str
    body: bytes


def _pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _signed_part(letter: Letter) -> bytes:
    return _DOMAIN + _pack(_fields(letter))


def seal(
    signer: Signer,
    recipient: bytes,
    kind: str,
    body: bytes,
    now: int,
    *,
    letter_id: bytes | None = None,
) -> tuple[Letter, bytes]:
    """Sign a letter from ``signer`` to ``recipient`` and seal it; return the
    letter (for the sender's outbox) and the envelope bytes."""
    if len(recipient) != KEY_SIZE:
        raise InvalidEnvelope("a recipient is a 32-byte public key")
    if kind not in KINDS:
        raise InvalidEnvelope(f"unknown letter kind {kind!r}")
    letter = Letter(signer.public_key, recipient, letter_id or os.urandom(ID_SIZE), now, kind, body)
    inner = _pack([VERSION, *_fields(letter), signer.sign(_signed_part(letter))])
    try:
        box_key = nacl.signing.VerifyKey(recipient).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError):
        raise InvalidEnvelope("the recipient key is not a valid ed25519 key") from None
    sealed = nacl.public.SealedBox(box_key).encrypt(inner)
    envelope = _pack({"box": sealed, "to": recipient, "v": VERSION})
    if len(envelope) > MAX_ENVELOPE:
        raise InvalidEnvelope(
            f"the message is {len(envelope)} bytes sealed; the limit is {MAX_ENVELOPE}"
        )
    return letter, envelope


def _fields(letter: Letter) -> list[Any]:
    return [letter.sender, letter.recipient, letter.id, letter.sent, letter.kind, letter.body]


def recipient_of(data: bytes) -> bytes:
    """The recipient of an envelope, checking only its outside: what a mailbox
    holder may know. Raises :class:`InvalidEnvelope` if the outside is malformed
    or names a key that no one could hold (not a point on the curve)."""
    to = _outside(data)[0]
    try:
        nacl.signing.VerifyKey(to).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError):
        raise InvalidEnvelope("an envelope's recipient is not an ed25519 key") from None
    return to


def _outside(data: bytes) -> tuple[bytes, bytes]:
    if len(data) > MAX_ENVELOPE:
        raise InvalidEnvelope(f"an envelope of {len(data)} bytes (the limit is {MAX_ENVELOPE})")
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise InvalidEnvelope("an envelope is not msgpack") from None
    if not isinstance(doc, dict) or list(doc) != ["box", "to", "v"]:
        raise InvalidEnvelope("an envelope is a map of box, to and v, in that order")
    box, to, version = doc["box"], doc["to"], doc["v"]
    if type(version) is not int or version != VERSION:
        raise InvalidEnvelope(f"unsupported envelope version {shown(version)}")
    if not isinstance(to, bytes) or len(to) != KEY_SIZE:
        raise InvalidEnvelope("an envelope's recipient is not a 32-byte key")
    if not isinstance(box, bytes) or len(box) <= _SEAL_OVERHEAD:
        raise InvalidEnvelope("an envelope's box is too short")
    if _pack(doc) != data:
        raise InvalidEnvelope("an envelope is not in canonical encoding")
    return to, box


def open_envelope(data: bytes, recipient: Signer, now: int) -> Letter:
    """Open an envelope sealed to ``recipient``'s key and check its letter: the
    signature, that it names us, its size, kind and time."""
    to, box = _outside(data)
    if to != recipient.public_key:
        raise InvalidEnvelope("this envelope is for another recipient")
    secret = nacl.signing.SigningKey(recipient.seed()).to_curve25519_private_key()
    try:
        inner = nacl.public.SealedBox(secret).decrypt(box)
    except nacl.exceptions.CryptoError:
        raise InvalidEnvelope(
            "the envelope does not open: altered, or sealed to another key"
        ) from None
    try:
        doc = msgpack.unpackb(inner, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise InvalidEnvelope("the letter is not msgpack") from None
    if not isinstance(doc, list) or len(doc) != 8 or doc[0] != VERSION or type(doc[0]) is not int:
        raise InvalidEnvelope(
            "the letter is not [version, sender, recipient, id, sent, kind, body, sig]"
        )
    _, sender, named, letter_id, sent, kind, body, signature = doc
    if not (isinstance(sender, bytes) and len(sender) == KEY_SIZE):
        raise InvalidEnvelope("the letter's sender is not a 32-byte key")
    if named != to:
        raise InvalidEnvelope("the letter names another recipient than its envelope")
    if not (isinstance(letter_id, bytes) and len(letter_id) == ID_SIZE):
        raise InvalidEnvelope("the letter's id is not 16 bytes")
    if type(sent) is not int:
        raise InvalidEnvelope("the letter's time is not an integer")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidEnvelope(f"unknown letter kind {shown(kind)}")
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise InvalidEnvelope("the letter's body and signature must be bytes")
    letter = Letter(sender, named, letter_id, sent, kind, body)
    if not verify(sender, _signed_part(letter), signature):
        raise InvalidEnvelope("the letter's signature is not its sender's")
    # Checked last: only a genuine letter may be excused as a clock problem.
    if sent > now + CLOCK_SKEW:
        raise EnvelopeOutOfTime("the letter is dated ahead of our clock", future=True)
    if sent < now - MAX_AGE - CLOCK_SKEW:
        raise EnvelopeOutOfTime("the letter is too old to accept", future=False)
    return letter
