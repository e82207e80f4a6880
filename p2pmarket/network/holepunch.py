"""DCUtR hole punching: a relayed connection becomes a direct one where the NATs allow.

py-libp2p 0.8.1's ``DCUtRProtocol`` does the protocol (CONNECT / SYNC over the
relayed connection, then both sides dial each other's predicted public address
at once, each from its own listen port, so that two endpoint-independent NATs
see an outgoing connection on each side and let the other side's SYN in: TCP
simultaneous open). Its TCP transport binds those dials to the listen port with
SO_REUSEPORT (``TCP.dial_with_source``), and it predicts our public address as
the WAN IP that identify observed with our listen port, which is right behind
a port-preserving NAT. What :class:`HolePunch` changes, each measured in network
namespaces (two hosts behind nftables masquerade routers that drop unsolicited
SYNs, one public relay; see docs/ and the note on py-libp2p 0.8.1):

1. **The source of the hole-punch dials.** 0.8.1 takes the first TCP address of
   ``host.get_addrs()`` - what we *announce* - as the socket to dial from. A node
   listening on ``0.0.0.0`` (our default) announces ``127.0.0.1`` first, so every
   hole-punch dial was bound to ``127.0.0.1:<port>`` and failed at once with
   EINVAL: no SYN ever left, and DCUtR never worked outside one machine. We bind
   to the listening socket's own address instead: the wildcard (the kernel picks
   the interface, the port stays the listen port) or the concrete listen IP.
2. **Who starts, and when.** As shipped both sides start a session every 2 s on
   every relayed connection; through real NATs the two sessions ran at once and
   both failed. Only the side that *received* the relayed connection starts
   (the spec's B), within a quarter of a second of seeing it, one session per
   peer at a time, so that a slow peer does not hold up the others.
3. **The first, unilateral try** (spec step 0) dialled every known address of
   the peer, including its LAN ones, which a NAT drops: 3 s lost before every
   punch. Only addresses outside private and loopback ranges are tried first,
   for :data:`UNILATERAL_TIMEOUT`; LAN addresses are still dialled, together
   with the punch (a peer on our own LAN is reached that way).
4. **Bounded retries.** At most :data:`MAX_SESSIONS` sessions per peer while it
   stays connected, :data:`RETRY_AFTER` seconds apart (each session is 0.8.1's
   three dial rounds); 0.8.1 resets its own count whenever any connection to the
   peer closes. A symmetric NAT thus costs a bounded number of failed dials, and
   the relayed connection goes on working.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol

__all__ = ["MAX_SESSIONS", "RETRY_AFTER", "HolePunch", "is_inbound", "is_relayed"]

log = logging.getLogger("p2pmarket.network.holepunch")

MAX_SESSIONS = 3  # per peer, while it stays connected
RETRY_AFTER = 10.0  # seconds between two sessions with one peer
WATCH_EVERY = 0.25  # how often connections are looked at for new relayed ones
# The unilateral try reaches a public peer in a few round trips; an address a
# NAT drops (a peer's own observed public one) must not hold up the punch long.
UNILATERAL_TIMEOUT = 1.5

# Addresses that lead to a peer only from its own network (or machine).
_LOCAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


class HolePunch(DCUtRProtocol):
    """py-libp2p 0.8.1's DCUtR with the changes listed in the module docstring."""

    def __init__(self, host: IHost, *, dial_timeout: int = 3) -> None:
        super().__init__(host, dial_timeout=dial_timeout)
        self._driving: set[ID] = set()
        self._sessions: dict[ID, int] = {}  # started, per connected peer
        self._not_before: dict[ID, float] = {}

    @property
    def sessions(self) -> dict[ID, int]:
        """Sessions started per connected peer (for tests and status)."""
        return dict(self._sessions)

    async def _auto_drive_loop(self) -> None:
        while True:
            await trio.sleep(WATCH_EVERY)
            connections = self.host.get_network().connections
            for gone in [p for p in self._sessions if not connections.get(p)]:
                # a peer that comes back over a new relayed connection gets new tries
                self._sessions.pop(gone, None)
                self._not_before.pop(gone, None)
            now = trio.current_time()
            for peer, conns in list(connections.items()):
                if peer in self._driving or peer in self._in_progress:
                    continue
                if self._sessions.get(peer, 0) >= MAX_SESSIONS:
                    continue
                if now < self._not_before.get(peer, 0.0) or self._nursery is None:
                    continue
                if any(not is_relayed(c) for c in conns):
                    continue  # direct already
                if any(is_relayed(c) and is_inbound(c) for c in conns):
                    self._driving.add(peer)
                    self._sessions[peer] = self._sessions.get(peer, 0) + 1
                    self._nursery.start_soon(self._drive, peer)

    async def _drive(self, peer: ID) -> None:
        try:
            if await self.initiate_hole_punch(peer):
                log.info("hole punched: a direct connection to %s", peer)
            else:
                log.debug("hole punch to %s failed (attempt %d)", peer, self._sessions[peer])
        except Exception as exc:  # py-libp2p raises what it likes; the relay still works
            log.debug("hole punch to %s failed: %r", peer, exc)
        finally:
            self._driving.discard(peer)
            self._not_before[peer] = trio.current_time() + RETRY_AFTER
            # 0.8.1's own per-peer cap (3) would end our sessions early: ours rules
            self._hole_punch_attempts.pop(peer, None)

    async def _try_unilateral_upgrade(self, peer_id: ID) -> bool:
        """Spec step 0, dialling only addresses a NAT does not hide (see 3. above)."""
        try:
            addrs = [
                a
                for a in self.host.get_peerstore().addrs(peer_id)
                if "/p2p-circuit" not in str(a) and not _local(a)
            ]
        except Exception:
            return False
        if not addrs:
            return False
        with trio.move_on_after(UNILATERAL_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for addr in addrs:
                    nursery.start_soon(self._dial_peer, peer_id, addr)
        return await self._verify_direct_connection(peer_id)

    async def _dial_peer(
        self,
        peer_id: ID,
        addr: multiaddr.Multiaddr,
        source: tuple[str, int] | None = None,
        as_responder: bool = False,
    ) -> None:
        if source is not None:  # a hole-punch dial: from our listening socket (see 1.)
            source = listen_source(self.host.get_transport_addrs(), addr)
            if source is None:
                log.debug("no listen socket to dial %s from: skipped", addr)
                return
        await super()._dial_peer(peer_id, addr, source, as_responder)


def listen_source(
    listening: list[multiaddr.Multiaddr], target: multiaddr.Multiaddr
) -> tuple[str, int] | None:
    """The (ip, port) a hole-punch dial to ``target`` must leave from: one of our
    TCP listen sockets of the same IP family. A wildcard listener gives the
    wildcard (the kernel picks the interface; the port is what the NAT maps).
    None when no listener fits: a loopback target is dialled only from a
    loopback listener (from anywhere else it would reach our own machine),
    and a loopback listener cannot reach beyond the machine."""
    dest = _ip_port(target)
    if dest is None:
        return None
    dest_ip = ipaddress.ip_address(dest[0])
    for addr in listening:
        own = _ip_port(addr)
        if own is None:
            continue
        ip = ipaddress.ip_address(own[0])
        if ip.version != dest_ip.version:
            continue
        if ip.is_unspecified:
            if dest_ip.is_loopback:
                continue
            return own
        if ip.is_loopback == dest_ip.is_loopback:
            return own
    return None


def is_inbound(conn: Any) -> bool:
    return "inbound" in str(getattr(conn, "direction", "")).lower()


def is_relayed(conn: Any) -> bool:
    try:
        return any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except Exception:
        return False


def _ip_port(addr: multiaddr.Multiaddr) -> tuple[str, int] | None:
    for proto in ("ip4", "ip6"):
        try:
            ip = addr.value_for_protocol(proto)
            port = addr.value_for_protocol("tcp")
        except Exception:
            continue
        if ip and port:
            return str(ip), int(port)
    return None


def _local(addr: multiaddr.Multiaddr) -> bool:
    found = _ip_port(addr)
    if found is None:
        return False
    ip = ipaddress.ip_address(found[0])
    return any(ip in net for net in _LOCAL_NETS)
