"""The DHT's mode follows reachability: a Kademlia server only while AutoNAT
says peers can dial us, a client otherwise.

A DHT server nobody can dial poisons every routing table it enters: lookups
stall on it until they time out. So with ``dht_mode = "auto"`` (the default)
the DHT starts as a client and :class:`DhtModeFollower` makes it a server when
:class:`~p2pmarket.network.autonat.AutoNat` reports "public", and a client
again when it reports anything else. "server" and "client" pin the mode.

How peers learn a switch (py-libp2p 0.8.1): ``KadDHT.switch_mode`` only adds or
removes the ``/ipfs/kad/1.0.0`` handler; it tells nobody. Peers put a node in
their routing table only when identify shows it serves that protocol (our
routing module checks at connect; py-libp2p checks in ``add_peer``). So after a
switch we push identify to every connected peer, and after becoming a server we
look up our own id: the peers that answer see a KAD stream from a node whose
identify now lists the protocol, and add it. After becoming a client, peers
that already hold us keep trying us until their lookups fail (harmless, as
measured), but no new one adds us.

A py-libp2p defect this depends on, worked around per DHT by :func:`guard_inbound_adds`:
``KadDHT`` adds every peer that opens a KAD stream to it to its routing table
without the server-mode check ("Peer initiated a KAD stream, so they MUST
support KAD server mode", kad_dht.py): but DHT clients open KAD streams too,
that is all they do. Every client that ever queried a server ended up in its
table, so client mode protected nobody. We keep that add only when identify
shows the peer serves ``/ipfs/kad/1.0.0``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import trio
from libp2p.abc import IHost
from libp2p.identity.identify_push.identify_push import push_identify_to_peers
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID

from p2pmarket.errors import ConfigError
from p2pmarket.network.autonat_verdicts import Status
from p2pmarket.network.config import NetworkConfig

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("p2pmarket.network")

KAD_PROTOCOL: Final = "/ipfs/kad/1.0.0"
DHT_MODES: Final = ("auto", "server", "client")
TELL_TIMEOUT: Final = 10.0  # identify push, and the self-lookup after becoming a server


def dht_mode_of(config: NetworkConfig) -> str:
    """The configured mode: ``dht_mode``, except that the older
    ``dht_server=False`` still means "client". Raises ConfigError on a bad value."""
    if config.dht_mode not in DHT_MODES:
        raise ConfigError(
            f"dht_mode must be one of {', '.join(DHT_MODES)}, not {config.dht_mode!r}"
        )
    return "client" if not config.dht_server else config.dht_mode


def initial_dht_mode(config: NetworkConfig) -> DHTMode:
    """The mode to build the KadDHT in: a server only when pinned to server
    ("auto" starts as a client, and choosing before connecting saves peers
    from learning a change later)."""
    return DHTMode.SERVER if dht_mode_of(config) == "server" else DHTMode.CLIENT


def guard_inbound_adds(dht: KadDHT) -> None:
    """Stop ``dht`` adding DHT clients that query it to its routing table
    (the py-libp2p 0.8.1 defect in this module's docstring). Only the inbound
    stream handler passes ``skip_server_mode_check=True``."""
    original = dht.add_peer
    store = dht.host.get_peerstore()

    async def add_peer(peer_id: ID, *, skip_server_mode_check: bool = False) -> bool:
        if skip_server_mode_check:
            try:
                served = [str(p) for p in store.get_protocols(peer_id)]
            except Exception:  # not identified yet: our connect hook adds it later
                served = []
            if KAD_PROTOCOL not in served:
                return False
        return await original(peer_id)

    dht.add_peer = add_peer  # type: ignore[method-assign]


class DhtModeFollower:
    """Keeps ``dht``'s mode in line with the config and AutoNAT.

    Give :meth:`on_change` to :class:`~p2pmarket.network.autonat.AutoNat` (or
    call it with each new status) and run :meth:`run` in the network's nursery.
    """

    def __init__(self, dht: KadDHT, host: IHost, mode: str = "auto") -> None:
        if mode not in DHT_MODES:
            raise ConfigError(f"dht_mode must be one of {', '.join(DHT_MODES)}, not {mode!r}")
        self._dht = dht
        self._host = host
        self._mode = mode
        self._wanted = DHTMode.SERVER if mode == "server" else DHTMode.CLIENT
        self._changed = trio.Event()
        self.switches = 0  # switches made (tests, status)
        guard_inbound_adds(dht)

    @property
    def mode(self) -> DHTMode:
        return self._dht.mode

    def on_change(self, status: Status) -> None:
        """A new AutoNAT status: in "auto", be a server exactly while public."""
        if self._mode == "auto":
            self._wanted = DHTMode.SERVER if status == "public" else DHTMode.CLIENT
            self._changed.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply the wanted mode now and after each change, until cancelled."""
        task_status.started()
        while True:
            self._changed = trio.Event()
            if self._dht.mode != self._wanted:
                await self._switch(self._wanted)
            await self._changed.wait()

    async def _switch(self, mode: DHTMode) -> None:
        await self._dht.switch_mode(mode)
        self.switches += 1
        log.info("DHT: now a %s", "server" if mode == DHTMode.SERVER else "client")
        with trio.move_on_after(TELL_TIMEOUT):
            try:
                await push_identify_to_peers(self._host)
            except Exception as exc:
                log.debug("identify push after a DHT mode switch failed: %r", exc)
        if mode == DHTMode.SERVER:
            routing: Any = self._dht.peer_routing
            with trio.move_on_after(TELL_TIMEOUT):
                try:
                    await routing.find_closest_peers_network(self._host.get_id().to_bytes())
                except Exception as exc:
                    log.debug("self-lookup after becoming a DHT server failed: %r", exc)
