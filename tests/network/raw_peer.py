"""A raw libp2p peer: a bare py-libp2p host with GossipSub and none of our code.

It speaks the same wire protocols as a p2pmarket node (TCP + Noise + Yamux,
GossipSub 1.0-1.2 with strict message signing) but validates nothing and
publishes whatever bytes a test gives it, so a test can play a hostile or buggy
peer against a real node::

    async with raw_peer() as raw:
        await raw.connect(node)
        await raw.join_mesh(node)
        await raw.publish(b"garbage", [topics.ALL_LISTINGS])

It can also answer and open streams of any protocol with a test's own script
(``handle``, ``open_stream``), e.g. to play a lying peer in catch-up sync.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import multiaddr
import trio
from conftest import eventually
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.records.validator import NamespacedValidator, Validator
from libp2p.tools.anyio_service import background_trio_service

from p2pmarket.network import topics
from p2pmarket.network.dht import CATALOGUE_NS, LISTING_NS
from p2pmarket.node import Node


class AnythingGoes(Validator):
    """A DHT validator that takes any value: the raw peer stores what it is told."""

    def validate(self, key: str, value: bytes) -> None:
        pass

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


class RawPeer:
    def __init__(
        self, host: Any, pubsub: Pubsub, gossipsub: GossipSub, dht: KadDHT, nursery: trio.Nursery
    ) -> None:
        self.host = host
        self.pubsub = pubsub
        self.gossipsub = gossipsub
        self.dht = dht  # a Kademlia server in our namespaces that validates nothing
        self._nursery = nursery

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id().to_base58())

    async def connect(self, node: Node) -> None:
        info = info_from_p2p_addr(multiaddr.Multiaddr(node.status().addresses[0]))
        with trio.fail_after(5):
            await self.host.connect(info)
            await self.dht.add_peer(info.peer_id, skip_server_mode_check=True)

    async def join_mesh(self, node: Node, topic: str = topics.ALL_LISTINGS) -> None:
        """Subscribe to ``topic`` and wait until each side has the other in its mesh:
        only then does a publish reach the node (py-libp2p publishes to mesh peers
        only). Subscribing once the node's own subscription is known grafts it at
        once, instead of at the next heartbeat."""
        network = node._network
        assert network is not None
        theirs = ID.from_base58(node.peer_id)
        ours = self.host.get_id()
        await eventually(lambda: theirs in self.pubsub.peer_topics.get(topic, ()))
        if topic not in self.pubsub.topic_ids:
            self._nursery.start_soon(_drain, await self.pubsub.subscribe(topic))
        await eventually(lambda: theirs in self.gossipsub.mesh.get(topic, ()))
        await eventually(lambda: ours in network.gossip.router.mesh.get(topic, ()))

    def handle(self, protocol: str, script: Callable[[INetStream], Awaitable[None]]) -> None:
        """Answer streams of ``protocol`` that a node opens with ``script``."""
        self.host.set_stream_handler(TProtocol(protocol), script)

    async def open_stream(self, node: Node, protocol: str) -> INetStream:
        """A stream of ``protocol`` to ``node``, which must be connected."""
        with trio.fail_after(5):
            stream: INetStream = await self.host.new_stream(
                ID.from_base58(node.peer_id), [TProtocol(protocol)]
            )
        return stream

    def connected_to(self, node: Node) -> bool:
        return ID.from_base58(node.peer_id) in self.host.get_connected_peers()

    async def publish(self, data: bytes, topic_ids: list[str]) -> None:
        """Publish ``data`` as it is: signed at the pubsub layer by this peer's host
        key (strict signing, like every node), but never looked at."""
        with trio.fail_after(5):
            await self.pubsub.publish(topic_ids, data)

    async def publish_each(self, data: bytes, topic_ids: list[str]) -> None:
        """Publish ``data`` as a node does: one message per topic."""
        for topic in topic_ids:
            await self.publish(data, [topic])


async def _drain(subscription: Any) -> None:
    # A subscription queue holds 32 messages; keep it empty like a node does.
    while True:
        await subscription.get()


@asynccontextmanager
async def raw_peer() -> AsyncIterator[RawPeer]:
    """A running raw peer on 127.0.0.1 (it subscribes in ``join_mesh``); stopped on exit."""
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=create_new_key_pair(), listen_addrs=listen, muxer_preference="YAMUX")
    gossipsub = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,  # py-libp2p's default (120 s) would take minutes to mesh
        heartbeat_initial_delay=0.1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    dht = KadDHT(
        host,
        DHTMode.SERVER,
        validator=NamespacedValidator({LISTING_NS: AnythingGoes(), CATALOGUE_NS: AnythingGoes()}),
        validator_changed=True,
        enable_random_walk=False,
    )
    async with (
        host.run(listen),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
        background_trio_service(dht),
        trio.open_nursery() as nursery,
    ):
        await pubsub.wait_until_ready()
        try:
            yield RawPeer(host, pubsub, gossipsub, dht, nursery)
        finally:
            # Hang up before the services stop: py-libp2p 0.8.1's pubsub fails
            # ("Nursery is closed to new arrivals") on a message that arrives
            # while it shuts down.
            with trio.move_on_after(2, shield=True):
                for peer in list(host.get_connected_peers()):
                    await host.disconnect(peer)
            nursery.cancel_scope.cancel()


async def assert_banned(node: Node, raw: RawPeer) -> None:
    """The node hung up on the raw peer and keeps it out for a while: a redial
    from the peer is closed at once, and the node will not dial it either."""
    from p2pmarket.errors import NetworkError

    network = node._network
    assert network is not None
    await eventually(lambda: network.banned(raw.peer_id) is not None)
    await eventually(lambda: not raw.connected_to(node))
    refused = network.counters["banned_refused"]

    try:
        await raw.connect(node)
    except Exception:
        pass  # refused during the handshake: as good as closed after it
    else:
        await eventually(lambda: network.counters["banned_refused"] > refused)
    await eventually(lambda: not raw.connected_to(node))
    address = str(raw.host.get_addrs()[0])
    if "/p2p/" not in address:
        address += f"/p2p/{raw.peer_id}"
    try:
        await node.connect(address)
    except NetworkError as exc:
        assert "banned" in str(exc)
    else:
        raise AssertionError("the node dialled a banned peer")
    assert not raw.connected_to(node)
