"""Per-seller publish limits: how fast one author key can make the network store
and forward records.

The per-peer gossip limit (:mod:`p2pmarket.network.ratelimit`) bounds what one
*neighbour* hands us, but a seller's records reach us through many forwarders, so
it does not bound a *seller*. This table does: one token bucket per author key
(``records.author``), charged only for records that were new to us and stored.
Charging only stored records matters: anyone can replay a seller's old records,
and if a replay cost the seller a token, a replayer could silence an honest
seller. Only the seller can make records that are new, so only the seller can
spend its own budget.

Memory is bounded by :data:`MAX_SELLERS` buckets. A new key arriving at a full
table pushes out the bucket used least recently. Forgetting a bucket hands its
seller a fresh burst, but buying that takes ``MAX_SELLERS`` other keys each
getting a new record accepted, and every one of those must carry its own stamp:
far more work than the ``burst`` records it frees, so cycling keys gains an
attacker nothing over stamping under one key.

The defaults (``NetworkConfig.seller_rate`` and ``seller_burst``: 3 records a
second, bursts of 500) are set against the stamp (``crypto/stamp.py``: ~0.45 s of
one core per record, ~8,000 an hour): 10,800 an hour is more than one core can
stamp, so an honest seller publishing from one machine never meets the limit,
and the burst lets a seller put a whole catalogue up at once.

Pure: no I/O and no records import; the node (``node.py``) decides what to
charge. Time comes from a clock given at construction, or per call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# Buckets kept at most: ~220 bytes each with its key (measured), ~4.5 MB in all.
MAX_SELLERS: Final = 20_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class SellerLimits:
    """``rate`` records a second per author key, with bursts of up to ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float],
        *,
        max_sellers: int = MAX_SELLERS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sellers = max_sellers
        self._clock = clock
        # Least recently charged first: the first to go when the table is full.
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def tokens(self, key: bytes, now: float | None = None) -> float:
        """What ``key`` may still publish now (a fraction: on its way to one)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        now = self._clock() if now is None else now
        return min(self.burst, bucket.tokens + max(0.0, now - bucket.stamp) * self.rate)

    def allows(self, key: bytes, now: float | None = None) -> bool:
        """Whether ``key`` may publish one more record now. Charges nothing, and
        adds no bucket: checking a key costs no memory."""
        return self.tokens(key, now) >= 1

    def wait(self, key: bytes, now: float | None = None) -> float:
        """Seconds until ``key`` may publish one more record (0 if it may now)."""
        return max(0.0, (1 - self.tokens(key, now)) / self.rate)

    def charge(self, key: bytes, now: float | None = None) -> None:
        """Count one record of ``key``'s. An empty bucket stays at zero: a peer
        charges only what it stored, and it stores nothing past the limit."""
        now = self._clock() if now is None else now
        tokens = self.tokens(key, now)
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_sellers:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(tokens, now)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = max(0.0, tokens - 1)
        bucket.stamp = max(bucket.stamp, now)
