"""The message store: threads, unread state, the outbox, replays, crash safety."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import NOW, OTHER, SELLER, THIRD

from p2pmarket.store import ListingStore
from p2pmarket.store.messages import Message, MessageStore, State

BUDI, SITI = OTHER.public_key, THIRD.public_key


@pytest.fixture
def messages(tmp_path: Path) -> Iterator[MessageStore]:
    with ListingStore(tmp_path / "store") as store:
        yield MessageStore(store.db)


def outgoing(peer: bytes, n: int, **changes: object) -> Message:
    fields: dict[str, object] = {
        "peer": peer,
        "id": n.to_bytes(16, "big"),
        "outgoing": True,
        "sent": NOW + n,
        "kind": "text",
        "body": f"pesan {n}".encode(),
        "state": State.QUEUED,
        "envelope": b"sealed",
    }
    fields.update(changes)
    return Message(**fields)  # type: ignore[arg-type]


def incoming(peer: bytes, n: int) -> Message:
    return outgoing(peer, n, outgoing=False, state=State.RECEIVED, envelope=b"")


def test_a_thread_holds_both_directions_oldest_first(messages: MessageStore) -> None:
    messages.add_outgoing(outgoing(BUDI, 1), due=NOW)
    messages.add_incoming(incoming(BUDI, 2), keep_until=NOW + 100)
    messages.add_outgoing(outgoing(SITI, 3), due=NOW)

    assert [m.body for m in messages.thread(BUDI)] == [b"pesan 1", b"pesan 2"]
    assert [m.body for m in messages.thread(BUDI, limit=1)] == [b"pesan 2"]


def test_threads_list_the_latest_conversation_first_with_unread_counts(
    messages: MessageStore,
) -> None:
    messages.add_incoming(incoming(BUDI, 1), keep_until=NOW + 100)
    messages.add_incoming(incoming(BUDI, 2), keep_until=NOW + 100)
    messages.add_outgoing(outgoing(SITI, 3), due=NOW)

    threads = messages.threads()

    assert [(t.peer, t.unread, t.last.body) for t in threads] == [
        (SITI, 0, b"pesan 3"),
        (BUDI, 2, b"pesan 2"),
    ]
    assert [m.body for m in messages.mark_read(BUDI)] == [b"pesan 1", b"pesan 2"]
    assert messages.mark_read(BUDI) == []
    assert messages.threads()[1].unread == 0


def test_a_replayed_letter_is_recognised_and_not_stored_twice(messages: MessageStore) -> None:
    assert messages.add_incoming(incoming(BUDI, 1), keep_until=NOW + 100)
    assert not messages.add_incoming(incoming(BUDI, 1), keep_until=NOW + 100)

    assert len(messages.thread(BUDI)) == 1


def test_replay_marks_are_forgotten_after_their_time(messages: MessageStore) -> None:
    messages.add_incoming(incoming(BUDI, 1), keep_until=NOW + 100)

    assert messages.forget_seen(NOW + 50) == 0
    assert messages.forget_seen(NOW + 101) == 1


def test_the_outbox_gives_what_is_due_and_a_retry_moves_it_later(messages: MessageStore) -> None:
    messages.add_outgoing(outgoing(BUDI, 1), due=NOW)
    messages.add_outgoing(outgoing(BUDI, 2), due=NOW + 60)

    assert [m.id[-1] for m in messages.due(NOW)] == [1]
    messages.reschedule((1).to_bytes(16, "big"), due=NOW + 120)

    assert [m.id[-1] for m in messages.due(NOW + 60)] == [2]
    assert [m.id[-1] for m in messages.due(NOW + 120)] == [2, 1]
    again = messages.get((1).to_bytes(16, "big"))
    assert again is not None and again.attempts == 1


def test_states_only_move_forward_and_delivery_empties_the_outbox(
    messages: MessageStore,
) -> None:
    mid = (1).to_bytes(16, "big")
    messages.add_outgoing(outgoing(BUDI, 1), due=NOW)

    sent = messages.advance(mid, State.SENT)
    assert sent is not None and sent.state is State.SENT and sent.envelope == b"sealed"
    delivered = messages.advance(mid, State.DELIVERED)
    assert delivered is not None and delivered.envelope == b""
    assert messages.advance(mid, State.SENT) is None  # a late receipt changes nothing
    assert messages.due(NOW + 10**6) == []
    read = messages.advance(mid, State.READ)
    assert read is not None and messages.get(mid) == read
    assert messages.advance(b"\x09" * 16, State.READ) is None


def test_messages_survive_reopening_the_store(tmp_path: Path) -> None:
    with ListingStore(tmp_path / "store") as store:
        MessageStore(store.db).add_outgoing(outgoing(BUDI, 1), due=NOW)

    with ListingStore(tmp_path / "store") as store:
        again = MessageStore(store.db)
        assert [m.body for m in again.thread(BUDI)] == [b"pesan 1"]
        assert [m.peer for m in again.due(NOW)] == [BUDI]


def test_the_sender_key_is_not_mixed_with_a_peer(messages: MessageStore) -> None:
    # A thread is keyed by the other side: our own key never names one.
    messages.add_outgoing(outgoing(BUDI, 1), due=NOW)
    assert messages.thread(SELLER.public_key) == []
