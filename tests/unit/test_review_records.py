"""Reviews: only a real counterparty of a contract both signed can write one, one per
party per trade, and reputation is computed from exactly the reviews held."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import (
    NOW,
    OTHER,
    SELLER,
    THIRD,
    agreed_contract,
    raw_record,
    signed_listing,
    signed_review,
)

from p2pmarket import records
from p2pmarket.catchup import _check
from p2pmarket.crypto.signing import Signer
from p2pmarket.errors import InvalidRecord
from p2pmarket.ingest import ingest
from p2pmarket.network.dht import (
    MAX_BUNDLE,
    ReviewsValidator,
    pack_bundle,
    reviews_key,
    unpack_bundle,
)
from p2pmarket.ratings import Ratings
from p2pmarket.records import Review
from p2pmarket.reputation import PRIOR_STARS, PRIOR_WEIGHT, reviewer_weight
from p2pmarket.store import ListingStore, Outcome, Query


def key(n: int) -> Signer:
    return Signer(bytes([n]) * 32)


def trade_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


# -- what makes a review valid -------------------------------------------------------


def test_a_buyers_review_of_the_seller_validates_with_the_contract_inside() -> None:
    review = signed_review(OTHER, stars=4, text="Barang bagus.\nPengiriman cepat.")

    checked = records.validate(records.encode(review), NOW)

    assert checked == review
    assert isinstance(checked, Review)
    assert checked.subject == SELLER.public_key
    assert checked.reviewer_role == "buyer"
    assert checked.contract.verify()


def test_the_seller_may_review_the_buyer_of_the_same_contract() -> None:
    review = signed_review(SELLER)

    assert records.validate(records.encode(review), NOW).subject == OTHER.public_key  # type: ignore[union-attr]


def test_a_review_without_a_contract_is_rejected() -> None:
    fields = signed_review().fields()
    del fields["contract"]

    with pytest.raises(InvalidRecord, match=r"review\.contract: missing"):
        records.validate(raw_record(fields, OTHER), NOW)


def test_a_contract_the_seller_did_not_sign_is_rejected() -> None:
    contract = agreed_contract()
    forged = replace(contract, acceptor_signature=THIRD.sign(contract.message()))
    review = signed_review(OTHER, forged)

    with pytest.raises(InvalidRecord, match="not signed by both"):
        records.validate(records.encode(review), NOW)


def test_a_contract_signed_by_the_buyer_twice_is_rejected() -> None:
    contract = agreed_contract()
    forged = replace(contract, acceptor_signature=OTHER.sign(contract.message()))

    with pytest.raises(InvalidRecord, match="not signed by both"):
        records.validate(records.encode(signed_review(OTHER, forged)), NOW)


def test_a_contract_with_changed_terms_no_longer_verifies() -> None:
    contract = agreed_contract()
    cheaper = replace(contract, terms=replace(contract.terms, price=1))

    with pytest.raises(InvalidRecord, match="not signed by both"):
        records.validate(records.encode(signed_review(OTHER, cheaper)), NOW)


def test_a_reviewer_who_is_not_a_party_is_rejected() -> None:
    fields = signed_review().fields()
    fields["reviewer"] = THIRD.public_key

    with pytest.raises(InvalidRecord, match=r"review\.reviewer: is not a party"):
        records.validate(raw_record(fields, THIRD), NOW)


def test_a_review_about_anyone_but_the_other_party_is_rejected() -> None:
    for subject in (OTHER.public_key, THIRD.public_key):
        fields = {**signed_review().fields(), "subject": subject}
        with pytest.raises(InvalidRecord, match=r"review\.subject"):
            records.validate(raw_record(fields, OTHER), NOW)


def test_a_contract_agreed_after_its_review_was_written_is_rejected() -> None:
    # Both parties colluding can sign any time; not one later than the review.
    late = agreed_contract(when=NOW + 86400)

    with pytest.raises(InvalidRecord, match="agreed after the review"):
        records.validate(records.encode(signed_review(OTHER, late)), NOW + 86400)


def test_a_contract_note_with_terminal_controls_is_rejected() -> None:
    contract = agreed_contract()
    sneaky = replace(contract, terms=replace(contract.terms, note="ok\x1b[2J\u202e"))

    with pytest.raises(InvalidRecord, match="control characters"):
        records.validate(records.encode(signed_review(OTHER, sneaky)), NOW)


def test_a_review_signed_by_someone_else_than_its_reviewer_is_rejected() -> None:
    with pytest.raises(InvalidRecord, match="signature does not verify"):
        records.validate(raw_record(signed_review().fields(), THIRD), NOW)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("stars", 0, "between 1 and 5"),
        ("stars", 6, "between 1 and 5"),
        ("text", "x" * 1001, "longer than 1000"),
        ("text", "a\x1b[2Jb", "control characters"),
    ],
)
def test_stars_and_text_are_bounded(field: str, value: object, reason: str) -> None:
    fields = {**signed_review().fields(), field: value}

    with pytest.raises(InvalidRecord, match=reason):
        records.validate(raw_record(fields, OTHER), NOW)


def test_bulk_paths_check_the_contract_signatures_too(store: ListingStore) -> None:
    contract = agreed_contract()
    forged = signed_review(OTHER, replace(contract, acceptor_signature=b"\x00" * 64))
    good = signed_review(SELLER, contract)

    report = ingest(store, [records.encode(forged), records.encode(good)], NOW)
    assert (report.added, [position for position, _ in report.rejected]) == (1, [1])

    batch = [(records.sync_key(r), 1, records.encode(r)) for r in (forged, good)]
    accepted, rejected, _ = _check(batch, NOW)
    assert (accepted, rejected) == ([good], 1)


# -- one review per party per trade ---------------------------------------------------


def test_a_duplicate_review_is_not_news_and_a_higher_seq_replaces(store: ListingStore) -> None:
    first = signed_review(OTHER, stars=2)

    assert store.put(first) is Outcome.ADDED
    assert store.put(first) is Outcome.STALE
    assert store.put(signed_review(OTHER, stars=5)) is Outcome.STALE  # same seq
    assert store.reviews.about(SELLER.public_key) == [first]

    second = signed_review(OTHER, stars=4, seq=2, text="Akhirnya sampai.")
    assert store.put(second) is Outcome.UPDATED
    assert store.reviews.about(SELLER.public_key) == [second]
    assert store.reviews.by(OTHER.public_key) == [second]
    assert store.sync_record(records.sync_key(second), NOW) == records.encode(second)


def test_both_parties_reviews_of_one_trade_are_both_kept(store: ListingStore) -> None:
    contract = agreed_contract()
    store.put_many([signed_review(OTHER, contract, stars=5), signed_review(SELLER, contract)])

    assert [r.stars for r in store.reviews.about(SELLER.public_key)] == [5]
    assert len(store.reviews.about(OTHER.public_key)) == 1
    dealings = store.reviews.dealings(OTHER.public_key)
    assert [(d.role, d.received, d.given) for d in dealings] == [("buyer", 5, 5)]


def test_one_trade_id_used_with_two_sellers_makes_two_contracts_and_two_reviews(
    store: ListingStore,
) -> None:
    # The buyer chooses the trade id; reusing it must not let one review stand in
    # for, or replace, the other.
    first = signed_review(OTHER, agreed_contract(OTHER, SELLER, trade=trade_id(7)), stars=1)
    second = signed_review(OTHER, agreed_contract(OTHER, THIRD, trade=trade_id(7)), stars=5)
    store.put_many([first, second])

    assert store.reviews.about(SELLER.public_key) == [first]
    assert store.reviews.about(THIRD.public_key) == [second]
    assert store.reviews.counterparties(OTHER.public_key) == 2


# -- reputation from a known set of reviews ---------------------------------------------


def test_reputation_figures_from_a_known_set_of_reviews(store: ListingStore) -> None:
    seller, regular, newcomer, repeat = key(10), key(11), key(12), key(13)
    reviews = []
    day = 86400
    # The regular buyer has traded with three other sellers: a full vote.
    for n, other in enumerate((key(20), key(21), key(22))):
        contract = agreed_contract(regular, other, trade=trade_id(100 + n), when=NOW - 50 * day)
        reviews.append(signed_review(regular, contract, stars=4))
    contract = agreed_contract(regular, seller, trade=trade_id(1), when=NOW - 30 * day)
    reviews.append(signed_review(regular, contract, stars=5))
    reviews.append(signed_review(seller, contract, stars=5))  # the seller reviews back
    # A newcomer with no other history: a quarter vote.
    contract = agreed_contract(newcomer, seller, trade=trade_id(2), when=NOW - 20 * day)
    reviews.append(signed_review(newcomer, contract, stars=1))
    # One buyer, two trades: one voice, the mean of its stars.
    for n, stars in ((3, 5), (4, 3)):
        contract = agreed_contract(repeat, seller, trade=trade_id(n), when=NOW - 10 * day)
        reviews.append(signed_review(repeat, contract, stars=stars))
    # The seller also bought once, and was not reviewed for it.
    contract = agreed_contract(seller, key(23), trade=trade_id(5), when=NOW - 40 * day)
    reviews.append(signed_review(seller, contract, stars=4))
    store.put_many(reviews)

    got = Ratings(store, store.get_profile).of(seller.public_key)

    assert got.reviews == 4
    assert got.mean_stars == pytest.approx((5 + 1 + 5 + 3) / 4)
    assert got.counterparties == 4  # regular, newcomer, repeat, key(23)
    assert (got.trades_as_seller, got.trades_as_buyer) == (4, 1)
    assert got.first_trade == NOW - 40 * day
    weights = {5: reviewer_weight(3), 1: reviewer_weight(0), 4: reviewer_weight(0)}
    assert weights == {5: 1.0, 1: 0.25, 4: 0.25}
    expected = (PRIOR_STARS * PRIOR_WEIGHT + 1.0 * 5 + 0.25 * 1 + 0.25 * 4) / (
        PRIOR_WEIGHT + 1.0 + 0.25 + 0.25
    )
    assert got.rating == pytest.approx(expected)


def test_a_hundred_trades_with_one_sock_puppet_count_as_one_weak_voice(
    store: ListingStore,
) -> None:
    seller, puppet = key(30), key(31)
    store.put_many(
        [
            signed_review(puppet, agreed_contract(puppet, seller, trade=trade_id(n)), stars=5)
            for n in range(100)
        ]
    )

    got = Ratings(store, store.get_profile).of(seller.public_key)

    assert (got.reviews, got.counterparties, got.trades_as_seller) == (100, 1, 100)
    # One quarter vote of 5 stars against the prior: barely above 3.
    assert got.rating == pytest.approx((3 * 2 + 0.25 * 5) / 2.25)


def test_without_reviews_there_is_no_rating(store: ListingStore) -> None:
    got = Ratings(store, store.get_profile).of(THIRD.public_key)

    assert (got.reviews, got.rating, got.mean_stars, got.first_trade) == (0, None, None, None)


# -- search by rating -------------------------------------------------------------------


def test_search_sorts_by_rating_and_filters_by_a_minimum(store: ListingStore) -> None:
    good, poor, unrated = key(40), key(41), key(42)
    listings = {
        s: signed_listing(s, title=f"Sepeda {n}") for n, s in enumerate((good, poor, unrated))
    }
    store.put_many(list(listings.values()))
    for n, (seller, stars) in enumerate(((good, 5), (poor, 1))):
        buyer = key(50 + n)
        contract = agreed_contract(buyer, seller, trade=trade_id(200 + n))
        store.put(signed_review(buyer, contract, stars=stars))
    ratings = Ratings(store, store.get_profile)
    assert [k for k, _ in ratings.ranked()] == [good.public_key, poor.public_key]

    def titles(floor: float | None = None, **query: object) -> list[str]:
        ranked, below = ratings.standing(floor)
        only = None if floor is None else frozenset(ranked + below)
        q = Query(text="sepeda", ranked=ranked, below=below, only_sellers=only, **query)  # type: ignore[arg-type]
        return [item.title for item in store.search(q, NOW).listings]

    # A 1-star seller ranks below one nobody has reviewed yet.
    assert titles(sort="rating") == ["Sepeda 0", "Sepeda 2", "Sepeda 1"]
    assert titles(sort="rating", limit=1, offset=1) == ["Sepeda 2"]
    assert titles(sort="rating", limit=2, offset=2) == ["Sepeda 1"]
    assert titles(3.1) == ["Sepeda 0"]  # 5 stars from a newcomer: 3.22
    assert titles(1.0, sort="rating") == ["Sepeda 0", "Sepeda 1"]
    assert titles(5.0) == []


# -- the DHT bundle -------------------------------------------------------------------


def test_a_review_bundle_holds_valid_reviews_about_its_key_only() -> None:
    reviews = [
        signed_review(key(60 + n), agreed_contract(key(60 + n), SELLER, trade=trade_id(n)))
        for n in range(3)
    ]
    bundle = pack_bundle([*reviews, replace(reviews[0], encoded=b"")])  # a duplicate, merged
    validator = ReviewsValidator(lambda: NOW)

    assert sorted(validator.check(reviews_key(SELLER.public_key), bundle), key=lambda r: r.key) == (
        sorted(reviews, key=lambda r: r.key)
    )
    with pytest.raises(InvalidRecord, match="not about this key"):
        validator.validate(reviews_key(OTHER.public_key), bundle)
    about_other = signed_review(SELLER)  # SELLER reviewing OTHER
    with pytest.raises(InvalidRecord):
        unpack_bundle(pack_bundle([*reviews, about_other]), SELLER.public_key, NOW)
    bad = replace(agreed_contract(), acceptor_signature=b"\x01" * 64)
    with pytest.raises(InvalidRecord, match="not signed by both"):
        validator.validate(reviews_key(SELLER.public_key), pack_bundle([signed_review(OTHER, bad)]))
    bigger = pack_bundle(reviews)
    smaller = pack_bundle(reviews[:2])
    assert validator.select("k", [smaller, bigger]) == 1
    assert validator.select("k", [bigger, smaller]) == 0


def test_a_bundle_keeps_the_newest_reviews_up_to_its_cap() -> None:
    reviews = [
        signed_review(key(70), agreed_contract(key(70), SELLER, trade=trade_id(n)), created=NOW - n)
        for n in range(MAX_BUNDLE + 5)
    ]

    kept = unpack_bundle(pack_bundle(reviews), SELLER.public_key, NOW)

    assert len(kept) == MAX_BUNDLE
    assert min(r.created for r in kept) == NOW - MAX_BUNDLE + 1


def test_of_two_full_bundles_the_one_with_the_newest_review_wins() -> None:
    old = [
        signed_review(key(80 + n), agreed_contract(key(80 + n), SELLER, trade=trade_id(n)))
        for n in range(2)
    ]
    newer = signed_review(
        key(90), agreed_contract(key(90), SELLER, trade=trade_id(9)), created=NOW + 60
    )
    validator = ReviewsValidator(lambda: NOW + 60)
    merged = pack_bundle([old[0], newer])

    assert validator.select("k", [pack_bundle(old), merged]) == 1
    assert validator.select("k", [merged, pack_bundle(old)]) == 0
    assert validator.select("k", [b"\xc1", merged]) == 1  # garbage never wins
