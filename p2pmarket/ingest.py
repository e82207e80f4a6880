"""Bulk ingest: decode, verify on every core, store in batches.

The pipeline overlaps its stages: while worker threads verify the signatures of
chunk N (libsodium runs without the GIL), the calling thread decodes chunk N+1 and
stores chunk N-1. Only records that pass every check reach the store, and each
chunk is one WriteBatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Final

from p2pmarket import records
from p2pmarket.crypto.signing import verify
from p2pmarket.errors import InvalidRecord
from p2pmarket.records import Record
from p2pmarket.store import ListingStore, Outcome

CHUNK: Final = 1000


@dataclass(slots=True)
class IngestReport:
    """What an ingest did: counts by outcome, and why each rejected record failed."""

    added: int = 0
    updated: int = 0
    withdrawn: int = 0
    unchanged: int = 0  # not newer than what the cache holds
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (1-based position, reason)

    @property
    def accepted(self) -> int:
        return self.added + self.updated + self.withdrawn

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.ADDED:
            self.added += 1
        elif outcome is Outcome.UPDATED:
            self.updated += 1
        elif outcome is Outcome.WITHDRAWN:
            self.withdrawn += 1
        else:
            self.unchanged += 1


_Decoded = list[tuple[int, Record]]


def _verify_chunk(chunk: _Decoded) -> list[bool]:
    return [verify(records.author(r), records.signed_message(r), r.signature) for _, r in chunk]


def _chunks(items: Iterable[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    numbered = enumerate(items, start=1)
    while chunk := list(islice(numbered, CHUNK)):
        yield chunk


def ingest(
    store: ListingStore,
    items: Iterable[bytes],
    now: int,
    *,
    own_key: bytes | None = None,
    workers: int = 2,
) -> IngestReport:
    """Validate and store every record in ``items``; records by ``own_key`` are
    written with sync, as the user's own data always is."""
    report = IngestReport()
    in_flight: list[tuple[_Decoded, Future[list[bool]]]] = []

    def drain(limit: int) -> None:
        while len(in_flight) > limit:
            decoded, future = in_flight.pop(0)
            good: list[Record] = []
            for (position, record), ok in zip(decoded, future.result(), strict=True):
                if ok:
                    good.append(record)
                else:
                    report.rejected.append((position, "sig: the signature does not verify"))
            own = own_key is not None and any(records.author(r) == own_key for r in good)
            for change in store.put_many(good, sync=own):
                report.count(change.outcome)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="verify") as pool:
        for chunk in _chunks(items):
            decoded: _Decoded = []
            for position, data in chunk:
                try:
                    decoded.append((position, records.decode(data, now)))
                except InvalidRecord as exc:
                    report.rejected.append((position, str(exc)))
            # Split each chunk across the workers so both cores verify.
            half = -(-len(decoded) // max(1, workers))
            for i in range(0, len(decoded), max(1, half)):
                part = decoded[i : i + half]
                in_flight.append((part, pool.submit(_verify_chunk, part)))
            drain(2 * workers)
        drain(0)
    report.rejected.sort()
    return report
