"""Real daemons behind simulated home routers (Linux network namespaces, nftables NAT).

The network (bench/netrig.py), one rig for the whole module:

    p1, p2          public hosts on the internet bridge (p1: everyone's bootstrap)
    s_eim           a seller behind an endpoint-independent, port-preserving NAT
    s_sym           a seller behind a symmetric NAT (a fresh port per destination)
    buyer           a buyer behind another endpoint-independent NAT

Every router drops connections that start from its WAN side, so nothing can dial
a NAT'd host directly: a NAT'd host is reached through a relay (circuit relay v2
on a public node) until DCUtR hole punching gives a direct connection, which two
endpoint-independent NATs allow and a symmetric one does not.

The tests that need the daemon's reachability (AutoNAT, relays, DCUtR) skip while
``p2pmarket daemon`` has no ``--relay-service`` option, i.e. until it is wired in.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from netns_support import create_listing, finds, needs_netns, wait_until

from bench.netrig import SCRIPT, Host, Rig

pytestmark = [pytest.mark.netns, needs_netns]


def _reachability_wired() -> bool:
    help_text = subprocess.run(
        [str(SCRIPT), "daemon", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--relay-service" in help_text


needs_relays = pytest.mark.skipif(
    not _reachability_wired(),
    reason="the daemon has no reachability yet (no --relay-service: AutoNAT, relays, DCUtR)",
)
# DCUtR starts on its own on a relayed connection and takes ~1 s when it works;
# a symmetric NAT's attempts fail, after up to ~22 s when a router answers RST.
UPGRADE_TIMEOUT = 30.0


@dataclass
class Net:
    rig: Rig
    p1: Host
    p2: Host
    s_eim: Host
    s_sym: Host
    buyer: Host

    @property
    def all(self) -> list[Host]:
        return [self.p1, self.p2, self.s_eim, self.s_sym, self.buyer]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with Rig() as rig:
        p1, p2 = rig.add_host(), rig.add_host()
        s_eim = rig.add_host(rig.add_router("eim"))
        s_sym = rig.add_host(rig.add_router("symmetric"))
        buyer = rig.add_host(rig.add_router("eim"))
        rig.start_all([p1], [])
        rig.start_all([p2, s_eim, s_sym, buyer], [p1])
        yield Net(rig, p1, p2, s_eim, s_sym, buyer)


def _peer(host: Host, other: Host) -> dict[str, Any] | None:
    """``host``'s connection entry for ``other`` (``p2pmarket peers``), if connected."""
    for entry in host.cli_json("peers"):
        if entry["peer_id"] == other.peer_id:
            return dict(entry)
    return None


def _relayed(addresses: list[str]) -> bool:
    return any("/p2p-circuit" in a for a in addresses)


def _direct(host: Host, other: Host) -> bool:
    entry = _peer(host, other)
    return entry is not None and any("/p2p-circuit" not in a for a in entry["addresses"])


def _received(host: Host, sender: Host, text: str) -> bool:
    thread = host.cli_json("msg", "thread", sender.peer_id)
    return any(m["direction"] == "in" and m["text"] == text for m in thread)


def _send(sender: Host, to: Host, text: str) -> None:
    result = sender.cli("msg", "send", to.peer_id, text)
    assert result.returncode == 0, result.stderr


def test_the_routers_really_block_inbound_connections(net: Net) -> None:
    # The premise of every test below: a public host cannot open a connection to
    # a NAT'd one, while the NAT'd one reaches the public host (it is connected).
    probe = subprocess.run(
        ["ip", "netns", "exec", net.p2.ns, "timeout", "3", "bash", "-c",
         f"exec 3<>/dev/tcp/{net.s_eim.router.wan_ip if net.s_eim.router else ''}/4690"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert probe.returncode != 0
    wait_until(lambda: _peer(net.s_eim, net.p1), "the NAT'd seller is connected to p1")


def test_a_natd_sellers_listing_reaches_everyone(net: Net) -> None:
    from_eim = create_listing(net.s_eim, "Sepeda lipat Brompton dari balik NAT")
    from_sym = create_listing(net.s_sym, "Sepeda lipat Dahon dari balik NAT")
    for host in net.all:
        wait_until(lambda h=host: finds(h, "brompton", from_eim), f"{host.name} has it")
        wait_until(lambda h=host: finds(h, "dahon", from_sym), f"{host.name} has it")


@needs_relays
def test_natd_nodes_know_it_and_hold_a_relay_on_a_public_node(net: Net) -> None:
    public_ids = {net.p1.peer_id, net.p2.peer_id}
    wait_until(lambda: net.p1.status()["reachability"] == "public", "p1 learns it is public")
    for host in (net.s_eim, net.s_sym, net.buyer):

        def relayed(h: Host = host) -> bool:
            status = h.status()
            return (
                status["reachability"] == "relayed"
                and bool(status["relays"])
                and set(status["relays"]) <= public_ids
                and _relayed(status["addresses"])
            )

        wait_until(relayed, f"{host.name} is relayed through p1 or p2")
        # Its LAN address is not dialable from anywhere: a node may still list it,
        # but the circuit address is what makes it reachable.
        assert any(
            a.endswith(f"/p2p-circuit/p2p/{host.peer_id}") for a in host.status()["addresses"]
        )


@needs_relays
def test_a_buyer_messages_a_seller_behind_symmetric_nat_through_a_relay(net: Net) -> None:
    _send(net.buyer, net.s_sym, "Halo, Dahon-nya masih ada?")
    wait_until(lambda: _received(net.s_sym, net.buyer, "Halo, Dahon-nya masih ada?"), "arrived")
    entry = _peer(net.buyer, net.s_sym)
    assert entry is not None and _relayed(entry["addresses"]), entry


@needs_relays
def test_between_endpoint_independent_nats_the_connection_upgrades_to_direct(net: Net) -> None:
    _send(net.buyer, net.s_eim, "Halo, Brompton-nya masih ada?")
    wait_until(lambda: _received(net.s_eim, net.buyer, "Halo, Brompton-nya masih ada?"), "arrived")
    wait_until(lambda: _direct(net.buyer, net.s_eim), "hole punched", UPGRADE_TIMEOUT)
    entry = _peer(net.buyer, net.s_eim)
    assert entry is not None
    assert net.s_eim.router is not None
    # Direct means to the seller's router's public address, the port it mapped.
    assert any(f"/ip4/{net.s_eim.router.wan_ip}/tcp/" in a for a in entry["addresses"]), entry
    _send(net.buyer, net.s_eim, "Bisa kirim ke Sleman?")
    wait_until(lambda: _received(net.s_eim, net.buyer, "Bisa kirim ke Sleman?"), "arrived direct")


@needs_relays
def test_behind_a_symmetric_nat_the_connection_stays_relayed_and_works(net: Net) -> None:
    _send(net.buyer, net.s_sym, "Masih ada?")
    wait_until(lambda: _received(net.s_sym, net.buyer, "Masih ada?"), "arrived")
    # Give hole punching its time; it must not leave the pair without a connection.
    time.sleep(6)
    assert not _direct(net.buyer, net.s_sym)
    _send(net.buyer, net.s_sym, "Saya ambil besok")
    wait_until(lambda: _received(net.s_sym, net.buyer, "Saya ambil besok"), "still arrives")
    entry = _peer(net.buyer, net.s_sym)
    assert entry is not None and _relayed(entry["addresses"]), entry


@needs_relays
def test_a_natd_node_joins_another_from_its_invite_through_a_relay(net: Net) -> None:
    # Neither can dial the other directly: the invite's circuit address is the way.
    invite = net.s_sym.cli("invite", "--no-qr")
    assert invite.returncode == 0, invite.stderr
    line = invite.stdout.strip().splitlines()[-1]
    joined = net.s_eim.cli("join", line)
    assert joined.returncode == 0, joined.stderr
    assert net.s_sym.peer_id in joined.stdout
    entry = _peer(net.s_eim, net.s_sym)
    assert entry is not None and _relayed(entry["addresses"]), entry


def test_the_mailbox_covers_a_natd_seller_who_is_offline(net: Net) -> None:
    seller, buyer, rig = net.s_eim, net.buyer, net.rig
    assert rig.stop(seller) == 0
    text = "Kalau sudah online, kabari ya"
    _send(buyer, seller, text)

    def left_with_mailboxes() -> bool:
        thread = buyer.cli_json("msg", "thread", seller.peer_id)
        return any(m["text"] == text and m["state"] == "sent" for m in thread)

    wait_until(left_with_mailboxes, "the buyer left it with mailboxes")
    assert not _received(seller, buyer, text)
    rig.start_all([seller], [net.p1])

    def collected() -> bool:
        seller.cli("msg", "check")
        return _received(seller, buyer, text)

    wait_until(collected, "the returning seller collected it")
