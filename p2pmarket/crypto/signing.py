"""ed25519 signing and verification: the only place records meet PyNaCl's signatures.

Verification is the one CPU-heavy step of ingesting records (~100 µs each on this
class of machine). PyNaCl calls libsodium through cffi, which releases the GIL for
the duration of the C call, so :func:`verify` may run in worker threads and really
use every core (see :mod:`p2pmarket.ingest`).
"""

from __future__ import annotations

import os
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing

from p2pmarket.crypto import stamp

SEED_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64


class Signer:
    """An ed25519 private key that can sign. The seed never leaves this object
    except through :meth:`seed`, which the keystore and the backup use."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> Signer:
        return cls(os.urandom(SEED_SIZE))

    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of ``message``."""
        return bytes(self._key.sign(message).signature)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


def check(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """:func:`verify`, or, for a triple with an empty key, the proof-of-work
    check (subject, stamp) of :func:`p2pmarket.records.stamp_check`: the bulk
    paths batch both kinds of check through one worker protocol."""
    if not public_key:
        return stamp.check(message, signature)
    return verify(public_key, message, signature)


def verify_batch(batch: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """:func:`check` over (public key, message, signature) triples. A top-level
    function of a module that imports only PyNaCl, so a spawned worker process
    that runs it starts quickly."""
    return [check(pk, message, sig) for pk, message, sig in batch]


def verify_groups(groups: list[list[tuple[bytes, bytes, bytes]]]) -> list[bool]:
    """For each group of triples (one record's signatures and stamp), whether all pass."""
    return [all(check(pk, message, sig) for pk, message, sig in group) for group in groups]
