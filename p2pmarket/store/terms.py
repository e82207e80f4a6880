"""What a listing is indexed under: its search terms and its filter summary.

The text index covers the title, tags, category and location, not the
description. That is a measured choice: a listing's description has about three
times as many distinct words as all the other fields together, and every word is
one LevelDB key to write, so indexing it cut bulk ingest to a third (to ~0.3 times the
signature-verify rate). Marketplaces made the same call before us (eBay searches
titles by default); sellers put what buyers search for in the title and tags.

Kind and currency are not posting lists: they are checked from the summary, as
each matches so large a share of the cache that a posting list would never be the
selective one in a join.
"""

from __future__ import annotations

from p2pmarket.records import Listing
from p2pmarket.store import layout
from p2pmarket.text import tokens


def listing_terms(listing: Listing) -> set[str]:
    """Every search term a listing is found by (see :mod:`p2pmarket.store.layout`)."""
    places = tokens(listing.location)
    terms = set(tokens(f"{listing.title} {' '.join(listing.tags)}"))
    terms.update(tokens(listing.category))
    terms.update(places)
    terms.update(f"#l:{t}" for t in places)
    terms.add(f"#g:{listing.category}")
    terms.add(f"#g:{listing.category.split('/', 1)[0]}")
    terms.add(f"#s:{listing.seller.hex()}")
    return terms


def term_keys(listing: Listing, sfx: bytes) -> list[bytes]:
    """The posting keys of ``listing`` whose index suffix is ``sfx``."""
    tail = b"\x00" + sfx
    return [b"".join((layout.TERM, term.encode(), tail)) for term in listing_terms(listing)]


def summary(listing: Listing) -> bytes:
    return layout.SUMMARY.pack(
        listing.expires,
        listing.price,
        KIND_CODES[listing.kind],
        listing.currency.encode("ascii"),
        layout.seller_prefix(listing.seller),
    )


KIND_CODES = {"sell": 0, "wanted": 1}
