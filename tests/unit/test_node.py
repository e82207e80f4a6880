"""The Node facade: own listings, the cache, export and import, lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import NOW, OTHER, FakeClock, signed_listing

from p2pmarket import records
from p2pmarket.errors import (
    ConfigError,
    IdentityError,
    InvalidInput,
    InvalidRecord,
    NotFound,
    P2PMarketError,
    WrongPassphrase,
)
from p2pmarket.exchange import read_export, write_export
from p2pmarket.node import Node, init_home, open_node
from p2pmarket.records import DAY, Listing, Tombstone

# -- own listings ----------------------------------------------------------------


def test_a_created_listing_is_signed_stored_and_found(node: Node) -> None:
    listing = node.create_listing(
        title="  Sepeda lipat  ",
        price=150_000_000,
        category=" Vehicles/Bicycles ",
        tags=[" Lipat", "murah", "lipat ", ""],
        location="Sleman",
    )

    assert listing.seller == node.public_key
    assert listing.seq == 1
    assert (listing.created, listing.expires) == (NOW, NOW + 30 * DAY)
    assert listing.title == "Sepeda lipat"
    assert listing.category == "vehicles/bicycles"
    assert listing.tags == ("lipat", "murah")
    assert listing.currency == "IDR"  # the home's default
    assert records.validate(records.encode(listing), NOW) == listing
    assert node.get_listing(listing.id) == listing
    assert node.get_listing(records.format_id(listing.id)) == listing
    assert node.search("sepeda").listings == [listing]


def test_an_invalid_listing_is_refused_and_nothing_is_stored(node: Node) -> None:
    with pytest.raises(InvalidRecord) as caught:
        node.create_listing(title="x" * 141, price=1, category="other")

    assert caught.value.field == "listing.title"
    assert node.my_listings() == []


@pytest.mark.parametrize("days", [0, 91, -1])
def test_a_lifetime_outside_1_to_90_days_is_invalid_input(node: Node, days: int) -> None:
    with pytest.raises(InvalidInput, match="1 to 90"):
        node.create_listing(title="Sepeda", price=1, category="other", expires_days=days)


def test_an_update_is_a_new_version_that_replaces_the_old_one(node: Node, clock: FakeClock) -> None:
    original = node.create_listing(title="Sepeda lipat", price=100, category="vehicles")
    clock.advance(3600)

    new = node.update_listing(records.format_id(original.id), title="Sepeda lipat murah", price=80)

    assert new.id == original.id
    assert new.seq == 2
    assert (new.title, new.price) == ("Sepeda lipat murah", 80)
    assert new.category == original.category  # unchanged fields are kept
    assert new.created == NOW + 3600
    assert new.expires == original.expires  # the remaining lifetime is kept
    assert node.get_listing(original.id) == new
    assert node.search("murah").listings == [new]
    assert node.my_listings() == [new]


def test_an_update_can_renew_the_lifetime(node: Node, clock: FakeClock) -> None:
    original = node.create_listing(title="Sepeda", price=100, category="vehicles")
    clock.advance(10 * DAY)

    new = node.update_listing(original.id, expires_days=30)

    assert new.expires == NOW + 10 * DAY + 30 * DAY


def test_an_update_near_expiry_keeps_at_least_a_day(node: Node, clock: FakeClock) -> None:
    original = node.create_listing(title="Sepeda", price=100, category="vehicles", expires_days=1)
    clock.advance(DAY - 60)

    new = node.update_listing(original.id, price=90)

    assert new.expires == clock.now + DAY


def test_a_withdrawn_listing_is_gone_for_good(node: Node, clock: FakeClock) -> None:
    listing = node.create_listing(title="Sepeda lipat", price=100, category="vehicles")
    clock.advance(60)

    tombstone = node.withdraw_listing(listing.id)

    assert isinstance(tombstone, Tombstone)
    assert tombstone.id == listing.id
    assert tombstone.seq == listing.seq + 1
    assert tombstone.expires >= listing.expires
    assert node.search("sepeda").listings == []
    assert node.my_listings() == []
    with pytest.raises(NotFound, match="withdrawn"):
        node.get_listing(listing.id)
    with pytest.raises(NotFound, match="withdrawn"):
        node.update_listing(listing.id, price=1)
    with pytest.raises(NotFound, match="withdrawn"):
        node.withdraw_listing(listing.id)


def test_my_listings_are_mine_only_and_newest_first(
    node: Node, clock: FakeClock, other_node: Node
) -> None:
    first = node.create_listing(title="Pertama", price=1, category="other")
    clock.advance(10)
    second = node.create_listing(title="Kedua", price=1, category="other")
    clock.advance(10)
    theirs = other_node.create_listing(title="Punya orang", price=1, category="other")
    node.ingest([records.encode(theirs)])

    assert node.my_listings() == [second, first]
    assert node.search().listings == [theirs, second, first]


def test_someone_elses_listing_cannot_be_updated_or_withdrawn(node: Node) -> None:
    theirs = signed_listing(OTHER)
    assert node.ingest([records.encode(theirs)]).added == 1

    with pytest.raises(InvalidInput, match="another seller"):
        node.update_listing(theirs.id, price=1)
    with pytest.raises(InvalidInput, match="another seller"):
        node.withdraw_listing(theirs.id)
    assert node.get_listing(theirs.id) == theirs


def test_an_unknown_id_is_not_found(node: Node) -> None:
    unknown = records.format_id(b"\x00" * 16)

    with pytest.raises(NotFound, match=unknown):
        node.get_listing(unknown)
    with pytest.raises(NotFound):
        node.update_listing(unknown, price=1)
    with pytest.raises(NotFound):
        node.withdraw_listing(unknown)


def test_a_malformed_id_is_invalid_input(node: Node) -> None:
    with pytest.raises(InvalidInput, match="not a listing id"):
        node.get_listing("sepeda")


def test_an_expired_listing_is_not_found(node: Node, clock: FakeClock) -> None:
    listing = node.create_listing(title="Sepeda", price=1, category="other", expires_days=1)
    clock.advance(DAY)

    with pytest.raises(NotFound, match="expired"):
        node.get_listing(listing.id)
    assert node.search("sepeda").listings == []


def test_reading_never_writes_but_the_next_write_collects_expired_records(
    home: Path, clock: FakeClock
) -> None:
    with Node.open(home, clock=clock) as node:
        node.create_listing(title="Sepeda", price=1, category="other", expires_days=1)
        assert node.store.listing_count == 1
    clock.advance(DAY)

    with Node.open(home, clock=clock) as node:
        assert node.search("sepeda").listings == []
        assert node.store.listing_count == 1  # expired, hidden, not yet collected
        node.create_listing(title="Meja", price=1, category="other")
        assert [item.title for item in node.my_listings()] == ["Meja"]
        assert node.store.listing_count == 1


def test_a_withdrawn_listing_stays_withdrawn_even_when_an_older_version_outlives_it(
    node: Node, other_node: Node, clock: FakeClock, tmp_path: Path
) -> None:
    listing = node.create_listing(title="Sepeda", price=1, category="other", expires_days=90)
    node.export_listings(tmp_path / "v1.export")
    node.update_listing(listing.id, expires_days=1)
    node.withdraw_listing(listing.id)
    clock.advance(2 * DAY)

    report = node.import_listings(tmp_path / "v1.export")

    assert report.accepted == 0
    assert node.search("sepeda").listings == []


def test_changing_the_currency_without_a_new_price_is_refused(node: Node) -> None:
    listing = node.create_listing(title="Sepeda", price=15_000_000, currency="IDR", category="x")
    with pytest.raises(InvalidInput, match="new price"):
        node.update_listing(listing.id, currency="JPY")
    moved = node.update_listing(listing.id, currency="JPY", price=15_000)
    assert (moved.currency, moved.price) == ("JPY", 15_000)


@pytest.mark.parametrize(
    "arguments",
    [
        {"text": "!!!"},
        {"location": "---"},
        {"category": "Foo/"},
        {"min_price": -1},
        {"max_price": 2**64},
        {"offset": 10**20},
    ],
    ids=["no words", "no location words", "bad category", "negative", "huge", "deep offset"],
)
def test_searches_that_cannot_mean_anything_are_invalid_input(
    node: Node, arguments: dict[str, object]
) -> None:
    with pytest.raises(InvalidInput):
        node.search(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limit", "offset"), [(0, 0), (1001, 0), (20, -1)], ids=["limit 0", "limit 1001", "offset -1"]
)
def test_search_limits_are_checked(node: Node, limit: int, offset: int) -> None:
    with pytest.raises(InvalidInput):
        node.search(limit=limit, offset=offset)


def test_search_accepts_currency_and_category_in_any_case(node: Node) -> None:
    listing = node.create_listing(
        title="Sepeda", price=1250, currency="usd", category="vehicles/bicycles"
    )

    assert listing.currency == "USD"
    assert node.search(currency="usd", category=" Vehicles ").listings == [listing]


# -- profile -------------------------------------------------------------------------


def test_a_profile_is_signed_stored_and_replaced_by_the_next(node: Node) -> None:
    assert node.profile() is None

    first = node.set_profile(name=" Budi ", contacts=["wa: 0812", " ", "tg: @budi"])
    second = node.set_profile(name="Budi Santoso")

    assert first.seq == 1
    assert first.name == "Budi"
    assert first.contacts == ("wa: 0812", "tg: @budi")
    assert second.seq == 2
    assert node.profile() == second
    assert node.profile(OTHER.public_key) is None


# -- export and import ------------------------------------------------------------------


def _populate(node: Node, clock: FakeClock) -> list[Listing]:
    made = []
    for title in ("Sepeda lipat", "Kursi rotan", "Lampu antik"):
        made.append(node.create_listing(title=title, price=100, category="other"))
        clock.advance(1)
    node.withdraw_listing(made[1].id)
    return made


def test_an_export_imports_whole_into_another_home(
    node: Node, clock: FakeClock, other_node: Node, tmp_path: Path
) -> None:
    made = _populate(node, clock)
    path = tmp_path / "listings.p2pm"

    assert node.export_listings(path) == 3  # two listings and one withdrawal

    report = other_node.import_listings(path)
    assert (report.added, report.withdrawn, report.rejected) == (2, 1, [])
    assert report.accepted == 3
    assert [i.title for i in other_node.search().listings] == ["Lampu antik", "Sepeda lipat"]
    with pytest.raises(NotFound, match="withdrawn"):
        other_node.get_listing(made[1].id)

    again = other_node.import_listings(path)
    assert (again.accepted, again.unchanged, again.rejected) == (0, 3, [])


def test_an_export_holds_only_my_records_unless_everything_is_asked_for(
    node: Node, tmp_path: Path
) -> None:
    node.create_listing(title="Punya saya", price=1, category="other")
    node.ingest([records.encode(signed_listing(OTHER))])

    assert node.export_listings(tmp_path / "mine") == 1
    assert node.export_listings(tmp_path / "all", everything=True) == 2


def _tamper_with_title(path: Path, title: bytes, forged: bytes) -> tuple[int, bytes]:
    """Rewrite ``title`` inside its record in the export at ``path``; return the
    record's 1-based position and its original bytes. The framing stays intact."""
    assert len(forged) == len(title)
    items = list(read_export(path))
    position, record = next((i, r) for i, r in enumerate(items, 1) if title in r)
    data = path.read_bytes()
    path.write_bytes(data.replace(record, record.replace(title, forged)))
    return position, record


def test_a_tampered_record_is_rejected_with_its_position_and_the_rest_stored(
    node: Node, clock: FakeClock, other_node: Node, tmp_path: Path
) -> None:
    for title in ("Satu", "Dua", "Tiga"):
        node.create_listing(title=title, price=1, category="other")
        clock.advance(1)
    path = tmp_path / "listings.p2pm"
    node.export_listings(path)
    position, original = _tamper_with_title(path, b"Dua", b"Dia")

    report = other_node.import_listings(path)

    assert report.added == 2
    assert [where for where, _ in report.rejected] == [position]
    assert "sig" in report.rejected[0][1]
    with pytest.raises(NotFound):
        other_node.get_listing(records.decode(original, NOW).id)
    assert sorted(i.title for i in other_node.search().listings) == ["Satu", "Tiga"]


def test_an_invalid_record_in_an_import_is_rejected_with_the_rule_it_broke(
    other_node: Node, tmp_path: Path
) -> None:
    good = signed_listing(OTHER, title="Baik")
    expired = signed_listing(OTHER, title="Basi", created=NOW - 2 * DAY, expires=NOW - DAY)
    path = tmp_path / "mixed.p2pm"
    write_export(path, [records.encode(good), records.encode(expired), b"\x01\x02"])

    report = other_node.import_listings(path)

    assert report.added == 1
    assert [position for position, _ in report.rejected] == [2, 3]
    assert "listing.exp" in report.rejected[0][1]


@pytest.mark.parametrize("cut", [1, 10, 70], ids=["last byte", "inside the signature", "deeper"])
def test_a_truncated_export_is_refused_and_nothing_is_stored(
    node: Node, clock: FakeClock, other_node: Node, tmp_path: Path, cut: int
) -> None:
    _populate(node, clock)
    path = tmp_path / "listings.p2pm"
    node.export_listings(path)
    path.write_bytes(path.read_bytes()[:-cut])

    with pytest.raises(InvalidInput, match="truncated"):
        other_node.import_listings(path)

    assert other_node.search().listings == []
    assert list(other_node.store.iter_records(NOW)) == []


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage that is not msgpack \xc1\xc1", b"\x81\xa6format\xa3xyz", b"\x92\x01\x02"],
    ids=["empty", "garbage", "other format", "an array"],
)
def test_a_file_that_is_not_an_export_is_refused_and_nothing_is_stored(
    other_node: Node, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "not-an-export"
    path.write_bytes(content)

    with pytest.raises(InvalidInput, match="not-an-export"):
        other_node.import_listings(path)

    assert list(other_node.store.iter_records(NOW)) == []


def test_an_export_damaged_after_good_records_stores_none_of_them(
    node: Node, clock: FakeClock, other_node: Node, tmp_path: Path
) -> None:
    _populate(node, clock)
    path = tmp_path / "listings.p2pm"
    node.export_listings(path)
    path.write_bytes(path.read_bytes() + b"\x01")  # an int where a record should be

    with pytest.raises(InvalidInput, match="damaged"):
        other_node.import_listings(path)

    assert list(other_node.store.iter_records(NOW)) == []


def test_importing_a_missing_file_is_invalid_input(node: Node, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        node.import_listings(tmp_path / "nothing-here")


def test_importing_a_folder_is_invalid_input(node: Node, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="folder"):
        node.import_listings(tmp_path)


# -- identity and lifecycle ------------------------------------------------------------


def test_a_wrong_passphrase_fails_on_the_first_signature_not_on_open(
    tmp_path: Path, clock: FakeClock
) -> None:
    home = tmp_path / "sealed"
    init_home(home, "the right one")

    with Node.open(home, passphrase="the wrong one", clock=clock) as node:
        assert node.search().listings == []  # reading needs no key
        with pytest.raises(WrongPassphrase):
            node.create_listing(title="Sepeda", price=1, category="other")
        assert node.store.listing_count == 0


def test_a_passphrase_function_is_asked_once_and_only_when_signing(
    tmp_path: Path, clock: FakeClock
) -> None:
    home = tmp_path / "sealed"
    init_home(home, "secret")
    asked: list[str] = []

    def passphrase() -> str:
        asked.append("asked")
        return "secret"

    with Node.open(home, passphrase=passphrase, clock=clock) as node:
        node.search("anything")
        assert asked == []
        node.create_listing(title="Satu", price=1, category="other")
        node.create_listing(title="Dua", price=1, category="other")
        assert asked == ["asked"]


def test_an_encrypted_key_without_any_passphrase_says_how_to_give_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    home = tmp_path / "sealed"
    init_home(home, "secret")

    with (
        Node.open(home, clock=clock) as node,
        pytest.raises(IdentityError, match="P2PMARKET_PASSPHRASE"),
    ):
        node.create_listing(title="Sepeda", price=1, category="other")


def test_an_unencrypted_key_never_asks_for_a_passphrase(home: Path, clock: FakeClock) -> None:
    def no_one_to_ask() -> str:
        raise IdentityError("a passphrase is needed: set P2PMARKET_PASSPHRASE")

    with Node.open(home, passphrase=no_one_to_ask, clock=clock) as node:
        listing = node.create_listing(title="Sepeda", price=1, category="other")

    assert listing.seq == 1


def test_a_home_cannot_be_initialised_twice(home: Path) -> None:
    with pytest.raises(IdentityError, match="already has an identity"):
        init_home(home, None)


def test_init_returns_the_peer_id_the_node_then_has(tmp_path: Path) -> None:
    peer_id = init_home(tmp_path / "new", None)

    with Node.open(tmp_path / "new") as node:
        assert node.peer_id == peer_id


def test_opening_a_missing_home_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="p2pmarket init"):
        Node.open(tmp_path / "nowhere")


def test_opening_a_home_without_identity_says_to_run_init(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(ConfigError, match="p2pmarket init"):
        Node.open(tmp_path / "empty")


def test_a_home_in_use_by_another_node_is_refused(node: Node) -> None:
    with pytest.raises(P2PMarketError, match="daemon"):
        Node.open(node.home.root)


def test_a_closed_node_refuses_use_and_closes_idempotently(home: Path) -> None:
    node = Node.open(home)
    node.close()
    node.close()

    with pytest.raises(P2PMarketError, match="closed"):
        node.search("sepeda")
    with pytest.raises(P2PMarketError, match="closed"):
        node.create_listing(title="Sepeda", price=1, category="other")


async def test_open_node_works_inside_trio_and_closes_the_node(
    home: Path, clock: FakeClock
) -> None:
    async with open_node(home, clock=clock) as node:
        listing = node.create_listing(title="Sepeda", price=1, category="other")
        assert node.get_listing(listing.id) == listing

    with pytest.raises(P2PMarketError, match="closed"):
        node.get_listing(listing.id)
    # Closed means the store's lock is released: the home opens again.
    async with open_node(home, clock=clock) as again:
        assert again.get_listing(listing.id) == listing


async def test_open_node_closes_the_node_when_the_block_fails(home: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with open_node(home) as node:
            raise RuntimeError("boom")

    with pytest.raises(P2PMarketError, match="closed"):
        node.search()


def test_config_sets_the_default_currency_location_and_lifetime(
    home: Path, clock: FakeClock
) -> None:
    (home / "config.toml").write_text(
        'currency = "usd"\nlocation = "Sleman"\nlisting_days = 7\n', encoding="utf-8"
    )

    with Node.open(home, clock=clock) as node:
        listing = node.create_listing(title="Sepeda", price=1, category="other")

    assert (listing.currency, listing.location) == ("USD", "Sleman")
    assert listing.expires == NOW + 7 * DAY


@pytest.mark.parametrize(
    "config",
    [
        'currency = "IRD"',
        "currency = 5",
        'location = ["x"]',
        "listing_days = 0",
        "listing_days = 91",
        'colour = "red"',
        "not toml =",
    ],
)
def test_a_bad_config_value_is_config_error(home: Path, config: str) -> None:
    (home / "config.toml").write_text(config, encoding="utf-8")

    with pytest.raises(ConfigError):
        Node.open(home)


async def test_a_subscriber_whose_channel_closed_first_leaves_without_an_error(
    node: Node,
) -> None:
    # Found by the gossip benchmark: an event emitted after the subscriber's
    # channel closed drops the subscriber, and leaving events() then raised.
    async with node.events() as events:
        await events.aclose()
        node.create_listing(title="Sepeda lipat", price=100, category="vehicles")
    assert node._subscribers == []
