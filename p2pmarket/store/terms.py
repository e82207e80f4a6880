"""What a listing is indexed under: its search terms and its filter summary."""

from __future__ import annotations

from p2pmarket.records import Listing
from p2pmarket.store import layout
from p2pmarket.text import tokens


def listing_terms(listing: Listing) -> set[str]:
    """Every search term a listing is found by (see :mod:`p2pmarket.store.layout`)."""
    text = " ".join(
        (
            listing.title,
            listing.description,
            " ".join(listing.tags),
            listing.category.replace("/", " ").replace("-", " "),
            listing.location,
        )
    )
    terms = set(tokens(text))
    terms.update(f"#l:{t}" for t in tokens(listing.location))
    top = listing.category.split("/", 1)[0]
    terms.update(
        (
            f"#k:{listing.kind}",
            f"#c:{listing.currency}",
            f"#g:{listing.category}",
            f"#g:{top}",
            f"#s:{listing.seller.hex()}",
        )
    )
    return terms


def summary(listing: Listing) -> bytes:
    return layout.SUMMARY.pack(
        listing.expires,
        listing.price,
        0 if listing.kind == "sell" else 1,
        listing.currency.encode("ascii"),
    )
