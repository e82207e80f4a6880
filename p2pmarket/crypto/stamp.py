"""Proof-of-work stamps: what makes publishing cost something.

A signature costs its author nothing, and keys are free, so without a price a
spammer (or a swarm of made-up identities) can make every node validate, store
and forward as many records as the rate limits let through. A stamp is that
price: a 16-byte nonce such that Argon2id(domain + subject, salt = nonce) begins
with ``bits`` zero bits. Finding one takes 2**bits evaluations on average;
checking one takes one.

Why Argon2id (libsodium's ``crypto_pwhash``, 64 KiB, one pass) and not a plain
hash: it is memory-hard, so a GPU or an ASIC gains far less over the honest
seller's laptop than with SHA-256 or BLAKE2 hashcash, and the honest side runs
the same C code as any attacker (a Python hash loop would hand a C attacker a
several-fold lead). One evaluation costs ~55 µs here, cheap enough to check on
every record received.

The subject is what the stamp binds to: for a record, its signature, which
covers every field; for a mailbox deposit, the envelope's hash. A stamp is
outside what its record's author signs, so an old record can be stamped later
without its key.

The network's difficulty is :data:`DEFAULT_BITS`. ``P2PMARKET_STAMP_BITS``
overrides it for a test network (as Bitcoin's regtest lowers its difficulty):
every node of one network must use the same value, or they refuse each other's
records.
"""

from __future__ import annotations

import os
from typing import Final

import nacl.bindings

DOMAIN: Final = b"p2pmarket/stamp/v1\x00"
NONCE_SIZE: Final = 16  # Argon2's salt: exactly libsodium's crypto_pwhash_SALTBYTES
MEMORY: Final = 64 * 1024  # bytes; libsodium's minimum is 8 KiB
PASSES: Final = 1
DEFAULT_BITS: Final = 13  # ~8,200 evaluations: ~0.45 s mean on one core here
MAX_BITS: Final = 32
BITS_ENV: Final = "P2PMARKET_STAMP_BITS"


def required_bits() -> int:
    """The difficulty this node requires (and pays): :data:`DEFAULT_BITS`
    unless ``P2PMARKET_STAMP_BITS`` sets another, for a test network."""
    text = os.environ.get(BITS_ENV)
    if text is None:
        return DEFAULT_BITS
    try:
        bits = int(text)
    except ValueError:
        return DEFAULT_BITS
    return bits if 0 <= bits <= MAX_BITS else DEFAULT_BITS


def work(subject: bytes, nonce: bytes) -> bytes:
    """The 32-byte Argon2id output a stamp is judged by."""
    out: bytes = nacl.bindings.crypto_pwhash_alg(
        32,
        DOMAIN + subject,
        nonce,
        PASSES,
        MEMORY,
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    return out


def leading_zero_bits(data: bytes) -> int:
    value = int.from_bytes(data, "big")
    return len(data) * 8 - value.bit_length()


def check(subject: bytes, nonce: bytes, bits: int | None = None) -> bool:
    """Whether ``nonce`` is a stamp of ``subject`` at ``bits`` (the required
    difficulty by default). At 0 bits any nonce of the right size is one."""
    bits = required_bits() if bits is None else bits
    if len(nonce) != NONCE_SIZE:
        return False
    if bits == 0:
        return True
    return leading_zero_bits(work(subject, nonce)) >= bits


def solve(subject: bytes, bits: int | None = None) -> bytes:
    """The first stamp of ``subject``, counting up: 2**bits evaluations on
    average (PyNaCl releases the GIL meanwhile, so a caller may run this in a
    thread)."""
    bits = required_bits() if bits is None else bits
    # Counting from zero makes a stamp a function of its subject: the same
    # signed record always encodes to the same bytes.
    for counter in range(2**64):
        nonce = counter.to_bytes(8, "big") + bytes(8)
        if bits == 0 or leading_zero_bits(work(subject, nonce)) >= bits:
            return nonce
    raise AssertionError("unreachable: 2**64 nonces tried")  # pragma: no cover


def check_batch(batch: list[tuple[bytes, bytes]]) -> list[bool]:
    """:func:`check` over (subject, nonce) pairs at the required difficulty."""
    bits = required_bits()
    return [check(subject, nonce, bits) for subject, nonce in batch]
