"""Direct messages and mailboxes against a peer that sends garbage: a tampered,
truncated, replayed or oversized envelope is refused without harm, and costs its
sender; nobody but the recipient can take its mail."""

from __future__ import annotations

import msgpack
import multiaddr
import pytest
import trio
from conftest import Cluster, connect, eventually
from libp2p import new_host
from libp2p.crypto import secp256k1
from libp2p.network.stream.exceptions import StreamEOF, StreamReset
from libp2p.peer.peerinfo import info_from_p2p_addr

from p2pmarket.crypto.envelope import seal
from p2pmarket.errors import NetworkError
from p2pmarket.events import MessageReceived
from p2pmarket.network import mailbox as mail_wire
from p2pmarket.network.messaging import DM_PROTOCOL
from p2pmarket.network.streams import frame, read_frame
from p2pmarket.node import Node
from p2pmarket.store.mailbox import digest
from p2pmarket.store.messages import State


def envelope_from(sender: Node, recipient: Node, text: str = "Halo") -> bytes:
    return seal(
        sender._signer_or_unlock(), recipient.public_key, "text", text.encode(), sender.now()
    )[1]


async def hand(sender: Node, recipient: Node, data: bytes) -> bytes:
    """Send raw bytes as a direct message; the recipient's receipt, if any."""
    network = sender._network
    assert network is not None
    return await network.deliver(recipient.peer_id, data)


def tampered(envelope: bytes) -> bytes:
    doc = msgpack.unpackb(envelope)
    box = bytearray(doc["box"])
    box[-1] ^= 1
    return msgpack.packb({"box": bytes(box), "to": doc["to"], "v": doc["v"]})


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(tampered, id="tampered"),
        pytest.param(lambda e: e[: len(e) // 2], id="truncated"),
        pytest.param(lambda e: e + b"\x00", id="trailing-bytes"),
        pytest.param(lambda e: b"\x93" + e[1:], id="not-a-map"),
    ],
)
async def test_a_spoilt_envelope_is_refused_and_costs_its_sender(cluster: Cluster, spoil) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster.start(2)

    with pytest.raises(NetworkError):
        await hand(a, b, spoil(envelope_from(a, b)))

    assert b.conversations() == []
    await eventually(lambda: b._network.peer_score(a.peer_id) < 0)  # type: ignore[union-attr]
    # B is unharmed: a good message still gets through.
    a.send_message(b.peer_id, "Masih ada?")
    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)


async def test_an_envelope_sealed_for_someone_else_is_refused(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3)
    with pytest.raises(NetworkError):
        await hand(a, b, envelope_from(a, c))
    assert b.conversations() == []


async def test_an_oversized_frame_is_refused_before_it_is_read(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    network = a._network
    assert network is not None
    stream = await network.host.new_stream(b._network.host.get_id(), [DM_PROTOCOL])  # type: ignore[union-attr]
    await stream.write(frame(b"\x00" * (70 * 1024)))
    with pytest.raises((StreamEOF, StreamReset)):  # closed, no receipt
        await stream.read(100)
    await eventually(lambda: b._network.peer_score(a.peer_id) < 0)  # type: ignore[union-attr]
    assert b.conversations() == []


async def test_a_replayed_envelope_is_acknowledged_but_kept_once(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    envelope = envelope_from(a, b, "Bayar via transfer ya")
    async with b.events() as events:
        first = await hand(a, b, envelope)
        second = await hand(a, b, envelope)
        await eventually(lambda: len(b.thread(a.peer_id)) == 1)
        received = []
        while True:
            try:
                event = events.receive_nowait()
            except Exception:
                break
            if isinstance(event, MessageReceived):
                received.append(event)
    assert first and second  # both answered: the sender may have missed the first receipt
    assert len(received) == 1
    assert [m.body for m in b.thread(a.peer_id)] == [b"Bayar via transfer ya"]


async def test_a_malformed_mailbox_request_costs_its_sender(cluster: Cluster) -> None:
    a, holder = await cluster.start(2)
    network = a._network
    assert network is not None and network.mailbox is not None
    with pytest.raises(NetworkError):
        await network.mailbox.deposit(holder._network.host.get_id(), b"not an envelope")  # type: ignore[union-attr]
    await eventually(lambda: holder._network.peer_score(a.peer_id) < 0)  # type: ignore[union-attr]
    assert list(holder.store.db.iterator(prefix=b"B")) == []


async def test_only_the_recipient_can_take_its_mail(cluster: Cluster) -> None:
    a, holder, thief = await cluster.start(3)
    b_home = cluster.new_home()
    with Node.open(b_home) as offline:
        b_key = offline.public_key
    envelope = seal(a._signer_or_unlock(), b_key, "text", b"Rahasia", a.now())[1]
    holder_id = holder._network.host.get_id()  # type: ignore[union-attr]
    await a._network.mailbox.deposit(holder_id, envelope)  # type: ignore[union-attr]

    assert await thief._network.mailbox.collect(holder_id) == 0  # type: ignore[union-attr]
    assert len(list(holder.store.db.iterator(prefix=b"B"))) == 1
    # Acknowledging someone else's mail by its digest removes nothing either.
    stream = await thief._network.host.new_stream(holder_id, [mail_wire.MAILBOX_PROTOCOL])  # type: ignore[union-attr]
    await stream.write(frame(msgpack.packb([mail_wire.ACK, [digest(envelope)]])))
    assert msgpack.unpackb(await read_frame(stream, 1024)) == [mail_wire.OK, 0]
    assert len(list(holder.store.db.iterator(prefix=b"B"))) == 1

    b = await cluster.start_node(b_home)
    await connect(b, holder)
    await eventually(lambda: [m.body for m in b.thread(a.peer_id)] == [b"Rahasia"])


async def test_a_peer_whose_key_is_not_ed25519_does_not_upset_the_node(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    host = new_host(
        key_pair=secp256k1.create_new_key_pair(),
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(a.status().addresses[0])))
        await eventually(lambda: a.status().peers == 2)
        await trio.sleep(0.5)  # the connection's handlers run

        assert a.online
        a.send_message(b.peer_id, "Masih di sini")
        await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)


def malformed_move(sender: Node) -> bytes:
    """A trade move whose kind is a list: it once raised TypeError deep in the
    decoder, which aborted mail collection before the acknowledgement."""
    return msgpack.packb(
        [1, b"t" * 16, sender.public_key, ["offer"], b"", 1, sender.now(), None, b"", b""],
        use_bin_type=True,
    )


async def test_a_malformed_trade_move_in_a_mailbox_is_dropped_and_costs_its_sender(
    cluster: Cluster,
) -> None:
    a, holder = await cluster.start(2)
    b_home = cluster.new_home()
    with Node.open(b_home) as offline:
        b_key = offline.public_key
    signer = a._signer_or_unlock()
    bad = seal(signer, b_key, "trade", malformed_move(a), a.now())[1]
    good = seal(signer, b_key, "text", b"Masih ada?", a.now() + 1)[1]
    holder_id = holder._network.host.get_id()  # type: ignore[union-attr]
    for envelope in (bad, good):  # the bad one first: it used to block the rest
        await a._network.mailbox.deposit(holder_id, envelope)  # type: ignore[union-attr]

    b = await cluster.start_node(b_home)
    await connect(b, holder)
    await eventually(lambda: [m.body for m in b.thread(a.peer_id)] == [b"Masih ada?"])
    # Both were acknowledged: the holder keeps nothing that could block B's mail.
    await eventually(lambda: list(holder.store.db.iterator(prefix=b"B")) == [])
    assert b.trades() == []
    await connect(b, a)
    await eventually(lambda: b._network.peer_score(a.peer_id) < 0)  # type: ignore[union-attr]


async def test_a_malformed_trade_move_sent_directly_costs_its_sender(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    bad = seal(a._signer_or_unlock(), b.public_key, "trade", malformed_move(a), a.now())[1]
    with pytest.raises(NetworkError):
        await hand(a, b, bad)
    await eventually(lambda: b._network.peer_score(a.peer_id) < 0)  # type: ignore[union-attr]
    assert b.trades() == []
    a.send_message(b.peer_id, "Masih ada?")
    await eventually(lambda: a.thread(b.peer_id)[-1].state is State.DELIVERED)
