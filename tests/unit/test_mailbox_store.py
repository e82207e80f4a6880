"""Mail held for others: quotas that refuse instead of pushing out, dedupe,
collection by the recipient only, expiry, and totals that survive a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import NOW, OTHER, SELLER, THIRD

from p2pmarket.errors import MailboxFull
from p2pmarket.store import ListingStore
from p2pmarket.store.mailbox import KEEP, OVERHEAD, Mailbox, Quotas, digest

BUDI, SITI, ANI = OTHER.public_key, THIRD.public_key, SELLER.public_key
SMALL = Quotas(
    total_bytes=10_000,
    per_recipient=6,
    per_recipient_bytes=5_000,
    per_sender=3,
    per_sender_bytes=2_000,
    per_sender_total_bytes=3_000,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ListingStore]:
    with ListingStore(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def mailbox(store: ListingStore) -> Mailbox:
    return Mailbox(store.db, SMALL)


def envelope(n: int, size: int = 100) -> bytes:
    return n.to_bytes(4, "big") + b"x" * (size - 4)


def test_mail_is_kept_for_its_recipient_oldest_first_and_removed_when_acknowledged(
    mailbox: Mailbox,
) -> None:
    for n in range(3):
        assert mailbox.deposit(BUDI, SITI, envelope(n), NOW + n) == "stored"

    held, more = mailbox.pending(BUDI, max_bytes=10_000)

    assert [e for _, e in held] == [envelope(0), envelope(1), envelope(2)] and not more
    assert mailbox.pending(SITI, max_bytes=10_000) == ([], False)
    assert mailbox.remove(BUDI, [d for d, _ in held[:2]]) == 2
    assert [e for _, e in mailbox.pending(BUDI, 10_000)[0]] == [envelope(2)]


def test_a_batch_stops_at_its_byte_budget_but_always_carries_one(mailbox: Mailbox) -> None:
    for n in range(3):
        mailbox.deposit(BUDI, SITI, envelope(n, 400), NOW)
    held, more = mailbox.pending(BUDI, max_bytes=500)
    assert len(held) == 1 and more
    held, more = mailbox.pending(BUDI, max_bytes=1)
    assert len(held) == 1 and more


def test_the_same_envelope_twice_is_kept_once(mailbox: Mailbox) -> None:
    assert mailbox.deposit(BUDI, SITI, envelope(1), NOW) == "stored"
    assert mailbox.deposit(BUDI, ANI, envelope(1), NOW) == "duplicate"
    assert len(mailbox.pending(BUDI, 10_000)[0]) == 1


def test_one_sender_fills_only_its_share_and_others_still_get_in(mailbox: Mailbox) -> None:
    for n in range(SMALL.per_sender):
        mailbox.deposit(BUDI, SITI, envelope(n), NOW)
    with pytest.raises(MailboxFull, match="your share of this recipient"):
        mailbox.deposit(BUDI, SITI, envelope(99), NOW)

    assert mailbox.deposit(BUDI, ANI, envelope(100), NOW) == "stored"
    assert len(mailbox.pending(BUDI, 10_000)[0]) == SMALL.per_sender + 1


def test_byte_quotas_refuse_per_sender_per_recipient_and_in_total(mailbox: Mailbox) -> None:
    # Each envelope counts its size plus OVERHEAD (its keys and depositor).
    mailbox.deposit(BUDI, SITI, envelope(1, 1_500), NOW)
    with pytest.raises(MailboxFull, match="your share of this recipient"):
        mailbox.deposit(BUDI, SITI, envelope(2, 600), NOW)
    mailbox.deposit(ANI, SITI, envelope(3, 1_200), NOW)  # another recipient: 2,956 of 3,000
    with pytest.raises(MailboxFull, match="your share of this holder"):
        mailbox.deposit(SELLER.public_key[:31] + b"\x00", SITI, envelope(4, 200), NOW)


def test_a_recipients_mailbox_has_a_cap_whoever_sends(mailbox: Mailbox) -> None:
    senders = [bytes([i]) * 32 for i in range(SMALL.per_recipient + 1)]
    for n, sender in enumerate(senders[:-1]):
        mailbox.deposit(BUDI, sender, envelope(n), NOW)
    with pytest.raises(MailboxFull, match="this recipient's mailbox is full"):
        mailbox.deposit(BUDI, senders[-1], envelope(999), NOW)


def test_nobody_else_can_remove_a_recipients_mail(mailbox: Mailbox) -> None:
    mailbox.deposit(BUDI, SITI, envelope(1), NOW)
    assert mailbox.remove(SITI, [digest(envelope(1))]) == 0
    assert len(mailbox.pending(BUDI, 10_000)[0]) == 1


def test_mail_older_than_the_keep_time_is_collected(mailbox: Mailbox) -> None:
    mailbox.deposit(BUDI, SITI, envelope(1), NOW)
    mailbox.deposit(BUDI, SITI, envelope(2), NOW + 100)
    assert mailbox.collect(NOW + KEEP + 1) == 1
    assert [e for _, e in mailbox.pending(BUDI, 10_000)[0]] == [envelope(2)]
    assert mailbox.held() == (1, 100 + OVERHEAD)


def test_quota_totals_are_recounted_after_a_restart(store: ListingStore) -> None:
    Mailbox(store.db, SMALL).deposit(BUDI, SITI, envelope(1, 1_800), NOW)
    Mailbox(store.db, SMALL).deposit(ANI, SITI, envelope(2, 900), NOW)

    reopened = Mailbox(store.db, SMALL)
    with pytest.raises(MailboxFull, match="your share of this holder"):
        reopened.deposit(SELLER.public_key[:31] + b"\x01", SITI, envelope(3, 200), NOW)
    assert reopened.held() == (2, 2_700 + 2 * OVERHEAD)
