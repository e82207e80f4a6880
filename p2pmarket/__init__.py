"""p2pmarket: a peer-to-peer marketplace node.

The public API is small and re-exported here; everything else is internal::

    from p2pmarket import Node
    with Node.open("~/market") as node:
        for listing in node.search("sepeda lipat").listings:
            print(listing.title)
"""

from __future__ import annotations

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
