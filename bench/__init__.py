"""The p2pmarket benchmark suite: ``python -m bench [--quick] [NAME]``.

NAME is one of ingest, search, coldstart, gossip, dht, memory and sync (default: all).

Each benchmark measures one of our figures beside a baseline taken in the same
run on the same data, so a slow machine shifts both and the comparison holds.
"""

from __future__ import annotations

from bench.config import Sizes as Sizes
from bench.runner import BENCHMARKS as BENCHMARKS
from bench.runner import run as run
