"""Real daemons on separate hosts (Linux network namespaces on one internet bridge),
every host publicly reachable: a listing created on one reaches every other.

The rig is bench/netrig.py; each daemon is its own process in its own namespace and
meets the others only through the addresses given to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_support import create_listing, finds, needs_netns, wait_until

from bench.netrig import Host, Rig

pytestmark = [pytest.mark.netns, needs_netns]


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[Host]]:
    with Rig() as rig:
        first = rig.add_host()
        rest = [rig.add_host() for _ in range(4)]
        rig.start_all([first], [])
        # Each later host knows only the first: the rest it must find itself.
        rig.start_all(rest, [first])
        yield rig.hosts


def test_each_host_runs_its_own_daemon_on_its_own_address(hosts: list[Host]) -> None:
    addresses = set()
    for host in hosts:
        status = host.status()
        assert status["online"]
        assert host.address in status["addresses"]
        addresses.add(host.ip)
    assert len(addresses) == len(hosts)


def test_a_listing_created_on_one_host_reaches_every_other(hosts: list[Host]) -> None:
    seller = hosts[3]  # neither the bootstrap host nor one it dialled first
    listing_id = create_listing(seller, "Sepeda gunung Polygon netns")
    for host in hosts:
        wait_until(lambda h=host: finds(h, "polygon", listing_id), f"{host.name} has it")


def test_listings_from_every_host_reach_every_host(hosts: list[Host]) -> None:
    made = {host.name: create_listing(host, f"Helm sepeda {host.name} netns") for host in hosts}
    for host in hosts:
        wait_until(
            lambda h=host: (
                {hit["id"] for hit in h.cli_json("search", "helm")["results"]} >= set(made.values())
            ),
            f"{host.name} holds every host's listing",
        )
