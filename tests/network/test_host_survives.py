"""What once ended a node's host, and the node with it (found by the flood
benchmark): a node that has met a thousand identities, and a protocol handler
that fails."""

from __future__ import annotations

import multiaddr
import trio
from conftest import Cluster, eventually
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from raw_peer import raw_peer

from p2pmarket.store.messages import State


async def test_a_node_that_met_a_thousand_identities_still_answers_a_new_one(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    host = a._network.host  # type: ignore[union-attr]
    store = host.get_peerstore()
    # What a swarm of made-up identities leaves behind: py-libp2p 0.8.1 caps
    # its peerstore at 1,000 and evicted the host's own key first; the next
    # identify raised PeerStoreError and ended the host.
    for port in range(10_000, 11_001):
        made_up = ID.from_pubkey(create_new_key_pair().public_key)
        store.add_addrs(made_up, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")], 3600)

    assert host.get_public_key() is not None
    async with raw_peer() as raw:
        await raw.connect(a)  # identify runs both ways
        await trio.sleep(0.5)
        assert raw.connected_to(a)
    assert a.online
    a.send_message(b.peer_id, "Masih hidup")
    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)


async def test_a_failing_protocol_handler_costs_its_stream_not_the_node(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    broken = TProtocol("/p2pmarket/test-broken/1.0.0")

    async def fails(stream: object) -> None:
        raise RuntimeError("a bug in a handler")

    a._network.host.set_stream_handler(broken, fails)  # type: ignore[union-attr]
    async with raw_peer() as raw:
        await raw.connect(a)
        for _ in range(3):
            try:
                stream = await raw.open_stream(a, str(broken))
                await stream.read(1)
            except Exception:
                pass  # reset: as it should be
    assert a.online
    a.send_message(b.peer_id, "Masih hidup")
    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)
