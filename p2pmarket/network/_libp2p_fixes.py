"""Workarounds for py-libp2p 0.8.1 defects, in one place. Revisit on every upgrade.

1. ``libp2p.network.swarm._HAPPY_EYEBALLS_DELAY`` (250 ms): the swarm waits the
   whole head start before returning *every* dial, even one that succeeded at
   once, so each connect costs ~250 ms instead of ~25 ms, and the DHT dials a
   lot. We set it to 0: with one address per peer there is nothing to race.
2. Logging: ``import libp2p`` gives its "libp2p" logger no handler and stops it
   propagating, so Python's last-resort handler prints every expected failure
   (each failed dial, at ERROR) on stderr, over the daemon's own output. A
   NullHandler silences that; ``LIBP2P_DEBUG`` still turns libp2p's logs on.
"""

from __future__ import annotations

import logging

import libp2p.network.swarm as _swarm

_applied = False


def apply() -> None:
    global _applied
    if not _applied:
        _swarm._HAPPY_EYEBALLS_DELAY = 0.0
        logging.getLogger("libp2p").addHandler(logging.NullHandler())
        _applied = True
