"""The libp2p side of a running node: host, GossipSub, Kademlia DHT and peers.

:class:`Network` knows nothing of the store. The node gives it two callbacks:
``accept(data, source)`` validates a record and keeps it if it is newer (it
returns a :class:`Verdict`), and ``on_event`` receives peer events. Gossip is
validated *inside* GossipSub's validator, so a record is checked and stored
before it is forwarded, and an invalid one is never forwarded and counts against
its sender in GossipSub's peer score. Our subscriptions are only drained: with
py-libp2p 0.8.1 their 32-message queues drop bursts, so nothing depends on them.

Every libp2p call that can wait on a peer runs under a deadline (py-libp2p 0.8.1
can hang on a failed stream under load), and DHT work never runs on the gossip
path.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as LibPeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.records.validator import NamespacedValidator
from libp2p.tools.anyio_service import background_trio_service

from p2pmarket.crypto.peer_id import public_key_from_peer_id
from p2pmarket.errors import InvalidInput, NetworkError, P2PMarketError
from p2pmarket.events import Event, PeerConnected, PeerDisconnected, PeerInfo, SyncProgress
from p2pmarket.network import _libp2p_fixes, topics
from p2pmarket.network.addresses import parse_peer_address
from p2pmarket.network.conduct import Conduct
from p2pmarket.network.config import NetworkConfig, Verdict
from p2pmarket.network.dht import (
    CATALOGUE_NS,
    LISTING_NS,
    PROFILE_NS,
    REVIEWS_NS,
    CatalogueValidator,
    ListingValidator,
    ProfileValidator,
    ReviewsValidator,
)
from p2pmarket.network.limits import Gate, Limits, connection_config, hang_up
from p2pmarket.network.mailbox import MAILBOX_PROTOCOL, MailboxService, MailHolder
from p2pmarket.network.messaging import Messenger, OnEnvelope
from p2pmarket.network.peerbook import PeerBook
from p2pmarket.network.ratelimit import RateLimiter
from p2pmarket.network.sync import RECONCILE_PROTOCOL, SyncService, SyncSource
from p2pmarket.records import MAX_RECORD_BYTES

log = logging.getLogger("p2pmarket.network")

# accept(record bytes, source, topic ids it came on, or None from the DHT) -> Verdict
Accept = Callable[[bytes, str, "tuple[str, ...] | None"], Verdict]
KAD_PROTOCOL: Final = "/ipfs/kad/1.0.0"
# GossipSub 1.1 with the spec's mesh degree. py-libp2p 0.8.1 spends 3-5 ms of CPU
# on each delivery, so in one process reach is bounded by nodes x degree x that
# cost. Measured (bench gossip, one process): at 25 nodes, 1.2 with D=6 gave
# p50/p95 955/1453 ms, 1.1 with D=6 321/623 ms: 1.2's IDONTWANT control messages
# cost as much as our small records. D=3 was faster still at 25 nodes but lost
# messages for seconds at 10 (5 of 20 publishes missed a node for > 15 s).
MESH_DEGREE: Final = 6
MESH_DEGREE_LOW: Final = 4
MESH_DEGREE_HIGH: Final = 12
_GOSSIP_PROTOCOLS: Final = [PROTOCOL_ID_V11, PROTOCOL_ID]
DHT_PUT_DELAY: Final = 2.0  # gossip first: see _dht_putter
NEARBY_PEERS: Final = 3  # neighbours asked directly before a full DHT lookup
NEARBY_TIMEOUT: Final = 2.0
OUTBOX_SIZE: Final = 10_000
MESH_WAIT: Final = 5.0  # how long a publish waits for a first mesh peer
REDIAL_EVERY: Final = 5.0
DHT_PUT_CONCURRENCY: Final = 4
SYNC_CONCURRENCY: Final = 3  # sessions we start at once on new connections
SYNC_PENALTY: Final = 50.0  # a peer that lies in sync: at once below publish
MAIL_COPIES: Final = 3  # holders an envelope is left with
MAIL_CANDIDATES: Final = 20  # closest peers tried, in that order, to find them
MAIL_LOOKUP: Final = 6  # closest peers to our id we ask for mail (twice the copies:
# the sender's view of the DHT and ours need not agree on the exact three)
MAIL_FIRST_CHECK: Final = 5.0  # seconds after start: the routing table has filled
_COUNTER: Final = {
    Verdict.ACCEPT: "gossip_accepted",
    Verdict.IGNORE: "gossip_ignored",
    Verdict.REJECT: "gossip_rejected",
}


def _content_id(msg: rpc_pb2.Message) -> bytes:
    """Message id = hash of the record: the same record reaching us from two
    publishers (or on two topics) is seen, validated and forwarded once."""
    return hashlib.blake2b(msg.data, digest_size=20).digest()


INVALID_PENALTY: Final = 10.0


def _score_params() -> ScoreParams:
    """Peer scoring: each invalid record costs its sender 10 points, decaying by 1%
    a heartbeat; below -50 a peer's messages are refused, below -80 it is graylisted.

    The penalty is the behaviour term (P5), applied by our validator, and not
    py-libp2p's invalid-message counter (P4, left at weight 0): 0.8.1 counts every
    rejection there, including a stale version an honest relay passed on, and
    again for every duplicate of a rejected message. Only we know which is which.
    """
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=0.0),
        p5_behavior_penalty_weight=1.0,
        p5_behavior_penalty_decay=0.99,
        p5_behavior_penalty_threshold=0.0,
        publish_threshold=-50.0,
        gossip_threshold=-30.0,
        graylist_threshold=-80.0,
    )


def _dialable(addr: str) -> list[str]:
    """Turn a wildcard listen address into ones a peer could dial (loopback + LAN)."""
    for wildcard in ("/ip4/0.0.0.0/", "/ip6/::/"):
        if addr.startswith(wildcard):
            family = "ip4" if wildcard.startswith("/ip4") else "ip6"
            rest = addr[len(wildcard) :]
            hosts = ["127.0.0.1"] if family == "ip4" else ["::1"]
            if family == "ip4":
                lan = _lan_address()
                if lan:
                    hosts.append(lan)
            return [f"/{family}/{h}/{rest}" for h in hosts]
    return [addr]


def _lan_address() -> str | None:
    """The address of the interface with the default route (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


class _Notifee(INotifee):
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
        self._accept = accept
        self._on_event = on_event
        self._now = now
        self._book = PeerBook.load(peerbook)
        self._limiter = RateLimiter(config.rate, config.burst, time.monotonic)
        # Connection and stream caps (limits.py); bootstrap peers and those we
        # connected to (the peer book) are never dropped for the inbound caps.
        bootstrap_ids = {a.rsplit("/p2p/", 1)[-1] for a in config.bootstrap}
        self._gate = Gate(Limits.of(config), lambda p: p in bootstrap_ids or p in self._book.peers)
        self._topics = topics.subscriptions(config.follow)
        self._listen = [self._parse_listen(a) for a in config.listen]
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self._gossipsub: GossipSub | None = None
        self._dht: KadDHT | None = None
        self._nursery: trio.Nursery | None = None
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[tuple[bytes, list[str]]](
            OUTBOX_SIZE
        )
        self._dht_send, self._dht_recv = trio.open_memory_channel[tuple[str, bytes, float]](
            OUTBOX_SIZE
        )
        self._stopping = trio.Event()
        self._conduct = Conduct()
        self._sync_source = sync
        self._on_synced = on_synced
        self._sync_limiter = trio.CapacityLimiter(SYNC_CONCURRENCY)
        self._last_synced: dict[str, float] = {}  # peer -> monotonic time of last start
        self.sync: SyncService | None = None
        self._on_envelope = on_envelope
        self._messenger: Messenger | None = None
        self._mail_holder = mailbox
        self._on_mail = on_mail
        self.mailbox: MailboxService | None = None
        self.started = 0
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

    @staticmethod
    def _parse_listen(text: str) -> multiaddr.Multiaddr:
        try:
            addr = multiaddr.Multiaddr(text)
        except Exception as exc:
            raise InvalidInput(f"listen address {text!r} is not a multiaddr ({exc})") from None
        if "/tcp/" not in str(addr):
            raise InvalidInput(f"listen address {text!r} must be TCP, e.g. /ip4/0.0.0.0/tcp/4690")
        return addr

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
        host = new_host(
            key_pair=create_new_key_pair(self._seed),
            listen_addrs=self._listen,
            enable_mDNS=config.mdns,
            muxer_preference="YAMUX",
            connection_config=connection_config(self._gate.limits),
        )
        self._gate.install(host)
        gossipsub = GossipSub(
            protocols=_GOSSIP_PROTOCOLS,
            degree=MESH_DEGREE,
            degree_low=MESH_DEGREE_LOW,
            degree_high=MESH_DEGREE_HIGH,
            heartbeat_interval=config.heartbeat,  # type: ignore[arg-type]
            heartbeat_initial_delay=0.1,
            score_params=_score_params(),
            spam_protection_enabled=False,  # see ratelimit.py
        )
        pubsub = Pubsub(host, gossipsub, msg_id_constructor=_content_id, strict_signing=True)
        _libp2p_fixes.cache_only_successes(pubsub)
        _libp2p_fixes.keep_own_peer_data(host)
        _libp2p_fixes.on_oversized_frame(host.get_id(), self._oversized)
        dht = KadDHT(
            host,
            DHTMode.SERVER if config.dht_server else DHTMode.CLIENT,
            validator=NamespacedValidator(
                {
                    LISTING_NS: ListingValidator(self._now),
                    CATALOGUE_NS: CatalogueValidator(self._now),
                    PROFILE_NS: ProfileValidator(self._now),
                    REVIEWS_NS: ReviewsValidator(self._now),
                }
            ),
            validator_changed=True,
            enable_random_walk=False,
        )
        conn_send, conn_recv = trio.open_memory_channel[tuple[bool, INetConn]](1000)
        host.get_network().register_notifee(_Notifee(conn_send))
        try:
            async with (
                host.run(self._listen),
                background_trio_service(pubsub),
                background_trio_service(gossipsub),
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
                self._host, self._pubsub, self._gossipsub, self._dht = host, pubsub, gossipsub, dht
                if self._on_envelope is not None:
                    self._messenger = Messenger(host, self._on_envelope, self._penalise)
                if self._mail_holder is not None and self._on_mail is not None:
                    self.mailbox = MailboxService(
                        host,
                        self._mail_holder,
                        own_key=public_key_from_peer_id(host.get_id().to_base58()),
                        now=self._now,
                        on_mail=self._on_mail,
                        penalise=self._penalise,
                        hold=config.hold_mail,
                    )
                if self._sync_source is not None:
                    self.sync = SyncService(
                        host, self._sync_source, punish=self._punish, on_done=self._on_synced
                    )
                await pubsub.wait_until_ready()
                for topic in self._topics:
                    pubsub.set_topic_validator(topic, self._validator(topic, host.get_id()), False)
                    subscription = await pubsub.subscribe(topic)
                    nursery.start_soon(self._drain, subscription)
                nursery.start_soon(self._connections, conn_recv)
                nursery.start_soon(self._outbox)
                for _ in range(DHT_PUT_CONCURRENCY):
                    nursery.start_soon(self._dht_putter)
                self._nursery = nursery
                self.started = self._now()
                for address in config.bootstrap:
                    nursery.start_soon(self._dial_quietly, address)
                nursery.start_soon(self._redial)
                if self.sync is not None and config.sync_interval > 0:
                    nursery.start_soon(self._sync_timer)
                if self.mailbox is not None and config.mail_interval > 0:
                    nursery.start_soon(self._mail_timer)
                task_status.started()
                try:
                    await self._stopping.wait()
                finally:
                    # Reached by stop() (the clean way) or by cancellation, in
                    # which case py-libp2p may already have abandoned some sockets.
                    await self._hang_up(host)
                    self._nursery = None
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            _libp2p_fixes.on_oversized_frame(host.get_id(), None)
            self._book.save()

    def stop(self) -> None:
        """Leave the network cleanly: close every connection, then :meth:`run` returns.

        Preferred to cancelling :meth:`run`: py-libp2p 0.8.1 marks a connection
        closed when its tasks are cancelled without closing its socket, so a peer
        of a cancelled node may not see it leave until TCP times out."""
        self._stopping.set()

    @staticmethod
    async def _hang_up(host: IHost) -> None:
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

    # -- gossip ------------------------------------------------------------

    def _validator(self, topic: str, me: ID) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                verdict = judge(forwarder, msg)
            except Exception:  # a bug must neither let a record through nor crash pubsub
                log.exception("judging a gossip record failed")
                return False
            if verdict is Verdict.REJECT:
                self._penalise(forwarder)
                log.info("dropped an invalid record from %s on %s", forwarder, topic)
            self.counters[_COUNTER[verdict]] += 1
            # A stale or duplicate record (IGNORE) is not forwarded either, but its
            # relay is not penalised: an honest peer may pass on an older version.
            return verdict is Verdict.ACCEPT

        def judge(forwarder: ID, msg: rpc_pb2.Message) -> Verdict:
            if forwarder == me:
                return Verdict.ACCEPT  # our own record: stored before it was published
            if not self._limiter.allow(forwarder.to_base58()):
                self.counters["rate_limited"] += 1
                return Verdict.REJECT
            if len(msg.data) > MAX_RECORD_BYTES:
                return Verdict.REJECT
            return self._accept(bytes(msg.data), "gossip", tuple(msg.topicIDs))

        return validate

    def _penalise(self, peer: ID, amount: float = INVALID_PENALTY, *, new: bool = True) -> None:
        """Charge a peer: in GossipSub's score at once, and in our own ledger
        (``new``: a new offence, not a debt re-applied on reconnection), which
        bans it past the threshold (conduct.py)."""
        scorer = getattr(self._gossipsub, "scorer", None)
        if scorer is not None:
            scorer.penalize_behavior(peer, amount)
        if new:
            self._banned_now(peer, self._conduct.charge(peer.to_base58(), amount, time.monotonic()))

    def _ban(self, peer: ID) -> None:
        """Ban a peer whatever it owes (it broke a sync session)."""
        self._banned_now(peer, self._conduct.ban(peer.to_base58(), time.monotonic()))

    def _banned_now(self, peer: ID, until: float | None) -> None:
        """A ban just began (``until`` set): hang up now; the peer is neither
        dialled nor let back in until it ends."""
        if until is None:
            return
        self.counters["peers_banned"] += 1
        log.warning(
            "banned %s for %.0f s: it owes %.0f penalty points",
            peer,
            until - time.monotonic(),
            self.owed(peer.to_base58()),
        )
        self._nursery_start(self._hang_up_on, peer)

    def _oversized(self, peer: ID) -> None:
        """A peer sent a pubsub frame over py-libp2p's size limit (see
        _libp2p_fixes): refused unread, and charged like an invalid record."""
        self.counters["gossip_rejected"] += 1
        log.info("dropped an oversized pubsub frame from %s", peer)
        self._penalise(peer)

    def penalise(self, peer_id: str) -> None:
        """Charge a peer for something invalid it signed or sent outside gossip (a
        letter we cannot take): the same debt, decay and ban as an invalid record."""
        try:
            peer = ID.from_base58(peer_id)
        except Exception:
            return
        self._penalise(peer)

    def owed(self, peer_id: str) -> float:
        """Penalty points a peer still owes (decaying by 1% a second)."""
        return self._conduct.owed(peer_id, time.monotonic())

    def banned(self, peer_id: str) -> float | None:
        """Seconds left of a peer's ban, or None if it is not banned."""
        return self._conduct.banned(peer_id, time.monotonic())

    async def _hang_up_on(self, peer: ID) -> None:
        """Close every connection to ``peer``, within 2 s."""
        if self._host is not None:
            await hang_up(list(self._host.get_network().get_connections(peer)))

    @staticmethod
    async def _drain(subscription: Any) -> None:
        """Empty a subscription queue: records were handled by the validator."""
        while True:
            await subscription.get()

    def publish(self, data: bytes, topic_ids: list[str], dht_key: str | None) -> None:
        """Queue a record for gossip (and a DHT put); returns at once."""
        if not self.running:
            return
        try:
            self._outbox_send.send_nowait((data, topic_ids))
            if dht_key is not None:
                self._dht_send.send_nowait((dht_key, data, trio.current_time()))
        except trio.WouldBlock:
            log.warning("the publish queue is full; a record was not gossiped")

    def put_dht(self, key: str, value: bytes) -> None:
        if self.running:
            try:
                self._dht_send.send_nowait((key, value, trio.current_time()))
            except trio.WouldBlock:
                log.warning("the DHT queue is full; dropped a put of %s", key)

    async def _outbox(self) -> None:
        assert self._pubsub is not None and self._gossipsub is not None
        host, pubsub, gossipsub = self.host, self._pubsub, self._gossipsub
        subscribed = set(self._topics)

        def reachable(topic: str) -> bool:
            # Our own topics go to mesh peers; others through fanout, to any
            # peer subscribed to them.
            peers = gossipsub.mesh.get(topic) if topic in subscribed else None
            return bool(peers or (topic not in subscribed and pubsub.peer_topics.get(topic)))

        gave_up_at = -MESH_WAIT
        async for data, topic_ids in self._outbox_recv:
            # py-libp2p publishes to mesh peers only: give a fresh mesh a moment,
            # but not again and again when no peer wants these topics.
            if trio.current_time() - gave_up_at > 30:
                with trio.move_on_after(MESH_WAIT) as wait:
                    while not any(reachable(t) for t in topic_ids):
                        if not host.get_connected_peers():
                            break
                        await trio.sleep(0.05)
                if wait.cancelled_caught:
                    gave_up_at = trio.current_time()
            try:
                with trio.move_on_after(10):
                    await pubsub.publish(topic_ids, data)
            except Exception:
                log.exception("publishing a record failed")

    async def _dht_putter(self) -> None:
        assert self._dht is not None
        async for key, value, queued in self._dht_recv:
            # Gossip first: a DHT put opens ~100 streams, and run at once it would
            # compete with the gossip of the same record for the CPU.
            await trio.sleep_until(queued + DHT_PUT_DELAY)
            try:
                with trio.move_on_after(self.config.dht_timeout) as scope:
                    await self._dht.put_value(key, value)
                self.counters["dht_put_failures" if scope.cancelled_caught else "dht_puts"] += 1
            except Exception as exc:
                self.counters["dht_put_failures"] += 1
                log.info("DHT put of %s failed: %s", key, exc)

    # -- DHT ---------------------------------------------------------------

    async def get_dht(self, key: str, *, fresh: bool = False) -> bytes | None:
        """The best value under ``key``: from the connected peers nearest the key
        if they have it, else by a full Kademlia lookup. Unless ``fresh``, a value
        in our own DHT store is taken without asking anyone."""
        dht = self._dht
        if dht is None or not self.running:
            raise NetworkError("the network is not running")
        value = await self._get_nearby(dht, key, fresh)
        if value is not None:
            return value
        with trio.move_on_after(self.config.dht_timeout):
            try:
                found: bytes | None = await dht.get_value(key, quorum=1)
            except Exception as exc:
                log.info("DHT get of %s failed: %s", key, exc)
                return None
            return found
        return None

    async def _get_nearby(self, dht: KadDHT, key: str, fresh: bool) -> bytes | None:
        """Ask the few connected DHT peers nearest to ``key`` at once, over the
        connections we already have, and keep the best valid answer.

        py-libp2p's ``get_value`` first walks the network with FIND_NODE (~25
        streams and ~0.5 s of CPU a lookup at 25 nodes) even when a neighbour
        holds the value; puts go to the k = 20 nearest nodes, so in a small or
        well-connected network a neighbour usually does. Uses the DHT's
        per-peer GET_VALUE (``value_store._get_from_peer``, py-libp2p 0.8.1)."""
        key_bytes = key.encode()
        host = self.host
        local = None if fresh else dht.value_store.get(key_bytes)
        if local is not None:
            return bytes(local.value)
        peers = [p for p in host.get_connected_peers() if KAD_PROTOCOL in _protocols(host, p)]
        nearest = sort_peer_ids_by_distance(key_bytes, peers)[:NEARBY_PEERS]
        answers: list[bytes] = []

        async def ask(peer: ID) -> None:
            with trio.move_on_after(NEARBY_TIMEOUT):
                try:
                    value = await dht.value_store._get_from_peer(peer, key_bytes)
                    if isinstance(value, bytes) and dht.validator is not None:
                        dht.validator.validate(key, value)
                        answers.append(value)
                except Exception as exc:
                    log.debug("GET_VALUE %s from %s failed: %s", key, peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in nearest:
                nursery.start_soon(ask, peer)
        if not answers or dht.validator is None:
            return None
        return answers[dht.validator.select(key, answers)]

    # -- peers -------------------------------------------------------------

    async def connect(self, address: str) -> PeerInfo:
        """Dial ``address`` (a multiaddr ending in ``/p2p/<peer id>``) and remember
        the peer: the peer book is on disk (fsynced) when this returns, so a
        connection reported done survives the daemon dying a moment later."""
        info = parse_peer_address(address)
        host = self.host
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
            with trio.fail_after(self.config.connect_timeout):
                if not connected:
                    # Dial the address we were given. py-libp2p 0.8.1 dials only the
                    # first known TCP address of a peer, and for a while refuses to
                    # dial a peer whose addresses all failed (its "negative cache"):
                    # a stale peer-book or bootstrap address would hide the right one.
                    host.get_peerstore().clear_addrs(info.peer_id)
                    host.get_network().unblock_peer(info.peer_id)  # type: ignore[attr-defined]
                    await host.connect(info)
                elif not any(
                    _same_place(a, info.addrs)
                    for c in connected
                    for a in c.get_transport_addresses()
                ):
                    # Connected already, but elsewhere: host.connect() would reuse
                    # that connection and say yes to any address. Try the one given.
                    await self._try_address(info)
        except trio.TooSlowError:
            raise NetworkError(
                f"could not reach {info.peer_id} within {self.config.connect_timeout:g} s"
            ) from None
        except Exception as exc:
            raise NetworkError(f"could not connect to {address}: {_reason(exc)}") from None
        self._book.seen(peer_id, [str(a) for a in info.addrs], time.time())
        self._book.save()
        return self._peer_info(info.peer_id)

    async def _try_address(self, info: LibPeerInfo) -> None:
        """Dial each of ``info``'s addresses on a fresh connection, which proves
        the peer is there (the Noise handshake checks its id); then close it."""
        network = self.host.get_network()
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
        host = self.host
        while True:
            connected = {p.to_base58() for p in host.get_connected_peers()}
            due = self._book.due(time.time(), connected)
            for peer in [p for p in due if self.banned(p.peer_id) is None][:8]:
                addrs = [a if "/p2p/" in a else f"{a}/p2p/{peer.peer_id}" for a in peer.addrs]
                try:
                    await self.connect(addrs[0])
                except P2PMarketError:
                    self._book.failed(peer.peer_id, time.time())
            self._book.save()
            await trio.sleep(REDIAL_EVERY)

    async def _connections(self, events: trio.MemoryReceiveChannel[tuple[bool, INetConn]]) -> None:
        host = self.host  # kept: the tasks outlive `running` by a moment at shutdown
        async for is_open, conn in events:
            peer = conn.muxed_conn.peer_id
            peer_id = peer.to_base58()
            if is_open:
                if self.banned(peer_id) is not None:
                    self.counters["banned_refused"] += 1
                    self._nursery_start(self._hang_up_on, peer)
                    continue
                excess = self._gate.check(host, self.peer_score)
                if excess:  # over a connection limit: the newest or worst-scored go
                    self._nursery_start(hang_up, excess)
                    if conn in excess:
                        continue
                addrs = [str(a) for a in conn.get_transport_addresses()]
                if self._dht is not None:
                    # KadDHT does not learn the peers we connect to by itself.
                    self._nursery_start(self._add_to_dht, host, peer)
                owed = self.owed(peer_id)
                if owed >= 1:
                    self._penalise(peer, owed, new=False)  # libp2p forgot it on disconnect
                if _direction(conn) == "outbound":
                    self._book.seen(peer_id, addrs, time.time())
                    if self.sync is not None and self.config.sync_on_connect:
                        # The dialling side starts; the session syncs both ways.
                        self._nursery_start(self._sync_when_ready, host, peer)
                if len(host.get_network().get_connections(peer)) == 1:
                    if self.mailbox is not None:
                        self._nursery_start(self._collect_when_ready, host, peer)
                    self._on_event(PeerConnected(peer_id, addrs[0] if addrs else ""))
            elif not host.get_network().get_connections(peer):
                # The rate bucket is kept: reconnecting must not refill it.
                self._on_event(PeerDisconnected(peer_id))

    def _nursery_start(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _add_to_dht(self, host: IHost, peer: ID) -> None:
        """Add a peer to the routing table once identify shows it serves Kademlia:
        a DHT client, or a node without a DHT, would only make lookups fail."""
        assert self._dht is not None
        with trio.move_on_after(10):
            while True:
                if KAD_PROTOCOL in _protocols(host, peer):
                    break
                await trio.sleep(0.1)
            try:
                await self._dht.add_peer(peer)
            except Exception as exc:
                log.debug("adding %s to the routing table failed: %s", peer, exc)

    # -- sync ----------------------------------------------------------------

    async def _sync_when_ready(self, host: IHost, peer: ID) -> None:
        """Sync with a new peer once identify shows it speaks the protocol."""
        with trio.move_on_after(10) as wait:
            while RECONCILE_PROTOCOL not in _protocols(host, peer):
                await trio.sleep(0.1)
        if not wait.cancelled_caught:
            await self._sync_one(peer)

    async def _sync_one(self, peer: ID) -> SyncProgress | None:
        sync = self.sync
        if sync is None or sync.busy_with(peer) or sync.banned(peer):
            return None
        async with self._sync_limiter:
            # Not self.host: it raises once the node is stopping, which a task
            # that waited here may find.
            if not self.running or self._host is None:
                return None
            if not self._host.get_network().get_connections(peer):
                return None
            self._last_synced[peer.to_base58()] = time.monotonic()
            return await sync.sync_with(peer)

    async def _sync_timer(self) -> None:
        """Now and then, sync with the connected peer we synced with least lately:
        gossip missed while a connection flapped is caught up within the interval."""
        while True:
            await trio.sleep(self.config.sync_interval)
            peers = self.host.get_connected_peers()
            sync = self.sync
            assert sync is not None
            ready = [
                p
                for p in peers
                if RECONCILE_PROTOCOL in _protocols(self.host, p)
                and not sync.banned(p)
                and not sync.busy_with(p)
            ]
            if ready:
                peer = min(ready, key=lambda p: self._last_synced.get(p.to_base58(), 0.0))
                self._nursery_start(self._sync_one, peer)

    def _sync_targets(self, peer_id: str | None) -> list[ID]:
        if self.sync is None:
            raise NetworkError("this node does not sync")
        sync = self.sync
        if peer_id is None:
            return [p for p in self.host.get_connected_peers() if not sync.banned(p)]
        try:
            peer = ID.from_base58(peer_id)
        except Exception:
            raise InvalidInput(f"{peer_id!r} is not a peer id") from None
        if not self.host.get_network().get_connections(peer):
            raise NetworkError(f"not connected to {peer_id}: connect to it first")
        if sync.banned(peer):
            raise NetworkError(f"{peer_id} broke the sync protocol; it is not synced with for now")
        return [peer]

    async def sync_now(self, peer_id: str | None = None) -> list[SyncProgress]:
        """Sync with one connected peer, or with all of them; wait for the results."""
        targets = self._sync_targets(peer_id)
        results: list[SyncProgress] = []

        async def one(peer: ID) -> None:
            assert self.sync is not None
            results.append(await self.sync.sync_with(peer))

        async with trio.open_nursery() as nursery:
            for peer in targets:
                nursery.start_soon(one, peer)
        return results

    def start_sync(self, peer_id: str | None = None) -> list[str]:
        """:meth:`sync_now` in the background; returns the peers it syncs with."""
        targets = self._sync_targets(peer_id)
        assert self.sync is not None
        for peer in targets:
            self._nursery_start(self.sync.sync_with, peer)
        return [p.to_base58() for p in targets]

    async def deliver(self, peer_id: str, envelope: bytes) -> bytes:
        """Hand a sealed envelope to a peer, dialling it first if we are not
        connected; return its receipt. Raises NetworkError when it cannot be
        reached now."""
        if self._messenger is None:
            raise NetworkError("this node does not carry direct messages")
        peer = ID.from_base58(peer_id)
        if not await self._reach(peer):
            raise NetworkError(f"{peer_id} cannot be reached now")
        return await self._messenger.deliver(peer, envelope)

    async def _reach(self, peer: ID) -> bool:
        """Be connected to ``peer``: already, or by its known addresses, or by
        its addresses from a DHT lookup."""
        host = self.host
        if host.get_network().get_connections(peer):
            return True
        with trio.move_on_after(self.config.connect_timeout):
            with contextlib.suppress(Exception):  # an unknown peer, a failed dial
                await host.connect(LibPeerInfo(peer, host.get_peerstore().addrs(peer)))
            if not host.get_network().get_connections(peer) and self._dht is not None:
                with contextlib.suppress(Exception):
                    found = await self._dht.find_peer(peer)
                    if found is not None:
                        await host.connect(found)
        return bool(host.get_network().get_connections(peer))

    # -- offline mail ----------------------------------------------------------

    async def leave_mail(self, peer_id: str, envelope: bytes) -> int:
        """Leave an envelope for an unreachable peer with the peers closest to its
        id; return how many took it (0: none could, try again later)."""
        if self.mailbox is None:
            raise NetworkError("this node does not carry offline mail")
        mailbox = self.mailbox
        recipient = ID.from_base58(peer_id)
        host = self.host
        candidates = [p for p in await self._closest(recipient) if p != recipient]
        candidates = candidates[:MAIL_CANDIDATES]
        # Then any connected peer that holds mail: the recipient asks every peer
        # it connects to, and the nearest ones may all be gone (a routing table
        # keeps peers that left).
        candidates += [
            p
            for p in host.get_connected_peers()
            if p != recipient and p not in candidates and MAILBOX_PROTOCOL in _protocols(host, p)
        ]
        kept = 0

        async def one(peer: ID) -> None:
            nonlocal kept
            try:
                if await self._reach(peer):
                    await mailbox.deposit(peer, envelope)
                    kept += 1
            except NetworkError as exc:
                log.debug("leaving mail with %s: %s", peer, exc)

        tried = 0
        while kept < MAIL_COPIES and tried < len(candidates):
            batch = candidates[tried : tried + MAIL_COPIES - kept]
            tried += len(batch)
            async with trio.open_nursery() as nursery:
                for peer in batch:
                    nursery.start_soon(one, peer)
        return kept

    async def collect_mail(self) -> int:
        """Ask our connected peers and the peers closest to our id (where senders
        leave it) for our mail; return how many envelopes arrived."""
        mailbox = self.mailbox
        if mailbox is None:
            raise NetworkError("this node does not carry offline mail")
        host = self.host
        targets = {p for p in host.get_connected_peers() if MAILBOX_PROTOCOL in _protocols(host, p)}
        targets.update((await self._closest(host.get_id()))[:MAIL_LOOKUP])
        arrived = 0

        async def one(peer: ID) -> None:
            nonlocal arrived
            try:
                if await self._reach(peer):
                    arrived += await mailbox.collect(peer)
            except NetworkError as exc:
                log.debug("collecting mail from %s: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in targets:
                nursery.start_soon(one, peer)
        return arrived

    async def _closest(self, target: ID) -> list[ID]:
        """Peers by distance to ``target``'s id, from a DHT lookup (bounded by the
        DHT timeout) and our connections, without ourselves."""
        host = self.host
        key = target.to_bytes()
        found: list[ID] = []
        if self._dht is not None:
            with trio.move_on_after(self.config.dht_timeout), contextlib.suppress(Exception):
                found = await self._dht.peer_routing.find_closest_peers_network(key)
        found += [p for p in host.get_connected_peers() if MAILBOX_PROTOCOL in _protocols(host, p)]
        own = host.get_id()
        return [p for p in sort_peer_ids_by_distance(key, list(dict.fromkeys(found))) if p != own]

    async def _collect_when_ready(self, host: IHost, peer: ID) -> None:
        """Ask a newly connected peer for our mail once identify shows it holds
        mail: the first place to look when we come back online."""
        with trio.move_on_after(10) as wait:
            while MAILBOX_PROTOCOL not in _protocols(host, peer):
                await trio.sleep(0.05)
        if not wait.cancelled_caught and self.mailbox is not None:
            try:
                await self.mailbox.collect(peer)
            except NetworkError as exc:
                log.debug("collecting mail from %s: %s", peer, exc)

    async def _mail_timer(self) -> None:
        """Ask our mailbox holders for mail soon after start, then now and then."""
        await trio.sleep(MAIL_FIRST_CHECK)
        while True:
            with contextlib.suppress(NetworkError):
                await self.collect_mail()
            await trio.sleep(self.config.mail_interval)

    async def _punish(self, peer: ID, reason: str) -> None:
        """A peer lied in sync: penalise it in GossipSub's score and hang up."""
        self.counters["sync_violations"] += 1
        log.info("disconnecting %s: %s", peer, reason)
        self._penalise(peer, SYNC_PENALTY)  # at the ban threshold: cut off, for a while
        self._ban(peer)
        await self._hang_up_on(peer)

    def _peer_info(self, peer: ID) -> PeerInfo:
        conns = self.host.get_network().get_connections(peer)
        addrs = tuple(str(a) for c in conns for a in c.get_transport_addresses())
        return PeerInfo(peer.to_base58(), addrs, _direction(conns[0]) if conns else "unknown")

    def peers(self) -> list[PeerInfo]:
        return [self._peer_info(p) for p in self.host.get_connected_peers()]

    def addresses(self) -> tuple[str, ...]:
        """Where peers can reach us: full multiaddrs with our peer id."""
        if not self.running:
            return ()
        found: list[str] = []
        for addr in self.host.get_addrs():
            found.extend(_dialable(str(addr)))
        return tuple(dict.fromkeys(found))

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._topics)

    def peer_score(self, peer_id: str) -> float:
        """GossipSub's score of a peer over our topics (negative: misbehaved)."""
        scorer = getattr(self._gossipsub, "scorer", None)
        if scorer is None:
            return 0.0
        return float(scorer.score(ID.from_base58(peer_id), list(self._topics)))


def _direction(conn: INetConn) -> Literal["inbound", "outbound", "unknown"]:
    text = str(getattr(conn, "direction", "")).lower()  # a libp2p Direction enum
    return "outbound" if "outbound" in text else "inbound" if "inbound" in text else "unknown"


def _protocols(host: IHost, peer: ID) -> list[str]:
    try:
        return list(host.get_peerstore().get_protocols(peer))
    except Exception:  # an unknown peer
        return []


def _same_place(addr: object, addrs: list[multiaddr.Multiaddr]) -> bool:
    """Whether a connection's transport address is one of ``addrs`` (ignoring
    any trailing /p2p/<id>)."""
    here = str(addr).split("/p2p/")[0]
    return any(str(a).split("/p2p/")[0] == here for a in addrs)


def _reason(exc: BaseException) -> str:
    """A one-line cause from libp2p's nested dial errors."""
    seen = exc
    while seen.__cause__ is not None or getattr(seen, "exceptions", None):
        inner = getattr(seen, "exceptions", None)
        seen = inner[0] if inner else seen.__cause__  # type: ignore[assignment]
    text = str(seen).splitlines()[0] if str(seen) else type(seen).__name__
    return text[:200]
