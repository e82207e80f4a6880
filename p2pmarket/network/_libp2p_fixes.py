"""Workarounds for py-libp2p 0.8.1 defects, in one place. Revisit on every upgrade.

1. ``libp2p.network.swarm._HAPPY_EYEBALLS_DELAY`` (250 ms): the swarm waits the
   whole head start before returning *every* dial, even one that succeeded at
   once, so each connect costs ~250 ms instead of ~25 ms, and the DHT dials a
   lot. We set it to 0: with one address per peer there is nothing to race.
2. Logging: ``import libp2p`` gives its "libp2p" logger no handler and stops it
   propagating, so Python's last-resort handler prints every expected failure
   (each failed dial, at ERROR) on stderr, over the daemon's own output. A
   NullHandler silences that; ``LIBP2P_DEBUG`` still turns libp2p's logs on.
3. Pubsub caches every *failed* validation for 300 s under the message id, which
   is the record's hash: a verdict about one neighbour (over its rate limit)
   would block the same record from every other peer for five minutes, and an
   attacker could relay each new listing first, over budget, to suppress it.
   :func:`cache_only_successes` keeps only successes; a repeated invalid record
   costs one more check and penalises its own sender.
4. ``PeerScorer.remove_peer`` forgets a peer's behaviour penalty when it
   disconnects, so a misbehaving peer could reconnect with a clean score; the
   network keeps its own ledger and applies it again on reconnect.
"""

from __future__ import annotations

import logging

import libp2p.network.swarm as _swarm
from libp2p.pubsub.pubsub import Pubsub, ValidationCache, ValidationResult

_applied = False


def apply() -> None:
    global _applied
    if not _applied:
        _swarm._HAPPY_EYEBALLS_DELAY = 0.0
        logging.getLogger("libp2p").addHandler(logging.NullHandler())
        _applied = True


class _SuccessOnlyCache(ValidationCache):
    def put(self, msg_id: bytes, result: ValidationResult) -> None:
        if result.is_valid:
            super().put(msg_id, result)


def cache_only_successes(pubsub: Pubsub) -> None:
    old = pubsub.validation_cache
    pubsub.validation_cache = _SuccessOnlyCache(old.ttl, old.max_size)
