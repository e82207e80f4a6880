"""The peers a node has known, kept across restarts, and when to dial them again.

py-libp2p's own auto-connector redials every stored peer forever, including those
that left for good. Ours backs off: a peer that fails is retried after 10 s, then
twice as long each time up to an hour, and forgotten after 12 failures in a row or
a week without a successful connection. Saved as a small msgpack file in the home,
written atomically (write, fsync, rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgpack

log = logging.getLogger("p2pmarket.network")

MIN_BACKOFF: Final = 10.0
MAX_BACKOFF: Final = 3600.0
MAX_FAILURES: Final = 12
FORGET_AFTER: Final = 7 * 86400.0
MAX_PEERS: Final = 500
MAX_ADDRS: Final = 4


@dataclass(slots=True)
class KnownPeer:
    peer_id: str
    addrs: list[str]
    last_seen: float
    failures: int = 0
    next_try: float = 0.0


@dataclass(slots=True)
class PeerBook:
    path: Path
    peers: dict[str, KnownPeer] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path) -> PeerBook:
        """Read the file; a missing or damaged file gives an empty book (it is a cache)."""
        book = cls(path)
        try:
            doc = msgpack.unpackb(path.read_bytes(), raw=False)
            for item in doc["peers"]:
                peer_id, addrs = item["id"], item["addrs"]
                # Text only: str() of a value nested 1000 deep raised RecursionError,
                # which escaped this catch-all (found by fuzzing).
                if not isinstance(peer_id, str) or not isinstance(addrs, list):
                    raise ValueError("not a peer")
                if not all(isinstance(a, str) for a in addrs):
                    raise ValueError("not an address")
                peer = KnownPeer(
                    peer_id,
                    addrs[:MAX_ADDRS],
                    float(item["seen"]),
                    int(item["fail"]),
                    0.0,
                )
                if peer.addrs:
                    book.peers[peer.peer_id] = peer
        except (
            OSError,
            ValueError,
            TypeError,
            KeyError,
            OverflowError,
            msgpack.UnpackException,
        ):
            book.peers.clear()
        return book

    def save(self) -> None:
        """Write the book if it changed. A failure is logged, not raised: the book
        is a cache, and losing it must not take the node down."""
        if not self.dirty:
            return
        try:
            self._write()
        except OSError as exc:
            log.warning("cannot save the peer book %s: %s", self.path, exc.strerror)

    def _write(self) -> None:
        doc = {
            "peers": [
                {"id": p.peer_id, "addrs": p.addrs, "seen": p.last_seen, "fail": p.failures}
                for p in self.peers.values()
            ]
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(msgpack.packb(doc, use_bin_type=True))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        # The rename is durable only once the folder is: a peer the user was told
        # is connected must still be in the book after a crash.
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self.dirty = False

    def seen(self, peer_id: str, addrs: list[str], now: float) -> None:
        """A connection to ``peer_id`` worked; ``addrs`` are where it listens."""
        peer = self.peers.get(peer_id)
        usable = [a for a in addrs if a][:MAX_ADDRS]
        if peer is None:
            if not usable:
                return
            if len(self.peers) >= MAX_PEERS:
                oldest = min(self.peers.values(), key=lambda p: p.last_seen)
                del self.peers[oldest.peer_id]
            self.peers[peer_id] = KnownPeer(peer_id, usable, now)
        else:
            peer.addrs = usable or peer.addrs
            peer.last_seen = now
            peer.failures = 0
            peer.next_try = 0.0
        self.dirty = True

    def remember(self, peer_id: str, addrs: list[str], now: float) -> None:
        """A peer we were told of (an invite, a bootstrap address) but could not
        reach yet: kept as one failure, so the redial loop tries it after
        MIN_BACKOFF and then backs off like any other. A known peer keeps its
        record, with these addresses put first."""
        usable = [a for a in addrs if a][:MAX_ADDRS]
        if not usable:
            return
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.addrs = list(dict.fromkeys(usable + peer.addrs))[:MAX_ADDRS]
        else:
            if len(self.peers) >= MAX_PEERS:
                oldest = min(self.peers.values(), key=lambda p: p.last_seen)
                del self.peers[oldest.peer_id]
            self.peers[peer_id] = KnownPeer(peer_id, usable, now, 1, now + MIN_BACKOFF)
        self.dirty = True

    def failed(self, peer_id: str, now: float) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        peer.failures += 1
        if peer.failures >= MAX_FAILURES or now - peer.last_seen > FORGET_AFTER:
            del self.peers[peer_id]
        else:
            peer.next_try = now + min(MAX_BACKOFF, MIN_BACKOFF * 2 ** (peer.failures - 1))
        self.dirty = True

    def due(self, now: float, connected: set[str]) -> list[KnownPeer]:
        """Known peers worth dialling now: not connected and past their backoff."""
        return [p for p in self.peers.values() if p.peer_id not in connected and p.next_try <= now]
