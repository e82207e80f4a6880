"""Summary statistics and number formatting shared by every benchmark."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ms(seconds: float) -> str:
    """Milliseconds with precision that suits the magnitude: 0.042, 3.17, 245."""
    value = seconds * 1000
    if value < 1:
        return f"{value:.3f} ms"
    if value < 100:
        return f"{value:.2f} ms"
    return f"{value:.0f} ms"


def count(n: float) -> str:
    return f"{n:,.0f}"


def percentile_or_miss(values: Sequence[float | None], q: float) -> float | None:
    """Like :func:`percentile`, where ``None`` is a miss that ranks above every value:
    ``None`` when the percentile falls on (or between) misses."""
    if not values:
        raise ValueError("no values")
    found = sorted(v for v in values if v is not None)
    rank = (len(values) - 1) * q / 100
    if int(rank) + (rank > int(rank)) >= len(found):
        return None
    return percentile(found + [found[-1]] * (len(values) - len(found)), q)


def ms_or_miss(seconds: float | None, what: str = "missed") -> str:
    return what if seconds is None else ms(seconds)
