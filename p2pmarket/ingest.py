"""Bulk ingest: decode, verify on another core, store in batches.

Verifying a signature (~120 µs here) costs about as much as decoding and indexing
the record, so large ingests verify in a worker *process* while this process
decodes the next chunks and stores the verified ones. Threads were measured first:
libsodium does release the GIL, but the GIL hand-offs slowed the storing thread by
a third (0.55 of the single-core verify rate instead of ~0.75), while a process
leaves it a core of its own. Small ingests (one chunk)
verify inline and never start a process. Only records that pass every check reach
the store, and each chunk is one WriteBatch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Final

from p2pmarket import records
from p2pmarket.crypto.signing import verify_batch
from p2pmarket.crypto.verify_worker import VerifierProcess
from p2pmarket.errors import InvalidRecord, P2PMarketError
from p2pmarket.records import Listing, Record
from p2pmarket.store import ListingStore, Outcome

CHUNK: Final = 1000
_WORKER_FAILED: Final = (
    "the signature-checking process stopped unexpectedly; nothing unverified was "
    "stored, run the import again"
)
# Chunks handed to the verifier before waiting for the oldest: enough to keep it
# busy, few enough to bound memory (~1 MiB a chunk).
_DEPTH: Final = 3


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


_Decoded = list[tuple[int, Record, int]]  # position, record, signatures to check


def _chunks(items: Iterable[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    numbered = enumerate(items, start=1)
    while chunk := list(islice(numbered, CHUNK)):
        yield chunk


class _Verifier:
    """Verifies inline until a second chunk shows the ingest is large, then in a
    worker process (see :mod:`p2pmarket.crypto.verify_worker`). Results come back
    in submission order."""

    def __init__(self, parallel: bool) -> None:
        self._parallel = parallel and (os.cpu_count() or 1) > 1
        self._worker: VerifierProcess | None = None
        self._inline: deque[list[bool] | None] = deque()
        self._chunks_seen = 0

    def submit(self, batch: list[tuple[bytes, bytes, bytes]]) -> None:
        self._chunks_seen += 1
        if self._worker is None and self._parallel and self._chunks_seen > 1:
            try:
                self._worker = VerifierProcess()
            except OSError:
                self._parallel = False  # no subprocesses here: verify inline
        if self._worker is not None:
            try:
                self._worker.send(batch)
            except OSError:
                raise P2PMarketError(_WORKER_FAILED) from None
            self._inline.append(None)
        else:
            self._inline.append(verify_batch(batch))

    def result(self) -> list[bool]:
        """The result of the oldest batch not yet collected."""
        done = self._inline.popleft()
        if done is not None:
            return done
        assert self._worker is not None
        try:
            return self._worker.receive()
        except OSError:
            raise P2PMarketError(_WORKER_FAILED) from None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()


def ingest(
    store: ListingStore,
    items: Iterable[bytes],
    now: int,
    *,
    own_key: bytes | None = None,
    parallel: bool = True,
) -> IngestReport:
    """Validate and store every record in ``items``; records by ``own_key`` are
    written with sync, as the user's own data always is."""
    report = IngestReport()
    in_flight: deque[_Decoded] = deque()
    verifier = _Verifier(parallel)

    def store_oldest() -> None:
        decoded = in_flight.popleft()
        good: list[Record] = []
        results = iter(verifier.result())
        for position, record, count in decoded:
            # Each record consumes exactly its own results (a listing has one).
            if next(results) if count == 1 else all([next(results) for _ in range(count)]):
                good.append(record)
            else:
                report.rejected.append(
                    (position, "sig: a signature or the proof-of-work stamp does not verify")
                )
        own = own_key is not None and any(records.author(r) == own_key for r in good)
        for change in store.put_many(good, sync=own):
            report.count(change.outcome)

    try:
        for chunk in _chunks(items):
            decoded: _Decoded = []
            signed: list[tuple[bytes, bytes, bytes]] = []
            for position, data in chunk:
                try:
                    record, message = records.decode_signed(data, now)
                except InvalidRecord as exc:
                    report.rejected.append((position, str(exc)))
                    continue
                if type(record) is Listing:  # nearly all: the fast path
                    decoded.append((position, record, 2))
                    signed.append((record.seller, message, record.signature))
                    signed.append(records.stamp_check(record))
                    continue
                triples = records.signatures(record, message)
                decoded.append((position, record, len(triples)))
                signed.extend(triples)
            verifier.submit(signed)
            in_flight.append(decoded)
            if len(in_flight) >= _DEPTH:
                store_oldest()
        while in_flight:
            store_oldest()
    finally:
        verifier.close()
    report.rejected.sort()
    return report
