"""Workarounds for py-libp2p 0.8.1 defects, in one place. Revisit on every upgrade.

1. ``libp2p.network.swarm._HAPPY_EYEBALLS_DELAY`` (250 ms): the swarm waits the
   whole head start before returning *every* dial, even one that succeeded at
   once, so each connect costs ~250 ms instead of ~25 ms, and the DHT dials a
   lot. We set it to 0: with one address per peer there is nothing to race.
2. Logging: ``import libp2p`` gives its "libp2p" logger no handler and stops it
   propagating, so Python's last-resort handler prints every expected failure
   (each failed dial, at ERROR) on stderr, over the daemon's own output. A
   NullHandler silences that; ``LIBP2P_DEBUG`` still turns libp2p's logs on.
3. Pubsub caches every *failed* validation for 300 s under the message id, which
   is the record's hash: a verdict about one neighbour (over its rate limit)
   would block the same record from every other peer for five minutes, and an
   attacker could relay each new listing first, over budget, to suppress it.
   :func:`cache_only_successes` keeps only successes; a repeated invalid record
   costs one more check and penalises its own sender.
4. ``PeerScorer.remove_peer`` forgets a peer's behaviour penalty when it
   disconnects, so a misbehaving peer could reconnect with a clean score; the
   network keeps its own ledger and applies it again on reconnect.
5. A pubsub frame over ``max_inbound_rpc_size`` (1 MiB) is refused inside
   ``Pubsub.continuously_read_stream``: it logs, resets the stream and drops
   the peer from pubsub, but offers no hook, so the sender kept a clean score
   and stayed connected. :func:`on_oversized_frame` wraps the length-limited
   read that module uses and reports the sender to the node whose connection
   it came in on (found by its local peer id, since several nodes may share a
   process), which penalises it like any invalid record.
6. The peerstore holds at most 1,000 peers and, past that, evicts entries with
   no addresses first, which includes the host's own (its key, no address).
   Every identify request after that raised ``PeerStoreError`` looking up our
   own key, and the error ended the host: a thousand made-up identities
   connecting one after another took a node down (found by the flood
   benchmark). :func:`keep_own_peer_data` keeps our entry out of eviction.
7. ``TCPListener.get_addrs`` asks each listening socket its name; once the
   listener is closed (our clean stop closes it first) that raises
   ``OSError: Bad file descriptor``, and GossipSub calls it while sending a
   control message, which ended its task and the node's run with an error at
   shutdown (seen now and then in the test suite). Closed sockets are skipped.
8. What identify announces is ``host.get_addrs()``. Its address factory
   cannot announce circuit addresses: it cuts each address at its first
   ``/p2p/`` (the relay's, in ``…/p2p/<relay>/p2p-circuit``) to append ours,
   and it can only be given to ``new_host``. :func:`announce` replaces
   ``get_addrs`` on one host by a function the reachability module keeps up
   to date (full addresses, ours at the end), and puts it back after.
9. mDNS (``libp2p.discovery.mdns``) advertises ``host.get_transport_addrs()``
   as they are: a node listening on ``0.0.0.0`` (our default) told the LAN to
   dial ``/ip4/0.0.0.0/tcp/4690``, which reaches the *dialler's own* machine,
   so the Noise handshake failed and two daemons on one LAN never met
   (measured between two network namespaces). :func:`_lan_mdns_addrs`
   advertises each wildcard as this machine's LAN address instead, and no
   loopback; :func:`_usable_mdns_peer` drops such addresses when another
   implementation advertises them.
10. ``KadDHT`` adds every peer that opens a KAD stream to its routing table
   unchecked, DHT clients included, so client mode kept nobody out:
   ``dht_mode.guard_inbound_adds`` (per DHT) adds it only if identify lists
   ``/ipfs/kad/1.0.0``. (AutoNAT's defects are avoided, not patched: we run our
   own, network/autonat.py, on py-libp2p's protobuf.)
11. ``DCUtRProtocol`` binds hole-punch dials to the first TCP address of
   ``host.get_addrs()`` (what we announce: ``127.0.0.1`` first for a ``0.0.0.0``
   listener), so through a NAT every dial failed with EINVAL; both sides start
   sessions at once; its first, unilateral try waits on LAN addresses; its
   retry count resets on any disconnect. Fixed in ``holepunch.HolePunch``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import libp2p.network.swarm as _swarm
import libp2p.pubsub.pubsub as _pubsub_module
import libp2p.transport.tcp.tcp as _tcp
from libp2p.io.exceptions import MessageTooLarge
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub, ValidationCache, ValidationResult

_applied = False
_oversized_hooks: dict[ID, Callable[[ID], None]] = {}


def apply() -> None:
    global _applied
    if not _applied:
        _swarm._HAPPY_EYEBALLS_DELAY = 0.0
        _tcp.TCPListener.get_addrs = _open_listener_addrs  # type: ignore[method-assign, assignment]
        logging.getLogger("libp2p").addHandler(logging.NullHandler())
        _pubsub_module.read_varint_prefixed_bytes_limited = _reporting_oversize(  # type: ignore[attr-defined]
            _pubsub_module.read_varint_prefixed_bytes_limited  # type: ignore[attr-defined]
        )
        _mdns_fixes()
        _applied = True


def on_oversized_frame(local: ID, hook: Callable[[ID], None] | None) -> None:
    """Call ``hook(sender)`` when a peer sends the node ``local`` a pubsub
    frame over the size limit (None: stop, when the node leaves)."""
    if hook is None:
        _oversized_hooks.pop(local, None)
    else:
        _oversized_hooks[local] = hook


def _reporting_oversize(read: Callable[..., Any]) -> Callable[..., Any]:
    async def limited(stream: Any, max_length: int) -> bytes:
        try:
            data: bytes = await read(stream, max_length)
        except MessageTooLarge:
            try:
                conn = stream.muxed_conn
                hook = _oversized_hooks.get(conn.secured_conn.get_local_peer())
                if hook is not None:
                    hook(conn.peer_id)
            except Exception as exc:  # never let the report break libp2p's handling
                logging.getLogger("p2pmarket.network").debug("oversize report: %r", exc)
            raise
        return data

    return limited


class _SuccessOnlyCache(ValidationCache):
    def put(self, msg_id: bytes, result: ValidationResult) -> None:
        if result.is_valid:
            super().put(msg_id, result)


def cache_only_successes(pubsub: Pubsub) -> None:
    old = pubsub.validation_cache
    pubsub.validation_cache = _SuccessOnlyCache(old.ttl, old.max_size)


def keep_own_peer_data(host: Any) -> None:
    """Never let the peerstore's size cap evict the host's own entry (6.)."""
    store = host.get_peerstore()
    own = host.get_id()
    enforce = store._enforce_peer_limit

    def enforce_sparing_own() -> None:
        mine = store.peer_data_map.pop(own, None)
        try:
            enforce()
        finally:
            if mine is not None:
                store.peer_data_map[own] = mine

    store._enforce_peer_limit = enforce_sparing_own


def _mdns_fixes() -> None:
    """Concrete LAN addresses in and out of mDNS (9.)."""
    from libp2p.discovery.mdns.broadcaster import PeerBroadcaster
    from libp2p.discovery.mdns.listener import PeerListener

    resolve = PeerBroadcaster._resolve_host_addrs
    extract = PeerListener._extract_peer_info

    def lan_addrs(broadcaster: PeerBroadcaster) -> list[str]:
        return _lan_mdns_addrs(resolve(broadcaster), broadcaster._get_local_ips())

    def usable_peer(listener: PeerListener, info: Any) -> Any:
        return _usable_mdns_peer(extract(listener, info))

    PeerBroadcaster._resolve_host_addrs = lan_addrs  # type: ignore[method-assign, assignment]
    PeerListener._extract_peer_info = usable_peer  # type: ignore[method-assign, assignment]


def _on_lan(text: str) -> bool:
    """Whether a multiaddr's IP is one a LAN peer could dial (not 0.0.0.0, ::, loopback)."""
    parts = text.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return True  # a /dns… name: mDNS's own filter decides
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_loopback)


def _lan_mdns_addrs(addrs: list[str], local_ips: list[str]) -> list[str]:
    """``addrs`` with each wildcard replaced by the LAN addresses in ``local_ips``
    (mDNS's own guess: the interface with the default route), loopback left out."""
    found: list[str] = []
    for addr in addrs:
        for wildcard, family in (("/ip4/0.0.0.0/", "ip4"), ("/ip6/::/", "ip6")):
            if addr.startswith(wildcard):
                rest = addr[len(wildcard) :]
                found += [
                    f"/{family}/{ip}/{rest}" for ip in local_ips if (":" in ip) == (family == "ip6")
                ]
                break
        else:
            found.append(addr)
    return [a for a in dict.fromkeys(found) if _on_lan(a)]


def _usable_mdns_peer(info: Any) -> Any:
    """A discovered peer without the addresses that would dial ourselves; None
    if none is left (9.)."""
    if info is None:
        return None
    info.addrs = [a for a in info.addrs if _on_lan(str(a))]
    return info if info.addrs else None


def _open_listener_addrs(listener: Any) -> tuple[Any, ...]:
    """``TCPListener.get_addrs`` without the sockets closed meanwhile (7.)."""
    found = []
    for inner in listener.listeners:
        try:
            found.append(_tcp._multiaddr_from_socket(inner.socket))
        except OSError:
            continue
    return tuple(found)


def announce(host: Any, addresses: Callable[[], list[Any]] | None) -> None:
    """Make ``host.get_addrs()`` return ``addresses()`` (None: undo) (8.)."""
    if addresses is None:
        host.__dict__.pop("get_addrs", None)
    else:
        host.get_addrs = addresses
