"""The store's sync index: the (sync key, seq) set two nodes reconcile.

Every record and profile the store holds has one entry under its sync key with
the seq it holds; an expired one drops out at once and is deleted by collection;
an *evicted* listing (the cache was over its cap) leaves its entry behind, flagged
not held, so that sync neither asks for it again nor offers it, and the store
refuses that version if it comes back.
"""

from __future__ import annotations

import struct
from pathlib import Path

import msgpack
from factories import (
    NOW,
    OTHER,
    SELLER,
    THIRD,
    signed_listing,
    signed_profile,
    signed_tombstone,
    updated,
)

from p2pmarket import records
from p2pmarket.records import DAY, Listing, Profile, Tombstone
from p2pmarket.store import ListingStore, Outcome, Query, layout

MINE = SELLER.public_key


def sync_key(record: Listing | Tombstone | Profile) -> bytes:
    return records.sync_key(record)


def entry(record: Listing | Tombstone | Profile, *, held: bool = True) -> tuple[bytes, int, bool]:
    return sync_key(record), record.seq, held


def sync_set(store: ListingStore, now: int = NOW) -> list[tuple[bytes, int, bool]]:
    return list(store.sync_items(now))


def raw_sync_keys(store: ListingStore) -> list[bytes]:
    return list(store.db.iterator(prefix=layout.SYNC, include_value=False))


def others(count: int, *, start: int = 0) -> list[Listing]:
    """Listings by OTHER, the first the oldest, one minute apart."""
    return [
        signed_listing(OTHER, title=f"Barang {i}", created=NOW - DAY + 60 * i)
        for i in range(start, start + count)
    ]


# -- entries follow the records ---------------------------------------------------


def test_each_listing_tombstone_and_profile_has_one_entry_in_key_order(
    store: ListingStore,
) -> None:
    listings = [signed_listing(title=f"Barang {i}") for i in range(20)]
    gone = signed_listing(title="Ditarik")
    withdrawal = signed_tombstone(gone)
    profile = signed_profile(OTHER, seq=3)
    store.put_many([*listings, gone, withdrawal, profile])

    found = sync_set(store)

    assert found == sorted([*map(entry, listings), entry(withdrawal), entry(profile)])
    assert [k for k, _, _ in found] == sorted({k for k, _, _ in found})


def test_a_newer_version_replaces_the_entry_and_a_stale_one_leaves_it(
    store: ListingStore,
) -> None:
    v1 = signed_listing(seq=1)
    v3 = updated(v1, seq=3)
    store.put_many([v1, v3])

    assert store.put(updated(v1, seq=2)) is Outcome.STALE

    assert sync_set(store) == [entry(v3)]
    assert store.sync_seq(sync_key(v1), NOW) == 3
    assert store.sync_record(sync_key(v1), NOW) == records.encode(v3)


def test_a_withdrawal_replaces_the_listing_entry_with_the_tombstone(store: ListingStore) -> None:
    listing = signed_listing(seq=4)
    store.put(listing)
    withdrawal = signed_tombstone(listing)

    store.put(withdrawal)

    assert sync_set(store) == [entry(withdrawal)]
    assert store.sync_record(sync_key(listing), NOW) == records.encode(withdrawal)
    # The listing can never come back under that key.
    assert store.put(updated(listing, seq=9)) is Outcome.DEAD
    assert sync_set(store) == [entry(withdrawal)]


def test_a_profile_has_an_entry_that_follows_its_seq_and_never_expires(
    store: ListingStore,
) -> None:
    first = signed_profile(seq=1)
    second = signed_profile(seq=2, name="Budi Santoso")

    store.put(first)
    assert sync_set(store) == [entry(first)]
    store.put(second)
    store.put(first)

    assert sync_set(store) == [entry(second)]
    assert sync_set(store, now=NOW + 10_000 * DAY) == [entry(second)]
    assert store.sync_record(sync_key(second), NOW) == records.encode(second)


def test_an_unknown_sync_key_has_no_seq_and_no_record(store: ListingStore) -> None:
    store.put(signed_listing())
    unknown = layout.listing_sync_key(bytes(16))

    assert store.sync_seq(unknown, NOW) is None
    assert store.sync_record(unknown, NOW) is None
    assert store.sync_record(layout.profile_sync_key(THIRD.public_key), NOW) is None


# -- expiry --------------------------------------------------------------------------


def test_an_expired_record_leaves_the_sync_set_at_once(store: ListingStore) -> None:
    short = signed_listing(title="Sebentar", expires=NOW + DAY)
    long = signed_listing(title="Lama", expires=NOW + 10 * DAY)
    store.put_many([short, long])

    assert sync_set(store, now=NOW + DAY - 1) == sorted([entry(short), entry(long)])
    assert store.sync_record(sync_key(short), NOW + DAY - 1) == records.encode(short)

    assert sync_set(store, now=NOW + DAY) == [entry(long)]
    assert store.sync_record(sync_key(short), NOW + DAY) is None
    assert store.sync_seq(sync_key(short), NOW + DAY) is None


def test_an_expired_tombstone_leaves_the_sync_set_too(store: ListingStore) -> None:
    listing = signed_listing(expires=NOW + DAY)
    withdrawal = signed_tombstone(listing)
    store.put_many([listing, withdrawal])

    assert sync_set(store, now=withdrawal.expires - 1) == [entry(withdrawal)]
    assert sync_set(store, now=withdrawal.expires) == []


def test_collection_deletes_the_sync_entries_of_what_it_collects(store: ListingStore) -> None:
    short = signed_listing(title="Sebentar", expires=NOW + DAY)
    long = signed_listing(title="Lama", expires=NOW + 10 * DAY)
    gone = signed_listing(title="Ditarik", expires=NOW + DAY)
    store.put_many([short, long, gone, signed_tombstone(gone)])

    assert store.collect_expired(NOW + DAY) == 2

    assert raw_sync_keys(store) == [layout.SYNC + sync_key(long)]
    assert sync_set(store, now=NOW) == [entry(long)]


# -- eviction -------------------------------------------------------------------------


def test_eviction_takes_the_oldest_others_listings_first(store: ListingStore) -> None:
    theirs = others(10)
    store.put_many(theirs)

    assert store.evict(7, MINE) == 3

    assert store.listing_count == 7
    assert [store.get(x.id, NOW) for x in theirs[:3]] == [None, None, None]
    assert all(store.get(x.id, NOW) == x for x in theirs[3:])


def test_eviction_never_takes_the_users_own_listings_or_any_tombstone(
    store: ListingStore,
) -> None:
    # The user's own listings and a tombstone are the oldest of all.
    mine = [
        signed_listing(SELLER, title=f"Punyaku {i}", created=NOW - 2 * DAY + i) for i in range(3)
    ]
    withdrawn = signed_listing(OTHER, title="Ditarik", created=NOW - 2 * DAY)
    withdrawal = signed_tombstone(withdrawn, OTHER)
    theirs = others(5)
    store.put_many([*mine, withdrawn, withdrawal, *theirs])

    assert store.evict(1, MINE) == 5

    assert store.listing_count == 3
    assert all(store.get(x.id, NOW) == x for x in mine)
    assert store.get(withdrawn.id, NOW) == withdrawal
    assert all(store.get(x.id, NOW) is None for x in theirs)
    # Nothing else is left to evict: the user's own listings stay over the limit.
    assert store.evict(1, MINE) == 0


def test_eviction_goes_in_steps_until_it_is_under_the_limit(store: ListingStore) -> None:
    theirs = others(25)
    store.put_many(theirs)

    assert store.evict(4, MINE, step=3) == 21

    assert store.listing_count == 4
    assert [x.id for x in theirs if store.get(x.id, NOW)] == [x.id for x in theirs[-4:]]


def test_an_evicted_listing_stays_in_the_sync_set_flagged_not_held(store: ListingStore) -> None:
    old, new = others(2)
    store.put_many([old, updated(new, OTHER, seq=4)])

    store.evict(1, MINE)

    assert sync_set(store) == sorted([entry(old, held=False), (sync_key(new), 4, True)])
    # Sync counts the version as known, but it is no longer served.
    assert store.sync_seq(sync_key(old), NOW) == old.seq
    assert store.sync_record(sync_key(old), NOW) is None
    assert store.get_record(old.id) is None
    assert [x.id for x in store.search(Query(text="barang"), NOW).listings] == [new.id]


def test_the_store_refuses_an_evicted_version_but_takes_a_newer_one(store: ListingStore) -> None:
    old, kept = others(2)
    store.put_many([old, kept])
    store.evict(1, MINE)

    assert store.put(old) is Outcome.STALE
    assert store.get(old.id, NOW) is None
    assert store.listing_count == 1

    newer = updated(old, OTHER, title="Barang baru")
    assert store.put(newer) is Outcome.ADDED

    assert store.get(old.id, NOW) == newer
    assert store.listing_count == 2
    assert sync_set(store) == sorted([entry(newer), entry(kept)])
    assert store.sync_record(sync_key(old), NOW) == records.encode(newer)


def test_the_withdrawal_of_an_evicted_listing_is_taken(store: ListingStore) -> None:
    old, kept = others(2)
    store.put_many([old, kept])
    store.evict(1, MINE)
    withdrawal = signed_tombstone(old, OTHER)

    assert store.put(withdrawal) is Outcome.WITHDRAWN

    assert store.get(old.id, NOW) == withdrawal
    assert entry(withdrawal) in sync_set(store)
    assert store.listing_count == 1


def test_the_entry_of_an_evicted_listing_goes_when_the_listing_would_have_expired(
    store: ListingStore,
) -> None:
    old, kept = (
        signed_listing(OTHER, created=NOW - DAY, expires=NOW + DAY),
        signed_listing(OTHER, created=NOW, expires=NOW + 10 * DAY),
    )
    store.put_many([old, kept])
    store.evict(1, MINE)

    assert store.collect_expired(NOW + DAY - 1) == 0
    assert store.collect_expired(NOW + DAY) == 1

    assert raw_sync_keys(store) == [layout.SYNC + sync_key(kept)]
    assert store.listing_count == 1
    # Forgotten: the version is news again (were it still alive).
    assert store.sync_seq(sync_key(old), NOW) is None


def test_an_evicted_then_renewed_listing_is_collected_once(store: ListingStore) -> None:
    # Evicted, then back in a version that lives longer: both expiry keys stay
    # until collection, and a node that was away may collect them in one pass.
    old, kept = (
        signed_listing(OTHER, created=NOW - DAY, expires=NOW + DAY),
        signed_listing(OTHER, created=NOW, expires=NOW + 30 * DAY),
    )
    store.put_many([old, kept])
    store.evict(1, MINE)
    renewed = updated(old, OTHER, expires=NOW + 2 * DAY)
    assert store.put(renewed) is Outcome.ADDED
    assert store.listing_count == 2

    assert store.collect_expired(NOW + 2 * DAY) == 1

    assert store.listing_count == 1
    assert store.get(kept.id, NOW + 2 * DAY) == kept
    assert raw_sync_keys(store) == [layout.SYNC + sync_key(kept)]
    # …and so does the count written to disk.
    assert store.db.get(layout.COUNT_KEY) == b"1"


def test_every_change_to_the_sync_set_moves_the_generation_and_a_stale_put_does_not(
    store: ListingStore,
) -> None:
    old, kept = others(2)
    seen = [store.generation]

    def moved() -> bool:
        seen.append(store.generation)
        return seen[-1] != seen[-2]

    store.put_many([old, kept])
    assert moved()
    store.put(old)
    assert not moved()
    store.put(signed_profile())
    assert moved()
    store.evict(1, MINE)
    assert moved()
    store.put(updated(kept, OTHER))
    assert moved()
    store.collect_expired(NOW + 365 * DAY)
    assert moved()


# -- upgrading a store of schema 1 ----------------------------------------------------


def test_a_schema_1_store_gets_its_sync_index_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "store"
    listing = signed_listing(title="Sepeda lipat", seq=2)
    gone = signed_listing(title="Kursi rotan")
    withdrawal = signed_tombstone(gone)
    profile = signed_profile(OTHER, seq=5)
    with ListingStore(path) as store:
        store.put_many([listing, gone, withdrawal, profile])
        expected = sync_set(store)
        # What a store written by schema 1 looks like: no S keys.
        with store.db.write_batch() as wb:
            for key in raw_sync_keys(store):
                wb.delete(key)
            wb.put(layout.SCHEMA_KEY, b"1")

    with ListingStore(path) as upgraded:
        assert upgraded.db.get(layout.SCHEMA_KEY) == str(layout.SCHEMA_VERSION).encode()
        assert (
            sync_set(upgraded)
            == expected
            == sorted([entry(listing), entry(withdrawal), entry(profile)])
        )
        assert upgraded.sync_record(sync_key(profile), NOW) == records.encode(profile)
        assert upgraded.listing_count == 1
        assert upgraded.put(listing) is Outcome.STALE

    with ListingStore(path) as again:  # the upgrade runs once
        assert sync_set(again) == expected
        assert again.db.get(layout.UNSTAMPED_KEY) is None  # every record had its stamp


def test_a_schema_2_store_gets_sellers_in_its_summaries_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "store"
    mine, theirs = (
        signed_listing(title="Sepeda lipat"),
        signed_listing(OTHER, title="Sepeda gunung"),
    )
    with ListingStore(path) as store:
        store.put_many([mine, theirs])
        # What schema 2 wrote: summaries without the seller.
        with store.db.write_batch() as wb:
            for key, value in store.db.iterator(prefix=layout.TIME):
                wb.put(key, value[: struct.calcsize(">QQB3s")])
            wb.put(layout.SCHEMA_KEY, b"2")

    with ListingStore(path) as upgraded:
        assert upgraded.db.get(layout.SCHEMA_KEY) == str(layout.SCHEMA_VERSION).encode()
        page = upgraded.search(
            Query(text="sepeda", hide_sellers=frozenset({OTHER.public_key})), NOW
        )
        assert page.listings == [mine]


def test_a_schema_3_store_keeps_its_unstamped_records_but_no_longer_serves_them(
    tmp_path: Path,
) -> None:
    # Records stored before proof-of-work stamps: peers would refuse them (in
    # sync, as a lie), so they stay for search but are not offered.
    path = tmp_path / "store"
    old, stamped = signed_listing(title="Sepeda lama"), signed_listing(OTHER, title="Sepeda baru")
    profile = signed_profile(OTHER, seq=3)
    with ListingStore(path) as store:
        store.put_many([old, stamped, profile])
        # What schema 3 wrote for the first listing: the same record, no stamp.
        doc = msgpack.unpackb(store.db.get(layout.RECORD + old.id))
        del doc["pow"]
        with store.db.write_batch() as wb:
            wb.put(layout.RECORD + old.id, msgpack.packb(doc))
            wb.put(layout.SCHEMA_KEY, b"3")

    with ListingStore(path) as upgraded:
        assert upgraded.db.get(layout.SCHEMA_KEY) == str(layout.SCHEMA_VERSION).encode()
        held = {key: held for key, _, held in upgraded.sync_items(NOW)}
        assert held == {sync_key(old): False, sync_key(stamped): True, sync_key(profile): True}
        assert upgraded.sync_record(sync_key(old), NOW) is None
        assert upgraded.db.get(layout.UNSTAMPED_KEY) == b""  # marked: the node restamps its own
        assert upgraded.sync_record(sync_key(stamped), NOW) == records.encode(stamped)
        assert [x.id for x in upgraded.search(Query(text="lama"), NOW).listings] == [old.id]
        assert upgraded.put(old) is Outcome.STALE  # the same version is not taken again
        newer = updated(old, SELLER)
        assert upgraded.put(newer) is Outcome.UPDATED
        assert upgraded.sync_record(sync_key(newer), NOW) == records.encode(newer)
