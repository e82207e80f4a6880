"""Trade moves in the store: every move of every trade this node is a party to.

``G`` trade(16) move id(16) → the move's wire form. A trade's state is not
stored: it is :func:`p2pmarket.trade.resolve` of its moves, so it can never
disagree with them. Writes are synced: these are the user's own agreements.
"""

from __future__ import annotations

import plyvel

from p2pmarket.errors import StoreError
from p2pmarket.store.layout import TRADE
from p2pmarket.trade import Move, pack_move, unpack_move


class TradeStore:
    def __init__(self, db: plyvel.DB) -> None:
        self._db = db

    @staticmethod
    def entry(move: Move) -> tuple[bytes, bytes]:
        """The (key, value) that keeps ``move``: for writing it in another batch."""
        return TRADE + move.trade + move.id, pack_move(move)

    def add(self, move: Move) -> bool:
        """Keep a move; False if it was held already."""
        key, value = self.entry(move)
        if self._db.get(key) is not None:
            return False
        try:
            self._db.put(key, value, sync=True)
        except plyvel.Error as exc:
            raise StoreError(f"writing a trade move failed: {exc}") from None
        return True

    def moves(self, trade: bytes) -> list[Move]:
        return [unpack_move(value) for _, value in self._db.iterator(prefix=TRADE + trade)]

    def trades(self) -> list[bytes]:
        """The ids of every trade with a move held, in id order."""
        found: list[bytes] = []
        it = self._db.iterator(prefix=TRADE, include_value=False)
        for key in it:
            found.append(key[1:17])
            following = int.from_bytes(key[1:17], "big") + 1
            if following >= 2**128:
                break
            it.seek(TRADE + following.to_bytes(16, "big"))  # past this trade's moves
        return found
