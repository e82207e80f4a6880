"""AutoNAT's bookkeeping, without I/O: servers' verdicts -> our reachability,
and the per-asker rate limit a server applies.

Kept apart from the protocol code (network/autonat.py) so the rules can be
tested exhaustively with plain numbers: every method takes the time ``now``.

The rules (a condensed form of go-libp2p's AutoNAT v1 client):

* Each server counts once: verdicts are kept per *server IP*, the latest wins,
  so two peers on one machine cannot outvote the rest.
* Only a dial-back that succeeded (OK) or that the server really tried and
  failed (E_DIAL_ERROR) is a verdict. A refusal, a bad request, a timeout or a
  server that does not speak AutoNAT says nothing about us and is not counted:
  py-libp2p's own client counted those as "private" (a host announcing
  0.0.0.0 was told private because every server refused to dial it).
* ``required`` confirmations are sized by the caller to the servers it could
  ask (2 normally, 1 when there is only one): py-libp2p's fixed 4 never
  resolved with fewer servers.
* Public once ``required`` servers reached us and at least as many reached us
  as failed; private once ``required`` failed and more failed than reached us;
  unknown otherwise. Verdicts expire after ``ttl`` so that a node that moves
  (a laptop changing networks) does not stay "public" on old evidence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

Status = Literal["public", "private", "unknown"]

DEFAULT_CONFIRMATIONS: Final = 2
MAX_SERVERS_REMEMBERED: Final = 16


def confirmations_for(servers: int, wanted: int = DEFAULT_CONFIRMATIONS) -> int:
    """How many agreeing servers make a verdict, given how many distinct ones
    (by IP) we could ask: ``wanted``, or fewer when fewer exist (never 0)."""
    return max(1, min(wanted, servers))


@dataclass(frozen=True, slots=True)
class DialVerdict:
    """One server's latest answer: did its fresh dial to us succeed, when, and
    the address it reached (for a success)."""

    reached: bool
    at: float
    addr: str | None = None


class Verdicts:
    """The latest verdict of each server (by IP), and the status they make."""

    def __init__(self, *, ttl: float) -> None:
        self._ttl = ttl
        self._by_server: dict[str, DialVerdict] = {}

    def record(self, server: str, reached: bool, now: float, addr: str | None = None) -> None:
        self._by_server.pop(server, None)  # re-insert: dict order is age order
        self._by_server[server] = DialVerdict(reached, now, addr)
        while len(self._by_server) > MAX_SERVERS_REMEMBERED:
            del self._by_server[next(iter(self._by_server))]

    def _fresh(self, now: float) -> list[DialVerdict]:
        for server in [s for s, v in self._by_server.items() if now - v.at > self._ttl]:
            del self._by_server[server]
        return list(self._by_server.values())

    def status(self, required: int, now: float) -> Status:
        fresh = self._fresh(now)
        reached = sum(1 for v in fresh if v.reached)
        failed = len(fresh) - reached
        if reached >= required and reached >= failed:
            return "public"
        if failed >= required and failed > reached:
            return "private"
        return "unknown"

    def confirmed_addrs(self, now: float) -> tuple[str, ...]:
        """The addresses servers reached us at, newest first, without repeats."""
        fresh = sorted(self._fresh(now), key=lambda v: v.at, reverse=True)
        return tuple(dict.fromkeys(v.addr for v in fresh if v.reached and v.addr))


class SlidingWindow:
    """At most ``limit`` events per ``window`` seconds per key, and ``total``
    for all keys together: a server's guard against being made to dial a lot
    (each AutoNAT request costs it a TCP connection and a Noise handshake)."""

    def __init__(self, *, limit: int, total: int, window: float) -> None:
        self._limit = limit
        self._total = total
        self._window = window
        self._events: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] >= self._window:
            times.popleft()

    def allow(self, key: str, now: float) -> bool:
        """Count one event for ``key`` if both limits have room; False if not."""
        self._trim(self._all, now)
        for k in [k for k, t in self._events.items() if not t or now - t[-1] >= self._window]:
            del self._events[k]
        times = self._events.setdefault(key, deque())
        self._trim(times, now)
        if len(times) >= self._limit or len(self._all) >= self._total:
            return False
        times.append(now)
        self._all.append(now)
        return True


class Backoff:
    """The wait before the next probe round while the status is unknown:
    ``low``, doubling after each inconclusive round, up to ``high``; back to
    ``low`` when the peer set changes or a verdict arrives."""

    def __init__(self, *, low: float, high: float) -> None:
        self._low = low
        self._high = high
        self.current = low

    def failed(self) -> float:
        """The wait after an inconclusive round (and double it for the next)."""
        wait = self.current
        self.current = min(self._high, self.current * 2)
        return wait

    def reset(self) -> None:
        self.current = self._low
