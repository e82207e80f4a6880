"""Per-peer token buckets: how many gossip records one neighbour may hand us.

GossipSub's own spam protection in py-libp2p 0.8.1 silently stops forwarding above
10 messages/s per peer and topic, which loses honest bursts (a seller importing a
catalogue); we turn it off and count here instead. A peer over its budget has the
message rejected, which GossipSub's scoring records against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``rate`` records a second per key, with bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting those changes nothing. A
        disconnected peer's bucket is kept until then, so reconnecting does not
        buy a fresh burst."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[key]
