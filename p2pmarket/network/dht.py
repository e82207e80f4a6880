"""Our namespaces in the Kademlia DHT: keys, validators and selectors.

    /p2pmarket-listing/<listing id, base32>                 the newest listing or tombstone
    /p2pmarket-catalogue/<BLAKE2b-128 of seller key, base32> the seller's newest catalogue

Keys stay at most 50 bytes: a py-libp2p 0.8.1 DHT server ignores a FIND_NODE whose
key is longer and not a multihash, which would silently stop every lookup for
that key at the first hop. So a catalogue key holds a hash of the seller's key.

A value is accepted only if it is a valid signed record (the same checks as
gossip and import) whose id is bound to the key: a listing's id is derived from
its seller's key, so nobody can overwrite another seller's listing or catalogue.
Among valid values the highest ``seq`` wins, compared here explicitly: py-libp2p
0.8.1 calls ``select`` with old and new in opposite orders for local and remote
puts, so the choice must not depend on the order of ``values``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from libp2p.records.validator import Validator

from p2pmarket import records
from p2pmarket.errors import InvalidRecord
from p2pmarket.records import Catalogue, Profile, Tombstone

LISTING_NS: Final = "p2pmarket-listing"
CATALOGUE_NS: Final = "p2pmarket-catalogue"
MAX_KEY_BYTES: Final = 50
_CATALOGUE_KEY_DOMAIN: Final = b"p2pmarket/catalogue-key/v1\x00"


def listing_key(listing_id: bytes) -> str:
    return f"/{LISTING_NS}/{records.format_id(listing_id)}"


def catalogue_key(seller: bytes) -> str:
    digest = hashlib.blake2b(_CATALOGUE_KEY_DOMAIN + seller, digest_size=16).digest()
    return f"/{CATALOGUE_NS}/{records.format_id(digest)}"


def _rank(seq: int, value: bytes, tombstone: bool) -> tuple[int, bool, bytes]:
    # Equal seqs only happen when a seller signs two versions with one seq; a
    # withdrawal then wins, and otherwise the bytes decide, so every node agrees.
    return (seq, tombstone, value)


class ListingValidator(Validator):
    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now

    def check(self, key: str, value: bytes) -> records.Listing | Tombstone:
        record = records.validate(value, self._now())
        if isinstance(record, Profile):
            raise InvalidRecord("type", "only listings and withdrawals live under this key")
        if key != listing_key(record.id):
            raise InvalidRecord("id", "the record's id does not match its DHT key")
        return record

    def validate(self, key: str, value: bytes) -> None:
        self.check(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        ranks = []
        for value in values:
            record = records.load_trusted(value)  # validated when it was stored
            assert not isinstance(record, Profile)
            ranks.append(_rank(record.seq, value, isinstance(record, Tombstone)))
        return max(range(len(values)), key=ranks.__getitem__)


class CatalogueValidator(Validator):
    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now

    def check(self, key: str, value: bytes) -> Catalogue:
        catalogue = records.validate_catalogue(value, self._now())
        if key != catalogue_key(catalogue.seller):
            raise InvalidRecord("seller", "the catalogue's seller does not match its DHT key")
        return catalogue

    def validate(self, key: str, value: bytes) -> None:
        self.check(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        ranks = []
        for value in values:
            try:
                seq = records.validate_catalogue(value, self._now()).seq
            except InvalidRecord:
                seq = -1
            ranks.append(_rank(seq, value, False))
        return max(range(len(values)), key=ranks.__getitem__)
