"""What an embedding program sees: ``async with node.events() as events``.

Every change to the cache is one event, tagged with where the record came from
(``local``, ``gossip``, ``dht``); peers coming and going are events too. A Node
runs inside the embedder's own nursery, or for the length of an ``open_node``
block.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing
from conftest import LOOPBACK, Cluster, connect, dht_idle, eventually, expect

from p2pmarket.errors import P2PMarketError
from p2pmarket.events import (
    Event,
    ListingAdded,
    ListingUpdated,
    ListingWithdrawn,
    PeerConnected,
    PeerDisconnected,
)
from p2pmarket.node import Node, open_node

CATEGORY = "vehicles/bicycles"


def is_listing_event(event: Event) -> bool:
    return isinstance(event, ListingAdded | ListingUpdated | ListingWithdrawn)


async def test_a_local_create_update_and_withdrawal_are_events_from_local(
    cluster: Cluster,
) -> None:
    (a,) = await cluster.start(1)
    async with a.events() as events:
        listing = a.create_listing(title="Sepeda", price=1_000_000, category=CATEGORY)
        newer = a.update_listing(listing.id, price=900_000)
        tombstone = a.withdraw_listing(listing.id)

        assert await expect(events, is_listing_event) == ListingAdded(listing, "local")
        assert await expect(events, is_listing_event) == ListingUpdated(newer, "local")
        assert await expect(events, is_listing_event) == ListingWithdrawn(tombstone, "local")


async def test_a_peers_listing_its_update_and_withdrawal_arrive_as_gossip_events(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2, topology="line")
    async with b.events() as events:
        listing = a.create_listing(title="Sepeda", price=1_000_000, category=CATEGORY)
        assert await expect(events, is_listing_event) == ListingAdded(listing, "gossip")

        newer = a.update_listing(listing.id, price=900_000)
        assert await expect(events, is_listing_event) == ListingUpdated(newer, "gossip")

        tombstone = a.withdraw_listing(listing.id)
        assert await expect(events, is_listing_event) == ListingWithdrawn(tombstone, "gossip")


async def test_a_listing_fetched_from_the_dht_is_an_event_from_dht(cluster: Cluster) -> None:
    a, b = await cluster.start(2, topology="line")
    listing = a.create_listing(title="Sepeda", price=1_000_000, category=CATEGORY)
    await eventually(lambda: dht_idle(a))
    outsider = await cluster.start_node(
        config=replace(LOOPBACK, follow=("electronics",), sync_on_connect=False)
    )
    await connect(outsider, b)

    async with outsider.events() as events:
        await outsider.fetch_listing(listing.id)
        assert await expect(events, is_listing_event) == ListingAdded(listing, "dht")


async def test_peers_connecting_and_leaving_are_events_on_both_sides(cluster: Cluster) -> None:
    (a,) = await cluster.start(1)
    async with a.events() as a_events:
        b = await cluster.start_node()
        async with b.events() as b_events:
            await connect(b, a)

            joined = await expect(b_events, lambda e: isinstance(e, PeerConnected))
            assert joined == PeerConnected(a.peer_id, joined.address)  # type: ignore[union-attr]
            assert a.status().addresses[0].startswith(joined.address)  # type: ignore[union-attr]
        arrived = await expect(a_events, lambda e: isinstance(e, PeerConnected))
        assert arrived.peer_id == b.peer_id  # type: ignore[union-attr]
        assert arrived.address.startswith("/ip4/127.0.0.1/tcp/")  # type: ignore[union-attr]

        await cluster.stop(b)

        left = await expect(a_events, lambda e: isinstance(e, PeerDisconnected), timeout=3)
        assert left == PeerDisconnected(b.peer_id)


async def test_a_subscriber_that_falls_behind_misses_newer_events_and_they_are_counted(
    cluster: Cluster,
) -> None:
    (a,) = await cluster.start(1)
    async with a.events(buffer=2) as slow, a.events() as keeping_up:
        made = [
            a.create_listing(title=f"Sepeda {n}", price=1000 * n, category=CATEGORY)
            for n in range(1, 6)
        ]

        assert [(await slow.receive()).listing for _ in range(2)] == made[:2]  # type: ignore[union-attr]
        with pytest.raises(trio.WouldBlock):
            slow.receive_nowait()
        assert a.dropped_events == 3
        assert a.status().extra["dropped_events"] == 3
        assert [(await keeping_up.receive()).listing for _ in range(5)] == made  # type: ignore[union-attr]


async def test_a_node_runs_in_the_embedders_own_nursery_until_stopped(cluster: Cluster) -> None:
    (a,) = await cluster.start(1)
    home = cluster.new_home()
    with Node.open(home) as node:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run, LOOPBACK)  # returns once the node listens
            assert node.online and node.status().online
            await connect(node, a)
            await eventually(lambda: [p.peer_id for p in a.peers()] == [node.peer_id])

            node.stop()
        # The nursery closed: run() returned after stop().
        assert not node.online
        assert not node.status().online


async def test_a_node_whose_catalogue_falls_due_while_it_stops_stops_cleanly(
    cluster: Cluster, mock_clock: trio.testing.MockClock
) -> None:
    # A write schedules a catalogue put 1 s later. Real time flows; the mock
    # clock only lets the test make that second pass at the worst moment: when
    # the network has stopped serving but Node.run has not yet ended its tasks.
    mock_clock.rate = 1.0
    (peer,) = await cluster.start(1)
    with Node.open(cluster.new_home()) as node:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run, LOOPBACK)
            await connect(node, peer)
            listing = node.create_listing(title="Sepeda", price=1_000_000, category=CATEGORY)
            network = node._network
            assert network is not None

            node.stop()
            while network.running:  # connections are being closed
                await trio.sleep(0)
            mock_clock.jump(1.0)  # the catalogue is due now
        assert not node.online
        assert node.get_listing(listing.id) == listing


async def test_open_node_with_a_network_joins_it_for_the_block_and_closes_the_node_after(
    cluster: Cluster,
) -> None:
    (a,) = await cluster.start(1)
    home = cluster.new_home()

    async with open_node(home, network=LOOPBACK) as node:
        assert node.online
        await connect(node, a)
        listing = node.create_listing(title="Sepeda", price=1_000_000, category=CATEGORY)
        await eventually(lambda: a.get_listing(listing.id) == listing)

    assert not node.online
    with pytest.raises(P2PMarketError, match="closed"):
        node.search("sepeda")
    with Node.open(home) as reopened:  # the store was released, the listing kept
        assert reopened.get_listing(listing.id) == listing


async def test_open_node_without_a_network_is_offline(cluster: Cluster) -> None:
    async with open_node(cluster.new_home()) as node:
        assert not node.online
        assert not node.status().online
