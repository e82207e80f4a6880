"""The listing cache: the seq rule, withdrawals, atomic batches, expiry and opening."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from factories import NOW, OTHER, SELLER, signed_listing, signed_profile, signed_tombstone, updated

from p2pmarket.errors import StoreError, StoreLocked
from p2pmarket.records import DAY, Listing
from p2pmarket.store import ListingStore, Outcome, Query, layout


def _titles(store: ListingStore, text: str = "", *, now: int = NOW) -> list[str]:
    return [item.title for item in store.search(Query(text=text, limit=100), now).listings]


def _keys_mentioning(store: ListingStore, record_id: bytes) -> list[bytes]:
    """Every raw LevelDB key that still refers to ``record_id``."""
    return [key for key in store.db.iterator(include_value=False) if record_id in key]


# -- the seq rule ----------------------------------------------------------------


def test_a_new_listing_is_added_and_found(store: ListingStore) -> None:
    listing = signed_listing(title="Sepeda lipat")

    assert store.put(listing) is Outcome.ADDED
    assert store.get(listing.id, NOW) == listing
    assert _titles(store, "sepeda") == ["Sepeda lipat"]
    assert store.listing_count == 1


def test_a_higher_seq_replaces_the_listing_and_its_search_terms(store: ListingStore) -> None:
    old = signed_listing(title="Sepeda lipat", tags=("lipat",), seq=1)
    store.put(old)
    new = updated(old, title="Kursi rotan", tags=("rotan",), seq=5)

    assert store.put(new) is Outcome.UPDATED

    assert store.get(old.id, NOW) == new
    assert _titles(store, "sepeda") == []
    assert _titles(store, "lipat") == []
    assert _titles(store, "kursi rotan") == ["Kursi rotan"]
    assert store.listing_count == 1


@pytest.mark.parametrize("seq", [1, 2], ids=["lower", "equal"])
def test_an_equal_or_lower_seq_is_stale_and_changes_nothing(store: ListingStore, seq: int) -> None:
    current = signed_listing(title="Sepeda lipat", seq=2)
    store.put(current)
    keys_before = list(store.db.iterator())
    rival = updated(current, title="Kursi rotan", seq=seq)

    assert store.put(rival) is Outcome.STALE

    assert store.get(current.id, NOW) == current
    assert list(store.db.iterator()) == keys_before
    assert _titles(store, "kursi") == []
    assert store.listing_count == 1


def test_within_one_batch_the_seq_rule_applies_in_order(store: ListingStore) -> None:
    v1 = signed_listing(title="Sepeda satu", seq=1)
    v3 = updated(v1, title="Sepeda tiga", seq=3)
    v2 = updated(v1, title="Sepeda dua", seq=2)

    outcomes = [change.outcome for change in store.put_many([v1, v3, v2])]

    assert outcomes == [Outcome.ADDED, Outcome.UPDATED, Outcome.STALE]
    assert store.get(v1.id, NOW) == v3
    assert _titles(store, "sepeda") == ["Sepeda tiga"]
    assert store.listing_count == 1


# -- withdrawals -------------------------------------------------------------------


def test_a_tombstone_withdraws_the_listing(store: ListingStore) -> None:
    listing = signed_listing(title="Sepeda lipat")
    store.put(listing)
    tombstone = signed_tombstone(listing)

    assert store.put(tombstone) is Outcome.WITHDRAWN

    assert store.get(listing.id, NOW) == tombstone
    assert _titles(store, "sepeda") == []
    assert _titles(store) == []
    assert store.by_seller(SELLER.public_key, NOW) == []
    assert store.listing_count == 0


@pytest.mark.parametrize("seq", [1, 2, 3, 1000], ids=["older", "same", "newer", "much newer"])
def test_no_listing_comes_back_while_its_tombstone_lives(store: ListingStore, seq: int) -> None:
    listing = signed_listing(seq=1)
    store.put(listing)
    store.put(signed_tombstone(listing, seq=2))

    revived = updated(listing, title="Sepeda lipat lagi", seq=seq)

    assert store.put(revived) is Outcome.DEAD
    assert _titles(store) == []
    assert store.listing_count == 0


def test_a_tombstone_that_arrives_first_keeps_the_listing_out(store: ListingStore) -> None:
    listing = signed_listing()

    assert store.put(signed_tombstone(listing)) is Outcome.WITHDRAWN
    assert store.put(listing) is Outcome.DEAD

    assert _titles(store) == []
    assert store.listing_count == 0


def test_a_second_tombstone_changes_nothing(store: ListingStore) -> None:
    listing = signed_listing()
    first = signed_tombstone(listing, seq=2)
    store.put(first)

    assert store.put(signed_tombstone(listing, seq=9)) is Outcome.DEAD
    assert store.get(listing.id, NOW) == first


def test_the_count_follows_adds_updates_and_withdrawals(store: ListingStore) -> None:
    a, b, c = (signed_listing(title=f"Barang {n}") for n in "abc")
    store.put_many([a, b, c])
    assert store.listing_count == 3

    store.put(updated(a, title="Barang a baru"))
    assert store.listing_count == 3

    store.put(signed_tombstone(b))
    assert store.listing_count == 2

    store.put(b)  # dead
    store.put(c)  # stale
    assert store.listing_count == 2


# -- atomic batches --------------------------------------------------------------


def test_a_batch_that_fails_midway_stores_nothing(store: ListingStore) -> None:
    kept = signed_listing(title="Sudah ada")
    store.put(kept)
    keys_before = list(store.db.iterator())
    good = signed_listing(title="Sepeda lipat")
    withdrawal = signed_tombstone(kept)
    # Valid enough to reach indexing, where its tags cannot be joined into text.
    broken = replace(signed_listing(title="Rusak"), tags=(None,))  # type: ignore[arg-type]

    with pytest.raises(TypeError):
        store.put_many([good, withdrawal, broken])

    assert list(store.db.iterator()) == keys_before
    assert store.get(good.id, NOW) is None
    assert store.get(kept.id, NOW) == kept
    assert store.listing_count == 1
    # The store is still usable, and the count was not corrupted.
    assert store.put(good) is Outcome.ADDED
    assert store.listing_count == 2


# -- durability --------------------------------------------------------------------


def test_reopening_the_store_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "store"
    listing = signed_listing(title="Sepeda lipat")
    gone = signed_listing(title="Kursi rotan")
    profile = signed_profile()
    with ListingStore(path) as store:
        store.put_many([listing, gone, signed_tombstone(gone), profile], sync=True)

    with ListingStore(path) as reopened:
        assert reopened.get(listing.id, NOW) == listing
        assert reopened.get(gone.id, NOW) == signed_tombstone(gone)
        assert reopened.get_profile(SELLER.public_key) == profile
        assert reopened.listing_count == 1
        assert _titles(reopened, "sepeda") == ["Sepeda lipat"]
        assert reopened.put(gone) is Outcome.DEAD


def test_a_closed_store_refuses_use_and_closing_twice_is_fine(tmp_path: Path) -> None:
    store = ListingStore(tmp_path / "store")
    store.close()
    store.close()

    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.get(b"\x00" * 16, NOW)


def test_opening_a_store_that_is_in_use_is_store_locked(store: ListingStore) -> None:
    with pytest.raises(StoreLocked, match="daemon") as caught:
        ListingStore(store.path)

    assert str(store.path) in str(caught.value)


def test_a_store_with_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with ListingStore(path) as store:
        store.db.put(layout.SCHEMA_KEY, b"99", sync=True)

    with pytest.raises(StoreError, match="schema version 99") as caught:
        ListingStore(path)

    assert not isinstance(caught.value, StoreLocked)
    # The refused open released the store: a retry fails the same way, not on the lock.
    with pytest.raises(StoreError, match="schema version 99"):
        ListingStore(path)


def test_a_path_that_cannot_be_a_store_is_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "store"
    blocker.write_text("a file, not a folder")

    with pytest.raises(StoreError):
        ListingStore(blocker)


# -- expiry --------------------------------------------------------------------------


def test_an_expired_listing_is_never_returned_even_before_collection(store: ListingStore) -> None:
    listing = signed_listing(title="Sepeda lipat", expires=NOW + DAY)
    store.put(listing)

    assert store.get(listing.id, NOW + DAY - 1) == listing
    assert store.get(listing.id, NOW + DAY) is None
    assert _titles(store, "sepeda", now=NOW + DAY) == []
    assert _titles(store, now=NOW + DAY) == []
    assert store.by_seller(SELLER.public_key, NOW + DAY) == []
    assert list(store.iter_records(NOW + DAY)) == []


def test_collection_removes_expired_listings_and_every_index_entry(store: ListingStore) -> None:
    short = signed_listing(title="Sepeda lipat", tags=("murah",), expires=NOW + DAY)
    long = signed_listing(title="Sepeda gunung", expires=NOW + 10 * DAY)
    store.put_many([short, long])
    assert _keys_mentioning(store, short.id)

    assert store.collect_expired(NOW + DAY) == 1

    assert _keys_mentioning(store, short.id) == []
    assert store.get_record(short.id) is None
    assert store.get(long.id, NOW + DAY) == long
    assert store.listing_count == 1
    assert store.collect_expired(NOW + DAY) == 0


def test_collection_removes_expired_tombstones(store: ListingStore) -> None:
    listing = signed_listing(expires=NOW + DAY)
    tombstone = signed_tombstone(listing)
    store.put_many([listing, tombstone])

    assert store.collect_expired(tombstone.expires - 1) == 0
    assert store.collect_expired(tombstone.expires) == 1

    assert _keys_mentioning(store, listing.id) == []
    assert store.listing_count == 0


def test_collection_leaves_no_expiry_key_of_a_replaced_version(store: ListingStore) -> None:
    v1 = signed_listing(expires=NOW + DAY)
    v2 = updated(v1, expires=NOW + 20 * DAY)
    store.put_many([v1, v2])

    assert store.collect_expired(NOW + DAY) == 0
    assert store.get(v1.id, NOW + DAY) == v2
    assert store.collect_expired(NOW + 20 * DAY) == 1
    assert _keys_mentioning(store, v1.id) == []


def test_collection_stops_at_the_limit_and_resumes(store: ListingStore) -> None:
    batch = [signed_listing(title=f"Barang {i}", expires=NOW + DAY) for i in range(5)]
    store.put_many(batch)

    assert store.collect_expired(NOW + DAY, limit=3) == 3
    assert store.collect_expired(NOW + DAY, limit=3) == 2
    assert store.listing_count == 0
    assert all(_keys_mentioning(store, item.id) == [] for item in batch)


# -- profiles ----------------------------------------------------------------------


def test_a_profile_follows_the_seq_rule(store: ListingStore) -> None:
    first = signed_profile(seq=1, name="Budi")
    second = signed_profile(seq=2, name="Budi Santoso")

    assert store.put(first) is Outcome.ADDED
    assert store.put(second) is Outcome.UPDATED
    assert store.put(first) is Outcome.STALE
    assert store.get_profile(SELLER.public_key) == second
    assert store.get_profile(OTHER.public_key) is None


def test_by_seller_returns_only_that_sellers_live_listings_newest_first(
    store: ListingStore,
) -> None:
    older = signed_listing(SELLER, title="Lama", created=NOW - 100)
    newer = signed_listing(SELLER, title="Baru", created=NOW - 10)
    theirs = signed_listing(OTHER, title="Punya orang")
    store.put_many([older, newer, theirs])

    assert store.by_seller(SELLER.public_key, NOW) == [newer, older]
    assert store.by_seller(OTHER.public_key, NOW) == [theirs]


def test_a_listing_record_is_stored_as_its_exact_signed_bytes(store: ListingStore) -> None:
    listing = signed_listing()
    store.put(listing)

    stored = store.get(listing.id, NOW)

    assert isinstance(stored, Listing)
    assert stored.encoded == listing.encoded
