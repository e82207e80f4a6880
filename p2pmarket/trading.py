"""Trades on the node: making moves, taking the other party's, and the views.

The :class:`TradeDesk` keeps every move of the user's trades in the store and
sends each move the user makes to the other party through the post office
(the outbox, receipts, mailboxes: a trade step reaches an offline party like a
message does). A trade's state is always :func:`~p2pmarket.trade.resolve` of
its moves.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from p2pmarket.crypto.signing import Signer
from p2pmarket.errors import InvalidInput, NotFound, NotYet
from p2pmarket.events import Event, TradeUpdated
from p2pmarket.postoffice import PostOffice
from p2pmarket.records import Listing, encode
from p2pmarket.store.trades import TradeStore
from p2pmarket.trade import (
    Kind,
    Move,
    Terms,
    TradeView,
    allowed,
    make_move,
    make_offer,
    pack_move,
    resolve,
    unpack_move,
)


class TradeDesk:
    def __init__(
        self,
        store: TradeStore,
        post: PostOffice,
        *,
        signer: Callable[[], Signer],
        own_key: bytes,
        now: Callable[[], int],
        emit: Callable[[Event], None],
    ) -> None:
        self._store = store
        self._post = post
        self._signer = signer
        self._own_key = own_key
        self._now = now
        self._emit = emit

    def offer(self, listing: Listing, price: int, quantity: int, note: str) -> TradeView:
        """Open a trade on ``listing`` with an offer to its seller."""
        if listing.seller == self._own_key:
            raise InvalidInput("that is your own listing: an offer goes to another seller")
        if not 1 <= quantity <= listing.quantity:
            raise InvalidInput(f"quantity must be between 1 and {listing.quantity}")
        listing_hash = hashlib.blake2b(encode(listing), digest_size=32).digest()
        terms = Terms(
            listing.id, listing.seq, price, listing.currency, quantity, note, listing_hash
        )
        move = make_offer(self._signer(), listing.seller, terms, self._now(), os.urandom(16))
        return self._make(move, listing.seller)

    def act(
        self,
        trade: bytes,
        kind: Kind,
        *,
        price: int | None = None,
        quantity: int | None = None,
        note: str | None = None,
    ) -> TradeView:
        """Take a step in a trade: counter (with new terms), accept, decline,
        cancel, paid, shipped, complete."""
        view = self.view(trade)
        if kind not in allowed(view, self._own_key):
            can = ", ".join(sorted(allowed(view, self._own_key))) or "nothing: it is over"
            raise InvalidInput(
                f"you cannot take the step {kind!r} in this trade now (you can: {can})"
            )
        terms = None
        if kind == "counter":
            old = view.terms
            terms = Terms(
                old.listing_id,
                old.listing_seq,
                old.price if price is None else price,
                old.currency,
                old.quantity if quantity is None else quantity,
                old.note if note is None else note,
                old.listing_hash,
            )
        seq = 1 + max(
            (m.seq for m in self._store.moves(trade) if m.author == self._own_key), default=0
        )
        move = make_move(self._signer(), view, kind, seq, self._now(), terms)
        other = view.seller if self._own_key == view.buyer else view.buyer
        return self._make(move, other)

    def _make(self, move: Move, other: bytes) -> TradeView:
        try:  # what the other side will check, checked here first
            unpack_move(pack_move(move))
        except ValueError as exc:
            raise InvalidInput(str(exc).replace("a malformed trade move: ", "")) from None
        self._post.send_trade(other, move, keep=self._store.entry(move))
        view = self.view(move.trade)
        self._emit(TradeUpdated(view))
        return view

    def take(self, move: Move) -> bool:
        """A move from the other party (its letter's sender is its author). Kept
        if it is an offer to us or a move in one of our trades; True if new.
        Raises :class:`NotYet` for a move whose offer has not arrived."""
        held = self._store.moves(move.trade)
        if move.kind == "offer":
            ours = move.seller == self._own_key
        else:
            known = resolve(held, move.trade, self._now())
            if known is None:
                raise NotYet("a move of a trade whose offer has not arrived")
            ours = move.author in (known.buyer, known.seller)
        if not ours or not self._store.add(move):
            return False
        view = resolve([*held, move], move.trade, self._now())
        if view is not None:
            self._emit(TradeUpdated(view))
        return True

    def view(self, trade: bytes) -> TradeView:
        view = resolve(self._store.moves(trade), trade, self._now())
        if view is None:
            raise NotFound(f"no trade {trade.hex()}")
        return view

    def views(self) -> list[TradeView]:
        """Every trade, the most recently moved first."""
        now = self._now()
        found: list[tuple[int, TradeView]] = []
        for trade in self._store.trades():
            moves = self._store.moves(trade)
            view = resolve(moves, trade, now)
            if view is not None:
                found.append((max(m.time for m in moves), view))
        found.sort(key=lambda item: item[0], reverse=True)
        return [view for _, view in found]
