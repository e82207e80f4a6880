"""The key layout of the LevelDB store: every prefix in one place.

All keys of one listing's entries end in the same 24-byte *suffix*: the inverted
creation time (8 bytes, big-endian) then the listing id (16 bytes). Every index is
therefore ordered newest-first, and any two posting lists can be intersected by
seeking on the suffix alone (a leapfrog join), without reading any record.

=====================================  ===========================================
key                                    value
=====================================  ===========================================
``\\x00schema``                         schema version (ascii digits)
``\\x00count``                          live listings in the cache (ascii digits)
``\\x00synced``                         Unix time a sync last completed (ascii digits)
``\\x00evicted``                        present once anything was ever evicted
``R`` id                               the record: listing or tombstone (msgpack)
``T`` suffix                           summary of a live listing (see SUMMARY)
``W`` term ``\\x00`` suffix              b"" — posting of a search term
``P`` currency price(8) suffix         b"" — live listings by price
``X`` expires(8) id                    b"" — records by expiry, for collection
``F`` owner(32)                        a profile record
``S`` sync key                         seq(8) expires(8) flags(1): what sync compares
``M`` ``N`` ``O`` ``Q``                      direct messages (see :mod:`p2pmarket.store.messages`)
``K`` key(32)                          time(8): a blocked peer
``B`` ``H``                              others' mail we hold (see :mod:`p2pmarket.store.mailbox`)
``G`` trade(16) move(16)               a move of one of our trades (:mod:`p2pmarket.store.trades`)
``V`` contract(16) reviewer(32)        a review (see :mod:`p2pmarket.store.reviews`)
``U`` key(32) other(32) contract(16)    the party index reputation is computed from
``Y`` key(32)                          u32: distinct others the key dealt with
=====================================  ===========================================

A *sync key* names a record in the set two nodes reconcile: ``L`` + listing id
for a listing or its tombstone, ``F`` + owner for a profile, ``V`` + contract
id + reviewer for a review. One key has one
live version, so comparing (key, seq) pairs is enough to know who is behind.
A flag marks a version that was *evicted* to keep the cache under its cap: it is
still counted by sync (so peers do not offer it again) but no longer held. The
same flag marks a record stored before proof-of-work stamps (schema 4): kept
for search, but not served, since peers would refuse it.

Search terms are the text tokens (``sepeda``) plus filter terms that start with
``#``, which no text token can: ``#g:vehicles``, ``#g:vehicles/bicycles``,
``#s:<seller hex>``, ``#l:<location token>`` (see :mod:`p2pmarket.store.terms`).
"""

from __future__ import annotations

import struct
from typing import Final

from p2pmarket.records import SYNC_LISTING, SYNC_PROFILE, SYNC_REVIEW

SCHEMA_VERSION: Final = 4
SCHEMA_KEY: Final = b"\x00schema"
COUNT_KEY: Final = b"\x00count"
SYNCED_KEY: Final = b"\x00synced"
EVICTED_KEY: Final = b"\x00evicted"
UNSTAMPED_KEY: Final = b"\x00unstamped"  # present while pre-stamp records are kept

RECORD: Final = b"R"
TIME: Final = b"T"
TERM: Final = b"W"
PRICE: Final = b"P"
EXPIRY: Final = b"X"
PROFILE: Final = b"F"
SYNC: Final = b"S"
# Direct messages: see p2pmarket.store.messages.
MESSAGE: Final = b"M"
BY_ID: Final = b"N"
OUTBOX: Final = b"O"
SEEN: Final = b"Q"
BLOCKED: Final = b"K"
# Mail held for others: see p2pmarket.store.mailbox.
HELD: Final = b"B"
HELD_BY_DIGEST: Final = b"H"
TRADE: Final = b"G"
REVIEW: Final = b"V"
PARTY: Final = b"U"
COUNTERPARTIES: Final = b"Y"

SYNC_VALUE: Final = struct.Struct(">QQB")
EVICTED: Final = 1
NEVER: Final = 2**64 - 1  # the expiry of a record that does not expire (profiles, reviews)

_U64: Final = struct.Struct(">Q")
_MAX_U64: Final = 2**64 - 1
SUFFIX_SIZE: Final = 24

# expires, price, kind (0 sell, 1 wanted), currency, the seller's first 8 bytes:
# every filter search checks per candidate without reading the record (a blocked
# or rated seller too). 8 bytes keep the summary small; matching another seller's
# prefix would take ~2^64 key generations, for nothing but hiding one's own listings.
SUMMARY: Final = struct.Struct(">QQB3s8s")
SELLER_PREFIX: Final = 8


def seller_prefix(seller: bytes) -> bytes:
    return seller[:SELLER_PREFIX]


def suffix(created: int, listing_id: bytes) -> bytes:
    return _U64.pack(_MAX_U64 - created) + listing_id


def suffix_id(sfx: bytes) -> bytes:
    return sfx[8:]


def term_prefix(term: str) -> bytes:
    return TERM + term.encode("utf-8") + b"\x00"


def price_key(currency: str, price: int, sfx: bytes) -> bytes:
    return PRICE + currency.encode("ascii") + _U64.pack(price) + sfx


def expiry_key(expires: int, record_id: bytes) -> bytes:
    return EXPIRY + _U64.pack(expires) + record_id


def expiry_bound(now: int) -> bytes:
    """The first expiry key that is still alive at ``now``."""
    return EXPIRY + _U64.pack(now + 1)


def listing_sync_key(listing_id: bytes) -> bytes:
    return SYNC_LISTING + listing_id


def profile_sync_key(owner: bytes) -> bytes:
    return SYNC_PROFILE + owner


def sync_entry(key: bytes, seq: int, expires: int, flags: int = 0) -> tuple[bytes, bytes]:
    return SYNC + key, SYNC_VALUE.pack(seq, expires, flags)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def record_key(sync_key: bytes) -> bytes | None:
    """Where the record a sync key names is kept (None for an unknown kind)."""
    prefix = {SYNC_LISTING: RECORD, SYNC_PROFILE: PROFILE, SYNC_REVIEW: REVIEW}.get(sync_key[:1])
    return None if prefix is None else prefix + sync_key[1:]
