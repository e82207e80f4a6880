"""Offline mail pays with proof of work, and the price rises as a recipient's
mailbox fills: a swarm of made-up identities cannot fill a victim's mailbox
for nothing (issue 13). Peer ids are free, so per-depositor quotas alone never
stopped that."""

from __future__ import annotations

import msgpack
import pytest
from conftest import Cluster

from p2pmarket.crypto import stamp
from p2pmarket.crypto.envelope import seal
from p2pmarket.network import mailbox as mail_wire
from p2pmarket.network.mailbox import MAIL_FREE_HELD, mail_bits, mail_subject
from p2pmarket.network.streams import frame, read_frame
from p2pmarket.node import Node


def test_the_price_is_the_base_until_a_mailbox_fills_then_doubles_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(stamp.BITS_ENV, str(stamp.DEFAULT_BITS))
    base = stamp.DEFAULT_BITS - 1
    assert [mail_bits(held) for held in (0, MAIL_FREE_HELD - 1)] == [base, base]
    assert mail_bits(MAIL_FREE_HELD) == base + 1
    assert mail_bits(2 * MAIL_FREE_HELD - 1) == base + 1
    assert mail_bits(2 * MAIL_FREE_HELD) == base + 2
    assert mail_bits(499) == base + 5  # the default quota's last envelopes: 32x the first


def failing_nonce(subject: bytes, bits: int) -> bytes:
    return next(
        n.to_bytes(16, "big")
        for n in range(1000)
        if not stamp.check(subject, n.to_bytes(16, "big"), bits)
    )


async def put(sender: Node, holder: Node, envelope: bytes, nonce: bytes) -> list[object]:
    """One raw put: the holder's answer as it is."""
    network = sender._network
    assert network is not None and holder._network is not None
    stream = await network.host.new_stream(
        holder._network.host.get_id(), [mail_wire.MAILBOX_PROTOCOL]
    )
    await stream.write(frame(msgpack.packb([mail_wire.PUT, envelope, nonce])))
    answer = msgpack.unpackb(await read_frame(stream, 1024))
    await stream.close()
    assert isinstance(answer, list)
    return answer


async def test_a_put_without_the_price_is_refused_and_names_it(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(stamp.BITS_ENV, "5")  # a base price of 4 bits
    a, holder = await cluster.start(2)
    with Node.open(cluster.new_home()) as offline:
        b_key = offline.public_key
    envelope = seal(a._signer_or_unlock(), b_key, "text", b"Halo", a.now())[1]

    refused = await put(a, holder, envelope, failing_nonce(mail_subject(envelope), 4))

    assert refused == [mail_wire.STAMP, 4]
    assert list(holder.store.db.iterator(prefix=b"B")) == []
    assert holder._network.peer_score(a.peer_id) >= 0  # type: ignore[union-attr]  # no offence
    kept = await put(a, holder, envelope, stamp.solve(mail_subject(envelope), 4))
    assert kept == [mail_wire.OK]
    assert len(list(holder.store.db.iterator(prefix=b"B"))) == 1


async def test_as_a_mailbox_fills_each_new_envelope_costs_more(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(stamp.BITS_ENV, "3")  # a base price of 2 bits
    a, holder = await cluster.start(2)
    with Node.open(cluster.new_home()) as offline:
        b_key = offline.public_key
    signer = a._signer_or_unlock()
    holder_id = holder._network.host.get_id()  # type: ignore[union-attr]
    for i in range(MAIL_FREE_HELD):  # the quiet part of B's mailbox: the base price
        envelope = seal(signer, b_key, "text", f"Pesan {i}".encode(), a.now())[1]
        await a._network.mailbox.deposit(holder_id, envelope)  # type: ignore[union-attr]

    late = seal(signer, b_key, "text", b"Satu lagi", a.now())[1]
    at_base = stamp.solve(mail_subject(late), 2)
    if stamp.check(mail_subject(late), at_base, 3):  # the base stamp happens to pay more
        at_base = failing_nonce(mail_subject(late), 3)
    assert await put(a, holder, late, at_base) == [mail_wire.STAMP, 3]

    # The node's own sender pays the asked price by itself and is kept.
    await a._network.mailbox.deposit(holder_id, late)  # type: ignore[union-attr]
    assert len(list(holder.store.db.iterator(prefix=b"B"))) == MAIL_FREE_HELD + 1
    assert holder._network.mailbox.counters["mail_stamp_refused"] >= 1  # type: ignore[union-attr]
