"""The benchmark suite still runs: every benchmark at a tiny size produces figures.

Not a performance test (no target is asserted): it keeps `make bench` from rotting
when the code it measures changes shape.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from bench import Sizes, run

_NUMBER = re.compile(r"\d")


def test_every_benchmark_produces_numbers_at_a_tiny_size(tmp_path: Path) -> None:
    out = io.StringIO()
    sizes = Sizes(
        ingest=2000,
        search=(2000,),
        queries_per_shape=6,
        coldstart_runs=1,
        gossip_nodes=(4,),
        gossip_publishes=2,
        dht_nodes=4,
        dht_fetches=2,
        memory_listings=2000,
        memory_idle=0.5,
    )

    sections = run(quick=True, sizes=sizes, data_dir=tmp_path, out=out)

    assert [s.title.split()[0] for s in sections] == [
        "Ingest",
        "Search",
        "Cold",
        "Gossip",
        "DHT",
        "Memory",
    ]
    rows = [row for section in sections for row in section.rows]
    assert len(rows) >= 11
    for row in rows:
        assert row.result in ("PASS", "MISS", "info"), row
        assert _NUMBER.search(row.ours) or row.name.startswith("modules"), row
    assert "| Benchmark |" in out.getvalue()
