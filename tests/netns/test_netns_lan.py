"""Two daemons on one home LAN (behind one NAT router), with the defaults a user
has: listening on 0.0.0.0, mDNS on, no bootstrap, no invite. They find each other
by mDNS and remember each other (py-libp2p 0.8.1 advertised ``/ip4/0.0.0.0/…``,
so they never met: _libp2p_fixes, item 9)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_support import needs_netns, wait_until

from bench.netrig import Host, Rig

pytestmark = [pytest.mark.netns, needs_netns]


@pytest.fixture
def lan() -> Iterator[list[Host]]:
    with Rig() as rig:
        router = rig.add_router("eim")
        hosts = [rig.add_host(router), rig.add_host(router)]
        for host in hosts:
            rig.start(host, user_defaults=True)
        yield hosts


def peer_ids(host: Host) -> set[str]:
    return {p["peer_id"] for p in host.cli_json("peers")}


def test_two_daemons_on_one_lan_find_each_other_by_mdns(lan: list[Host]) -> None:
    a, b = lan
    wait_until(lambda: a.status()["online"] and b.status()["online"], "both daemons up")
    wait_until(lambda: b.peer_id in peer_ids(a) and a.peer_id in peer_ids(b), "mDNS")
    # Whoever dialled remembers the other (the peer book: redialled after a restart).
    wait_until(lambda: a.status()["known_peers"] + b.status()["known_peers"] >= 1, "remembered")
