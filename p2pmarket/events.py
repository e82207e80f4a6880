"""What a running node tells the program embedding it, and its status snapshot.

Pure data: events are emitted by :class:`~p2pmarket.node.Node` as the cache and the
set of connected peers change, and cross the control socket unchanged, so the CLI's
``watch`` and an embedder's ``async for event in node.events()`` see the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from p2pmarket.records import Listing, Profile, Tombstone

Source: TypeAlias = Literal["local", "gossip", "dht", "import"]


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
class PeerConnected:
    peer_id: str
    address: str  # the multiaddr of the connection, "" when unknown


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer_id: str


Event: TypeAlias = (
    ListingAdded
    | ListingUpdated
    | ListingWithdrawn
    | ProfileUpdated
    | PeerConnected
    | PeerDisconnected
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
    addresses: tuple[str, ...] = ()  # full multiaddrs we listen on, with /p2p/<id>
    peers: int = 0
    cached_listings: int = 0
    topics: tuple[str, ...] = ()
    sync: str = "gossip only"  # catch-up sync arrives with its own release
    started: int = 0  # Unix time the network started, 0 when offline
    extra: dict[str, int] = field(default_factory=dict)  # counters: dropped, penalised…
