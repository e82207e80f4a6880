"""Resource limits on real hosts: connections over a cap are closed at once and
the ones kept go on working; a peer that opens too many streams has the extra
ones reset; a node accepts inbound connections for as long as it runs.

See network/limits.py and docs/PROTOCOL.md, "Resource limits".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import multiaddr
import trio
from conftest import LOOPBACK, Cluster, connect, eventually, settle
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from p2pmarket.errors import P2PMarketError
from p2pmarket.network.limits import Gate
from p2pmarket.node import Node


def gate(node: Node) -> Gate:
    network = node._network
    assert network is not None
    return network.gate


def peers_of(node: Node) -> set[str]:
    return {p.peer_id for p in node.peers()}


@asynccontextmanager
async def bare_host() -> AsyncIterator[Any]:
    """A libp2p host with nothing on it (no pubsub, no DHT): every stream it
    has open at a node is one a test opened."""
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=create_new_key_pair(), listen_addrs=listen, muxer_preference="YAMUX")
    async with host.run(listen):
        yield host


async def dial(host: Any, node: Node) -> None:
    info = info_from_p2p_addr(multiaddr.Multiaddr(node.status().addresses[0]))
    host.get_network().unblock_peer(info.peer_id)
    with trio.fail_after(5):
        await host.connect(info)


async def test_a_node_full_of_inbound_connections_closes_the_next_and_keeps_the_others(
    cluster: Cluster,
) -> None:
    a = await cluster.start_node(config=replace(LOOPBACK, max_connections=2))
    b, c, d = await cluster.start(3, topology="none")
    await connect(b, a)
    await connect(c, a)
    await eventually(lambda: peers_of(a) == {b.peer_id, c.peer_id})

    with contextlib.suppress(P2PMarketError):  # d may see the hang-up at once or a bit later
        await connect(d, a)
    await eventually(lambda: gate(a).closed >= 1)
    await eventually(lambda: a.peer_id not in peers_of(d))
    # Kept: b and c. (A may later dial d itself, through the DHT: outbound
    # connections have room of their own, so only the inbound cap is tested.)
    assert {b.peer_id, c.peer_id} <= peers_of(a)

    # The two kept connections still carry gossip both ways.
    await settle([a, b, c])
    from_b = b.create_listing(title="Helm Bogo", price=150_000, category="vehicles/parts")
    await eventually(lambda: [x.id for x in a.search("bogo").listings] == [from_b.id])
    from_a = a.create_listing(title="Jas hujan", price=80_000, category="vehicles/parts")
    await eventually(lambda: [x.id for x in c.search("hujan").listings] == [from_a.id])


async def test_the_inbound_cap_per_ip_counts_loopback_when_asked(cluster: Cluster) -> None:
    config = replace(LOOPBACK, max_connections_per_ip=1, limit_loopback=True)
    a = await cluster.start_node(config=config)
    b, c = await cluster.start(2, topology="none")
    await connect(b, a)
    await eventually(lambda: peers_of(a) == {b.peer_id})
    with contextlib.suppress(P2PMarketError):
        await connect(c, a)
    await eventually(lambda: gate(a).closed >= 1)
    await eventually(lambda: a.peer_id not in peers_of(c))
    assert peers_of(a) == {b.peer_id}


async def test_a_node_accepts_inbound_connections_for_as_long_as_it_runs(
    cluster: Cluster,
) -> None:
    # py-libp2p 0.8.1 never gives back an inbound slot while the node runs: with
    # these caps its own limiter has 1 slot, and the second dial would be refused.
    a = await cluster.start_node(config=replace(LOOPBACK, max_connections=3, outbound_room=0))
    async with bare_host() as peer:
        for _ in range(6):
            await dial(peer, a)
            await eventually(lambda: peer.get_id().to_base58() in peers_of(a))
            await peer.get_network().close_peer(ID.from_base58(a.peer_id))
            await eventually(lambda: peer.get_id().to_base58() not in peers_of(a))
    assert gate(a).refused == 0


async def test_a_peer_opening_too_many_streams_has_the_extra_ones_reset(cluster: Cluster) -> None:
    cap = 4
    a = await cluster.start_node(config=replace(LOOPBACK, max_streams_per_peer=cap))
    streams = gate(a).streams
    async with bare_host() as peer:
        await dial(peer, a)
        me = peer.get_id().to_base58()
        # Identify (the peer asks the node too) has come and gone.
        await eventually(lambda: peer.get_peerstore().get_protocols(ID.from_base58(a.peer_id)))
        await eventually(lambda: streams.open[me] == 0)
        (conn,) = peer.get_network().get_connections(ID.from_base58(a.peer_id))
        # Raw muxed streams that never name a protocol: each holds a handler on
        # the node (waiting for the protocol) until it is reset or times out.
        opened = [await conn.muxed_conn.open_stream() for _ in range(cap + 6)]
        await eventually(lambda: streams.refused == 6)
        assert streams.open[me] == cap

        async def reset(stream: Any) -> bool:
            with trio.move_on_after(1):
                try:
                    await stream.read(1)
                except Exception:
                    return True
                await trio.sleep(1)  # data (the protocol header): a live stream
            return False

        seen = [await reset(s) for s in opened[cap:]]
        assert all(seen), seen

        # Once the peer closes what it holds, it may open streams again.
        for stream in opened[:cap]:
            with contextlib.suppress(Exception):
                await stream.reset()
        await eventually(lambda: streams.open[me] == 0)
        ping = await peer.new_stream(ID.from_base58(a.peer_id), ["/ipfs/ping/1.0.0"])
        await ping.write(b"x" * 32)
        with trio.fail_after(5):
            assert await ping.read(32) == b"x" * 32
        assert streams.refused == 6
