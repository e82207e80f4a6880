"""Search over the listing cache: what matches, in which order, page by page.

The last part checks the indexes against the definition itself: for random queries
over a few hundred generated listings, search returns exactly what a brute-force
filter over every listing returns, in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from factories import NOW, OTHER, SELLER, THIRD, signed_listing, signed_tombstone, updated
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmarket.records import DAY, Listing
from p2pmarket.store import ListingStore, Query, search
from p2pmarket.text import tokens


def _search(store: ListingStore, text: str = "", **filters: Any) -> list[str]:
    filters.setdefault("limit", 100)
    return [item.title for item in store.search(Query(text=text, **filters), NOW).listings]


# The cap on merged prefix completions, lowered here so that small corpora reach
# the per-candidate path; the tests are about the two paths, not the number.
MAX_PREFIX_TERMS = 64


@pytest.fixture(autouse=True)
def _small_prefix_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "MAX_PREFIX_TERMS", MAX_PREFIX_TERMS)


@pytest.fixture
def bikes(store: ListingStore) -> ListingStore:
    """A small cache: three listings, newest first in the order written here."""
    store.put_many(
        [
            signed_listing(
                title="Sepeda lipat merah",
                tags=("lipat",),
                category="vehicles/bicycles",
                location="Sleman, Yogyakarta",
                price=1_500_000_00,
                created=NOW - 10,
            ),
            signed_listing(
                title="Sepeda gunung biru",
                tags=("mtb",),
                category="vehicles/bicycles",
                location="Bantul",
                price=3_000_000_00,
                created=NOW - 20,
            ),
            signed_listing(
                title="Kursi rotan merah",
                tags=(),
                category="home-garden/furniture",
                location="Sleman",
                price=500_000_00,
                created=NOW - 30,
            ),
        ]
    )
    return store


# -- words ---------------------------------------------------------------------------


def test_an_empty_query_returns_every_live_listing_newest_first(bikes: ListingStore) -> None:
    assert _search(bikes) == ["Sepeda lipat merah", "Sepeda gunung biru", "Kursi rotan merah"]


def test_a_query_of_punctuation_only_is_an_empty_query(bikes: ListingStore) -> None:
    assert _search(bikes, " ... !? ") == _search(bikes)


@pytest.mark.parametrize("query", ["SEPEDA", "Sépéda", "SÉPÉDA", "sepeda"])
def test_words_match_whatever_their_case_and_accents(bikes: ListingStore, query: str) -> None:
    assert _search(bikes, query) == ["Sepeda lipat merah", "Sepeda gunung biru"]


def test_an_accented_listing_is_found_by_plain_words(store: ListingStore) -> None:
    store.put(signed_listing(title="Café Crème"))

    assert _search(store, "cafe creme") == ["Café Crème"]


def test_every_word_must_match(bikes: ListingStore) -> None:
    assert _search(bikes, "sepeda merah") == ["Sepeda lipat merah"]
    assert _search(bikes, "merah") == ["Sepeda lipat merah", "Kursi rotan merah"]
    assert _search(bikes, "sepeda rotan") == []


def test_the_last_word_also_matches_as_a_prefix(bikes: ListingStore) -> None:
    assert _search(bikes, "sepe") == ["Sepeda lipat merah", "Sepeda gunung biru"]
    assert _search(bikes, "merah sep") == ["Sepeda lipat merah"]
    assert _search(bikes, "s") == ["Sepeda lipat merah", "Sepeda gunung biru", "Kursi rotan merah"]


def test_a_word_before_the_last_must_match_whole(bikes: ListingStore) -> None:
    assert _search(bikes, "sepe merah") == []
    assert _search(bikes, "sepeda merah") == ["Sepeda lipat merah"]


def test_a_word_no_listing_has_finds_nothing(bikes: ListingStore) -> None:
    assert _search(bikes, "mobil") == []
    assert _search(bikes, "sepeda mobil") == []


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("mtb", ["Sepeda gunung biru"]),  # a tag
        ("bicycles", ["Sepeda lipat merah", "Sepeda gunung biru"]),  # the category
        ("furniture garden", ["Kursi rotan merah"]),  # category words split at / and -
        ("bantul", ["Sepeda gunung biru"]),  # the location
        ("yogyakarta", ["Sepeda lipat merah"]),
    ],
)
def test_tags_category_and_location_words_are_searched(
    bikes: ListingStore, query: str, titles: list[str]
) -> None:
    assert _search(bikes, query) == titles


def test_a_prefix_with_more_than_64_completions_still_finds_exactly_its_matches(
    store: ListingStore,
) -> None:
    # 100 distinct words starting with "kode": too many to merge, so each
    # candidate is checked against the prefix instead.
    count = MAX_PREFIX_TERMS + 36
    store.put_many(
        signed_listing(
            title=f"Barang kode{i:03d}", created=NOW - i, tags=("biru",) if i % 2 else ()
        )
        for i in range(count)
    )
    store.put_many(signed_listing(title=f"Kopi {i}", created=NOW - 1000 - i) for i in range(5))

    assert _search(store, "kode", limit=1000) == [f"Barang kode{i:03d}" for i in range(count)]
    assert _search(store, "ko", limit=1000) == (
        [f"Barang kode{i:03d}" for i in range(count)] + [f"Kopi {i}" for i in range(5)]
    )
    assert _search(store, "biru kod", limit=1000) == [
        f"Barang kode{i:03d}" for i in range(count) if i % 2
    ]
    assert _search(store, "k", limit=10, offset=95) == [
        *(f"Barang kode{i:03d}" for i in range(95, count)),
        *(f"Kopi {i}" for i in range(5)),
    ]


# -- filters -----------------------------------------------------------------------


def test_kind_filters_offers_from_requests(store: ListingStore) -> None:
    store.put_many(
        [
            signed_listing(title="Jual sepeda", kind="sell", created=NOW - 1),
            signed_listing(title="Cari sepeda", kind="wanted", created=NOW - 2),
        ]
    )

    assert _search(store, "sepeda", kind="wanted") == ["Cari sepeda"]
    assert _search(store, kind="sell") == ["Jual sepeda"]


def test_a_parent_category_matches_its_subcategories(bikes: ListingStore) -> None:
    assert _search(bikes, category="vehicles") == ["Sepeda lipat merah", "Sepeda gunung biru"]
    assert _search(bikes, category="vehicles/bicycles") == [
        "Sepeda lipat merah",
        "Sepeda gunung biru",
    ]
    assert _search(bikes, category="home-garden") == ["Kursi rotan merah"]
    assert _search(bikes, category="vehicles/cars") == []
    assert _search(bikes, category="bicycles") == []


def test_currency_filters_prices_in_other_currencies_out(store: ListingStore) -> None:
    store.put_many(
        [
            signed_listing(title="Dalam rupiah", currency="IDR", created=NOW - 1),
            signed_listing(title="In dollars", currency="USD", created=NOW - 2),
        ]
    )

    assert _search(store, currency="USD") == ["In dollars"]
    assert _search(store, currency="EUR") == []


def test_min_and_max_price_are_inclusive(store: ListingStore) -> None:
    store.put_many(
        signed_listing(title=f"Harga {p}", price=p, created=NOW - p) for p in (100, 200, 300)
    )

    assert _search(store, min_price=200) == ["Harga 200", "Harga 300"]
    assert _search(store, max_price=200) == ["Harga 100", "Harga 200"]
    assert _search(store, min_price=200, max_price=200) == ["Harga 200"]
    assert _search(store, min_price=201, max_price=299) == []


def test_location_words_must_all_be_in_the_location(bikes: ListingStore) -> None:
    assert _search(bikes, location="sleman") == ["Sepeda lipat merah", "Kursi rotan merah"]
    assert _search(bikes, location="SLEMAN yogyakarta") == ["Sepeda lipat merah"]
    assert _search(bikes, location="Sleman Bantul") == []


def test_location_is_not_matched_by_title_words(store: ListingStore) -> None:
    store.put(signed_listing(title="Sepeda dari Sleman", location="Bantul"))

    assert _search(store, location="sleman") == []
    assert _search(store, "sleman") == ["Sepeda dari Sleman"]


def test_seller_filter_returns_only_that_sellers_listings(store: ListingStore) -> None:
    store.put_many(
        [
            signed_listing(SELLER, title="Punya saya", created=NOW - 1),
            signed_listing(OTHER, title="Punya dia", created=NOW - 2),
        ]
    )

    assert _search(store, seller=OTHER.public_key) == ["Punya dia"]
    assert _search(store, seller=THIRD.public_key) == []


def test_filters_combine_with_words(bikes: ListingStore) -> None:
    assert _search(bikes, "merah", category="vehicles", location="sleman") == ["Sepeda lipat merah"]
    assert _search(bikes, "merah", max_price=1_000_000_00) == ["Kursi rotan merah"]


def test_withdrawn_and_expired_listings_are_not_found(store: ListingStore) -> None:
    withdrawn = signed_listing(title="Sepeda ditarik", created=NOW - 1)
    expired = signed_listing(title="Sepeda kadaluarsa", created=NOW - 2 * DAY, expires=NOW)
    store.put_many([withdrawn, signed_tombstone(withdrawn), expired])
    store.put(signed_listing(title="Sepeda ada", created=NOW - 3))

    assert _search(store, "sepeda") == ["Sepeda ada"]
    assert _search(store, "sepeda", sort="price") == ["Sepeda ada"]


# -- order and pages ------------------------------------------------------------------


@pytest.fixture
def priced(store: ListingStore) -> ListingStore:
    store.put_many(
        signed_listing(title=title, price=price, created=NOW - age)
        for title, price, age in [
            ("A 300 newest", 300, 1),
            ("B 100", 100, 2),
            ("C 300 older", 300, 3),
            ("D 200", 200, 4),
        ]
    )
    return store


def test_newest_first_is_the_default_order(priced: ListingStore) -> None:
    assert _search(priced) == ["A 300 newest", "B 100", "C 300 older", "D 200"]


def test_price_sorts_cheapest_first_and_breaks_ties_newest_first(priced: ListingStore) -> None:
    assert _search(priced, sort="price") == ["B 100", "D 200", "A 300 newest", "C 300 older"]


def test_minus_price_sorts_dearest_first_and_breaks_ties_newest_first(
    priced: ListingStore,
) -> None:
    assert _search(priced, sort="-price") == ["A 300 newest", "C 300 older", "D 200", "B 100"]


def test_limit_and_offset_page_through_results_and_more_says_if_a_page_follows(
    priced: ListingStore,
) -> None:
    first = priced.search(Query(limit=3), NOW)
    second = priced.search(Query(limit=3, offset=3), NOW)
    exact = priced.search(Query(limit=4), NOW)
    past = priced.search(Query(limit=3, offset=10), NOW)

    assert [i.title for i in first.listings] == ["A 300 newest", "B 100", "C 300 older"]
    assert first.more
    assert [i.title for i in second.listings] == ["D 200"]
    assert not second.more
    assert len(exact.listings) == 4
    assert not exact.more
    assert past.listings == []
    assert not past.more


def test_a_price_sorted_page_has_the_same_order_as_the_whole(priced: ListingStore) -> None:
    whole = _search(priced, sort="price")

    pages = [_search(priced, sort="price", limit=1, offset=i) for i in range(4)]

    assert [title for page in pages for title in page] == whole


def test_an_updated_listing_is_found_once_at_its_new_place(store: ListingStore) -> None:
    old = signed_listing(title="Sepeda", price=100, created=NOW - 100)
    store.put_many([old, signed_listing(title="Sepeda lain", price=200, created=NOW - 50)])
    store.put(updated(old, price=300, created=NOW - 1))

    assert _search(store, "sepeda") == ["Sepeda", "Sepeda lain"]
    assert _search(store, "sepeda", sort="price") == ["Sepeda lain", "Sepeda"]


# -- the indexes agree with the definition -----------------------------------------------

# What search looks at, spelled out independently of the index code. The text index
# covers the title, tags, category and location but not the description (see the
# docstring of p2pmarket/store/terms.py).


def _searchable_words(listing: Listing) -> set[str]:
    return set(tokens(" ".join([listing.title, *listing.tags, listing.category, listing.location])))


def _matches(listing: Listing, query: Query, now: int) -> bool:
    words = tokens(query.text)
    vocabulary = _searchable_words(listing)
    top = listing.category.split("/")[0]
    low = 0 if query.min_price is None else query.min_price
    high = float("inf") if query.max_price is None else query.max_price
    return (
        listing.expires > now
        and all(word in vocabulary for word in words[:-1])
        and (not words or any(term.startswith(words[-1]) for term in vocabulary))
        and query.kind in (None, listing.kind)
        and query.currency in (None, listing.currency)
        and query.category in (None, listing.category, top)
        and query.seller in (None, listing.seller)
        and set(tokens(query.location or "")) <= set(tokens(listing.location))
        and low <= listing.price <= high
    )


def _order(query: Query) -> Any:
    """Newest first; price sorts group by currency and break ties newest first."""

    def newest(listing: Listing) -> tuple[int, bytes]:
        return (-listing.created, listing.id)

    if query.sort == "newest":
        return newest
    sign = -1 if query.sort == "-price" else 1
    return lambda item: (item.currency, sign * item.price, *newest(item))


def brute_force(current: Sequence[Listing], query: Query, now: int) -> tuple[list[bytes], bool]:
    hits = sorted((item for item in current if _matches(item, query, now)), key=_order(query))
    end = query.offset + query.limit
    return [item.id for item in hits[query.offset : end]], len(hits) > end


_VOCABULARY = (
    "sepeda sepatu sepak kursi kurir meja merah biru lipat gunung anak bekas baru murah "
    "rotan kayu lampu laptop lama iphone hp motor mobil kopi"
).split()
_CATEGORIES = (
    "vehicles",
    "vehicles/bicycles",
    "vehicles/cars",
    "electronics/phones",
    "electronics",
    "home-garden/furniture",
)
_LOCATIONS = ("Sleman", "Yogyakarta", "Bantul", "Sleman, Yogyakarta", "Kota Gede", "")
_CURRENCIES = ("IDR", "USD", "JPY")
_PRICES = (0, 100, 500, 1000, 1500, 15000)
_SELLERS = (SELLER, OTHER, THIRD)
# Enough distinct "kode…" words that the prefix "k"/"ko"/"kode" takes the
# per-candidate path, next to prefixes that are merged from the index.
_CODES = [f"kode{i:03d}" for i in range(MAX_PREFIX_TERMS + 16)]


def _random_listing(rng: random.Random, index: int) -> Listing:
    words = rng.sample(_VOCABULARY, rng.randint(1, 4))
    if index < 2 * len(_CODES):  # every code twice, so most survive updates and withdrawals
        words.append(_CODES[index % len(_CODES)])
    if rng.random() < 0.2:
        words[0] = words[0].upper() if rng.random() < 0.5 else words[0].replace("e", "é")
    created = NOW - rng.choice([rng.randint(0, 5 * DAY), 3600, 7200])  # some equal times
    return signed_listing(
        rng.choice(_SELLERS),
        title=" ".join(words),
        description=" ".join(rng.sample(_VOCABULARY, 3)),  # never searched
        tags=tuple(rng.sample(["lipat", "mtb", "antik", "promo"], rng.randint(0, 2))),
        kind=rng.choice(["sell", "sell", "wanted"]),
        category=rng.choice(_CATEGORIES),
        location=rng.choice(_LOCATIONS),
        currency=rng.choice(_CURRENCIES),
        price=rng.choice([*_PRICES, rng.randint(0, 10**6)]),
        created=created,
        # About one in six has expired by NOW but is not collected yet.
        expires=created + rng.choice([DAY, 2 * DAY, 10 * DAY, 30 * DAY, 60 * DAY]),
    )


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ListingStore, list[Listing]]]:
    """~300 listings written through the store's own rules, and the current ones among them."""
    rng = random.Random(20250615)
    state: dict[bytes, Listing | None] = {}
    path: Path = tmp_path_factory.mktemp("corpus") / "store"
    with ListingStore(path) as store:
        batch: list[Any] = []
        for index in range(300):
            listing = _random_listing(rng, index)
            batch.append(listing)
            state[listing.id] = listing
            roll = rng.random()
            if roll < 0.1:  # a newer version with other words, price and time
                newer = updated(
                    listing,
                    next(s for s in _SELLERS if s.public_key == listing.seller),
                    title=" ".join(rng.sample(_VOCABULARY, 2)),
                    price=rng.choice(_PRICES),
                    created=min(NOW, listing.created + 60),
                )
                batch.append(newer)
                state[listing.id] = newer
            elif roll < 0.15:
                signer = next(s for s in _SELLERS if s.public_key == listing.seller)
                batch.append(signed_tombstone(listing, signer, created=listing.created + 1))
                state[listing.id] = None
            elif roll < 0.2:  # an older version arriving late changes nothing
                signer = next(s for s in _SELLERS if s.public_key == listing.seller)
                newer = updated(listing, signer, seq=3)
                batch.extend([newer, updated(listing, signer, title="late", seq=2)])
                state[listing.id] = newer
        store.put_many(batch)
        current = [item for item in state.values() if item is not None]
        yield store, current


def _query_words() -> st.SearchStrategy[str]:
    whole = st.sampled_from([*_VOCABULARY, *_CODES[:5], "lipat", "mtb", "bicycles", "sleman"])
    prefix = st.builds(lambda w, n: w[:n], whole, st.integers(1, 4))
    noise = st.sampled_from(["zzz", "SÉPÉDA", "Sepe", "garden", "k", "kode0"])
    return st.one_of(whole, prefix, noise)


queries = st.builds(
    Query,
    text=st.lists(_query_words(), max_size=3).map(" ".join),
    kind=st.sampled_from([None, "sell", "wanted"]),
    category=st.sampled_from([None, *_CATEGORIES, "home-garden", "toys"]),
    currency=st.sampled_from([None, *_CURRENCIES, "EUR"]),
    min_price=st.sampled_from([None, 0, 100, 1000, 50_000]),
    max_price=st.sampled_from([None, 0, 500, 1500, 500_000]),
    location=st.sampled_from([None, "sleman", "YOGYAKARTA", "kota gede", "gede", "!!"]),
    seller=st.sampled_from([None, *(s.public_key for s in _SELLERS)]),
    sort=st.sampled_from(["newest", "price", "-price"]),
    limit=st.integers(1, 40),
    offset=st.sampled_from([0, 0, 1, 5, 20, 100]),
)


def test_the_corpus_exercises_every_path(corpus: tuple[ListingStore, list[Listing]]) -> None:
    store, current = corpus
    expired = sum(item.expires <= NOW for item in current)
    codes = {t for item in current for t in _searchable_words(item) if t.startswith("kode")}

    assert 200 < len(current) < 300
    assert 10 < expired < len(current) // 2
    assert len(codes) > MAX_PREFIX_TERMS
    assert store.listing_count == len(current)


@settings(max_examples=300, deadline=None)
@given(query=queries)
def test_search_returns_what_a_brute_force_filter_returns_in_the_same_order(
    corpus: tuple[ListingStore, list[Listing]], query: Query
) -> None:
    store, current = corpus

    page = store.search(query, NOW)

    expected_ids, expected_more = brute_force(current, query, NOW)
    assert [item.id for item in page.listings] == expected_ids
    assert page.more == expected_more


@pytest.mark.parametrize("seed", range(5))
def test_every_query_shape_agrees_with_brute_force_on_a_seeded_sample(
    corpus: tuple[ListingStore, list[Listing]], seed: int
) -> None:
    # A fixed sample on top of hypothesis's: the same queries on every run.
    store, current = corpus
    rng = random.Random(seed)
    for _ in range(100):
        query = Query(
            text=" ".join(
                rng.choice(_VOCABULARY)[: rng.randint(1, 6)] for _ in range(rng.randint(0, 2))
            ),
            kind=rng.choice([None, "sell", "wanted"]),
            category=rng.choice([None, *_CATEGORIES]),
            currency=rng.choice([None, *_CURRENCIES]),
            min_price=rng.choice([None, 100]),
            max_price=rng.choice([None, 15000]),
            location=rng.choice([None, "sleman"]),
            seller=rng.choice([None, SELLER.public_key]),
            sort=rng.choice(["newest", "price", "-price"]),
            limit=rng.randint(1, 25),
            offset=rng.choice([0, 3, 25]),
        )
        page = store.search(query, NOW)
        assert ([i.id for i in page.listings], page.more) == brute_force(current, query, NOW), query


def test_an_unfiltered_query_pages_through_every_live_listing_exactly_once(
    corpus: tuple[ListingStore, list[Listing]],
) -> None:
    store, current = corpus
    for sort in ("newest", "price", "-price"):
        seen: list[bytes] = []
        offset = 0
        while True:
            page = store.search(Query(sort=sort, limit=37, offset=offset), NOW)  # type: ignore[arg-type]
            seen.extend(item.id for item in page.listings)
            if not page.more:
                break
            offset += 37
        assert sorted(seen) == sorted(item.id for item in current if item.expires > NOW), sort
        assert len(seen) == len(set(seen))


@settings(max_examples=200, deadline=None)
@given(query=queries.filter(lambda q: q.sort != "newest" and bool(q.text.strip())))
def test_a_price_sort_with_more_matches_than_fit_in_memory_walks_the_price_index(
    corpus: tuple[ListingStore, list[Listing]], query: Query
) -> None:
    store, current = corpus
    cap = search.MAX_SORTED_CANDIDATES
    try:
        search.MAX_SORTED_CANDIDATES = 2  # every query with 3+ matches takes the other path
        ids = [item.id for item in store.search(query, NOW).listings]
    finally:
        search.MAX_SORTED_CANDIDATES = cap
    assert ids == brute_force(current, query, NOW)[0]


def test_a_long_category_word_is_found_wherever_it_stands_in_the_query(
    store: ListingStore,
) -> None:
    category = "a" * 40
    store.put_many([signed_listing(title="Barang x", category=category)])
    assert _search(store, f"{category} x") == ["Barang x"]
    assert _search(store, f"x {category}") == ["Barang x"]
