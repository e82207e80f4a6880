"""The cache cap (``max_listings``), kept on every path that stores others' records.

Catch-up sync trims the cache after each batch it stores (``CatchUp``). Gossip,
the DHT and ``listing import`` used to wait for the node's upkeep, ten minutes
apart, so a flood could grow the cache far past its cap in the meantime. Here
they check after each record (or each chunk of an import) and trim at once.

Checking is one comparison. Trimming costs a scan of the oldest listings, so the
cache may run a step over its cap before it is trimmed back to the cap: each
scan then evicts a step's worth of listings, never a single one per record
stored. The user's own listings are never evicted (``ListingStore.evict``); when
they alone are over the cap, the next trim waits for a step of others' listings
to arrive rather than scanning past the own ones again for every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from p2pmarket.store import ListingStore

# Listings a trim removes at most in one scan, and how far past the cap the cache
# may run before one: 0.1% of the default cap of a million, 1% of a small cap.
MAX_STEP: Final = 1000


def step_for(cap: int) -> int:
    """How far past ``cap`` the cache may run before it is trimmed back."""
    return max(1, min(MAX_STEP, cap // 100))


class CacheCap:
    """Keeps ``store`` within ``cap`` listings, sparing ``own_key``'s."""

    def __init__(
        self, store: ListingStore, cap: int, own_key: bytes, now: Callable[[], int]
    ) -> None:
        self._store = store
        self.cap = cap
        self.step = step_for(cap)
        self._own_key = own_key
        self._now = now
        self._trigger = cap + self.step

    def check(self) -> int:
        """After storing: trim if the cache has run a step past its cap; return
        how many listings went. Cheap when there is nothing to do."""
        if self._store.listing_count <= self._trigger:
            return 0
        return self.trim()

    def trim(self) -> int:
        """Collect expired records, then evict the oldest others' listings, until
        the cache holds at most its cap; return how many went."""
        store = self._store
        gone = 0
        while store.listing_count > self.cap:
            step = store.collect_expired(self._now(), limit=MAX_STEP)
            if not step:
                break
            gone += step
        if store.listing_count > self.cap:
            gone += store.evict(self.cap, self._own_key, step=MAX_STEP)
        # Own listings may keep the count above the cap: wait a step past that.
        self._trigger = max(self.cap, store.listing_count) + self.step
        return gone

    def checking(self, items: Iterable[bytes], every: int) -> Iterator[bytes]:
        """``items``, checking the cap every ``every`` items taken: a bulk import
        (which reads ahead and stores in chunks) is trimmed as it goes, between
        its writes, rather than once at the end."""
        for count, item in enumerate(items, start=1):
            if count % every == 0:
                self.check()
            yield item
