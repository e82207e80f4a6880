"""p2pmarket: a peer-to-peer marketplace node.

The public API is small and re-exported here; everything else is internal::

    from p2pmarket import Node
    with Node.open("~/market") as node:
        for listing in node.search("sepeda lipat").listings:
            print(listing.title)
"""

from __future__ import annotations

import typing as _typing

from p2pmarket import lazy as _lazy

if _typing.TYPE_CHECKING:
    from p2pmarket.errors import ConfigError as ConfigError
    from p2pmarket.errors import IdentityError as IdentityError
    from p2pmarket.errors import InvalidInput as InvalidInput
    from p2pmarket.errors import InvalidRecord as InvalidRecord
    from p2pmarket.errors import NetworkError as NetworkError
    from p2pmarket.errors import NotFound as NotFound
    from p2pmarket.errors import OfflineError as OfflineError
    from p2pmarket.errors import P2PMarketError as P2PMarketError
    from p2pmarket.errors import StoreError as StoreError
    from p2pmarket.errors import StoreLocked as StoreLocked
    from p2pmarket.errors import WrongPassphrase as WrongPassphrase
    from p2pmarket.events import ListingAdded as ListingAdded
    from p2pmarket.events import ListingUpdated as ListingUpdated
    from p2pmarket.events import ListingWithdrawn as ListingWithdrawn
    from p2pmarket.events import MessageReceived as MessageReceived
    from p2pmarket.events import MessageStateChanged as MessageStateChanged
    from p2pmarket.events import NodeStatus as NodeStatus
    from p2pmarket.events import PeerConnected as PeerConnected
    from p2pmarket.events import PeerDisconnected as PeerDisconnected
    from p2pmarket.events import PeerInfo as PeerInfo
    from p2pmarket.events import ProfileUpdated as ProfileUpdated
    from p2pmarket.events import ReviewAdded as ReviewAdded
    from p2pmarket.events import TradeUpdated as TradeUpdated
    from p2pmarket.network.config import NetworkConfig as NetworkConfig
    from p2pmarket.node import Node as Node
    from p2pmarket.node import init_home as init_home
    from p2pmarket.node import open_node as open_node
    from p2pmarket.records import Listing as Listing
    from p2pmarket.records import Profile as Profile
    from p2pmarket.records import Review as Review
    from p2pmarket.records import Tombstone as Tombstone
    from p2pmarket.records import format_id as format_id
    from p2pmarket.records import parse_id as parse_id
    from p2pmarket.reputation import Reputation as Reputation
    from p2pmarket.reputation import SellerInfo as SellerInfo
    from p2pmarket.store import Page as Page
    from p2pmarket.store.messages import Message as Message
    from p2pmarket.store.messages import MessageState as MessageState
    from p2pmarket.trade import Contract as Contract
    from p2pmarket.trade import TradeState as TradeState
    from p2pmarket.trade import TradeView as TradeView

__version__ = "0.1.0"

# Each public name and the module it lives in. They are imported on first use
# (PEP 562), not with the package: every ``p2pmarket.x`` import runs this file
# first, and a CLI command through the daemon needs neither the store, the node
# nor the network (issue 15: a command in <= 150 ms).
_PUBLIC = {
    "ConfigError": "p2pmarket.errors",
    "IdentityError": "p2pmarket.errors",
    "InvalidInput": "p2pmarket.errors",
    "InvalidRecord": "p2pmarket.errors",
    "NetworkError": "p2pmarket.errors",
    "NotFound": "p2pmarket.errors",
    "OfflineError": "p2pmarket.errors",
    "P2PMarketError": "p2pmarket.errors",
    "StoreError": "p2pmarket.errors",
    "StoreLocked": "p2pmarket.errors",
    "WrongPassphrase": "p2pmarket.errors",
    "ListingAdded": "p2pmarket.events",
    "ListingUpdated": "p2pmarket.events",
    "ListingWithdrawn": "p2pmarket.events",
    "MessageReceived": "p2pmarket.events",
    "MessageStateChanged": "p2pmarket.events",
    "NodeStatus": "p2pmarket.events",
    "PeerConnected": "p2pmarket.events",
    "PeerDisconnected": "p2pmarket.events",
    "PeerInfo": "p2pmarket.events",
    "ProfileUpdated": "p2pmarket.events",
    "ReviewAdded": "p2pmarket.events",
    "TradeUpdated": "p2pmarket.events",
    "NetworkConfig": "p2pmarket.network.config",
    "Node": "p2pmarket.node",
    "init_home": "p2pmarket.node",
    "open_node": "p2pmarket.node",
    "Listing": "p2pmarket.records",
    "Profile": "p2pmarket.records",
    "Review": "p2pmarket.records",
    "Tombstone": "p2pmarket.records",
    "format_id": "p2pmarket.records",
    "parse_id": "p2pmarket.records",
    "Reputation": "p2pmarket.reputation",
    "SellerInfo": "p2pmarket.reputation",
    "Page": "p2pmarket.store",
    "Message": "p2pmarket.store.messages",
    "MessageState": "p2pmarket.store.messages",
    "Contract": "p2pmarket.trade",
    "TradeState": "p2pmarket.trade",
    "TradeView": "p2pmarket.trade",
}
__all__ = sorted(_PUBLIC)


__getattr__ = _lazy.attribute_loader(__name__, _PUBLIC, globals())
__dir__ = _lazy.listing(_PUBLIC, globals())
