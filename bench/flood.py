"""Flood (issue 13): honest gossip while attackers flood one node with invalid records.

Five honest nodes run in one process on loopback, linked in a line
``0 - 1 - 2 - 3 - 4``; node 2, in the middle, is the *entry node* the attackers
dial, so listings from node 0 cross it to reach nodes 3 and 4 (the DHT may add
links of its own; the report shows how connected the nodes ended up). Node 0
publishes a new listing every ``PUBLISH_GAP`` seconds (``Node.create_listing``:
signed, stamped, stored, gossiped, put in the DHT), and its *reach* is the time
until every other honest node has emitted ``ListingAdded`` for it, i.e. has
verified, stored and indexed it. Phases, one after another on the same nodes:

* **a, no attack**: the baseline;
* **b1, one identity** sending invalid records (a bad signature) to the entry
  node, and redialling once cut off;
* **b2, a Sybil swarm**: fresh identities (a new key pair, a new connection
  each), eight at a time, each sending invalid records until it is cut off,
  until ``Sizes.flood_records`` records (10,000) have been sent;
* **b3, bad stamps**: the same swarm, with listings signed correctly by each
  identity's own key but stamped below the network's difficulty;
* **b4, under the ban**: the same bad stamps from a swarm whose identities each
  send four and leave, never owing the 50 points that get a peer banned: the
  worst case, where every record reaches the validator and costs a handshake
  per four.

The attackers run in a process of their own (:mod:`bench.flood_attack`), so the
honest process's CPU time is the five nodes' own. ``time.process_time`` is
per process, not per node: the entry node's share is not separable in one
process. Invalid records stop at the entry node (it validates before it
forwards), so the rise of the honest process's CPU rate over the baseline's is
the entry node's cost of refusing the flood, handshakes with the Sybils
included. The attackers run at the test network's 1-bit difficulty, like every
benchmark (``bench/__init__.py``): a bad stamp still costs the node one Argon2id
evaluation, as at any difficulty.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import trio

from bench.cluster import (
    RESULT_PREFIX,
    ROOT,
    Json,
    child_env,
    cluster,
    phase,
    run_child,
)
from bench.config import Sizes
from bench.report import table
from bench.results import Row, Section, verdict
from bench.stats import count, ms_or_miss, percentile_or_miss

NODES: Final = 5
ENTRY: Final = 2  # the node the attackers dial: the middle of the line
PUBLISHER: Final = 0
PUBLISH_GAP: Final = 0.5  # seconds between honest listings
REACH_TIMEOUT: Final = 15.0  # an honest listing not everywhere by then is lost
SWARM_SECONDS: Final = 300.0  # a Sybil phase stops here even if its budget is not spent
UNDER_BAN: Final = 4  # records per Sybil that never reach the ban (10 points each, ban at 50)
TARGET_P95: Final = 0.5  # the gossip benchmark's target, kept under attack
_COUNTERS: Final = (
    "gossip_accepted",
    "gossip_ignored",
    "gossip_rejected",
    "rate_limited",
    "peers_banned",
    "banned_refused",
)

# (name, label, attack parameters or None)
PHASES: Final[tuple[tuple[str, str, Json | None], ...]] = (
    ("a", "no attack", None),
    ("b1", "one identity, bad signatures", {"swarm": False, "records": "bad-signature"}),
    ("b2", "Sybil swarm, bad signatures", {"swarm": True, "records": "bad-signature"}),
    ("b3", "Sybil swarm, bad stamps", {"swarm": True, "records": "bad-stamp"}),
    (
        "b4",
        f"Sybil swarm under the ban, {UNDER_BAN} bad stamps per identity",
        {"swarm": True, "records": "bad-stamp", "per_identity": UNDER_BAN},
    ),
)


def _snapshot(node: Any) -> dict[str, int]:
    network = node._network
    assert network is not None
    return {key: int(network.counters[key]) for key in _COUNTERS}


async def _run_attacker(params: Json, started: trio.Event, timeout: float) -> Json:
    """Run :mod:`bench.flood_attack` in a child process; set ``started`` once its
    first identity is connected; its figures (or why there are none)."""
    from bench.flood_attack import STARTED

    code = "from bench.flood_attack import main; main()"
    argv = [sys.executable, "-c", code, json.dumps(params)]
    process = await trio.lowlevel.open_process(
        argv, cwd=ROOT, env=child_env(), stdout=-1, stderr=-1
    )
    assert process.stdout is not None and process.stderr is not None
    buffer = b""
    result: Json = {"error": f"no figures from the attacker in {timeout:.0f} s"}
    errors = bytearray()

    async def drain_stderr() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            errors.extend(chunk[-4000:])
            del errors[:-4000]

    try:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_stderr)
                async for chunk in process.stdout:
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        text = line.decode(errors="replace")
                        if text == STARTED:
                            started.set()
                        elif text.startswith(RESULT_PREFIX):
                            result = json.loads(text[len(RESULT_PREFIX) :])
                nursery.cancel_scope.cancel()
    finally:
        # Also when a crashed node cancels this: never leave an attacker running.
        if process.returncode is None:
            process.kill()
    with trio.move_on_after(5):
        await process.wait()
    if "error" in result:
        tail = errors.decode(errors="replace").strip().splitlines()[-5:]
        result["error"] += ": " + " | ".join(tail)
    started.set()
    return result


class _Honest:
    """Node 0's listings and when each honest node had them."""

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = nodes
        self.published: list[tuple[bytes, float]] = []
        self.arrivals: dict[bytes, dict[int, float]] = {}

    async def watch(self, index: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from p2pmarket.events import ListingAdded

        async with self.nodes[index].events() as events:
            task_status.started()
            async for event in events:
                if isinstance(event, ListingAdded):
                    got = self.arrivals.setdefault(event.listing.id, {})
                    got.setdefault(index, time.perf_counter())

    def publish(self, n: int) -> None:
        started = time.perf_counter()
        listing = self.nodes[PUBLISHER].create_listing(
            title=f"Sepeda lipat jujur {n}",
            price=(100 + n) * 100_000,
            currency="IDR",
            category="vehicles/bicycles",
        )
        self.published.append((listing.id, started))

    def reach(self, listing_id: bytes, started: float) -> float | None:
        got = self.arrivals.get(listing_id, {})
        others = [got.get(i) for i in range(len(self.nodes)) if i != PUBLISHER]
        if any(t is None for t in others):
            return None
        return max(t for t in others if t is not None) - started

    async def settle(self, since: int) -> list[float | None]:
        """Wait (each up to REACH_TIMEOUT after its publish) for the listings
        published from index ``since`` on; their reach times, None if missed."""
        for listing_id, started in self.published[since:]:
            deadline = started + REACH_TIMEOUT
            while self.reach(listing_id, started) is None and time.perf_counter() < deadline:
                await trio.sleep(0.02)
        return [self.reach(i, s) for i, s in self.published[since:]]


async def _phase(name: str, attack: Json | None, honest: _Honest, entry: Any, params: Json) -> Json:
    phase(f"phase {name}")
    first = len(honest.published)
    before = _snapshot(entry)
    out: Json = {"name": name}
    started = trio.Event()
    stop = trio.Event()
    figures: Json = {}

    async def attacker(spec: Json) -> None:
        seconds = params["single_seconds"] if not spec["swarm"] else params["swarm_seconds"]
        child = {
            **spec,
            "entry": entry.status().addresses[0],
            "budget": params["records"],
            "seconds": seconds,
        }
        figures.update(await _run_attacker(child, started, timeout=seconds + 120))
        stop.set()

    async with trio.open_nursery() as nursery:
        if attack is not None:
            nursery.start_soon(attacker, attack)
            with trio.move_on_after(60):
                await started.wait()
        else:
            started.set()
        cpu, wall = time.process_time(), time.perf_counter()
        ticks = 0

        def going() -> bool:
            # Under attack: until the attacker is done; the baseline: its publishes.
            return not stop.is_set() if attack is not None else ticks < params["publishes"]

        while ticks == 0 or going():  # at least one honest listing per phase
            honest.publish(first + ticks)
            ticks += 1
            with trio.move_on_after(wall + ticks * PUBLISH_GAP - time.perf_counter()):
                await stop.wait()
        out["cpu"] = time.process_time() - cpu
        out["wall"] = time.perf_counter() - wall
    after = _snapshot(entry)
    out["entry"] = {key: after[key] - before[key] for key in _COUNTERS}
    out["reaches"] = await honest.settle(first)
    out["attack"] = figures
    network = entry._network
    out["entry_online"] = bool(entry.online and network is not None and network.running)
    out["entry_peers"] = len(network.host.get_connected_peers()) if network is not None else 0
    out["rss_max_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


async def measure(params: Json, report: Callable[[Json], None]) -> None:
    """The child side: start the honest line, run each phase, report the figures.

    A node that crashes takes the whole cluster down with it (they share one
    nursery): the figures of the phases done, and where and how it fell, are
    reported all the same."""
    result: Json = {"nodes": NODES, "phases": []}
    progress: Json = {}
    try:
        await _measure(params, result, progress)
    except Exception as exc:  # a node fell over: that is the finding
        leaf = _leaf(exc)
        result["crash"] = {"error": f"{type(leaf).__name__}: {leaf}", **progress}
    report(result)


def _leaf(exc: BaseException) -> BaseException:
    """The first exception at the bottom of nested exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _peerstore_size(node: Any) -> int:
    network = node._network
    return len(network.host.get_peerstore().peer_ids()) if network is not None else 0


async def _measure(params: Json, result: Json, progress: Json) -> None:
    root = params.get("root")
    async with cluster(Path(root) if root else None) as net:
        for _ in range(NODES):
            await net.start_node()
        await net.link([(i, i + 1) for i in range(NODES - 1)])
        result["settle_seconds"] = await net.settle()
        result["shape_start"] = net.shape()
        nodes = net.nodes
        entry = nodes[ENTRY]
        honest = _Honest(nodes)

        async def monitor() -> None:
            # What the entry node had seen in this phase, for a report if it falls over.
            while True:
                if "phase" in progress:
                    base = progress["before"]
                    now = _snapshot(entry)
                    progress["entry"] = {k: now[k] - base[k] for k in now}
                    progress["peerstore_peers"] = _peerstore_size(entry)
                    progress["phase_seconds"] = time.perf_counter() - progress["began"]
                await trio.sleep(0.25)

        async with trio.open_nursery() as watchers:
            for index in range(NODES):
                await watchers.start(honest.watch, index)
            watchers.start_soon(monitor)
            for name, _, attack in PHASES:
                if attack is not None or params["publishes"]:
                    progress.update(phase=name, before=_snapshot(entry), began=time.perf_counter())
                    found = await _phase(name, attack, honest, entry, params)
                    found["peerstore_peers"] = _peerstore_size(entry)
                    result["phases"].append(found)
            watchers.cancel_scope.cancel()
        result["shape_end"] = net.shape()
        # Lost: an honest listing some honest node does not hold at the end.
        missing = 0
        for listing_id, _ in honest.published:
            for node in nodes:
                if node.store.get(listing_id, node.now()) is None:
                    missing += 1
        result["published"] = len(honest.published)
        result["missing_pairs"] = missing
        result["online_at_end"] = [node.online for node in nodes]


# -- the report ---------------------------------------------------------------------


def _reach_text(reaches: list[float | None]) -> str:
    if not reaches:
        return "—"
    p50, p95 = percentile_or_miss(reaches, 50), percentile_or_miss(reaches, 95)
    return f"p50 {ms_or_miss(p50)} · p95 {ms_or_miss(p95)}"


def _lost(reaches: list[float | None]) -> int:
    return sum(r is None for r in reaches)


def _cut_off(identities: list[Json]) -> str:
    """Records each identity got out before it was cut off: median and max."""
    sent = sorted(i["sent"] for i in identities if i.get("connected"))
    if not sent:
        return "—"
    return f"{sent[len(sent) // 2]} / {sent[-1]}"


def _rows(result: Json) -> list[Row]:
    phases = {p["name"]: p for p in result["phases"]}
    labels = {name: label for name, label, _ in PHASES}
    base = phases.get("a")
    baseline = _reach_text(base["reaches"]) if base else "—"
    rows = []
    for name, p in phases.items():
        reaches = p["reaches"]
        lost = _lost(reaches)
        p95 = percentile_or_miss(reaches, 95) if reaches else None
        ours = f"{_reach_text(reaches)}; {lost} of {len(reaches)} lost"
        attack = p["attack"]
        if attack:
            if "error" in attack:
                ours += f"; attacker failed: {attack['error']}"
            else:
                ours += (
                    f"; {count(attack['sent'])} invalid records sent,"
                    f" {count(p['entry']['gossip_rejected'])} refused,"
                    f" {count(p['entry']['peers_banned'])} attackers banned"
                )
        if not p["entry_online"]:
            ours += "; THE ENTRY NODE WENT DOWN"
        ok = lost == 0 and p95 is not None and p95 <= TARGET_P95 and p["entry_online"]
        rows.append(
            Row(
                f"flood {name} ({labels[name]}): honest reach to all {NODES - 1} other nodes",
                ours,
                f"no attack: {baseline}",
                f"0 lost · p95 ≤ {TARGET_P95 * 1000:.0f} ms · node up",
                verdict(ok) if name != "a" else verdict(lost == 0 and p95 is not None),
            )
        )
    crash = result.get("crash")
    if crash is not None:
        seen = crash.get("entry", {})
        rows.append(
            Row(
                f"flood: the honest nodes stayed up (crashed in phase {crash.get('phase', '?')})",
                f"NO: {crash['error']}, after {crash.get('phase_seconds', 0):.0f} s of the"
                f" phase, {count(seen.get('gossip_rejected', 0))} records refused in it, with"
                f" {count(crash.get('peerstore_peers', 0))} peers in the entry node's peerstore",
                "—",
                "up",
                "MISS",
            )
        )
        return rows
    missing = result["missing_pairs"]
    rows.append(
        Row(
            "flood: honest listings missing from an honest node at the end",
            f"{missing} of {result['published'] * NODES} node-listing pairs",
            "—",
            "0",
            verdict(missing == 0),
        )
    )
    return rows


def _details(result: Json) -> str:
    headers = (
        "phase",
        "seconds",
        "honest publishes · lost",
        "reach p50 / p95",
        "records sent · validated · rejected (rate-limited)",
        "identities · banned · redials refused",
        "per identity: sent before cut-off (median / max) · refused per ban",
        "honest process CPU: % of a core",
        "attacker CPU s · building records s",
        "entry node up · peers after · peerstore",
    )
    base_rate = None
    rows = []
    for p in result["phases"]:
        e, a = p["entry"], p["attack"]
        rate = p["cpu"] / p["wall"] if p["wall"] else 0.0
        if p["name"] == "a":
            base_rate = rate
        validated = e["gossip_rejected"] + e["gossip_ignored"]
        identities = a.get("identities", [])
        rows.append(
            (
                p["name"],
                f"{p['wall']:.1f}",
                f"{len(p['reaches'])} · {_lost(p['reaches'])}",
                _reach_text(p["reaches"]),
                f"{count(a['sent']) if 'sent' in a else '—'} · {count(validated)}"
                f" · {count(e['gossip_rejected'])} ({count(e['rate_limited'])})",
                f"{len(identities) or '—'} · {e['peers_banned']} · {e['banned_refused']}",
                f"{_cut_off(identities)} · "
                + (f"{e['gossip_rejected'] / e['peers_banned']:.1f}" if e["peers_banned"] else "—"),
                f"{100 * rate:.0f}%",
                f"{a['cpu']:.1f} · {a['making_seconds']:.1f}" if "cpu" in a else "—",
                f"{'yes' if p['entry_online'] else 'NO'} · {p['entry_peers']}"
                f" · {count(p['peerstore_peers'])}",
            )
        )
    notes = [table(headers, rows), ""]
    extra = []
    for p in result["phases"]:
        a, e = p["attack"], p["entry"]
        if base_rate is not None and p["name"] != "a" and e["gossip_rejected"]:
            over = max(0.0, p["cpu"] - base_rate * p["wall"])
            per = over / max(1, e["gossip_rejected"] + e["banned_refused"])
            extra.append(
                f"{p['name']}: {over:.1f} CPU s over the baseline's rate,"
                f" {per * 1e6:,.0f} µs per record refused or redial refused"
            )
        if a and not a.get("finished", True) and a.get("budget") and p["name"] != "b1":
            extra.append(
                f"{p['name']}: the swarm sent {count(a['sent'])} of {count(a['budget'])}"
                f" records in its {SWARM_SECONDS:.0f} s"
            )
    shape: Json = result.get("shape_end") or result.get("shape_start") or {"connections": 0.0}
    notes.append(
        f"Five honest nodes in one process, linked in a line; node {ENTRY} (the middle) is"
        f" the entry node the attackers dial, node {PUBLISHER} publishes a listing every"
        f" {PUBLISH_GAP:g} s and its reach is the time until all {NODES - 1} other nodes have"
        " stored it (a listing not everywhere within"
        f" {REACH_TIMEOUT:g} s counts as lost). After the run each node had"
        f" {shape['connections']:.1f} peers on average (the DHT adds links to the line)."
        " The attackers run in a process of their own; 'validated' counts the records"
        " that reached the entry node's validator (rejected, plus any ignored), the"
        " rest were dropped in flight when the node hung up or were never read."
        " CPU: `time.process_time` of the honest process (all five nodes: it cannot be"
        " split per node in one process) over the phase's wall time; invalid records"
        " stop at the entry node, so the rise over the baseline is its cost of refusing"
        " the flood, handshakes with the Sybils included. "
        + "; ".join(extra)
        + (
            f". Peak RSS of the honest process: {result['phases'][-1]['rss_max_mib']:.0f} MiB."
            if result["phases"]
            else "."
        )
    )
    return "\n".join(notes)


def figures(sizes: Sizes) -> Json:
    """Run every phase in a child process; its figures (see :func:`measure`)."""
    seconds = sizes.flood_publishes * PUBLISH_GAP
    params = {
        "records": sizes.flood_records,
        "publishes": sizes.flood_publishes,
        "single_seconds": seconds,
        "swarm_seconds": SWARM_SECONDS,
    }
    budget = 240 + 2 * seconds + 3 * (SWARM_SECONDS + 120) + 5 * REACH_TIMEOUT
    return run_child("flood", params, timeout=budget)


def run(sizes: Sizes, data_dir: Path) -> Section:
    result = figures(sizes)
    title = (
        f"Flood (issue 13): {count(sizes.flood_records)} invalid records at one node of"
        f" {NODES}, honest gossip beside it"
    )
    section = Section(title)
    section.rows.extend(_rows(result))
    section.details.append(_details(result))
    if "warning" in result:
        section.details.append(f"Warning: {result['warning']}.")
    return section
