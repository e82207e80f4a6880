"""What a running node tells the program embedding it, and its status snapshot.

Pure data: events are emitted by :class:`~p2pmarket.node.Node` as the cache and the
set of connected peers change, and cross the control socket unchanged, so the CLI's
``watch`` and an embedder's ``async for event in node.events()`` see the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from p2pmarket.nodestatus import EVENT_BUFFER as EVENT_BUFFER
from p2pmarket.nodestatus import NodeStatus as NodeStatus
from p2pmarket.nodestatus import PeerInfo as PeerInfo
from p2pmarket.nodestatus import SyncProgress as SyncProgress
from p2pmarket.nodestatus import SyncStatus as SyncStatus
from p2pmarket.records import Listing, Profile, Review, Tombstone
from p2pmarket.store.messages import Message
from p2pmarket.trade import TradeView

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
