"""UPnP port mapping against a real UPnP IGD router (miniupnpd) in network namespaces.

The network (bench/netrig.py, one rig for the module):

    router          an endpoint-independent NAT router (nftables masquerade, new
                    connections from the WAN dropped) running miniupnpd, Debian's
                    UPnP IGD daemon, on its LAN bridge, with the nftables backend
                    adding its forward/DNAT rules to the router's own tables
    lan1, lan2      two hosts behind it, each with a real ``p2pmarket daemon``
                    listening on the same port (4690), UPnP on (the default)
    pub             a public host, everyone's bootstrap
    stranger        a public host that no one has dialled

Why the router's WAN address is not the rig's 203.0.113.x: that range is
TEST-NET-3, and both miniupnpd ("Reserved / private IP address on ext interface:
Port forwarding is impossible") and portmap.py (a gateway whose external address
is not global is a double NAT) rightly refuse to map behind it. So the router's
WAN side gets a global address (:data:`WAN`, just above the carrier-grade NAT
range 100.64.0.0/10) and the public hosts a second address in that /24. No
namespace has a route off the machine, so the address never leaves it.

What it shows: each daemon gets a mapping and announces the router's WAN address
and the mapped port (the second one on another external port: the first holds
4690); a host that was never dialled can dial the NAT'd daemon there; AutoNAT's
dial-back through the mapping says "public"; and a daemon that stops removes its
mapping from the router.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from netns_support import needs_netns, wait_until

from bench.netrig import PORT, Host, Rig, Router, _run

pytestmark = [pytest.mark.netns, needs_netns]

MINIUPNPD: Final = "/usr/sbin/miniupnpd"
WAN: Final = "100.128.0"  # global (just above 100.64.0.0/10); never leaves the rig
ROUTER_WAN: Final = f"{WAN}.200"
MAPPED_TIMEOUT: Final = 20.0  # SSDP discovery (~2 s) and the mapping, on a loaded machine


def _miniupnpd_reason() -> str | None:
    """Why miniupnpd (nftables backend) is not usable here, after trying to install it."""
    if not Path(MINIUPNPD).exists() and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "miniupnpd-nftables"]
        for command in (install, ["apt-get", "update"], install):
            try:
                subprocess.run(command, capture_output=True, env=env, timeout=300, check=False)
            except (OSError, subprocess.TimeoutExpired):
                break
            if Path(MINIUPNPD).exists():
                break
    if not Path(MINIUPNPD).exists():
        return "miniupnpd is missing and `apt-get install miniupnpd-nftables` did not bring it"
    version = subprocess.run(
        [MINIUPNPD, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    if "nftables" not in version.stdout + version.stderr:
        return "the installed miniupnpd is not the nftables build (miniupnpd-nftables)"
    return None


_NO_MINIUPNPD = None if shutil.which("ip") is None else _miniupnpd_reason()
needs_miniupnpd = pytest.mark.skipif(
    _NO_MINIUPNPD is not None, reason=f"UPnP netns test: {_NO_MINIUPNPD}"
)


def make_upnp_router(rig: Rig, router: Router) -> None:
    """Give ``router`` a global WAN address and the nftables chains miniupnpd fills.

    Forwarded connections must pass the rig's ``iifname "wan" ct state new drop``:
    in nftables every base chain of a hook votes and a drop in any is final, so the
    router's own forward chain jumps to miniupnpd's chain first (an accept there
    ends that chain), as a real router's firewall does."""
    ns = router.ns
    _run("ip", "-n", ns, "addr", "del", f"{router.wan_ip}/24", "dev", "wan")
    _run("ip", "-n", ns, "addr", "add", f"{ROUTER_WAN}/24", "dev", "wan")
    router.wan_ip = ROUTER_WAN
    _run(
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-f",
        "-",
        stdin="""
table inet filter {
  chain miniupnpd {}
  chain prerouting_miniupnpd {}
  chain postrouting_miniupnpd {}
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
  }
}
insert rule inet filter forward jump miniupnpd
""",
    )


def start_miniupnpd(rig: Rig, router: Router) -> subprocess.Popen[bytes]:
    """miniupnpd in ``router``'s namespace, serving its LAN, mapping for LAN hosts
    only (ports 1024-65535, each host its own address: secure mode)."""
    conf = rig.root / f"miniupnpd-{router.name}.conf"
    conf.write_text(
        f"""ext_ifname=wan
listening_ip=lan
port=0
enable_upnp=yes
enable_natpmp=no
secure_mode=yes
system_uptime=yes
uuid=3a9d2c1e-7b4f-4e2a-9c1d-5f6e7a8b9c0d
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 {router.lan_prefix}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""
    )
    log = rig.root / f"miniupnpd-{router.name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *("ip", "netns", "exec", router.ns, MINIUPNPD, "-d", "-f", str(conf)),
                *("-P", str(rig.root / f"miniupnpd-{router.name}.pid")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_until(
        lambda: process.poll() is not None or "HTTP listening on port" in log.read_text(),
        "miniupnpd listening",
        timeout=10,
    )
    if process.poll() is not None:
        raise RuntimeError(f"miniupnpd exited:\n{log.read_text()}")
    return process


def dnat_rules(router: Router) -> list[str]:
    """The router's port forwards, as miniupnpd wrote them: ``"<port> <ip>:<port>"``."""
    out = _run(
        "ip", "netns", "exec", router.ns, "nft", "list", "chain", "inet", "filter",
        "prerouting_miniupnpd",
    )  # fmt: skip
    return [f"{m.group(1)} {m.group(2)}" for m in re.finditer(r"dport (\d+) dnat ip to (\S+)", out)]


def mapped(host: Host) -> list[str]:
    """``host``'s announced addresses at the router's WAN address."""
    return [a for a in host.status()["addresses"] if a.startswith(f"/ip4/{ROUTER_WAN}/tcp/")]


@dataclass
class Net:
    rig: Rig
    router: Router
    lan1: Host
    lan2: Host
    pub: Host
    stranger: Host
    miniupnpd: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    if _NO_MINIUPNPD is not None:
        pytest.skip(f"UPnP netns test: {_NO_MINIUPNPD}")
    with Rig() as rig:
        router = rig.add_router("eim")
        make_upnp_router(rig, router)
        lan1, lan2 = rig.add_host(router), rig.add_host(router)
        pub, stranger = rig.add_host(), rig.add_host()
        for index, host in ((10, pub), (11, stranger)):
            _run("ip", "-n", host.ns, "addr", "add", f"{WAN}.{index}/24", "dev", "eth0")
        upnpd = start_miniupnpd(rig, router)
        try:
            rig.start(pub, extra=("--listen", f"/ip4/{WAN}.10/tcp/{PORT}"))
            rig.start(stranger, extra=("--listen", f"/ip4/{WAN}.11/tcp/{PORT}"))
            rig.wait_ready([pub, stranger])
            # The LAN hosts' connections to pub leave the router from its WAN address.
            boot = f"/ip4/{WAN}.10/tcp/{PORT}/p2p/{pub.peer_id}"
            for host in (lan1, lan2):  # -v: the UPnP and AutoNAT lines in host.log
                rig.start(host, extra=("--bootstrap", boot, "-v"))
            rig.wait_ready([lan1, lan2])
            yield Net(rig, router, lan1, lan2, pub, stranger, upnpd)
        finally:
            rig.close()  # the daemons first: they remove their mappings
            if upnpd.poll() is None:
                upnpd.send_signal(signal.SIGTERM)
            try:
                upnpd.wait(5)
            except subprocess.TimeoutExpired:
                upnpd.kill()
                upnpd.wait()


@needs_miniupnpd
def test_each_daemon_gets_a_mapping_and_announces_it(net: Net) -> None:
    wait_until(lambda: mapped(net.lan1) and mapped(net.lan2), "both mapped", MAPPED_TIMEOUT)
    first, second = mapped(net.lan1), mapped(net.lan2)
    # the first to ask holds the listen port itself; the other gets another one
    ports = sorted(int(a.split("/")[4]) for a in first + second)
    assert PORT in ports and len(set(ports)) == 2, (first, second)
    assert first[0].endswith(f"/p2p/{net.lan1.peer_id}")
    assert second[0].endswith(f"/p2p/{net.lan2.peer_id}")
    rules = dnat_rules(net.router)
    for host, addr in ((net.lan1, first[0]), (net.lan2, second[0])):
        external = addr.split("/")[4]
        assert f"{external} {host.ip}:{PORT}" in rules, rules


@needs_miniupnpd
def test_autonat_says_public_through_the_mapping(net: Net) -> None:
    # the dial-back to the router's WAN address passes only through the forward
    # (even when the first verdict, asked before the mapping, was "private")
    def public(host: Host) -> bool:
        return bool(host.status()["reachability"] == "public")

    for host in (net.lan1, net.lan2):
        wait_until(lambda: public(host), f"{host.name} public", MAPPED_TIMEOUT)  # noqa: B023
        assert host.status()["relays"] == []


@needs_miniupnpd
def test_a_host_never_dialled_dials_the_nated_daemon_directly(net: Net) -> None:
    wait_until(lambda: mapped(net.lan2), "lan2 mapped", MAPPED_TIMEOUT)
    address = mapped(net.lan2)[0]
    result = net.stranger.cli("connect", address, timeout=30)
    assert result.returncode == 0, result.stderr
    assert net.lan2.peer_id in result.stdout
    inbound = [p for p in net.lan2.cli_json("peers") if p["peer_id"] == net.stranger.peer_id]
    assert inbound and inbound[0]["direction"] == "inbound", inbound


@needs_miniupnpd
def test_a_stopped_daemon_removes_its_mapping(net: Net) -> None:
    wait_until(lambda: mapped(net.lan1), "lan1 mapped", MAPPED_TIMEOUT)
    assert any(r.endswith(f" {net.lan1.ip}:{PORT}") for r in dnat_rules(net.router))
    assert net.rig.stop(net.lan1) == 0
    assert not any(r.endswith(f" {net.lan1.ip}:{PORT}") for r in dnat_rules(net.router))
    assert any(r.endswith(f" {net.lan2.ip}:{PORT}") for r in dnat_rules(net.router))
