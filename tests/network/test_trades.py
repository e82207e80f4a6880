"""A whole trade between real nodes: offer, accept, marks, complete, with one
side offline during a step; both end with the same contract, signed by both."""

from __future__ import annotations

import pytest
from conftest import Cluster, connect, eventually

from p2pmarket.errors import InvalidInput
from p2pmarket.trade import TradeState


async def test_a_trade_runs_from_offer_to_complete_with_the_seller_away_for_a_step(
    cluster: Cluster,
) -> None:
    buyer, seller, holder = await cluster.start(3, topology="none")
    await connect(buyer, seller)
    await connect(buyer, holder)
    await connect(seller, holder)
    listing = seller.create_listing(title="Sepeda lipat", price=1_500_000_00, category="vehicles")
    await eventually(lambda: buyer.store.get(listing.id, buyer.now()) is not None)

    opened = buyer.offer(listing.id, price=1_400_000_00, note="COD di Jogja")
    trade = opened.trade
    await eventually(
        lambda: seller.trades() and seller.get_trade(trade).terms.price == 1_400_000_00
    )

    seller.trade_step(trade, "accept")
    await eventually(lambda: buyer.get_trade(trade).state is TradeState.AGREED)

    seller_home = seller.home.root
    await cluster.stop(seller)
    buyer.trade_step(trade, "paid")  # the seller is away: the step waits with the holder
    await eventually(lambda: holder._held_mail.held()[0] >= 1, timeout=20)  # type: ignore[union-attr]

    seller = await cluster.start_node(seller_home)
    await connect(seller, holder)
    await eventually(lambda: seller.get_trade(trade).paid, timeout=20)
    seller.trade_step(trade, "shipped")
    await connect(seller, buyer)
    await eventually(lambda: buyer.get_trade(trade).shipped, timeout=20)
    buyer.trade_step(trade, "complete")
    await eventually(lambda: seller.get_trade(trade).state is TradeState.COMPLETED, timeout=20)

    mine, theirs = buyer.get_trade(trade), seller.get_trade(trade)
    assert mine == theirs
    assert mine.contract is not None and mine.contract.verify()
    assert mine.contract.terms.note == "COD di Jogja"
    assert buyer.conversations() == []  # trade steps are not chat


async def test_only_the_right_party_may_take_a_step(cluster: Cluster) -> None:
    buyer, seller = await cluster.start(2)
    listing = seller.create_listing(title="Helm", price=150_000_00, category="vehicles")
    await eventually(lambda: buyer.store.get(listing.id, buyer.now()) is not None)
    trade = buyer.offer(listing.id).trade
    with pytest.raises(InvalidInput, match="cannot take the step 'accept'"):
        buyer.trade_step(trade, "accept")  # one's own offer
    await eventually(lambda: seller.trades())
    with pytest.raises(InvalidInput, match="cannot take the step 'paid'"):
        seller.trade_step(trade, "paid")
