"""bench.netscale's report: every measured figure has its row, a missed figure says
so, and ``--write`` replaces only its own part of BENCHMARKS.md. (No namespaces: the
measuring itself is exercised by ``make netscale``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.netscale import BEGIN, END, table, write_section

_RUN: dict[str, Any] = {
    "n": 10,
    "nat": 2,
    "pace_s": 1.0,
    "load_before": 1.5,
    "peers_p50": 9.0,
    "idle_bytes_per_node_s": 24.0,
    "idle_cpu_busy": 0.03,
    "cpu_busy": 0.29,
    "cpu_s_per_listing": 0.506,
    "reach_p50_s": 0.055,
    "reach_p95_s": 0.152,
    "full_reach_p50_s": 0.134,
    "full_reach_p95_s": None,  # some listing never reached every node
    "missed": 3,
    "deliveries": 180,
    "bytes_per_listing_node_gross": 22349.0,
    "bytes_per_listing_node": 22325.0,
    "dht_get_p50_s": 0.002,
    "dht_get_p95_s": 0.038,
    "dht_catalogue_p50_s": 12.5,
    "dht_failures": 1,
    "join_ready_s": 0.9,
    "join_sync_s": 1.1,
    "relays": 4,
    "relay_bytes_ratio": 0.86,
    "nat_connections_relayed": 1,
    "nat_connections_direct": 16,
    "rss_mib_p50": 94.0,
    "start_s": 8.5,
}


def test_the_table_has_a_column_per_size_and_says_what_was_missed() -> None:
    text = table([_RUN, {**_RUN, "n": 20}])
    lines = text.splitlines()
    assert lines[0] == "| | N=10 | N=20 |"
    assert all(line.count("|") == 4 for line in lines)
    assert "| gossip reach p50 / p95 (each delivery) | 55 ms / 152 ms |" in text
    assert "134 ms / missed" in text
    assert "| deliveries missed | 3 of 180 |" in text
    assert "| DHT catalogue get p50 | 12.5 s |" in text
    assert (
        "| relays held by NAT'd nodes; a relay's bytes / another public node's | 4; 0.86x |" in text
    )


def test_write_replaces_only_its_own_part(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_section("first table", report)
    assert report.read_text().count("## A network of hosts") == 1
    text = report.read_text() + "\nprose after the table\n"
    report.write_text(text)
    write_section("second table", report)
    doc = report.read_text()
    assert f"{BEGIN}\nsecond table\n{END}" in doc
    assert "first table" not in doc
    assert "kept" in doc and "prose after the table" in doc
