"""N real nodes in one trio run on 127.0.0.1, for the network benchmarks.

Each node has its own temporary home, identity, LevelDB store and py-libp2p host
(TCP + Noise + Yamux, GossipSub, Kademlia), started with ``Node.run`` exactly as
an embedder starts it; mDNS is off so that the nodes see only the topology they
are given.

Every measurement runs in a child process (:func:`run_child`): py-libp2p 0.8.1 can
hang on a failed stream in a shielded scope that no trio deadline reaches, so
the parent enforces a hard deadline by killing the child, and each network size
starts from a fresh interpreter (no state or garbage left by a previous size,
and libp2p never loaded into the process that runs the other benchmarks). The
child prints one JSON line with its figures *before* it tears the nodes down, so
a hang on shutdown loses nothing.
"""

from __future__ import annotations

import contextlib
import cProfile
import importlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import trio

from p2pmarket.network.config import NetworkConfig
from p2pmarket.node import Node, init_home

ROOT: Final = Path(__file__).resolve().parent.parent
LOOPBACK: Final = NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",), mdns=False)
ECHO_PROTOCOL: Final = "/p2pmarket-bench/echo/1.0.0"
RESULT_PREFIX: Final = "BENCH-RESULT "
# Set to a file path to write a cProfile of the measured part of a child run.
PROFILE_ENV: Final = "P2PM_BENCH_PROFILE"
_CONNECT_CONCURRENCY: Final = 8
_TEARDOWN_SECONDS: Final = 20.0
_STABLE_SECONDS: Final = 1.5
_TEMP_PREFIX: Final = "p2pm-bench-"

Json = dict[str, Any]
_PROFILER: list[cProfile.Profile | None] = [None]


# -- topology -----------------------------------------------------------------


def sparse_topology(n: int, rng: random.Random) -> list[tuple[int, int]]:
    """A connected sparse random graph on ``n`` nodes where every node has degree ~3:
    a ring over a shuffled order (connected, degree 2) plus a random matching."""
    edges: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        if a != b:
            edges.add((min(a, b), max(a, b)))

    if n == 2:
        add(0, 1)
    elif n > 2:
        ring = list(range(n))
        rng.shuffle(ring)
        for i in range(n):
            add(ring[i], ring[(i + 1) % n])
        matching = list(range(n))
        rng.shuffle(matching)
        for a, b in zip(matching[0::2], matching[1::2], strict=False):
            add(a, b)
    return sorted(edges)


def hops_from(start: int, n: int, edges: list[tuple[int, int]]) -> list[int]:
    """Shortest-path hop counts from ``start`` to every node (BFS)."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    dist = [-1] * n
    dist[start] = 0
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in neighbours[here]:
            if dist[there] < 0:
                dist[there] = dist[here] + 1
                queue.append(there)
    return dist


# -- the cluster --------------------------------------------------------------


class Cluster:
    """Nodes started in one nursery; see :func:`cluster`."""

    def __init__(self, root: Path, nursery: trio.Nursery) -> None:
        self.root = root
        self.nursery = nursery
        self.nodes: list[Node] = []

    async def start_node(self, config: NetworkConfig = LOOPBACK) -> Node:
        home = self.root / f"n{len(self.nodes)}"
        init_home(home, None)
        node = Node.open(home)
        self.nodes.append(node)
        with trio.fail_after(60):
            await self.nursery.start(node.run, config)
        return node

    async def link(self, edges: list[tuple[int, int]]) -> None:
        """Connect the given pairs of node indexes (b dials a), a few at a time."""
        limiter = trio.CapacityLimiter(_CONNECT_CONCURRENCY)

        async def connect(a: int, b: int) -> None:
            async with limiter:
                with trio.fail_after(60):
                    await self.nodes[b].connect(self.nodes[a].status().addresses[0])

        async with trio.open_nursery() as nursery:
            for a, b in edges:
                nursery.start_soon(connect, a, b)

    async def settle(self, timeout: float | None = None) -> float:
        """Wait until every node has a GossipSub mesh with each of its peers on the
        topics it shares with them (up to GossipSub's low degree D_lo), the DHT
        puts every node makes on start (its catalogue) are done, and the number of
        connections has stopped changing. Returns the seconds it took."""
        started = time.perf_counter()

        def meshed() -> bool:
            for node in self._running():
                gossipsub = node._network.gossip.router
                for topic in node._network.topics:
                    peers = gossipsub.pubsub.peer_topics.get(topic, set())
                    wanted = min(len(peers), gossipsub.degree_low)
                    if len(gossipsub.mesh.get(topic, set())) < wanted:
                        return False
            return True

        def announced() -> bool:
            # Once connected, a node puts its catalogue (and listings) in the DHT.
            return all(dht_done(node) >= 1 for node in self._running())

        budget = timeout or 60 + 6 * len(self.nodes)
        with trio.fail_after(budget):
            while not meshed():
                await trio.sleep(0.05)
        # Bounded, not required: only the current node does these start-up puts.
        with trio.move_on_after(budget):
            while not announced():
                await trio.sleep(0.05)
        # The DHT's lookups go on dialling peers for a while: wait (a bounded time)
        # until the number of connections has not changed for a moment.
        with trio.move_on_after(budget):
            last, since = -1, time.perf_counter()
            while time.perf_counter() - since < _STABLE_SECONDS:
                now = sum(len(n._network.host.get_connected_peers()) for n in self._running())
                if now != last:
                    last, since = now, time.perf_counter()
                await trio.sleep(0.1)
        return time.perf_counter() - started

    def _running(self) -> list[Any]:
        return [node for node in self.nodes if node._network is not None]

    def shape(self) -> Json:
        """How connected the nodes are now: connections and GossipSub mesh sizes on the
        market-wide topic, averaged over the nodes that subscribe to it."""
        from p2pmarket.network.topics import ALL_LISTINGS

        connections, meshes = [], []
        for node in self.nodes:
            network = node._network
            assert network is not None and network.gossip.router is not None
            connections.append(len(network.host.get_connected_peers()))
            if ALL_LISTINGS in network.topics:
                meshes.append(len(network.gossip.router.mesh.get(ALL_LISTINGS, ())))
        return {
            "connections": sum(connections) / len(connections),
            "connections_max": max(connections),
            "mesh": sum(meshes) / max(1, len(meshes)),
            "mesh_max": max(meshes, default=0),
        }


def dht_done(node: Node) -> int:
    """DHT puts this node has finished, successfully or not."""
    assert node._network is not None
    counters = node._network.counters
    return int(counters["dht_puts"] + counters["dht_put_failures"])


@asynccontextmanager
async def cluster(root: Path | None = None) -> AsyncIterator[Cluster]:
    """A cluster whose homes live in ``root`` (a new temporary directory if None);
    nodes are stopped and closed on exit."""
    with contextlib.ExitStack() as stack:
        if root is None:
            # A short root: a daemon's Unix socket path must stay under ~107 bytes.
            temporary = tempfile.TemporaryDirectory(prefix=_TEMP_PREFIX, dir="/tmp")
            root = Path(stack.enter_context(temporary))
        async with trio.open_nursery() as nursery:
            net = Cluster(root, nursery)
            try:
                yield net
            finally:
                for node in net.nodes:
                    node.stop()
                with trio.move_on_after(_TEARDOWN_SECONDS) as scope:
                    while any(node.online for node in net.nodes):
                        await trio.sleep(0.05)
                if scope.cancelled_caught:
                    nursery.cancel_scope.cancel()
        for node in net.nodes:
            node.close()


def network_config(**changes: Any) -> NetworkConfig:
    from dataclasses import replace

    return replace(LOOPBACK, **changes)


# -- a direct stream round trip: the baseline of the network benchmarks ---------


async def stream_round_trips(a: Node, b: Node, rounds: int = 50, size: int = 64) -> Json:
    """Open one libp2p stream from ``a`` to ``b`` on an echo protocol and time
    ``rounds`` round trips of ``size`` bytes on it (after one untimed round)."""
    from libp2p.custom_types import TProtocol

    assert a._network is not None and b._network is not None
    host_a, host_b = a._network.host, b._network.host
    protocol = TProtocol(ECHO_PROTOCOL)

    async def echo(stream: Any) -> None:
        try:
            while True:
                data = await stream.read(size)
                if not data:
                    break
                await stream.write(data)
        except Exception:
            pass
        finally:
            with trio.move_on_after(2):
                await stream.close()

    host_b.set_stream_handler(protocol, echo)
    payload = os.urandom(size)
    failures = 0
    with trio.fail_after(60):
        while True:
            opened = time.perf_counter()
            try:
                stream = await host_a.new_stream(host_b.get_id(), [protocol])
                break
            except Exception:  # py-libp2p 0.8.1 now and then fails a stream open
                failures += 1
                if failures >= 5:
                    raise
                await trio.sleep(0.2)
        open_seconds = time.perf_counter() - opened
        times = []
        for round_ in range(rounds + 1):
            started = time.perf_counter()
            await stream.write(payload)
            got = b""
            while len(got) < size:
                chunk = await stream.read(size - len(got))
                if not chunk:
                    raise RuntimeError("the echo stream closed early")
                got += chunk
            if round_:
                times.append(time.perf_counter() - started)
            if got != payload:
                raise RuntimeError("the echo stream returned other bytes")
        with trio.move_on_after(2):
            await stream.close()
    return {"round_trips": times, "open": open_seconds, "open_failures": failures}


# -- child processes ------------------------------------------------------------


def run_child(kind: str, params: Json, timeout: float) -> Json:
    """Run ``bench.<kind>.measure(params, report)`` in a fresh interpreter; its
    figures, or an error saying why not (a child past ``timeout`` is killed)."""
    # The parent owns the nodes' homes, so they are removed even if the child is killed.
    root = tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir="/tmp")
    try:
        return _run_child(kind, {**params, "root": root}, timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_child(kind: str, params: Json, timeout: float) -> Json:
    code = "from bench.cluster import child_main; child_main()"
    argv = [sys.executable, "-c", code, kind, json.dumps(params)]
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        stdout, stderr, code_ = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr)
        code_ = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: Json = json.loads(line[len(RESULT_PREFIX) :])
            if code_ is None:
                result["warning"] = f"the child hung on shutdown and was killed after {timeout} s"
            elif code_ != 0:
                errors = [x for x in stderr.splitlines() if "Error" in x or "Exception" in x]
                last = errors[-1].strip(" |+-") if errors else f"exit status {code_}"
                result["warning"] = (
                    f"stopping the nodes failed after the figures were taken: {last}"
                )
            return result
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    why = f"timed out after {timeout:.0f} s" if code_ is None else f"exited with {code_}"
    raise RuntimeError(f"{kind} benchmark child {why}:\n{tail}")


def child_env() -> dict[str, str]:
    """The environment of a benchmark child: this one, able to import ``bench``, and
    without a P2PMARKET_HOME that could point it at the user's own home."""
    env = {k: v for k, v in os.environ.items() if k not in ("P2PMARKET_HOME",)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def child_main() -> None:
    """Entry point of a child: ``kind`` and JSON params on the command line."""
    kind, params = sys.argv[1], json.loads(sys.argv[2])
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="%(relativeCreated)7.0f %(name)s %(message)s"
    )
    profile_path = os.environ.get(PROFILE_ENV)
    if profile_path and params.get("profile_tag"):
        # A benchmark with several children: one profile each, named by its tag.
        profile_path = f"{profile_path}.{params['profile_tag']}"
    profiler = cProfile.Profile() if profile_path else None

    def report(result: Json) -> None:
        """Print the figures, then give the teardown a bounded time to finish."""
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        killer = threading.Timer(_TEARDOWN_SECONDS + 10, os._exit, args=(0,))
        killer.daemon = True
        killer.start()

    module = importlib.import_module(f"bench.{kind}")
    measure: Callable[[Json, Callable[[Json], None]], Awaitable[None]] = module.measure

    async def main() -> None:
        await measure(params, report)

    _PROFILER[0] = profiler
    trio.run(main)


def phase(text: str) -> None:
    """Mark a phase in the child's log (stderr), on the same clock as libp2p's lines."""
    logging.getLogger("bench").error("--- %s", text)


def start_profiling() -> None:
    """Start the child's profiler (when P2PM_BENCH_PROFILE names a file): the
    measured phase calls this, and the profile is written when it reports."""
    if _PROFILER[0] is not None:
        _PROFILER[0].enable()
