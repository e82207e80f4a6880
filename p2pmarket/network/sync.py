"""Catch-up sync: reconcile our cache with a peer's, then fetch what we lack.

Two libp2p protocols:

* ``/p2pmarket/sync/reconcile/1.0.0``: the dialling side (the *initiator*) opens a
  stream and the two sides trade range messages (:mod:`~p2pmarket.network.reconcile`)
  until every range is settled. Each side then knows which records the other
  holds newer, and fetches them itself: the initiator at once, the responder
  when the stream is done.
* ``/p2pmarket/sync/fetch/1.0.0``: ``get`` a batch of sync keys, receive the
  records. A few gets are kept in flight so the peer never waits on us.

Nothing from a peer is trusted. Every frame has a size cap and a deadline, a
session has a round cap and an overall deadline, and every fetched record is
validated as gossip is and must be the record asked for, at least as new as the
peer claimed. A peer that breaks a rule is penalised, disconnected and not
synced with again for a while.

Several sessions can fetch at once (a new node syncing from three peers): a key
is fetched by one session at a time, and the others skip it, so each record
crosses the wire once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2pmarket.events import SyncProgress
from p2pmarket.network import sync_wire as wire
from p2pmarket.network.reconcile import Incomplete, ItemSet, ProtocolViolation, Reconciler
from p2pmarket.network.streams import close_quietly, read_exactly

log = logging.getLogger("p2pmarket.sync")

RECONCILE_PROTOCOL: Final = TProtocol("/p2pmarket/sync/reconcile/1.0.0")
FETCH_PROTOCOL: Final = TProtocol("/p2pmarket/sync/fetch/1.0.0")
FRAME_TIMEOUT: Final = 30.0  # waiting for one frame
RECONCILE_TIMEOUT: Final = 120.0  # a whole reconciliation
FETCH_BATCH: Final = 256  # keys per get
FETCH_WINDOW: Final = 4  # gets in flight
MAX_INBOUND: Final = 4  # reconciliations we answer at once
MAX_SERVING: Final = 8  # fetch streams we serve at once…
MAX_SERVING_PER_PEER: Final = 2  # …and to one peer
# A fetch must average this many records a second (after a minute's grace), or
# a peer could hold a session open for hours by answering just inside each deadline.
MIN_FETCH_RATE: Final = 50
BAN: Final = 600.0  # seconds a lying peer is not synced with
# A peer may have dropped a record between listing it and our get (it expired
# or was evicted); more than this share of misses is a lie.
MAX_MISSING_SHARE: Final = 0.1
MISSING_GRACE: Final = 50
HISTORY: Final = 20  # finished sessions kept for status


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of storing one fetched batch."""

    stored: int = 0  # new or newer records stored
    stale: int = 0  # valid, but we already held it (gossip was faster)
    rejected: int = 0  # invalid, or not the record asked for
    expired: int = 0  # expired on its way (or by a peer clock a little behind ours)


class SyncSource(Protocol):
    """What the node lends the sync protocols: its set, and a way to store."""

    async def snapshot(self) -> ItemSet: ...

    def seq(self, key: bytes) -> int | None: ...

    def records(self, keys: list[bytes]) -> list[bytes | None]: ...

    async def store(self, batch: list[tuple[bytes, int, bytes]]) -> Fetched: ...


class Liar(Exception):
    """The peer broke a rule of the sync protocols."""


@dataclass(slots=True)
class _Session:
    peer: ID
    role: Literal["initiator", "responder"]
    progress: SyncProgress
    needs: list[tuple[bytes, int]] = field(default_factory=list)
    finished: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def update(self, **changes: Any) -> None:
        self.progress = replace(self.progress, **changes)

    def count(self, **deltas: int) -> None:
        self.progress = replace(
            self.progress, **{k: getattr(self.progress, k) + v for k, v in deltas.items()}
        )


class SyncService:
    """Serves and runs sync sessions on one host. ``punish(peer, reason)`` is
    the network's penalty; ``on_done(progress)`` hears of every finished session."""

    def __init__(
        self,
        host: IHost,
        source: SyncSource,
        *,
        punish: Callable[[ID, str], Awaitable[None]],
        on_done: Callable[[SyncProgress], None],
    ) -> None:
        self._host = host
        self._source = source
        self._punish = punish
        self._on_done = on_done
        self._inflight: dict[bytes, _Session] = {}  # key -> the session fetching it
        # (peer, role) -> the running session: two nodes that dial each other at
        # once each run one session of each role, and both must succeed.
        self._active: dict[tuple[str, str], _Session] = {}
        self._history: deque[SyncProgress] = deque(maxlen=HISTORY)
        self._banned: dict[str, float] = {}
        self._inbound = trio.Semaphore(MAX_INBOUND)
        self._serving = trio.Semaphore(MAX_SERVING)
        self._serving_peer: dict[str, int] = {}
        self.synced_peers: set[str] = set()
        host.set_stream_handler(RECONCILE_PROTOCOL, self._answer)
        host.set_stream_handler(FETCH_PROTOCOL, self._serve)

    # -- status ------------------------------------------------------------

    def sessions(self) -> tuple[SyncProgress, ...]:
        running = tuple(s.progress for s in self._active.values())
        return running + tuple(reversed(self._history))

    @property
    def syncing(self) -> bool:
        return bool(self._active)

    def busy_with(self, peer: ID) -> bool:
        return (peer.to_base58(), "initiator") in self._active

    def banned(self, peer: ID) -> bool:
        until = self._banned.get(peer.to_base58(), 0.0)
        return until > time.monotonic()

    # -- initiating --------------------------------------------------------

    async def sync_with(self, peer: ID) -> SyncProgress:
        """One session with ``peer`` as the initiator; returns how it ended."""
        running = self._active.get((peer.to_base58(), "initiator"))
        if running is not None:  # one at a time with a peer: wait for that one
            await running.finished.wait()
            return running.progress
        session = self._start(peer, "initiator")
        try:
            with trio.fail_after(FRAME_TIMEOUT):
                stream = await self._host.new_stream(peer, [RECONCILE_PROTOCOL])
            try:
                await self._reconcile(stream, session, first=True)
            finally:
                await close_quietly(stream)
            await self._fetch(session)
        except BaseException as exc:
            await self._failed(session, exc)
            if not isinstance(exc, Exception):
                self._finish(session)
                raise
        return self._finish(session)

    # -- answering ---------------------------------------------------------

    async def _answer(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if self.banned(peer):
            await _reset(stream)
            return
        stale = self._active.get((peer.to_base58(), "responder"))
        if stale is not None:
            # A peer runs one session with us at a time: it gave up on that one.
            stale.scope.cancel()
            await stale.finished.wait()
        try:
            self._inbound.acquire_nowait()
        except trio.WouldBlock:
            await _reset(stream)  # busy: the peer tries again on its next timer
            return
        try:
            session = self._start(peer, "responder")
            try:
                with session.scope:
                    try:
                        await self._reconcile(stream, session, first=False)
                    finally:
                        await close_quietly(stream)
                    await self._fetch(session)
                if session.scope.cancelled_caught:
                    session.update(phase="failed", error="the peer started over")
            except BaseException as exc:
                await self._failed(session, exc)
                if not isinstance(exc, Exception):
                    self._finish(session)
                    raise
            self._finish(session)
        finally:
            self._inbound.release()

    # -- the session -------------------------------------------------------

    def _start(self, peer: ID, role: Literal["initiator", "responder"]) -> _Session:
        name = peer.to_base58()
        session = _Session(peer, role, SyncProgress(name, role, "reconciling", started=time.time()))
        self._active[(name, role)] = session
        return session

    def _finish(self, session: _Session) -> SyncProgress:
        name = session.peer.to_base58()
        if session.progress.phase != "failed":
            session.update(phase="done")
            self.synced_peers.add(name)
        session.update(finished=time.time())
        if self._active.get((name, session.role)) is session:
            del self._active[(name, session.role)]
        self._history.append(session.progress)
        session.finished.set()
        self._on_done(session.progress)
        return session.progress

    async def _failed(self, session: _Session, exc: BaseException) -> None:
        if isinstance(exc, (Liar, ProtocolViolation)):
            reason = str(exc)
            log.info("sync with %s: the peer broke the protocol: %s", session.peer, reason)
            self._banned[session.peer.to_base58()] = time.monotonic() + BAN
            session.update(phase="failed", error=f"the peer broke the protocol: {reason}")
            with trio.CancelScope(shield=True):
                await self._punish(session.peer, reason)
        elif isinstance(exc, trio.TooSlowError):
            session.update(phase="failed", error="the peer was too slow")
        elif isinstance(exc, Exception):
            log.debug("sync with %s failed: %r", session.peer, exc)
            session.update(phase="failed", error=_reason(exc))
        else:
            session.update(phase="failed", error="stopped")

    async def _reconcile(self, stream: INetStream, session: _Session, *, first: bool) -> None:
        """Trade range messages until all is settled. Out of time or rounds, the
        session goes on to fetch what it has learnt so far (the next one finds
        the rest): only a broken rule is a lie."""
        reconciler = Reconciler(await self._source.snapshot())
        with trio.move_on_after(RECONCILE_TIMEOUT) as deadline:
            if first:
                await self._send(stream, session, wire.ranges_frame(reconciler.first()))
            try:
                while not reconciler.done:
                    kind, body = await self._receive(stream, session)
                    if kind != wire.RANGES:
                        raise Liar(f"a frame of type {kind} during reconciliation")
                    reply = reconciler.receive(wire.decode_ranges(body))
                    if reply is not None:
                        await self._send(stream, session, wire.ranges_frame(reply))
            except Incomplete as exc:
                log.info("sync with %s stopped early: %s", session.peer, exc)
        if deadline.cancelled_caught:
            log.info("sync with %s: reconciliation ran out of time", session.peer)
        session.needs = sorted(reconciler.needs.items())
        session.update(phase="fetching", known=len(session.needs))

    async def _fetch(self, session: _Session) -> None:
        """Fetch the session's needs from its peer, a window of gets at a time."""
        if not session.needs:
            return
        with trio.fail_after(60 + len(session.needs) / MIN_FETCH_RATE):
            await self._fetch_all(session)

    async def _fetch_all(self, session: _Session) -> None:
        queue: deque[tuple[bytes, int]] = deque(session.needs)
        deferred: list[tuple[bytes, int]] = []  # being fetched from someone else
        outstanding: deque[list[tuple[bytes, int]]] = deque()
        missing = 0
        stream = await self._host.new_stream(session.peer, [FETCH_PROTOCOL])
        try:
            while queue or outstanding or deferred:
                while len(outstanding) < FETCH_WINDOW and queue:
                    batch = self._claim(queue, deferred, session)
                    if not batch:
                        break
                    outstanding.append(batch)
                    await self._send(stream, session, wire.get_frame([k for k, _ in batch]))
                if not outstanding:
                    if deferred:
                        await trio.sleep(0.1)
                        queue.extend(deferred)
                        deferred.clear()
                    continue
                batch = outstanding.popleft()
                try:
                    kind, body = await self._receive(stream, session)
                    if kind != wire.RECORDS:
                        raise Liar(f"a frame of type {kind} in answer to a get")
                    answers = wire.decode_records(body, len(batch))
                    missing += await self._store(session, batch, answers)
                finally:
                    for key, _ in batch:
                        if self._inflight.get(key) is session:
                            del self._inflight[key]
                # Past a frame's worth of records, the rest of the batch is asked again.
                queue.extendleft(reversed(batch[len(answers) :]))
                if missing > MISSING_GRACE + MAX_MISSING_SHARE * len(session.needs):
                    raise Liar(f"{missing} records it listed are not there")
        finally:
            for key in [k for k, owner in self._inflight.items() if owner is session]:
                del self._inflight[key]
            await close_quietly(stream)

    def _claim(
        self,
        queue: deque[tuple[bytes, int]],
        deferred: list[tuple[bytes, int]],
        session: _Session,
    ) -> list[tuple[bytes, int]]:
        batch: list[tuple[bytes, int]] = []
        have = self._source.seq
        while queue and len(batch) < FETCH_BATCH:
            key, seq = queue.popleft()
            held = have(key)
            if held is not None and held >= seq:
                session.count(fetched=1)  # it came another way meanwhile
            elif key in self._inflight:
                deferred.append((key, seq))
            else:
                self._inflight[key] = session
                batch.append((key, seq))
        return batch

    async def _store(
        self,
        session: _Session,
        batch: list[tuple[bytes, int]],
        answers: list[bytes | None],
    ) -> int:
        present = [
            (key, seq, data) for (key, seq), data in zip(batch, answers, strict=False) if data
        ]
        result = await self._source.store(present)
        # Expired on the way counts as gone, as if the peer no longer held it.
        missing = sum(1 for data in answers if data is None) + result.expired
        session.count(
            fetched=result.stored + result.stale, rejected=result.rejected, missing=missing
        )
        if result.rejected:
            raise Liar(f"{result.rejected} fetched records were invalid or not the ones asked for")
        return missing

    # -- serving -----------------------------------------------------------

    async def _serve(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        name = peer.to_base58()
        if self.banned(peer) or self._serving_peer.get(name, 0) >= MAX_SERVING_PER_PEER:
            await _reset(stream)
            return
        try:
            self._serving.acquire_nowait()
        except trio.WouldBlock:
            await _reset(stream)
            return
        self._serving_peer[name] = self._serving_peer.get(name, 0) + 1
        served = 0
        try:
            # The fetcher gets the same minimum rate it must keep itself.
            with trio.CancelScope() as limit:
                began = trio.current_time()
                while True:
                    limit.deadline = began + 60 + served / MIN_FETCH_RATE
                    with trio.fail_after(FRAME_TIMEOUT * 2):
                        try:
                            header = await read_exactly(stream, 4)
                        except Exception:
                            return  # the fetcher is done (EOF) or gone
                        data = await read_exactly(stream, wire.frame_length(header))
                    kind, body = wire.parse(data)
                    if kind != wire.GET:
                        raise ProtocolViolation(f"a frame of type {kind} on a fetch stream")
                    keys = wire.decode_get(body)
                    with trio.fail_after(FRAME_TIMEOUT):
                        await stream.write(wire.records_frame(self._source.records(keys)))
                    served += len(keys)
        except (ProtocolViolation, Liar) as exc:
            log.info("a fetch from %s broke the protocol: %s", peer, exc)
            self._banned[peer.to_base58()] = time.monotonic() + BAN
            await self._punish(peer, str(exc))
        except Exception as exc:
            log.debug("serving a fetch to %s ended: %r", peer, exc)
        finally:
            self._serving.release()
            self._serving_peer[name] -= 1
            if not self._serving_peer[name]:
                del self._serving_peer[name]
            await close_quietly(stream)

    # -- frames ------------------------------------------------------------

    async def _send(self, stream: INetStream, session: _Session, data: bytes) -> None:
        with trio.fail_after(FRAME_TIMEOUT):
            await stream.write(data)
        session.count(bytes_sent=len(data))

    async def _receive(self, stream: INetStream, session: _Session) -> tuple[int, list[Any]]:
        with trio.fail_after(FRAME_TIMEOUT):
            header = await read_exactly(stream, 4)
            length = wire.frame_length(header)
            data = await read_exactly(stream, length)
        session.count(bytes_received=4 + length)
        return wire.parse(data)


async def _reset(stream: INetStream) -> None:
    with trio.move_on_after(2), contextlib.suppress(Exception):
        await stream.reset()


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
