"""The DHT: a node that never saw the gossip finds listings and catalogues.

Seller A, in a line A-B-C, puts each listing it writes in the Kademlia DHT under
its id, and (a second later, once per burst) its signed catalogue under its key.
Node D joins afterwards, connected to C only and following another category, so no
gossip about A's listings ever reaches it: whatever it knows, it fetched.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import trio
from conftest import LOOPBACK, Cluster, connect, dht_idle, dht_value, eventually
from factories import OTHER, SELLER, signed_listing
from libp2p.peer.id import ID
from raw_peer import raw_peer

from p2pmarket import records
from p2pmarket.errors import InvalidRecord, NotFound
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.dht import ListingValidator, catalogue_key, listing_key
from p2pmarket.node import Node
from p2pmarket.records import Listing, Tombstone

CATEGORY = "vehicles/bicycles"
# D follows only this category, so A's bicycles never reach it by gossip.
# Sync would bring it everything at once; these tests are about the DHT.
OUTSIDER = replace(LOOPBACK, follow=("electronics",), sync_on_connect=False)


def now() -> int:
    return int(time.time())


def catalogue_ids(node: Node, seller: Node) -> set[bytes] | None:
    """The listing ids of ``seller``'s catalogue as ``node``'s DHT store holds it."""
    value = dht_value(node, catalogue_key(seller.public_key))
    if value is None:
        return None
    return {listing_id for listing_id, _ in records.validate_catalogue(value, now()).items}


async def published(
    cluster: Cluster, seller: Node, live: list[Listing], withdrawn: list[Tombstone] = ()
) -> None:
    """Wait until ``seller`` has finished its DHT puts, and its peers hold each record
    and a catalogue of exactly the ``live`` listings (the first puts of a new
    network may reach only B: routing tables are still being filled)."""
    others = [n for n in cluster.nodes if n is not seller]

    def held(key: str, value: bytes) -> bool:
        return any(dht_value(n, key) == value for n in others)

    await eventually(
        lambda: (
            dht_idle(seller)
            and all(held(listing_key(x.id), x.encoded) for x in [*live, *withdrawn])
            and any(catalogue_ids(n, seller) == {x.id for x in live} for n in others)
        )
    )


async def seller_and_peers(cluster: Cluster, count: int = 2) -> tuple[Node, Node, list[Listing]]:
    """Seller A in a line A-B-C with ``count`` listings in the DHT; returns A, C, listings."""
    a, _, c = await cluster.start(3, topology="line")
    listings = [
        a.create_listing(title=f"Sepeda nomor {n}", price=1_000_000 * n, category=CATEGORY)
        for n in range(1, count + 1)
    ]
    await published(cluster, a, listings)
    return a, c, listings


async def outsider(cluster: Cluster, via: Node, config: NetworkConfig = OUTSIDER) -> Node:
    """A new node D connected to ``via`` only, following another category."""
    d = await cluster.start_node(config=config)
    await connect(d, via)
    return d


async def test_a_node_outside_the_gossip_mesh_fetches_a_listing_by_id(cluster: Cluster) -> None:
    _, c, (first, _) = await seller_and_peers(cluster)
    d = await outsider(cluster, via=c)
    assert not d.search("sepeda").listings

    fetched = await d.fetch_listing(records.format_id(first.id))

    assert fetched == first
    assert [x.id for x in d.search("sepeda").listings] == [first.id]
    assert d.status().extra["gossip_accepted"] == 0  # it came from the DHT


async def test_a_node_outside_the_gossip_mesh_fetches_every_live_listing_of_a_seller(
    cluster: Cluster,
) -> None:
    a, c, listings = await seller_and_peers(cluster, count=3)
    d = await outsider(cluster, via=c)

    fetched = await d.fetch_seller(a.peer_id)

    assert sorted(x.id for x in fetched) == sorted(x.id for x in listings)
    assert {x.id for x in d.search("sepeda", limit=10).listings} == {x.id for x in listings}


async def test_updates_and_withdrawals_reach_a_new_fetcher_and_a_second_fetch_alike(
    cluster: Cluster,
) -> None:
    a, c, (changed, gone, kept) = await seller_and_peers(cluster, count=3)
    d = await outsider(cluster, via=c)
    assert len(await d.fetch_seller(a.peer_id)) == 3

    newer = a.update_listing(changed.id, price=500_000)
    tombstone = a.withdraw_listing(gone.id)
    await published(cluster, a, [newer, kept], [tombstone])

    # D fetched before: its second fetch brings the new version and the withdrawal.
    fetched = await d.fetch_seller(a.peer_id)
    assert sorted(x.id for x in fetched) == sorted([changed.id, kept.id])
    assert d.get_listing(changed.id) == newer
    with pytest.raises(NotFound, match="withdrawn"):
        d.get_listing(gone.id)

    # E never saw any of it: the same live listings, and the withdrawn one is gone.
    e = await outsider(cluster, via=c)
    fetched = await e.fetch_seller(a.peer_id)
    assert sorted(x.id for x in fetched) == sorted([changed.id, kept.id])
    assert e.get_listing(changed.id) == newer
    with pytest.raises(NotFound):
        await e.fetch_listing(gone.id)


async def test_fetching_an_unknown_listing_raises_not_found_within_the_dht_timeout(
    cluster: Cluster,
) -> None:
    _, _, c = await cluster.start(3, topology="line")
    impatient = replace(OUTSIDER, dht_timeout=2.0)
    d = await outsider(cluster, via=c, config=impatient)
    unknown = signed_listing(SELLER, created=now())

    started = trio.current_time()
    with pytest.raises(NotFound, match="no peer has listing"):
        await d.fetch_listing(unknown.id)
    assert trio.current_time() - started < impatient.dht_timeout + 1.0


async def test_fetching_an_unknown_seller_raises_not_found(cluster: Cluster) -> None:
    _, b = await cluster.start(2, topology="line")
    d = await outsider(cluster, via=b)
    with pytest.raises(NotFound, match="no catalogue"):
        await d.fetch_seller(OTHER.public_key)


async def test_a_dht_value_stored_under_another_listings_key_is_refused(
    cluster: Cluster,
) -> None:
    # A raw peer (validating nothing) stores seller A's genuine listing under the
    # key of another listing and pushes it to B: B refuses to store it, and a
    # node that looks the other listing up gets NotFound, not the wrong record.
    b, c = await cluster.start(2, topology="line")
    genuine = signed_listing(SELLER, created=now())
    victim = signed_listing(OTHER, created=now())
    wrong_key = listing_key(victim.id)
    async with raw_peer() as raw:
        await raw.connect(b)
        with trio.fail_after(5):
            await raw.dht.put_value(wrong_key, records.encode(genuine))
        assert raw.dht.value_store.get(wrong_key.encode()) is not None

        assert dht_value(b, wrong_key) is None
        with pytest.raises(NotFound):
            await c.fetch_listing(victim.id)
        with pytest.raises(NotFound):
            c.get_listing(genuine.id)


async def test_a_lookup_of_a_catalogue_key_walks_past_the_first_peer_like_a_listing_key(
    cluster: Cluster,
) -> None:
    # The raw peer knows only B; B knows A. An iterative Kademlia lookup from the
    # raw peer learns A from B's FIND_NODE answer, whatever the key, as long as
    # the key is one a py-libp2p 0.8.1 server answers for (at most 50 bytes).
    a, b = await cluster.start(2, topology="line")
    listing = signed_listing(SELLER, created=now())
    # B adds A to its routing table once identify shows A serves Kademlia: wait
    # for it, or B has nobody to answer with (a race that failed under load).
    table = b._network.routing.dht.routing_table  # type: ignore[union-attr]
    await eventually(lambda: table.peer_in_table(ID.from_base58(a.peer_id)))
    async with raw_peer() as raw:
        await raw.connect(b)
        routing = raw.dht.peer_routing
        with trio.fail_after(5):
            via_listing = await routing.find_closest_peers_network(listing_key(listing.id).encode())
            via_catalogue = await routing.find_closest_peers_network(
                catalogue_key(SELLER.public_key).encode()
            )

    everyone = {a.peer_id, b.peer_id}
    assert {p.to_base58() for p in via_listing} == everyone
    assert {p.to_base58() for p in via_catalogue} == everyone


def test_the_listing_validator_binds_a_record_to_its_own_key() -> None:
    validator = ListingValidator(now)
    listing = signed_listing(SELLER, created=now())
    other = signed_listing(OTHER, created=now())

    validator.validate(listing_key(listing.id), records.encode(listing))
    with pytest.raises(InvalidRecord, match="does not match its DHT key"):
        validator.validate(listing_key(other.id), records.encode(listing))
