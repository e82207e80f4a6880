"""The trade state machine: pure data and one function, no I/O.

A trade is negotiated by two parties, the buyer (who makes the offer) and the
seller (the listing's), as a set of signed *moves* carried over direct
messages. Every move names the move it answers (its *parent*), so the moves of a
trade form a tree rooted at the offer; :func:`resolve` walks that tree and gives
the trade's state. It depends only on the *set* of moves (and the time), never
on the order they arrived in or on duplicates, so two parties that hold the same
moves always agree on the state.

Negotiation: the terms on the table (the offer, then each counter) are answered
by a move whose parent is that terms move: ``counter`` (new terms, either party),
``accept`` or ``decline`` (the other party only), or ``cancel`` (either party).
When both parties answered the same terms concurrently, the *responder's* answer
wins (the party who did not propose them): answering what is on the table takes
precedence over revising or withdrawing it. Within one party, its first answer
(lowest ``seq``) counts. Terms nobody answered within :data:`TERMS_TTL` expire.

After ``accept`` the trade is *agreed* and the moves form a chain: ``paid`` (the
buyer), ``shipped`` (the seller), each at most once, then ``complete`` (the
buyer) or ``cancel`` (either). Concurrent moves there are ordered complete,
cancel, shipped, paid: the losing mark is simply made again on top.

Anything else is ignored: a move by someone who is not a party, by the wrong
party, after a final state, or that answers a move that lost.
"""

from __future__ import annotations

import enum
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import msgpack

TERMS_TTL: Final = 7 * 86400  # terms nobody answered expire after this many seconds

Kind = Literal["offer", "counter", "accept", "decline", "cancel", "paid", "shipped", "complete"]
TERMS_KINDS: Final = frozenset({"offer", "counter"})
_AGREED_ORDER: Final = {"complete": 0, "cancel": 1, "shipped": 2, "paid": 3}


class TradeState(enum.Enum):
    NEGOTIATING = "negotiating"
    AGREED = "agreed"
    COMPLETED = "completed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self not in (TradeState.NEGOTIATING, TradeState.AGREED)


@dataclass(frozen=True, slots=True)
class Terms:
    """What is proposed: prices are minor units of ``currency``."""

    listing_id: bytes
    listing_seq: int
    price: int
    currency: str
    quantity: int = 1
    note: str = ""


@dataclass(frozen=True, slots=True)
class Move:
    """One step of a trade, as its author signed it (the signature is checked
    before a move gets here). ``seller`` is set on the offer only."""

    author: bytes
    kind: Kind
    parent: bytes  # the id of the move it answers; b"" for the offer
    seq: int  # the author's own count of its moves in this trade, from 1
    time: int
    terms: Terms | None = None  # offer and counter
    seller: bytes = b""  # offer

    @property
    def id(self) -> bytes:
        """The move's content hash: what other moves name as their parent."""
        terms = None
        if self.terms is not None:
            t = self.terms
            terms = [t.listing_id, t.listing_seq, t.price, t.currency, t.quantity, t.note]
        data = msgpack.packb(
            [self.author, self.kind, self.parent, self.seq, self.time, terms, self.seller],
            use_bin_type=True,
        )
        return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class TradeView:
    """Where a trade stands, as :func:`resolve` finds it."""

    state: TradeState
    buyer: bytes
    seller: bytes
    terms: Terms  # on the table, or agreed
    head: bytes  # the id of the last move that counts: what a new move answers
    proposer: bytes  # who put the current terms on the table
    paid: bool = False
    shipped: bool = False
    path: tuple[bytes, ...] = field(default=())  # ids of the moves that count, in order


def resolve(moves: Iterable[Move], offer_id: bytes, now: int) -> TradeView | None:
    """The state of the trade whose offer has id ``offer_id``, from any set of its
    moves; None if the offer is not among them (or is not an offer)."""
    by_id = {m.id: m for m in moves}
    offer = by_id.get(offer_id)
    if offer is None or not _is_offer(offer):
        return None
    buyer, seller = offer.author, offer.seller
    children: dict[bytes, list[Move]] = defaultdict(list)
    for move in by_id.values():
        if move.author in (buyer, seller) and move.kind != "offer":
            children[move.parent].append(move)
    assert offer.terms is not None

    node, terms, proposer = offer, offer.terms, buyer
    path = [offer.id]
    # Negotiation: walk the winning answers to the terms on the table.
    while True:
        answers = [m for m in children[node.id] if _answers_terms(m, proposer)]
        answers = [m for m in answers if m.time <= node.time + TERMS_TTL]
        if not answers:
            state = TradeState.EXPIRED if now > node.time + TERMS_TTL else TradeState.NEGOTIATING
            return TradeView(state, buyer, seller, terms, node.id, proposer, path=tuple(path))
        node = min(answers, key=lambda m: (m.author == proposer, m.seq, m.id))
        path.append(node.id)
        if node.kind == "counter":
            assert node.terms is not None
            terms, proposer = node.terms, node.author
            continue
        if node.kind == "decline":
            return TradeView(
                TradeState.DECLINED, buyer, seller, terms, node.id, proposer, path=tuple(path)
            )
        if node.kind == "cancel":
            return TradeView(
                TradeState.CANCELLED, buyer, seller, terms, node.id, proposer, path=tuple(path)
            )
        break  # accepted

    # Agreed: a chain of marks, then complete or cancel.
    paid = shipped = False
    while True:
        steps = [m for m in children[node.id] if _mark_allowed(m, buyer, seller, paid, shipped)]
        if not steps:
            return TradeView(
                TradeState.AGREED,
                buyer,
                seller,
                terms,
                node.id,
                proposer,
                paid,
                shipped,
                tuple(path),
            )
        node = min(steps, key=lambda m: (_AGREED_ORDER[m.kind], m.id))
        path.append(node.id)
        if node.kind == "complete":
            state = TradeState.COMPLETED
        elif node.kind == "cancel":
            state = TradeState.CANCELLED
        else:
            paid, shipped = paid or node.kind == "paid", shipped or node.kind == "shipped"
            continue
        return TradeView(state, buyer, seller, terms, node.id, proposer, paid, shipped, tuple(path))


def _is_offer(move: Move) -> bool:
    return (
        move.kind == "offer"
        and move.parent == b""
        and move.terms is not None
        and len(move.seller) == 32
        and move.seller != move.author
    )


def _answers_terms(move: Move, proposer: bytes) -> bool:
    """May ``move`` answer terms proposed by ``proposer``?"""
    if move.kind == "counter":
        return move.terms is not None
    if move.kind in ("accept", "decline"):
        return move.author != proposer and move.terms is None
    return move.kind == "cancel"


def _mark_allowed(move: Move, buyer: bytes, seller: bytes, paid: bool, shipped: bool) -> bool:
    if move.terms is not None:
        return False
    if move.kind == "paid":
        return move.author == buyer and not paid
    if move.kind == "shipped":
        return move.author == seller and not shipped
    if move.kind == "complete":
        return move.author == buyer
    return move.kind == "cancel"


def allowed(view: TradeView, author: bytes) -> frozenset[str]:
    """The moves ``author`` may make now, answering ``view.head``."""
    if view.state.final or author not in (view.buyer, view.seller):
        return frozenset()
    if view.state is TradeState.NEGOTIATING:
        kinds = {"counter", "cancel"}
        if author != view.proposer:
            kinds |= {"accept", "decline"}
        return frozenset(kinds)
    kinds = {"cancel"}
    if author == view.buyer:
        kinds |= {"complete"} | (set() if view.paid else {"paid"})
    else:
        kinds |= set() if view.shipped else {"shipped"}
    return frozenset(kinds)
