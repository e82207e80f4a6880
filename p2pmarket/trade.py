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

**The contract.** Whoever puts terms on the table (offer, counter) signs the
contract those terms would make, and the ``accept`` carries the other party's
signature over the same contract: on acceptance the contract is signed by both,
with no extra round trip. It names the trade, both keys, the terms (with the
hash of the listing as it was) and when the terms were proposed; see
:func:`contract_message`. A terms move or an accept whose signature does not
verify is ignored like any other invalid move.

Anything else is ignored: a move by someone who is not a party, by the wrong
party, after a final state, or that answers a move that lost.
"""

from __future__ import annotations

import enum
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import msgpack

from p2pmarket.errors import Malformed
from p2pmarket.text import CONTROL

if TYPE_CHECKING:
    from p2pmarket.crypto.signing import Signer

TERMS_TTL: Final = 7 * 86400  # terms nobody answered expire after this many seconds
_CONTRACT_DOMAIN: Final = b"p2pmarket/contract/v1\x00"

Kind = Literal["offer", "counter", "accept", "decline", "cancel", "paid", "shipped", "complete"]
TERMS_KINDS: Final = frozenset({"offer", "counter"})
_AGREED_ORDER: Final = {"complete": 0, "cancel": 1, "shipped": 2, "paid": 3}


class TradeState(enum.StrEnum):
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
    listing_hash: bytes = b""  # BLAKE2b of the listing record the terms refer to

    def fields(self) -> list[object]:
        return [
            self.listing_id,
            self.listing_seq,
            self.price,
            self.currency,
            self.quantity,
            self.note,
            self.listing_hash,
        ]


def contract_message(
    trade: bytes, buyer: bytes, seller: bytes, terms: Terms, proposed: int
) -> bytes:
    """What both parties sign: domain-separated canonical msgpack of the trade,
    both keys, the terms and when they were proposed."""
    data: bytes = msgpack.packb([trade, buyer, seller, terms.fields(), proposed], use_bin_type=True)
    return _CONTRACT_DOMAIN + data


@dataclass(frozen=True, slots=True)
class Move:
    """One step of a trade. The move travels as a signed letter, checked before
    it gets here; ``signature`` is the contract signature that terms moves and
    accepts carry. ``seller`` is set on the offer only."""

    trade: bytes  # the trade's random id, chosen by the buyer in its offer
    author: bytes
    kind: Kind
    parent: bytes  # the id of the move it answers; b"" for the offer
    seq: int  # the author's own count of its moves in this trade, from 1
    time: int
    terms: Terms | None = None  # offer and counter
    seller: bytes = b""  # offer
    signature: bytes = b""  # offer, counter, accept

    @property
    def id(self) -> bytes:
        """The move's content hash: what other moves name as their parent."""
        terms = None if self.terms is None else self.terms.fields()
        fields = [self.trade, self.author, self.kind, self.parent, self.seq, self.time]
        data = msgpack.packb([*fields, terms, self.seller, self.signature], use_bin_type=True)
        return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Contract:
    """The agreed terms, signed by both parties: what either can show others."""

    trade: bytes
    buyer: bytes
    seller: bytes
    terms: Terms
    proposed: int  # when the agreed terms were put on the table
    proposer: bytes
    proposer_signature: bytes
    acceptor_signature: bytes

    @property
    def acceptor(self) -> bytes:
        return self.seller if self.proposer == self.buyer else self.buyer

    def message(self) -> bytes:
        return contract_message(self.trade, self.buyer, self.seller, self.terms, self.proposed)

    @property
    def id(self) -> bytes:
        """What names the contract: a hash of the message both parties signed. Not
        the trade id alone, which the buyer chooses and could reuse with another
        seller."""
        return hashlib.blake2b(self.message(), digest_size=16).digest()

    def verify(self) -> bool:
        """Both parties signed these terms (and they are two different keys)."""
        from p2pmarket.crypto.signing import verify

        return (
            self.buyer != self.seller
            and self.proposer in (self.buyer, self.seller)
            and verify(self.proposer, self.message(), self.proposer_signature)
            and verify(self.acceptor, self.message(), self.acceptor_signature)
        )


@dataclass(frozen=True, slots=True)
class TradeView:
    """Where a trade stands, as :func:`resolve` finds it."""

    state: TradeState
    trade: bytes
    buyer: bytes
    seller: bytes
    terms: Terms  # on the table, or agreed
    proposed: int  # when those terms were put on the table
    proposer: bytes  # who put them there
    head: bytes  # the id of the last move that counts: what a new move answers
    paid: bool = False
    shipped: bool = False
    path: tuple[bytes, ...] = field(default=())  # ids of the moves that count, in order
    contract: Contract | None = None  # once agreed


def resolve(moves: Iterable[Move], trade: bytes, now: int) -> TradeView | None:
    """The state of trade ``trade`` from any set of moves (other trades' are
    ignored); None while its offer is not among them."""
    from p2pmarket.crypto.signing import verify  # here: views travel to clients without libsodium

    by_id = {m.id: m for m in moves if m.trade == trade}
    offers = [m for m in by_id.values() if _is_offer(m)]
    if not offers:
        return None
    offer = min(offers, key=lambda m: m.id)  # a buyer that made two: one, the same everywhere
    buyer, seller = offer.author, offer.seller
    children: dict[bytes, list[Move]] = defaultdict(list)
    for move in by_id.values():
        if move.author in (buyer, seller) and move.kind != "offer":
            children[move.parent].append(move)

    def signed(move: Move, terms: Terms, proposed: int) -> bool:
        message = contract_message(trade, buyer, seller, terms, proposed)
        return verify(move.author, message, move.signature)

    def view(state: TradeState, **more: object) -> TradeView:
        return TradeView(
            state,
            trade,
            buyer,
            seller,
            terms,
            proposed,
            proposer,
            node.id,
            path=tuple(path),
            **more,  # type: ignore[arg-type]
        )

    assert offer.terms is not None
    node, terms, proposed, proposer = offer, offer.terms, offer.time, buyer
    path = [offer.id]
    # Negotiation: walk the winning answers to the terms on the table.
    while True:
        answers = [
            m
            for m in children[node.id]
            if _answers_terms(m, proposer)
            and m.time <= node.time + TERMS_TTL
            and (m.kind != "counter" or signed(m, m.terms, m.time))  # type: ignore[arg-type]
            and (m.kind != "accept" or signed(m, terms, proposed))
        ]
        if not answers:
            expired = now > node.time + TERMS_TTL
            return view(TradeState.EXPIRED if expired else TradeState.NEGOTIATING)
        node = min(answers, key=lambda m: (m.author == proposer, m.seq, m.id))
        path.append(node.id)
        if node.kind == "counter":
            assert node.terms is not None
            terms, proposed, proposer = node.terms, node.time, node.author
            continue
        if node.kind == "decline":
            return view(TradeState.DECLINED)
        if node.kind == "cancel":
            return view(TradeState.CANCELLED)
        break  # accepted

    terms_move = by_id[path[-2]]
    contract = Contract(
        trade, buyer, seller, terms, proposed, proposer, terms_move.signature, node.signature
    )
    # Agreed: a chain of marks, then complete or cancel.
    paid = shipped = False
    while True:
        steps = [m for m in children[node.id] if _mark_allowed(m, buyer, seller, paid, shipped)]
        if not steps:
            return view(TradeState.AGREED, paid=paid, shipped=shipped, contract=contract)
        node = min(steps, key=lambda m: (_AGREED_ORDER[m.kind], m.id))
        path.append(node.id)
        if node.kind in ("complete", "cancel"):
            final = TradeState.COMPLETED if node.kind == "complete" else TradeState.CANCELLED
            return view(final, paid=paid, shipped=shipped, contract=contract)
        paid, shipped = paid or node.kind == "paid", shipped or node.kind == "shipped"


def _is_offer(move: Move) -> bool:
    if not (
        move.kind == "offer"
        and move.parent == b""
        and move.terms is not None
        and len(move.seller) == 32
        and move.seller != move.author
    ):
        return False
    from p2pmarket.crypto.signing import verify

    message = contract_message(move.trade, move.author, move.seller, move.terms, move.time)
    return verify(move.author, message, move.signature)


def _answers_terms(move: Move, proposer: bytes) -> bool:
    """May ``move`` answer terms proposed by ``proposer``?"""
    if move.kind == "counter":
        return move.terms is not None
    if move.kind in ("accept", "decline"):
        return move.author != proposer and move.terms is None
    return move.kind == "cancel" and move.terms is None


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


# -- making moves (the signing side) --------------------------------------------


def make_offer(signer: Signer, seller: bytes, terms: Terms, now: int, trade: bytes) -> Move:
    """The buyer's opening move for a new trade ``trade`` (16 random bytes)."""
    signature = signer.sign(contract_message(trade, signer.public_key, seller, terms, now))
    return Move(trade, signer.public_key, "offer", b"", 1, now, terms, seller, signature)


def make_move(
    signer: Signer, view: TradeView, kind: Kind, seq: int, now: int, terms: Terms | None = None
) -> Move:
    """A move answering ``view.head``. Counters and accepts carry the contract
    signature; ``seq`` is one more than the signer's last move in this trade."""
    signature = b""
    if kind == "counter":
        if terms is None:
            raise ValueError("a counter needs terms")
        message = contract_message(view.trade, view.buyer, view.seller, terms, now)
        signature = signer.sign(message)
    elif kind == "accept":
        message = contract_message(view.trade, view.buyer, view.seller, view.terms, view.proposed)
        signature = signer.sign(message)
    return Move(view.trade, signer.public_key, kind, view.head, seq, now, terms, b"", signature)


# -- the wire form of a move (the body of a ``trade`` letter) ---------------------

MAX_NOTE: Final = 500  # characters
MAX_QUANTITY: Final = 1_000_000
STEPS: Final = frozenset(_AGREED_ORDER) | {"counter", "accept", "decline"}  # all but the offer
_KINDS: Final = STEPS | {"offer"}


def pack_move(move: Move) -> bytes:
    terms = None if move.terms is None else move.terms.fields()
    fields = [move.trade, move.author, move.kind, move.parent, move.seq, move.time]
    data: bytes = msgpack.packb([1, *fields, terms, move.seller, move.signature], use_bin_type=True)
    return data


def unpack_move(data: bytes) -> Move:
    """A move from a letter's body; :class:`Malformed` (a ValueError), saying why,
    for anything else: whatever the sender put there, nothing else escapes."""
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        raise Malformed("a trade move is not msgpack") from None
    if not isinstance(doc, list) or len(doc) != 10 or type(doc[0]) is not int or doc[0] != 1:
        raise Malformed("a trade move is [1, trade, author, kind, parent, seq, time, terms, …]")
    _, trade, author, kind, parent, seq, time, terms, seller, signature = doc
    try:
        return _move(trade, author, kind, parent, seq, time, terms, seller, signature)
    except Malformed as exc:
        raise Malformed(f"a malformed trade move: {exc}") from None


def _move(*fields: Any) -> Move:
    trade, author, kind, parent, seq, time, terms, seller, signature = fields
    _check(isinstance(trade, bytes) and len(trade) == 16, "its trade id is not 16 bytes")
    _check(isinstance(author, bytes) and len(author) == 32, "its author is not a 32-byte key")
    # Text first: a list or a map is unhashable, and `in` a frozenset raised
    # TypeError, which blocked the victim's mail (the hole fuzzing found).
    _check(isinstance(kind, str), "its kind is not text")
    _check(kind in _KINDS, f"unknown kind {kind!r:.40}")
    _check(isinstance(parent, bytes) and len(parent) in (0, 16), "its parent is not a move id")
    _check(type(seq) is int and 1 <= seq < 2**31, "its seq is not a positive integer")
    _check(type(time) is int and 0 <= time < 2**40, "its time is not a Unix time")
    _check(isinstance(seller, bytes) and len(seller) in (0, 32), "its seller is not a key")
    _check(isinstance(signature, bytes) and len(signature) in (0, 64), "its signature is bad")
    return Move(trade, author, kind, parent, seq, time, parse_terms(terms), seller, signature)


def parse_terms(doc: object) -> Terms | None:
    """Terms from their wire form (:meth:`Terms.fields`), None for none;
    :class:`Malformed` (a ValueError), saying why, for anything else. Shared by
    moves and by reviews' contracts."""
    if doc is None:
        return None
    _check(isinstance(doc, list) and len(doc) == 7, "its terms are not 7 fields")
    assert isinstance(doc, list)
    listing_id, listing_seq, price, currency, quantity, note, listing_hash = doc
    _check(isinstance(listing_id, bytes) and len(listing_id) == 16, "a listing id is 16 bytes")
    _check(type(listing_seq) is int and 0 <= listing_seq < 2**63, "a listing seq is an integer")
    _check(type(price) is int and 0 <= price <= 10**15, "a price is 0 to 10^15 minor units")
    _check(
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isupper(),
        "a currency is a 3-letter code",
    )
    _check(type(quantity) is int and 1 <= quantity <= MAX_QUANTITY, "a quantity is 1 to 10^6")
    _check(isinstance(note, str) and len(note) <= MAX_NOTE, f"a note is text of ≤ {MAX_NOTE}")
    _check(not CONTROL.search(note), "a note contains control characters")
    _check(isinstance(listing_hash, bytes) and len(listing_hash) in (0, 32), "a bad listing hash")
    return Terms(listing_id, listing_seq, price, currency, quantity, note, listing_hash)


def _check(ok: bool, why: str) -> None:
    """Refuse with a fixed message: nothing from the input is formatted into it,
    so a huge or deeply nested value cannot make the refusal itself fail."""
    if not ok:
        raise Malformed(why)
