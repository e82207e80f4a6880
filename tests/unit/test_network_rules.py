"""The network layer's pure rules: topics, DHT keys, rate limits, the peer book."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import OTHER, SELLER, signed_listing, updated

from p2pmarket.errors import InvalidInput, InvalidRecord
from p2pmarket.network import topics
from p2pmarket.network.dht import MAX_KEY_BYTES, ListingValidator, catalogue_key, listing_key
from p2pmarket.network.peerbook import MAX_FAILURES, PeerBook
from p2pmarket.network.ratelimit import RateLimiter


def test_a_listing_travels_on_the_market_topic_and_its_top_level_category_topic() -> None:
    assert topics.listing_topics("vehicles/bicycles") == [
        "p2pmarket/1/listings",
        "p2pmarket/1/listings/vehicles",
    ]


def test_a_message_carries_exactly_one_topic_and_the_records_own() -> None:
    assert topics.carries("listing", "vehicles/bicycles", ["p2pmarket/1/listings"])
    assert topics.carries("listing", "vehicles/bicycles", ["p2pmarket/1/listings/vehicles"])
    assert not topics.carries("listing", "vehicles/bicycles", topics.listing_topics("vehicles"))
    assert not topics.carries("listing", "vehicles/bicycles", ["p2pmarket/1/listings/phones"])
    assert not topics.carries("listing", "vehicles/bicycles", [topics.REVIEWS])
    assert not topics.carries("listing", "vehicles/bicycles", [])
    assert topics.carries("tombstone", None, ["p2pmarket/1/listings/phones"])
    assert not topics.carries("tombstone", None, ["p2pmarket/1/listings/Not A/b"])
    assert topics.carries("profile", None, [topics.PROFILES])
    assert not topics.carries("profile", None, [topics.REVIEWS])
    assert topics.carries("review", None, [topics.REVIEWS])


def test_a_default_node_follows_everything_and_a_follower_only_its_categories() -> None:
    assert topics.subscriptions(()) == [topics.ALL_LISTINGS, topics.PROFILES, topics.REVIEWS]
    assert topics.subscriptions(("vehicles/bicycles", "vehicles", "electronics")) == [
        "p2pmarket/1/listings/vehicles",
        "p2pmarket/1/listings/electronics",
        topics.PROFILES,
        topics.REVIEWS,
    ]
    with pytest.raises(InvalidInput):
        topics.subscriptions(("Not A Category",))


def test_dht_keys_fit_the_50_bytes_a_py_libp2p_server_accepts_in_find_node() -> None:
    assert len(listing_key(b"\xff" * 16)) <= MAX_KEY_BYTES
    assert len(catalogue_key(b"\xff" * 32)) <= MAX_KEY_BYTES
    assert catalogue_key(SELLER.public_key) != catalogue_key(OTHER.public_key)


def test_the_dht_accepts_a_listing_only_under_its_own_id() -> None:
    listing = signed_listing()
    validator = ListingValidator(lambda: listing.created)
    validator.validate(listing_key(listing.id), listing.encoded)
    with pytest.raises(InvalidRecord, match="DHT key"):
        validator.validate(listing_key(b"\x00" * 16), listing.encoded)


def test_the_dht_selects_the_highest_seq_whatever_the_order_of_values() -> None:
    first = signed_listing()
    second = updated(first, price=1)
    validator = ListingValidator(lambda: first.created)
    key = listing_key(first.id)
    assert validator.select(key, [first.encoded, second.encoded]) == 1
    assert validator.select(key, [second.encoded, first.encoded]) == 0


def test_a_peer_gets_its_burst_then_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.allow("p") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("q")  # buckets are per peer
    now[0] += 0.5  # one token back
    assert limiter.allow("p")
    assert not limiter.allow("p")


def test_the_peer_book_survives_a_restart_and_backs_off_then_forgets(tmp_path: Path) -> None:
    path = tmp_path / "peers"
    book = PeerBook.load(path)
    book.seen("peer-a", ["/ip4/10.0.0.1/tcp/4690"], now=1000.0)
    book.save()
    again = PeerBook.load(path)
    assert [p.peer_id for p in again.due(1000.0, connected=set())] == ["peer-a"]
    assert again.due(1000.0, connected={"peer-a"}) == []
    again.failed("peer-a", now=1000.0)
    assert again.due(1005.0, set()) == []  # backing off
    assert [p.peer_id for p in again.due(1011.0, set())] == ["peer-a"]
    for _ in range(MAX_FAILURES):
        again.failed("peer-a", now=1011.0)
    assert again.peers == {}


def test_a_damaged_peer_book_is_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "peers"
    path.write_bytes(b"\xc1 not msgpack")
    assert PeerBook.load(path).peers == {}


def test_a_remembered_address_is_dialled_at_its_peer_even_through_a_relay() -> None:
    from p2pmarket.network.peers import dial_addresses

    peer, relay = "12D3KooWTarget", "12D3KooWRelay"
    assert dial_addresses(
        peer,
        [
            "/ip4/192.0.2.7/tcp/4690",
            f"/ip4/192.0.2.7/tcp/4690/p2p/{peer}",
            f"/ip4/203.0.113.5/tcp/4690/p2p/{relay}/p2p-circuit",
        ],
    ) == [
        f"/ip4/192.0.2.7/tcp/4690/p2p/{peer}",
        f"/ip4/192.0.2.7/tcp/4690/p2p/{peer}",
        f"/ip4/203.0.113.5/tcp/4690/p2p/{relay}/p2p-circuit/p2p/{peer}",
    ]
