"""Offline mail between real nodes: a recipient that is away gets its messages
from the peers closest to its id, and nobody on the way can read them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import LOOPBACK, Cluster, connect, eventually

from p2pmarket.crypto.envelope import seal
from p2pmarket.events import MessageReceived, MessageStateChanged
from p2pmarket.network import streams
from p2pmarket.network.mailbox import MAILBOX_PROTOCOL, MailboxRefused
from p2pmarket.node import Node
from p2pmarket.store.messages import State

SECRET = "Alamat pengiriman: Jl. Kaliurang km 5 no. 17, Yogyakarta"


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every byte any of our protocols reads from a libp2p stream, in any node:
    what a relay or a mailbox holder gets to see once Noise is taken off."""
    seen: list[bytes] = []
    read = streams.read_exactly

    async def recording(stream: object, n: int) -> bytes:
        data = await read(stream, n)  # type: ignore[arg-type]
        seen.append(data)
        return data

    monkeypatch.setattr(streams, "read_exactly", recording)
    return seen


def leveldb_bytes(node: Node) -> bytes:
    """Everything in a node's LevelDB: its files, and every key and value."""
    files = b"".join(p.read_bytes() for p in Path(node.home.store_dir).iterdir() if p.is_file())
    entries = b"".join(k + v for k, v in node.store.db.iterator())
    return files + entries


async def test_a_message_for_an_offline_peer_waits_with_a_holder_until_it_returns(
    cluster: Cluster, wire: list[bytes]
) -> None:
    a, c = await cluster.start(2)  # A the sender, C the only other peer: the holder
    b_home = cluster.new_home()
    with Node.open(b_home) as offline:
        b_id = offline.peer_id

    sent = a.send_message(b_id, SECRET)
    await eventually(lambda: a.thread(b_id)[-1].state is State.SENT, timeout=20)
    a_home, a_key = a.home.root, a.public_key
    await cluster.stop(a)  # the sender leaves too: only C can deliver now

    b = await cluster.start_node(b_home)
    async with b.events() as events:
        await connect(b, c)
        with_event = None
        async for event in events:
            if isinstance(event, MessageReceived):
                with_event = event
                break
    assert with_event is not None and with_event.via == "mailbox"
    assert [(m.id, m.body) for m in b.thread(a_key)] == [(sent.id, SECRET.encode())]
    await eventually(lambda: not list(c.store.db.iterator(prefix=b"B")))  # acknowledged, deleted

    # The sender comes back and learns the message was delivered: B's receipt
    # reached it directly or through C.
    a2 = await cluster.start_node(a_home)
    await connect(a2, c)
    await eventually(lambda: a2.thread(b_id)[-1].state is State.DELIVERED, timeout=30)

    plaintext = SECRET.encode()
    assert wire, "the capture saw no stream bytes"
    assert plaintext not in b"".join(wire)
    assert plaintext not in leveldb_bytes(c)


async def test_a_sender_restarted_before_delivery_still_delivers(cluster: Cluster) -> None:
    (b,) = await cluster.start(1)
    a_home = cluster.new_home()
    with Node.open(a_home) as offline:  # written while the sender's node is not running
        sent = offline.send_message(b.peer_id, SECRET)
        assert offline.thread(b.peer_id)[-1].state is State.QUEUED

    a = await cluster.start_node(a_home)
    async with a.events() as events:
        await connect(a, b)
        async for event in events:
            if isinstance(event, MessageStateChanged) and event.message.id == sent.id:
                assert event.message.state is State.DELIVERED
                break
    assert [m.body for m in b.thread(a.peer_id)] == [SECRET.encode()]


async def test_read_receipts_reach_the_sender_and_can_be_turned_off(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    sent = a.send_message(b.peer_id, "Halo")
    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)

    assert b.mark_read(a.peer_id) == 1
    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.READ)
    assert a.thread(b.peer_id)[-1].id == sent.id
    assert b.mark_read(a.peer_id) == 0  # nothing new: no second receipt
    assert [m.kind for m in b.thread(a.peer_id)] == ["text"]  # receipts are not chat

    quiet_home = cluster.new_home()
    (quiet_home / "config.toml").write_text("read_receipts = false\n")
    quiet = await cluster.start_node(quiet_home)
    await connect(quiet, a)
    a.send_message(quiet.peer_id, "Halo")
    await eventually(lambda: a.thread(quiet.peer_id)[-1].state is State.DELIVERED)
    assert quiet.mark_read(a.peer_id) == 1
    a.send_message(quiet.peer_id, "Sudah dibaca?")  # goes after any receipt would have
    await eventually(lambda: a.thread(quiet.peer_id)[-1].state is State.DELIVERED)
    assert [m.state for m in a.thread(quiet.peer_id)] == [State.DELIVERED] * 2


async def test_a_blocked_peer_is_not_heard_and_its_listings_are_hidden(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    listing = a.create_listing(title="Sepeda lipat", price=100_000_00, category="vehicles")
    await eventually(lambda: b.search("sepeda").listings)

    assert b.block(a.peer_id) is True
    assert b.blocked() == [a.peer_id]
    assert b.search("sepeda").listings == []
    a.send_message(b.peer_id, "Halo?")
    await eventually(lambda: a.thread(b.peer_id)[-1].attempts >= 1)
    assert b.thread(a.peer_id) == []
    assert a.thread(b.peer_id)[-1].state < State.DELIVERED  # no receipt for the blocked

    assert b.unblock(a.peer_id) is True
    assert [found.id for found in b.search("sepeda").listings] == [listing.id]


async def test_one_sender_flooding_a_mailbox_fills_only_its_own_share(cluster: Cluster) -> None:
    flooder, holder, honest = await cluster.start(3, topology="none")
    b_home = cluster.new_home()
    with Node.open(b_home) as offline:
        b_key = offline.public_key
    await connect(flooder, holder)
    await connect(honest, holder)
    quotas = holder._network.mailbox._holder.quotas  # type: ignore[union-attr]
    signer = flooder._signer_or_unlock()

    async def leave(node: Node, text: str) -> None:
        envelope = seal(signer, b_key, "text", text.encode(), node.now())[1]
        await node._network.mailbox.deposit(holder._network.host.get_id(), envelope)  # type: ignore[union-attr]

    for i in range(quotas.per_sender):
        await leave(flooder, f"spam {i}")
    with pytest.raises(MailboxRefused):
        await leave(flooder, "one more")

    honest.send_message(b_key, "Masih ada?")
    await eventually(lambda: honest.thread(b_key)[-1].state is State.SENT, timeout=20)

    b = await cluster.start_node(b_home)
    await connect(b, holder)
    await eventually(lambda: len(b.thread(honest.peer_id)) == 1, timeout=20)
    assert b.thread(honest.peer_id)[0].body == b"Masih ada?"
    assert len(b.thread(flooder.peer_id)) == quotas.per_sender  # held, not pushed out


async def test_a_node_that_holds_no_mail_does_not_offer_to(cluster: Cluster) -> None:
    sender = await cluster.start_node()
    stingy = await cluster.start_node(config=replace(LOOPBACK, hold_mail=False))
    await connect(sender, stingy)
    b_home = cluster.new_home()
    with Node.open(b_home) as offline:
        b_id = offline.peer_id

    sender.send_message(b_id, "Halo")
    await eventually(lambda: sender.thread(b_id)[-1].attempts >= 1, timeout=20)

    assert sender.thread(b_id)[-1].state is State.QUEUED  # nobody took it
    assert MAILBOX_PROTOCOL not in stingy._network.host.get_mux().handlers  # type: ignore[union-attr]
