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
    seed: int = 1


FULL: Final = Sizes()
QUICK: Final = Sizes(ingest=5_000, search=(5_000, 20_000), queries_per_shape=40, coldstart_runs=5)
