"""A node restarted from the same home is the same node: identity, data, peers.

The harness stops a node (its network, then its store) and starts a new ``Node``
from the same home folder, as a daemon restart would; every node listens on a new
port each time, so a peer that is dialled again was found through the peer book.
"""

from __future__ import annotations

from conftest import Cluster, connect, dht_idle, dht_value, eventually, expect, settle

from p2pmarket.events import PeerDisconnected
from p2pmarket.network.dht import listing_key
from p2pmarket.network.peerbook import PeerBook

CATEGORY = "vehicles/bicycles"


async def test_a_restarted_node_keeps_its_peer_id_and_its_listings(cluster: Cluster) -> None:
    a, b = await cluster.start(2, topology="line")
    theirs = a.create_listing(title="Sepeda BMX", price=900_000, category=CATEGORY)
    mine = b.create_listing(title="Helm sepeda", price=250_000, category=CATEGORY)
    await eventually(lambda: b.get_listing(theirs.id) == theirs)
    peer_id, home = b.peer_id, b.home.root

    await cluster.stop(b)
    b = await cluster.start_node(home)

    assert b.peer_id == peer_id
    assert b.status().addresses[0].endswith(f"/p2p/{peer_id}")
    assert {x.id for x in b.search("sepeda").listings} == {theirs.id, mine.id}
    assert b.my_listings() == [mine]


async def test_a_restarted_node_redials_its_known_peers_on_its_own(cluster: Cluster) -> None:
    a, b = await cluster.start(2, topology="line")  # b dialled a
    home = b.home.root
    await cluster.stop(b)
    assert a.peer_id in PeerBook.load(b.home.peers_file).peers

    b = await cluster.start_node(home)  # no bootstrap, no connect()

    await eventually(lambda: [p.peer_id for p in b.peers()] == [a.peer_id], timeout=5)


async def test_gossip_reaches_a_restarted_node_again(cluster: Cluster) -> None:
    a, b = await cluster.start(2, topology="line")
    home, peer_id = b.home.root, b.peer_id
    async with a.events() as events:
        await cluster.stop(b)
        # Only once a has seen b leave: py-libp2p 0.8.1 pubsub keeps a peer's old
        # stream if the peer is back before the old connection is cleaned up.
        await expect(events, lambda e: e == PeerDisconnected(peer_id), timeout=3)

    b = await cluster.start_node(home)
    await eventually(lambda: [p.peer_id for p in b.peers()] == [a.peer_id], timeout=5)
    await settle([a, b])

    listing = a.create_listing(title="Sepeda motor listrik", price=7_000_000, category=CATEGORY)
    await eventually(lambda: b.get_listing(listing.id) == listing)


async def test_a_restarted_node_that_was_only_dialled_waits_to_be_dialled_again(
    cluster: Cluster,
) -> None:
    # The peer book keeps peers we dialled (their listen address is known), not
    # peers that dialled us (their source port is not one they listen on).
    a, b = await cluster.start(2, topology="line")  # b dialled a
    await cluster.stop(a)
    assert b.peer_id not in PeerBook.load(a.home.peers_file).peers


async def test_a_restarted_seller_puts_its_listings_back_in_the_dht_once_it_has_peers(
    cluster: Cluster,
) -> None:
    # DHT copies live in memory: when both the seller and its peer restart, the
    # seller's own re-put is all that brings its listings back. Peers come a
    # moment after start (bootstrap, redial, or someone dialling in).
    a, b = await cluster.start(2, topology="line")
    listing = a.create_listing(title="Sepeda tandem", price=3_000_000, category=CATEGORY)
    await eventually(lambda: dht_value(b, listing_key(listing.id)) == listing.encoded)
    homes = a.home.root, b.home.root
    await cluster.stop(b)
    await cluster.stop(a)

    b = await cluster.start_node(homes[1])
    a = await cluster.start_node(homes[0])
    await eventually(lambda: dht_idle(a))  # whatever a does on its own at start is done
    await connect(a, b)

    await eventually(lambda: dht_value(b, listing_key(listing.id)) == listing.encoded, timeout=5)
