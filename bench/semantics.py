"""Which listing fields our search covers, found by asking it, not by assuming.

A baseline is only comparable if it answers the same question. What p2pmarket
indexes is a design decision that has changed before (the description was dropped
from the index to speed up ingest), so instead of hard-coding it, the bench stores
one listing whose every field holds its own marker word and searches for each
marker. The SQLite tables and the query words then use exactly the fields found.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Final

from p2pmarket import records
from p2pmarket.crypto.signing import Signer
from p2pmarket.records import DAY, Listing
from p2pmarket.store import ListingStore, Query

FIELDS: Final = ("title", "description", "tags", "category", "location")
_PROBE_TIME: Final = 1_700_000_000


def field_text(listing: Listing, name: str) -> str:
    """The text of one searchable field, as an FTS5 column would hold it."""
    if name == "tags":
        return " ".join(listing.tags)
    value = getattr(listing, name)
    assert isinstance(value, str)
    return value


def _marker(name: str) -> str:
    return f"zq{name}mark"


@lru_cache(maxsize=1)
def indexed_fields() -> tuple[str, ...]:
    """The fields whose words our search finds, in :data:`FIELDS` order."""
    signer = Signer(bytes(32))
    draft = Listing(
        seller=signer.public_key,
        nonce=bytes(16),
        seq=1,
        kind="sell",
        title=f"Probe {_marker('title')}",
        description=f"probe {_marker('description')}",
        price=100,
        currency="IDR",
        quantity=1,
        category=f"{_marker('category')}/probe",
        tags=(_marker("tags"),),
        location=f"Probe {_marker('location')}",
        created=_PROBE_TIME,
        expires=_PROBE_TIME + DAY,
    )
    listing = records.sign(draft, signer.sign)
    found = []
    with tempfile.TemporaryDirectory() as tmp, ListingStore(Path(tmp) / "store") as store:
        store.put_many([listing])
        for name in FIELDS:
            page = store.search(Query(text=_marker(name)), _PROBE_TIME)
            if page.listings:
                found.append(name)
    return tuple(found)
