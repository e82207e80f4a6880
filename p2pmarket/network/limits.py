"""Connection and stream limits: how many peers may hold a node's sockets.

A node is a small machine (a phone, a laptop) on a public address, so what
strangers can make it hold is capped: connections dialled *to* us in total, per
peer and per IP address, and the streams one peer may have open at once. The
connections *we* dial (bootstrap peers, ``connect``, the DHT) get a little more
room on top, so a node whose inbound slots are full can still reach out.

What py-libp2p 0.8.1 does by itself, measured (see docs/PROTOCOL.md, "Resource
limits", and the tests):

- ``ConnectionConfig.max_connections`` is enforced on both directions when a
  connection is registered: we set it to the total (inbound cap + outbound room).
- Its inbound cap (a ``trio.CapacityLimiter`` of ``max_connections -
  min_connections`` slots) is never given back while the node runs: the handler
  holding the slot waits for the whole swarm to stop, not for its connection to
  close. With the defaults a node stops accepting *any* inbound connection after
  250 in its lifetime, so one peer dialling and hanging up 250 times (about a
  minute) makes it deaf until restart. :class:`_LiveInboundSlots` replaces it by
  a check of the connections open now.
- Its per-peer trim waits a 20 s grace period; ``libp2p.rcmgr`` counts streams
  only globally (10,000, and a stream over that waits instead of being refused),
  and has no per-peer or per-IP connection limit switched on. Those are ours:
  :func:`to_close` decides, :class:`StreamCap` counts.

The decision is pure, so it is tested without a network; the service calls
:func:`to_close` on each new connection and closes what it returns.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.network.config import ConnectionConfig

from p2pmarket.network.config import NetworkConfig

log = logging.getLogger("p2pmarket.network")

# py-libp2p's connection-manager watermarks, kept where our caps allow.
_LIBP2P_MIN_CONNECTIONS = 50
_LIBP2P_LOW_WATERMARK = 100


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps, from :class:`NetworkConfig`."""

    inbound: int  # connections peers dial to us, in total
    outbound_room: int  # connections we dial may go this far over ``inbound``
    per_peer: int  # connections to one peer, both directions
    per_ip: int  # inbound connections from one IP address
    streams_per_peer: int  # inbound streams of one peer open at once
    limit_loopback: bool  # count 127.0.0.1 / ::1 against ``per_ip`` too

    @classmethod
    def of(cls, config: NetworkConfig) -> Limits:
        return cls(
            inbound=config.max_connections,
            outbound_room=config.outbound_room,
            per_peer=config.max_connections_per_peer,
            per_ip=config.max_connections_per_ip,
            streams_per_peer=config.max_streams_per_peer,
            limit_loopback=config.limit_loopback,
        )

    @property
    def total(self) -> int:
        return self.inbound + self.outbound_room


@dataclass(frozen=True, slots=True)
class Conn:
    """What the gate needs to know of one open connection."""

    ref: object  # the connection itself, handed back to be closed
    peer: str
    ip: str | None
    inbound: bool
    opened: int  # larger is newer
    protected: bool  # a bootstrap peer or one we connected to on purpose
    score: float  # the peer's gossip score: negative means it misbehaved


def to_close(conns: Sequence[Conn], limits: Limits) -> list[Conn]:
    """The connections to close so that every limit holds again.

    - Per peer: the newest connections beyond ``per_peer`` (a peer needs one).
    - Per IP and in total, inbound only: the unprotected inbound connections of
      the worst-scored peers first, and among equals the newest, so a newcomer
      does not push out a well-behaved peer, but does push out a misbehaving one.
    Connections we dialled are never closed for the inbound caps (libp2p refuses
    ours beyond the total), nor are those of protected peers.
    """
    closing: dict[int, Conn] = {}

    def close(conn: Conn) -> None:
        closing[id(conn)] = conn

    by_peer: defaultdict[str, list[Conn]] = defaultdict(list)
    for conn in conns:
        by_peer[conn.peer].append(conn)
    for peer_conns in by_peer.values():
        # Inbound before outbound, newest first: a peer's own extra dials go first.
        extra = sorted(peer_conns, key=lambda c: (not c.inbound, -c.opened))
        for conn in extra[: max(0, len(peer_conns) - limits.per_peer)]:
            close(conn)

    def evictable(pool: Iterable[Conn]) -> list[Conn]:
        candidates = [c for c in pool if c.inbound and not c.protected and id(c) not in closing]
        return sorted(candidates, key=lambda c: (c.score, -c.opened))

    inbound = [c for c in conns if c.inbound and id(c) not in closing]
    per_ip = Counter(c.ip for c in inbound if c.ip is not None and _counts_for_ip(c.ip, limits))
    for ip, count in per_ip.items():
        for conn in evictable(c for c in inbound if c.ip == ip)[: max(0, count - limits.per_ip)]:
            close(conn)

    kept = sum(1 for c in inbound if id(c) not in closing)
    for conn in evictable(inbound)[: max(0, kept - limits.inbound)]:
        close(conn)
    return list(closing.values())


def _counts_for_ip(ip: str, limits: Limits) -> bool:
    """Loopback is one machine's own processes (and every test cluster): not
    counted per IP unless asked, like go-libp2p's resource manager."""
    if limits.limit_loopback:
        return True
    try:
        return not ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return True


# -- wiring into py-libp2p 0.8.1 ---------------------------------------------


def connection_config(limits: Limits) -> ConnectionConfig:
    """py-libp2p's own connection manager, sized to our total: it refuses a
    connection of either direction beyond it when the connection registers."""
    total = limits.total
    low = min(_LIBP2P_LOW_WATERMARK, total)
    return ConnectionConfig(
        max_connections=total,
        high_watermark=total,
        low_watermark=low,
        min_connections=min(_LIBP2P_MIN_CONNECTIONS, low),
        max_connections_per_peer=limits.per_peer,
    )


class _LiveInboundSlots:
    """Stands in for the swarm's ``_inbound_limiter`` (see the module docstring):
    refuses a new inbound socket before its handshake (which costs us the most)
    while the inbound connections open *now* fill the inbound cap plus the
    outbound room; below that the gate, after the handshake, picks which
    connection goes. ``release`` is a no-op: nothing is held."""

    def __init__(self, host: IHost, limits: Limits) -> None:
        self._network = host.get_network()
        self.total_tokens = limits.inbound + limits.outbound_room
        self._cap = self.total_tokens
        self.refused = 0

    @property
    def borrowed_tokens(self) -> int:
        return sum(1 for c in self._network.get_connections() if _is_inbound(c))

    def acquire_nowait(self) -> None:
        if self.borrowed_tokens >= self._cap:
            self.refused += 1
            raise trio.WouldBlock

    def release(self) -> None:
        pass


class StreamCap:
    """Counts each peer's inbound streams while their handlers run and resets a
    stream beyond ``limit``: one peer cannot hold the node's stream handlers
    (sync, mailbox, DHT, messages) all at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()
        self.refused = 0

    def wrap(
        self, handler: Callable[[INetStream], Awaitable[None]]
    ) -> Callable[[INetStream], Awaitable[None]]:
        async def capped(stream: INetStream) -> None:
            peer = stream.muxed_conn.peer_id.to_base58()
            if self.open[peer] >= self.limit:
                self.refused += 1
                log.debug("refused a stream from %s: %d open", peer, self.open[peer])
                try:
                    await stream.reset()
                except Exception as exc:  # the peer may be gone already
                    log.debug("resetting a refused stream failed: %s", exc)
                return
            self.open[peer] += 1
            try:
                await handler(stream)
            except trio.Cancelled:
                raise
            except Exception as exc:
                # py-libp2p lets an error in any protocol handler end the whole
                # host (its connection task re-raises it), and the node with it:
                # one peer's stream must never do that. Logged, and the stream reset.
                log.warning("a stream from %s failed: %r", peer, exc)
                with contextlib.suppress(Exception):
                    await stream.reset()
            finally:
                self.open[peer] -= 1
                if not self.open[peer]:
                    del self.open[peer]

        return capped


class Gate:
    """The limits applied to one host: :meth:`install` once the host exists,
    :meth:`check` on every new connection."""

    def __init__(self, limits: Limits, protected: Callable[[str], bool]) -> None:
        self.limits = limits
        self._protected = protected
        self.streams = StreamCap(limits.streams_per_peer)
        self._slots: _LiveInboundSlots | None = None
        self._order = 0
        self._opened: dict[int, int] = {}  # id(conn) -> arrival order
        self.closed = 0

    def install(self, host: IHost) -> None:
        """Replace py-libp2p 0.8.1's leaking inbound limiter and cap each peer's
        inbound streams. Private attributes of that version, checked here."""
        swarm: Any = host.get_network()
        if not hasattr(swarm, "_inbound_limiter") or not hasattr(swarm, "common_stream_handler"):
            raise RuntimeError("py-libp2p changed: revisit p2pmarket/network/limits.py")
        self._slots = _LiveInboundSlots(host, self.limits)
        swarm._inbound_limiter = self._slots
        swarm.common_stream_handler = self.streams.wrap(swarm.common_stream_handler)

    @property
    def refused(self) -> int:
        """Inbound sockets refused before their handshake."""
        return 0 if self._slots is None else self._slots.refused

    def check(self, host: IHost, score: Callable[[str], float]) -> list[INetConn]:
        """The open connections to close now, the newest one included if it broke
        a limit. Call when a connection opens."""
        live = host.get_network().get_connections()
        facts = []
        alive = set()
        for conn in live:
            key = id(conn)
            alive.add(key)
            if key not in self._opened:
                self._order += 1
                self._opened[key] = self._order
            peer = conn.muxed_conn.peer_id.to_base58()
            facts.append(
                Conn(
                    ref=conn,
                    peer=peer,
                    ip=_remote_ip(conn),
                    inbound=_is_inbound(conn),
                    opened=self._opened[key],
                    protected=self._protected(peer),
                    score=score(peer),
                )
            )
        self._opened = {k: v for k, v in self._opened.items() if k in alive}
        chosen = to_close(facts, self.limits)
        self.closed += len(chosen)
        return [c.ref for c in chosen]  # type: ignore[misc]


async def hang_up(conns: Sequence[INetConn]) -> None:
    """Close connections (the gate's choice, or a banned peer's), within 2 s."""
    with trio.move_on_after(2):
        for conn in conns:
            try:
                await conn.muxed_conn.close()
            except Exception as exc:  # closed already
                log.debug("closing a connection failed: %s", exc)


def _is_inbound(conn: INetConn) -> bool:
    return "inbound" in str(getattr(conn, "direction", "")).lower()


def _remote_ip(conn: INetConn) -> str | None:
    try:
        remote = conn.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
    except Exception:
        return None
    return str(remote[0]) if remote else None
