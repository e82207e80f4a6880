"""Runs the chosen benchmarks and reports them: one entry point for the CLI and tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TextIO

from bench import (
    coldstart,
    dht,
    flood,
    gossip,
    ingest,
    machine,
    memory,
    messages,
    reviews,
    search,
    spam,
    sync,
)
from bench.config import DATA_DIR, FULL, QUICK, REPORT, Sizes
from bench.report import render
from bench.results import Section

BENCHMARKS: Final[dict[str, Callable[[Sizes, Path], Section]]] = {
    "ingest": ingest.run,
    "search": search.run,
    "coldstart": coldstart.run,
    "gossip": gossip.run,
    "dht": dht.run,
    "memory": memory.run,
    "sync": sync.run,
    "messages": messages.run,
    "reviews": reviews.run,
    "spam": spam.run,
    "flood": flood.run,
}


def run(
    *,
    quick: bool = False,
    only: str | Sequence[str] | None = None,
    sizes: Sizes | None = None,
    data_dir: Path | None = None,
    out: TextIO | None = None,
) -> list[Section]:
    """Run ``only`` the named benchmark(s), or all; print the report to ``out`` (stdout).

    BENCHMARKS.md is rewritten only by a complete full-size run, so that a quick
    or partial run can never replace the published figures.
    """
    chosen = sizes or (QUICK if quick else FULL)
    folder = data_dir or DATA_DIR
    names = [only] if isinstance(only, str) else list(only or BENCHMARKS)
    described = machine.describe()  # before the run: the load average is the machine's own
    sources = machine.source_hash()
    started = time.perf_counter()
    sections = []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        sections.append(BENCHMARKS[name](chosen, folder))
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    minutes = (time.perf_counter() - started) / 60
    if machine.source_hash() != sources:
        described.append(("Warning", "p2pmarket/ changed during the run: figures may mix versions"))
    mode = "full" if chosen == FULL else "quick" if chosen == QUICK else f"custom {chosen}"
    text = render(sections, described, mode=mode, minutes=minutes)
    print(text, file=out or sys.stdout)
    if chosen == FULL and only is None and not quick:
        REPORT.write_text(text + _kept_sections(), encoding="utf-8")
        print(f"[bench] wrote {REPORT}", file=sys.stderr)
    return sections


# Sections of BENCHMARKS.md written by benchmarks outside `make bench` (make
# netscale needs root and namespaces): a full run keeps them as they are.
KEPT_SECTIONS = ("## A network of hosts",)


def _kept_sections() -> str:
    if not REPORT.exists():
        return ""
    old = REPORT.read_text(encoding="utf-8")
    kept = []
    for heading in KEPT_SECTIONS:
        start = old.find("\n" + heading)
        if start >= 0:
            end = old.find("\n## ", start + 1)
            kept.append(old[start : end if end >= 0 else len(old)].rstrip() + "\n")
    return "".join(kept)
