"""What a node says about itself: its status, its peers, its catch-up sync.

Pure data, apart from :mod:`p2pmarket.events` (which re-exports these names) so
that a client of the daemon reads ``status``, ``peers`` and ``sync_status``
without loading the events, the records they carry and the message store
(issue 15: a command through the daemon in <= 150 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Events an embedder (or a client of the daemon) has not read yet; past this,
# new ones are dropped for it. Here so that the daemon's client has it without
# loading the node or the events.
EVENT_BUFFER = 1000


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One connected peer."""

    peer_id: str
    addresses: tuple[str, ...]  # multiaddrs of its open connections
    direction: Literal["inbound", "outbound", "unknown"] = "unknown"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What ``p2pmarket status`` shows."""

    peer_id: str
    online: bool  # False for a node opened without its network
    addresses: tuple[str, ...] = ()  # full multiaddrs we announce, with /p2p/<id>
    peers: int = 0
    # "public" (AutoNAT: peers dialled us back), "relayed" (private, reachable through
    # the relays below), "private" (no relay yet) or "unknown" (not enough peers asked)
    reachability: str = "unknown"
    relays: tuple[str, ...] = ()  # peer ids of the relays we hold a reservation with
    known_peers: int = 0  # peers in the peer book, connected or not
    cached_listings: int = 0
    topics: tuple[str, ...] = ()
    sync: SyncStatus | None = None
    started: int = 0  # Unix time the network started, 0 when offline
    unread: int = 0  # incoming messages not yet read
    outbox: int = 0  # our messages (and receipts) not yet acknowledged
    held_mail: int = 0  # envelopes this node keeps for offline peers
    extra: dict[str, int] = field(default_factory=dict)  # counters: dropped, penalised…


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """One sync session with one peer, as it stands."""

    peer_id: str
    role: Literal["initiator", "responder"]
    phase: Literal["reconciling", "fetching", "done", "failed"]
    known: int = 0  # records the peer holds that we lack or hold older
    fetched: int = 0  # of those, stored (or already arrived by gossip)
    rejected: int = 0  # invalid or not what was asked for
    missing: int = 0  # asked for but no longer held by the peer
    bytes_sent: int = 0
    bytes_received: int = 0
    started: float = 0.0  # Unix time
    finished: float = 0.0  # Unix time, 0 while running
    error: str = ""  # why it failed

    @property
    def active(self) -> bool:
        return self.phase in ("reconciling", "fetching")


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """The catch-up sync as a whole: what ``status`` and ``sync`` show."""

    syncing: bool  # a session is running
    first_sync: bool  # no sync has ever completed in this home, and one is running
    last_sync: int  # Unix time the last session completed, 0 for never
    synced_peers: int  # distinct peers synced with since the node started
    sessions: tuple[SyncProgress, ...] = ()  # running ones, then the latest finished
