"""Circuit relay v2: the relay service a public node offers, and the client that
keeps reservations on relays while the node is not reachable.

Standard libp2p on the wire (``/libp2p/circuit/relay/0.2.0/hop`` and ``/stop``,
py-libp2p 0.8.1's ``libp2p.relay.circuit_v2``), so go-, js- and rust-libp2p nodes
can reserve on our relays and we on theirs. What is ours is the limits, chosen for
a volunteer relay (a seller's laptop that happens to be reachable) and enforced
here where py-libp2p leaves them out:

=========================  =========  ==================================================
limit                      default    why
=========================  =========  ==================================================
reservations               64         one idle connection each; a public node serves
                                      the NAT'd majority around it
reservations per IP        4          one household (or one attacker) cannot take all
circuits at once           32         relayed connections through us, all peers
circuits per reserved peer 4          one popular seller cannot take all
bytes per circuit          8 MiB      both directions together, then the circuit is
                                      reset and the peers dial a new one; a catch-up
                                      sync of a few thousand listings fits
seconds per circuit        1800       DCUtR replaces most circuits by a direct
                                      connection within seconds; the rest reconnect
reservation lifetime       900 s      clients refresh well before; a client that
                                      vanished frees its slot at once (see below)
=========================  =========  ==================================================

py-libp2p 0.8.1 defects handled in :class:`RelayProtocol` (a subclass, not a patch,
so it touches only the hosts that use it):

1. Only a per-reserved-peer circuit cap exists; there is no cap on circuits in
   total, and ``HopConfig``'s per-IP caps are defined but never read. Both are
   enforced here.
2. A reservation of a peer that disconnected keeps its slot until it expires
   (an hour by default): a few clients that came and went filled the relay.
   Reservations of peers no longer connected are dropped before counting.
3. The STOP side tags the relayed connection with its *own* id as the relay's
   (``handle_incoming_connection`` uses ``host.get_id()``), so the target's view
   of the connection named the wrong relay. The relay is the peer the STOP
   stream came from.
4. The relay logs an empty "Error reading from hop stream" at ERROR after every
   request (the client closing the stream after its answer is taken for an
   error); :func:`quiet_hop_eof` filters just that record.
5. ``RelayConfig()``'s default client role sends a RESERVE before every dial
   through a relay; the transport is built with the STOP role only and
   reservations are made on purpose by :class:`RelayClient`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost, INetStream
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import (
    PROTOCOL_ID as HOP_PROTOCOL,
)
from libp2p.relay.circuit_v2.protocol import (
    STOP_PROTOCOL_ID as STOP_PROTOCOL,
)
from libp2p.relay.circuit_v2.protocol import (
    CircuitV2Protocol,
)
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport

__all__ = [
    "HOP_PROTOCOL",
    "STOP_PROTOCOL",
    "RelayClient",
    "RelayProtocol",
    "ServiceLimits",
    "circuit_address",
    "new_transport",
    "quiet_hop_eof",
]

log = logging.getLogger("p2pmarket.network.relaying")
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """What our relay service gives away (the table in the module docstring)."""

    max_reservations: int = 64
    max_reservations_per_ip: int = 4
    max_circuits: int = 32
    max_circuits_per_peer: int = 4
    circuit_bytes: int = 8 * MiB
    circuit_seconds: int = 1800
    reservation_ttl: int = 900

    def for_libp2p(self) -> RelayLimits:
        return RelayLimits(
            duration=self.circuit_seconds,
            data=self.circuit_bytes,
            max_circuit_conns=self.max_circuits_per_peer,
            max_reservations=self.max_reservations,
            reservation_ttl=self.reservation_ttl,
        )


def _remote_ip(stream: INetStream) -> str | None:
    try:
        remote = stream.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
    except Exception:
        return None
    return str(remote[0]) if remote else None


class RelayProtocol(CircuitV2Protocol):
    """py-libp2p's circuit v2 protocol with our limits and fixes (module docstring).

    It always answers STOP (we can be reached through relays). The HOP side, the
    relay service, is switched on and off with :meth:`serve` as our reachability
    changes: a node behind NAT must not offer to relay.
    """

    def __init__(self, host: IHost, limits: ServiceLimits) -> None:
        super().__init__(host, limits.for_libp2p(), allow_hop=False)
        self.service_limits = limits
        self.circuits = 0  # circuits open through us now
        self.refused = 0  # reservations and circuits refused over a limit
        self.serving = False

    def serve(self, on: bool) -> bool:
        """Offer (or stop offering) the relay service; stopping drops every
        reservation so clients look for another relay at once. True if that
        changed anything."""
        if on == self.serving:
            return False
        self.serving = on
        if on:
            self.host.set_stream_handler(HOP_PROTOCOL, self._handle_hop_stream)
        else:
            self.host.remove_stream_handler(HOP_PROTOCOL)
            self.resource_manager._reservations.clear()
        return True

    @property
    def reservations(self) -> int:
        self._forget_departed()
        return len(self.resource_manager._reservations)

    def _forget_departed(self) -> None:
        """Defect 2: a reservation lives only as long as its client's connection."""
        table = self.resource_manager._reservations
        connections = self.host.get_network().connections
        for peer in [p for p in table if not connections.get(p)]:
            del table[peer]

    async def _refuse(self, stream: INetStream, why: str) -> None:
        self.refused += 1
        log.info("relay: refused %s (%s)", stream.muxed_conn.peer_id, why)
        await self._send_status(stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, why)

    async def _handle_reserve(self, stream: INetStream, msg: HopMessage) -> None:
        self._forget_departed()
        peer = stream.muxed_conn.peer_id
        table = self.resource_manager._reservations
        if peer not in table:
            if len(table) >= self.service_limits.max_reservations:
                await self._refuse(stream, "relay at its reservation limit")
                return
            ip = _remote_ip(stream)
            if ip is not None:
                same_ip = sum(
                    1
                    for other in table
                    for conn in self.host.get_network().connections.get(other, [])
                    if _conn_ip(conn) == ip
                )
                if same_ip >= self.service_limits.max_reservations_per_ip:
                    await self._refuse(stream, "too many reservations from one address")
                    return
        await super()._handle_reserve(stream, msg)

    async def _handle_connect(self, stream: INetStream, msg: HopMessage) -> None:
        if self.circuits >= self.service_limits.max_circuits:
            await self._refuse(stream, "relay at its circuit limit")
            await stream.reset()
            return
        self.circuits += 1
        try:
            await super()._handle_connect(stream, msg)
        finally:
            self.circuits -= 1

    async def handle_incoming_connection(self, stream: INetStream, remote_peer_id: bytes) -> None:
        """Defect 3: the connection is tagged with the relay it came through."""
        try:
            peer = ID(remote_peer_id)
            relay = stream.muxed_conn.peer_id
            address = multiaddr.Multiaddr(f"/p2p/{relay}/p2p-circuit/p2p/{peer}")
            raw = RawConnection(
                stream=stream,
                initiator=False,
                connection_type=ConnectionType.RELAYED,
                addresses=[address],
            )
            muxed = await self.host.upgrade_inbound_connection(raw, address)
            for conn in self.host.get_network().connections.get(peer, []):
                if getattr(conn, "muxed_conn", None) is muxed:
                    # DCUtR finds relayed connections by these addresses
                    conn.set_transport_info([address], ConnectionType.RELAYED)  # type: ignore[attr-defined]
        except Exception as exc:
            await stream.close()
            raise ConnectionError(f"relayed connection failed: {exc}") from exc


def _conn_ip(conn: Any) -> str | None:
    try:
        remote = conn.muxed_conn.get_remote_address()
    except Exception:
        return None
    return str(remote[0]) if remote else None


class _HopEofFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Error reading from hop stream") and message.endswith(": "))


def quiet_hop_eof() -> None:
    """Defect 4 (idempotent)."""
    logger = logging.getLogger("libp2p.relay.circuit_v2.protocol")
    if not any(isinstance(f, _HopEofFilter) for f in logger.filters):
        logger.addFilter(_HopEofFilter())


def new_transport(host: IHost, protocol: RelayProtocol) -> CircuitV2Transport:
    """The transport that dials through relays (defect 5: STOP role only)."""
    return CircuitV2Transport(host, protocol, RelayConfig(roles=RelayRole.STOP))


def _split(addr: Any) -> tuple[str, str | None]:
    """(``addr`` without a trailing /p2p/…, that peer id or None)."""
    text = str(addr)
    head, sep, tail = text.rpartition("/p2p/")
    if sep and "/" not in tail:
        return head, tail
    return text, None


def _usable(addr: str) -> bool:
    return "/p2p-circuit" not in addr and "/ip4/0.0.0.0/" not in addr and "/ip6/::/" not in addr


def circuit_address(relay_addr: str, relay: ID, own: ID) -> str:
    """``<relay's address>/p2p/<relay>/p2p-circuit/p2p/<own>``: how peers dial us
    through ``relay``."""
    base, _ = _split(relay_addr)
    return f"{base}/p2p/{relay}/p2p-circuit/p2p/{own}"


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0


class RelayClient:
    """Keeps reservations with up to ``wanted`` relays while the node is private.

    Relays are chosen among connected peers that offer the HOP protocol (so, by
    the rule in :func:`p2pmarket.network.reachability.Reachability.is_public_peer`,
    among public peers), in random order to spread the load. A relay that refuses
    is tried again after a backoff (30 s doubling to 30 min); one whose connection
    drops is forgotten at once and another one is chosen.
    """

    BACKOFF_FIRST = 30.0
    BACKOFF_MAX = 1800.0
    REFRESH_MARGIN = 120.0  # re-reserve this long before the reservation expires

    def __init__(
        self,
        host: IHost,
        transport: CircuitV2Transport,
        *,
        wanted: int = 2,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._transport = transport
        self._wanted = wanted
        self._timeout = timeout
        self._clock = clock
        self._relays: dict[ID, int] = {}  # relay -> reservation expiry (unix seconds)
        self._backoff: dict[ID, _Backoff] = {}

    @property
    def relays(self) -> tuple[ID, ...]:
        return tuple(self._relays)

    def drop_all(self) -> bool:
        """Forget every reservation (we became public); True if there were any."""
        had = bool(self._relays)
        for relay in list(self._relays):
            self._forget(relay)
        return had

    def _forget(self, relay: ID) -> None:
        self._relays.pop(relay, None)
        # the transport's own refresher would keep refreshing it otherwise
        self._transport._reservations.pop(relay, None)
        self._transport._reservation_proofs.pop(relay, None)

    async def keep(self, candidates: Iterable[ID], nursery: trio.Nursery) -> bool:
        """One round: drop relays that are gone (``candidates``: the connected
        peers offering the relay service now), refresh, fill up to ``wanted``.
        True if the set of relays changed."""
        changed = False
        offered = set(candidates)
        for relay in list(self._relays):
            if relay not in offered:  # disconnected, or no longer relays
                log.info("relay %s is gone", relay)
                self._forget(relay)
                changed = True
        now = self._clock()
        for relay, expiry in list(self._relays.items()):
            if expiry - now < self.REFRESH_MARGIN and not await self._reserve(relay, nursery):
                self._forget(relay)
                changed = True
        pool = [p for p in offered if p not in self._relays and self._may_try(p, now)]
        random.shuffle(pool)
        for relay in pool:
            if len(self._relays) >= self._wanted:
                break
            if await self._reserve(relay, nursery):
                changed = True
        return changed

    def _may_try(self, peer: ID, now: float) -> bool:
        backoff = self._backoff.get(peer)
        return backoff is None or backoff.until <= now

    async def _reserve(self, relay: ID, nursery: trio.Nursery) -> bool:
        ok = False
        with trio.move_on_after(self._timeout):
            try:
                stream = await self._host.new_stream(relay, [HOP_PROTOCOL])
                try:
                    ok = await self._transport.reserve(stream, relay, nursery)
                finally:
                    await stream.close()
            except Exception as exc:  # the relay refused, vanished, or is no relay
                log.debug("reservation with %s failed: %r", relay, exc)
        if ok:
            self._backoff.pop(relay, None)
            self._relays[relay] = int(self._transport._reservations.get(relay, 0))
            log.info("reserved a slot on relay %s", relay)
        else:
            backoff = self._backoff.setdefault(relay, _Backoff())
            delay = min(self.BACKOFF_FIRST * 2**backoff.failures, self.BACKOFF_MAX)
            backoff.failures += 1
            backoff.until = self._clock() + delay
        return ok

    def circuit_addresses(self, per_relay: int = 2) -> list[str]:
        """Our circuit addresses: through each relay, at up to ``per_relay`` of
        the relay's own addresses (public ones before loopback and LAN)."""
        own = self._host.get_id()
        store = self._host.get_peerstore()
        found: list[str] = []
        for relay in self._relays:
            try:
                known = [str(a) for a in store.addrs(relay)]
            except Exception:
                known = []
            usable = sorted(
                dict.fromkeys(_split(a)[0] for a in known if _usable(a)), key=_private_last
            )
            found.extend(circuit_address(a, relay, own) for a in usable[:per_relay])
        return found


def _private_last(addr: str) -> int:
    parts = addr.split("/")
    if len(parts) < 3:
        return 2
    host = parts[2]
    if host.startswith("127.") or host == "::1":
        return 2
    if host.startswith(("10.", "192.168.")) or host.startswith("172."):
        return 1
    return 0
