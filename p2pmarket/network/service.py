"""The libp2p side of a running node: one host and the protocols on it.

:class:`Network` is a thin coordinator. Each protocol has its own module, as
each protocol is its own community in py-ipv8: hosts.py builds the host,
peers.py dials peers and keeps their conduct, gossip.py is GossipSub,
routing.py the Kademlia DHT, syncing.py schedules catch-up sessions and
courier.py carries sealed envelopes. Network builds them, runs them in one
nursery and routes connection events between them.

Network knows nothing of the store. The node gives it callbacks:
``accept(data, source, topics)`` validates a record and keeps it if it is newer
(it returns a :class:`Verdict`), and ``on_event`` receives peer events.

Every libp2p call that can wait on a peer runs under a deadline (py-libp2p 0.8.1
can hang on a failed stream under load), and DHT work never runs on the gossip
path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import IHost, INetConn
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from p2pmarket.crypto.peer_id import public_key_from_peer_id
from p2pmarket.errors import NetworkError
from p2pmarket.events import Event, PeerConnected, PeerDisconnected, PeerInfo, SyncProgress
from p2pmarket.network import _libp2p_fixes
from p2pmarket.network.autonat import AutoNat
from p2pmarket.network.autonat_verdicts import Status
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.courier import Courier
from p2pmarket.network.dht_mode import DhtModeFollower, dht_mode_of
from p2pmarket.network.gossip import INVALID_PENALTY, Accept, Gossip
from p2pmarket.network.hosts import (
    ConnectionEvents,
    build_host,
    dialable,
    hang_up_all,
    parse_listen,
)
from p2pmarket.network.limits import Gate, Limits
from p2pmarket.network.mailbox import MailboxService, MailHolder
from p2pmarket.network.messaging import Messenger, OnEnvelope
from p2pmarket.network.peerbook import PeerBook
from p2pmarket.network.peers import Peers
from p2pmarket.network.reachability import Kind, Reachability
from p2pmarket.network.routing import Routing
from p2pmarket.network.sync import SyncService, SyncSource
from p2pmarket.network.syncing import SyncScheduler

log = logging.getLogger("p2pmarket.network")

__all__ = ["Accept", "Network"]


class Network:
    """One libp2p host with our gossip topics and DHT namespaces. Run with
    ``await nursery.start(network.run)``; :meth:`stop` leaves cleanly."""

    def __init__(
        self,
        seed: bytes,
        config: NetworkConfig,
        *,
        accept: Accept,
        on_event: Callable[[Event], None],
        peerbook: Path,
        now: Callable[[], int],
        sync: SyncSource | None = None,
        on_synced: Callable[[SyncProgress], None] = lambda _: None,
        on_envelope: OnEnvelope | None = None,
        mailbox: MailHolder | None = None,
        on_mail: Callable[[bytes, str], bool] | None = None,
    ) -> None:
        self.config = config
        self._seed = seed
        self._listen = [parse_listen(a) for a in config.listen]  # bad input fails here
        self._on_event = on_event
        self._now = now
        self.counters: dict[str, int] = {
            "gossip_accepted": 0,
            "gossip_ignored": 0,
            "gossip_rejected": 0,
            "rate_limited": 0,
            "dht_puts": 0,
            "dht_put_failures": 0,
            "sync_violations": 0,
            "peers_banned": 0,
            "banned_refused": 0,
        }
        book = PeerBook.load(peerbook)
        # Connection and stream caps (limits.py); bootstrap peers and those we
        # connected to (the peer book) are never dropped for the inbound caps.
        bootstrap_ids = {a.rsplit("/p2p/", 1)[-1] for a in config.bootstrap}
        self.gate = Gate(Limits.of(config), lambda p: p in bootstrap_ids or p in book.peers)
        self.gossip = Gossip(
            config, accept=accept, counters=self.counters, on_invalid=self._charge_invalid
        )
        self.routing = Routing(config, now=now, counters=self.counters)
        self.peer_set = Peers(
            config,
            book=book,
            gate=self.gate,
            counters=self.counters,
            charge_score=self.gossip.charge,
            score=self.gossip.score,
            on_connected=self._connected,
            on_disconnected=lambda peer: on_event(PeerDisconnected(peer.to_base58())),
        )
        self._syncing = (
            SyncScheduler(
                config, sync, peers=self.peer_set, counters=self.counters, on_done=on_synced
            )
            if sync is not None
            else None
        )
        self._on_envelope = on_envelope
        self._mail_holder = mailbox
        self._on_mail = on_mail
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None
        self._courier: Courier | None = None
        self.autonat: AutoNat | None = None
        self.reach: Reachability | None = None
        self.dht_mode: DhtModeFollower | None = None
        dht_mode_of(config)  # a bad dht_mode fails here, before anything starts
        self._stopping = trio.Event()
        self.sync: SyncService | None = None
        self.mailbox: MailboxService | None = None
        self.started = 0

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._nursery is not None

    @property
    def host(self) -> IHost:
        if self._host is None or self._nursery is None:
            raise NetworkError("the network is not running")
        return self._host

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        _libp2p_fixes.apply()
        config = self.config
        host = build_host(self._seed, config, self.gate, self._listen)
        pubsub, router = self.gossip.build(host)
        _libp2p_fixes.keep_own_peer_data(host)
        _libp2p_fixes.on_oversized_frame(host.get_id(), self._oversized)
        dht = self.routing.build(host)
        conn_send, conn_recv = trio.open_memory_channel[tuple[bool, INetConn]](1000)
        host.get_network().register_notifee(ConnectionEvents(conn_send))
        try:
            async with (
                host.run(self._listen),
                background_trio_service(pubsub),
                background_trio_service(router),
                background_trio_service(dht),
                trio.open_nursery() as nursery,
            ):
                if not host.get_addrs():
                    # py-libp2p 0.8.1 logs a failed listen and carries on: without this
                    # check a daemon whose port is taken would run, unreachable.
                    raise NetworkError(
                        f"cannot listen on {', '.join(config.listen)}: the port is in use "
                        "(another p2pmarket daemon?) or the address is not on this machine; "
                        "choose another with --listen"
                    )
                self._host = host
                await self._start_reachability(nursery, host, dht)
                self._start_services(nursery, host)
                await self.gossip.start(nursery, host)
                self.routing.start(nursery)
                assert self.reach is not None
                self.peer_set.start(
                    nursery, host, conn_recv, self.routing.find_peer, self.reach.dial
                )
                self._nursery = nursery
                self.started = self._now()
                task_status.started()
                try:
                    await self._stopping.wait()
                finally:
                    # Reached by stop() (the clean way) or by cancellation, in
                    # which case py-libp2p may already have abandoned some sockets.
                    await hang_up_all(host)
                    self._stopped()
                nursery.cancel_scope.cancel()
        finally:
            self._stopped()
            _libp2p_fixes.on_oversized_frame(host.get_id(), None)
            self.peer_set.book.save()

    async def _start_reachability(self, nursery: trio.Nursery, host: IHost, dht: Any) -> None:
        """AutoNAT, the DHT mode that follows it, relays, hole punching and UPnP
        (autonat.py, dht_mode.py, reachability.py)."""
        self.dht_mode = DhtModeFollower(dht, host, dht_mode_of(self.config))
        self.autonat = AutoNat(host, on_change=self._reachability_changed)
        self.reach = Reachability(
            host,
            self.config,
            autonat_status=lambda: self.autonat.status if self.autonat else "unknown",
            on_change=lambda: None,
        )
        await nursery.start(self.dht_mode.run)
        await nursery.start(self.autonat.run)
        await nursery.start(self.reach.run)

    def _reachability_changed(self, status: Status) -> None:
        log.info("reachability: %s", status)
        if self.dht_mode is not None:
            self.dht_mode.on_change(status)

    def _start_services(self, nursery: trio.Nursery, host: IHost) -> None:
        """The protocol handlers on our own streams: messages, mail, sync."""
        messenger = None
        if self._on_envelope is not None:
            messenger = Messenger(host, self._on_envelope, self._charge_invalid)
        if self._mail_holder is not None and self._on_mail is not None:
            self.mailbox = MailboxService(
                host,
                self._mail_holder,
                own_key=public_key_from_peer_id(host.get_id().to_base58()),
                now=self._now,
                on_mail=self._on_mail,
                penalise=self._charge_invalid,
                hold=self.config.hold_mail,
            )
        self._courier = Courier(
            host,
            messenger=messenger,
            mailbox=self.mailbox,
            reach=self.peer_set.reach,
            closest=self.routing.closest,
            public=lambda peer: Reachability.is_public_peer(host, peer),
        )
        if self.mailbox is not None and self.config.mail_interval > 0:
            nursery.start_soon(self._courier.mail_timer, self.config.mail_interval)
        if self._syncing is not None:
            self.sync = self._syncing.start(nursery, host)

    def _stopped(self) -> None:
        self._nursery = None
        self.peer_set.stopped()
        if self._syncing is not None:
            self._syncing.stopped()

    def stop(self) -> None:
        """Leave the network cleanly: close every connection, then :meth:`run` returns.

        Preferred to cancelling :meth:`run`: py-libp2p 0.8.1 marks a connection
        closed when its tasks are cancelled without closing its socket, so a peer
        of a cancelled node may not see it leave until TCP times out."""
        self._stopping.set()

    def _start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    def _connected(
        self, host: IHost, peer: ID, outbound: bool, first: bool, addrs: list[str]
    ) -> None:
        """A connection opened and passed the gate: tell each protocol."""
        self._start_soon(self.routing.add_when_ready, host, peer)
        if self._syncing is not None:
            self._syncing.on_connected(host, peer, outbound)
        if first:
            if self.mailbox is not None and self._courier is not None:
                self._start_soon(self._courier.collect_when_ready, peer)
            self._on_event(PeerConnected(peer.to_base58(), addrs[0] if addrs else ""))

    # -- conduct -------------------------------------------------------------

    def _charge_invalid(self, peer: ID) -> None:
        self.peer_set.penalise(peer, INVALID_PENALTY)

    def _oversized(self, peer: ID) -> None:
        """A peer sent a pubsub frame over py-libp2p's size limit (see
        _libp2p_fixes): refused unread, and charged like an invalid record."""
        self.counters["gossip_rejected"] += 1
        log.info("dropped an oversized pubsub frame from %s", peer)
        self._charge_invalid(peer)

    def penalise(self, peer_id: str) -> None:
        """Charge a peer for something invalid it signed or sent outside gossip (a
        letter we cannot take): the same debt, decay and ban as an invalid record."""
        try:
            peer = ID.from_base58(peer_id)
        except Exception:
            return
        self._charge_invalid(peer)

    def owed(self, peer_id: str) -> float:
        """Penalty points a peer still owes (decaying by 1% a second)."""
        return self.peer_set.owed(peer_id)

    def banned(self, peer_id: str) -> float | None:
        """Seconds left of a peer's ban, or None if it is not banned."""
        return self.peer_set.banned(peer_id)

    def peer_score(self, peer_id: str) -> float:
        """GossipSub's score of a peer over our topics (negative: misbehaved)."""
        return self.gossip.score(peer_id)

    # -- records -------------------------------------------------------------

    def publish(self, data: bytes, topic_ids: list[str], dht_key: str | None) -> None:
        """Queue a record for gossip (and a DHT put); returns at once."""
        if not self.running:
            return
        self.gossip.publish(data, topic_ids)
        if dht_key is not None:
            self.routing.put(dht_key, data)

    def put_dht(self, key: str, value: bytes) -> None:
        if self.running:
            self.routing.put(key, value)

    async def get_dht(self, key: str, *, fresh: bool = False) -> bytes | None:
        """The best value under ``key`` (routing.py: neighbours first, then a lookup)."""
        if not self.running:
            raise NetworkError("the network is not running")
        return await self.routing.get(key, fresh=fresh)

    # -- peers -----------------------------------------------------------------

    async def connect(self, address: str) -> PeerInfo:
        """Dial a peer and remember it (peers.py)."""
        return await self.peer_set.connect(address)

    def peers(self) -> list[PeerInfo]:
        return self.peer_set.connected()

    def addresses(self) -> tuple[str, ...]:
        """Where peers can reach us: full multiaddrs with our peer id, the
        circuit ones through our relays among them (reachability.py)."""
        if not self.running:
            return ()
        if self.reach is not None:
            return self.reach.announced()
        found: list[str] = []
        for addr in self.host.get_addrs():
            found.extend(dialable(str(addr)))
        return tuple(dict.fromkeys(found))

    @property
    def reachability(self) -> Kind:
        """Public, relayed (via :attr:`relays`), private or unknown."""
        return self.reach.kind if self.reach is not None and self.running else "unknown"

    @property
    def relays(self) -> tuple[str, ...]:
        """Peer ids of the relays we hold a reservation with."""
        return self.reach.relays if self.reach is not None and self.running else ()

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.gossip.topics)

    # -- sync --------------------------------------------------------------------

    def _scheduler(self) -> SyncScheduler:
        if self._syncing is None or not self.running:
            raise NetworkError("this node does not sync")
        return self._syncing

    async def sync_now(self, peer_id: str | None = None) -> list[SyncProgress]:
        """Sync with one connected peer, or with all of them; wait for the results."""
        return await self._scheduler().sync_now(peer_id)

    def start_sync(self, peer_id: str | None = None) -> list[str]:
        """:meth:`sync_now` in the background; returns the peers it syncs with."""
        return self._scheduler().start_sync(peer_id)

    # -- envelopes -----------------------------------------------------------------

    def _require_courier(self) -> Courier:
        if self._courier is None or not self.running:
            raise NetworkError("the network is not running")
        return self._courier

    async def deliver(self, peer_id: str, envelope: bytes) -> bytes:
        """Hand a sealed envelope to a peer now; return its receipt (courier.py)."""
        return await self._require_courier().deliver(peer_id, envelope)

    async def leave_mail(self, peer_id: str, envelope: bytes) -> int:
        """Leave an envelope with the recipient's mailbox holders (courier.py)."""
        return await self._require_courier().leave_mail(peer_id, envelope)

    async def collect_mail(self) -> int:
        """Collect our mail from our mailbox holders (courier.py)."""
        return await self._require_courier().collect_mail()
