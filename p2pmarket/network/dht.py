"""Our namespaces in the Kademlia DHT: keys, validators and selectors.

    /p2pmarket-listing/<listing id, base32>                 the newest listing or tombstone
    /p2pmarket-catalogue/<BLAKE2b-128 of seller key, base32> the seller's newest catalogue
    /p2pmarket-profile/<BLAKE2b-128 of owner key, base32>    the owner's newest profile
    /p2pmarket-reviews/<BLAKE2b-128 of reviewed key, base32> a bundle of reviews about the key

Keys stay at most 50 bytes: a py-libp2p 0.8.1 DHT server ignores a FIND_NODE whose
key is longer and not a multihash, which would silently stop every lookup for
that key at the first hop. So a key by seller holds a hash of the seller's key.

A review bundle is a msgpack list of up to :data:`MAX_BUNDLE` review records
about one key, in (contract, reviewer) order, one per party per contract. No
single author can sign a set of others' reviews, so every review in it is
checked on its own, and whoever adds a review reads the bundle, merges, and puts
it back (see :func:`pack_bundle`); of two bundles the larger wins, then the one
with the newest review. A lost concurrent merge is repaired by the next one:
each reviewer puts again on every start.

Any other value is accepted only if it is a valid signed record (the same checks
as gossip and import) whose id is bound to the key: a listing's id is derived from
its seller's key, so nobody can overwrite another seller's listing or catalogue.
Among valid values the highest ``seq`` wins, compared here explicitly: py-libp2p
0.8.1 calls ``select`` with old and new in opposite orders for local and remote
puts, so the choice must not depend on the order of ``values``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Final

import msgpack
from libp2p.records.validator import Validator

from p2pmarket import records
from p2pmarket.errors import InvalidRecord, StoreError
from p2pmarket.records import Catalogue, Listing, Profile, Review, Tombstone

LISTING_NS: Final = "p2pmarket-listing"
CATALOGUE_NS: Final = "p2pmarket-catalogue"
PROFILE_NS: Final = "p2pmarket-profile"
REVIEWS_NS: Final = "p2pmarket-reviews"
MAX_KEY_BYTES: Final = 50
MAX_BUNDLE: Final = 64  # reviews in one bundle: the newest are kept
_CATALOGUE_KEY_DOMAIN: Final = b"p2pmarket/catalogue-key/v1\x00"
_PROFILE_KEY_DOMAIN: Final = b"p2pmarket/profile-key/v1\x00"
_REVIEWS_KEY_DOMAIN: Final = b"p2pmarket/reviews-key/v1\x00"


def listing_key(listing_id: bytes) -> str:
    return f"/{LISTING_NS}/{records.format_id(listing_id)}"


def _hashed_key(namespace: str, domain: bytes, key: bytes) -> str:
    digest = hashlib.blake2b(domain + key, digest_size=16).digest()
    return f"/{namespace}/{records.format_id(digest)}"


def catalogue_key(seller: bytes) -> str:
    return _hashed_key(CATALOGUE_NS, _CATALOGUE_KEY_DOMAIN, seller)


def profile_key(owner: bytes) -> str:
    return _hashed_key(PROFILE_NS, _PROFILE_KEY_DOMAIN, owner)


def reviews_key(subject: bytes) -> str:
    return _hashed_key(REVIEWS_NS, _REVIEWS_KEY_DOMAIN, subject)


def _rank(seq: int, value: bytes, tombstone: bool) -> tuple[int, bool, bytes]:
    # Equal seqs only happen when a seller signs two versions with one seq; a
    # withdrawal then wins, and otherwise the bytes decide, so every node agrees.
    return (seq, tombstone, value)


class _Checking(Validator):
    """One namespace's validator: ``check`` parses a value and raises InvalidRecord
    unless it is valid under its key; ``select`` is each namespace's own."""

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now

    def check(self, key: str, value: bytes) -> object:
        raise NotImplementedError

    def validate(self, key: str, value: bytes) -> None:
        self.check(key, value)


class ListingValidator(_Checking):
    def check(self, key: str, value: bytes) -> records.Listing | Tombstone:
        record = records.validate(value, self._now())
        if not isinstance(record, Listing | Tombstone):
            raise InvalidRecord("type", "only listings and withdrawals live under this key")
        if key != listing_key(record.id):
            raise InvalidRecord("id", "the record's id does not match its DHT key")
        return record

    def select(self, key: str, values: list[bytes]) -> int:
        ranks = []
        for value in values:
            record = records.load_trusted(value)  # validated when it was stored
            assert isinstance(record, Listing | Tombstone)
            ranks.append(_rank(record.seq, value, isinstance(record, Tombstone)))
        return max(range(len(values)), key=ranks.__getitem__)


class CatalogueValidator(_Checking):
    def check(self, key: str, value: bytes) -> Catalogue:
        catalogue = records.validate_catalogue(value, self._now())
        if key != catalogue_key(catalogue.seller):
            raise InvalidRecord("seller", "the catalogue's seller does not match its DHT key")
        return catalogue

    def select(self, key: str, values: list[bytes]) -> int:
        ranks = []
        for value in values:
            try:
                seq = records.validate_catalogue(value, self._now()).seq
            except InvalidRecord:
                seq = -1
            ranks.append(_rank(seq, value, False))
        return max(range(len(values)), key=ranks.__getitem__)


class ProfileValidator(_Checking):
    def check(self, key: str, value: bytes) -> Profile:
        record = records.validate(value, self._now())
        if not isinstance(record, Profile) or key != profile_key(record.owner):
            raise InvalidRecord("owner", "only its owner's profile lives under this key")
        return record

    def select(self, key: str, values: list[bytes]) -> int:
        ranks = []
        for value in values:
            record = records.load_trusted(value)
            ranks.append(_rank(record.seq if isinstance(record, Profile) else -1, value, False))
        return max(range(len(values)), key=ranks.__getitem__)


def pack_bundle(reviews: Iterable[Review]) -> bytes:
    """The bundle of ``reviews`` (all about one key): the newest version of each
    (contract, reviewer), the :data:`MAX_BUNDLE` most recently written kept."""
    newest: dict[bytes, Review] = {}
    for review in reviews:
        held = newest.get(review.key)
        if held is None or review.seq > held.seq:
            newest[review.key] = review
    kept = sorted(newest.values(), key=lambda r: (r.created, r.key), reverse=True)[:MAX_BUNDLE]
    data: bytes = msgpack.packb(
        [records.encode(r) for r in sorted(kept, key=lambda r: r.key)], use_bin_type=True
    )
    return data


def unpack_bundle(data: bytes, subject: bytes | None, now: int) -> list[Review]:
    """Every review of a bundle, each fully checked and about ``subject`` (when
    given); InvalidRecord for a malformed bundle or any bad review in it."""
    try:
        items = msgpack.unpackb(data, raw=False, max_bin_len=records.MAX_RECORD_BYTES)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise InvalidRecord(None, "a review bundle is not msgpack") from None
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BUNDLE:
        raise InvalidRecord(None, f"a review bundle is a list of 1 to {MAX_BUNDLE} reviews")
    reviews = []
    for item in items:
        if not isinstance(item, bytes):
            raise InvalidRecord(None, "a review bundle holds encoded reviews")
        review = records.validate(item, now)
        if not isinstance(review, Review) or (subject is not None and review.subject != subject):
            raise InvalidRecord("subject", "a bundle holds reviews about one key")
        reviews.append(review)
    keys = [r.key for r in reviews]
    if keys != sorted(set(keys)) or len({r.subject for r in reviews}) != 1:
        raise InvalidRecord(None, "a review bundle is not in canonical order")
    return reviews


class ReviewsValidator(_Checking):
    def check(self, key: str, value: bytes) -> list[Review]:
        reviews = unpack_bundle(value, None, self._now())
        if key != reviews_key(reviews[0].subject):
            raise InvalidRecord("subject", "the reviews are not about this key's owner")
        return reviews

    def select(self, key: str, values: list[bytes]) -> int:
        # The bundle with more reviews, then the one with the newest review (a
        # merge into a full bundle adds a newer one); both were validated.
        ranks = []
        for value in values:
            try:
                items = msgpack.unpackb(value, raw=False)
                newest = max(records.load_trusted(item).created for item in items)
                rank: tuple[int, int, bytes] = (len(items), newest, value)
            except (ValueError, TypeError, msgpack.UnpackException, StoreError):
                rank = (-1, 0, value)
            ranks.append(rank)
        return max(range(len(values)), key=ranks.__getitem__)
