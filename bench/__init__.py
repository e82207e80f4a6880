"""The p2pmarket benchmark suite: ``python -m bench [--quick] [NAME]``.

NAME is one of ingest, search, coldstart, gossip, dht, memory, sync, messages,
reviews, spam and flood (default: all).

Each benchmark measures one of our figures beside a baseline taken in the same
run on the same data, so a slow machine shifts both and the comparison holds.
"""

from __future__ import annotations

import os

# Benchmarks run a test network's proof-of-work difficulty (1 bit, as the test
# suite does): the million-listing data sets are signed and stamped in minutes,
# and every record received still pays its one Argon2id check, which is what a
# node pays at any difficulty. The spam benchmark measures the network's real
# difficulty itself. Set before any daemon or worker process is started.
os.environ.setdefault("P2PMARKET_STAMP_BITS", "1")

from bench.config import Sizes as Sizes
from bench.runner import BENCHMARKS as BENCHMARKS
from bench.runner import run as run
