"""``python -m bench.netscale``: a network of real daemons on separate hosts, measured.

Every node is its own ``p2pmarket daemon`` process in its own network namespace
(bench/netrig.py), some behind NAT routers, meeting the others only through the
bootstrap addresses it is given (each knows 3 nodes started before it, as a user
who joined from invite lines would). For each network size it measures:

- gossip reach: from the ``listing create`` call on a random node to each other
  node's ``ListingAdded`` event (read from every daemon's event stream as it
  happens; one machine, so one monotonic clock); p50/p95 over every delivery, and
  the time to the last node per listing;
- DHT lookups: ``fetch_listing`` (a DHT get by listing id) and ``fetch_seller`` (the
  seller's catalogue) from random nodes, wall time through the control socket.
  py-libp2p 0.8.1 does not report the hops of a lookup, so hops are not measured;
- join sync: a node started late, bootstrapped to one random node: time until it
  holds the whole catalogue;
- bytes per listing per node: the frames on every host's ``eth0`` during the
  publishes, less the idle rate measured just before, per listing and node;
- relay share: of the NAT'd nodes' connections, how many run through a relay
  (``/p2p-circuit``), once the daemon has relays;
- memory: each daemon's resident set.

Two cores run all the daemons, so publishes are paced (one per ``--pace`` seconds)
and every figure includes the CPU contention of N daemons on 2 cores. Links have no
delay (no ``tc netem`` here). ``--write`` puts the results table into the
"A network of hosts" section of BENCHMARKS.md, between its netscale markers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.config import DATA_DIR, REPORT
from bench.netrig import Host, Rig, sweep_stale, unavailable_reason
from bench.stats import percentile
from p2pmarket.records import format_id

BATCH: Final = 8  # daemons started at once (2 cores: their imports overlap)
KNOWN: Final = 3  # bootstrap addresses each node is given
REACH_DEADLINE: Final = 30.0  # after the last publish
LOOKUPS: Final = 8  # of each kind, from random nodes
# The daemon gives a lookup 20 s (dht_timeout); a py-libp2p hang can outlast it.
LOOKUP_TIMEOUT: Final = 30.0
BEGIN: Final = "<!-- netscale:begin -->"
END: Final = "<!-- netscale:end -->"
RESULTS: Final = DATA_DIR / "netscale.json"

Json = dict[str, Any]


def log(text: str) -> None:
    print(f"[netscale] {text}", file=sys.stderr, flush=True)


@dataclass
class Arrivals:
    """When each listing reached each host, from the hosts' event streams."""

    at: dict[tuple[str, str], float] = field(default_factory=dict)  # (host, id) -> time
    lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self, host: Host) -> None:
        threading.Thread(target=self._read, args=(host,), daemon=True).start()

    def _read(self, host: Host) -> None:
        try:
            with host.client() as client:
                for event in client.events():
                    if type(event).__name__ == "ListingAdded":
                        key = (host.name, format_id(event.listing.id))  # type: ignore[union-attr]
                        with self.lock:
                            self.at.setdefault(key, time.monotonic())
        except Exception:  # the daemon stopped: the stream ends
            return

    def count(self, listing_id: str) -> int:
        with self.lock:
            return sum(1 for (_, lid) in self.at if lid == listing_id)


def _rss_mib(host: Host) -> float:
    if host.process is None:
        return 0.0
    text = Path(f"/proc/{host.process.pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def _cpu_seconds(hosts: list[Host]) -> float:
    """User + system CPU time the daemons have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for host in hosts:
        if host.process is not None and host.process.poll() is None:
            fields = Path(f"/proc/{host.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _status(host: Host) -> Any:
    with host.client() as client:
        return client.status()


def _total_bytes(hosts: list[Host]) -> int:
    return sum(sum(h.net_bytes()) for h in hosts) // 2  # each frame counted once


def _start(rig: Rig, hosts: list[Host], rng: random.Random) -> float:
    """Start every daemon in batches, each knowing up to KNOWN earlier public nodes."""
    t0 = time.monotonic()
    rig.start(hosts[0])
    rig.wait_ready(hosts[:1])
    ready: list[Host] = hosts[:1]
    for i in range(1, len(hosts), BATCH):
        batch = hosts[i : i + BATCH]
        for host in batch:
            public = [h for h in ready if h.public] or ready
            rig.start(host, rng.sample(public, min(KNOWN, len(public))))
        rig.wait_ready(batch)
        ready += batch
    return time.monotonic() - t0


def _settle(hosts: list[Host], timeout: float = 60.0) -> float:
    """Wait until every node has 2 peers, then 5 s for meshes (heartbeat 1 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(_status(h).peers >= 2 for h in hosts):
            break
        time.sleep(0.5)
    time.sleep(5)
    return time.monotonic() - t0


def measure(n: int, *, nat_share: float, publishes: int, pace: float, seed: int) -> Json:
    rng = random.Random(seed + n)
    sweep_stale()
    pace = pace or max(1.0, n / 10)
    out: Json = {"n": n, "pace_s": pace, "load_before": os.getloadavg()[0]}
    with Rig() as rig:
        n_nat = round(n * nat_share)
        hosts = [rig.add_host() for _ in range(n - n_nat)]
        for i in range(n_nat):  # one router per NAT'd host, kinds alternating
            hosts.append(rig.add_host(rig.add_router("eim" if i % 2 == 0 else "symmetric")))
        later = hosts[1:]  # the first stays public: someone must be dialable first
        rng.shuffle(later)
        hosts[1:] = later
        out["nat"] = n_nat
        log(f"N={n}: starting {n} daemons ({n_nat} behind NAT)")
        out["start_s"] = _start(rig, hosts, rng)
        out["settle_s"] = _settle(hosts)
        peers = [_status(h).peers for h in hosts]
        out["peers_p50"] = percentile(peers, 50)
        arrivals = Arrivals()
        for host in hosts:
            arrivals.follow(host)
        time.sleep(1)

        # Background work (heartbeats, DHT refresh, sync timers) comes in bursts:
        # the idle window is as long as the publishing will be, up to 60 s.
        idle_window = min(60.0, max(10.0, publishes * pace))
        b0, c0 = _total_bytes(hosts), _cpu_seconds(hosts)
        time.sleep(idle_window)
        idle_rate = (_total_bytes(hosts) - b0) / idle_window
        idle_cpu = (_cpu_seconds(hosts) - c0) / idle_window  # CPU seconds per second
        out["idle_bytes_per_node_s"] = idle_rate / n
        out["idle_cpu_busy"] = idle_cpu / (os.cpu_count() or 1)

        log(f"N={n}: {publishes} publishes, one per {pace:g} s")
        sent: dict[str, tuple[str, float]] = {}
        b1, t1, c1 = _total_bytes(hosts), time.monotonic(), _cpu_seconds(hosts)
        per_host_1 = {h.name: sum(h.net_bytes()) for h in hosts}
        sellers = [hosts[rng.randrange(n)] for _ in range(publishes)]
        for k, seller in enumerate(sellers):
            begun = time.monotonic()
            with seller.client() as client:
                listing = client.create_listing(
                    title=f"Sepeda netscale {n} nomor {k}", price=150000 + k, category="vehicles"
                )
            sent[format_id(listing.id)] = (seller.name, begun)
            time.sleep(max(0.0, pace - (time.monotonic() - begun)))
        deadline = time.monotonic() + REACH_DEADLINE
        while time.monotonic() < deadline:
            if all(arrivals.count(lid) >= n for lid in sent):
                break
            time.sleep(0.2)
        t2 = time.monotonic()
        b2, c2 = _total_bytes(hosts), _cpu_seconds(hosts)
        moved = {h.name: sum(h.net_bytes()) - per_host_1[h.name] for h in hosts}
        out["cpu_busy"] = (c2 - c1) / (t2 - t1) / (os.cpu_count() or 1)
        out["cpu_s_per_listing"] = (c2 - c1 - idle_cpu * (t2 - t1)) / publishes
        deliveries: list[float] = []
        last: list[float] = []
        missed = 0
        for lid, (seller_name, begun) in sent.items():
            times = []
            for host in hosts:
                if host.name == seller_name:
                    continue
                at = arrivals.at.get((host.name, lid))
                if at is None:
                    missed += 1
                else:
                    times.append(at - begun)
            deliveries += times
            if len(times) == n - 1:
                last.append(max(times))
        out["reach_p50_s"] = percentile(deliveries, 50) if deliveries else None
        out["reach_p95_s"] = percentile(deliveries, 95) if deliveries else None
        out["full_reach_p50_s"] = percentile(last, 50) if last else None
        out["full_reach_p95_s"] = percentile(last, 95) if last else None
        out["missed"] = missed
        out["deliveries"] = len(deliveries) + missed
        gross = b2 - b1
        net = gross - idle_rate * (t2 - t1)
        out["bytes_per_listing_node_gross"] = gross / (publishes * n)
        out["bytes_per_listing_node"] = max(net, 0.0) / (publishes * n)

        log(f"N={n}: DHT lookups")
        time.sleep(3)  # the DHT put follows the gossip by ~2 s
        ids = list(sent)
        gets: list[float] = []
        catalogues: list[float] = []
        failures = 0
        for k in range(min(LOOKUPS, len(ids))):
            lid = ids[k]
            seller_name = sent[lid][0]
            asker = rng.choice([h for h in hosts if h.name != seller_name])
            seller = next(h for h in hosts if h.name == seller_name)
            for what, method, params in (
                (gets, "fetch_listing", {"listing_id": lid}),
                (catalogues, "fetch_seller", {"seller": seller.peer_id}),
            ):
                begun = time.monotonic()
                try:
                    with asker.client() as client:
                        client.call(method, params, timeout=LOOKUP_TIMEOUT)
                    what.append(time.monotonic() - begun)
                except Exception as exc:  # a lookup that failed is counted, not fatal
                    failures += 1
                    log(f"{method} from {asker.name}: {type(exc).__name__} {exc}")
        out["dht_get_p50_s"] = percentile(gets, 50) if gets else None
        out["dht_get_p95_s"] = percentile(gets, 95) if gets else None
        out["dht_catalogue_p50_s"] = percentile(catalogues, 50) if catalogues else None
        out["dht_failures"] = failures

        log(f"N={n}: a late joiner syncs the catalogue")
        total = len(sent)
        joiner = rig.add_host()
        begun = time.monotonic()
        rig.start(joiner, [rng.choice([h for h in hosts if h.public])])
        rig.wait_ready([joiner])
        out["join_ready_s"] = time.monotonic() - begun
        synced = None
        while time.monotonic() - begun < 60:
            if _status(joiner).cached_listings >= total:
                synced = time.monotonic() - begun
                break
            time.sleep(0.2)
        out["join_sync_s"] = synced

        nat_hosts = [h for h in hosts if not h.public]
        relay_ids = {r for h in nat_hosts for r in _status(h).relays}
        relays = [h for h in hosts if h.peer_id in relay_ids]
        others = [h for h in hosts if h.public and h.peer_id not in relay_ids]
        out["relays"] = len(relays)
        # Relays' traffic during the publishes beside other public nodes': what
        # carrying the NAT'd nodes' circuits costs them.
        if relays and others:
            out["relay_bytes_ratio"] = (sum(moved[h.name] for h in relays) / len(relays)) / (
                sum(moved[h.name] for h in others) / len(others)
            )
        else:
            out["relay_bytes_ratio"] = None
        out["reachability"] = sorted(_status(h).reachability for h in nat_hosts)
        relayed = direct = 0
        for host in nat_hosts:
            with host.client() as client:
                found = client.peers()
            for peer in found:
                if any("/p2p-circuit" in a for a in peer.addresses):
                    relayed += 1
                else:
                    direct += 1
        out["nat_connections_relayed"] = relayed
        out["nat_connections_direct"] = direct
        out["rss_mib_p50"] = percentile([_rss_mib(h) for h in hosts], 50)
        out["exited"] = [h.name for h in rig.hosts if not h.running]
    log(f"N={n}: {json.dumps(out)}")
    return out


def _s(value: float | None) -> str:
    if value is None:
        return "missed"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def _two(r: Json, a: str, b: str) -> str:
    return f"{_s(r[a])} / {_s(r[b])}"


_ROWS: Final[list[tuple[str, Callable[[Json], str]]]] = [
    ("nodes (behind NAT)", lambda r: f"{r['n']} ({r['nat']})"),
    ("peers per node, p50", lambda r: f"{r['peers_p50']:.0f}"),
    ("gossip reach p50 / p95 (each delivery)", lambda r: _two(r, "reach_p50_s", "reach_p95_s")),
    (
        "time to the last node p50 / p95",
        lambda r: _two(r, "full_reach_p50_s", "full_reach_p95_s"),
    ),
    ("deliveries missed", lambda r: f"{r['missed']} of {r['deliveries']}"),
    (
        "bytes per listing per node (less idle; gross)",
        lambda r: f"{r['bytes_per_listing_node']:,.0f}; {r['bytes_per_listing_node_gross']:,.0f}",
    ),
    ("idle traffic per node", lambda r: f"{r['idle_bytes_per_node_s']:,.0f} B/s"),
    (
        "CPU per listing, whole network (less idle)",
        lambda r: f"{r['cpu_s_per_listing'] * 1000:,.0f} ms",
    ),
    (
        "both cores busy: idle / while publishing",
        lambda r: f"{r['idle_cpu_busy']:.0%} / {r['cpu_busy']:.0%}",
    ),
    ("one publish every", lambda r: f"{r['pace_s']:g} s"),
    ("load average before (every process)", lambda r: f"{r['load_before']:.1f}"),
    ("DHT get by id p50 / p95", lambda r: _two(r, "dht_get_p50_s", "dht_get_p95_s")),
    ("DHT catalogue get p50", lambda r: _s(r["dht_catalogue_p50_s"])),
    ("DHT lookups failed", lambda r: str(r["dht_failures"])),
    ("late joiner: ready / whole catalogue", lambda r: _two(r, "join_ready_s", "join_sync_s")),
    (
        "NAT'd nodes' connections relayed / direct",
        lambda r: f"{r['nat_connections_relayed']} / {r['nat_connections_direct']}",
    ),
    (
        "relays held by NAT'd nodes; a relay's bytes / another public node's",
        lambda r: (
            f"{r.get('relays', 0)}; "
            + ("none" if r.get("relay_bytes_ratio") is None else f"{r['relay_bytes_ratio']:.2f}x")
        ),
    ),
    ("daemon RSS p50", lambda r: f"{r['rss_mib_p50']:.0f} MiB"),
    ("start all daemons", lambda r: _s(r["start_s"])),
]


def table(results: list[Json]) -> str:
    head = "| | " + " | ".join(f"N={r['n']}" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for name, cell in _ROWS:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in results) + " |")
    return "\n".join(lines)


def write_section(text: str, report: Path = REPORT) -> None:
    """Replace the generated part of BENCHMARKS.md's netscale section (or append it)."""
    doc = report.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip() + f"\n\n## A network of hosts (issue 14)\n\n{block}\n"
    report.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netscale", description=__doc__)
    parser.add_argument("--sizes", default="10,20,40", help="network sizes, comma-separated")
    parser.add_argument("--nat", type=float, default=0.25, help="share of nodes behind NAT")
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument(
        "--pace", type=float, default=0.0, help="seconds between publishes (0: N/10, at least 1)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"netscale: {reason}", file=sys.stderr)
        return 1
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        results.append(
            measure(n, nat_share=args.nat, publishes=args.publishes, pace=args.pace, seed=args.seed)
        )
    text = table(results)
    when = time.strftime("%Y-%m-%d")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    text = (
        f"`python -m bench.netscale --sizes {args.sizes} --nat {args.nat:g} --publishes "
        f"{args.publishes}` at {commit or '?'} on {when} (2 cores, every daemon its own "
        f"process and namespace, links without delay):\n\n{text}"
    )
    print(text)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
