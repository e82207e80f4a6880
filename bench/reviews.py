"""Reviews and reputation: what they add to validation and to search.

One store (a real LevelDB) holds the search dataset's listings (200 sellers) and
``sizes.reviews`` reviews: buyers, each with a few purchases, review sellers,
every review embedding a contract both parties signed. Measured in one process:

* **validation** of one review (its signature and the contract's two) against
  one listing's, on the same cores;
* **rating search**: ``sort="rating"`` one-word searches against the same words
  sorted newest (the same-run baseline), the ranking built as the node builds
  it (cached until the store changes: the first search after a change pays for
  it, reported apart);
* **sellers beside a page**: the profile and reputation of a page's 20 sellers,
  which ``search`` now prints beside each hit.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench.config import Sizes
from bench.data import dataset, sellers
from bench.report import table
from bench.results import Row, Section, verdict
from bench.stats import count, ms, percentile
from p2pmarket import records
from p2pmarket.crypto.signing import Signer
from p2pmarket.ingest import ingest
from p2pmarket.ratings import Ratings
from p2pmarket.records import Review
from p2pmarket.store import ListingStore, Query
from p2pmarket.trade import Terms, make_move, make_offer, resolve

SEARCH_TARGET: Final = 0.050  # p95 of a rating-sorted search at the largest size
SELLERS_TARGET: Final = (
    0.010  # p95 of 20 sellers' profile and reputation: small beside a cold CLI search
)
PURCHASES: Final = 5  # each buyer reviews this many sellers


def _review(buyer: Signer, seller: Signer, n: int, stars: int, now: int) -> bytes:
    trade = hashlib.blake2b(buyer.public_key + n.to_bytes(4, "big"), digest_size=16).digest()
    terms = Terms(b"\x01" * 16, 1, 100_000_00, "IDR", 1, "", b"")
    offer = make_offer(buyer, seller.public_key, terms, now - 86400, trade)
    open_ = resolve([offer], trade, now)
    assert open_ is not None
    agreed = resolve([offer, make_move(seller, open_, "accept", 1, now - 86400)], trade, now)
    assert agreed is not None and agreed.contract is not None
    review = Review(buyer.public_key, seller.public_key, 1, stars, "Bagus.", agreed.contract, now)
    return records.encode(records.sign(review, buyer.sign))


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    found = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        found.append(time.perf_counter() - t0)
    return found


def run(sizes: Sizes, data_dir: Path) -> Section:
    listings = sizes.search[0]
    ds = dataset(listings, sizes.seed, data_dir)
    now = int(time.time())
    rng = random.Random(sizes.seed)
    shops = sellers(sizes.seed)
    buyers = [
        Signer(hashlib.sha256(f"bench-buyer:{i}".encode()).digest())
        for i in range(max(1, sizes.reviews // PURCHASES))
    ]
    made = [
        _review(buyer, rng.choice(shops), n, rng.choice((3, 4, 4, 5, 5, 5)), now)
        for buyer in buyers
        for n in range(PURCHASES)
    ]

    home = data_dir / f"reviews-{ds.key}"
    shutil.rmtree(home, ignore_errors=True)
    with ListingStore(home) as store:
        ingest(store, ds.raw(), now)
        reported = ingest(store, made, now)
        assert reported.added == len(made), reported.rejected[:3]

        listing = next(iter(ds.raw()))
        validate_review = _timed(lambda: records.validate(made[0], now), 300)
        validate_listing = _timed(lambda: records.validate(listing, now), 300)

        ratings = Ratings(store, store.get_profile)
        t0 = time.perf_counter()
        ranked = tuple(key for key, _ in ratings.ranked())
        first_ranking = time.perf_counter() - t0
        words = [listing.title.split()[0] for listing in ds.listings(now, every=97)][:200]

        def search(word: str, sort: str) -> list[object]:
            # As the node does: the ranking is read (cached until a review arrives).
            order = tuple(key for key, _ in ratings.ranked()) if sort == "rating" else ()
            query = Query(text=word, sort=sort, ranked=order)  # type: ignore[arg-type]
            return store.search(query, now).listings  # type: ignore[return-value]

        for word in words[:20]:  # warm the OS cache alike for both orders
            search(word, "newest")
            search(word, "rating")
        newest, rating = [], []
        for word in words:
            newest += _timed(lambda w=word: search(w, "newest"), 1)  # type: ignore[misc]
            rating += _timed(lambda w=word: search(w, "rating"), 1)  # type: ignore[misc]
        # The worst case: a word no listing has walks every rated seller, then the rest.
        nothing = _timed(lambda: search("zzqxv", "rating"), 50)
        page = [x.seller for x in store.search(Query(limit=20), now).listings]
        # Cold, as in a CLI process: a fresh Ratings has no reputation cached.
        beside = _timed(lambda: Ratings(store, store.get_profile).sellers(page), 200)

    shutil.rmtree(home, ignore_errors=True)
    label = f"{count(listings)} listings, {count(len(made))} reviews"
    p95 = percentile(rating, 95)
    beside95 = percentile(beside, 95)
    section = Section("Reviews and reputation")
    section.rows += [
        Row(
            f"validate one review (3 signatures), {label}",
            f"p50 {ms(percentile(validate_review, 50))}",
            f"one listing: p50 {ms(percentile(validate_listing, 50))}",
            "info",
            "info",
        ),
        Row(
            f"search --sort rating, one word, p95, {label}",
            ms(p95),
            f"sort newest: {ms(percentile(newest, 95))}",
            f"≤ {ms(SEARCH_TARGET)}",
            verdict(p95 <= SEARCH_TARGET),
        ),
        Row(
            f"20 sellers' profile + reputation beside a page, p95, {label}",
            ms(beside95),
            "-",
            f"≤ {ms(SELLERS_TARGET)}",
            verdict(beside95 <= SELLERS_TARGET),
        ),
    ]
    section.details.append(
        table(
            ["figure", "value"],
            [
                ["rated sellers", str(len(ranked))],
                [
                    "first ranking after a change (the cost of a cold rating search)",
                    ms(first_ranking),
                ],
                ["rating search p50 / p95", f"{ms(percentile(rating, 50))} / {ms(p95)}"],
                [
                    "newest search p50 / p95",
                    f"{ms(percentile(newest, 50))} / {ms(percentile(newest, 95))}",
                ],
                [
                    "rating search, a word no listing has (every rated seller, then the rest), p95",
                    ms(percentile(nothing, 95)),
                ],
            ],
        )
    )
    return section
