"""Reviews between real nodes: written after a completed trade, gossiped, synced,
found in the DHT by seller, and forged ones stopped at the first node.

Nodes validate with the real clock, so records here are built with the time now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
import trio
from conftest import LOOPBACK, Cluster, connect, eventually
from factories import OTHER, SELLER, THIRD, agreed_contract, raw_record, signed_review
from raw_peer import raw_peer

from p2pmarket import records
from p2pmarket.errors import InvalidInput
from p2pmarket.network import topics
from p2pmarket.network.dht import reviews_key, unpack_bundle
from p2pmarket.node import Node
from p2pmarket.records import Review
from p2pmarket.trade import Contract, TradeState

# Outside every gossip that happened before it joined, and not syncing: whatever
# it learns, it fetched from the DHT.
OUTSIDER = replace(LOOPBACK, follow=("electronics",), sync_on_connect=False)


def now() -> int:
    return int(time.time())


async def completed_trade(buyer: Node, seller: Node) -> bytes:
    listing = seller.create_listing(title="Sepeda lipat", price=1_500_000_00, category="vehicles")
    await eventually(lambda: buyer.store.get(listing.id, buyer.now()) is not None)
    trade = buyer.offer(listing.id).trade
    await eventually(lambda: bool(seller.trades()))
    seller.trade_step(trade, "accept")
    await eventually(lambda: buyer.get_trade(trade).state is TradeState.AGREED)
    with pytest.raises(InvalidInput, match="only a completed trade can be reviewed"):
        buyer.review(trade, stars=5)
    buyer.trade_step(trade, "complete")
    await eventually(lambda: seller.get_trade(trade).state is TradeState.COMPLETED)
    return trade


async def test_both_parties_review_and_every_node_agrees_on_their_reputation(
    cluster: Cluster,
) -> None:
    buyer, seller, watcher = await cluster.start(3)
    trade = await completed_trade(buyer, seller)

    praise = buyer.review(trade, stars=5, text="Sesuai foto, penjual ramah.")
    seller.review(trade, stars=4, text="Pembeli cepat bayar.")

    nodes = [buyer, seller, watcher]
    await eventually(lambda: all(len(n.reviews(seller.peer_id)) == 1 for n in nodes))
    await eventually(lambda: all(len(n.reviews(buyer.peer_id)) == 1 for n in nodes))
    assert watcher.reviews(seller.peer_id) == [praise]
    for peer in (buyer, seller):
        figures = {n.reputation(peer.public_key) for n in nodes}
        assert len(figures) == 1, "every node computes the same reputation"
    seen = watcher.reputation(seller.public_key)
    assert (seen.reviews, seen.mean_stars, seen.counterparties) == (1, 5.0, 1)
    assert (seen.trades_as_seller, seen.trades_as_buyer) == (1, 0)
    assert [s.name for s in watcher.sellers([seller.public_key])] == [""]

    # A second review of the same trade replaces the first, everywhere.
    buyer.review(trade, stars=3, text="Ternyata ada lecet.")
    await eventually(lambda: [r.stars for r in watcher.reviews(seller.peer_id)] == [3])
    assert watcher.reputation(seller.public_key).reviews == 1

    # A node that joins later gets them by sync.
    late = await cluster.start_node()
    await connect(late, watcher)
    await eventually(lambda: [r.stars for r in late.reviews(seller.peer_id)] == [3], timeout=20)
    assert late.reputation(seller.public_key) == watcher.reputation(seller.public_key)


async def test_a_node_that_saw_no_gossip_fetches_reviews_and_profile_by_seller(
    cluster: Cluster,
) -> None:
    buyer, seller, relay = await cluster.start(3)
    seller.set_profile(name="Toko Sepeda Budi", location="Yogyakarta")
    trade = await completed_trade(buyer, seller)
    review = buyer.review(trade, stars=5, text="Mantap.")
    await eventually(lambda: len(relay.reviews(seller.peer_id)) == 1)

    outsider = await cluster.start_node(config=OUTSIDER)
    await connect(outsider, relay)

    # The buyer's node merges its review into the seller's bundle in the DHT,
    # where a Kademlia lookup from the outsider finds it.
    async def bundle() -> list[Review]:
        data = await outsider._require_network().get_dht(reviews_key(seller.public_key))
        return [] if data is None else unpack_bundle(data, seller.public_key, now())

    for _ in range(40):
        if await bundle() == [review]:
            break
        await trio.sleep(0.5)
    assert await bundle() == [review]
    assert await outsider.fetch_reviews(seller.peer_id) == [review]
    assert outsider.reputation(seller.public_key).reviews == 1
    profile = outsider.profile(seller.public_key)
    assert profile is not None and profile.location == "Yogyakarta"


# -- forged reviews from a hostile peer ---------------------------------------------------


def fresh_contract(**forge: bytes) -> Contract:
    return replace(agreed_contract(OTHER, SELLER, when=now()), **forge)


def no_contract() -> bytes:
    fields = signed_review(OTHER, fresh_contract(), created=now()).fields()
    del fields["contract"]
    return raw_record(fields, OTHER)


def not_signed_by_the_seller() -> bytes:
    contract = fresh_contract()
    forged = replace(contract, acceptor_signature=THIRD.sign(contract.message()))
    return records.encode(signed_review(OTHER, forged, created=now()))


def reviewer_not_the_buyer() -> bytes:
    fields = signed_review(OTHER, fresh_contract(), created=now()).fields()
    fields["reviewer"] = THIRD.public_key
    return raw_record(fields, THIRD)


def about_someone_else() -> bytes:
    fields = signed_review(OTHER, fresh_contract(), created=now()).fields()
    fields["subject"] = THIRD.public_key
    return raw_record(fields, OTHER)


@pytest.mark.parametrize(
    "forge", [no_contract, not_signed_by_the_seller, reviewer_not_the_buyer, about_someone_else]
)
async def test_a_forged_review_is_rejected_and_its_sender_penalised(
    cluster: Cluster, forge: Callable[[], bytes]
) -> None:
    async with raw_peer() as raw:
        b, c = await cluster.start(2)
        await raw.connect(b)
        await raw.join_mesh(b, topics.REVIEWS)
        assert b._network is not None

        await raw.publish(forge(), [topics.REVIEWS])

        await eventually(lambda: b._network.counters["gossip_rejected"] == 1)
        assert b.store.reviews.count() == 0
        assert b._network.peer_score(raw.peer_id) < 0
        # A genuine review still goes through, and C never saw the forged one.
        genuine = signed_review(OTHER, fresh_contract(), created=now())
        await raw.publish(records.encode(genuine), [topics.REVIEWS])
        await eventually(lambda: c.reviews(SELLER.public_key) == [genuine])
        assert c.store.reviews.count() == 1


async def test_a_duplicate_review_is_ignored_and_a_review_on_the_wrong_topic_rejected(
    cluster: Cluster,
) -> None:
    async with raw_peer() as raw:
        (b,) = await cluster.start(1)
        await raw.connect(b)
        await raw.join_mesh(b, topics.REVIEWS)
        assert b._network is not None
        review = signed_review(OTHER, fresh_contract(), created=now())
        same_seq = signed_review(OTHER, review.contract, created=now(), stars=1)

        await raw.publish(records.encode(review), [topics.REVIEWS])
        await eventually(lambda: b._network.counters["gossip_accepted"] == 1)
        await raw.publish(records.encode(same_seq), [topics.REVIEWS])
        await eventually(lambda: b._network.counters["gossip_ignored"] == 1)
        assert b.reviews(SELLER.public_key) == [review]

        # (new bytes: the same ones again would be dropped as a gossip duplicate)
        misfiled = signed_review(SELLER, review.contract, created=now())
        await raw.publish(records.encode(misfiled), [topics.PROFILES])
        await eventually(lambda: b._network.counters["gossip_rejected"] == 1)
        assert b.reviews(OTHER.public_key) == []
