"""The names ``p2pmarket`` exports are its public API: adding or removing one is a
deliberate act, made here as well."""

from __future__ import annotations

import p2pmarket

PUBLIC = {
    "ConfigError",
    "IdentityError",
    "InvalidInput",
    "InvalidRecord",
    "Listing",
    "ListingAdded",
    "ListingUpdated",
    "ListingWithdrawn",
    "Message",
    "MessageReceived",
    "MessageState",
    "MessageStateChanged",
    "NetworkConfig",
    "NetworkError",
    "Node",
    "NodeStatus",
    "OfflineError",
    "PeerConnected",
    "PeerDisconnected",
    "PeerInfo",
    "ProfileUpdated",
    "Contract",
    "Reputation",
    "Review",
    "ReviewAdded",
    "SellerInfo",
    "TradeState",
    "TradeUpdated",
    "TradeView",
    "NotFound",
    "P2PMarketError",
    "Page",
    "Profile",
    "StoreError",
    "StoreLocked",
    "Tombstone",
    "WrongPassphrase",
    "format_id",
    "init_home",
    "open_node",
    "parse_id",
}


def test_the_package_exports_exactly_the_public_names() -> None:
    exported = {name for name in dir(p2pmarket) if not name.startswith("_")} - {"annotations"}
    # Subpackages appear as attributes once imported; they are reached by path.
    modules = {name for name in exported if type(getattr(p2pmarket, name)).__name__ == "module"}
    assert exported - modules == PUBLIC


def test_every_error_derives_from_the_one_root() -> None:
    for name in PUBLIC:
        value = getattr(p2pmarket, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, p2pmarket.P2PMarketError), name
