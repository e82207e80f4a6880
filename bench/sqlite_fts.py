"""The SQLite FTS5 baseline: the same listings, indexed the way SQLite would do it.

Two contentless FTS5 tables over the fields our search covers (see
:mod:`bench.semantics`; ``unicode61 remove_diacritics 2``, the closest match to
:mod:`p2pmarket.text`), one of them with prefix indexes, beside a plain
``listings`` table holding the filter columns and the record bytes. The dataset
is in creation order, so the rowid follows creation time and "newest first" can
be read straight off the FTS index in descending rowid order (plans ``b`` and
``c``) instead of sorting every match by ``created`` (plan ``a``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.data import Dataset
from bench.semantics import field_text
from bench.stores import BATCH, Built, batched, drop_stale

BUILD_VERSION: Final = 1
CACHE_PAGES: Final = -32 * 1024  # 32 MiB, as the LevelDB block cache
_TOKENIZE: Final = "tokenize = 'unicode61 remove_diacritics 2'"


def schema(fields: tuple[str, ...]) -> list[str]:
    columns = ", ".join(fields)
    return [
        "CREATE TABLE listings (rowid INTEGER PRIMARY KEY, lid BLOB NOT NULL,"
        " created INTEGER NOT NULL, expires INTEGER NOT NULL, price INTEGER NOT NULL,"
        " currency TEXT NOT NULL, kind TEXT NOT NULL, record BLOB NOT NULL)",
        f"CREATE VIRTUAL TABLE fts USING fts5({columns}, content='', {_TOKENIZE})",
        f"CREATE VIRTUAL TABLE fts_prefix USING fts5({columns}, content='',"
        f" prefix='2 3 4', {_TOKENIZE})",
    ]


@dataclass(frozen=True, slots=True)
class Plan:
    """One way to ask SQLite for a page of results."""

    name: str
    description: str
    sql: str
    exact_prefix: bool = True  # False: matches the whole last word only (not equivalent)


def _sql(table: str, order: str) -> str:
    return (
        f"SELECT l.lid, l.record FROM {table} JOIN listings AS l ON l.rowid = {table}.rowid"
        f" WHERE {table} MATCH ? AND l.currency = 'IDR' AND l.price BETWEEN ? AND ?"
        f" AND l.expires > ? ORDER BY {order} LIMIT ?"
    )


PLANS: Final = (
    Plan("a", "fts, ORDER BY created DESC", _sql("fts", "l.created DESC, l.rowid DESC")),
    Plan("b", "fts, ORDER BY rowid DESC", _sql("fts", "fts.rowid DESC")),
    Plan(
        "c", "fts prefix='2 3 4', ORDER BY rowid DESC", _sql("fts_prefix", "fts_prefix.rowid DESC")
    ),
)
EXACT_PLAN: Final = Plan(
    "b=", "fts, ORDER BY rowid DESC, last word exact", PLANS[1].sql, exact_prefix=False
)


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A read connection with the same cache budget as our store; always closed."""
    with closing(sqlite3.connect(path)) as con:
        con.execute(f"PRAGMA cache_size = {CACHE_PAGES}")
        yield con


def _fill(con: sqlite3.Connection, ds: Dataset, fields: tuple[str, ...]) -> None:
    now = int(time.time())
    last_created = -1
    rowid = 0
    for batch in batched(ds.listings(now), BATCH):
        rows = []
        texts = []
        for listing in batch:
            if listing.created <= last_created:
                raise ValueError("the dataset is not in strictly increasing creation order")
            last_created = listing.created
            rowid += 1
            rows.append(
                (
                    rowid,
                    listing.id,
                    listing.created,
                    listing.expires,
                    listing.price,
                    listing.currency,
                    listing.kind,
                    listing.encoded,
                )
            )
            texts.append((rowid, *(field_text(listing, name) for name in fields)))
        con.executemany("INSERT INTO listings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        for table in ("fts", "fts_prefix"):
            con.executemany(
                f"INSERT INTO {table} (rowid, {', '.join(fields)}) VALUES (?{', ?' * len(fields)})",
                texts,
            )
        con.commit()


def sqlite_db(ds: Dataset, data_dir: Path, fields: tuple[str, ...]) -> Built:
    """The FTS5 database of ``ds`` over ``fields``, built (and optimized) if not cached."""
    prefix = f"fts-n{ds.count}-s{ds.seed}-"
    tag = "".join(name[0] for name in fields)
    path = data_dir / f"fts-{ds.key}-b{BUILD_VERSION}-{tag}.sqlite"
    timing = path.with_suffix(".seconds")
    if path.exists() and timing.exists():
        return Built(path, float(timing.read_text()), cached=True)
    drop_stale(data_dir, prefix, path)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    with closing(sqlite3.connect(partial)) as con:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.execute(f"PRAGMA cache_size = {CACHE_PAGES * 4}")
        for statement in schema(fields):
            con.execute(statement)
        _fill(con, ds, fields)
        for table in ("fts", "fts_prefix"):
            con.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        con.commit()
    seconds = time.perf_counter() - started
    partial.replace(path)
    timing.write_text(f"{seconds:.3f}")
    return Built(path, seconds, cached=False)


def query_plan(con: sqlite3.Connection, plan: Plan, match: str) -> str:
    """SQLite's own plan for ``plan``, one step per line, for the report."""
    rows = con.execute(f"EXPLAIN QUERY PLAN {plan.sql}", (match, 0, 1, 0, 20)).fetchall()
    return "; ".join(str(row[-1]) for row in rows)
