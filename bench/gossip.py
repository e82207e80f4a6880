"""Gossip reach: how long a new listing takes to be stored and searchable on every node.

For each network size, N nodes run in one process on loopback, connected in a
sparse random topology (:func:`bench.cluster.sparse_topology`: every node dials or
is dialled by ~3 peers). The node's DHT then connects it to more peers (every
Kademlia lookup dials the peers it learns of), and GossipSub takes connected
subscribers into its mesh, so the report shows how many peers and mesh peers the
nodes really had. Once every mesh is formed and the DHT puts each node makes on
start are done, a listing is created on a random node
(``Node.create_listing``, the embedder's and the CLI's path: it is signed, stored,
gossiped and put in the DHT) and the clock runs until every node has emitted
``ListingAdded`` for it, which a node does right after the listing is verified,
stored and indexed. Arrival is seen through ``Node.events()``, as an embedder sees
it, so the time includes handing the event to the program. After the last
publish every node is searched for every listing's unique title word.

Publishes are measured one at a time: the next one starts 0.3 s after the DHT
work of the previous one is done (the node puts the listing and then the seller's
catalogue in the DHT, shortly after gossiping it), so that one publish is not
slowed by the DHT work of the one before. In one process all N nodes share one
core, which a real network does not, so the figure is pessimistic for the time it
takes to reach N machines.

The baseline is a direct stream round trip between two neighbouring hosts of the
same run: 64 bytes written and echoed back on an open libp2p stream.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import trio

from bench.cluster import (
    Json,
    cluster,
    dht_done,
    hops_from,
    phase,
    run_child,
    sparse_topology,
    start_profiling,
    stream_round_trips,
)
from bench.config import Sizes
from bench.report import table
from bench.results import Row, Section, verdict
from bench.stats import median, ms, ms_or_miss, percentile, percentile_or_miss

TARGET_P95: Final = 0.5
PUBLISH_TIMEOUT: Final = 15.0
GAP: Final = 0.3
DHT_SETTLE_TIMEOUT: Final = 30.0


def _word(rng: random.Random) -> str:
    """A title word no other listing has (letters only, so it is one token)."""
    return "zq" + "".join(rng.choice(string.ascii_lowercase) for _ in range(10))


async def measure(params: Json, report: Callable[[Json], None]) -> None:
    """The child side: start the network, publish, time, verify; ``report`` the figures."""
    from p2pmarket.events import ListingAdded

    n: int = params["nodes"]
    publishes: int = params["publishes"]
    timeout: float = params.get("timeout", PUBLISH_TIMEOUT)
    rng = random.Random(f"gossip:{params['seed']}:{n}")
    result: Json = {"nodes": n}
    root = params.get("root")
    async with cluster(Path(root) if root else None) as net:
        began = time.perf_counter()
        for _ in range(n):
            await net.start_node()
        result["start_seconds"] = time.perf_counter() - began
        edges = sparse_topology(n, rng)
        began = time.perf_counter()
        await net.link(edges)
        result["link_seconds"] = time.perf_counter() - began
        phase("linked")
        result["settle_seconds"] = await net.settle()
        phase("settled")
        result["edges"] = len(edges)
        result["shape_start"] = net.shape()
        result["startup_put_failures"] = sum(
            node._network.counters["dht_put_failures"] for node in net.nodes if node._network
        )
        nodes = net.nodes

        arrivals: dict[bytes, dict[int, float]] = {}
        waiting: dict[bytes, trio.Event] = {}

        async def watch(index: int, node: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with node.events() as events:
                task_status.started()
                async for event in events:
                    if isinstance(event, ListingAdded):
                        got = arrivals.setdefault(event.listing.id, {})
                        got.setdefault(index, time.perf_counter())
                        done = waiting.get(event.listing.id)
                        if done is not None and len(got) == n:
                            done.set()

        trials: list[Json] = []
        async with trio.open_nursery() as watchers:
            for index, node in enumerate(nodes):
                await watchers.start(watch, index, node)
            start_profiling()
            for _ in range(publishes):
                origin = rng.randrange(n)
                dht_before = dht_done(nodes[origin])
                word = _word(rng)
                cpu = time.process_time()
                started = time.perf_counter()
                listing = nodes[origin].create_listing(
                    title=f"Sepeda lipat {word}",
                    price=rng.randrange(100, 5000) * 100_000,
                    currency="IDR",
                    category="vehicles/bicycles",
                )
                done = waiting[listing.id] = trio.Event()
                with trio.move_on_after(timeout):
                    await done.wait()
                got = arrivals.get(listing.id, {})
                reach = max(got.values()) - started if len(got) == n else None
                cpu = time.process_time() - cpu
                # Not measured: the listing's DHT put and the catalogue put after it.
                with trio.move_on_after(DHT_SETTLE_TIMEOUT):
                    while dht_done(nodes[origin]) < dht_before + 2:
                        await trio.sleep(0.02)
                hops = hops_from(origin, n, edges)
                trials.append(
                    {
                        "id": listing.id.hex(),
                        "word": word,
                        "origin": origin,
                        "max_hops": max(hops),
                        "reach": reach,
                        "reached": len(got),
                        "cpu": cpu,
                        "dht_done": time.perf_counter() - started,
                        "arrivals": sorted(t - started for t in got.values()),
                    }
                )
                await trio.sleep(GAP)
            watchers.cancel_scope.cancel()
        phase("published")
        result["shape_end"] = net.shape()

        a, b = edges[rng.randrange(len(edges))]
        result["stream"] = await stream_round_trips(nodes[a], nodes[b])

        searchable = 0
        for trial in trials:
            wanted = bytes.fromhex(trial["id"])
            for node in nodes:
                if wanted in {x.id for x in node.search(trial["word"]).listings}:
                    searchable += 1
        result["searchable"] = searchable
        result["expected_searchable"] = len(trials) * n
        result["trials"] = trials
        result["dropped_events"] = sum(node.dropped_events for node in nodes)
        totals: dict[str, int] = {}
        for node in nodes:
            assert node._network is not None
            for key, value in node._network.counters.items():
                totals[key] = totals.get(key, 0) + value
        result["counters"] = totals
        report(result)


def _row(result: Json, publishes: int) -> Row:
    n = result["nodes"]
    reaches = [t["reach"] for t in result["trials"]]
    misses = sum(r is None for r in reaches)
    p50, p95 = percentile_or_miss(reaches, 50), percentile_or_miss(reaches, 95)
    rtt = result["stream"]["round_trips"]
    searchable_ok = result["searchable"] == result["expected_searchable"]
    ours = f"p50 {ms_or_miss(p50)} · p95 {ms_or_miss(p95)}"
    if misses:
        ours += f" ({misses} of {len(reaches)} did not reach every node in {PUBLISH_TIMEOUT:g} s)"
    if not searchable_ok:
        ours += (
            f"; searchable on {result['searchable']} of {result['expected_searchable']}"
            " node-listing pairs"
        )
    return Row(
        f"gossip reach to 100% of {n} nodes, stored and searchable ({publishes} publishes)",
        ours,
        f"direct stream round trip: p50 {ms(median(rtt))} · p95 {ms(percentile(rtt, 95))}",
        f"p95 ≤ {ms(TARGET_P95)}",
        verdict(p95 is not None and p95 <= TARGET_P95 and not misses and searchable_ok),
    )


def _details(results: list[Json]) -> str:
    headers = (
        "nodes",
        "links given · peers · mesh (mean)",
        "max hops p50",
        "reach p50 / p95 / max",
        "first peer p50",
        "CPU per publish p50",
        "DHT puts done p50",
        "start · link · settle",
        "stream open · RTT p50",
        "DHT put failures: start-up · publishing",
        "rate-limited · rejected · dropped events",
    )
    rows = []
    for r in results:
        trials = r["trials"]
        reaches = [t["reach"] for t in trials]
        done = [t for t in trials if t["reach"] is not None]
        firsts = [t["arrivals"][1] for t in trials if len(t["arrivals"]) > 1]
        c = r["counters"]
        rows.append(
            (
                str(r["nodes"]),
                f"{2 * r['edges'] / r['nodes']:.1f} · {r['shape_end']['connections']:.1f}"
                f" · {r['shape_end']['mesh']:.1f}",
                f"{median([t['max_hops'] for t in trials]):.0f}",
                " / ".join(
                    ms_or_miss(x)
                    for x in (
                        percentile_or_miss(reaches, 50),
                        percentile_or_miss(reaches, 95),
                        max((t["reach"] for t in done), default=None),
                    )
                ),
                ms(median(firsts)) if firsts else "—",
                ms(median([t["cpu"] for t in trials])),
                ms(median([t["dht_done"] for t in trials])),
                f"{r['start_seconds']:.1f} · {r['link_seconds']:.1f} · {r['settle_seconds']:.1f} s",
                f"{ms(r['stream']['open'])} · {ms(median(r['stream']['round_trips']))}",
                f"{r['startup_put_failures']} of {r['nodes']} ·"
                f" {c['dht_put_failures'] - r['startup_put_failures']} of {2 * len(trials)}",
                f"{c['rate_limited']} · {c['gossip_rejected']} · {r['dropped_events']}",
            )
        )
    notes = [
        table(headers, rows),
        "",
        'All nodes run in one process on loopback, so they share one core: "CPU per'
        ' publish" is the process CPU time from `create_listing` until the last node'
        " had the listing (every node's share of the gossip, and any DHT work of the"
        ' publish that overlaps it). "First peer" is when the first other node'
        ' had it; "DHT puts done" is when the publisher\'s listing and catalogue puts'
        ' had finished (the next publish waits for them). "max hops" is the'
        " publisher's eccentricity in the topology. Setup seconds: starting the nodes,"
        ' connecting them, and waiting for meshes and the start-up DHT puts. "links given"'
        ' is the degree of the topology the nodes were connected in; "peers" and'
        ' "mesh" are what each node had after the publishes: connected peers, and'
        " GossipSub mesh peers on the market-wide topic. DHT put failures: of the"
        " catalogue put each node makes once connected, and of the two puts (listing,"
        " catalogue) each publish makes; a put fails when it is not done in"
        " `NetworkConfig.dht_timeout` (20 s).",
    ]
    for r in results:
        if "warning" in r:
            notes.append(f"{r['nodes']} nodes: {r['warning']}.")
    return "\n".join(notes)


def run(sizes: Sizes, data_dir: Path) -> Section:
    results = []
    for n in sizes.gossip_nodes:
        params = {"nodes": n, "publishes": sizes.gossip_publishes, "seed": sizes.seed}
        budget = 180 + n * 4 + sizes.gossip_publishes * (PUBLISH_TIMEOUT + DHT_SETTLE_TIMEOUT)
        results.append(run_child("gossip", params, timeout=budget))
    sizes_text = ", ".join(map(str, sizes.gossip_nodes))
    section = Section(f"Gossip reach ({sizes_text} nodes in one process, linked at degree ~3)")
    for result in results:
        section.rows.append(_row(result, sizes.gossip_publishes))
    section.details.append(_details(results))
    return section
