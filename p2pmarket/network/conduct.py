"""What peers owe for misbehaving, and who is banned for it.

Each invalid thing a peer sends costs it points (an invalid record 10, a broken
sync session 50); the debt decays by 1% a second, like GossipSub's behaviour
penalty, but is kept here across disconnections (py-libp2p forgets a peer's
score when it leaves, so the network charges it again when it comes back).

A peer whose debt reaches the threshold is banned: disconnected, and for a
while neither dialled by us nor let back in. Without that an attacker kept its
connection, or redialled at once, and kept costing us the work of refusing it.
The first ban lasts ten minutes and each repeat doubles it, up to a day, so a
peer that was merely buggy comes back soon while a persistent attacker spends
most of its time outside.

Pure state with the clock passed in; the network does the disconnecting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

DECAY: Final = 0.99  # of a debt, per second
BAN_THRESHOLD: Final = 50.0  # penalty points owed (GossipSub's publish threshold)
MAX_DEBTORS: Final = 10_000  # debts remembered; past it only those that still count
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


@dataclass(slots=True)
class Conduct:
    """Debts and bans of the peers one node has dealt with."""

    debts: dict[str, tuple[float, float]] = field(default_factory=dict)  # peer: (amount, when)
    bans: BanList = field(default_factory=BanList)

    def owed(self, peer_id: str, now: float) -> float:
        """What ``peer_id`` still owes, decayed to ``now``."""
        amount, since = self.debts.get(peer_id, (0.0, now))
        return float(amount * DECAY ** (now - since))

    def charge(self, peer_id: str, amount: float, now: float) -> float | None:
        """Add ``amount`` to a peer's debt; returns until when it is banned if
        this charge crossed the threshold (None otherwise, or if banned already)."""
        if len(self.debts) >= MAX_DEBTORS:
            self.debts = {
                p: (a, t) for p, (a, t) in self.debts.items() if a * DECAY ** (now - t) >= 1
            }
        self.debts[peer_id] = (self.owed(peer_id, now) + amount, now)
        if self.owed(peer_id, now) < BAN_THRESHOLD:
            return None
        return self.ban(peer_id, now)

    def ban(self, peer_id: str, now: float) -> float | None:
        """Ban a peer now, whatever it owes (a broken sync session); returns
        until when, or None if it was banned already."""
        if self.bans.banned(peer_id, now):
            return None
        return self.bans.ban(peer_id, now)

    def banned(self, peer_id: str, now: float) -> float | None:
        """Seconds left of a peer's ban, or None if it is not banned."""
        until = self.bans.until(peer_id, now)
        return None if until is None else until - now
