"""The benchmark suite still runs: every benchmark at a tiny size produces figures.

Not a performance test (no target is asserted): it keeps `make bench` from rotting
when the code it measures changes shape.
"""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import BENCHMARKS, Sizes, flood, messages, run, sync
from bench.report import render
from bench.results import Section

_NUMBER = re.compile(r"\d")
_TINY = Sizes(
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
    sync_listings=2000,
    reviews=100,
    spam_stamps=10,
    spam_bits=6,
    flood_records=60,
    flood_publishes=3,
)
_NETWORK = ("gossip", "dht", "memory", "flood")
_SYNC = "sync"  # processes of its own: tested alone
_MESSAGES = "messages"  # its own sample counts: tested alone


def _check(sections: list[Section], titles: list[str], min_rows: int) -> None:
    assert [s.title.split()[0] for s in sections] == titles
    rows = [row for section in sections for row in section.rows]
    assert len(rows) >= min_rows
    for row in rows:
        assert row.result in ("PASS", "MISS", "info"), row
        assert _NUMBER.search(row.ours) or row.name.startswith("modules"), row


def test_every_local_benchmark_produces_numbers_at_a_tiny_size(tmp_path: Path) -> None:
    out = io.StringIO()
    local = [name for name in BENCHMARKS if name not in (*_NETWORK, _SYNC, _MESSAGES)]

    sections = run(quick=True, sizes=_TINY, data_dir=tmp_path, out=out, only=local)

    _check(sections, ["Ingest", "Search", "Cold", "Reviews", "Spam"], 10)
    assert "| Benchmark |" in out.getvalue()


@pytest.mark.slow
def test_every_network_benchmark_produces_numbers_at_a_tiny_size(tmp_path: Path) -> None:
    # Each starts nodes or daemons in child processes and spends most of its time
    # waiting on timers (meshes, DHT puts), so they run side by side.
    with ThreadPoolExecutor(len(_NETWORK)) as pool:
        futures = [pool.submit(BENCHMARKS[name], _TINY, tmp_path) for name in _NETWORK]
        sections = [future.result() for future in futures]

    _check(sections, ["Gossip", "DHT", "Memory", "Flood"], 4)
    assert "| Benchmark |" in render(sections, [], mode="tiny", minutes=0)


@pytest.mark.slow
def test_the_sync_benchmark_syncs_every_record_at_a_tiny_size(tmp_path: Path) -> None:
    n = _TINY.sync_listings

    found = sync.figures(_TINY, tmp_path)

    imported, full, changes = found["import"], found["join1"], found["changes"]
    assert imported["added"] == imported["after"]["listings"] == n and imported["seconds"] > 0
    for key, peers in (("join1", 1), (f"join{sync.PEERS}", sync.PEERS)):
        joined = found[key]
        assert len(joined["sessions"]) == peers and sync.complete(joined), joined
        assert all(s["known"] == s["fetched"] == n for s in joined["sessions"])
        assert joined["before"] == 0 and joined["after"]["listings"] == n
        assert joined["seconds"] > 0
        # Every record crosses the wire once (a listing is a few hundred bytes).
        assert 200 * n < sync.session_bytes(joined) < 3 * sync.session_bytes(full)
    back = found["return"]
    assert sync.complete(back), back
    assert [(s["known"], s["fetched"]) for s in back["sessions"]] == [(changes["total"],) * 2]
    assert back["after"]["listings"] == n - changes["withdrawals"] + changes["new"]
    assert 0 < sync.session_bytes(back) < sync.session_bytes(full) / 10
    _check([sync.section(found, n)], ["Catch-up"], 3)


@pytest.mark.slow
def test_the_messages_benchmark_delivers_every_message_at_a_tiny_size() -> None:
    found = messages.figures(round_trips=5, offline=2)

    trips = found["round trip"]
    assert len(trips["messages"]) == len(trips["echoes"]) == 5
    assert all(t is not None and t > 0 for t in trips["messages"] + trips["echoes"])
    assert 200 < trips["envelope"] < 1000  # a sealed chat message
    trials = found["offline"]["trials"]
    assert len(trials) == 2
    for trial in trials:
        assert trial["sent"] is not None and trial["via"] == "mailbox" and trial["stored"], trial
        assert trial["online"] > trial["after_connect"] > 0
    _check([messages.section(found)], ["Direct"], 2)


@pytest.mark.slow
def test_the_flood_benchmark_cuts_the_flooders_off_and_loses_no_honest_listing() -> None:
    found = flood.figures(_TINY)

    phases = {p["name"]: p for p in found["phases"]}
    assert list(phases) == ["a", "b1", "b2", "b3", "b4"]
    assert found["missing_pairs"] == 0 and all(found["online_at_end"])
    for name, p in phases.items():
        assert p["reaches"] and None not in p["reaches"], (name, p["reaches"])
        assert p["entry_online"], name
        assert p["entry"]["gossip_accepted"] <= len(p["reaches"]) * 2, name  # honest only
        if name == "a":
            continue
        attack, entry = p["attack"], p["entry"]
        assert "error" not in attack, attack
        assert attack["sent"] > 0 and entry["gossip_rejected"] > 0, (name, attack, entry)
        assert entry["gossip_rejected"] <= attack["sent"], (name, attack, entry)
    # One identity and each Sybil that floods are banned after ~5 invalid records
    # (10 points each, ban at 50); one that stays under the ban never is.
    assert phases["b1"]["entry"]["peers_banned"] == 1
    assert phases["b1"]["entry"]["gossip_rejected"] <= 6
    for name in ("b2", "b3"):
        entry, identities = phases[name]["entry"], phases[name]["attack"]["identities"]
        assert entry["peers_banned"] >= 1
        assert entry["gossip_rejected"] <= 6 * len(identities), (name, entry)
    b4 = phases["b4"]
    assert b4["entry"]["peers_banned"] == 0
    assert b4["attack"]["sent"] == _TINY.flood_records
    assert 0.9 * _TINY.flood_records <= b4["entry"]["gossip_rejected"] <= _TINY.flood_records
