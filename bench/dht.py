"""DHT fetch: how long ``Node.fetch_listing(id)`` takes for a listing we do not hold.

N nodes run in one process on loopback, first connected in a sparse random
topology (every node links to ~3 peers; DHT lookups add more), plus two
*fetchers*: nodes that follow only a category nobody publishes in
(``NetworkConfig(follow=("zz-none",))``), so gossip never brings them
the listings. Listings are created one at a time on random nodes (each is put in
the DHT by its publisher; we wait for every put to finish), then each fetcher
fetches every listing by id, one fetch at a time.

With ``N + 2`` nodes and Kademlia's k = 20, a put stores the value on most nodes,
fetchers included, and py-libp2p answers a get from its own DHT store first. A
node of a real network is almost never among the 20 closest to a key, so before
each fetch the fetcher's own DHT copy (if any) is removed: every fetch is a real
network lookup. The count of such copies is reported.

CPU per fetch is the whole process's CPU time during the fetch (the fetcher and
every peer that answers it, as all run in this process), less the idle
background measured before; streams are the libp2p streams opened during it.
The baseline is a direct stream round trip from a fetcher to one of its peers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from bench.cluster import (
    Json,
    cluster,
    dht_done,
    network_config,
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

if TYPE_CHECKING:
    from p2pmarket.network.service import Network
    from p2pmarket.node import Node

TARGET_P95: Final = 0.5
FETCHERS: Final = 2
FETCH_TIMEOUT: Final = 20.0
PUT_TIMEOUT: Final = 30.0
GAP: Final = 0.2


class _StreamCounter:
    """How many streams the hosts opened or accepted (each stream is seen at both ends)."""

    def __init__(self) -> None:
        self.opened = 0


def _notifee(counter: _StreamCounter) -> Any:
    """Wrap the counter in libp2p's notifee interface (imported in the child only)."""
    from libp2p.abc import INotifee

    class Notifee(INotifee):
        async def opened_stream(self, network: Any, stream: Any) -> None:
            counter.opened += 1

        async def closed_stream(self, network: Any, stream: Any) -> None:
            pass

        async def connected(self, network: Any, conn: Any) -> None:
            pass

        async def disconnected(self, network: Any, conn: Any) -> None:
            pass

        async def listen(self, network: Any, multiaddr: Any) -> None:
            pass

        async def listen_close(self, network: Any, multiaddr: Any) -> None:
            pass

    return Notifee()


def _network(node: Node) -> Network:
    assert node._network is not None, "the node is not running"
    return node._network


async def measure(params: Json, report: Callable[[Json], None]) -> None:
    from p2pmarket.errors import NotFound
    from p2pmarket.network.dht import listing_key

    n: int = params["nodes"]
    fetches: int = params["fetches"]
    listings = max(1, fetches // FETCHERS)
    rng = random.Random(f"dht:{params['seed']}:{n}")
    result: Json = {"nodes": n, "fetchers": FETCHERS, "listings": listings}
    root = params.get("root")
    async with cluster(Path(root) if root else None) as net:
        began = time.perf_counter()
        publishers = [await net.start_node() for _ in range(n)]
        fetchers = [
            await net.start_node(network_config(follow=("zz-none",))) for _ in range(FETCHERS)
        ]
        result["start_seconds"] = time.perf_counter() - began
        everyone = net.nodes
        edges = sparse_topology(len(everyone), rng)
        began = time.perf_counter()
        await net.link(edges)
        result["link_seconds"] = time.perf_counter() - began
        phase("linked")
        result["settle_seconds"] = await net.settle()
        result["edges"] = len(edges)
        phase("settled")
        result["shape_start"] = net.shape()
        counter = _StreamCounter()
        notifee = _notifee(counter)
        for node in everyone:
            _network(node).host.get_network().register_notifee(notifee)

        # Publish one at a time; each publish puts the listing in the DHT, and the
        # seller's catalogue a second later: wait for both.
        def failures() -> int:
            return sum(_network(node).counters["dht_put_failures"] for node in everyone)

        result["startup_put_failures"] = failures()
        created = []
        puts: list[float | None] = []
        put_streams = []
        for _ in range(listings):
            origin = publishers[rng.randrange(n)]
            before = dht_done(origin)
            streams = counter.opened
            started = time.perf_counter()
            listing = origin.create_listing(
                title=f"Sepeda lipat {rng.randrange(10**6)}",
                price=rng.randrange(100, 5000) * 100_000,
                currency="IDR",
                category="vehicles/bicycles",
            )
            elapsed: float | None = None
            with trio.move_on_after(2 * PUT_TIMEOUT):
                while dht_done(origin) < before + 2:
                    await trio.sleep(0.01)
                elapsed = time.perf_counter() - started
            puts.append(elapsed)
            put_streams.append((counter.opened - streams) / 2)
            created.append(listing)
        result["put_failures"] = failures() - result["startup_put_failures"]
        phase("listings put")

        idle = time.process_time()
        await trio.sleep(1.0)
        idle_cpu = time.process_time() - idle
        result["idle_cpu_per_second"] = idle_cpu

        phase("fetching")
        start_profiling()
        trials: list[Json] = []
        held_locally = 0
        already_cached = 0
        for fetcher in fetchers:
            order = list(created)
            rng.shuffle(order)
            for listing in order:
                key = listing_key(listing.id).encode()
                dht = _network(fetcher).routing.dht
                assert dht is not None
                if dht.value_store.has(key):
                    dht.value_store.remove(key)
                    held_locally += 1
                if fetcher.store.get(listing.id, fetcher.now()) is not None:
                    already_cached += 1
                streams = counter.opened
                cpu = time.process_time()
                started = time.perf_counter()
                got: float | None = None
                with trio.move_on_after(FETCH_TIMEOUT):
                    try:
                        fetched = await fetcher.fetch_listing(listing.id)
                        if fetched.id == listing.id:
                            got = time.perf_counter() - started
                    except NotFound:
                        pass
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu
                trials.append(
                    {
                        "seconds": got,
                        "cpu": max(0.0, cpu - idle_cpu * wall),
                        "streams": (counter.opened - streams) / 2,
                    }
                )
                await trio.sleep(GAP)
        result["trials"] = trials
        result["shape_end"] = net.shape()
        result["puts"] = puts
        result["put_streams"] = put_streams
        result["held_locally"] = held_locally
        result["already_cached"] = already_cached
        fetcher = fetchers[0]
        assert fetcher._network is not None
        peer = next(
            node
            for node in everyone
            if node._network is not None
            and node._network.host.get_id() in fetcher._network.host.get_connected_peers()
        )
        phase("stream round trips")
        result["stream"] = await stream_round_trips(fetcher, peer)
        phase("done")
        report(result)


def run(sizes: Sizes, data_dir: Path) -> Section:
    n = sizes.dht_nodes
    listings = max(1, sizes.dht_fetches // FETCHERS)
    budget = 180 + n * 4 + listings * (PUT_TIMEOUT + 2) + sizes.dht_fetches * FETCH_TIMEOUT
    params = {"nodes": n, "fetches": sizes.dht_fetches, "seed": sizes.seed}
    r = run_child("dht", params, timeout=budget)
    trials = r["trials"]
    seconds = [t["seconds"] for t in trials]
    misses = sum(s is None for s in seconds)
    p50, p95 = percentile_or_miss(seconds, 50), percentile_or_miss(seconds, 95)
    cpu = [t["cpu"] for t in trials]
    streams = [t["streams"] for t in trials]
    rtt = r["stream"]["round_trips"]
    total = n + FETCHERS
    ours = (
        f"p50 {ms_or_miss(p50)} · p95 {ms_or_miss(p95)};"
        f" CPU p50 {ms(median(cpu))} · {median(streams):.0f} streams per fetch"
    )
    if misses:
        ours += f" ({misses} of {len(trials)} not found in {FETCH_TIMEOUT:g} s)"
    section = Section(f"DHT fetch by id ({total} nodes in one process, linked at degree ~3)")
    section.rows.append(
        Row(
            f"`Node.fetch_listing(id)` across {total} nodes ({len(trials)} fetches)",
            ours,
            f"direct stream round trip: p50 {ms(median(rtt))} · p95 {ms(percentile(rtt, 95))}",
            f"p95 ≤ {ms(TARGET_P95)}",
            verdict(p95 is not None and p95 <= TARGET_P95 and not misses),
        )
    )
    puts = r["puts"]
    headers = ("what", "p50", "p95", "max")
    done = [s for s in seconds if s is not None]
    rows = [
        (
            "fetch latency",
            ms_or_miss(p50),
            ms_or_miss(p95),
            ms(max(done)) if done else "—",
        ),
        ("fetch CPU (whole process)", ms(median(cpu)), ms(percentile(cpu, 95)), ms(max(cpu))),
        (
            "streams per fetch",
            f"{median(streams):.0f}",
            f"{percentile(streams, 95):.0f}",
            f"{max(streams):.0f}",
        ),
        (
            "listing + catalogue puts (create → both done)",
            ms_or_miss(percentile_or_miss(puts, 50)),
            ms_or_miss(percentile_or_miss(puts, 95)),
            ms(max(p for p in puts if p is not None)) if any(puts) else "—",
        ),
        (
            "streams per publish (both puts)",
            f"{median(r['put_streams']):.0f}",
            f"{percentile(r['put_streams'], 95):.0f}",
            f"{max(r['put_streams']):.0f}",
        ),
    ]
    section.details.append(
        table(headers, rows)
        + "\n\n"
        + f"{n} publishing nodes and {FETCHERS} fetchers; {r['listings']} listings, each"
        f" fetched once by each fetcher. Before {r['held_locally']} of the {len(trials)}"
        " fetches the fetcher held the value in its own DHT store (from a put or an"
        " earlier lookup's entry correction) and it was removed, so that every fetch is"
        f" a network lookup. DHT put failures: {r['put_failures']} of"
        f" {2 * r['listings']} while publishing; {r['startup_put_failures']} of the"
        f" {total} puts the nodes make on start (their catalogues). Setup:"
        f" {r['start_seconds']:.1f} s to start the nodes, {r['link_seconds']:.1f} s to"
        f" connect them, {r['settle_seconds']:.1f} s for meshes and start-up DHT puts."
        f" Idle background CPU: {ms(r['idle_cpu_per_second'])} per second. Connected"
        f" peers per node: {r['shape_start']['connections']:.1f} (mean) when the"
        f" listings were put, {r['shape_end']['connections']:.1f} after the fetches"
        f" (links given: {2 * r['edges'] / total:.1f})."
        + (f" Note: {r['warning']}." if "warning" in r else "")
    )
    return section
