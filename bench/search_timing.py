"""Timing searches: our store and each SQLite plan over the same query workload.

Each engine answers every query after a short untimed warm-up, one engine at a
time, on a warm OS page cache. Ours is called through ``Node.search``, the code
path of the CLI; SQLite runs each plan of :data:`bench.sqlite_fts.PLANS`. The
top-20 ids of every query are kept so that the engines can be checked against
each other as well as timed.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.config import Sizes
from bench.data import Dataset, dataset
from bench.queries import LIMIT, SHAPES, SearchQuery, Shape, workload
from bench.sqlite_fts import EXACT_PLAN, PLANS, Plan, connect, query_plan, sqlite_db
from bench.stats import ms, percentile
from bench.stores import Built, our_home
from p2pmarket.node import Node

WARMUP: Final = 20
# A plan that takes longer than this on one shape stops early (reported as such).
BUDGET_SECONDS: Final = 45.0


@dataclass(slots=True)
class Timings:
    """Latencies and top-20 ids of one engine (or plan) on one shape's queries."""

    seconds: list[float] = field(default_factory=list)
    ids: list[list[bytes]] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.seconds, 50)

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 95)

    def pair(self) -> str:
        return f"p50 {ms(self.p50)} · p95 {ms(self.p95)}"


Runner = Callable[[SearchQuery], list[bytes]]


def _time(queries: list[SearchQuery], runner: Runner) -> Timings:
    for query in queries[:WARMUP]:
        runner(query)
    timings = Timings()
    deadline = time.perf_counter() + BUDGET_SECONDS
    for query in queries:
        started = time.perf_counter()
        ids = runner(query)
        timings.seconds.append(time.perf_counter() - started)
        timings.ids.append(ids)
        if started > deadline:
            break
    return timings


def _ours(home: Path, queries: dict[Shape, list[SearchQuery]]) -> dict[Shape, Timings]:
    with Node.open(home) as node:

        def runner(query: SearchQuery) -> list[bytes]:
            page = node.search(
                query.text,
                currency="IDR",
                min_price=query.min_price,
                max_price=query.max_price,
                limit=LIMIT,
            )
            return [listing.id for listing in page.listings]

        return {shape: _time(queries[shape], runner) for shape in SHAPES}


def _sqlite(con: sqlite3.Connection, plan: Plan, queries: list[SearchQuery], now: int) -> Timings:
    def runner(query: SearchQuery) -> list[bytes]:
        match = query.fts_match(last_is_prefix=plan.exact_prefix)
        rows = con.execute(plan.sql, (match, query.min_price, query.max_price, now, LIMIT))
        return [row[0] for row in rows.fetchall()]

    return _time(queries, runner)


def _build(ds: Dataset, data_dir: Path, fields: tuple[str, ...]) -> tuple[Built, Built]:
    """Both stores, built side by side in two processes when not cached."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        ours = pool.submit(our_home, ds, data_dir)
        theirs = pool.submit(sqlite_db, ds, data_dir, fields)
        return ours.result(), theirs.result()


@dataclass(slots=True)
class SizeResult:
    """Everything measured at one dataset size."""

    ds: Dataset
    ours: dict[Shape, Timings]
    plans: dict[str, dict[Shape, Timings]]
    queries: dict[Shape, list[SearchQuery]]
    builds: tuple[Built, Built]
    explain: dict[str, str]


def _read_through(path: Path) -> None:
    """Read every file under ``path`` once, so both engines start from a warm OS page
    cache whether their files were just written or are cached from an earlier run."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    for file in files:
        if file.is_file():
            with file.open("rb") as stream:
                while stream.read(1 << 20):
                    pass


def measure(count_: int, sizes: Sizes, data_dir: Path, fields: tuple[str, ...]) -> SizeResult:
    ds = dataset(count_, sizes.seed, data_dir)
    home, db = _build(ds, data_dir, fields)
    _read_through(home.path)
    _read_through(db.path)
    now = int(time.time())
    queries = workload(ds, fields, sizes.queries_per_shape, sizes.seed, now)
    ours = _ours(home.path, queries)
    plans: dict[str, dict[Shape, Timings]] = {}
    with connect(db.path) as con:
        for plan in PLANS:
            plans[plan.name] = {s: _sqlite(con, plan, queries[s], now) for s in SHAPES}
        plans[EXACT_PLAN.name] = {"one-word": _sqlite(con, EXACT_PLAN, queries["one-word"], now)}
        sample = queries["two-word"][0].fts_match()
        explain = {plan.name: query_plan(con, plan, sample) for plan in PLANS}
    return SizeResult(ds, ours, plans, queries, (home, db), explain)
