"""Circuit relay v2 through our Reachability, with real py-libp2p hosts on loopback.

The AutoNAT verdict is forced ("public" for relays, "private" for the hosts
that need one): what is tested here is what the node does with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.stream_muxer.exceptions import MuxedStreamError

from p2pmarket.network import _libp2p_fixes, holepunch
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.holepunch import HolePunch
from p2pmarket.network.reachability import Reachability
from p2pmarket.network.relaying import ServiceLimits

ECHO = TProtocol("/p2pmarket-test/echo/1")
CONFIG = NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",), mdns=False, upnp=False, connect_timeout=5)


async def eventually(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"condition not met within {timeout} s")


async def _read_all(stream: INetStream) -> bytes:
    got = b""
    try:
        while data := await stream.read(65536):
            got += data
    except StreamEOF:
        pass
    return got


async def _echo(stream: INetStream) -> None:
    try:
        while True:
            try:
                data = await stream.read(65536)
            except StreamEOF:
                break
            if not data:
                break
            await stream.write(data)
        await stream.close()
    except Exception:
        await stream.reset()


@dataclass
class Peer:
    host: IHost
    reach: Reachability
    status: str
    stop: trio.CancelScope
    changes: int = 0
    done: trio.Event = dataclasses.field(default_factory=trio.Event)

    @property
    def id(self) -> ID:
        return self.host.get_id()

    @property
    def address(self) -> str:
        return str(self.host.get_addrs()[0])


@asynccontextmanager
async def swarm() -> AsyncIterator[PeerFactory]:
    _libp2p_fixes.apply()
    async with trio.open_nursery() as nursery:
        yield PeerFactory(nursery)
        nursery.cancel_scope.cancel()


class PeerFactory:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery

    async def start(
        self,
        status: str,
        *,
        limits: ServiceLimits | None = None,
        hole_punch: bool = False,
        config: NetworkConfig = CONFIG,
    ) -> Peer:
        return await self.nursery.start(self._run, status, limits, hole_punch, config)  # type: ignore[no-any-return]

    async def _run(
        self,
        status: str,
        limits: ServiceLimits | None,
        hole_punch: bool,
        config: NetworkConfig,
        task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listen = [multiaddr.Multiaddr(a) for a in config.listen]
        host = new_host(
            key_pair=create_new_key_pair(), listen_addrs=listen, muxer_preference="YAMUX"
        )
        host.set_stream_handler(ECHO, _echo)
        with trio.CancelScope() as scope:
            peer: Peer

            def changed() -> None:
                peer.changes += 1

            reach = Reachability(
                host,
                config,
                autonat_status=lambda: peer.status,
                on_change=changed,
                limits=limits,
                hole_punch=hole_punch,
                interval=0.1,
            )
            peer = Peer(host, reach, status, scope)
            try:
                async with host.run(listen), trio.open_nursery() as inner:
                    await inner.start(reach.run)
                    task_status.started(peer)
            finally:
                peer.done.set()


async def connect(a: Peer, b: Peer) -> None:
    await a.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(b.address)))


async def echo(via: Peer, to: Peer, payload: bytes) -> bytes:
    stream = await via.host.new_stream(to.id, [ECHO])
    await stream.write(payload)
    await stream.close()
    return await _read_all(stream)


def circuits(peer: Peer) -> list[str]:
    return [a for a in peer.reach.announced() if "/p2p-circuit" in a]


def relayed_conns(host: IHost, peer: ID) -> list[list[str]]:
    found = []
    for conn in host.get_network().connections.get(peer, []):
        addrs = [str(a) for a in conn.get_transport_addresses()]
        if any("/p2p-circuit" in a for a in addrs):
            found.append(addrs)
    return found


@pytest.mark.trio
async def test_a_private_node_is_reached_through_its_relay() -> None:
    async with swarm() as peers:
        relay = await peers.start("public")
        private = await peers.start("private")
        dialler = await peers.start("unknown")
        assert private.reach.kind == "private"
        await connect(private, relay)
        await eventually(lambda: private.reach.kind == "relayed")
        assert private.reach.relays == (str(relay.id),)
        await eventually(lambda: circuits(private))
        assert all(
            a.endswith(f"/p2p/{relay.id}/p2p-circuit/p2p/{private.id}") for a in circuits(private)
        )
        # the announced addresses are what identify tells peers (host.get_addrs())
        assert private.reach.announced() == tuple(str(a) for a in private.host.get_addrs())
        assert Reachability.is_public_peer(private.host, relay.id)
        assert not Reachability.is_public_peer(relay.host, private.id)

        assert await dialler.reach.dial(private.id, circuits(private))
        assert relayed_conns(dialler.host, private.id), "the connection goes through the relay"
        # the target sees the relay it came through (py-libp2p named itself)
        await eventually(lambda: relayed_conns(private.host, dialler.id))
        assert any(
            f"/p2p/{relay.id}/p2p-circuit" in a for a in relayed_conns(private.host, dialler.id)[0]
        )
        assert await echo(dialler, private, b"halo dari Sleman") == b"halo dari Sleman"
        assert relay.reach.relay_service.reservations == 1
        # the dialler learnt the circuit addresses by identify over the circuit
        store = dialler.host.get_peerstore()
        await eventually(lambda: any("/p2p-circuit" in str(a) for a in store.addrs(private.id)))


@pytest.mark.trio
async def test_a_public_node_announces_no_circuit_and_relays_only_while_public() -> None:
    async with swarm() as peers:
        node = await peers.start("unknown")
        other = await peers.start("private")
        await connect(other, node)
        await trio.sleep(0.5)
        assert not node.reach.relay_service.serving
        assert other.reach.relays == ()
        node.status = "public"
        await eventually(lambda: other.reach.kind == "relayed")  # identify push told it
        assert not circuits(node) and node.reach.kind == "public"
        node.status = "private"
        await eventually(lambda: other.reach.kind == "private")


@pytest.mark.trio
async def test_a_reservation_over_the_cap_is_refused() -> None:
    async with swarm() as peers:
        relay = await peers.start("public", limits=ServiceLimits(max_reservations=1))
        first = await peers.start("private")
        second = await peers.start("private")
        await connect(first, relay)
        await eventually(lambda: first.reach.kind == "relayed")
        await connect(second, relay)
        await eventually(lambda: relay.reach.relay_service.refused >= 1)
        assert second.reach.kind == "private" and not circuits(second)
        assert relay.reach.relay_service.reservations == 1


@pytest.mark.trio
async def test_a_circuit_over_its_data_limit_is_closed() -> None:
    async with swarm() as peers:
        relay = await peers.start("public", limits=ServiceLimits(circuit_bytes=64 * 1024))
        private = await peers.start("private")
        dialler = await peers.start("unknown")
        await connect(private, relay)
        await eventually(lambda: circuits(private))
        assert await dialler.reach.dial(private.id, circuits(private))
        assert await echo(dialler, private, b"x" * 1000) == b"x" * 1000
        with trio.fail_after(10):
            try:
                got = await echo(dialler, private, b"y" * (256 * 1024))
            except (StreamError, MuxedStreamError, ConnectionError):
                got = b""
        assert len(got) < 256 * 1024, "the relay cut the circuit"
        await eventually(lambda: not relayed_conns(dialler.host, private.id))


@pytest.mark.trio
async def test_a_vanished_relay_is_replaced_then_the_node_says_private() -> None:
    async with swarm() as peers:
        first = await peers.start("public")
        second = await peers.start("public")
        private = await peers.start("private")
        await connect(private, first)
        await eventually(lambda: private.reach.relays == (str(first.id),))
        await connect(private, second)
        await eventually(lambda: set(private.reach.relays) == {str(first.id), str(second.id)})
        first.stop.cancel()
        await eventually(lambda: private.reach.relays == (str(second.id),))
        assert all(str(first.id) not in a for a in circuits(private))
        second.stop.cancel()
        await eventually(lambda: private.reach.kind == "private")
        assert not circuits(private)


@pytest.mark.trio
async def test_upnp_never_delays_start_up_and_failing_is_a_quiet_status() -> None:
    # no router answers here: discovery takes its few seconds, in the background
    config = dataclasses.replace(CONFIG, upnp=True)
    async with swarm() as peers:
        started = trio.current_time()
        node = await peers.start("unknown", config=config)
        assert trio.current_time() - started < 1.0
        assert node.reach.upnp_status == "starting"
        quitter = await peers.start("unknown", config=config)
        stopped = trio.current_time()
        quitter.stop.cancel()
        with trio.fail_after(5):
            await quitter.done.wait()
        assert trio.current_time() - stopped < 1.0, "a stop does not wait for the router"
        await eventually(lambda: node.reach.upnp_status != "starting", timeout=15)
        assert "UPnP" in node.reach.upnp_status or "TCP port" in node.reach.upnp_status
        assert node.reach.kind == "unknown" and node.reach.announced()


def direct_conns(host: IHost, peer: ID) -> int:
    return sum(
        1
        for conn in host.get_network().connections.get(peer, [])
        if not any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    )


@pytest.mark.trio
async def test_dcutr_upgrades_a_relayed_connection_to_a_direct_one() -> None:
    # on loopback nothing stands in the way: the upgrade must happen by itself
    async with swarm() as peers:
        relay = await peers.start("public", hole_punch=True)
        private = await peers.start("private", hole_punch=True)
        dialler = await peers.start("unknown", hole_punch=True)
        await connect(private, relay)
        await eventually(lambda: circuits(private))
        assert await dialler.reach.dial(private.id, circuits(private))
        assert relayed_conns(dialler.host, private.id) and not direct_conns(
            dialler.host, private.id
        )
        await eventually(lambda: direct_conns(dialler.host, private.id), timeout=15)
        assert await echo(dialler, private, b"langsung") == b"langsung"


WILDCARD = dataclasses.replace(CONFIG, listen=("/ip4/0.0.0.0/tcp/0",))


def listen_port(peer: Peer) -> int:
    return int(peer.host.get_transport_addrs()[0].value_for_protocol("tcp"))


def hole_punch_of(peer: Peer) -> HolePunch:
    dcutr = getattr(peer.host, "_dcutr_protocol", None)  # where 0.8.1 registers it
    assert isinstance(dcutr, HolePunch)
    return dcutr


@pytest.mark.trio
async def test_dcutr_from_wildcard_listeners_dials_from_the_listening_port() -> None:
    # Our default listen address is 0.0.0.0. py-libp2p 0.8.1 bound hole-punch dials
    # to the first *announced* address, 127.0.0.1, so behind a NAT no SYN ever left
    # (EINVAL); they must leave from the listening socket itself, whose port is the
    # one the NAT maps and the peer predicted.
    async with swarm() as peers:
        relay = await peers.start("public", hole_punch=True, config=WILDCARD)
        private = await peers.start("private", hole_punch=True, config=WILDCARD)
        dialler = await peers.start("unknown", hole_punch=True, config=WILDCARD)
        await connect(private, relay)
        await eventually(lambda: circuits(private))
        started = trio.current_time()
        assert await dialler.reach.dial(private.id, circuits(private))
        await eventually(lambda: direct_conns(dialler.host, private.id), timeout=15)
        assert trio.current_time() - started < 5, "the receiving side starts at once"
        # only the side that received the relayed connection started a session
        assert hole_punch_of(private).sessions.get(dialler.id) == 1
        assert dialler.id not in hole_punch_of(dialler).sessions
        ports = {
            int(str(a).split("/tcp/")[1].split("/")[0])
            for conn in private.host.get_network().connections.get(dialler.id, [])
            for a in conn.get_transport_addresses()
            if "/p2p-circuit" not in str(a)
        }
        assert listen_port(dialler) in ports, (ports, listen_port(dialler))
        assert await echo(dialler, private, b"langsung") == b"langsung"


@pytest.mark.trio
async def test_a_hole_punch_that_cannot_work_is_tried_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Neither side listens, so neither has an address the other could be dialled
    # at, as behind a symmetric NAT none can be predicted: every session fails.
    # The sessions stop at MAX_SESSIONS and the relayed connection goes on working.
    monkeypatch.setattr(holepunch, "RETRY_AFTER", 0.2)
    async with swarm() as peers:
        relay = await peers.start("public", hole_punch=True)
        private = await peers.start("private", hole_punch=True, config=NO_LISTEN)
        dialler = await peers.start("unknown", hole_punch=True, config=NO_LISTEN)
        await connect(private, relay)
        await eventually(lambda: circuits(private))
        assert await dialler.reach.dial(private.id, circuits(private))
        punch = hole_punch_of(private)
        await eventually(lambda: punch.sessions.get(dialler.id) == holepunch.MAX_SESSIONS)
        await trio.sleep(1.0)  # several retry periods: no further session
        assert punch.sessions.get(dialler.id) == holepunch.MAX_SESSIONS
        assert not direct_conns(dialler.host, private.id)
        assert await echo(dialler, private, b"lewat relay") == b"lewat relay"


NO_LISTEN = dataclasses.replace(CONFIG, listen=())


def test_hole_punch_dials_leave_from_the_listening_socket() -> None:
    def source(listening: list[str], target: str) -> tuple[str, int] | None:
        return holepunch.listen_source(
            [multiaddr.Multiaddr(a) for a in listening], multiaddr.Multiaddr(target)
        )

    wildcard = ["/ip4/0.0.0.0/tcp/4690"]
    assert source(wildcard, "/ip4/203.0.113.201/tcp/4690") == ("0.0.0.0", 4690)
    assert source(wildcard, "/ip4/192.168.1.10/tcp/4690") == ("0.0.0.0", 4690)
    # a peer's loopback address is our own machine: never dialled from a wildcard
    assert source(wildcard, "/ip4/127.0.0.1/tcp/4690") is None
    concrete = ["/ip4/127.0.0.1/tcp/5000", "/ip4/192.168.1.10/tcp/4690"]
    assert source(concrete, "/ip4/203.0.113.201/tcp/4690") == ("192.168.1.10", 4690)
    assert source(concrete, "/ip4/127.0.0.1/tcp/4691") == ("127.0.0.1", 5000)
    assert source(["/ip6/::/tcp/4690"], "/ip4/203.0.113.201/tcp/4690") is None
    assert source(["/ip6/::/tcp/4690"], "/ip6/2001:db8::1/tcp/4690") == ("::", 4690)
