"""Ingest: an export file into a fresh home, against the raw verify rate.

Verifying one ed25519 signature is the irreducible cost of accepting a record
from a stranger, so the baseline is libsodium verifying the same records on one
thread with nothing else to do. Ingest also decodes, validates and indexes, but
has two cores; the target says it must reach 0.6 of that single-core rate.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Final

import nacl.signing

from bench.config import Sizes
from bench.data import dataset
from bench.results import Row, Section, verdict
from bench.stats import count
from p2pmarket import records
from p2pmarket.node import Node, init_home

TARGET_RATIO: Final = 0.6


def _cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (a verifier process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def raw_verify_rate(triples: list[tuple[bytes, bytes, bytes]]) -> float:
    """Signatures per second of PyNaCl's VerifyKey.verify, one thread, messages ready."""
    started = time.perf_counter()
    for public_key, message, signature in triples:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    return len(triples) / (time.perf_counter() - started)


def run(sizes: Sizes, data_dir: Path) -> Section:
    ds = dataset(sizes.ingest, sizes.seed, data_dir)
    now = int(time.time())
    prepared = [
        (listing.seller, records.signed_message(listing), listing.signature)
        for listing in ds.listings(now)
    ]
    raw = raw_verify_rate(prepared)
    del prepared

    with tempfile.TemporaryDirectory(dir=data_dir, prefix="ingest-") as tmp:
        home = Path(tmp) / "home"
        init_home(home, None)
        with Node.open(home) as node:
            cpu = _cpu_seconds()
            started = time.perf_counter()
            report = node.import_listings(ds.path)
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu
    if report.added != ds.count or report.rejected:
        raise RuntimeError(
            f"ingest stored {report.added} of {ds.count}; rejected {report.rejected[:3]}"
        )
    rate = ds.count / elapsed
    ratio = rate / raw
    section = Section(f"Ingest ({count(ds.count)} signed listings)")
    section.rows.append(
        Row(
            f"ingest {count(ds.count)}: export file → fresh home (`Node.import_listings`)",
            f"{count(rate)} listings/s ({elapsed:.1f} s, {ratio:.2f}x raw)",
            f"raw PyNaCl verify, 1 thread: {count(raw)}/s",
            f"≥ {TARGET_RATIO}x raw = {count(TARGET_RATIO * raw)}/s",
            verdict(ratio >= TARGET_RATIO),
        )
    )
    section.details.append(
        f"Ingest used {cpu:.1f} s of CPU in {elapsed:.1f} s of wall time "
        f"({cpu / elapsed:.2f} cores busy on average, verifier process included). "
        f"The baseline times `nacl.signing.VerifyKey(pk).verify(message, sig)` alone, "
        f"with every signed message built beforehand."
    )
    return section
