"""When to catch up: with each peer we dial, with one peer now and then, and on
request. The sessions themselves are sync.py's; a peer that lies in one is
banned here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from p2pmarket.errors import InvalidInput, NetworkError
from p2pmarket.events import SyncProgress
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.hosts import protocols, speaks
from p2pmarket.network.peers import Peers
from p2pmarket.network.sync import RECONCILE_PROTOCOL, SyncService, SyncSource

log = logging.getLogger("p2pmarket.network")

SYNC_CONCURRENCY: Final = 3  # sessions we start at once on new connections
SYNC_PENALTY: Final = 50.0  # a peer that lies in sync: at once below publish


class SyncScheduler:
    """Starts sync sessions; ``service`` is the protocol handler itself."""

    def __init__(
        self,
        config: NetworkConfig,
        source: SyncSource,
        *,
        peers: Peers,
        counters: dict[str, int],
        on_done: Callable[[SyncProgress], None],
    ) -> None:
        self._config = config
        self._source = source
        self._peers = peers
        self._counters = counters
        self._on_done = on_done
        self._limiter = trio.CapacityLimiter(SYNC_CONCURRENCY)
        self._last_synced: dict[str, float] = {}  # peer -> monotonic time of last start
        self.service: SyncService | None = None
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery, host: IHost) -> SyncService:
        self._host, self._nursery = host, nursery
        self.service = SyncService(host, self._source, punish=self._punish, on_done=self._on_done)
        if self._config.sync_interval > 0:
            nursery.start_soon(self._timer)
        return self.service

    def stopped(self) -> None:
        self._nursery = None

    def _start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    def on_connected(self, host: IHost, peer: ID, outbound: bool) -> None:
        """The dialling side starts a session with a new peer; it syncs both ways."""
        if outbound and self._config.sync_on_connect:
            self._start_soon(self._when_ready, host, peer)

    async def _when_ready(self, host: IHost, peer: ID) -> None:
        """Sync with a new peer once identify shows it speaks the protocol."""
        if await speaks(host, peer, RECONCILE_PROTOCOL):
            await self._one(peer)

    async def _one(self, peer: ID) -> SyncProgress | None:
        sync = self.service
        if sync is None or sync.busy_with(peer) or sync.banned(peer):
            return None
        async with self._limiter:
            # A task that waited here may find the node stopping.
            if self._nursery is None or self._host is None:
                return None
            if not self._host.get_network().get_connections(peer):
                return None
            self._last_synced[peer.to_base58()] = time.monotonic()
            return await sync.sync_with(peer)

    async def _timer(self) -> None:
        """Now and then, sync with the connected peer we synced with least lately:
        gossip missed while a connection flapped is caught up within the interval."""
        assert self._host is not None and self.service is not None
        host, sync = self._host, self.service
        while True:
            await trio.sleep(self._config.sync_interval)
            ready = [
                p
                for p in host.get_connected_peers()
                if RECONCILE_PROTOCOL in protocols(host, p)
                and not sync.banned(p)
                and not sync.busy_with(p)
            ]
            if ready:
                peer = min(ready, key=lambda p: self._last_synced.get(p.to_base58(), 0.0))
                self._start_soon(self._one, peer)

    def _targets(self, peer_id: str | None) -> list[ID]:
        sync, host = self.service, self._host
        if sync is None or host is None:
            raise NetworkError("this node does not sync")
        if peer_id is None:
            return [p for p in host.get_connected_peers() if not sync.banned(p)]
        try:
            peer = ID.from_base58(peer_id)
        except Exception:
            raise InvalidInput(f"{peer_id!r} is not a peer id") from None
        if not host.get_network().get_connections(peer):
            raise NetworkError(f"not connected to {peer_id}: connect to it first")
        if sync.banned(peer):
            raise NetworkError(f"{peer_id} broke the sync protocol; it is not synced with for now")
        return [peer]

    async def sync_now(self, peer_id: str | None = None) -> list[SyncProgress]:
        """Sync with one connected peer, or with all of them; wait for the results."""
        targets = self._targets(peer_id)
        results: list[SyncProgress] = []

        async def one(peer: ID) -> None:
            assert self.service is not None
            results.append(await self.service.sync_with(peer))

        async with trio.open_nursery() as nursery:
            for peer in targets:
                nursery.start_soon(one, peer)
        return results

    def start_sync(self, peer_id: str | None = None) -> list[str]:
        """:meth:`sync_now` in the background; returns the peers it syncs with."""
        targets = self._targets(peer_id)
        assert self.service is not None
        for peer in targets:
            self._start_soon(self.service.sync_with, peer)
        return [p.to_base58() for p in targets]

    async def _punish(self, peer: ID, reason: str) -> None:
        """A peer lied in sync: penalise it in GossipSub's score and hang up."""
        self._counters["sync_violations"] += 1
        log.info("disconnecting %s: %s", peer, reason)
        self._peers.penalise(peer, SYNC_PENALTY)  # at the ban threshold: cut off, for a while
        self._peers.ban(peer)
        await self._peers.hang_up_on(peer)
