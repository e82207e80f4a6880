"""The search workload: realistic queries drawn from the data they run against.

Words are picked from a sample of the dataset itself, so every query word exists
and the frequency bands mean something: *common* words are among the most
frequent terms (long posting lists), *medium* ones in the middle ranks, *rare* ones
occur a handful of times in the sample. Two-word queries take two words from one
listing's title (so they co-occur); prefix queries cut a title word to 3-5 letters.
Every query filters on an IDR price band and asks for the 20 newest matches.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Final, Literal

from bench.data import Dataset
from bench.semantics import field_text
from p2pmarket.records import Listing
from p2pmarket.text import tokens

Shape = Literal["one-word", "two-word", "prefix"]
SHAPES: Final[tuple[Shape, ...]] = ("one-word", "two-word", "prefix")
SAMPLE: Final = 20_000
LIMIT: Final = 20

# Price bands in rupiah, as buyers filter them; converted to minor units (x100).
_BANDS_RUPIAH: Final = (
    (10_000, 1_000_000),
    (100_000, 5_000_000),
    (1_000_000, 20_000_000),
    (5_000_000, 50_000_000),
)
BANDS: Final = tuple((low * 100, high * 100) for low, high in _BANDS_RUPIAH)
_COMMON_RANKS: Final = 40
_MEDIUM_RANKS: Final = (150, 1500)
_RARE_SAMPLE_DF: Final = (2, 6)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One query, in our form (``text``) and in FTS5's (:meth:`fts_match`)."""

    shape: Shape
    words: tuple[str, ...]
    min_price: int
    max_price: int
    band: str = ""  # the frequency band of a one-word query

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def fts_match(self, *, last_is_prefix: bool = True) -> str:
        """Words ANDed, the last one a prefix: our semantics in FTS5 syntax."""
        quoted = [f'"{w}"' for w in self.words]
        if last_is_prefix:
            quoted[-1] += "*"
        return " ".join(quoted)


def _text_tokens(listing: Listing, fields: tuple[str, ...]) -> list[str]:
    return tokens(" ".join(field_text(listing, name) for name in fields))


def _sample(ds: Dataset, now: int) -> list[Listing]:
    """Every k-th listing, so the sample spans the whole time range."""
    return list(ds.listings(now, every=max(1, ds.count // SAMPLE)))


def _band_of(listing: Listing, rng: random.Random) -> tuple[int, int]:
    fitting = [b for b in BANDS if b[0] <= listing.price <= b[1]]
    if listing.currency == "IDR" and fitting:
        return rng.choice(fitting)
    return rng.choice(BANDS)


def workload(
    ds: Dataset, fields: tuple[str, ...], per_shape: int, seed: int, now: int
) -> dict[Shape, list[SearchQuery]]:
    """``per_shape`` queries of each shape over the searchable ``fields``, the same on
    every run for the same data."""
    rng = random.Random(f"queries:{seed}:{ds.count}")
    sample = _sample(ds, now)
    df: Counter[str] = Counter()
    for listing in sample:
        df.update(set(_text_tokens(listing, fields)))
    ranked = [w for w, _ in df.most_common() if len(w) >= 2 and not w.isdigit()]
    low, high = _RARE_SAMPLE_DF
    bands = {
        "common": ranked[:_COMMON_RANKS],
        "medium": ranked[_MEDIUM_RANKS[0] : _MEDIUM_RANKS[1]] or ranked,
        "rare": [w for w in ranked if low <= df[w] <= high] or ranked[-_COMMON_RANKS:],
    }
    one: list[SearchQuery] = []
    for i in range(per_shape):
        name = ("common", "medium", "rare")[i % 3]
        word = rng.choice(bands[name])
        one.append(SearchQuery("one-word", (word,), *rng.choice(BANDS), band=name))
    two: list[SearchQuery] = []
    prefix: list[SearchQuery] = []
    while len(two) < per_shape or len(prefix) < per_shape:
        listing = rng.choice(sample)
        words = [w for w in dict.fromkeys(tokens(listing.title)) if len(w) >= 2]
        if len(two) < per_shape and len(words) >= 2:
            first, second = sorted(rng.sample(range(len(words)), 2))
            two.append(
                SearchQuery("two-word", (words[first], words[second]), *_band_of(listing, rng))
            )
        long_words = [w for w in words if len(w) >= 4 and w.isalpha()]
        if len(prefix) < per_shape and long_words:
            word = rng.choice(long_words)
            cut = rng.randint(3, min(5, len(word) - 1))
            prefix.append(SearchQuery("prefix", (word[:cut],), *rng.choice(BANDS)))
    return {"one-word": one, "two-word": two, "prefix": prefix}
