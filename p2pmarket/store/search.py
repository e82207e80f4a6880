"""Search over the listing cache: the query planner.

Every index shares the 24-byte suffix ordering (newest first, see
:mod:`p2pmarket.store.layout`), so a query with several terms is answered by
intersecting their posting lists (:mod:`p2pmarket.store.postings`) in that order,
and "top 20 newest" stops after 20 matches. Filters the index cannot answer
(price, kind, currency, expiry) are checked on each match's summary.

The last word of the text is a prefix ("sepe" finds "sepeda"): it expands to the
distinct terms that start with it, merged into one cursor. A prefix so short that
it expands to very many terms is instead checked against each candidate's record.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Final, Literal

import plyvel

from p2pmarket import records
from p2pmarket.records import Kind, Listing
from p2pmarket.store import layout
from p2pmarket.store.postings import Postings, TermPostings, UnionPostings, intersect
from p2pmarket.store.terms import KIND_CODES, listing_terms
from p2pmarket.text import tokens

Sort = Literal["newest", "price", "-price", "rating"]
# A prefix that matches more distinct terms than this is checked per candidate.
MAX_PREFIX_TERMS: Final = 256
# Price sorts with words sort their matches in memory up to this many; past it they
# walk the price index instead, testing each listing against the terms.
MAX_SORTED_CANDIDATES: Final = 50_000


@dataclass(frozen=True, slots=True)
class Query:
    """What to look for. Prices are in minor units of ``currency``."""

    text: str = ""
    kind: Kind | None = None
    category: str | None = None
    currency: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    location: str | None = None
    seller: bytes | None = None
    sort: Sort = "newest"
    limit: int = 20
    offset: int = 0
    hide_sellers: frozenset[bytes] = frozenset()  # blocked by the user
    # The order of sort="rating": rated sellers at or above an unrated seller's
    # standing, best first; then unrated sellers; then the ``below`` ones.
    ranked: tuple[bytes, ...] = ()
    below: tuple[bytes, ...] = ()
    only_sellers: frozenset[bytes] | None = None  # e.g. those over a minimum rating


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results; ``more`` is True when a next page exists."""

    listings: list[Listing]
    more: bool


def _expand_prefix(db: plyvel.DB, prefix: str, cap: int) -> list[bytes] | None:
    """The term prefixes of every distinct term starting with ``prefix``; None past ``cap``."""
    start = layout.TERM + prefix.encode("utf-8")
    found: list[bytes] = []
    it = db.iterator(prefix=start, include_value=False)
    for key in it:
        end = key.index(b"\x00", 1)
        found.append(key[: end + 1])
        if len(found) > cap:
            return None
        it.seek(key[:end] + b"\x01")  # skip the rest of this term's postings
    return found


class Searcher:
    """Plans and runs a :class:`Query` against one store's indexes."""

    def __init__(self, db: plyvel.DB) -> None:
        self._db = db

    def search(self, query: Query, now: int) -> Page:
        want = query.offset + query.limit
        if query.sort == "rating":
            hits = self._rating_sorted(query, now, want + 1)
        else:
            hits = self._hits(query, now, want + 1)
        listings = []
        for sfx in hits[query.offset : want]:
            raw = self._db.get(layout.RECORD + layout.suffix_id(sfx))
            if raw is not None:
                record = records.load_trusted(raw)
                if isinstance(record, Listing):
                    listings.append(record)
        return Page(listings, more=len(hits) > want)

    def _hits(self, query: Query, now: int, count: int) -> list[bytes]:
        """The suffixes of the first ``count`` matches in the query's order."""
        plan = self._plan(query)
        if plan is None:
            return []
        cursors, check_prefix = plan
        check = _SummaryCheck(query, now)
        if query.sort in ("newest", "rating"):
            return [sfx for sfx, _ in islice(self._matches(cursors, check_prefix, check), count)]
        return self._price_sorted(query, cursors, check_prefix, check, count)

    def _rating_sorted(self, query: Query, now: int, count: int) -> list[bytes]:
        """Well-rated sellers' matches, best seller first (each seller's newest
        first); then, unless only some sellers may match, the unrated sellers',
        newest first; then the poorly rated sellers'."""
        hits: list[bytes] = []

        def take(sellers: tuple[bytes, ...]) -> None:
            for seller in sellers:
                if len(hits) >= count:
                    return
                if (query.seller is not None and seller != query.seller) or (
                    query.only_sellers is not None and seller not in query.only_sellers
                ):
                    continue
                one = replace(query, seller=seller, sort="newest", only_sellers=None)
                hits.extend(self._hits(one, now, count - len(hits)))

        take(query.ranked)
        if query.only_sellers is None and len(hits) < count:
            rated = frozenset(query.ranked) | frozenset(query.below)
            rest = replace(query, sort="newest", hide_sellers=query.hide_sellers | rated)
            hits += self._hits(rest, now, count - len(hits))
        take(query.below)
        return hits

    def _price_sorted(
        self,
        query: Query,
        cursors: list[Postings],
        check_prefix: str | None,
        check: _SummaryCheck,
        count: int,
    ) -> list[bytes]:
        """The first ``count`` matches in (currency, price, newest) order."""
        if not cursors and check_prefix is None:
            return list(islice(self._by_price(query, check), count))
        found = list(islice(self._matches(cursors, check_prefix, check), MAX_SORTED_CANDIDATES + 1))
        if len(found) <= MAX_SORTED_CANDIDATES:
            sign = -1 if query.sort == "-price" else 1
            ordered = heapq.nsmallest(count, found, key=lambda m: (m[1][1], sign * m[1][0], m[0]))
            return [sfx for sfx, _ in ordered]

        # Too many matches to sort in memory: walk the price index in order and
        # keep the listings that every term holds.
        def accept(sfx: bytes) -> bool:
            return all(c.contains(sfx) for c in cursors) and (
                check_prefix is None or self._has_prefix(sfx, check_prefix)
            )

        return list(islice(self._by_price(query, check, accept), count))

    def _plan(self, query: Query) -> tuple[list[Postings], str | None] | None:
        """The cursors to join and a prefix to check per candidate; None if nothing
        can match."""
        db = self._db
        words = tokens(query.text)
        terms: list[str] = list(dict.fromkeys(words[:-1]))
        if query.category:
            terms.append(f"#g:{query.category}")
        if query.seller:
            terms.append(f"#s:{query.seller.hex()}")
        if query.location:
            terms.extend(f"#l:{t}" for t in tokens(query.location))
        cursors: list[Postings] = [TermPostings(db, layout.term_prefix(t)) for t in terms]
        if query.only_sellers is not None:
            if not query.only_sellers:
                return None
            sellers = [
                TermPostings(db, layout.term_prefix(f"#s:{seller.hex()}"))
                for seller in sorted(query.only_sellers)
            ]
            cursors.append(sellers[0] if len(sellers) == 1 else UnionPostings(sellers))
        if not words:
            return cursors, None
        expansions = _expand_prefix(db, words[-1], MAX_PREFIX_TERMS)
        if expansions == []:
            return None
        if expansions is None:
            return cursors, words[-1]
        subs = [TermPostings(db, p) for p in expansions]
        cursors.append(subs[0] if len(subs) == 1 else UnionPostings(subs))
        return cursors, None

    def _matches(
        self, cursors: list[Postings], check_prefix: str | None, check: _SummaryCheck
    ) -> Iterator[tuple[bytes, tuple[int, str]]]:
        """(suffix, (price, currency)) of every live match, newest first."""
        db = self._db
        suffixes: Iterator[bytes]
        if cursors:
            suffixes = intersect(cursors)
        else:
            suffixes = (k[1:] for k in db.iterator(prefix=layout.TIME, include_value=False))
        for sfx in suffixes:
            raw = db.get(layout.TIME + sfx)
            found = check(raw) if raw is not None else None
            if found is None:
                continue
            if check_prefix is not None and not self._has_prefix(sfx, check_prefix):
                continue
            yield sfx, found

    def _by_price(
        self,
        query: Query,
        check: _SummaryCheck,
        accept: Callable[[bytes], bool] | None = None,
    ) -> Iterator[bytes]:
        """Suffixes in (currency, price) order straight from the price index, each
        passing the summary filters and ``accept`` (the terms, when there are any)."""
        db = self._db
        low = layout.u64(query.min_price or 0)
        high = layout.u64(query.max_price if query.max_price is not None else 2**64 - 1)
        currencies = [query.currency.encode("ascii")] if query.currency else self._currencies()
        for cur in currencies:
            keys = db.iterator(
                start=layout.PRICE + cur + low,
                stop=layout.PRICE + cur + high + b"\xff" * layout.SUFFIX_SIZE,
                reverse=query.sort == "-price",
                include_value=False,
            )
            if query.sort == "-price":
                keys = _newest_first_within_price(keys)
            for key in keys:
                sfx = key[-layout.SUFFIX_SIZE :]
                raw = db.get(layout.TIME + sfx)
                if raw is not None and check(raw) is not None and (accept is None or accept(sfx)):
                    yield sfx

    def _currencies(self) -> Iterator[bytes]:
        """The distinct currencies in the price index, ascending, one seek each."""
        it = self._db.iterator(prefix=layout.PRICE, include_value=False)
        for key in it:
            cur = key[1:4]
            yield cur
            it.seek(layout.PRICE + cur[:2] + bytes([cur[2] + 1]))

    def _has_prefix(self, sfx: bytes, prefix: str) -> bool:
        raw = self._db.get(layout.RECORD + layout.suffix_id(sfx))
        if raw is None:
            return False
        record = records.load_trusted(raw)
        return isinstance(record, Listing) and any(
            t.startswith(prefix) for t in listing_terms(record) if not t.startswith("#")
        )


class _SummaryCheck:
    """The filters answered from a listing's summary: expiry, price, kind, currency,
    and hidden sellers."""

    __slots__ = ("_currency", "_hidden", "_high", "_kind", "_low", "_now")

    def __init__(self, query: Query, now: int) -> None:
        self._hidden = frozenset(layout.seller_prefix(s) for s in query.hide_sellers)
        self._now = now
        self._low = query.min_price if query.min_price is not None else 0
        self._high = query.max_price if query.max_price is not None else 2**64
        self._kind = KIND_CODES[query.kind] if query.kind else None
        self._currency = query.currency.encode("ascii") if query.currency else None

    def __call__(self, raw: bytes) -> tuple[int, str] | None:
        """(price, currency) when the summary passes every filter, else None."""
        expires, price, kind, currency, seller = layout.SUMMARY.unpack(raw)
        if expires <= self._now or not self._low <= price <= self._high:
            return None
        if seller in self._hidden:
            return None
        if self._kind is not None and kind != self._kind:
            return None
        if self._currency is not None and currency != self._currency:
            return None
        return price, currency.decode("ascii")


def _newest_first_within_price(keys: Iterator[bytes]) -> Iterator[bytes]:
    """A reversed price scan yields equal prices oldest first; restore newest first,
    as every other order in search breaks ties."""
    group: list[bytes] = []
    for key in keys:
        if group and key[4:12] != group[0][4:12]:
            yield from reversed(group)
            group = []
        group.append(key)
    yield from reversed(group)
