"""Reputation over the store: each key's figures, and every rated seller ranked.

The ranking (for ``search --sort rating`` and ``--min-rating``) costs a scan of
the party index, so it is kept until the store changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from p2pmarket.records import Profile
from p2pmarket.reputation import FULL_HISTORY, Reputation, SellerInfo, reputation
from p2pmarket.store import ListingStore


class Ratings:
    def __init__(self, store: ListingStore, profile: Callable[[bytes], Profile | None]) -> None:
        self._store = store
        self._profile = profile
        self._ranked: tuple[int, list[tuple[bytes, float]]] | None = None

    def of(self, key: bytes) -> Reputation:
        reviews = self._store.reviews

        def history(reviewer: bytes) -> int:
            return reviews.counterparties(reviewer, besides=key, enough=FULL_HISTORY)

        return reputation(key, reviews.dealings(key), history)

    def ranked(self) -> list[tuple[bytes, float]]:
        """(key, rating) of every key with reviews, the best first."""
        generation = self._store.generation
        if self._ranked is None or self._ranked[0] != generation:
            found = []
            for key in self._store.reviews.reviewed():
                rating = self.of(key).rating
                if rating is not None:
                    found.append((key, rating))
            found.sort(key=lambda item: (-item[1], item[0]))
            self._ranked = (generation, found)
        return self._ranked[1]

    def sellers(self, keys: Iterable[bytes]) -> list[SellerInfo]:
        """Profile and reputation of each key (once each, in first-seen order)."""
        found = []
        for key in dict.fromkeys(keys):
            profile = self._profile(key)
            found.append(
                SellerInfo(
                    key,
                    profile.name if profile else "",
                    profile.location if profile else "",
                    self.of(key),
                )
            )
        return found
