"""Reachability: how peers reach us, and how we reach peers that sit behind NAT.

One object for the network coordinator, composing:

- the circuit relay v2 service (:mod:`relaying`), offered while AutoNAT says we
  are public and ``config.relay_service`` is on;
- the relay client, holding reservations on up to two public relays while AutoNAT
  says we are private, so that peers can dial us at our circuit addresses;
- DCUtR hole punching (:mod:`holepunch`, py-libp2p's ``DCUtRProtocol`` with
  fixes) on both sides: a relayed connection is upgraded to a direct one where
  the NATs allow, by itself, about a second after it opens;
- UPnP port mapping (:mod:`portmap`) in the background.

What peers learn about us: identify sends ``host.get_addrs()``, so that is
replaced on our host by :meth:`Reachability._addresses` (py-libp2p 0.8.1's own
address factory mangles circuit addresses: ``_libp2p_fixes.announce``). It
announces concrete addresses (a wildcard listen address becomes loopback and
the LAN address: announcing ``0.0.0.0`` made DCUtR dial it and fail), mapped
ones, observed ones on a listen port, and our circuit addresses while we hold
reservations; and when they change, identify is pushed to connected peers.

The AutoNAT verdict comes in as a callable returning "public", "private" or
"unknown", so this module does not depend on how it is reached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost
from libp2p.identity.identify_push.identify_push import push_identify_to_peers
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

from p2pmarket.network import _libp2p_fixes
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.holepunch import HolePunch, is_relayed
from p2pmarket.network.hosts import lan_address
from p2pmarket.network.portmap import PortMapper
from p2pmarket.network.relaying import (
    HOP_PROTOCOL,
    RelayClient,
    RelayProtocol,
    ServiceLimits,
    new_transport,
    quiet_hop_eof,
)

__all__ = ["KAD_PROTOCOL", "Kind", "Reachability"]

log = logging.getLogger("p2pmarket.network.reachability")

Kind = Literal["public", "relayed", "private", "unknown"]
KAD_PROTOCOL = "/ipfs/kad/1.0.0"  # hard-coded by py-libp2p 0.8.1 whatever the prefix asked


class Reachability:
    def __init__(
        self,
        host: IHost,
        config: NetworkConfig,
        *,
        autonat_status: Callable[[], str],
        on_change: Callable[[], None],
        limits: ServiceLimits | None = None,
        hole_punch: bool = True,
        interval: float = 1.0,
    ) -> None:
        """``limits``: what our relay service gives (defaults in relaying.py);
        ``hole_punch``: run DCUtR (tests of the relay path alone turn it off);
        ``interval``: how often the AutoNAT verdict and our relays are checked."""
        self._host = host
        self._config = config
        self._status = autonat_status
        self._on_change = on_change
        self._interval = interval
        self._hole_punch = hole_punch
        self._protocol = RelayProtocol(host, limits or ServiceLimits())
        self._transport = new_transport(host, self._protocol)
        self._client = RelayClient(host, self._transport)
        self._portmap = PortMapper(self._tcp_ports, self._addresses_changed)
        self._announce: list[multiaddr.Multiaddr] = []  # without our /p2p/ part
        self._own = multiaddr.Multiaddr(f"/p2p/{host.get_id()}")
        self._listening = host.get_addrs  # py-libp2p's own, before we replace it
        self._lan: str | None = None
        self._dirty = trio.Event()

    # -- what the coordinator reads -----------------------------------------

    @property
    def kind(self) -> Kind:
        status = self._status()
        if status == "public":
            return "public"
        if status == "private":
            return "relayed" if self._client.relays else "private"
        return "unknown"

    @property
    def relays(self) -> tuple[str, ...]:
        return tuple(str(r) for r in self._client.relays)

    @property
    def relay_service(self) -> RelayProtocol:
        """The relay service (its ``serving``, ``reservations``, ``circuits``,
        ``refused`` counters are for status and tests)."""
        return self._protocol

    @property
    def upnp_status(self) -> str:
        return self._portmap.status if self._config.upnp else "off"

    def announced(self) -> tuple[str, ...]:
        """Full multiaddrs (with ``/p2p/<our id>``) peers should dial us at."""
        return tuple(str(a) for a in self._host.get_addrs())

    @staticmethod
    def is_public_peer(host: IHost, peer: ID) -> bool:
        """May ``peer`` be our relay or mailbox holder?

        Yes if it offers the circuit relay HOP protocol (our nodes offer it only
        while AutoNAT says they are public, as go-libp2p does), or if it serves
        the DHT (Kademlia in server mode, which nodes run only while public) and
        we reached it by dialling it directly ourselves, at a non-circuit address:
        a peer that only ever dialled us, or that we reach through a relay, may
        well sit behind NAT.
        """
        try:
            protocols = set(host.get_peerstore().get_protocols(peer))
        except Exception:  # a peer we know nothing of
            return False
        if HOP_PROTOCOL in protocols:
            return True
        if KAD_PROTOCOL not in protocols:
            return False
        for conn in host.get_network().connections.get(peer, []):
            inbound = "inbound" in str(getattr(conn, "direction", "")).lower()
            if not inbound and not is_relayed(conn):
                return True
        return False

    # -- dialling -------------------------------------------------------------

    async def dial(self, peer: ID, addrs: list[str]) -> bool:
        """Connect to ``peer``: through one of its circuit addresses if it has
        any (a peer that announces them is behind NAT: its other addresses are
        LAN ones, and DCUtR will upgrade the relayed connection by itself where
        the NATs allow), else, or if every circuit fails, directly. True if
        connected, within ``config.connect_timeout`` per attempt."""
        if peer == self._host.get_id():
            return False
        if self._host.get_network().connections.get(peer):
            return True
        circuits: list[Any] = []
        direct: list[Any] = []
        for text in addrs:
            try:
                addr = multiaddr.Multiaddr(text)
            except Exception:
                continue
            (circuits if "/p2p-circuit" in text else direct).append(addr)
        log.debug("dial %s: %d circuit, %d direct addresses", peer, len(circuits), len(direct))
        for addr in circuits[:3]:
            with trio.move_on_after(self._config.connect_timeout):
                try:
                    await self._transport.dial(addr)
                    return True
                except Exception as exc:  # a relay that refuses, is gone, …
                    log.debug("dial %s through %s failed: %r", peer, addr, exc)
        if direct:
            with trio.move_on_after(self._config.connect_timeout):
                try:
                    await self._host.connect(PeerInfo(peer, direct))
                    return True
                except Exception as exc:
                    log.debug("dial %s failed: %r", peer, exc)
        return False

    # -- the background work ----------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled. Never delays start-up on the network: the UPnP
        discovery, reservations and hole punches all happen after ``started``."""
        quiet_hop_eof()
        self._refresh_announce()
        _libp2p_fixes.announce(self._host, self._addresses)
        try:
            async with background_trio_service(self._protocol), trio.open_nursery() as nursery:
                if self._hole_punch:
                    dcutr = HolePunch(self._host, dial_timeout=3)
                    nursery.start_soon(_run_service, dcutr)
                if self._config.upnp:
                    await nursery.start(self._portmap.run)
                task_status.started()
                await self._watch(nursery)
        finally:
            _libp2p_fixes.announce(self._host, None)
            self._protocol.serve(False)

    async def _watch(self, nursery: trio.Nursery) -> None:
        last_kind = self.kind
        while True:
            status = self._status()
            changed = False
            if self._protocol.serve(self._config.relay_service and status == "public"):
                nursery.start_soon(self._push_identify)  # peers learn we relay (or not)
            if status == "private":
                changed = await self._client.keep(self._relay_candidates(), nursery)
            elif self._client.drop_all():
                changed = True
            kind = self.kind
            self._dirty = trio.Event()
            # recomputed each round: observed addresses and the LAN address move too
            if self._refresh_announce():
                nursery.start_soon(self._push_identify)
                changed = True
            if changed or kind != last_kind:
                last_kind = kind
                self._on_change()
            with trio.move_on_after(self._interval):
                await self._dirty.wait()

    def _relay_candidates(self) -> list[ID]:
        host = self._host
        store = host.get_peerstore()
        found = []
        for peer in host.get_connected_peers():
            try:
                if HOP_PROTOCOL in store.get_protocols(peer):
                    found.append(peer)
            except Exception:
                continue
        return found

    def _addresses_changed(self) -> None:
        self._dirty.set()

    async def _push_identify(self) -> None:
        """Tell connected peers our new addresses (and protocols) at once."""
        with trio.move_on_after(self._config.connect_timeout):
            try:
                await push_identify_to_peers(self._host)
            except Exception as exc:
                log.debug("identify push failed: %r", exc)

    # -- addresses -------------------------------------------------------------

    def _tcp_ports(self) -> list[int]:
        ports = []
        for addr in self._host.get_transport_addrs():
            try:
                ports.append(int(addr.value_for_protocol("tcp")))
            except Exception:
                continue
        return ports

    def _addresses(self) -> list[multiaddr.Multiaddr]:
        # host.get_addrs(), called on every identify: it reads what _watch computed
        if not self._announce:
            return _concrete(list(self._listening()), self._lan)
        own = str(self._own)
        return [a if str(a).endswith(own) else a.encapsulate(self._own) for a in self._announce]

    def _refresh_announce(self) -> bool:
        """Recompute what we announce; True if it changed."""
        self._lan = lan_address()
        listen = list(self._host.get_transport_addrs())
        ports = {str(p) for p in self._tcp_ports()}
        observed = []
        manager = getattr(self._host, "_observed_addr_manager", None)
        if manager is not None:
            # only observations on a listen port can be dialled back (a NAT that
            # preserves ports, or a forwarded port); the rest name the ephemeral
            # port of one outgoing connection
            for addr in manager.addrs():
                try:
                    if addr.value_for_protocol("tcp") in ports:
                        observed.append(addr)
                except Exception:
                    continue
        texts = [str(a) for a in _concrete(listen, self._lan)]
        texts += [str(a) for a in observed] + list(self._portmap.addresses)
        if self.kind in ("private", "relayed"):
            # peers elsewhere dial the circuits; our LAN addresses serve LAN peers
            texts = self._client.circuit_addresses() + texts
        announce = [multiaddr.Multiaddr(t) for t in dict.fromkeys(texts)]
        if [str(a) for a in announce] == [str(a) for a in self._announce]:
            return False
        self._announce = announce
        return True


async def _run_service(service: Any) -> None:
    async with background_trio_service(service):
        await trio.sleep_forever()


def _concrete(addrs: list[multiaddr.Multiaddr], lan: str | None) -> list[multiaddr.Multiaddr]:
    """Wildcard listen addresses as loopback and LAN ones, which peers can dial."""
    found: list[multiaddr.Multiaddr] = []
    for addr in addrs:
        text = str(addr)
        if text.startswith("/ip4/0.0.0.0/"):
            rest = text[len("/ip4/0.0.0.0/") :]
            hosts = ["127.0.0.1"] + ([lan] if lan else [])
            found.extend(multiaddr.Multiaddr(f"/ip4/{h}/{rest}") for h in hosts)
        elif text.startswith("/ip6/::/"):
            found.append(multiaddr.Multiaddr("/ip6/::1/" + text[len("/ip6/::/") :]))
        else:
            found.append(addr)
    return found
