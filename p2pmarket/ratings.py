"""Reputation over the store: each key's figures, and every rated seller ranked.

Reputations and the ranking (for ``search --sort rating`` and ``--min-rating``,
a scan of the party index) are kept until a review is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from p2pmarket.records import Profile
from p2pmarket.reputation import PRIOR_STARS, Reputation, SellerInfo, reputation
from p2pmarket.store import ListingStore


class Ratings:
    def __init__(self, store: ListingStore, profile: Callable[[bytes], Profile | None]) -> None:
        self._store = store
        self._profile = profile
        self._ranked: tuple[int, list[tuple[bytes, float]]] | None = None
        # Reputations computed since the store last changed.
        self._known: tuple[int, dict[bytes, Reputation]] = (-1, {})

    def of(self, key: bytes) -> Reputation:
        generation = self._store.reviews.generation
        if self._known[0] != generation:
            self._known = (generation, {})
        known = self._known[1].get(key)
        if known is None:
            reviews = self._store.reviews

            def history(reviewer: bytes) -> int:
                # The reviewer dealt with ``key``: every other counterparty is history.
                return reviews.counterparties(reviewer) - 1

            known = self._known[1][key] = reputation(key, reviews.dealings(key), history)
        return known

    def ranked(self) -> list[tuple[bytes, float]]:
        """(key, rating) of every key with reviews, the best first."""
        generation = self._store.reviews.generation
        if self._ranked is None or self._ranked[0] != generation:
            found = []
            for key in self._store.reviews.reviewed():
                rating = self.of(key).rating
                if rating is not None:
                    found.append((key, rating))
            found.sort(key=lambda item: (-item[1], item[0]))
            self._ranked = (generation, found)
        return self._ranked[1]

    def standing(self, floor: float | None) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """The rated keys at or above ``floor`` for a rating sort: those an unrated
        seller would not outrank (rated at least the prior), then those below it,
        each best first."""
        eligible = [(key, r) for key, r in self.ranked() if floor is None or r >= floor]
        return (
            tuple(key for key, r in eligible if r >= PRIOR_STARS),
            tuple(key for key, r in eligible if r < PRIOR_STARS),
        )

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
