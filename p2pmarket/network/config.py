"""Network settings and the verdicts the node gives on incoming records.

Pure data without libp2p, so that the CLI and the config file can build a
:class:`NetworkConfig` without paying for the libp2p import.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

DEFAULT_PORT: Final = 4690
DEFAULT_LISTEN: Final = (f"/ip4/0.0.0.0/tcp/{DEFAULT_PORT}",)


class Verdict(enum.Enum):
    """What the node made of a record a peer sent."""

    ACCEPT = "accept"  # valid and newer: stored, and forwarded on gossip
    # valid but not newer than what we hold (a duplicate or a replay), or over its
    # seller's publish limit: dropped, and the forwarder is not penalised
    IGNORE = "ignore"
    REJECT = "reject"  # invalid: dropped, and the sender is penalised


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """How a node joins the network. ``follow`` empty means every category."""

    listen: tuple[str, ...] = DEFAULT_LISTEN
    bootstrap: tuple[str, ...] = ()
    mdns: bool = True
    follow: tuple[str, ...] = ()
    heartbeat: float = 1.0  # GossipSub heartbeat, seconds (py-libp2p's default is 120)
    rate: float = 100.0  # gossip records a second one peer may send us…
    burst: float = 1000.0  # …with bursts up to this many
    # Per seller (author key), however many peers forward them: p2pmarket/sellerlimit.py.
    # 3/s (10,800 an hour) is above what one core can stamp (~8,000 an hour).
    seller_rate: float = 3.0  # new records a second one seller may have us store…
    seller_burst: float = 500.0  # …with bursts up to this many
    # The DHT's mode: "server" answers DHT queries, "client" only asks, "auto" is a
    # client until AutoNAT says peers can dial us (network/dht_mode.py).
    dht_mode: str = "auto"
    dht_server: bool = True  # False is the older spelling of dht_mode="client"
    connect_timeout: float = 10.0
    dht_timeout: float = 20.0
    sync_on_connect: bool = True  # catch up with each peer we dial
    sync_interval: float = 600.0  # …and with one peer this often, seconds
    mail_interval: float = 300.0  # ask our mailbox holders for mail this often, seconds
    hold_mail: bool = True  # keep offline mail for others (the node's store sets how much)
    # Resource limits (network/limits.py; docs/PROTOCOL.md, "Resource limits").
    max_connections: int = 100  # connections peers dial to us, in total
    outbound_room: int = 25  # connections we dial may go this far over that
    max_connections_per_peer: int = 3  # both directions (a simultaneous dial makes 2)
    max_connections_per_ip: int = 8  # inbound, from one IP address
    max_streams_per_peer: int = 64  # inbound streams of one peer open at once
    limit_loopback: bool = False  # also count 127.0.0.1 / ::1 per IP (tests do)
    # Reachability (network/reachability.py): serve as a circuit relay v2 while
    # AutoNAT says we are public (limits in network/relaying.py), and ask the
    # router for a port mapping by UPnP in the background.
    relay_service: bool = True
    upnp: bool = True
