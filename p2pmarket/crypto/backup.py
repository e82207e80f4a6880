"""A printable backup of the identity: the 32-byte seed as 24 BIP39 English words.

Words are what a seller can write on paper and keep offline; the BIP39 checksum
catches a mistyped or missing word on restore. The seed is the BIP39 entropy
itself (no passphrase stretching), so the words restore exactly this key.
"""

from __future__ import annotations

from mnemonic import Mnemonic

from p2pmarket.crypto.signing import Signer
from p2pmarket.errors import InvalidInput

_WORDS = Mnemonic("english")


def to_words(signer: Signer) -> str:
    return str(_WORDS.to_mnemonic(signer.seed()))


def from_words(text: str) -> Signer:
    words = " ".join(text.lower().split())
    if len(words.split()) != 24:
        raise InvalidInput(
            f"a backup is 24 words; got {len(words.split())}: check that none is missing"
        )
    if not _WORDS.check(words):
        raise InvalidInput("the backup words do not check out: one of them is mistyped")
    return Signer(bytes(_WORDS.to_entropy(words)))
