"""Peers cut off for misbehaving, and for how long.

A peer whose debt of penalties (invalid records, a broken sync session, a bad
mailbox request, a letter it signed that we cannot take) reaches the threshold
is disconnected, and for a while neither dialled by us nor let back in: without
that an attacker keeps its connection, or redials at once, and keeps costing us
the work of refusing it. The first ban lasts ten minutes and each repeat doubles
it, up to a day, so a peer that was merely buggy comes back soon while a
persistent attacker spends most of its time outside.

Pure state with the clock passed in; the network does the disconnecting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

BAN_THRESHOLD: Final = 50.0  # penalty points owed (GossipSub's publish threshold)
FIRST_BAN: Final = 600.0  # seconds
MAX_BAN: Final = 86_400.0
MAX_ENTRIES: Final = 10_000  # peers remembered; the oldest expired go first


@dataclass(slots=True)
class _Entry:
    until: float
    strikes: int


@dataclass(slots=True)
class BanList:
    entries: dict[str, _Entry] = field(default_factory=dict)

    def ban(self, peer_id: str, now: float) -> float:
        """Ban ``peer_id`` from ``now``; returns until when. A repeat offender's
        ban doubles each time (strikes are remembered after a ban expires)."""
        entry = self.entries.get(peer_id)
        strikes = entry.strikes + 1 if entry is not None else 1
        until = now + min(FIRST_BAN * 2.0 ** (strikes - 1), MAX_BAN)
        if entry is not None and entry.until > until:
            until = entry.until
        self.entries[peer_id] = _Entry(until, strikes)
        if len(self.entries) > MAX_ENTRIES:
            self._forget(now)
        return until

    def banned(self, peer_id: str, now: float) -> bool:
        entry = self.entries.get(peer_id)
        return entry is not None and entry.until > now

    def until(self, peer_id: str, now: float) -> float | None:
        """When ``peer_id``'s ban ends, or None if it is not banned."""
        entry = self.entries.get(peer_id)
        return entry.until if entry is not None and entry.until > now else None

    def current(self, now: float) -> dict[str, float]:
        """Every peer banned at ``now``, with the end of its ban."""
        return {p: e.until for p, e in self.entries.items() if e.until > now}

    def _forget(self, now: float) -> None:
        """Keep the table bounded: drop expired bans (oldest first), then, if an
        attacker fills it with fresh identities, the bans that end soonest."""
        ordered = sorted(self.entries.items(), key=lambda item: item[1].until)
        excess = len(ordered) - MAX_ENTRIES
        for peer_id, _ in ordered[: max(excess, 0)]:
            del self.entries[peer_id]
        for peer_id, entry in ordered[max(excess, 0) :]:
            if entry.until > now or len(self.entries) <= MAX_ENTRIES // 2:
                break
            del self.entries[peer_id]
