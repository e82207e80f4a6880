"""The peers the user blocked: their messages are dropped, their listings hidden.

One key per blocked peer (``K`` + key → the time it was blocked), written with
sync like the user's other own data. The set is small and read on every search
and every incoming message, so it is kept in memory too.
"""

from __future__ import annotations

import struct
from typing import Final

import plyvel

from p2pmarket.errors import StoreError
from p2pmarket.store.layout import BLOCKED

_U64: Final = struct.Struct(">Q")


class BlockList:
    def __init__(self, db: plyvel.DB) -> None:
        self._db = db
        self._keys = {key[1:]: _U64.unpack(value)[0] for key, value in db.iterator(prefix=BLOCKED)}

    def _write(self, key: bytes, value: bytes | None) -> None:
        try:
            if value is None:
                self._db.delete(BLOCKED + key, sync=True)
            else:
                self._db.put(BLOCKED + key, value, sync=True)
        except plyvel.Error as exc:
            raise StoreError(f"writing the block list failed: {exc}") from None

    def block(self, key: bytes, now: int) -> bool:
        """Block ``key``; False if it already was."""
        if key in self._keys:
            return False
        self._write(key, _U64.pack(now))
        self._keys[key] = now
        return True

    def unblock(self, key: bytes) -> bool:
        """Unblock ``key``; False if it was not blocked."""
        if key not in self._keys:
            return False
        self._write(key, None)
        del self._keys[key]
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self) -> frozenset[bytes]:
        return frozenset(self._keys)

    def entries(self) -> list[tuple[bytes, int]]:
        """(key, time blocked), most recent first."""
        return sorted(self._keys.items(), key=lambda kv: kv[1], reverse=True)
