"""How big each benchmark is: the full run, the quick run, and what the test uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

DATA_DIR: Final = Path(__file__).resolve().parent / ".data"
REPORT: Final = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes. The search latency target applies to the largest search size."""

    ingest: int = 100_000
    search: tuple[int, ...] = (100_000, 1_000_000)
    queries_per_shape: int = 200
    coldstart_runs: int = 15
    gossip_nodes: tuple[int, ...] = (10, 25, 50)  # one network of each size
    gossip_publishes: int = 20  # listings timed per network
    dht_nodes: int = 25  # publishing nodes; two fetchers join them
    dht_fetches: int = 40
    memory_listings: int = 100_000  # in the daemon's store
    memory_idle: float = 5.0  # seconds idle before RSS is read
    sync_listings: int = 100_000  # held by each peer a new node syncs from
    reviews: int = 5_000  # over the smallest search dataset's 200 sellers
    spam_stamps: int = 200  # listings and offline messages stamped, each
    spam_bits: int | None = None  # their difficulty; None: the network's (crypto/stamp.py)
    flood_records: int = 10_000  # invalid records sent at one node, per attack phase
    flood_publishes: int = 30  # honest listings in the baseline (one every 0.5 s)
    seed: int = 1


FULL: Final = Sizes()
QUICK: Final = Sizes(
    ingest=5_000,
    search=(5_000, 20_000),
    queries_per_shape=40,
    coldstart_runs=5,
    gossip_nodes=(10,),
    gossip_publishes=5,
    dht_nodes=8,
    dht_fetches=6,
    memory_listings=5_000,
    memory_idle=2.0,
    sync_listings=5_000,
    reviews=500,
    spam_stamps=20,
    spam_bits=8,
    flood_records=150,
    flood_publishes=4,
)
