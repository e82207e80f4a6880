"""The multi-node harness: N real nodes in one trio run, on 127.0.0.1.

Each node has its own temporary home and identity, a real LevelDB store and a
real py-libp2p host (TCP + Noise + Yamux, GossipSub, Kademlia); mDNS is off so
tests see only the peers they connect. ``cluster.start(3, topology="line")``
returns running nodes; everything is stopped and closed when the test ends.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import pytest
import trio

from p2pmarket.events import Event
from p2pmarket.network.config import NetworkConfig
from p2pmarket.node import Node, init_home

# The DHT pinned to server mode: in "auto" (the default) a node becomes a server
# once AutoNAT says public and then looks itself up, which connects it to peers
# a test's topology left out (a raw attacker on the far side of a line, say).
# Auto mode has its own tests (test_dht_mode_follow.py) and runs in the daemons.
LOOPBACK = NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",), mdns=False, dht_mode="server")
_names = itertools.count()


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is truthy (and does not raise); fail after ``timeout``."""
    last: Exception | None = None
    with trio.move_on_after(timeout):
        while True:
            try:
                if check():
                    return
            except Exception as exc:
                last = exc
            await trio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s (last error: {last!r})")


async def expect(
    events: trio.MemoryReceiveChannel[Event], wanted: Callable[[Event], bool], timeout: float = 5.0
) -> Event:
    """The first event from ``events`` that is ``wanted``; fail after ``timeout``."""
    seen: list[Event] = []
    with trio.move_on_after(timeout):
        async for event in events:
            if wanted(event):
                return event
            seen.append(event)
    raise AssertionError(f"no such event within {timeout} s; saw {seen!r}")


class Cluster:
    def __init__(self, root: Path, nursery: trio.Nursery) -> None:
        self.root = root
        self.nursery = nursery
        self.nodes: list[Node] = []

    def new_home(self) -> Path:
        home = self.root / f"n{next(_names)}"
        init_home(home, None)
        return home

    async def start_node(self, home: Path | None = None, config: NetworkConfig = LOOPBACK) -> Node:
        node = Node.open(home or self.new_home())
        self.nodes.append(node)
        await self.nursery.start(node.run, config)
        return node

    async def start(
        self,
        count: int,
        topology: Literal["line", "none"] = "line",
        config: NetworkConfig = LOOPBACK,
    ) -> list[Node]:
        nodes = [await self.start_node(config=config) for _ in range(count)]
        if topology == "line":
            for left, right in itertools.pairwise(nodes):
                await connect(right, left)
            await settle(nodes)
        return nodes

    async def stop(self, node: Node) -> None:
        node.stop()
        await eventually(lambda: not node.online)
        node.close()
        self.nodes.remove(node)


async def connect(node: Node, peer: Node) -> None:
    """Have ``node`` dial ``peer`` at its first listen address."""
    await node.connect(peer.status().addresses[0])


def dht_value(node: Node, key: str) -> bytes | None:
    """What ``node`` holds in its own DHT store under ``key`` (no network lookup)."""
    network = node._network
    assert network is not None and network.routing.dht is not None
    record = network.routing.dht.value_store.get(key.encode())
    return None if record is None else bytes(record.value)


def dht_idle(node: Node) -> bool:
    """No DHT put of ``node``'s is queued, running, or (its catalogue) waiting to be."""
    network = node._network
    assert network is not None
    due = node._catalogue_due
    return network.routing.idle() and not (due is not None and due.is_set())


async def settle(nodes: list[Node]) -> None:
    """Wait until every connected node has a GossipSub mesh for its topics."""

    def meshed() -> bool:
        for node in nodes:
            network = node._network
            assert network is not None
            if network.peers() and not any(
                network.gossip.router.mesh.get(t) for t in network.topics
            ):
                return False
        return True

    await eventually(meshed)


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> AsyncIterator[Cluster]:
    # A short root: the daemon's Unix socket path must stay under ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="p2pm-", dir="/tmp") as root:
        net = Cluster(Path(root), nursery)
        try:
            yield net
        finally:
            for node in list(net.nodes):
                node.stop()
            for node in net.nodes:
                await eventually(lambda node=node: not node.online)  # type: ignore[misc]
                node.close()
            await trio.sleep(0.05)
