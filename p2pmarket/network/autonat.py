"""AutoNAT v1 (``/libp2p/autonat/1.0.0``): is this node reachable from outside?

Every node is a server: a peer asks "dial me back at these addresses", and we
open a *fresh* TCP connection to one of them, complete a Noise handshake that
proves the peer's id there, close it, and answer OK or E_DIAL_ERROR. Every node
is also a client: it asks a few connected peers (distinct IPs first) and turns
their answers into "public", "private" or "unknown" (autonat_verdicts.py).
The wire format is the protobuf py-libp2p ships, length-prefixed as in the spec.

Why not py-libp2p's ``AutoNATService`` (0.8.1)? Measured in network namespaces:

* its server dials back with ``host.connect``, which returns the connection the
  request came in on, so every address "passes": a host behind NAT was told
  PUBLIC. We dial with the transport itself (a new socket) and only upgrade its
  security, which never registers the connection in either swarm: no
  connected/disconnected notifications, nothing counted against connection
  limits. (The asker's swarm logs a failed muxer upgrade at debug/ERROR on its
  NullHandler'd logger; that is the cost of not registering the connection.)
* it counts a refusal or a broken stream as "private" and needs 4 agreeing
  servers, so with fewer peers it never resolves, and a host announcing
  0.0.0.0 was told PRIVATE. We replace wildcard addresses with the local
  address that routes to each server (and add the IPs peers observe us at,
  with our listen port), count only real dial results, and size the
  confirmations to the servers there are.
* nothing runs by itself. :meth:`AutoNat.run` serves and re-checks.

The server dials only addresses whose IP is the one the request came from (the
spec's rule: we must not be usable to make connections to third parties), at
most :data:`MAX_DIALS` of them, each within ``dial_timeout``, and limits each
asker and the total (:class:`~p2pmarket.network.autonat_verdicts.SlidingWindow`).
Requests over relayed connections are refused: their IP says nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost, INetStream
from libp2p.connection_types import ConnectionType
from libp2p.custom_types import TProtocol
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from p2pmarket.network.autonat_verdicts import (
    DEFAULT_CONFIRMATIONS,
    Backoff,
    SlidingWindow,
    Status,
    Verdicts,
    confirmations_for,
)

if TYPE_CHECKING:
    # trio-typing's stubs (installed with libp2p) shadow trio's own annotations
    # and have no trio.TaskStatus; at run time this name is only a string.
    from trio_typing import TaskStatus

log = logging.getLogger("p2pmarket.network.autonat")

AUTONAT_PROTOCOL: Final = TProtocol("/libp2p/autonat/1.0.0")
MAX_MESSAGE: Final = 8 * 1024  # a peer id and a few addresses
MAX_DIALS: Final = 4  # addresses one request makes us try
MAX_ANNOUNCED: Final = 8  # addresses we put in one request
PER_ASKER: Final = 3  # requests per asker…
TOTAL: Final = 30  # …and from everyone, per window
WINDOW: Final = 60.0

_OK: Final = int(Message.OK)
_DIAL_ERROR: Final = int(Message.E_DIAL_ERROR)


class AutoNat:
    """Serve AutoNAT and keep our own reachability up to date.

    ``status`` is "public" once enough servers reached us on a fresh
    connection, "private" once enough tried and failed, else "unknown";
    ``public_addrs`` are the addresses they reached. ``on_change(status)`` is
    called (synchronously, from :meth:`run`'s task) whenever either changes.
    """

    def __init__(
        self,
        host: IHost,
        *,
        on_change: Callable[[Status], None] | None = None,
        interval: float = 300.0,  # re-check this often once known
        retry: float = 2.0,  # first re-check while unknown (then doubling)
        poll: float = 0.5,  # while unknown, look for new peers this often
        max_servers: int = 3,  # asked per round
        confirmations: int = DEFAULT_CONFIRMATIONS,
        dial_timeout: float = 5.0,  # per address, as a server
        ask_timeout: float = 30.0,  # per request, as a client
    ) -> None:
        self._host = host
        self._on_change = on_change
        self._interval = interval
        self._backoff = Backoff(low=retry, high=interval)
        self._poll = poll
        self._max_servers = max_servers
        self._confirmations = confirmations
        self._dial_timeout = dial_timeout
        self._ask_timeout = ask_timeout
        self._verdicts = Verdicts(ttl=3 * interval)
        self._required = 1
        self._limit = SlidingWindow(limit=PER_ASKER, total=TOTAL, window=WINDOW)
        self._dialling = trio.CapacityLimiter(4)
        self._status: Status = "unknown"
        self._public_addrs: tuple[str, ...] = ()
        self.dials_made = 0  # fresh dial-backs we attempted as a server (tests, status)

    @property
    def status(self) -> Status:
        """Our reachability: "public", "private" or "unknown" (class docstring)."""
        return self._status

    @property
    def public_addrs(self) -> tuple[str, ...]:
        """The addresses servers reached us at on fresh connections, newest
        first (empty unless public): the ones worth announcing."""
        return self._public_addrs

    # ------------------------------------------------------------------ life

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve requests and re-check our reachability until cancelled."""
        self._host.set_stream_handler(AUTONAT_PROTOCOL, self._serve)
        task_status.started()
        try:
            await self._check_forever()
        finally:
            self._host.remove_stream_handler(AUTONAT_PROTOCOL)

    async def _check_forever(self) -> None:
        while True:
            asked = set(self._servers())
            before = self._direct_addrs()
            status = await self.check()
            if status != "unknown":
                self._backoff.reset()
                # Re-check when due, or soon after our direct addresses change (a
                # UPnP mapping that lands after the first verdict): a verdict on
                # the old ones says nothing of the new.
                with trio.move_on_after(self._interval * random.uniform(0.9, 1.1)):
                    while self._direct_addrs() == before:
                        await trio.sleep(self._poll)
                continue
            # Unknown: try again with backoff, and at once when a new server appears.
            with trio.move_on_after(self._backoff.failed()):
                while not set(self._servers()) - asked:
                    await trio.sleep(self._poll)
                self._backoff.reset()

    # ---------------------------------------------------------------- client

    async def check(self) -> Status:
        """One round: ask up to ``max_servers`` connected peers (one per IP,
        the ones without a fresh verdict first) and update the status."""
        servers = self._servers()
        by_ip: dict[str, list[ID]] = {}
        for peer, ip in servers.items():
            by_ip.setdefault(ip, []).append(peer)
        if by_ip:
            self._required = confirmations_for(len(by_ip), self._confirmations)
        ips = list(by_ip)
        random.shuffle(ips)
        chosen = [(random.choice(by_ip[ip]), ip) for ip in ips[: self._max_servers]]
        async with trio.open_nursery() as nursery:
            for peer, ip in chosen:
                nursery.start_soon(self._ask_and_record, peer, ip)
        self._update()
        return self.status

    async def _ask_and_record(self, peer: ID, ip: str) -> None:
        try:
            code, addr = await self.ask(peer, self._announced(ip))
        except Exception as exc:  # timeout, reset, no AutoNAT: not a verdict
            log.debug("AutoNAT request to %s failed: %r", peer, exc)
            return
        log.debug("AutoNAT: %s (%s) answered %s %s", peer, ip, code, addr)
        if code in (_OK, _DIAL_ERROR):
            self._verdicts.record(ip, code == _OK, trio.current_time(), addr)

    async def ask(self, peer: ID, addrs: Sequence[multiaddr.Multiaddr]) -> tuple[int, str | None]:
        """Ask ``peer`` to dial us back at ``addrs``: its status code
        (``Message.OK``, ``E_DIAL_ERROR``, ``E_DIAL_REFUSED``…) and the address
        it reached. Raises on a broken or slow stream."""
        request = Message(type=Message.DIAL)
        request.dial.peer.id = self._host.get_id().to_bytes()
        request.dial.peer.addrs.extend(a.to_bytes() for a in addrs)
        with trio.fail_after(self._ask_timeout):
            stream = await self._host.new_stream(peer, [AUTONAT_PROTOCOL])
            try:
                await stream.write(encode_varint_prefixed(request.SerializeToString()))
                raw = await read_varint_prefixed_bytes_limited(stream, MAX_MESSAGE)
            finally:
                await stream.close()
        response = Message()
        response.ParseFromString(raw)
        reached = response.dialResponse.addr
        addr = str(multiaddr.Multiaddr(reached)) if reached else None
        return int(response.dialResponse.status), addr

    def _update(self) -> None:
        now = trio.current_time()
        status = self._verdicts.status(self._required, now)
        addrs = self._verdicts.confirmed_addrs(now) if status == "public" else ()
        if (status, addrs) != (self.status, self.public_addrs):
            log.info("AutoNAT: %s -> %s %s", self.status, status, list(addrs))
            self._status, self._public_addrs = status, addrs
            if self._on_change is not None:
                self._on_change(status)

    def _direct_addrs(self) -> set[str]:
        return {str(a) for a in self._host.get_addrs() if _tcp_parts(a) is not None}

    def _servers(self) -> dict[ID, str]:
        """Connected peers that serve AutoNAT over a direct connection, and
        the IP we reach each at."""
        found: dict[ID, str] = {}
        network = self._host.get_network()
        for peer in self._host.get_connected_peers():
            if AUTONAT_PROTOCOL not in _protocols(self._host, peer):
                continue
            for conn in network.get_connections(peer):
                ip = _conn_ip(conn)
                if ip is not None:
                    found[peer] = ip
                    break
        return found

    def _announced(self, server_ip: str) -> list[multiaddr.Multiaddr]:
        """What we ask a server at ``server_ip`` to dial: our announced TCP
        addresses, a wildcard one made concrete with the local address that
        routes to that server, plus each IP peers observe us at with our
        listen ports (behind a port-preserving NAT, that is how we are
        reached; the server only dials addresses on the IP it sees anyway)."""
        out: list[str] = []
        ports: set[tuple[str, str]] = set()  # (ip4|ip6, port)
        for addr in self._host.get_addrs():
            parts = _tcp_parts(addr)
            if parts is None:
                continue
            family, ip, port = parts
            ports.add((family, port))
            if ipaddress.ip_address(ip).is_unspecified:
                local = _route_ip(server_ip)
                if local is None or _family(local) != family:
                    continue
                ip = local
            out.append(f"/{family}/{ip}/tcp/{port}")
        for seen in _observed(self._host):
            parts = _tcp_parts(seen)
            if parts is None:
                continue
            family, ip, _ = parts
            out += [f"/{family}/{ip}/tcp/{p}" for f, p in sorted(ports) if f == family]
        return [multiaddr.Multiaddr(a) for a in list(dict.fromkeys(out))[:MAX_ANNOUNCED]]

    # ---------------------------------------------------------------- server

    async def _serve(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(MAX_DIALS * self._dial_timeout + 10):
                raw = await read_varint_prefixed_bytes_limited(stream, MAX_MESSAGE)
                request = Message()
                request.ParseFromString(raw)
                response = await self._answer(stream, request)
                await stream.write(encode_varint_prefixed(response.SerializeToString()))
        except Exception as exc:  # a bad peer or a slow one: drop the stream
            log.debug("AutoNAT: serving a request failed: %r", exc)
            await _reset(stream)
            return
        finally:
            await _close(stream)

    async def _answer(self, stream: INetStream, request: Message) -> Message:
        asker: ID = stream.muxed_conn.peer_id
        if request.type != Message.DIAL or not request.HasField("dial"):
            return _response(Message.E_BAD_REQUEST, "expected a DIAL")
        if request.dial.peer.id != asker.to_bytes():
            return _response(Message.E_BAD_REQUEST, "peer id is not the asker's")
        ip = _conn_ip(getattr(stream, "swarm_conn", None) or stream.muxed_conn)
        if ip is None:
            return _response(Message.E_DIAL_REFUSED, "relayed or unknown connection")
        if not self._limit.allow(str(asker), trio.current_time()):
            return _response(Message.E_DIAL_REFUSED, "too many requests")
        targets = _same_ip(request.dial.peer.addrs, ip)
        if not targets:
            return _response(Message.E_DIAL_REFUSED, "no address on the IP you came from")
        async with self._dialling:
            for addr in targets:
                self.dials_made += 1
                if await self._dial_back(asker, addr):
                    response = _response(Message.OK, "")
                    response.dialResponse.addr = addr.to_bytes()
                    return response
        return _response(Message.E_DIAL_ERROR, "dial failed")

    async def _dial_back(self, peer: ID, addr: multiaddr.Multiaddr) -> bool:
        """Open a new TCP connection to ``addr`` and check that ``peer`` is
        there (a Noise handshake proves its key), then close it. Never through
        the swarm: it would hand back the connection we already have."""
        swarm: Any = self._host.get_network()
        raw: Any = None
        with trio.move_on_after(self._dial_timeout):
            try:
                transport = swarm.transport_manager.transport_for_dialing(addr)
                raw = await transport.dial(addr)
                secured = await swarm.upgrader.upgrade_security(raw, True, peer)
                await secured.close()
                return True
            except Exception as exc:
                log.debug("AutoNAT: dial-back to %s at %s failed: %r", peer, addr, exc)
            finally:
                if raw is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        await _close(raw)
        return False


# ---------------------------------------------------------------------- helpers


def _response(status: Any, text: str) -> Message:
    response = Message(type=Message.DIAL_RESPONSE)
    response.dialResponse.status = status
    if text:
        response.dialResponse.statusText = text
    return response


def _family(ip: str) -> str:
    return "ip6" if ipaddress.ip_address(ip).version == 6 else "ip4"


def _tcp_parts(addr: multiaddr.Multiaddr) -> tuple[str, str, str] | None:
    """(ip4|ip6, ip, port) of a direct TCP address, else None (relayed, DNS…)."""
    parts = str(addr).split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    if "p2p-circuit" in parts:
        return None
    try:
        return parts[1], str(ipaddress.ip_address(parts[2])), parts[4]
    except ValueError:
        return None


def _same_ip(raw_addrs: Sequence[bytes], ip: str) -> list[multiaddr.Multiaddr]:
    """The announced addresses we may dial: TCP, on ``ip``, port not 0, at most
    :data:`MAX_DIALS`."""
    out: list[multiaddr.Multiaddr] = []
    for raw in raw_addrs:
        try:
            addr = multiaddr.Multiaddr(raw)
        except Exception:
            continue
        parts = _tcp_parts(addr)
        if parts is None or parts[1] != ip or parts[2] == "0":
            continue
        plain = multiaddr.Multiaddr(f"/{parts[0]}/{parts[1]}/tcp/{parts[2]}")
        if all(str(plain) != str(a) for a in out):
            out.append(plain)
    return out[:MAX_DIALS]


def _conn_ip(conn: Any) -> str | None:
    """The remote IP of a direct connection; None if relayed or unknown.

    Fails closed. A relayed connection's remote address is the relay's (py-libp2p
    0.8.1's circuit wrapper delegates it), so trusting it would make us dial the
    relay's IP; it is recognised by a /p2p-circuit transport address (on the
    swarm's connection) or a RELAYED connection type (down the muxer's chain)."""
    try:
        muxed = getattr(conn, "muxed_conn", conn)
        for layer in (conn, muxed):
            if any("p2p-circuit" in str(a) for a in layer.get_transport_addresses()):
                return None
            kind = getattr(layer, "get_connection_type", None)
            if kind is not None and kind() == ConnectionType.RELAYED:
                return None
        remote = muxed.get_remote_address()
        if not remote:
            return None
        ip = ipaddress.ip_address(remote[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return str(ip)
    except Exception:
        return None


def _route_ip(remote_ip: str) -> str | None:
    """Our local address on the route to ``remote_ip`` (a UDP connect sends
    nothing; the kernel just picks the source address)."""
    family = socket.AF_INET6 if _family(remote_ip) == "ip6" else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((remote_ip, 9))
            return str(ipaddress.ip_address(probe.getsockname()[0]))
    except (OSError, ValueError):
        return None


def _observed(host: IHost) -> list[multiaddr.Multiaddr]:
    """Addresses peers told us (identify) they see us at, even from a single
    observer. py-libp2p 0.8.1 offers them only through the host's private
    ``_observed_addr_manager`` (its own DCUtR reads it the same way); its
    public ``get_addrs`` adds them only after 4 distinct observers."""
    manager = getattr(host, "_observed_addr_manager", None)
    try:
        return list(manager.addrs(min_observers=1)) if manager is not None else []
    except Exception:
        return []


def _protocols(host: IHost, peer: ID) -> list[str]:
    try:
        return [str(p) for p in host.get_peerstore().get_protocols(peer)]
    except Exception:  # an unknown peer
        return []


async def _close(thing: Any) -> None:
    try:
        await thing.close()
    except Exception as exc:
        log.debug("AutoNAT: closing %r failed: %r", thing, exc)


async def _reset(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception as exc:
        log.debug("AutoNAT: resetting a stream failed: %r", exc)
