"""The DHT's mode follows AutoNAT (p2pmarket/network/dht_mode.py), between real
py-libp2p hosts on 127.0.0.1, each with a KadDHT, our AutoNat and a follower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import multiaddr  # type: ignore[import-untyped]
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from p2pmarket.errors import ConfigError
from p2pmarket.network import _libp2p_fixes
from p2pmarket.network.autonat import AutoNat
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.dht_mode import (
    KAD_PROTOCOL,
    DhtModeFollower,
    dht_mode_of,
    initial_dht_mode,
)

_libp2p_fixes.apply()


class DhtPeer:
    def __init__(self, host: Any, dht: KadDHT, autonat: AutoNat, follower: DhtModeFollower):
        self.host, self.dht, self.autonat, self.follower = host, dht, autonat, follower

    @property
    def id(self) -> Any:
        return self.host.get_id()

    def serves_kad_to(self, other: DhtPeer) -> bool:
        return KAD_PROTOCOL in [str(p) for p in other.host.get_peerstore().get_protocols(self.id)]

    def in_table_of(self, other: DhtPeer) -> bool:
        return other.dht.routing_table.peer_in_table(self.id)


@asynccontextmanager
async def dht_peer(mode: str) -> AsyncIterator[DhtPeer]:
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=create_new_key_pair(), listen_addrs=listen, muxer_preference="YAMUX")
    config = NetworkConfig(dht_mode=mode)
    dht = KadDHT(host, initial_dht_mode(config), enable_random_walk=False)
    follower = DhtModeFollower(dht, host, dht_mode_of(config))
    autonat = AutoNat(host, on_change=follower.on_change, retry=0.2, poll=0.05)
    async with host.run(listen), background_trio_service(dht), trio.open_nursery() as nursery:
        await nursery.start(autonat.run)
        await nursery.start(follower.run)
        yield DhtPeer(host, dht, autonat, follower)
        nursery.cancel_scope.cancel()


async def connect(a: DhtPeer, b: DhtPeer) -> None:
    addr = b.host.get_transport_addrs()[0].encapsulate(multiaddr.Multiaddr(f"/p2p/{b.id}"))
    with trio.fail_after(5):
        await a.host.connect(info_from_p2p_addr(addr))


async def eventually(check: Any, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.02)
    assert check()


def test_modes_from_the_config() -> None:
    assert initial_dht_mode(NetworkConfig()) == DHTMode.CLIENT  # "auto" starts as a client
    assert initial_dht_mode(NetworkConfig(dht_mode="server")) == DHTMode.SERVER
    assert dht_mode_of(NetworkConfig(dht_mode="server", dht_server=False)) == "client"
    with pytest.raises(ConfigError, match="dht_mode must be one of"):
        dht_mode_of(replace(NetworkConfig(), dht_mode="sometimes"))


async def test_auto_becomes_a_server_once_public_and_its_peers_add_it() -> None:
    async with dht_peer("auto") as a, dht_peer("server") as b:
        assert a.dht.mode == DHTMode.CLIENT
        await connect(a, b)
        await eventually(lambda: a.autonat.status == "public")
        await eventually(lambda: a.dht.mode == DHTMode.SERVER)
        await eventually(lambda: a.serves_kad_to(b))  # identify push
        await eventually(lambda: a.in_table_of(b))  # a's self-lookup reached b
        # Reachability lost: a client again, and b's identify of a says so.
        a.follower.on_change("private")
        await eventually(lambda: a.dht.mode == DHTMode.CLIENT)
        await eventually(lambda: not a.serves_kad_to(b))
        assert a.follower.switches == 2


async def test_a_client_that_queries_a_server_stays_out_of_its_table() -> None:
    async with dht_peer("client") as a, dht_peer("server") as b:
        await connect(a, b)
        await eventually(lambda: b.serves_kad_to(a) and a.autonat.status == "public")
        assert await a.dht.add_peer(b.id)
        with trio.fail_after(5):
            found = await a.dht.peer_routing.find_closest_peers_network(a.id.to_bytes())
        assert b.id in found  # the query went to b…
        assert not a.in_table_of(b)  # …and b did not take the client in (py-libp2p did)
        assert a.dht.mode == DHTMode.CLIENT and a.follower.switches == 0
