"""Building the libp2p host, and small facts about its connections and peers.

py-libp2p 0.8.1 leaves a cancelled host's sockets open; :func:`hang_up_all` is
how a node leaves so that peers see it go at once.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Literal

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pmarket.errors import InvalidInput
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.limits import Gate, connection_config

log = logging.getLogger("p2pmarket.network")


def build_host(
    seed: bytes, config: NetworkConfig, gate: Gate, listen: list[multiaddr.Multiaddr]
) -> IHost:
    """A TCP + Noise + Yamux host under our connection limits (limits.py)."""
    host = new_host(
        key_pair=create_new_key_pair(seed),
        listen_addrs=listen,
        enable_mDNS=config.mdns,
        muxer_preference="YAMUX",
        connection_config=connection_config(gate.limits),
    )
    gate.install(host)
    return host


def parse_listen(text: str) -> multiaddr.Multiaddr:
    try:
        addr = multiaddr.Multiaddr(text)
    except Exception as exc:
        raise InvalidInput(f"listen address {text!r} is not a multiaddr ({exc})") from None
    if "/tcp/" not in str(addr):
        raise InvalidInput(f"listen address {text!r} must be TCP, e.g. /ip4/0.0.0.0/tcp/4690")
    return addr


async def hang_up_all(host: IHost) -> None:
    """Stop listening and close every connection so peers see us leave at
    once. py-libp2p 0.8.1 leaves both open when its host is cancelled: its
    TCP listener runs as a trio system task and went on completing
    handshakes for a stopped node inside a process that kept running
    (measured), and peers keep a dead node in their meshes and routing
    tables until TCP notices."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + 2
        listeners = getattr(host.get_network(), "listeners", {})
        for listener in list(listeners.values()):
            try:
                await listener.close()
            except Exception as exc:
                log.debug("closing a listener failed: %s", exc)
        # Each muxed connection directly: once cancellation has marked a
        # connection closed, host.disconnect() skips it and its socket stays open.
        for conns in list(host.get_network().get_connections_map().values()):
            for conn in conns:
                try:
                    await conn.muxed_conn.close()
                except Exception as exc:
                    log.debug("closing a connection failed: %s", exc)


class ConnectionEvents(INotifee):
    """Forwards connection events from the swarm to the network's own task."""

    def __init__(self, send: trio.MemorySendChannel[tuple[bool, INetConn]]) -> None:
        self._send = send

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._send.send_nowait((True, conn))

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._send.send_nowait((False, conn))

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


def dialable(addr: str) -> list[str]:
    """Turn a wildcard listen address into ones a peer could dial (loopback + LAN)."""
    for wildcard in ("/ip4/0.0.0.0/", "/ip6/::/"):
        if addr.startswith(wildcard):
            family = "ip4" if wildcard.startswith("/ip4") else "ip6"
            rest = addr[len(wildcard) :]
            hosts = ["127.0.0.1"] if family == "ip4" else ["::1"]
            if family == "ip4":
                lan = lan_address()
                if lan:
                    hosts.append(lan)
            return [f"/{family}/{h}/{rest}" for h in hosts]
    return [addr]


def lan_address() -> str | None:
    """The address of the interface with the default route (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def direction(conn: INetConn) -> Literal["inbound", "outbound", "unknown"]:
    text = str(getattr(conn, "direction", "")).lower()  # a libp2p Direction enum
    return "outbound" if "outbound" in text else "inbound" if "inbound" in text else "unknown"


def protocols(host: IHost, peer: ID) -> list[str]:
    try:
        return list(host.get_peerstore().get_protocols(peer))
    except Exception:  # an unknown peer
        return []


async def speaks(host: IHost, peer: ID, protocol: str, within: float = 10.0) -> bool:
    """Wait until identify shows ``peer`` serves ``protocol`` (False after ``within`` s)."""
    with trio.move_on_after(within):
        while protocol not in protocols(host, peer):
            await trio.sleep(0.05)
        return True
    return False


def same_place(addr: object, addrs: list[multiaddr.Multiaddr]) -> bool:
    """Whether a connection's transport address is one of ``addrs`` (ignoring
    any trailing /p2p/<id>)."""
    here = str(addr).split("/p2p/")[0]
    return any(str(a).split("/p2p/")[0] == here for a in addrs)


def reason(exc: BaseException) -> str:
    """A one-line cause from libp2p's nested dial errors."""
    seen = exc
    while seen.__cause__ is not None or getattr(seen, "exceptions", None):
        inner = getattr(seen, "exceptions", None)
        seen = inner[0] if inner else seen.__cause__  # type: ignore[assignment]
    text = str(seen).splitlines()[0] if str(seen) else type(seen).__name__
    return text[:200]
