"""A lying peer in catch-up sync: what it sends is never stored, and it is cut off.

The peer is a raw py-libp2p host (``raw_peer.py``) that answers the sync
protocols with a script of the test's own, speaking the frames of
:mod:`p2pmarket.network.sync_wire`. Honest scripts run a real
:class:`Reconciler` over the records the peer claims, so a liar differs from an
honest peer only in the rule it breaks. A node that catches a lie fails the
session, penalises the peer in GossipSub's score, counts a sync violation and
hangs up; it then refuses to sync with that peer for a while.

The node is the initiator (``await node.sync(peer)``, what ``p2pmarket sync``
does) or answers a session the raw peer starts. Nodes validate with the real
clock, so records are built with ``created=int(time.time())``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
import trio
from conftest import LOOPBACK, Cluster, connect, eventually
from factories import OTHER, SELLER, THIRD, listing_fields, raw_record, signed_listing
from libp2p.abc import INetStream
from libp2p.host.exceptions import StreamFailure
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamReset
from raw_peer import RawPeer, assert_banned, raw_peer

from p2pmarket import records
from p2pmarket.events import SyncProgress
from p2pmarket.network import sync_wire as wire
from p2pmarket.network.reconcile import ItemSet, Mode, Range, Reconciler
from p2pmarket.network.streams import read_exactly
from p2pmarket.network.sync import FETCH_PROTOCOL, RECONCILE_PROTOCOL
from p2pmarket.node import Node
from p2pmarket.records import DAY, Listing

MANUAL = replace(LOOPBACK, sync_on_connect=False, sync_interval=0)
Script = Callable[[INetStream], Awaitable[None]]
Answer = Callable[[list[bytes]], Sequence[bytes | None]]


def fresh(signer: Any = SELLER, **overrides: Any) -> Listing:
    return signed_listing(signer, created=int(time.time()), **overrides)


def sync_key(listing: Listing) -> bytes:
    return records.sync_key(listing)


def claims(*versions: tuple[bytes, int]) -> ItemSet:
    """What a peer says it holds: (sync key, seq) pairs, all held."""
    return ItemSet.build((k, seq, True) for k, seq in sorted(versions))


def holding(*listings: Listing) -> ItemSet:
    return claims(*((sync_key(x), x.seq) for x in listings))


# -- the raw peer's side of the protocols --------------------------------------------


async def read_frame(stream: INetStream) -> tuple[int, list[Any]]:
    header = await read_exactly(stream, 4)
    return wire.parse(await read_exactly(stream, wire.frame_length(header)))


async def run_reconciler(stream: INetStream, reconciler: Reconciler) -> None:
    """Trade range messages until the session is settled, as a node does."""
    while not reconciler.done:
        kind, body = await read_frame(stream)
        assert kind == wire.RANGES
        reply = reconciler.receive(wire.decode_ranges(body))
        if reply is not None:
            await stream.write(wire.ranges_frame(reply))


def reconciling(items: ItemSet) -> Script:
    """Answer a node's reconciliation honestly over ``items``."""

    async def script(stream: INetStream) -> None:
        with contextlib.suppress(Exception):  # a node hangs up on a liar
            await run_reconciler(stream, Reconciler(items))
            await stream.close()

    return script


def serving(answer: Answer) -> Script:
    """Answer every get of a node with ``answer(keys)``."""

    async def script(stream: INetStream) -> None:
        with contextlib.suppress(Exception):  # EOF when the node is done, or a hang-up
            while True:
                kind, body = await read_frame(stream)
                assert kind == wire.GET
                await stream.write(wire.records_frame(list(answer(wire.decode_get(body)))))

    return script


def the_records(*listings: Listing) -> Answer:
    """An honest answer: each record asked for, or nil if not held."""
    held = {sync_key(x): records.encode(x) for x in listings}
    return lambda keys: [held.get(k) for k in keys]


def always(data: bytes | None) -> Answer:
    return lambda keys: [data] * len(keys)


async def start_session(raw: RawPeer, node: Node, items: ItemSet) -> None:
    """The raw peer as the initiator: reconcile honestly, then let the node fetch."""
    stream = await raw.open_stream(node, RECONCILE_PROTOCOL)
    reconciler = Reconciler(items)
    with trio.fail_after(10):
        await stream.write(wire.ranges_frame(reconciler.first()))
        await run_reconciler(stream, reconciler)
    await stream.close()


# -- the node's side -----------------------------------------------------------------


async def joined(cluster: Cluster, raw: RawPeer) -> Node:
    node = await cluster.start_node(config=MANUAL)
    await raw.connect(node)
    await eventually(lambda: raw.peer_id in connected(node))
    return node


def connected(node: Node) -> set[str]:
    return {p.peer_id for p in node.peers()}


def violations(node: Node) -> int:
    assert node._network is not None
    return node._network.counters["sync_violations"]


def last_session(node: Node, role: str) -> SyncProgress | None:
    return next((s for s in node.sync_status().sessions if s.role == role), None)


async def session_as(node: Node, raw: RawPeer, role: str, items: ItemSet) -> SyncProgress:
    """One session between the node and the raw peer, the node in ``role``."""
    if role == "initiator":
        (progress,) = await node.sync(raw.peer_id)
        return progress
    with contextlib.suppress(Exception):  # a liar may be cut off mid-session
        await start_session(raw, node, items)

    def finished() -> SyncProgress | None:
        found = last_session(node, "responder")
        return found if found is not None and not found.active else None

    await eventually(finished)
    progress = finished()
    assert progress is not None
    return progress


async def assert_cut_off(node: Node, raw: RawPeer) -> None:
    """The node counted a violation and hung up on the raw peer, and keeps it
    out for a while (issue 13: such a peer used to stay connected, or come
    straight back); its sync ban outlives the connection too."""
    network = node._network
    assert network is not None
    assert violations(node) >= 1
    await eventually(lambda: raw.peer_id not in connected(node))
    await assert_banned(node, raw)
    assert network.sync is not None
    assert network.sync.banned(raw.host.get_id())


ROLES = ["initiator", "responder"]


# -- an honest raw peer: the protocols as the liars below break them -----------------


@pytest.mark.parametrize("role", ROLES)
async def test_a_raw_peer_that_lists_and_serves_its_listings_honestly_gets_them_stored(
    cluster: Cluster, role: str
) -> None:
    listings = [fresh(title=f"Sepeda {i}") for i in range(3)]
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, reconciling(holding(*listings)))
        raw.handle(FETCH_PROTOCOL, serving(the_records(*listings)))
        node = await joined(cluster, raw)

        progress = await session_as(node, raw, role, holding(*listings))

        assert progress.phase == "done", progress.error
        assert progress.known == progress.fetched == 3
        assert all(node.store.get(x.id, node.now()) == x for x in listings)
        assert violations(node) == 0
        assert raw.peer_id in connected(node)
        assert node._network is not None and node._network.peer_score(raw.peer_id) >= 0


async def test_a_few_records_gone_between_listing_and_fetching_are_no_lie(
    cluster: Cluster,
) -> None:
    # Expired or evicted meanwhile: a fetch of it honestly answers "not held".
    listings = [fresh(title=f"Sepeda {i}") for i in range(5)]
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, reconciling(holding(*listings)))
        raw.handle(FETCH_PROTOCOL, serving(the_records(*listings[:3])))
        node = await joined(cluster, raw)

        (progress,) = await node.sync(raw.peer_id)

        assert progress.phase == "done", progress.error
        assert (progress.known, progress.fetched, progress.missing) == (5, 3, 2)
        assert violations(node) == 0
        assert raw.peer_id in connected(node)


# -- lies in the fetch --------------------------------------------------------------


def forged() -> tuple[Listing | None, bytes, bytes]:
    """SELLER's listing signed by THIRD: (nothing genuine, its key, its bytes)."""
    created = int(time.time())
    fields = listing_fields(ts=created, exp=created + 30 * DAY, nonce=os.urandom(16))
    data = raw_record(fields, THIRD)
    listing_id = records.listing_id(fields["seller"], fields["nonce"])
    return None, records.SYNC_LISTING + listing_id, data


def another() -> tuple[Listing | None, bytes, bytes]:
    """A valid listing, served under the key of a different one."""
    asked, served = fresh(title="Diminta"), fresh(OTHER, title="Dikirim")
    return served, sync_key(asked), records.encode(served)


# An older version than claimed is not among the lies: the newer one may have
# expired since it was listed (an update can shorten a lifetime), so it counts as
# missing, like a record the peer no longer holds.
LIES = {"a forged signature": forged, "another listing": another}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("lie", LIES.values(), ids=LIES.keys())
async def test_a_peer_that_serves_other_than_it_listed_is_cut_off(
    cluster: Cluster, role: str, lie: Callable[[], tuple[Listing | None, bytes, bytes]]
) -> None:
    genuine, key, data = lie()
    claimed = claims((key, 1))
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, reconciling(claimed))
        raw.handle(FETCH_PROTOCOL, serving(always(data)))
        node = await joined(cluster, raw)

        progress = await session_as(node, raw, role, claimed)

        assert progress.phase == "failed"
        assert "broke the protocol" in progress.error
        assert progress.rejected == 1
        assert node.store.listing_count == 0
        assert node.store.sync_seq(key, node.now()) is None
        if genuine is not None:
            assert node.store.get(genuine.id, node.now()) is None
        await assert_cut_off(node, raw)


async def test_a_peer_that_lists_records_it_never_serves_is_cut_off(cluster: Cluster) -> None:
    # A few misses are expected (see above); most of what it listed is a lie.
    invented = claims(*((records.SYNC_LISTING + os.urandom(16), 1) for _ in range(80)))
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, reconciling(invented))
        raw.handle(FETCH_PROTOCOL, serving(always(None)))
        node = await joined(cluster, raw)

        (progress,) = await node.sync(raw.peer_id)

        assert progress.phase == "failed"
        assert progress.missing == 80
        await assert_cut_off(node, raw)


# -- lies in the reconciliation --------------------------------------------------------


def never_settling() -> Script:
    """Answer every message with fresh fingerprints that match nothing."""

    async def script(stream: INetStream) -> None:
        with contextlib.suppress(Exception):
            while True:
                await read_frame(stream)
                bounds = sorted({b"L" + os.urandom(2) for _ in range(4)})
                message = [Range(b, Mode.FINGERPRINT, 1000, os.urandom(16)) for b in bounds]
                message.append(Range(None, Mode.FINGERPRINT, 1000, os.urandom(16)))
                await stream.write(wire.ranges_frame(message))

    return script


async def test_a_peer_that_never_lets_the_ranges_settle_is_cut_off_at_the_round_cap(
    cluster: Cluster,
) -> None:
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, never_settling())
        node = await joined(cluster, raw)
        node.ingest([records.encode(fresh(title=f"Sepeda {i}")) for i in range(100)])

        with trio.fail_after(20):  # far within the session's own deadline
            (progress,) = await node.sync(raw.peer_id)

        assert progress.phase == "failed"
        assert "rounds" in progress.error
        await assert_cut_off(node, raw)


MALFORMED = {
    "garbage": struct.pack(">I", 16) + b"\xc1" * 16,
    "a length over MAX_FRAME": struct.pack(">I", wire.MAX_FRAME + 1),
    "a frame that is not ranges": wire.records_frame([None]),
    "a range of an unknown mode": wire.frame([wire.RANGES, [[None, 9, None]]]),
}


def sending(data: bytes) -> Script:
    """Read the node's first frame, then answer with ``data``."""

    async def script(stream: INetStream) -> None:
        with contextlib.suppress(Exception):
            await read_frame(stream)
            await stream.write(data)
            await read_frame(stream)  # until the node hangs up

    return script


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_answer_to_the_nodes_reconciliation_cuts_the_peer_off(
    cluster: Cluster, data: bytes
) -> None:
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, sending(data))
        node = await joined(cluster, raw)

        (progress,) = await node.sync(raw.peer_id)

        assert progress.phase == "failed"
        assert "broke the protocol" in progress.error
        await assert_cut_off(node, raw)


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_first_frame_of_a_session_cuts_the_peer_off(
    cluster: Cluster, data: bytes
) -> None:
    async with raw_peer() as raw:
        node = await joined(cluster, raw)
        stream = await raw.open_stream(node, RECONCILE_PROTOCOL)

        await stream.write(data)

        await eventually(lambda: violations(node) == 1)
        progress = last_session(node, "responder")
        assert progress is not None and progress.phase == "failed"
        await assert_cut_off(node, raw)


BAD_GETS = {
    "garbage": struct.pack(">I", 16) + b"\xc1" * 16,
    "a length over MAX_FRAME": struct.pack(">I", wire.MAX_FRAME + 1),
    "a get of no keys": wire.get_frame([]),
    "a ranges frame": wire.ranges_frame([Range(None, Mode.SKIP)]),
}


@pytest.mark.parametrize("data", BAD_GETS.values(), ids=BAD_GETS.keys())
async def test_a_malformed_get_cuts_the_peer_off(cluster: Cluster, data: bytes) -> None:
    listing = fresh()
    async with raw_peer() as raw:
        node = await joined(cluster, raw)
        node.ingest([records.encode(listing)])
        stream = await raw.open_stream(node, FETCH_PROTOCOL)
        # The node serves a well-formed get first…
        await stream.write(wire.get_frame([sync_key(listing)]))
        kind, body = await read_frame(stream)
        assert (kind, wire.decode_records(body, 1)) == (wire.RECORDS, [records.encode(listing)])

        await stream.write(data)

        await eventually(lambda: violations(node) == 1)
        await assert_cut_off(node, raw)


async def test_a_peer_that_was_cut_off_is_refused_a_new_session(cluster: Cluster) -> None:
    listing = fresh()
    async with raw_peer() as raw:
        raw.handle(RECONCILE_PROTOCOL, sending(MALFORMED["garbage"]))
        raw.handle(FETCH_PROTOCOL, serving(the_records(listing)))
        node = await joined(cluster, raw)
        await node.sync(raw.peer_id)
        await assert_cut_off(node, raw)
        sessions = len(node.sync_status().sessions)

        # Back and honest now, but the node will not sync with it for a while:
        # it is banned, so its new connection is closed as soon as it opens
        # (the stream fails to open), or the stream is reset while the protocol
        # is agreed on, or just after.
        with pytest.raises((StreamFailure, StreamReset, SwarmException)):
            await start_session(raw, node, holding(listing))

        assert node.store.get(listing.id, node.now()) is None
        assert len(node.sync_status().sessions) == sessions


# -- what is not a lie ------------------------------------------------------------------


async def test_a_peer_whose_clock_is_a_few_seconds_behind_is_not_taken_for_a_liar(
    cluster: Cluster,
) -> None:
    # Nodes allow clocks minutes apart (records.CLOCK_SKEW). A listing that has
    # just expired by our clock is still live by the peer's, which lists it and
    # serves it: an honest answer, for a record that is gone by the time it lands.
    behind = Node.open(cluster.new_home(), clock=lambda: time.time() - 5)
    cluster.nodes.append(behind)
    await cluster.nursery.start(behind.run, MANUAL)
    node = await cluster.start_node(config=MANUAL)
    now = int(time.time())
    ending = signed_listing(OTHER, title="Habis", created=now - DAY, expires=now + 1)
    lasting = signed_listing(OTHER, title="Awet", created=now - DAY)
    behind.ingest([records.encode(ending), records.encode(lasting)])
    await connect(node, behind)
    await eventually(lambda: node.now() >= ending.expires, timeout=5)
    assert behind.now() < ending.expires

    (progress,) = await node.sync(behind.peer_id)

    assert progress.phase == "done", progress.error
    assert node.store.get(lasting.id, node.now()) == lasting
    assert node.store.get(ending.id, node.now()) is None
    assert violations(node) == 0
    assert behind.peer_id in connected(node)
