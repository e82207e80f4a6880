"""What a running node tells the program embedding it, and its status snapshot.

Pure data: events are emitted by :class:`~p2pmarket.node.Node` as the cache and the
set of connected peers change, and cross the control socket unchanged, so the CLI's
``watch`` and an embedder's ``async for event in node.events()`` see the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from p2pmarket.records import Listing, Profile, Review, Tombstone
from p2pmarket.store.messages import Message
from p2pmarket.trade import TradeView

# Events an embedder (or a client of the daemon) has not read yet; past this,
# new ones are dropped for it. Here, not in node.py, so that the daemon's client
# has it without loading the node.
EVENT_BUFFER = 1000

Source: TypeAlias = Literal["local", "gossip", "dht", "import", "sync"]


@dataclass(frozen=True, slots=True)
class ListingAdded:
    """A listing we did not hold before is now in the cache."""

    listing: Listing
    source: Source


@dataclass(frozen=True, slots=True)
class ListingUpdated:
    """A newer version (higher seq) of a cached listing replaced the old one."""

    listing: Listing
    source: Source


@dataclass(frozen=True, slots=True)
class ListingWithdrawn:
    """The seller withdrew a listing; it is hidden from search for good."""

    tombstone: Tombstone
    source: Source


@dataclass(frozen=True, slots=True)
class ProfileUpdated:
    profile: Profile
    source: Source


@dataclass(frozen=True, slots=True)
class ReviewAdded:
    """A review (new, or a newer version of one) is now in the cache."""

    review: Review
    source: Source


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer_id: str
    address: str  # the multiaddr of the connection, "" when unknown


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer_id: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A new direct message arrived (a replay or a blocked sender's does not count)."""

    message: Message
    via: Literal["direct", "mailbox"]


@dataclass(frozen=True, slots=True)
class MessageStateChanged:
    """One of our messages moved on: sent (left with mailboxes), delivered, read."""

    message: Message


@dataclass(frozen=True, slots=True)
class TradeUpdated:
    """A trade moved: our own step, or the other party's arriving."""

    view: TradeView


Event: TypeAlias = (
    ListingAdded
    | ListingUpdated
    | ListingWithdrawn
    | ProfileUpdated
    | ReviewAdded
    | PeerConnected
    | PeerDisconnected
    | MessageReceived
    | MessageStateChanged
    | TradeUpdated
)


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
