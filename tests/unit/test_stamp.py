"""Proof-of-work stamps (crypto/stamp.py): what a record costs its publisher,
checked on every path that accepts a record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from factories import (
    NOW,
    signed_listing,
    signed_profile,
    signed_review,
    signed_tombstone,
)

from p2pmarket import records
from p2pmarket.crypto import stamp
from p2pmarket.errors import InvalidRecord
from p2pmarket.ingest import ingest
from p2pmarket.records import Listing
from p2pmarket.store import ListingStore

SUBJECT = b"\x07" * 64


def failing_nonce(subject: bytes, bits: int) -> bytes:
    """A nonce that is *not* a stamp of ``subject`` at ``bits`` (most are not)."""
    for counter in range(1000):
        nonce = counter.to_bytes(16, "big")
        if not stamp.check(subject, nonce, bits):
            return nonce
    raise AssertionError("every nonce passed")


def weakly_stamped(bits: int) -> Listing:
    """A valid listing whose stamp does not meet ``bits``."""
    listing = signed_listing()
    return dataclasses.replace(listing, stamp=failing_nonce(listing.signature, bits), encoded=b"")


def test_a_stamp_at_the_networks_difficulty_has_that_many_leading_zero_bits() -> None:
    nonce = stamp.solve(SUBJECT, stamp.DEFAULT_BITS)

    assert stamp.leading_zero_bits(stamp.work(SUBJECT, nonce)) >= stamp.DEFAULT_BITS
    assert stamp.check(SUBJECT, nonce, stamp.DEFAULT_BITS)
    assert stamp.solve(SUBJECT, stamp.DEFAULT_BITS) == nonce  # a function of its subject


def test_the_protocols_test_vector() -> None:
    # docs/PROTOCOL.md, "Proof-of-work stamp": another implementation checks
    # its Argon2id parameters and domain against these bytes.
    nonce = bytes.fromhex("00000000000002220000000000000000")
    assert stamp.solve(SUBJECT, 8) == nonce
    assert stamp.work(SUBJECT, nonce).hex() == (
        "00b89b2511240090091e3caa502e32b4aed4cf08a763cb79fe72dfcd8301d3ee"
    )


def test_a_stamp_binds_to_its_subject() -> None:
    nonce = stamp.solve(SUBJECT, 8)
    other = next(bytes([i]) * 64 for i in range(256) if not stamp.check(bytes([i]) * 64, nonce, 8))
    assert stamp.check(SUBJECT, nonce, 8)
    assert not stamp.check(other, nonce, 8)


@pytest.mark.parametrize("nonce", [b"", b"\x00" * 15, b"\x00" * 17])
def test_a_nonce_of_the_wrong_size_is_no_stamp_even_at_zero_bits(nonce: bytes) -> None:
    assert not stamp.check(SUBJECT, nonce, 0)


@pytest.mark.parametrize(
    ("value", "bits"), [(None, stamp.DEFAULT_BITS), ("5", 5), ("0", 0), ("x", 13), ("99", 13)]
)
def test_the_difficulty_is_the_networks_unless_a_test_network_sets_another(
    monkeypatch: pytest.MonkeyPatch, value: str | None, bits: int
) -> None:
    if value is None:
        monkeypatch.delenv(stamp.BITS_ENV, raising=False)
    else:
        monkeypatch.setenv(stamp.BITS_ENV, value)
    assert stamp.required_bits() == bits


def test_signing_a_record_stamps_it_at_the_required_difficulty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(stamp.BITS_ENV, "6")
    listing = signed_listing()

    assert stamp.check(listing.signature, listing.stamp, 6)
    assert records.validate(records.encode(listing), NOW) == listing
    assert msgpack.unpackb(records.encode(listing))["pow"] == listing.stamp


def test_a_record_whose_stamp_is_too_weak_is_refused_on_pow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(stamp.BITS_ENV, "6")
    weak = weakly_stamped(6)

    with pytest.raises(InvalidRecord) as refused:
        records.validate(records.encode(weak), NOW)
    assert refused.value.field == "pow"
    # …while the same record, properly stamped, is fine: only the work was missing.
    assert records.validate(records.encode(records.stamped(weak, 6)), NOW).id == weak.id


def test_a_record_without_a_stamp_is_refused() -> None:
    listing = signed_listing()
    doc = msgpack.unpackb(records.encode(listing))
    del doc["pow"]

    with pytest.raises(InvalidRecord, match=r"listing\.pow: missing"):
        records.validate(msgpack.packb(doc), NOW)


@pytest.mark.parametrize(
    "make",
    [signed_listing, signed_profile, lambda: signed_tombstone(signed_listing()), signed_review],
    ids=["listing", "profile", "tombstone", "review"],
)
def test_every_record_type_carries_a_stamp(make: Callable[[], records.Record]) -> None:
    record = make()
    assert len(record.stamp) == stamp.NONCE_SIZE
    assert stamp.check(record.signature, record.stamp)
    assert records.validate(records.encode(record), NOW) == record


def test_bulk_import_refuses_weak_stamps_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(stamp.BITS_ENV, "6")
    good = [signed_listing(title=f"Sepeda {i}") for i in range(3)]
    weak = weakly_stamped(6)
    with ListingStore(tmp_path / "store") as store:
        report = ingest(
            store, [records.encode(r) for r in [good[0], weak, *good[1:]]], NOW, parallel=False
        )
        assert report.accepted == 3
        assert [position for position, _ in report.rejected] == [2]  # counted from 1
        assert "stamp" in report.rejected[0][1]
        assert store.get(weak.id, NOW) is None


def test_a_record_stored_before_stamps_still_loads_from_the_store() -> None:
    listing = signed_listing()
    doc = msgpack.unpackb(records.encode(listing))
    del doc["pow"]
    legacy = msgpack.packb(doc)

    loaded = records.load_trusted(legacy)

    assert loaded.stamp == b"" and loaded.signature == listing.signature
    profile = msgpack.unpackb(records.encode(signed_profile()))
    del profile["pow"]
    assert records.load_trusted(msgpack.packb(profile)).stamp == b""
