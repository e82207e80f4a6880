"""Listings written on one node reach every node through gossip, validated on the way."""

from __future__ import annotations

from conftest import Cluster, eventually


async def test_a_listing_created_on_a_reaches_c_through_b_then_its_update_and_withdrawal(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.start(3, topology="line")
    listing = a.create_listing(
        title="Sepeda lipat Brompton", price=15_000_000, category="vehicles/bicycles"
    )

    await eventually(lambda: [x.id for x in c.search("brompton").listings] == [listing.id])

    a.update_listing(listing.id, price=12_000_000)
    await eventually(lambda: c.get_listing(listing.id).price == 12_000_000)

    a.withdraw_listing(listing.id)
    await eventually(lambda: not c.search("brompton").listings)
    assert not b.search("brompton").listings
