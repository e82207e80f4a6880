"""Trade moves arriving at a node, without a network: who may send what, and a
move that overtakes its offer comes again instead of being lost."""

from __future__ import annotations

import pytest

from p2pmarket.crypto.envelope import seal
from p2pmarket.errors import InvalidEnvelope, InvalidInput, NotYet
from p2pmarket.node import Node
from p2pmarket.trade import Terms, TradeState, make_move, make_offer, pack_move, resolve

TRADE = b"\x07" * 16


def letter(sender: Node, recipient: Node, body: bytes) -> bytes:
    return seal(sender._signer_or_unlock(), recipient.public_key, "trade", body, sender.now())[1]


def test_a_move_that_overtakes_its_offer_is_not_acknowledged_until_the_offer_comes(
    node: Node, other_node: Node
) -> None:
    buyer, seller = other_node, node
    terms = Terms(b"\x01" * 16, 1, 100_000_00, "IDR")
    offer = make_offer(buyer._signer_or_unlock(), seller.public_key, terms, buyer.now(), TRADE)
    view = resolve([offer], TRADE, buyer.now())
    assert view is not None
    cancel = make_move(buyer._signer_or_unlock(), view, "cancel", 2, buyer.now())

    with pytest.raises(NotYet):
        seller._post.receive(letter(buyer, seller, pack_move(cancel)), buyer.peer_id)
    assert seller._post.receive_mail(letter(buyer, seller, pack_move(cancel)), "holder") is False

    seller._post.receive(letter(buyer, seller, pack_move(offer)), buyer.peer_id)
    seller._post.receive(letter(buyer, seller, pack_move(cancel)), buyer.peer_id)  # it came again
    assert seller.get_trade(TRADE).state is TradeState.CANCELLED


def test_an_offer_to_someone_else_or_a_move_by_another_author_is_not_kept(
    node: Node, other_node: Node
) -> None:
    terms = Terms(b"\x01" * 16, 1, 100_000_00, "IDR")
    elsewhere = make_offer(other_node._signer_or_unlock(), b"\x05" * 32, terms, node.now(), TRADE)
    node._post.receive(letter(other_node, node, pack_move(elsewhere)), other_node.peer_id)
    assert node.trades() == []
    # A move whose author is not the letter's sender: a forgery, refused.
    mine = make_offer(node._signer_or_unlock(), other_node.public_key, terms, node.now(), TRADE)
    with pytest.raises(InvalidEnvelope, match="someone else"):
        node._post.receive(letter(other_node, node, pack_move(mine)), other_node.peer_id)


def test_terms_the_other_side_would_refuse_are_refused_here_in_plain_words(
    node: Node, other_node: Node
) -> None:
    listing = other_node.create_listing(title="Sepeda", price=100_000_00, category="vehicles")
    node.store.put(listing)
    with pytest.raises(InvalidInput, match="note"):
        node.offer(listing.id, note="x" * 501)
    with pytest.raises(InvalidInput, match="price"):
        node.offer(listing.id, price=-1)
    assert node.trades() == []
