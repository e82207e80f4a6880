"""Per-seller publish limits and the cache cap, on real gossip.

A seller's records reach a node through many forwarders, so the per-peer gossip
limit does not bound one seller; the per-seller limit does (sellerlimit.py). The
raw peer (raw_peer.py) plays an honest forwarder of one prolific seller: the
node past the seller's burst drops the rest unstored and unforwarded, takes
other sellers' records as before, and holds nothing against the forwarder.

The limits are small here (a burst of 5) so that the tests send a handful of
records, not the default 500.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from conftest import LOOPBACK, Cluster, eventually
from factories import OTHER, SELLER, THIRD, draft_listing, signed_listing
from raw_peer import RawPeer, raw_peer

from p2pmarket import records
from p2pmarket.errors import RateLimited
from p2pmarket.node import Node
from p2pmarket.records import DAY

TOPICS = ["p2pmarket/1/listings"]
BURST = 5
OVER = 10  # records of the seller past its burst
LIMITED = replace(LOOPBACK, seller_burst=BURST, seller_rate=0.001)  # no refill during a test


def now() -> int:
    return int(time.time())


def held(node: Node, seller: bytes) -> int:
    return len(node.store.by_seller(seller, now()))


def judged(node: Node) -> int:
    assert node._network is not None
    counters = node._network.counters
    return counters["gossip_accepted"] + counters["gossip_ignored"] + counters["gossip_rejected"]


async def publish(raw: RawPeer, node: Node, data: bytes) -> None:
    """Publish one record and wait for ``node``'s verdict on it. Paced: py-libp2p
    drops what overflows a peer's outbound queue (the raw peer's own, here)."""
    before = judged(node)
    await raw.publish(data, TOPICS)
    await eventually(lambda: judged(node) > before)


async def test_a_seller_past_its_burst_is_neither_stored_nor_forwarded(cluster: Cluster) -> None:
    async with raw_peer() as raw:
        b, c = await cluster.start(2, topology="line", config=LIMITED)
        await raw.connect(b)
        await raw.join_mesh(b)
        assert b._network is not None and c._network is not None

        for n in range(BURST + OVER):
            data = records.encode(signed_listing(SELLER, created=now(), title=f"Spam {n}"))
            await publish(raw, b, data)
        for n in range(3):
            data = records.encode(signed_listing(OTHER, created=now(), title=f"Jujur {n}"))
            await publish(raw, b, data)

        # B kept the seller's burst and dropped the rest; the other seller got through.
        assert b.seller_limited == OVER
        assert held(b, SELLER.public_key) == BURST
        assert held(b, OTHER.public_key) == 3
        # The forwarder relayed valid records: no penalty, still connected.
        assert b._network.counters["gossip_rejected"] == 0
        assert b._network.peer_score(raw.peer_id) >= 0
        assert raw.connected_to(b)
        assert b.status().extra["seller_limited"] == OVER

        # C got what B accepted and nothing else: a control listing B publishes
        # afterwards travels the same B→C stream behind anything B forwarded.
        control = b.create_listing(title="Kontrol", price=1000, category="vehicles/bicycles")
        await eventually(lambda: [x.id for x in c.search("kontrol").listings] == [control.id])
        assert held(c, SELLER.public_key) == BURST
        assert held(c, OTHER.public_key) == 3
        assert c.seller_limited == 0  # B forwarded none of the dropped ones
        assert c._network.counters["gossip_accepted"] == BURST + 3 + 1


async def test_replays_of_a_sellers_records_do_not_spend_its_budget(cluster: Cluster) -> None:
    # Anyone can replay a seller's records; if replays counted, a replayer could
    # silence an honest seller. Only records new to the node are charged.
    async with raw_peer() as raw:
        (b,) = await cluster.start(1, topology="none", config=LIMITED)
        await raw.connect(b)
        await raw.join_mesh(b)
        assert b._network is not None
        # B already holds these (from an import, which is not limited); a
        # replayer sends them all again, each one a valid record.
        known = [
            records.encode(signed_listing(SELLER, created=now(), title=f"Lama {n}"))
            for n in range(BURST + 2)
        ]
        assert b.ingest(known).accepted == BURST + 2
        for data in known:
            await publish(raw, b, data)
        assert b._network.counters["gossip_ignored"] == BURST + 2
        for n in range(BURST):
            data = records.encode(signed_listing(SELLER, created=now(), title=f"Baru {n}"))
            await publish(raw, b, data)
        assert b._network.counters["gossip_accepted"] == BURST  # the whole burst is left
        assert b.seller_limited == 0


async def test_the_cache_cap_holds_on_gossip_and_spares_own_listings(cluster: Cluster) -> None:
    cap = 1000  # the smallest config.toml allows; a step is then 10
    b = Node.open(cluster.new_home())
    b.config = replace(b.config, max_listings=cap)
    cluster.nodes.append(b)
    await cluster.nursery.start(b.run, LOOPBACK)
    signer = b._signer_or_unlock()
    old = now() - 2 * DAY
    own = [
        records.sign(draft_listing(SELLER, seller=b.public_key, created=old), signer.sign)
        for _ in range(3)
    ]
    b.ingest(records.encode(x) for x in own)  # the oldest: first to go, were they not ours
    b.ingest(
        records.encode(signed_listing(THIRD, created=now() - DAY - n, title=f"Lama {n}"))
        for n in range(cap - 5)
    )
    assert b.store.listing_count == cap - 2

    async with raw_peer() as raw:
        await raw.connect(b)
        await raw.join_mesh(b)
        assert b._network is not None
        counts = []
        for n in range(40):
            data = records.encode(signed_listing(OTHER, created=now(), title=f"Baru {n}"))
            await publish(raw, b, data)
            counts.append(b.store.listing_count)
        assert b._network.counters["gossip_accepted"] == 40

    # Before the fix the cache held 1,038 until the upkeep, ten minutes later.
    assert max(counts) <= cap + 10, max(counts)
    assert [b.get_listing(x.id) for x in own] == own
    assert held(b, OTHER.public_key) == 40  # the newest stay; the oldest others' went


async def test_a_seller_is_told_when_to_publish_again_rather_than_be_dropped(
    cluster: Cluster,
) -> None:
    limited = replace(LIMITED, seller_burst=3, seller_rate=0.01)
    (a,) = await cluster.start(1, topology="none", config=limited)
    for n in range(3):
        a.create_listing(title=f"Barang {n}", price=1000, category="other")
    with pytest.raises(RateLimited, match=r"at most 3 records at once .* try again in \d+ s"):
        a.create_listing(title="Satu lagi", price=1000, category="other")
    assert len(a.my_listings()) == 3  # nothing signed, stored or published

    # Offline nothing is gossiped (sync, which is not limited, spreads it later).
    home = a.home.root
    await cluster.stop(a)
    with Node.open(home) as offline:
        offline.create_listing(title="Luring", price=1000, category="other")

    # Restarted, the node remembers what it published lately, as its peers do.
    again = await cluster.start_node(home, config=limited)
    with pytest.raises(RateLimited, match=r"try again in \d+ s"):
        again.create_listing(title="Satu lagi", price=1000, category="other")
