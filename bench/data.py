"""Deterministic signed listings, generated once and cached as an export file.

Making a listing costs ~240 µs (text ~120 µs, ed25519 signing ~50 µs), so a
million take about two minutes on two processes; the result is kept under
``bench/.data`` and reused while it is still valid.

Validity is about the clock, not the content: listings are created over the
``SPAN`` before an *anchor* (the generation time) and expire ``LIFETIME`` after
creation, so the oldest one expires ``LIFETIME - SPAN`` after the anchor. A cached
set older than ``MAX_AGE`` is regenerated (same seed, same words, new times).

Listings are emitted in strictly increasing creation time, so file order is time
order: the SQLite baseline relies on that to make rowid order time order.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from itertools import islice
from pathlib import Path
from typing import Final

import msgpack

from bench.vocab import CATEGORIES, PLACES, Vocabulary, vocabulary
from p2pmarket import records
from p2pmarket.crypto import stamp
from p2pmarket.crypto.signing import Signer
from p2pmarket.errors import InvalidRecord
from p2pmarket.exchange import read_export, write_export
from p2pmarket.records import DAY, Kind, Listing

GENERATOR_VERSION: Final = 1
SELLERS: Final = 200
SPAN: Final = 25 * DAY
LIFETIME: Final = 30 * DAY
MAX_AGE: Final = 3 * DAY  # < LIFETIME - SPAN, with a margin for a long run
CHUNK: Final = 5000

_WANTED_OPENERS: Final = ("Cari", "Dicari", "Butuh", "WTB")
_USD_SHARE: Final = 0.12
_WANTED_SHARE: Final = 0.08


@dataclass(frozen=True, slots=True)
class Dataset:
    """A cached export file of ``count`` signed listings generated for ``anchor``."""

    path: Path
    count: int
    seed: int
    anchor: int

    @property
    def key(self) -> str:
        """Names everything derived from this data (stores, SQLite files)."""
        return f"n{self.count}-s{self.seed}-v{GENERATOR_VERSION}-a{self.anchor}"

    def raw(self) -> Iterator[bytes]:
        return read_export(self.path)

    def listings(self, now: int, every: int = 1) -> Iterator[Listing]:
        """Decode (every ``every``-th listing) without verifying signatures: they were
        made by this module."""
        for data in islice(self.raw(), 0, None, every):
            record = records.decode(data, now)
            assert isinstance(record, Listing)
            yield record


@lru_cache(maxsize=4)
def sellers(seed: int) -> tuple[Signer, ...]:
    """``SELLERS`` deterministic identities: the same seed gives the same keys."""
    return tuple(
        Signer(hashlib.sha256(f"bench-seller:{seed}:{i}".encode()).digest()) for i in range(SELLERS)
    )


def _price(rng: random.Random) -> tuple[int, str]:
    """Log-uniform prices: IDR 10.000-50.000.000 in whole thousands; some USD 5-5000."""
    if rng.random() < _USD_SHARE:
        dollars = math.exp(rng.uniform(math.log(5), math.log(5000)))
        return round(dollars) * 100 + rng.choice((0, 0, 99)), "USD"
    rupiah = math.exp(rng.uniform(math.log(10_000), math.log(50_000_000)))
    return max(10_000, int(round(rupiah, -3))) * 100, "IDR"


def _title(rng: random.Random, vocab: Vocabulary, topic: tuple[str, ...], kind: Kind) -> str:
    words: list[str] = []
    if kind == "wanted":
        words.append(rng.choice(_WANTED_OPENERS))
    elif rng.random() < 0.35:
        words.append("Jual")
    words += rng.sample(topic, k=min(len(topic), rng.randint(1, 3)))
    size = rng.randint(3, 8)
    while len(words) < size:
        pool = vocab.generic if rng.random() < 0.7 else vocab.tail
        words.append(pool.pick(rng, 1)[0])
    return " ".join(w.capitalize() if rng.random() < 0.6 else w for w in words[:size])


def _description(rng: random.Random, vocab: Vocabulary, category: str) -> str:
    words = vocab.descriptions[category].pick(rng, rng.randint(15, 60))
    sentences = []
    while words:
        cut = rng.randint(5, 12)
        sentence, words = words[:cut], words[cut:]
        sentences.append(" ".join(sentence).capitalize() + rng.choice((".", ".", "!", ",")))
    return " ".join(sentences)


def _draft(rng: random.Random, vocab: Vocabulary, seller: bytes, created: int) -> Listing:
    category = rng.choice(CATEGORIES)
    topic = vocab.topics[category]
    kind: Kind = "wanted" if rng.random() < _WANTED_SHARE else "sell"
    price, currency = _price(rng)
    tag_pool = topic + tuple(vocab.generic.words[:20])
    return Listing(
        seller=seller,
        nonce=rng.randbytes(16),
        seq=1,
        kind=kind,
        title=_title(rng, vocab, topic, kind),
        description=_description(rng, vocab, category),
        price=price,
        currency=currency,
        quantity=1 if rng.random() < 0.9 else rng.randint(2, 20),
        category=category,
        tags=tuple(rng.sample(tag_pool, k=rng.randint(0, 5))),
        location=rng.choice(PLACES),
        created=created,
        expires=created + LIFETIME,
        images=tuple(rng.randbytes(32) for _ in range(rng.choice((0, 0, 1, 2, 3)))),
    )


def new_listing(rng: random.Random, seed: int, signer: Signer, created: int) -> Listing:
    """One more signed listing like the dataset's, by ``signer`` (one of
    :func:`sellers`), made at ``created``: for benchmarks that change a market."""
    draft = _draft(rng, vocabulary(seed), signer.public_key, created)
    return records.sign(draft, signer.sign)


def generate_chunk(seed: int, count: int, anchor: int, start: int, stop: int) -> list[bytes]:
    """Signed listings ``start..stop`` of a set of ``count``; each chunk has its own RNG,
    so chunks can be made in any process and in any order."""
    rng = random.Random(f"listings:{seed}:{start}")
    vocab = vocabulary(seed)
    keys = sellers(seed)
    step = SPAN // count
    out = []
    for index in range(start, stop):
        # Strictly increasing: each listing gets its own slot of `step` seconds.
        created = anchor - SPAN + index * SPAN // count + rng.randrange(step)
        signer = keys[rng.randrange(len(keys))]
        draft = _draft(rng, vocab, signer.public_key, created)
        # records.sign would also re-decode the result (~65 µs); every consumer of
        # this data decodes it anyway, so signing the canonical message is enough.
        signature = signer.sign(records.signed_message(draft))
        out.append(
            records.encode(replace(draft, signature=signature, stamp=stamp.solve(signature)))
        )
    return out


def _generate(path: Path, count: int, seed: int, anchor: int, workers: int) -> None:
    bounds = [(s, min(s + CHUNK, count)) for s in range(0, count, CHUNK)]
    if workers <= 1 or len(bounds) == 1:
        chunks: Iterator[list[bytes]] = (
            generate_chunk(seed, count, anchor, a, b) for a, b in bounds
        )
        write_export(path, (item for chunk in chunks for item in chunk))
        return
    # spawn, not fork: the parent may hold LevelDB handles and threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        starts, stops = zip(*bounds, strict=True)
        chunks = pool.map(partial(generate_chunk, seed, count, anchor), starts, stops)
        write_export(path, (item for chunk in chunks for item in chunk))


def _still_valid(ds: Dataset, now: int) -> bool:
    """Whether the current code accepts the cached bytes: the record format is still
    young, and a change to its canonical encoding must regenerate the data."""
    # Not read_export: it checks the whole file's framing before the first item.
    with ds.path.open("rb") as stream:
        unpacker = msgpack.Unpacker(stream, raw=False)
        next(unpacker, None)  # the header
        first = next(unpacker, None)
    if not isinstance(first, bytes):
        return False
    try:
        records.validate(first, now)
    except InvalidRecord:
        return False
    return True


def dataset(count: int, seed: int, data_dir: Path, *, workers: int = 2) -> Dataset:
    """The cached set of ``count`` listings for ``seed``, generated if missing or stale."""
    if not 1 <= count <= SPAN:
        raise ValueError(f"count must be 1..{SPAN}")
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = f"listings-n{count}-s{seed}-v{GENERATOR_VERSION}"
    path = data_dir / f"{stem}.export"
    meta_path = data_dir / f"{stem}.json"
    now = int(time.time())
    if path.exists() and meta_path.exists():
        anchor = int(json.loads(meta_path.read_text())["anchor"])
        cached = Dataset(path, count, seed, anchor)
        if anchor <= now < anchor + MAX_AGE and _still_valid(cached, now):
            return cached
    meta_path.unlink(missing_ok=True)
    _generate(path, count, seed, now, workers)
    meta_path.write_text(json.dumps({"anchor": now, "count": count, "seed": seed}))
    return Dataset(path, count, seed, now)
