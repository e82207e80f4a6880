"""Direct messages between real nodes: sealed, delivered, acknowledged, retried.

(Issue 5 in progress: mailboxes for offline recipients come next.)
"""

from __future__ import annotations

from conftest import Cluster, connect, eventually

from p2pmarket.node import Node
from p2pmarket.records import format_id
from p2pmarket.store.messages import State

TEXT = "Sepedanya masih ada? Bisa COD di Jogja?"


async def test_a_message_reaches_a_connected_peer_and_its_receipt_comes_back(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)

    sent = a.send_message(b.peer_id, TEXT)

    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)
    (got,) = b.thread(a.peer_id)
    assert (got.id, got.body, got.outgoing, got.state) == (
        sent.id,
        TEXT.encode(),
        False,
        State.RECEIVED,
    )
    assert a.thread(b.peer_id)[-1].envelope == b""  # nothing left to resend


async def test_a_message_to_a_peer_that_is_away_is_delivered_when_it_returns(
    cluster: Cluster,
) -> None:
    (a,) = await cluster.start(1)
    b_home = cluster.new_home()
    with Node.open(b_home) as offline:
        b_id = offline.peer_id
    a.send_message(b_id, TEXT)
    await eventually(lambda: a.thread(b_id)[-1].attempts >= 1)  # tried, and failed
    assert a.thread(b_id)[-1].state is State.QUEUED

    b = await cluster.start_node(b_home)
    await connect(b, a)

    await eventually(lambda: a.thread(b_id)[-1].state is State.DELIVERED, timeout=15)
    assert [m.body for m in b.thread(a.peer_id)] == [TEXT.encode()]


async def test_a_message_to_a_listing_goes_to_its_seller(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    listing = b.create_listing(title="Sepeda lipat", price=100_000_00, category="vehicles")
    await eventually(lambda: a.store.get(listing.id, a.now()) is not None)

    a.send_message(format_id(listing.id), TEXT)

    await eventually(lambda: [m.body for m in b.thread(a.peer_id)] == [TEXT.encode()])
