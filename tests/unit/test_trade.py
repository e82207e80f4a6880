"""The trade state machine as a specification: whatever order moves arrive in,
the two parties agree; only the right party can take each step; nothing moves
a trade out of a final state; an agreed trade has a contract both signed."""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack
import pytest
from factories import NOW, OTHER, SELLER, THIRD
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmarket.crypto.signing import Signer
from p2pmarket.trade import (
    TERMS_TTL,
    Move,
    Terms,
    TradeState,
    TradeView,
    allowed,
    make_move,
    make_offer,
    pack_move,
    resolve,
    unpack_move,
)

BUYER, SELLS, STRANGER = OTHER, SELLER, THIRD
TRADE = b"\x07" * 16
TERMS = Terms(b"\x01" * 16, 1, 1_500_000_00, "IDR", 1, "COD Jogja", b"\x0a" * 32)
KINDS = ("counter", "accept", "decline", "cancel", "paid", "shipped", "complete")


def offer(time: int = NOW) -> Move:
    return make_offer(BUYER, SELLS.public_key, TERMS, time, TRADE)


def answer(view: TradeView, who: Signer, kind: str, seq: int, time: int = NOW) -> Move:
    terms = replace(TERMS, price=1_400_000_00 - seq) if kind == "counter" else None
    return make_move(who, view, kind, seq, time, terms)  # type: ignore[arg-type]


def state(moves: list[Move], now: int = NOW) -> TradeView:
    view = resolve(moves, TRADE, now)
    assert view is not None
    return view


def test_an_offer_accepted_then_paid_shipped_and_completed_has_a_contract() -> None:
    moves = [offer()]
    for who, kind, seq in [
        (SELLS, "accept", 1),
        (BUYER, "paid", 2),
        (SELLS, "shipped", 2),
        (BUYER, "complete", 3),
    ]:
        moves.append(answer(state(moves), who, kind, seq))

    view = state(moves)

    assert (view.state, view.paid, view.shipped, view.terms) == (
        TradeState.COMPLETED,
        True,
        True,
        TERMS,
    )
    contract = view.contract
    assert contract is not None and contract.verify()
    assert (contract.buyer, contract.seller, contract.terms) == (
        BUYER.public_key,
        SELLS.public_key,
        TERMS,
    )


def test_a_counter_becomes_the_terms_and_only_the_other_side_can_accept_it() -> None:
    moves = [offer()]
    moves.append(answer(state(moves), SELLS, "counter", 1))
    view = state(moves)
    assert view.terms.price == 1_400_000_00 - 1 and view.proposer == SELLS.public_key
    assert "accept" not in allowed(view, SELLS.public_key)
    assert "accept" in allowed(view, BUYER.public_key)
    moves.append(answer(view, SELLS, "accept", 2))  # the proposer accepting itself: ignored
    assert state(moves).state is TradeState.NEGOTIATING
    moves.append(answer(view, BUYER, "accept", 2))
    agreed = state(moves)
    assert agreed.contract is not None and agreed.contract.verify()
    assert agreed.contract.proposer == SELLS.public_key


def test_concurrent_answers_to_the_same_terms_the_responder_wins() -> None:
    first = offer()
    view = state([first])
    revision = answer(view, BUYER, "counter", 2)  # the buyer revises its offer…
    accepted = answer(view, SELLS, "accept", 1)  # …while the seller accepts it
    assert state([first, revision, accepted]).state is TradeState.AGREED
    assert state([first, accepted, revision]).terms == TERMS


def test_unanswered_terms_expire() -> None:
    assert state([offer()], NOW + TERMS_TTL + 1).state is TradeState.EXPIRED
    late = answer(state([offer()]), SELLS, "accept", 1, time=NOW + TERMS_TTL + 1)
    assert state([offer(), late], NOW + TERMS_TTL + 1).state is TradeState.EXPIRED


def test_a_move_by_a_stranger_or_the_wrong_party_changes_nothing() -> None:
    moves = [offer()]
    moves.append(answer(state(moves), SELLS, "accept", 1))
    before = state(moves)
    for who, kind in [
        (STRANGER, "complete"),
        (SELLS, "paid"),
        (BUYER, "shipped"),
        (SELLS, "complete"),
        (STRANGER, "cancel"),
    ]:
        assert state([*moves, answer(before, who, kind, 9)]) == before


def test_an_accept_or_offer_without_a_valid_contract_signature_is_ignored() -> None:
    first = offer()
    forged = replace(answer(state([first]), SELLS, "accept", 1), signature=b"\x00" * 64)
    assert state([first, forged]).state is TradeState.NEGOTIATING
    unsigned = replace(first, signature=b"")
    assert resolve([unsigned], TRADE, NOW) is None
    # An accept signed over other terms than those on the table does not count.
    view = state([first])
    other_terms = replace(view, terms=replace(TERMS, price=1))
    assert state([first, make_move(SELLS, other_terms, "accept", 1, NOW)]).state is (
        TradeState.NEGOTIATING
    )


# -- properties ---------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[Move]:
    """Everything two parties sent while acting on their own views, with moves in
    flight, delivered late, out of order and twice."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    first = offer()
    views = {BUYER: [first], SELLS: [first]}
    seqs = {BUYER: 1, SELLS: 0}
    sent = [first]
    in_flight: list[tuple[Signer, Move]] = []
    for step in range(draw(st.integers(1, 25))):
        if in_flight and rng.random() < 0.5:
            to, move = in_flight.pop(rng.randrange(len(in_flight)))
            views[to].append(move)
            if rng.random() < 0.2:
                in_flight.append((to, move))  # delivered twice
            continue
        who = rng.choice((BUYER, SELLS))
        view = state(views[who])
        kinds = sorted(allowed(view, who.public_key))
        if not kinds:
            continue
        seqs[who] += 1
        move = answer(view, who, rng.choice(kinds), seqs[who], NOW + step)
        views[who].append(move)
        sent.append(move)
        in_flight.append((SELLS if who is BUYER else BUYER, move))
    return sent


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_both_sides_agree_once_every_move_is_delivered(sent, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = [*sent, *rnd.sample(sent, k=len(sent) // 2)]  # duplicates too
    rnd.shuffle(shuffled)
    assert resolve(shuffled, TRADE, NOW) == resolve(sent, TRADE, NOW)


@settings(max_examples=200, deadline=None)
@given(histories(), st.sampled_from(KINDS), st.sampled_from((BUYER, SELLS, STRANGER)))
def test_nothing_moves_a_trade_out_of_a_final_state(sent, kind, who) -> None:  # type: ignore[no-untyped-def]
    view = state(sent)
    if view.state.final:
        assert allowed(view, who.public_key) == frozenset()
        assert state([*sent, answer(view, who, kind, 99, NOW + 99)]) == view


@settings(max_examples=200, deadline=None)
@given(histories(), st.sampled_from(KINDS), st.sampled_from((BUYER, SELLS, STRANGER)))
def test_only_the_right_party_can_take_a_step(sent, kind, who) -> None:  # type: ignore[no-untyped-def]
    view = state(sent)
    after = state([*sent, answer(view, who, kind, 99, NOW + 99)])
    if kind not in allowed(view, who.public_key):
        assert after == view
    else:
        assert after.head != view.head  # the step was taken


@settings(max_examples=200, deadline=None)
@given(histories())
def test_every_agreed_trade_has_a_contract_both_parties_signed(sent) -> None:  # type: ignore[no-untyped-def]
    view = state(sent)
    if view.state in (TradeState.AGREED, TradeState.COMPLETED) or view.contract is not None:
        assert view.contract is not None and view.contract.verify()
        assert view.contract.terms == view.terms


@settings(max_examples=100, deadline=None)
@given(histories())
def test_every_move_survives_its_wire_form(sent) -> None:  # type: ignore[no-untyped-def]
    for move in sent:
        assert unpack_move(pack_move(move)) == move


def test_a_malformed_move_is_refused_saying_why() -> None:
    good = msgpack.unpackb(pack_move(offer()))
    for spoil in (
        lambda d: d[:5],
        lambda d: [2, *d[1:]],
        lambda d: [*d[:1], b"short", *d[2:]],
        lambda d: [*d[:3], "steal", *d[4:]],
        lambda d: [*d[:5], -1, *d[6:]],
        lambda d: [*d[:7], [*d[7][:3], "idr", *d[7][4:]], *d[8:]],
        lambda d: [*d[:7], [*d[7][:5], "x" * 501, d[7][6]], *d[8:]],
    ):
        with pytest.raises(ValueError, match="trade move"):
            unpack_move(msgpack.packb(spoil(good)))
    with pytest.raises(ValueError, match="not msgpack"):
        unpack_move(b"\xc1")
