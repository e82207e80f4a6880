"""Connecting to peers, and what a running node says about itself.

Every failure is a ``P2PMarketError`` with a one-line message: a typo in an
address is ``InvalidInput`` (the user's to fix), a peer that cannot be reached is
``NetworkError`` (try later, or another address), raised within the configured
connect timeout.
"""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
import trio
from conftest import LOOPBACK, Cluster, connect, eventually
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pmarket.errors import InvalidInput, NetworkError, OfflineError, P2PMarketError
from p2pmarket.node import Node

IMPATIENT = replace(LOOPBACK, connect_timeout=2.0)


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def random_peer_id() -> str:
    return str(ID.from_pubkey(create_new_key_pair().public_key).to_base58())


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, f"not a one-line message: {text!r}"
    return text


async def test_connecting_to_text_that_is_not_a_multiaddr_raises_invalid_input(
    cluster: Cluster,
) -> None:
    (a,) = await cluster.start(1)
    for address in ["not an address", "/ip4/127.0.0.1/tcp/notaport", "/ip4/1.2.3.4\n/tcp/1", ""]:
        with pytest.raises(InvalidInput) as caught:
            await a.connect(address)
        assert "/p2p/" in one_line(caught.value)  # it shows what an address looks like


async def test_connecting_to_an_address_without_a_peer_id_raises_invalid_input(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2, topology="none")
    without_id = b.status().addresses[0].split("/p2p/")[0]
    with pytest.raises(InvalidInput, match="no peer id") as caught:
        await a.connect(without_id)
    one_line(caught.value)
    assert not a.peers()


async def test_connecting_to_an_invalid_peer_id_raises_invalid_input(cluster: Cluster) -> None:
    (a,) = await cluster.start(1)
    with pytest.raises(InvalidInput) as caught:
        await a.connect(f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/12D3KooWnotapeerid")
    one_line(caught.value)


async def test_connecting_to_itself_raises_invalid_input(cluster: Cluster) -> None:
    (a,) = await cluster.start(1)
    with pytest.raises(InvalidInput, match="itself"):
        await a.connect(a.status().addresses[0])


async def test_connecting_to_an_unreachable_peer_raises_a_network_error_within_the_timeout(
    cluster: Cluster,
) -> None:
    a = await cluster.start_node(config=IMPATIENT)
    address = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{random_peer_id()}"

    started = trio.current_time()
    with pytest.raises(NetworkError) as caught:
        await a.connect(address)

    assert trio.current_time() - started < IMPATIENT.connect_timeout + 0.5
    assert isinstance(caught.value, P2PMarketError)
    one_line(caught.value)
    assert a.online and not a.peers()


async def test_connecting_to_a_peer_returns_it_and_both_sides_see_each_other(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2, topology="none")

    info = await a.connect(b.status().addresses[0])

    assert info.peer_id == b.peer_id
    assert info.direction == "outbound"
    assert info.addresses and all("/tcp/" in x for x in info.addresses)
    await eventually(lambda: [p.peer_id for p in b.peers()] == [a.peer_id])
    assert b.peers()[0].direction == "inbound"


async def test_connecting_twice_to_the_same_peer_keeps_one_connection(cluster: Cluster) -> None:
    a, b = await cluster.start(2, topology="line")  # b dialled a
    await connect(b, a)
    assert [p.peer_id for p in b.peers()] == [a.peer_id]
    assert b.status().peers == 1


async def test_a_peer_at_a_new_address_is_reached_right_after_its_old_address_failed(
    cluster: Cluster,
) -> None:
    # A peer book entry or a bootstrap address can be stale (the peer moved);
    # the address the user gives next must still be tried.
    a, b = await cluster.start(2, topology="none")
    stale = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{b.peer_id}"
    with pytest.raises(NetworkError):
        await a.connect(stale)

    info = await a.connect(b.status().addresses[0])

    assert info.peer_id == b.peer_id


async def test_a_second_run_of_a_running_node_raises(cluster: Cluster) -> None:
    (a,) = await cluster.start(1)
    with pytest.raises(P2PMarketError, match="already running"):
        await cluster.nursery.start(a.run, LOOPBACK)
    assert a.online  # the first run is unharmed
    assert a.status().online


async def test_status_reports_online_addresses_with_the_peer_id_and_the_peer_count(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.start(3, topology="none")
    await connect(b, a)
    await connect(c, a)

    status = a.status()

    assert status.online
    assert status.peer_id == a.peer_id
    assert status.addresses and all(x.endswith(f"/p2p/{a.peer_id}") for x in status.addresses)
    assert all(x.startswith("/ip4/127.0.0.1/tcp/") for x in status.addresses)
    assert status.peers == 2
    assert status.topics == ("p2pmarket/1/listings", "p2pmarket/1/profiles", "p2pmarket/1/reviews")
    assert status.started > 0
    assert {"gossip_accepted", "dht_puts", "dropped_events"} <= set(status.extra)


async def test_a_stopped_node_reports_offline_and_refuses_network_operations(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2, topology="line")
    home = a.home.root
    await cluster.stop(a)

    with Node.open(home) as offline:
        status = offline.status()
        assert not status.online
        assert status.addresses == () and status.peers == 0
        with pytest.raises(OfflineError, match="not connected to the network"):
            await offline.connect(b.status().addresses[0])
        with pytest.raises(OfflineError):
            await offline.fetch_listing("a" * 26)
        with pytest.raises(OfflineError):
            offline.peers()


async def test_a_stopped_node_no_longer_accepts_connections(cluster: Cluster) -> None:
    (node,) = await cluster.start(1)
    port = int(node.status().addresses[0].split("/tcp/")[1].split("/")[0])

    await cluster.stop(node)

    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", port))
