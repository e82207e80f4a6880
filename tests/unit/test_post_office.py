"""The post office without a network: receipts only the recipient can give,
replays, blocked senders, read receipts, and giving up on a 14-day-old message."""

from __future__ import annotations

import msgpack
import pytest
from factories import FakeClock

from p2pmarket.crypto.envelope import CLOCK_SKEW, MAX_AGE, open_envelope, seal
from p2pmarket.errors import InvalidEnvelope
from p2pmarket.events import Event, MessageReceived, MessageStateChanged
from p2pmarket.node import Node
from p2pmarket.postoffice import MAX_TEXT
from p2pmarket.store.messages import State


def letter(sender: Node, recipient: Node, kind: str, body: bytes) -> bytes:
    return seal(sender._signer_or_unlock(), recipient.public_key, kind, body, sender.now())[1]


def receipt(sender: Node, recipient: Node, *pairs: tuple[bytes, State]) -> bytes:
    body = msgpack.packb([[mid, int(state)] for mid, state in pairs])
    return letter(sender, recipient, "receipt", body)


def test_a_receipt_moves_a_message_forward_only_when_its_recipient_gives_it(
    node: Node, other_node: Node
) -> None:
    sent = node.send_message(other_node.peer_id, "Halo")
    seen: list[Event] = []
    node._post._emit = seen.append

    # Someone else cannot: a receipt for it from a third key changes nothing.
    node._post.receive(receipt(node, node, (sent.id, State.DELIVERED)), node.peer_id)
    assert node.thread(other_node.peer_id)[-1].state is State.QUEUED

    node._post.receive(receipt(other_node, node, (sent.id, State.READ)), other_node.peer_id)

    assert node.thread(other_node.peer_id)[-1].state is State.READ
    assert [type(e) for e in seen] == [MessageStateChanged]
    # A later, lower state cannot move it back.
    node._post.receive(receipt(other_node, node, (sent.id, State.DELIVERED)), other_node.peer_id)
    assert node.thread(other_node.peer_id)[-1].state is State.READ


def test_a_direct_letter_is_kept_once_and_answered_with_a_receipt_each_time(
    node: Node, other_node: Node
) -> None:
    envelope = letter(other_node, node, "text", b"Masih ada?")
    seen: list[Event] = []
    node._post._emit = seen.append

    answers = [node._post.receive(envelope, other_node.peer_id) for _ in range(2)]

    assert [m.body for m in node.thread(other_node.peer_id)] == [b"Masih ada?"]
    assert [type(e) for e in seen] == [MessageReceived]
    for answer in answers:
        assert answer is not None
        opened = open_envelope(answer, other_node._signer_or_unlock(), other_node.now())
        assert opened.kind == "receipt" and opened.sender == node.public_key


def test_a_blocked_sender_is_not_heard_and_not_answered(node: Node, other_node: Node) -> None:
    node.block(other_node.peer_id)
    assert node._post.receive(letter(other_node, node, "text", b"Halo"), other_node.peer_id) is None
    node._post.receive_mail(letter(other_node, node, "text", b"Halo lagi"), "holder")
    assert node.conversations() == []


def test_an_envelope_that_does_not_open_is_an_error_directly_and_dropped_from_a_mailbox(
    node: Node, other_node: Node
) -> None:
    with pytest.raises(InvalidEnvelope):
        node._post.receive(b"\x80", other_node.peer_id)
    node._post.receive_mail(b"\x80", "holder")  # the holder cannot know: no error
    assert node.conversations() == []


def test_mail_from_a_mailbox_is_acknowledged_to_its_sender_through_the_outbox(
    node: Node, other_node: Node
) -> None:
    node._post.receive_mail(letter(other_node, node, "text", b"Halo"), "holder")

    (owed,) = node._post.messages.due(node.now() + 1)
    assert owed.kind == "receipt" and owed.peer == other_node.public_key
    assert node.conversations()[0].unread == 1  # the receipt is not part of the chat


def test_reading_a_conversation_queues_one_read_receipt(node: Node, other_node: Node) -> None:
    for text in (b"Satu", b"Dua"):
        node._post.receive(letter(other_node, node, "text", text), other_node.peer_id)

    assert node.mark_read(other_node.peer_id) == 2

    (owed,) = node._post.messages.due(node.now() + 1)
    ids = {m.id for m in node.thread(other_node.peer_id)}
    assert {mid for mid, _ in msgpack.unpackb(owed.body)} == ids


async def test_a_message_undelivered_for_14_days_is_given_up(
    node: Node, other_node: Node, clock: FakeClock
) -> None:
    sent = node.send_message(other_node.peer_id, "Halo")
    clock.advance(MAX_AGE + 1)

    await node._post._fall_back(node._post.messages.get(sent.id))  # type: ignore[arg-type]

    (message,) = node.thread(other_node.peer_id)
    assert message.state is State.FAILED and message.envelope == b""
    assert node._post.messages.due(node.now() + 10**6) == []


def test_status_counts_unread_messages_the_outbox_and_held_mail(
    node: Node, other_node: Node
) -> None:
    node.send_message(other_node.peer_id, "Halo")
    node._post.receive(letter(other_node, node, "text", b"Halo juga"), other_node.peer_id)

    status = node.status()

    assert (status.unread, status.outbox, status.held_mail) == (1, 1, 0)
    node.mark_read(other_node.peer_id)
    assert (node.status().unread, node.status().outbox) == (0, 2)  # + the read receipt


def test_a_peer_cannot_take_the_id_of_our_message_to_it(node: Node, other_node: Node) -> None:
    sent = node.send_message(other_node.peer_id, "Halo")
    # The peer reads our letter's id and sends us a text under the same id.
    hijack = seal(
        other_node._signer_or_unlock(),
        node.public_key,
        "text",
        b"gotcha",
        other_node.now(),
        letter_id=sent.id,
    )[1]
    node._post.receive(hijack, other_node.peer_id)

    node._post.receive(receipt(other_node, node, (sent.id, State.DELIVERED)), other_node.peer_id)

    mine = [m for m in node.thread(other_node.peer_id) if m.outgoing]
    assert [(m.id, m.state) for m in mine] == [(sent.id, State.DELIVERED)]
    assert node._post.messages.due(node.now() + 10**6) == []


def test_a_receipt_after_giving_up_says_what_really_happened(node: Node, other_node: Node) -> None:
    sent = node.send_message(other_node.peer_id, "Halo")
    node._post.messages.advance(sent.id, State.FAILED)

    node._post.receive(receipt(other_node, node, (sent.id, State.DELIVERED)), other_node.peer_id)

    assert node.thread(other_node.peer_id)[-1].state is State.DELIVERED


def test_mail_dated_ahead_of_our_clock_stays_with_the_holder(
    node: Node, other_node: Node, clock: FakeClock
) -> None:
    clock.advance(3600)  # the sender's clock (shared here) runs an hour ahead…
    early = letter(other_node, node, "text", b"Dari masa depan")
    too_old = letter(other_node, node, "text", b"Lama sekali")
    clock.advance(-3600)  # …of ours when we collect

    assert node._post.receive_mail(early, "holder") is False  # not acknowledged: kept there
    clock.advance(MAX_AGE + 3600 + CLOCK_SKEW + 1)
    assert node._post.receive_mail(too_old, "holder") is True  # never acceptable: dropped
    assert node.conversations() == []


def test_a_text_letter_must_be_short_utf8(node: Node, other_node: Node) -> None:
    for body in (b"\xff\xfe", b"x" * (MAX_TEXT + 1)):
        with pytest.raises(InvalidEnvelope):
            node._post.receive(letter(other_node, node, "text", body), other_node.peer_id)
    assert node.conversations() == []
