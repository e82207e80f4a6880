"""The Kademlia DHT: our namespaces' validators, the put queue, gets that ask
neighbours first, and the closest peers to an id.

DHT work never runs on the gossip path: a put opens ~100 streams, so it waits
:data:`DHT_PUT_DELAY` after the gossip of the same record.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Final

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as LibPeerInfo
from libp2p.records.validator import NamespacedValidator

from p2pmarket.errors import NetworkError
from p2pmarket.network.config import NetworkConfig
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
from p2pmarket.network.dht_mode import initial_dht_mode
from p2pmarket.network.hosts import protocols, speaks
from p2pmarket.network.mailbox import MAILBOX_PROTOCOL

log = logging.getLogger("p2pmarket.network")

KAD_PROTOCOL: Final = "/ipfs/kad/1.0.0"
DHT_PUT_DELAY: Final = 2.0  # gossip first: see _putter
DHT_PUT_CONCURRENCY: Final = 4
NEARBY_PEERS: Final = 3  # neighbours asked directly before a full DHT lookup
NEARBY_TIMEOUT: Final = 2.0
QUEUE_SIZE: Final = 10_000


class Routing:
    """Our KadDHT, built on a host by :meth:`build`, its putters started by :meth:`start`."""

    def __init__(
        self, config: NetworkConfig, *, now: Callable[[], int], counters: dict[str, int]
    ) -> None:
        self._config = config
        self._now = now
        self._counters = counters
        self.dht: KadDHT | None = None
        self._host: IHost | None = None
        self._send, self._recv = trio.open_memory_channel[tuple[str, bytes, float]](QUEUE_SIZE)

    def build(self, host: IHost) -> KadDHT:
        """The py-libp2p service to run (with ``background_trio_service``)."""
        self._host = host
        self.dht = KadDHT(
            host,
            initial_dht_mode(self._config),
            validator=NamespacedValidator(
                {
                    LISTING_NS: ListingValidator(self._now),
                    CATALOGUE_NS: CatalogueValidator(self._now),
                    PROFILE_NS: ProfileValidator(self._now),
                    REVIEWS_NS: ReviewsValidator(self._now),
                }
            ),
            validator_changed=True,
            # Our DHT shares /ipfs/kad/1.0.0 with IPFS: store our namespaces only
            # (py-libp2p's default stores any other key unvalidated).
            strict_validation=True,
            enable_random_walk=False,
        )
        return self.dht

    def start(self, nursery: trio.Nursery) -> None:
        for _ in range(DHT_PUT_CONCURRENCY):
            nursery.start_soon(self._putter)

    def put(self, key: str, value: bytes) -> None:
        """Queue a put; it runs :data:`DHT_PUT_DELAY` seconds from now."""
        try:
            self._send.send_nowait((key, value, trio.current_time()))
        except trio.WouldBlock:
            log.warning("the DHT queue is full; dropped a put of %s", key)

    def idle(self) -> bool:
        """No put is queued or running."""
        queue = self._recv.statistics()
        return queue.current_buffer_used == 0 and queue.tasks_waiting_receive == (
            DHT_PUT_CONCURRENCY
        )

    async def _putter(self) -> None:
        assert self.dht is not None
        async for key, value, queued in self._recv:
            # Gossip first: a DHT put opens ~100 streams, and run at once it would
            # compete with the gossip of the same record for the CPU.
            await trio.sleep_until(queued + DHT_PUT_DELAY)
            try:
                with trio.move_on_after(self._config.dht_timeout) as scope:
                    await self.dht.put_value(key, value)
                self._counters["dht_put_failures" if scope.cancelled_caught else "dht_puts"] += 1
            except Exception as exc:
                self._counters["dht_put_failures"] += 1
                log.info("DHT put of %s failed: %s", key, exc)

    async def get(self, key: str, *, fresh: bool = False) -> bytes | None:
        """The best value under ``key``: from the connected peers nearest the key
        if they have it, else by a full Kademlia lookup. Unless ``fresh``, a value
        in our own DHT store is taken without asking anyone."""
        dht = self.dht
        if dht is None:
            raise NetworkError("the network is not running")
        value = await self._get_nearby(dht, key, fresh)
        if value is not None:
            return value
        with trio.move_on_after(self._config.dht_timeout):
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
        assert self._host is not None
        host = self._host
        local = None if fresh else dht.value_store.get(key_bytes)
        if local is not None:
            return bytes(local.value)
        peers = [p for p in host.get_connected_peers() if KAD_PROTOCOL in protocols(host, p)]
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

    async def find_peer(self, peer: ID) -> LibPeerInfo | None:
        """A peer's addresses by a DHT lookup (None: not found in time)."""
        if self.dht is None:
            return None
        with trio.move_on_after(self._config.dht_timeout), contextlib.suppress(Exception):
            found: LibPeerInfo | None = await self.dht.find_peer(peer)
            return found
        return None

    async def closest(self, target: ID) -> list[ID]:
        """Peers by distance to ``target``'s id, from a DHT lookup (bounded by the
        DHT timeout) and our connections, without ourselves."""
        assert self._host is not None
        host = self._host
        key = target.to_bytes()
        found: list[ID] = []
        if self.dht is not None:
            with trio.move_on_after(self._config.dht_timeout), contextlib.suppress(Exception):
                found = await self.dht.peer_routing.find_closest_peers_network(key)
        found += [p for p in host.get_connected_peers() if MAILBOX_PROTOCOL in protocols(host, p)]
        own = host.get_id()
        return [p for p in sort_peer_ids_by_distance(key, list(dict.fromkeys(found))) if p != own]

    async def add_when_ready(self, host: IHost, peer: ID) -> None:
        """Add a peer to the routing table once identify shows it serves Kademlia:
        a DHT client, or a node without a DHT, would only make lookups fail.
        KadDHT does not learn the peers we connect to by itself."""
        if self.dht is None or not await speaks(host, peer, KAD_PROTOCOL):
            return
        with trio.move_on_after(10):
            try:
                await self.dht.add_peer(peer)
            except Exception as exc:
                log.debug("adding %s to the routing table failed: %s", peer, exc)
