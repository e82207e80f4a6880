"""Peers: dialling and redialling them, the connection events, and their conduct.

A peer that misbehaves is charged in GossipSub's score at once and in our own
ledger (conduct.py), which bans it past a threshold: it is hung up on, its new
connections are closed as they open, and it is neither dialled nor redialled
until the ban ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
from libp2p.abc import IHost, INetConn
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as LibPeerInfo

from p2pmarket.errors import InvalidInput, NetworkError, P2PMarketError
from p2pmarket.events import PeerInfo
from p2pmarket.network.addresses import parse_peer_address
from p2pmarket.network.conduct import Conduct
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.hosts import direction, reason, same_place
from p2pmarket.network.limits import Gate, hang_up
from p2pmarket.network.peerbook import PeerBook

log = logging.getLogger("p2pmarket.network")

REDIAL_EVERY: Final = 5.0
# on_connected(host, peer, outbound, first connection to it, its addresses)
OnConnected = Callable[[IHost, ID, bool, bool, "list[str]"], None]
Lookup = Callable[[ID], Awaitable["LibPeerInfo | None"]]
# dial(peer, addresses) -> connected: directly, or through a relay (reachability.py)
Dial = Callable[[ID, "list[str]"], Awaitable[bool]]


class Peers:
    """Connections to peers and what we hold against them. :meth:`start` runs
    its tasks in the network's nursery once the host runs."""

    def __init__(
        self,
        config: NetworkConfig,
        *,
        book: PeerBook,
        gate: Gate,
        counters: dict[str, int],
        charge_score: Callable[[ID, float], None],
        score: Callable[[str], float],
        on_connected: OnConnected,
        on_disconnected: Callable[[ID], None],
    ) -> None:
        self._config = config
        self.book = book
        self._gate = gate
        self._counters = counters
        self._charge_score = charge_score
        self._score = score
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._conduct = Conduct()
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None
        self._lookup: Lookup | None = None
        self._dial: Dial | None = None

    def start(
        self,
        nursery: trio.Nursery,
        host: IHost,
        events: trio.MemoryReceiveChannel[tuple[bool, INetConn]],
        lookup: Lookup,
        dial: Dial,
    ) -> None:
        self._host, self._nursery, self._lookup, self._dial = host, nursery, lookup, dial
        nursery.start_soon(self._connections, events)
        for address in self._config.bootstrap:
            # In the book first: an address that does not answer now is retried
            # with the book's backoff (and shows as "known" in status).
            self.book.remember(address.rsplit("/p2p/", 1)[-1], [address], time.time())
            nursery.start_soon(self._dial_quietly, address)
        nursery.start_soon(self._redial)

    def stopped(self) -> None:
        self._nursery = None

    def _start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    # -- conduct ---------------------------------------------------------------

    def penalise(self, peer: ID, amount: float, *, new: bool = True) -> None:
        """Charge a peer: in GossipSub's score at once, and in our own ledger
        (``new``: a new offence, not a debt re-applied on reconnection), which
        bans it past the threshold (conduct.py)."""
        self._charge_score(peer, amount)
        if new:
            self._banned_now(peer, self._conduct.charge(peer.to_base58(), amount, time.monotonic()))

    def ban(self, peer: ID) -> None:
        """Ban a peer whatever it owes (it broke a sync session)."""
        self._banned_now(peer, self._conduct.ban(peer.to_base58(), time.monotonic()))

    def _banned_now(self, peer: ID, until: float | None) -> None:
        """A ban just began (``until`` set): hang up now; the peer is neither
        dialled nor let back in until it ends."""
        if until is None:
            return
        self._counters["peers_banned"] += 1
        log.warning(
            "banned %s for %.0f s: it owes %.0f penalty points",
            peer,
            until - time.monotonic(),
            self.owed(peer.to_base58()),
        )
        self._start_soon(self.hang_up_on, peer)

    def owed(self, peer_id: str) -> float:
        """Penalty points a peer still owes (decaying by 1% a second)."""
        return self._conduct.owed(peer_id, time.monotonic())

    def banned(self, peer_id: str) -> float | None:
        """Seconds left of a peer's ban, or None if it is not banned."""
        return self._conduct.banned(peer_id, time.monotonic())

    async def hang_up_on(self, peer: ID) -> None:
        """Close every connection to ``peer``, within 2 s."""
        if self._host is not None:
            await hang_up(list(self._host.get_network().get_connections(peer)))

    # -- dialling ----------------------------------------------------------------

    async def connect(self, address: str) -> PeerInfo:
        """Dial ``address`` (a multiaddr ending in ``/p2p/<peer id>``) and remember
        the peer: the peer book is on disk (fsynced) when this returns, so a
        connection reported done survives the daemon dying a moment later."""
        info = parse_peer_address(address)
        host = self._require_host()
        peer_id = info.peer_id.to_base58()
        if info.peer_id == host.get_id():
            raise InvalidInput("that address is this node itself")
        left = self.banned(peer_id)
        if left is not None:
            raise NetworkError(
                f"{peer_id} is banned for misbehaving (invalid records or a broken "
                f"protocol) for another {left / 60:.0f} min"
            )
        connected = host.get_network().get_connections(info.peer_id)
        try:
            with trio.fail_after(self._config.connect_timeout):
                if "/p2p-circuit" in address:
                    # A peer behind NAT, through its relay (host.connect cannot).
                    if not connected and not (
                        self._dial is not None and await self._dial(info.peer_id, [address])
                    ):
                        raise NetworkError("the relay refused or is unreachable")
                elif not connected:
                    # Dial the address we were given. py-libp2p 0.8.1 dials only the
                    # first known TCP address of a peer, and for a while refuses to
                    # dial a peer whose addresses all failed (its "negative cache"):
                    # a stale peer-book or bootstrap address would hide the right one.
                    host.get_peerstore().clear_addrs(info.peer_id)
                    host.get_network().unblock_peer(info.peer_id)  # type: ignore[attr-defined]
                    await host.connect(info)
                elif not any(
                    same_place(a, info.addrs)
                    for c in connected
                    for a in c.get_transport_addresses()
                ):
                    # Connected already, but elsewhere: host.connect() would reuse
                    # that connection and say yes to any address. Try the one given.
                    await self._try_address(info)
        except trio.TooSlowError:
            raise NetworkError(
                f"could not reach {info.peer_id} within {self._config.connect_timeout:g} s"
            ) from None
        except Exception as exc:
            raise NetworkError(f"could not connect to {address}: {reason(exc)}") from None
        self.book.seen(peer_id, [str(a) for a in info.addrs], time.time())
        self.book.save()
        return self.info(info.peer_id)

    def _require_host(self) -> IHost:
        if self._host is None or self._nursery is None:
            raise NetworkError("the network is not running")
        return self._host

    async def _try_address(self, info: LibPeerInfo) -> None:
        """Dial each of ``info``'s addresses on a fresh connection, which proves
        the peer is there (the Noise handshake checks its id); then close it."""
        network = self._require_host().get_network()
        failure: Exception | None = None
        for addr in info.addrs:
            try:
                conn = await network.dial_addr(addr, info.peer_id)
            except Exception as exc:
                failure = exc
                continue
            with contextlib.suppress(Exception):
                await conn.close()
            return
        raise failure or NetworkError("no address to dial")

    async def _dial_quietly(self, address: str) -> None:
        try:
            await self.connect(address)
        except P2PMarketError as exc:
            log.warning("bootstrap %s: %s", address, exc)

    async def _redial(self) -> None:
        """Dial known peers we are not connected to, each on its own backoff."""
        host = self._require_host()
        while True:
            connected = {p.to_base58() for p in host.get_connected_peers()}
            due = self.book.due(time.time(), connected)
            for peer in [p for p in due if self.banned(p.peer_id) is None][:8]:
                if not await self._connect_any(dial_addresses(peer.peer_id, peer.addrs)):
                    self.book.failed(peer.peer_id, time.time())
            self.book.save()
            await trio.sleep(REDIAL_EVERY)

    async def _connect_any(self, addrs: list[str]) -> bool:
        """Dial a remembered peer's addresses in turn (an invite carries several:
        public, LAN, relayed); True at the first that connects."""
        for address in addrs:
            try:
                await self.connect(address)
            except P2PMarketError:
                continue
            return True
        return False

    async def reach(self, peer: ID) -> bool:
        """Be connected to ``peer``: already, or by its known addresses, or by
        its addresses from a DHT lookup."""
        host = self._require_host()
        if host.get_network().get_connections(peer):
            return True
        with trio.move_on_after(self._config.connect_timeout):
            known = self._known_addrs(peer)
            with contextlib.suppress(Exception):  # an unknown peer, a failed dial
                await self._dial_known(peer, known)
            if not host.get_network().get_connections(peer) and self._lookup is not None:
                await self._look_up_and_dial(peer, set(known))
        return bool(host.get_network().get_connections(peer))

    async def _look_up_and_dial(self, peer: ID, tried: set[str]) -> None:
        """Look ``peer`` up in the DHT, and dial each address as soon as it is
        learnt rather than when the lookup ends: py-libp2p 0.8.1's lookup goes
        on to query the peer itself, which behind NAT takes the whole deadline,
        while the relay's answer (its circuit address) came in milliseconds
        (measured: 26 s to a first message to a NAT'd seller)."""
        host = self._require_host()
        assert self._lookup is not None
        lookup = self._lookup

        def connected() -> bool:
            return bool(host.get_network().get_connections(peer))

        async with trio.open_nursery() as nursery:

            async def look() -> None:
                with contextlib.suppress(Exception):
                    found = await lookup(peer)
                    if found is not None and not connected():
                        await self._dial_known(peer, [str(a) for a in found.addrs])
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                while not connected():
                    await trio.sleep(0.2)
                    addrs = self._known_addrs(peer)
                    if any(a not in tried for a in addrs):
                        tried.update(addrs)
                        with contextlib.suppress(Exception):
                            await self._dial_known(peer, addrs)
                nursery.cancel_scope.cancel()

            nursery.start_soon(look)
            nursery.start_soon(watch)

    def _known_addrs(self, peer: ID) -> list[str]:
        try:
            return [str(a) for a in self._require_host().get_peerstore().addrs(peer)]
        except Exception:  # a peer the peerstore has never heard of
            return []

    async def _dial_known(self, peer: ID, addrs: list[str]) -> None:
        """Dial ``peer`` at ``addrs``: through a relay if it announces circuit
        addresses (it sits behind NAT), else directly."""
        host = self._require_host()
        if self._dial is not None:
            await self._dial(peer, addrs)
        else:
            await host.connect(LibPeerInfo(peer, host.get_peerstore().addrs(peer)))

    # -- connection events ---------------------------------------------------------

    async def _connections(self, events: trio.MemoryReceiveChannel[tuple[bool, INetConn]]) -> None:
        host = self._require_host()  # kept: the tasks outlive `running` by a moment
        async for is_open, conn in events:
            peer = conn.muxed_conn.peer_id
            peer_id = peer.to_base58()
            if is_open:
                if self.banned(peer_id) is not None:
                    self._counters["banned_refused"] += 1
                    self._start_soon(self.hang_up_on, peer)
                    continue
                excess = self._gate.check(host, self._score)
                if excess:  # over a connection limit: the newest or worst-scored go
                    self._start_soon(hang_up, excess)
                    if conn in excess:
                        continue
                addrs = [str(a) for a in conn.get_transport_addresses()]
                owed = self.owed(peer_id)
                if owed >= 1:
                    self.penalise(peer, owed, new=False)  # libp2p forgot it on disconnect
                outbound = direction(conn) == "outbound"
                if outbound:
                    self.book.seen(peer_id, addrs, time.time())
                first = len(host.get_network().get_connections(peer)) == 1
                self._on_connected(host, peer, outbound, first, addrs)
            elif not host.get_network().get_connections(peer):
                # The rate bucket is kept: reconnecting must not refill it.
                self._on_disconnected(peer)

    # -- what we know ----------------------------------------------------------------

    def info(self, peer: ID) -> PeerInfo:
        conns = self._require_host().get_network().get_connections(peer)
        addrs = tuple(str(a) for c in conns for a in c.get_transport_addresses())
        return PeerInfo(peer.to_base58(), addrs, direction(conns[0]) if conns else "unknown")

    def connected(self) -> list[PeerInfo]:
        return [self.info(p) for p in self._require_host().get_connected_peers()]


def dial_addresses(peer_id: str, addrs: list[str]) -> list[str]:
    """The peer book's addresses of ``peer_id`` as dialable multiaddrs, each ending
    in ``/p2p/<peer_id>``. A circuit address already names a peer (its relay, as
    ``…/p2p/<relay>/p2p-circuit``): the target is still appended."""
    own = f"/p2p/{peer_id}"
    return [a if a.endswith(own) else a + own for a in addrs]
