"""Per-peer token buckets: how many gossip records one neighbour may hand us.

GossipSub's own spam protection in py-libp2p 0.8.1 silently stops forwarding above
10 messages/s per peer and topic, which loses honest bursts (a seller importing a
catalogue); we turn it off and count here instead. A peer over its budget has the
message rejected, which GossipSub's scoring records against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def forget(self, key: str) -> None:
        """Drop a disconnected peer's bucket so the table does not grow forever."""
        self._buckets.pop(key, None)
