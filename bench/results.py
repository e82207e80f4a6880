"""What a benchmark reports: summary rows against targets, plus detail notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["PASS", "MISS", "info"]


def verdict(ok: bool) -> Verdict:
    return "PASS" if ok else "MISS"


@dataclass(frozen=True, slots=True)
class Row:
    """One figure beside its same-run baseline and its target."""

    name: str
    ours: str
    baseline: str
    target: str
    result: Verdict


@dataclass(slots=True)
class Section:
    """One benchmark's results. ``details`` are Markdown blocks shown after the summary."""

    title: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
