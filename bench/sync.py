"""Catch-up sync: a new node gets the market from its peers, a returning one what changed.

Every node runs in its own OS process, as it would on a real network, so the
figures are not one interpreter doing both sides of a session:

* **peers** (:func:`peer_main`): each opens its own home (its own identity; the
  store is a copy of the benchmark store built once from the dataset, the same
  one the search benchmark uses), optionally ingests a file of changes, starts
  its node on 127.0.0.1 and prints its multiaddr; it serves until the parent
  closes its stdin.
* **the measuring node** (:func:`measure`, run by :func:`bench.cluster.run_child`
  with a hard deadline): a fresh home (join) or a copy of the benchmark store
  (return) opened as the daemon opens it (``resident=True``); it connects to the
  peers, times ``await node.sync(peer)`` (one peer) or ``await node.sync()``
  (all connected peers at once), and prints the figures: seconds, the bytes its
  sessions sent and received (``SyncProgress``), what they fetched, and what the
  store holds afterwards, with a fingerprint of its whole sync set that must
  equal the peer's. Its ``import`` mode is the baseline: ``Node.import_listings``
  of the dataset's export file into a fresh home, in a fresh interpreter too.

Every node runs with ``sync_on_connect=False`` and no sync timer, so sync runs
exactly when measured. The parent kills every child that outlives its deadline.

Scenarios: *join* from one peer and from three peers at once (all holding the
same listings), against the local import of the same records; *return*: a node
holding the dataset syncs with a peer on which 1% of it changed meanwhile (half
updates, a quarter withdrawals, a quarter new listings), against the bytes of
the full sync.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import trio

from bench.cluster import ROOT, Json, child_env, network_config, run_child, start_profiling
from bench.config import Sizes
from bench.data import LIFETIME, Dataset, dataset, new_listing, sellers
from bench.report import table
from bench.results import Row, Section, verdict
from bench.stats import count
from bench.stores import our_home
from p2pmarket import records
from p2pmarket.exchange import read_export, write_export
from p2pmarket.home import Home
from p2pmarket.network.reconcile import ItemSet
from p2pmarket.node import Node, init_home
from p2pmarket.records import Listing, Tombstone

if TYPE_CHECKING:
    from p2pmarket.store import ListingStore

TARGET_JOIN_RATIO: Final = 3.0  # sync time ≤ 3x the local import of the same records
TARGET_RETURN_SHARE: Final = 0.03  # resync bytes ≤ 3% of a full sync's
CHANGED_SHARE: Final = 0.01
PEERS: Final = 3
MANUAL: Final = network_config(sync_on_connect=False, sync_interval=0)
PEER_PREFIX: Final = "BENCH-PEER "
PEER_START_TIMEOUT: Final = 120.0  # start-up, changes ingested
PEER_STOP_TIMEOUT: Final = 15.0
_TEARDOWN_SECONDS: Final = 20.0

Figures = dict[str, Json]


# -- what a store holds ---------------------------------------------------------


def set_digest(store: ListingStore, now: int) -> Json:
    """The whole sync set of a store as one fingerprint (the reconciliation's own),
    its size, and its live listings: two stores with the same digest hold the
    same version of every record."""
    items = ItemSet.build(store.sync_items(now))
    return {
        "items": len(items),
        "fingerprint": items.fingerprint(0, len(items)).hex(),
        "listings": store.listing_count,
    }


# -- the changes made while the returning node was away -------------------------


def make_changes(ds: Dataset, path: Path, share: float = CHANGED_SHARE) -> Json:
    """Write ``share`` of ``ds`` changed to an export file: half updates (seq + 1, a
    new price), a quarter withdrawals, a quarter new listings, all signed by the
    dataset's sellers and made now. Returns the counts."""
    total = max(4, round(ds.count * share))
    updates, withdrawals = total // 2, total // 4
    fresh = total - updates - withdrawals
    rng = random.Random(f"sync-changes:{ds.seed}:{ds.count}")
    picked = rng.sample(range(ds.count), updates + withdrawals)
    to_update, to_withdraw = set(picked[:updates]), set(picked[updates:])
    signers = {signer.public_key: signer for signer in sellers(ds.seed)}
    now = int(time.time())
    out: list[bytes] = []
    for index, data in enumerate(ds.raw()):
        if index not in to_update and index not in to_withdraw:
            continue
        listing = records.decode(data, now)
        assert isinstance(listing, Listing)
        signer = signers[listing.seller]
        if index in to_update:
            draft = replace(
                listing,
                seq=listing.seq + 1,
                price=max(100, listing.price * 9 // 10),
                created=now,
                expires=now + LIFETIME,
                signature=b"",
                encoded=b"",
            )
            out.append(records.encode(records.sign(draft, signer.sign)))
        else:
            tombstone = Tombstone(
                seller=listing.seller,
                nonce=listing.nonce,
                seq=listing.seq + 1,
                created=now,
                expires=now + records.MAX_LIFETIME,
            )
            out.append(records.encode(records.sign(tombstone, signer.sign)))
    keys = sellers(ds.seed)
    for _ in range(fresh):
        signer = keys[rng.randrange(len(keys))]
        out.append(records.encode(new_listing(rng, ds.seed, signer, now - rng.randrange(3600))))
    rng.shuffle(out)
    write_export(path, out)
    return {"total": total, "updates": updates, "withdrawals": withdrawals, "new": fresh}


# -- peers: one process each ------------------------------------------------------


def peer_main() -> None:
    """Entry point of a peer process: JSON params on the command line."""
    params = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="%(relativeCreated)7.0f %(name)s %(message)s"
    )
    trio.run(_peer, params)


async def _peer(params: Json) -> None:
    home = Path(params["home"])
    # A peer book left by an earlier scenario would make it dial a node that is gone.
    Home(home).peers_file.unlink(missing_ok=True)
    node = Node.open(home, resident=True)
    try:
        info: Json = {}
        if params.get("changes"):
            report = node.ingest(read_export(Path(params["changes"])))
            if report.rejected:
                raise RuntimeError(f"the changes were rejected: {report.rejected[:3]}")
            info["ingested"] = report.accepted
        info.update(set_digest(node.store, node.now()))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(node.run, MANUAL)
            info["address"] = node.status().addresses[0]
            info["peer_id"] = node.peer_id
            print(PEER_PREFIX + json.dumps(info), flush=True)
            # Serve until the parent closes our stdin (or kills us).
            await _wait_for_eof()
            killer = threading.Timer(_TEARDOWN_SECONDS, os._exit, args=(0,))
            killer.daemon = True
            killer.start()
            await _leave(node, nursery)
    finally:
        node.close()


async def _leave(node: Node, nursery: trio.Nursery) -> None:
    """Stop the node cleanly (within the teardown budget), then end its nursery."""
    node.stop()
    with trio.move_on_after(_TEARDOWN_SECONDS - 5):
        while node.online:
            await trio.sleep(0.05)
    nursery.cancel_scope.cancel()


async def _wait_for_eof() -> None:
    """Until our stdin ends: the parent closed it to stop us."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some():
            pass


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system, every thread) a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Peers:
    """Running peer processes (see :func:`peers`)."""

    def __init__(self, procs: list[subprocess.Popen[bytes]], infos: list[Json]) -> None:
        self.procs = procs
        self.infos = infos

    @property
    def addresses(self) -> list[str]:
        return [str(info["address"]) for info in self.infos]

    def cpu(self) -> float:
        return sum(_cpu_of(proc.pid) for proc in self.procs)


def _read_lines(stream: IO[bytes], found: queue.Queue[Json | None]) -> None:
    for raw in stream:
        line = raw.decode(errors="replace")
        if line.startswith(PEER_PREFIX):
            found.put(json.loads(line[len(PEER_PREFIX) :]))
    found.put(None)  # EOF: the peer is gone


def _keep_tail(stream: IO[bytes], tail: deque[str]) -> None:
    for raw in stream:
        tail.append(raw.decode(errors="replace").rstrip())


@contextmanager
def peers(homes: list[Path], changes: Path | None = None) -> Iterator[Peers]:
    """One running peer process per home; all are stopped (or killed) on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    readers: list[threading.Thread] = []
    try:
        yield _start_peers(homes, changes, procs, readers)
    finally:
        for proc in procs:
            if proc.stdin is not None:
                with suppress(OSError):
                    proc.stdin.close()
        deadline = time.monotonic() + PEER_STOP_TIMEOUT
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join(timeout=5)  # the pipes end with the processes
        for proc in procs:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with suppress(OSError):
                        stream.close()


def _start_peers(
    homes: list[Path],
    changes: Path | None,
    procs: list[subprocess.Popen[bytes]],
    readers: list[threading.Thread],
) -> Peers:
    """Start a peer per home and wait until every one listens. Each process and
    reader thread is added to ``procs`` and ``readers`` at once, for the caller
    to stop and join whatever happens."""
    code = "from bench.sync import peer_main; peer_main()"
    started: list[tuple[queue.Queue[Json | None], deque[str]]] = []
    for home in homes:
        params = {"home": str(home), "changes": str(changes) if changes else None}
        proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(params)],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        found: queue.Queue[Json | None] = queue.Queue()
        tail: deque[str] = deque(maxlen=15)
        assert proc.stdout is not None and proc.stderr is not None
        readers += [
            threading.Thread(target=_read_lines, args=(proc.stdout, found), daemon=True),
            threading.Thread(target=_keep_tail, args=(proc.stderr, tail), daemon=True),
        ]
        readers[-2].start()
        readers[-1].start()
        started.append((found, tail))
    deadline = time.monotonic() + PEER_START_TIMEOUT
    infos = []
    for proc, (found, tail) in zip(procs, started, strict=True):
        try:
            info = found.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            info = None
        if info is None:
            proc.kill()
            proc.wait()
            time.sleep(0.2)  # the stderr reader's last lines
            text = "\n".join(tail)
            raise RuntimeError(f"a sync peer did not start (exit {proc.returncode}):\n{text}")
        infos.append(info)
    return Peers(procs, infos)


# -- the measuring node -------------------------------------------------------------


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def measure(params: Json, report: Callable[[Json], None]) -> None:
    """The measuring child (run by :func:`bench.cluster.child_main`)."""
    home = Path(params["root"]) / "home"
    init_home(home, None)
    if params.get("store_from"):
        shutil.copytree(params["store_from"], Home(home).store_dir)
    if params["mode"] == "import":
        _measure_import(home, Path(params["export"]), report)
    else:
        await _measure_sync(home, params["peers"], report)


def _measure_import(home: Path, export: Path, report: Callable[[Json], None]) -> None:
    with Node.open(home) as node:
        start_profiling()
        cpu = _cpu_seconds()
        started = time.perf_counter()
        done = node.import_listings(export)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        result: Json = {
            "seconds": seconds,
            "cpu": cpu,
            "added": done.added,
            "rejected": len(done.rejected),
            "after": set_digest(node.store, node.now()),
        }
    report(result)


async def _measure_sync(home: Path, addresses: list[str], report: Callable[[Json], None]) -> None:
    node = Node.open(home, resident=True)  # as the daemon, which `p2pmarket sync` asks
    result: Json = {"before": node.store.listing_count}
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(node.run, MANUAL)
            began = time.perf_counter()
            ids = []
            for address in addresses:
                with trio.fail_after(60):
                    ids.append((await node.connect(address)).peer_id)
            result["connect_seconds"] = time.perf_counter() - began
            start_profiling()
            cpu = time.process_time()
            started = time.perf_counter()
            fetching: list[float] = []
            nursery.start_soon(_watch_reconciled, node, started, fetching)
            sessions = await node.sync(ids[0] if len(ids) == 1 else None)
            result["seconds"] = time.perf_counter() - started
            result["cpu"] = time.process_time() - cpu
            result["reconciled"] = fetching[0] if fetching else None
            result["sessions"] = [asdict(s) for s in sessions]
            result["after"] = set_digest(node.store, node.now())
            report(result)
            await _leave(node, nursery)
    finally:
        node.close()


async def _watch_reconciled(node: Node, started: float, out: list[float]) -> None:
    """When every session had reconciled and was fetching (or done), in seconds
    from ``started``: sampled every 50 ms, so the fetch time can be told apart."""
    while True:
        await trio.sleep(0.05)
        running = node.sync_status().sessions
        if running and not any(s.phase == "reconciling" for s in running):
            out.append(time.perf_counter() - started)
            return


# -- the parent ------------------------------------------------------------------


def _budget(n: int) -> float:
    """A child's hard deadline: generous, so a slow sync is measured, not killed."""
    return 120 + n * 0.006


def _sync_child(name: str, running: Peers, n: int, store_from: Path | None = None) -> Json:
    params: Json = {
        "mode": "sync",
        "peers": running.addresses,
        "store_from": str(store_from) if store_from else None,
        "profile_tag": name,
    }
    cpu = running.cpu()
    result = run_child("sync", params, timeout=_budget(n))
    result["peer_cpu"] = running.cpu() - cpu  # connect and teardown included
    result["peers"] = running.infos
    return result


def figures(sizes: Sizes, data_dir: Path) -> Figures:
    """Every scenario's raw figures (see the module docstring)."""
    n = sizes.sync_listings
    ds = dataset(n, sizes.seed, data_dir)
    built = Home(our_home(ds, data_dir).path).store_dir
    found: Figures = {}
    # Short paths: a node's Unix socket path must stay under ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="p2pm-sync-", dir="/tmp") as tmp:
        root = Path(tmp)
        changes = root / "changes.export"
        found["changes"] = make_changes(ds, changes)
        homes = []
        for i in range(PEERS):
            home = root / f"peer{i}"
            init_home(home, None)  # an identity of its own…
            shutil.copytree(built, Home(home).store_dir)  # …and the benchmark's store
            homes.append(home)
        params = {"mode": "import", "export": str(ds.path), "profile_tag": "import"}
        found["import"] = run_child("sync", params, timeout=_budget(n))
        with peers(homes[:1]) as running:
            found["join1"] = _sync_child("join1", running, n)
        with peers(homes) as running:
            found[f"join{PEERS}"] = _sync_child(f"join{PEERS}", running, n)
        with peers(homes[:1], changes) as running:
            found["return"] = _sync_child("return", running, n, store_from=built)
    return found


def session_bytes(result: Json) -> int:
    return sum(s["bytes_sent"] + s["bytes_received"] for s in result["sessions"])


def complete(result: Json) -> bool:
    """Every session ended well and the node now holds exactly what its peers hold."""
    return all(s["phase"] == "done" for s in result["sessions"]) and all(
        result["after"]["fingerprint"] == peer["fingerprint"] for peer in result["peers"]
    )


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def section(found: Figures, n: int) -> Section:
    label = count(n)
    imported = found["import"]
    base = imported["seconds"]
    full = session_bytes(found["join1"])
    section = Section(f"Catch-up sync ({label} listings, every node in its own process)")
    for key, who in (("join1", "1 peer"), (f"join{PEERS}", f"{PEERS} peers at once")):
        r = found[key]
        ok = complete(r) and r["seconds"] <= TARGET_JOIN_RATIO * base
        section.rows.append(
            Row(
                f"join: a fresh node syncs {label} listings from {who}",
                f"{r['seconds']:.1f} s ({r['seconds'] / base:.2f}x import),"
                f" {_mb(session_bytes(r))}, {count(r['after']['listings'])} stored",
                f"`Node.import_listings` of the same export file: {base:.1f} s",
                f"≤ {TARGET_JOIN_RATIO:g}x import = {TARGET_JOIN_RATIO * base:.1f} s, complete",
                verdict(ok),
            )
        )
    back = found["return"]
    ch = found["changes"]
    share = session_bytes(back) / full
    section.rows.append(
        Row(
            f"return: resync after {CHANGED_SHARE:.0%} of {label} changed"
            f" ({ch['updates']} updates, {ch['withdrawals']} withdrawals, {ch['new']} new)",
            f"{_mb(session_bytes(back))} ({share:.2%} of a full sync) in {back['seconds']:.2f} s",
            f"full sync from 1 peer: {_mb(full)}",
            f"≤ {TARGET_RETURN_SHARE:.0%} of a full sync's bytes"
            f" = {_mb(TARGET_RETURN_SHARE * full)}, complete",
            verdict(complete(back) and share <= TARGET_RETURN_SHARE),
        )
    )
    section.details.append(_details(found, n))
    return section


def _details(found: Figures, n: int) -> str:
    headers = (
        "run",
        "seconds (of which reconciling)",
        "sent · received",
        "sessions: known · fetched",
        "listings in store (before → after)",
        "same set as the peers",
        "CPU: node · peers",
    )
    rows = []
    imported = found["import"]
    rows.append(
        (
            "import (baseline)",
            f"{imported['seconds']:.1f}",
            "—",
            f"{count(imported['added'])} added, {imported['rejected']} rejected",
            f"0 → {count(imported['after']['listings'])}",
            "—",
            f"{imported['cpu']:.1f} s (verifier process included) · —",
        )
    )
    for key, name in (
        ("join1", "join, 1 peer"),
        (f"join{PEERS}", f"join, {PEERS} peers"),
        ("return", "return, 1 peer"),
    ):
        r = found[key]
        sessions = r["sessions"]
        sent = sum(s["bytes_sent"] for s in sessions)
        received = sum(s["bytes_received"] for s in sessions)
        rows.append(
            (
                name,
                f"{r['seconds']:.2f} ({_seconds(r.get('reconciled'))})",
                f"{_mb(sent)} · {_mb(received)}",
                " + ".join(f"{count(s['known'])} · {count(s['fetched'])}" for s in sessions),
                f"{count(r['before'])} → {count(r['after']['listings'])}",
                "yes" if complete(r) else "**no**",
                f"{r['cpu']:.1f} s · {r['peer_cpu']:.1f} s",
            )
        )
    ch = found["changes"]
    notes = [
        table(headers, rows),
        "",
        f"Each peer holds the {count(n)} listings of the benchmark store (its own"
        " identity, a copy of the store) and runs in its own process, as does the"
        " measuring node; they talk over TCP on 127.0.0.1 (Noise, Yamux), with"
        " `sync_on_connect` off so that sync runs only when timed. The time is"
        " `await node.sync(peer)` (one peer) or `await node.sync()` (all three connected"
        " peers at once), after connecting; the measuring node opens its store as the"
        " daemon does (`resident=True`). Bytes are what its sessions sent and received"
        " (`SyncProgress`, frames only: no Noise or Yamux overhead). *Reconciling*: until"
        " every session was fetching (sampled every 50 ms). *Known* is what a"
        " session found the peer holds newer; *fetched* what it stored or found already"
        " there (with three peers a record crosses the wire once and the other sessions"
        " count it as arrived). *Same set* compares a fingerprint of the node's whole"
        " sync set afterwards with each peer's. The return scenario's peer ingested"
        f" {ch['total']} changes before it started ({ch['updates']} updates,"
        f" {ch['withdrawals']} withdrawals, {ch['new']} new listings); the returning node"
        " holds the store as it was. CPU: the measuring node's process during the sync"
        " (its verify thread included); the peers' processes from before it connected until"
        " the measuring node was done.",
    ]
    for key in ("import", "join1", f"join{PEERS}", "return"):
        if "warning" in found[key]:
            notes.append(f"{key}: {found[key]['warning']}.")
    return "\n".join(notes)


def run(sizes: Sizes, data_dir: Path) -> Section:
    return section(figures(sizes, data_dir), sizes.sync_listings)
