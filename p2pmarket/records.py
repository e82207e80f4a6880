"""Signed records: listings, withdrawals (tombstones), profiles and reviews.

Pure data and pure functions: no I/O, no clock (``now`` is always passed in).

Wire and disk form of every record: a msgpack map with string keys in ascending
order, integers in their shortest form, text as msgpack str and bytes as bin. That
encoding is canonical: :func:`decode` re-encodes what it parsed and rejects input
that differs by a single byte, so a record has exactly one valid byte form. The
signature (key ``sig``) is ed25519 over ``DOMAIN[type] + encoding of every other
field``; the domain prefix keeps a signature on one record type from being replayed
as another.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgpack

from p2pmarket.errors import InvalidInput, InvalidRecord, StoreError
from p2pmarket.money import CURRENCIES, MAX_MINOR_UNITS
from p2pmarket.quoting import shown
from p2pmarket.text import CONTROL as _CONTROL
from p2pmarket.text import CONTROL_ONE_LINE as _CONTROL_ONE_LINE
from p2pmarket.trade import Contract, parse_terms

FORMAT_VERSION: Final = 1
MAX_RECORD_BYTES: Final = 8192
CLOCK_SKEW: Final = 10 * 60
DAY: Final = 86400
DEFAULT_LIFETIME: Final = 30 * DAY
MAX_LIFETIME: Final = 90 * DAY
EARLIEST: Final = 1_577_836_800  # 2020-01-01: older timestamps are clock errors

MAX_TITLE: Final = 140
MAX_DESCRIPTION: Final = 4000
MAX_TAGS: Final = 10
MAX_TAG: Final = 32
MAX_LOCATION: Final = 100
MAX_CATEGORY: Final = 64
MAX_IMAGES: Final = 8
MAX_QUANTITY: Final = 1_000_000
MAX_SEQ: Final = 2**63 - 1
MAX_NAME: Final = 64
MAX_BIO: Final = 1000
MAX_CONTACTS: Final = 5
MAX_CONTACT: Final = 100
MAX_REVIEW: Final = 1000
STAMP_SIZE: Final = 16  # crypto.stamp.NONCE_SIZE, without loading libsodium here
STAMP_REFUSED: Final = (
    "the proof-of-work stamp does not meet the network's difficulty (a record "
    "made by an older p2pmarket, or a peer on a test network)"
)

KINDS: Final = ("sell", "wanted")
Kind: TypeAlias = Literal["sell", "wanted"]

DOMAIN: Final = {
    "listing": b"p2pmarket/listing/v1\x00",
    "tombstone": b"p2pmarket/tombstone/v1\x00",
    "profile": b"p2pmarket/profile/v1\x00",
    "catalogue": b"p2pmarket/catalogue/v1\x00",
    "review": b"p2pmarket/review/v1\x00",
}
_ID_DOMAIN: Final = b"p2pmarket/listing-id/v1\x00"

CATEGORY_RE: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:/[a-z0-9]+(?:-[a-z0-9]+)*)?$")


# ---------------------------------------------------------------------------
# Ids


def listing_id(seller: bytes, nonce: bytes) -> bytes:
    """A listing id binds the seller: it is a hash of their key and a nonce, so no
    one else can publish under, or withdraw, an id that is not theirs."""
    return hashlib.blake2b(_ID_DOMAIN + seller + nonce, digest_size=16).digest()


# Sync keys name a record in the set that catch-up sync reconciles: a listing and
# its tombstone share one, a profile has its owner's, a review its contract's and
# reviewer's (one review per party per contract).
SYNC_LISTING: Final = b"L"
SYNC_PROFILE: Final = b"F"
SYNC_REVIEW: Final = b"V"


def sync_key(record: Record) -> bytes:
    if isinstance(record, Profile):
        return SYNC_PROFILE + record.owner
    if isinstance(record, Review):
        return SYNC_REVIEW + record.key
    return SYNC_LISTING + record.id


def format_id(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def parse_id(text: str) -> bytes:
    cleaned = text.strip().upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise InvalidInput(
            f"{text!r} is not a listing id (26 letters and digits, e.g. from `search`)"
        )
    return raw


# ---------------------------------------------------------------------------
# Record types


@dataclass(frozen=True, slots=True)
class Listing:
    """An offer (``sell``) or a buy request (``wanted``). A higher ``seq`` replaces."""

    seller: bytes
    nonce: bytes
    seq: int
    kind: Kind
    title: str
    description: str
    price: int
    currency: str
    quantity: int
    category: str
    tags: tuple[str, ...]
    location: str
    created: int
    expires: int
    images: tuple[bytes, ...] = ()
    signature: bytes = b""
    stamp: bytes = b""  # proof of work over the signature: crypto/stamp.py
    encoded: bytes = field(default=b"", compare=False, repr=False)

    @property
    def id(self) -> bytes:
        return listing_id(self.seller, self.nonce)

    def fields(self) -> dict[str, Any]:
        # Keys in ascending order: this dict's order is the canonical encoding.
        return {
            "cat": self.category,
            "cur": self.currency,
            "desc": self.description,
            "exp": self.expires,
            "img": list(self.images),
            "kind": self.kind,
            "loc": self.location,
            "nonce": self.nonce,
            "price": self.price,
            "qty": self.quantity,
            "seller": self.seller,
            "seq": self.seq,
            "tags": list(self.tags),
            "title": self.title,
            "ts": self.created,
            "type": "listing",
            "v": FORMAT_VERSION,
        }


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A signed withdrawal. It hides the listing for good: the id stays dead until
    the tombstone expires, by which time every copy of the listing has expired too."""

    seller: bytes
    nonce: bytes
    seq: int
    created: int
    expires: int
    signature: bytes = b""
    stamp: bytes = b""  # proof of work over the signature: crypto/stamp.py
    encoded: bytes = field(default=b"", compare=False, repr=False)

    @property
    def id(self) -> bytes:
        return listing_id(self.seller, self.nonce)

    def fields(self) -> dict[str, Any]:
        return {
            "exp": self.expires,
            "nonce": self.nonce,
            "seller": self.seller,
            "seq": self.seq,
            "ts": self.created,
            "type": "tombstone",
            "v": FORMAT_VERSION,
        }


@dataclass(frozen=True, slots=True)
class Profile:
    """What a seller says about themselves. A higher ``seq`` replaces."""

    owner: bytes
    seq: int
    name: str
    bio: str
    contacts: tuple[str, ...]
    location: str
    created: int
    signature: bytes = b""
    stamp: bytes = b""  # proof of work over the signature: crypto/stamp.py
    encoded: bytes = field(default=b"", compare=False, repr=False)

    def fields(self) -> dict[str, Any]:
        return {
            "bio": self.bio,
            "contacts": list(self.contacts),
            "loc": self.location,
            "name": self.name,
            "owner": self.owner,
            "seq": self.seq,
            "ts": self.created,
            "type": "profile",
            "v": FORMAT_VERSION,
        }


def contract_fields(contract: Contract) -> list[Any]:
    """A contract's wire form inside a review: everything a stranger needs to check
    both signatures."""
    return [
        contract.trade,
        contract.buyer,
        contract.seller,
        contract.terms.fields(),
        contract.proposed,
        contract.proposer,
        contract.proposer_signature,
        contract.acceptor_signature,
    ]


@dataclass(frozen=True, slots=True)
class Review:
    """One party's word on a trade, with the contract signed by both embedded, so
    anyone can check that the reviewer and the reviewed key traded with each
    other. One per party per contract: a higher ``seq`` replaces."""

    reviewer: bytes
    subject: bytes  # the other party of the contract
    seq: int
    stars: int  # 1 to 5
    text: str
    contract: Contract
    created: int
    signature: bytes = b""
    stamp: bytes = b""  # proof of work over the signature: crypto/stamp.py
    encoded: bytes = field(default=b"", compare=False, repr=False)

    @property
    def key(self) -> bytes:
        """Contract id + reviewer: what a newer version of this review replaces."""
        return self.contract.id + self.reviewer

    @property
    def reviewer_role(self) -> Literal["buyer", "seller"]:
        return "buyer" if self.reviewer == self.contract.buyer else "seller"

    def fields(self) -> dict[str, Any]:
        return {
            "contract": contract_fields(self.contract),
            "reviewer": self.reviewer,
            "seq": self.seq,
            "stars": self.stars,
            "subject": self.subject,
            "text": self.text,
            "ts": self.created,
            "type": "review",
            "v": FORMAT_VERSION,
        }


Record: TypeAlias = Listing | Tombstone | Profile | Review

# A catalogue of ~22 bytes an entry fits 300 entries in one record; a seller with
# more live listings publishes the 300 newest (the rest still travel by gossip).
MAX_CATALOGUE: Final = 300


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A seller's signed list of their live listings (id, seq), kept in the DHT under
    their key so that a node that never saw the gossip can find them. A higher
    ``seq`` replaces; it is the signing time in milliseconds, so it only grows."""

    seller: bytes
    seq: int
    items: tuple[tuple[bytes, int], ...]
    created: int
    signature: bytes = b""
    encoded: bytes = field(default=b"", compare=False, repr=False)

    def fields(self) -> dict[str, Any]:
        return {
            "items": [[listing, seq] for listing, seq in self.items],
            "seller": self.seller,
            "seq": self.seq,
            "ts": self.created,
            "type": "catalogue",
            "v": FORMAT_VERSION,
        }


def _type_name(record: Record | Catalogue) -> str:
    return record.fields()["type"]  # type: ignore[no-any-return]


def author(record: Record | Catalogue) -> bytes:
    if isinstance(record, Listing):
        return record.seller
    if isinstance(record, Profile):
        return record.owner
    if isinstance(record, Review):
        return record.reviewer
    return record.seller


def signatures(record: Record, message: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """Every (key, message, signature) that must verify for ``record`` to be valid,
    ``message`` being what its author signed (see :func:`decode_signed`), and its
    stamp (:func:`stamp_check`): a review also carries both parties' signatures
    on its contract."""
    found = [(author(record), message, record.signature), stamp_check(record)]
    if isinstance(record, Review):
        contract = record.contract
        found.append((contract.proposer, contract.message(), contract.proposer_signature))
        found.append((contract.acceptor, contract.message(), contract.acceptor_signature))
    return found


def stamp_check(record: Record) -> tuple[bytes, bytes, bytes]:
    """The proof-of-work check of ``record`` in the form of a signature triple
    (an empty key marks it): so the bulk paths' verify batches, in a worker
    process or inline, check stamps with signatures. See
    :func:`p2pmarket.crypto.signing.verify_batch`."""
    return (b"", record.signature, record.stamp)


# ---------------------------------------------------------------------------
# Encoding and signing


def _pack(doc: dict[str, Any]) -> bytes:
    try:
        data: bytes = msgpack.packb(doc, use_bin_type=True)
    except OverflowError:
        raise InvalidRecord(None, "a number is too large to encode") from None
    return data


def _pack_signed(record: Record | Catalogue) -> bytes:
    """The canonical encoding of the whole record: ``sig`` (and a record's
    ``pow``) take their places among the keys in ascending order, like every
    other key. Neither is covered by the signature."""
    doc = {**record.fields(), "sig": record.signature}
    if not isinstance(record, Catalogue) and record.stamp:
        doc["pow"] = record.stamp
    return _pack(dict(sorted(doc.items())))


def signed_message(record: Record | Catalogue) -> bytes:
    """The exact bytes the author signs: domain prefix + canonical fields without sig."""
    return DOMAIN[_type_name(record)] + _pack(record.fields())


def encode(record: Record | Catalogue) -> bytes:
    if record.encoded:
        return record.encoded
    return _pack_signed(record)


_R = TypeVar("_R", Listing, Tombstone, Profile, Review, Catalogue)


def sign(record: _R, sign_fn: Callable[[bytes], bytes], *, bits: int | None = None) -> _R:
    """Return ``record`` signed with ``sign_fn`` (a :class:`~p2pmarket.crypto.signing.Signer`'s
    ``sign``) and stamped (a record: the network's proof of work, ``bits`` to
    override its difficulty), its canonical encoding attached, after checking
    every rule but the clock."""
    signed = replace(record, signature=sign_fn(signed_message(record)), encoded=b"")
    if not isinstance(signed, Catalogue):
        signed = stamped(signed, bits)
    data = _pack_signed(signed)
    if len(data) > MAX_RECORD_BYTES:
        # Name the field that takes the most room: that is the one to shorten.
        sizes = {k: len(_pack({k: v})) for k, v in signed.fields().items()}
        largest = max(sizes, key=lambda k: sizes[k])
        raise InvalidRecord(
            f"{_type_name(signed)}.{largest}",
            f"makes the record {len(data)} bytes, over the {MAX_RECORD_BYTES}-byte limit: "
            "shorten it",
        )
    checked = _parse(data, signed.created, _ALL_CHECKERS)[0]
    assert type(checked) is type(record)
    return checked


_S = TypeVar("_S", Listing, Tombstone, Profile, Review)


def stamped(record: _S, bits: int | None = None) -> _S:
    """``record`` (signed) with a proof-of-work stamp over its signature: about
    2**bits Argon2id evaluations (:mod:`p2pmarket.crypto.stamp`). Needs no key,
    so a record stored before stamps existed can be stamped later."""
    from p2pmarket.crypto import stamp

    return replace(record, stamp=stamp.solve(record.signature, bits), encoded=b"")


# ---------------------------------------------------------------------------
# Decoding and validation: one checker per type, shared by every path that
# accepts a record (import, gossip, DHT, sync, RPC, the store).


class _Fields:
    """Typed access to a decoded map that names the record and field in each error."""

    def __init__(
        self, kind: str, doc: dict[Any, Any], data: bytes, *, trusted: bool = False
    ) -> None:
        self.kind = kind
        self.doc = doc
        self.data = data  # the encoding the record was decoded from
        self.trusted = trusted  # from our own store: may predate stamps

    def fail(self, key: str, reason: str) -> InvalidRecord:
        return InvalidRecord(f"{self.kind}.{key}", reason)

    def get(self, key: str) -> Any:
        if key not in self.doc:
            raise self.fail(key, "missing")
        return self.doc[key]

    def bytes_(self, key: str, size: int) -> bytes:
        value = self.get(key)
        if not isinstance(value, bytes) or len(value) != size:
            raise self.fail(key, f"must be {size} bytes")
        return value

    def stamp(self) -> bytes:
        """The proof-of-work nonce (``pow``). Only its size is checked here; the
        work itself is checked with the signature (:func:`validate`, ingest).
        A record stored before stamps existed has none."""
        if self.trusted and "pow" not in self.doc:
            return b""
        return self.bytes_("pow", STAMP_SIZE)

    def int_(self, key: str, low: int, high: int) -> int:
        value = self.get(key)
        if type(value) is not int:
            raise self.fail(key, "must be an integer")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high} (got {value})")
        return value

    def text(self, key: str, limit: int, *, required: bool = False, one_line: bool = True) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "must be text")
        if len(value) > limit:
            raise self.fail(key, f"longer than {limit} characters (got {len(value)})")
        if required and not value.strip():
            raise self.fail(key, "must not be empty")
        if (_CONTROL_ONE_LINE if one_line else _CONTROL).search(value):
            raise self.fail(key, "contains control characters")
        return value

    def texts(self, key: str, count: int, limit: int) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or len(value) > count:
            raise self.fail(key, f"must be a list of at most {count}")
        for item in value:
            if not isinstance(item, str) or not item.strip() or len(item) > limit:
                raise self.fail(key, f"each must be 1 to {limit} characters of text")
            if _CONTROL_ONE_LINE.search(item):
                raise self.fail(key, "contains control characters")
        if len(set(value)) != len(value):
            raise self.fail(key, "has duplicates")
        return tuple(value)

    def times(self, now: int, *, lifetime: bool = True) -> tuple[int, int]:
        created = self.int_("ts", EARLIEST, MAX_SEQ)
        if created > now + CLOCK_SKEW:
            raise self.fail("ts", "is in the future: check this computer's clock")
        if not lifetime:
            return created, 0
        expires = self.int_("exp", created + 1, created + MAX_LIFETIME)
        if expires <= now:
            raise self.fail("exp", "has passed: the record expired")
        return created, expires

    def only(self, keys: frozenset[str]) -> None:
        extra = set(self.doc) - keys
        if extra:
            raise self.fail(sorted(map(str, extra))[0], "is not a known field")


_LISTING_KEYS: Final = frozenset(
    "cat cur desc exp img kind loc nonce pow price qty seller seq sig tags title ts type v".split()
)
_TOMBSTONE_KEYS: Final = frozenset("exp nonce pow seller seq sig ts type v".split())
_PROFILE_KEYS: Final = frozenset("bio contacts loc name owner pow seq sig ts type v".split())
_CATALOGUE_KEYS: Final = frozenset("items seller seq sig ts type v".split())
_REVIEW_KEYS: Final = frozenset(
    "contract pow reviewer seq sig stars subject text ts type v".split()
)


def _listing(f: _Fields, now: int) -> Listing:
    f.only(_LISTING_KEYS)
    kind = f.get("kind")
    if kind not in KINDS:
        raise f.fail("kind", "must be 'sell' or 'wanted'")
    currency = f.get("cur")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise f.fail("cur", "must be an ISO 4217 currency code such as IDR or USD")
    category = f.text("cat", MAX_CATEGORY, required=True)
    if not CATEGORY_RE.match(category):
        raise f.fail("cat", "must be lowercase words joined by '-', with at most one '/'")
    images = f.get("img")
    if not isinstance(images, list) or len(images) > MAX_IMAGES:
        raise f.fail("img", f"must be a list of at most {MAX_IMAGES} hashes")
    if not all(isinstance(h, bytes) and len(h) == 32 for h in images):
        raise f.fail("img", "each image hash must be 32 bytes (BLAKE2b-256 or SHA-256)")
    created, expires = f.times(now)
    return Listing(
        seller=f.bytes_("seller", 32),
        nonce=f.bytes_("nonce", 16),
        seq=f.int_("seq", 1, MAX_SEQ),
        kind=kind,
        title=f.text("title", MAX_TITLE, required=True),
        description=f.text("desc", MAX_DESCRIPTION, one_line=False),
        price=f.int_("price", 0, MAX_MINOR_UNITS),
        currency=currency,
        quantity=f.int_("qty", 1, MAX_QUANTITY),
        category=category,
        tags=f.texts("tags", MAX_TAGS, MAX_TAG),
        location=f.text("loc", MAX_LOCATION),
        created=created,
        expires=expires,
        images=tuple(images),
        signature=f.bytes_("sig", 64),
        stamp=f.stamp(),
        encoded=f.data,
    )


def _tombstone(f: _Fields, now: int) -> Tombstone:
    f.only(_TOMBSTONE_KEYS)
    created, expires = f.times(now)
    return Tombstone(
        seller=f.bytes_("seller", 32),
        nonce=f.bytes_("nonce", 16),
        seq=f.int_("seq", 1, MAX_SEQ),
        created=created,
        expires=expires,
        signature=f.bytes_("sig", 64),
        stamp=f.stamp(),
        encoded=f.data,
    )


def _profile(f: _Fields, now: int) -> Profile:
    f.only(_PROFILE_KEYS)
    created, _ = f.times(now, lifetime=False)
    return Profile(
        owner=f.bytes_("owner", 32),
        seq=f.int_("seq", 1, MAX_SEQ),
        name=f.text("name", MAX_NAME, required=True),
        bio=f.text("bio", MAX_BIO, one_line=False),
        contacts=f.texts("contacts", MAX_CONTACTS, MAX_CONTACT),
        location=f.text("loc", MAX_LOCATION),
        created=created,
        signature=f.bytes_("sig", 64),
        stamp=f.stamp(),
        encoded=f.data,
    )


def _catalogue(f: _Fields, now: int) -> Catalogue:
    f.only(_CATALOGUE_KEYS)
    created, _ = f.times(now, lifetime=False)
    items = f.get("items")
    if not isinstance(items, list) or len(items) > MAX_CATALOGUE:
        raise f.fail("items", f"must be a list of at most {MAX_CATALOGUE} entries")
    entries: list[tuple[bytes, int]] = []
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], bytes)
            or len(item[0]) != 16
            or type(item[1]) is not int
            or not 1 <= item[1] <= MAX_SEQ
        ):
            raise f.fail("items", "each entry must be [16-byte listing id, seq]")
        entries.append((item[0], item[1]))
    if len({listing for listing, _ in entries}) != len(entries):
        raise f.fail("items", "has duplicates")
    return Catalogue(
        seller=f.bytes_("seller", 32),
        seq=f.int_("seq", 1, MAX_SEQ),
        items=tuple(entries),
        created=created,
        signature=f.bytes_("sig", 64),
        encoded=f.data,
    )


def _contract(f: _Fields) -> Contract:
    doc = f.get("contract")
    if not isinstance(doc, list) or len(doc) != 8:
        raise f.fail("contract", "must be the 8 fields of a trade contract")
    trade, buyer, seller, terms, proposed, proposer, proposer_sig, acceptor_sig = doc
    sizes = [(trade, 16), (buyer, 32), (seller, 32), (proposer, 32)]
    sizes += [(proposer_sig, 64), (acceptor_sig, 64)]
    if not all(isinstance(value, bytes) and len(value) == size for value, size in sizes):
        raise f.fail("contract", "has a trade id, key or signature of the wrong size")
    if type(proposed) is not int or not EARLIEST <= proposed <= MAX_SEQ:
        raise f.fail("contract", "has no valid time the terms were proposed")
    try:
        parsed = parse_terms(terms)
    except ValueError as exc:
        raise f.fail("contract", str(exc)) from None
    if parsed is None or buyer == seller or proposer not in (buyer, seller):
        raise f.fail("contract", "is not between two parties who both signed it")
    return Contract(trade, buyer, seller, parsed, proposed, proposer, proposer_sig, acceptor_sig)


def _review(f: _Fields, now: int) -> Review:
    f.only(_REVIEW_KEYS)
    created, _ = f.times(now, lifetime=False)
    contract = _contract(f)
    reviewer = f.bytes_("reviewer", 32)
    subject = f.bytes_("subject", 32)
    if reviewer not in (contract.buyer, contract.seller):
        raise f.fail("reviewer", "is not a party to the contract")
    other = contract.seller if reviewer == contract.buyer else contract.buyer
    if subject != other:
        raise f.fail("subject", "is not the other party to the contract")
    if contract.proposed > created + CLOCK_SKEW:
        raise f.fail("contract", "was agreed after the review was written")
    return Review(
        reviewer=reviewer,
        subject=subject,
        seq=f.int_("seq", 1, MAX_SEQ),
        stars=f.int_("stars", 1, 5),
        text=f.text("text", MAX_REVIEW, one_line=False),
        contract=contract,
        created=created,
        signature=f.bytes_("sig", 64),
        stamp=f.stamp(),
        encoded=f.data,
    )


# Records the store keeps; a catalogue lives only in the DHT and has its own entry point.
_CHECKERS: Final[dict[str, Callable[[_Fields, int], Record]]] = {
    "listing": _listing,
    "tombstone": _tombstone,
    "profile": _profile,
    "review": _review,
}
_ALL_CHECKERS: Final[dict[str, Callable[[_Fields, int], Record | Catalogue]]] = {
    **_CHECKERS,
    "catalogue": _catalogue,
}


def decode(data: bytes, now: int) -> Record:
    """Parse and check every rule except the signature (see :func:`validate`).

    Split out so that bulk ingest can verify signatures in parallel batches.
    """
    return _decode(data, now)[0]


def _decode(data: bytes, now: int) -> tuple[Record, dict[str, Any]]:
    record, doc = _parse(data, now, _CHECKERS)
    assert not isinstance(record, Catalogue)
    return record, doc


def _parse(
    data: bytes, now: int, checkers: Mapping[str, Callable[[_Fields, int], Record | Catalogue]]
) -> tuple[Record | Catalogue, dict[str, Any]]:
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            None, f"the record is {len(data)} bytes; the limit is {MAX_RECORD_BYTES}"
        )
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_RECORD_BYTES)
    except UnicodeDecodeError:
        raise InvalidRecord(None, "text is not valid UTF-8") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise InvalidRecord(None, "not a msgpack record") from None
    if not isinstance(doc, dict):
        raise InvalidRecord(None, "a record must be a msgpack map")
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in checkers:
        raise InvalidRecord("type", f"unknown record type {shown(kind)}")
    checker = checkers[kind]
    # type() and not ==: msgpack's true equals 1 in Python.
    if type(doc.get("v")) is not int or doc["v"] != FORMAT_VERSION:
        raise InvalidRecord(f"{kind}.v", f"unsupported format version {shown(doc.get('v'))}")
    record = checker(_Fields(kind, doc, data), now)
    # Every value's type is checked above, so re-encoding the parsed map gives the
    # input back exactly when the values are minimally encoded, no key repeats,
    # and the keys come in ascending order.
    if list(doc) != sorted(doc) or _pack(doc) != data:
        raise InvalidRecord(None, f"the {kind} is not in canonical encoding")
    return record, doc


def decode_signed(data: bytes, now: int) -> tuple[Record, bytes]:
    """:func:`decode`, and the message the record's signature must cover: built from
    the parsed map, which saves bulk ingest re-encoding the record's fields."""
    record, doc = _decode(data, now)
    del doc["sig"], doc["pow"]
    return record, DOMAIN[doc["type"]] + _pack(doc)


def validate(data: bytes, now: int) -> Record:
    """Decode ``data`` and check every rule, the signature included."""
    return _verified(decode(data, now))


def validate_catalogue(data: bytes, now: int) -> Catalogue:
    """Decode a seller's catalogue and check every rule, the signature included."""
    record = _parse(data, now, {"catalogue": _catalogue})[0]
    assert isinstance(record, Catalogue)
    return _verified(record)


_V = TypeVar("_V", Record, Catalogue)


def _verified(record: _V) -> _V:
    # Imported here so that read-only paths that only decode trusted bytes from
    # the local store do not load libsodium.
    from p2pmarket.crypto import stamp
    from p2pmarket.crypto.signing import verify

    if not verify(author(record), signed_message(record), record.signature):
        raise InvalidRecord("sig", f"the {_type_name(record)}'s signature does not verify")
    if not isinstance(record, Catalogue) and not stamp.check(record.signature, record.stamp):
        raise InvalidRecord("pow", STAMP_REFUSED)
    if isinstance(record, Review) and not record.contract.verify():
        raise InvalidRecord("review.contract", "is not signed by both of its parties")
    return record


def load_trusted(data: bytes) -> Record:
    """Decode bytes that this node validated before storing them (no clock, no signature).

    Validation already passed at ingest, so the map is only turned back into its
    dataclass: the per-field checks cost ~25 µs a record, paid 20 times by every
    search page. Raises StoreError if the bytes no longer decode (disk damage)."""
    try:
        doc = msgpack.unpackb(data, raw=False)
        kind = doc["type"]
        if kind == "listing":
            return Listing(
                seller=doc["seller"],
                nonce=doc["nonce"],
                seq=doc["seq"],
                kind=doc["kind"],
                title=doc["title"],
                description=doc["desc"],
                price=doc["price"],
                currency=doc["cur"],
                quantity=doc["qty"],
                category=doc["cat"],
                tags=tuple(doc["tags"]),
                location=doc["loc"],
                created=doc["ts"],
                expires=doc["exp"],
                images=tuple(doc["img"]),
                signature=doc["sig"],
                stamp=doc.get("pow", b""),
                encoded=data,
            )
        if kind == "tombstone":
            return Tombstone(
                seller=doc["seller"],
                nonce=doc["nonce"],
                seq=doc["seq"],
                created=doc["ts"],
                expires=doc["exp"],
                signature=doc["sig"],
                stamp=doc.get("pow", b""),
                encoded=data,
            )
        return _CHECKERS[kind](_Fields(kind, doc, data, trusted=True), doc["ts"])
    except (ValueError, TypeError, KeyError, InvalidRecord, msgpack.UnpackException):
        raise StoreError(
            "a record in the store is damaged; export what you can and rebuild the store"
        ) from None
