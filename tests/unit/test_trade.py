"""The trade state machine as a specification: whatever order moves arrive in,
the two parties agree; only the right party can take each step; nothing moves
a trade out of a final state."""

from __future__ import annotations

import random

from factories import NOW, OTHER, SELLER, THIRD
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmarket.trade import TERMS_TTL, Move, Terms, TradeState, TradeView, allowed, resolve

BUYER, SELLS, STRANGER = OTHER.public_key, SELLER.public_key, THIRD.public_key
TERMS = Terms(b"\x01" * 16, 1, 1_500_000_00, "IDR", 1, "COD Jogja")
KINDS = ("counter", "accept", "decline", "cancel", "paid", "shipped", "complete")


def offer(time: int = NOW) -> Move:
    return Move(BUYER, "offer", b"", 1, time, TERMS, SELLS)


def answer(view: TradeView, author: bytes, kind: str, seq: int, time: int = NOW) -> Move:
    terms = Terms(TERMS.listing_id, 1, 1_400_000_00 - seq, "IDR") if kind == "counter" else None
    return Move(author, kind, view.head, seq, time, terms)  # type: ignore[arg-type]


def state(moves: list[Move], now: int = NOW) -> TradeView:
    view = resolve(moves, moves[0].id, now)
    assert view is not None
    return view


def test_an_offer_accepted_then_paid_shipped_and_completed() -> None:
    moves = [offer()]
    for author, kind, seq in [
        (SELLS, "accept", 1),
        (BUYER, "paid", 2),
        (SELLS, "shipped", 2),
        (BUYER, "complete", 3),
    ]:
        moves.append(answer(state(moves), author, kind, seq))
    view = state(moves)
    assert (view.state, view.paid, view.shipped, view.terms) == (
        TradeState.COMPLETED,
        True,
        True,
        TERMS,
    )


def test_a_counter_becomes_the_terms_and_only_the_other_side_can_accept_it() -> None:
    moves = [offer()]
    moves.append(answer(state(moves), SELLS, "counter", 1))
    view = state(moves)
    assert view.terms.price == 1_400_000_00 - 1 and view.proposer == SELLS
    assert "accept" not in allowed(view, SELLS) and "accept" in allowed(view, BUYER)
    moves.append(answer(view, SELLS, "accept", 2))  # the proposer accepting itself: ignored
    assert state(moves).state is TradeState.NEGOTIATING


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
    for author, kind in [
        (STRANGER, "complete"),
        (SELLS, "paid"),
        (BUYER, "shipped"),
        (SELLS, "complete"),
        (STRANGER, "cancel"),
    ]:
        assert state([*moves, answer(before, author, kind, 9)]) == before


# -- properties ---------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Move], list[Move], list[Move]]:
    """Two parties acting on their own views while moves are in flight; returns
    (everything sent, what the buyer saw, what the seller saw) at the end, with
    the views still partial."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    first = offer()
    views = {BUYER: [first], SELLS: [first]}
    seqs = {BUYER: 1, SELLS: 0}
    sent = [first]
    in_flight: list[tuple[bytes, Move]] = []
    for step in range(draw(st.integers(1, 25))):
        if in_flight and rng.random() < 0.5:
            to, move = in_flight.pop(rng.randrange(len(in_flight)))
            views[to].append(move)
            if rng.random() < 0.2:
                in_flight.append((to, move))  # delivered twice
            continue
        author = rng.choice((BUYER, SELLS))
        view = state(views[author])
        kinds = sorted(allowed(view, author))
        if not kinds:
            continue
        seqs[author] += 1
        move = answer(view, author, rng.choice(kinds), seqs[author], NOW + step)
        views[author].append(move)
        sent.append(move)
        in_flight.append((SELLS if author == BUYER else BUYER, move))
    return sent, views[BUYER], views[SELLS]


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_both_sides_agree_once_every_move_is_delivered(history, rnd) -> None:  # type: ignore[no-untyped-def]
    sent, _, _ = history
    shuffled = [*sent, *rnd.sample(sent, k=len(sent) // 2)]  # duplicates too
    rnd.shuffle(shuffled)
    assert resolve(shuffled, sent[0].id, NOW) == resolve(sent, sent[0].id, NOW)


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from(KINDS), st.sampled_from((BUYER, SELLS, STRANGER)))
def test_nothing_moves_a_trade_out_of_a_final_state(history, kind, author) -> None:  # type: ignore[no-untyped-def]
    sent, _, _ = history
    view = state(sent)
    if view.state.final:
        assert allowed(view, author) == frozenset()
        assert state([*sent, answer(view, author, kind, 99, NOW + 99)]) == view


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from(KINDS), st.sampled_from((BUYER, SELLS, STRANGER)))
def test_only_the_right_party_can_take_a_step(history, kind, author) -> None:  # type: ignore[no-untyped-def]
    sent, _, _ = history
    view = state(sent)
    after = state([*sent, answer(view, author, kind, 99, NOW + 99)])
    if kind not in allowed(view, author):
        assert after == view
    else:
        assert after.head != view.head  # the step was taken
