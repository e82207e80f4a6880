"""Builders shared by the tests: fixed keys, a fixed clock and signed records.

Everything here is deterministic: the keys come from fixed seeds, the clock is a
constant that tests move by hand, and listing nonces come from a counter.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import msgpack

from p2pmarket import records
from p2pmarket.crypto import stamp
from p2pmarket.crypto.signing import Signer
from p2pmarket.records import DAY, Listing, Profile, Review, Tombstone
from p2pmarket.trade import Contract, Terms, make_move, make_offer, resolve

# 2025-06-15T15:06:40Z: a fixed "now" for every test that does not move the clock.
NOW = 1_750_000_000

SELLER = Signer(b"\x01" * 32)
OTHER = Signer(b"\x02" * 32)
THIRD = Signer(b"\x03" * 32)

_nonces = itertools.count(1)


def next_nonce() -> bytes:
    return next(_nonces).to_bytes(16, "big")


class FakeClock:
    """A clock for ``Node(clock=...)`` that moves only when a test says so."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)

    def advance(self, seconds: int) -> None:
        self.now += seconds


def draft_listing(signer: Signer = SELLER, **overrides: Any) -> Listing:
    """An unsigned listing by ``signer`` with sensible defaults; any field can be overridden."""
    created = overrides.pop("created", NOW)
    fields: dict[str, Any] = {
        "seller": signer.public_key,
        "nonce": next_nonce(),
        "seq": 1,
        "kind": "sell",
        "title": "Sepeda lipat",
        "description": "Jarang dipakai, mulus.",
        "price": 15_000_000,
        "currency": "IDR",
        "quantity": 1,
        "category": "vehicles/bicycles",
        "tags": ("lipat",),
        "location": "Sleman",
        "created": created,
        "expires": created + 30 * DAY,
    }
    fields.update(overrides)
    return Listing(**fields)


def signed_listing(signer: Signer = SELLER, **overrides: Any) -> Listing:
    """A listing signed by ``signer`` through :func:`records.sign` (every rule but the clock)."""
    signed = records.sign(draft_listing(signer, **overrides), signer.sign)
    assert isinstance(signed, Listing)
    return signed


def signed_tombstone(
    listing: Listing, signer: Signer = SELLER, *, seq: int | None = None, created: int = NOW
) -> Tombstone:
    """The withdrawal of ``listing``, by default one seq above it, outliving it."""
    draft = Tombstone(
        seller=listing.seller,
        nonce=listing.nonce,
        seq=listing.seq + 1 if seq is None else seq,
        created=created,
        expires=max(listing.expires, created + 1),
    )
    signed = records.sign(draft, signer.sign)
    assert isinstance(signed, Tombstone)
    return signed


def signed_profile(signer: Signer = SELLER, **overrides: Any) -> Profile:
    fields: dict[str, Any] = {
        "owner": signer.public_key,
        "seq": 1,
        "name": "Budi",
        "bio": "Jual sepeda bekas.",
        "contacts": ("wa: 0812 0000 0000",),
        "location": "Yogyakarta",
        "created": NOW,
    }
    fields.update(overrides)
    signed = records.sign(Profile(**fields), signer.sign)
    assert isinstance(signed, Profile)
    return signed


def agreed_contract(
    buyer: Signer = OTHER,
    seller: Signer = SELLER,
    *,
    trade: bytes = b"\x0a" * 16,
    price: int = 150_000_000,
    when: int = NOW,
) -> Contract:
    """A contract both parties really signed: the buyer's offer, the seller's accept."""
    terms = Terms(b"\x0b" * 16, 1, price, "IDR", 1, "COD di Malioboro", b"\x0c" * 32)
    offer = make_offer(buyer, seller.public_key, terms, when, trade)
    view = resolve([offer], trade, when)
    assert view is not None
    accept = make_move(seller, view, "accept", 1, when)
    agreed = resolve([offer, accept], trade, when)
    assert agreed is not None and agreed.contract is not None
    return agreed.contract


def signed_review(
    reviewer: Signer = OTHER, contract: Contract | None = None, **overrides: Any
) -> Review:
    """A review of ``contract`` (default: OTHER bought from SELLER) by ``reviewer``."""
    contract = contract or agreed_contract()
    subject = contract.seller if reviewer.public_key == contract.buyer else contract.buyer
    fields: dict[str, Any] = {
        "reviewer": reviewer.public_key,
        "subject": subject,
        "seq": 1,
        "stars": 5,
        "text": "Sepeda sesuai foto, penjual ramah.",
        "contract": contract,
        "created": NOW,
    }
    fields.update(overrides)
    signed = records.sign(Review(**fields), reviewer.sign)
    assert isinstance(signed, Review)
    return signed


def updated(listing: Listing, signer: Signer = SELLER, **changes: Any) -> Listing:
    """The next version (seq + 1 unless given) of ``listing`` with ``changes``, signed."""
    changes.setdefault("seq", listing.seq + 1)
    draft = replace(listing, signature=b"", encoded=b"", **changes)
    signed = records.sign(draft, signer.sign)
    assert isinstance(signed, Listing)
    return signed


def pack(doc: dict[str, Any]) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


def raw_record(fields: dict[str, Any], signer: Signer = SELLER, *, domain: str = "") -> bytes:
    """Wire bytes for arbitrary (possibly invalid) ``fields`` with a real signature.

    The signature is over ``fields`` as given, under ``domain`` (default: the
    record's own type); the map is laid out in the key order :func:`records.encode`
    uses, so a test can break exactly one rule while every other rule, the
    signature and the canonical form included, still holds.
    """
    message = records.DOMAIN[domain or fields["type"]] + pack(fields)
    signature = signer.sign(message)
    doc = {**fields, "sig": signature}
    if fields.get("type") != "catalogue":  # a record carries a stamp over its signature
        doc["pow"] = stamp.solve(signature)
    order = _wire_key_order(fields.get("type"))
    ordered = [k for k in order if k in doc] + [k for k in doc if k not in order]
    return pack({k: doc[k] for k in ordered})


def _wire_key_order(type_name: object) -> list[str]:
    """The key order of a valid record of this type as records.encode writes it."""
    reference: Any
    if type_name == "tombstone":
        reference = signed_tombstone(signed_listing())
    elif type_name == "profile":
        reference = signed_profile()
    elif type_name == "review":
        reference = signed_review()
    else:
        reference = signed_listing()
    return list(msgpack.unpackb(records.encode(reference), raw=False))


def listing_fields(**overrides: Any) -> dict[str, Any]:
    """The signed fields of a default listing by SELLER, with ``overrides`` applied."""
    fields = draft_listing(SELLER).fields()
    fields.update(overrides)
    return fields
