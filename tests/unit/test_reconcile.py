"""Range-based reconciliation and its frames, with no network in between.

Two :class:`Reconciler` objects talk through :mod:`sync_wire` exactly as two
nodes do (every message is framed, parsed and decoded on its way), and must end
knowing, each for itself, the keys the other holds newer. A message that breaks
a rule of the protocol, or a frame that is not well-formed, is refused with
:class:`ProtocolViolation` before it can do anything else.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from p2pmarket.network import sync_wire as wire
from p2pmarket.network.reconcile import (
    ITEMS_THRESHOLD,
    MAX_ITEMS,
    MAX_KEY,
    MAX_RANGES,
    MAX_ROUNDS,
    ItemSet,
    Mode,
    ProtocolViolation,
    Range,
    Reconciler,
)
from p2pmarket.records import MAX_RECORD_BYTES

Triple = tuple[bytes, int, bool]  # (sync key, seq, held) as the store lists them


@dataclass
class Session:
    initiator: Reconciler
    responder: Reconciler
    frames: list[bytes]  # every frame that crossed, in order

    @property
    def wire_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def carry(frame: bytes) -> list[Range]:
    """What the receiving side makes of a ranges frame: length, msgpack, types."""
    assert len(frame) == 4 + wire.frame_length(frame[:4])
    kind, body = wire.parse(frame[4:])
    assert kind == wire.RANGES
    return wire.decode_ranges(body)


def reconcile(ours: list[Triple], theirs: list[Triple], *, budget: int = MAX_ITEMS) -> Session:
    """A whole session, ``ours`` the initiator: each side reads until it is done,
    as :class:`p2pmarket.network.sync.SyncService` does."""
    initiator = Reconciler(ItemSet.build(ours), budget=budget)
    responder = Reconciler(ItemSet.build(theirs), budget=budget)
    frames = [wire.ranges_frame(initiator.first())]
    receiver, other = responder, initiator
    while True:
        assert not receiver.done, "a message was sent to a side that stopped reading"
        reply = receiver.receive(carry(frames[-1]))
        if reply is None:
            break
        frames.append(wire.ranges_frame(reply))
        receiver, other = other, receiver
    assert initiator.done and responder.done
    return Session(initiator, responder, frames)


def listed(frame: bytes) -> int:
    """How many items a ranges frame lists."""
    return sum(len(r.items) for r in carry(frame))


def newer_held(theirs: list[Triple], ours: list[Triple]) -> dict[bytes, int]:
    """Keys whose version the other side holds and we lack or know older."""
    known = {key: seq for key, seq, _ in ours}
    return {key: seq for key, seq, held in theirs if held and seq > known.get(key, 0)}


def key(n: int) -> bytes:
    return b"L" + n.to_bytes(16, "big")


def market(rng: random.Random, size: int, *, changed: float) -> tuple[list[Triple], list[Triple]]:
    """Two sides over ``size`` random keys that differ on about ``changed`` of them:
    a key only one side knows, or two different versions; now and then a version
    is evicted (known, not held)."""
    ours: list[Triple] = []
    theirs: list[Triple] = []
    for k in sorted({b"L" + rng.randbytes(16) for _ in range(size)}):
        seq = rng.randint(1, 5)
        roll = rng.random()
        if roll >= changed:
            ours.append((k, seq, rng.random() > 0.05))
            theirs.append((k, seq, rng.random() > 0.05))
        elif roll < changed / 3:
            ours.append((k, seq, rng.random() > 0.2))
        elif roll < 2 * changed / 3:
            theirs.append((k, seq, rng.random() > 0.2))
        else:
            ours.append((k, rng.randint(1, 5), rng.random() > 0.2))
            theirs.append((k, rng.randint(1, 5), rng.random() > 0.2))
    return ours, theirs


# -- both sides end knowing what to fetch ----------------------------------------

SYNC_KEYS = st.binary(min_size=16, max_size=16).map(lambda raw: b"L" + raw)
VERSION = st.tuples(st.integers(1, 5), st.booleans())  # (seq, held)


@st.composite
def two_sides(draw: st.DrawFn) -> tuple[list[Triple], list[Triple]]:
    """Up to 150 keys; for each, the same version on both sides (held or not on
    each), a version on one side only, or a version on each."""
    ours: list[Triple] = []
    theirs: list[Triple] = []
    for k in sorted(draw(st.lists(SYNC_KEYS, unique=True, max_size=150))):
        shape = draw(st.sampled_from(["same", "same", "same", "ours", "theirs", "both"]))
        (seq, held), (other_seq, other_held) = draw(VERSION), draw(VERSION)
        if shape in ("same", "ours", "both"):
            ours.append((k, seq, held))
        if shape == "same":
            theirs.append((k, seq, other_held))
        elif shape in ("theirs", "both"):
            theirs.append((k, other_seq, other_held))
    return ours, theirs


@settings(max_examples=200, deadline=None)
@given(sides=two_sides(), budget=st.sampled_from([8, 33, 100, MAX_ITEMS]))
def test_each_side_needs_exactly_the_versions_the_other_holds_newer(
    sides: tuple[list[Triple], list[Triple]], budget: int
) -> None:
    ours, theirs = sides

    session = reconcile(ours, theirs, budget=budget)

    assert session.initiator.needs == newer_held(theirs, ours)
    assert session.responder.needs == newer_held(ours, theirs)
    assert session.initiator.rounds <= MAX_ROUNDS and session.responder.rounds <= MAX_ROUNDS
    # A message lists at most its budget of items, and one short listing past it.
    assert max(listed(f) for f in session.frames) < budget + ITEMS_THRESHOLD


@settings(max_examples=30, deadline=None)
@example(seed=1, size=4000, changed=0.01, budget=MAX_ITEMS)
@example(seed=2, size=4000, changed=1.0, budget=500)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 4000),
    changed=st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5, 1.0]),
    budget=st.sampled_from([500, MAX_ITEMS]),
)
def test_large_sets_that_differ_a_little_or_a_lot_reconcile_exactly(
    seed: int, size: int, changed: float, budget: int
) -> None:
    # Past FANOUT * ITEMS_THRESHOLD keys, ranges are split more than once.
    ours, theirs = market(random.Random(seed), size, changed=changed)

    session = reconcile(ours, theirs, budget=budget)

    assert session.initiator.needs == newer_held(theirs, ours)
    assert session.responder.needs == newer_held(ours, theirs)
    assert max(session.initiator.rounds, session.responder.rounds) <= 20
    assert max(listed(f) for f in session.frames) < budget + ITEMS_THRESHOLD


@pytest.mark.parametrize("size", [0, 1, ITEMS_THRESHOLD, ITEMS_THRESHOLD + 1, 5000])
def test_equal_sets_settle_in_one_round_trip(size: int) -> None:
    items = [(key(i), 1 + i % 5, i % 7 != 0) for i in range(size)]
    # Whether a version is held is not part of what is compared.
    mirror = [(k, seq, not held) for k, seq, held in items]

    session = reconcile(items, mirror)

    assert len(session.frames) == 2
    assert session.initiator.rounds == session.responder.rounds == 1
    assert session.initiator.needs == session.responder.needs == {}


def test_an_evicted_version_is_neither_offered_nor_asked_for_again() -> None:
    ours = [(key(1), 3, False)]  # we evicted version 3
    theirs = [(key(1), 3, True)]

    assert reconcile(ours, theirs).initiator.needs == {}
    assert reconcile(ours, []).responder.needs == {}
    # …but a newer version is news.
    assert reconcile(ours, [(key(1), 4, True)]).initiator.needs == {key(1): 4}


def test_a_one_percent_difference_in_20000_items_costs_a_fraction_of_listing_them() -> None:
    rng = random.Random(20_000)
    keys = sorted({b"L" + rng.randbytes(16) for _ in range(20_000)})
    ours = [(k, 1, True) for k in keys]
    theirs = list(ours)
    for n, i in enumerate(sorted(rng.sample(range(len(keys)), 200), reverse=True)):
        if n % 2:
            theirs[i] = (keys[i], 2, True)  # a newer version
        else:
            del theirs[i]  # a listing they lack
    everything = wire.ranges_frame(
        [Range(None, Mode.ITEMS, items=tuple((k, seq) for k, seq, _ in ours))]
    )

    session = reconcile(ours, theirs)

    assert len(session.initiator.needs) == len(session.responder.needs) == 100
    assert len(session.frames) <= 8
    # ~460 bytes a difference, where listing the set costs ~20 bytes an item.
    assert session.wire_bytes < len(everything) / 4
    assert session.wire_bytes < 600 * 200


def test_the_cost_grows_with_the_difference_not_with_the_set() -> None:
    rng = random.Random(7)
    small = reconcile(*market(rng, 2_000, changed=0.01))
    large = reconcile(*market(rng, 20_000, changed=0.001))

    # Ten times the items and the same number of differences: far less than ten
    # times the bytes (one more level of fingerprints).
    assert large.wire_bytes < 3 * small.wire_bytes


def test_a_side_with_more_to_give_than_one_message_holds_gives_it_over_several() -> None:
    theirs = [(key(i), 1, True) for i in range(500)]

    session = reconcile([], theirs, budget=100)

    assert session.initiator.needs == {k: 1 for k, _, _ in theirs}
    assert session.responder.items_sent >= 500
    assert max(listed(f) for f in session.frames) == 100


@pytest.mark.parametrize("initiator", ["smaller", "larger"])
def test_a_side_with_far_more_to_give_across_many_ranges_stays_within_the_item_cap(
    initiator: str,
) -> None:
    # 5,120 listings against 30,720 (a superset): the larger side's answer to
    # hundreds of listed ranges holds over MAX_ITEMS of what the smaller lacks.
    # It must go over several messages: the receiver refuses one past the cap
    # (and a node would take an honest peer for a liar).
    rng = random.Random(30_720)
    larger = [(b"L" + rng.randbytes(16), 1, True) for _ in range(30_720)]
    larger.sort()
    smaller = larger[::6]
    ours, theirs = (smaller, larger) if initiator == "smaller" else (larger, smaller)

    session = reconcile(ours, theirs)

    assert session.initiator.needs == newer_held(theirs, ours)
    assert session.responder.needs == newer_held(ours, theirs)
    assert max(listed(f) for f in session.frames) <= MAX_ITEMS + ITEMS_THRESHOLD


# -- a peer's message that breaks the rules -------------------------------------


def deliver(receiver: Reconciler, message: list[Range]) -> list[Range] | None:
    """``message`` as a peer would send it: framed, and decoded on arrival."""
    return receiver.receive(carry(wire.ranges_frame(message)))


def responder(*items: Triple) -> Reconciler:
    return Reconciler(ItemSet.build(items or [(key(i), 2, True) for i in range(1, 9)]))


def skip(upper: bytes | None) -> Range:
    return Range(upper, Mode.SKIP)


def items(upper: bytes | None, *listed: tuple[bytes, int], mode: Mode = Mode.ITEMS) -> Range:
    return Range(upper, mode, items=listed)


BAD_MESSAGES: dict[str, list[Range]] = {
    "empty": [],
    "bounds out of order": [skip(key(5)), skip(key(3)), skip(None)],
    "a bound repeated": [skip(key(5)), skip(key(5)), skip(None)],
    "the last bound is not the end": [skip(key(5))],
    "the end before the last range": [skip(None), skip(None)],
    "an item past its range": [items(key(5), (key(7), 1)), skip(None)],
    "an item before its range": [skip(key(5)), items(None, (key(3), 1))],
    "an item on its upper bound": [items(key(5), (key(5), 1)), skip(None)],
    "items out of order": [items(None, (key(7), 1), (key(3), 1))],
    "an item listed twice": [items(None, (key(3), 1), (key(3), 2))],
    "too many ranges": [skip(key(i)) for i in range(1, MAX_RANGES + 1)] + [skip(None)],
    "too many items": [items(None, *((key(i), 1) for i in range(MAX_ITEMS + ITEMS_THRESHOLD + 1)))],
    "a reply with a version we hold": [items(None, (key(3), 2), mode=Mode.REPLY)],
    "a reply with one we hold newer": [items(None, (key(3), 1), mode=Mode.REPLY)],
    "a reply with an evicted version": [items(None, (key(30), -4), mode=Mode.REPLY)],
    "a good reply then a bad one": [
        items(key(2), (key(1), 5), mode=Mode.REPLY),
        items(None, (key(3), 2), mode=Mode.REPLY),
    ],
}


@pytest.mark.parametrize("message", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_a_message_that_breaks_a_rule_is_refused(message: list[Range]) -> None:
    with pytest.raises(ProtocolViolation):
        deliver(responder(), message)


def test_a_reply_with_a_version_we_lack_is_taken() -> None:
    receiver = responder()

    deliver(receiver, [items(None, (key(3), 3), (key(30), 1), mode=Mode.REPLY)])

    assert receiver.needs == {key(3): 3, key(30): 1}


def test_to_a_peer_with_nothing_in_a_range_we_offer_only_the_versions_we_hold() -> None:
    receiver = responder((key(1), 1, True), (key(2), 3, False), (key(3), 2, True))

    reply = deliver(receiver, [Range(None, Mode.FINGERPRINT, 0, bytes(16))])

    assert reply == [Range(None, Mode.REPLY, items=((key(1), 1), (key(3), 2)))]


def test_items_and_fingerprints_out_of_place_are_refused() -> None:
    # The wire cannot carry these; a Range built in process is checked all the same.
    for mode in (Mode.SKIP, Mode.FINGERPRINT):
        with pytest.raises(ProtocolViolation):
            responder().receive([Range(None, mode, 1, bytes(16), items=((key(1), 1),))])


def test_a_peer_that_never_settles_is_cut_off_after_the_round_cap() -> None:
    receiver = responder()
    for _ in range(MAX_ROUNDS):
        # Fresh, never-matching fingerprints, as a liar would send.
        deliver(receiver, [Range(None, Mode.FINGERPRINT, 1000, os.urandom(16))])

    with pytest.raises(ProtocolViolation, match="rounds"):
        deliver(receiver, [Range(None, Mode.FINGERPRINT, 1000, os.urandom(16))])


# -- frames ------------------------------------------------------------------------


def ranges_body(*entries: Any) -> list[Any]:
    _, body = wire.parse(wire.frame([wire.RANGES, list(entries)])[4:])
    return body


FP = bytes(16)
BAD_RANGES: dict[str, list[Any]] = {
    "a range that is not a list": ranges_body({"upper": None}),
    "a range of two fields": ranges_body([None, 0]),
    "a text bound": ranges_body(["L1", 0, None]),
    "an empty bound": ranges_body([b"", 0, None]),
    "a bound over MAX_KEY": ranges_body([b"L" * (MAX_KEY + 1), 0, None]),
    "an unknown mode": ranges_body([None, 7, None]),
    "a boolean mode": ranges_body([None, True, None]),
    "a skip with a payload": ranges_body([None, 0, [1, FP]]),
    "a fingerprint of 15 bytes": ranges_body([None, 1, [1, bytes(15)]]),
    "a negative count": ranges_body([None, 1, [-1, FP]]),
    "a boolean count": ranges_body([None, 1, [True, FP]]),
    "a fingerprint with no count": ranges_body([None, 1, [FP]]),
    "a text fingerprint": ranges_body([None, 1, [1, "x" * 16]]),
    "items not a list": ranges_body([None, 2, b"L1"]),
    "a key without its seq": ranges_body([None, 2, [key(1), 1, key(2)]]),
    "a seq of zero": ranges_body([None, 2, [key(1), 0]]),
    "a seq past 2**63": ranges_body([None, 3, [key(1), 2**63]]),
    "a text seq": ranges_body([None, 2, [key(1), "1"]]),
    "a boolean seq": ranges_body([None, 2, [key(1), True]]),
    "a text key": ranges_body([None, 2, ["L1", 1]]),
}


@pytest.mark.parametrize("body", BAD_RANGES.values(), ids=BAD_RANGES.keys())
def test_a_ranges_frame_with_wrong_types_is_refused(body: list[Any]) -> None:
    with pytest.raises(ProtocolViolation):
        wire.decode_ranges(body)


BAD_FRAMES: dict[str, bytes] = {
    "nothing": b"",
    "a byte msgpack never uses": b"\xc1" * 8,
    "cut short": msgpack.packb([1, [[None, 0, None]]])[:-2],
    "trailing bytes": msgpack.packb([1, []]) + b"\x00",
    "not a list": msgpack.packb({"type": 1}),
    "one element": msgpack.packb([1]),
    "three elements": msgpack.packb([1, [], []]),
    "a text type": msgpack.packb(["1", []]),
    "a boolean type": msgpack.packb([True, []]),
    "a body that is not a list": msgpack.packb([1, b"body"]),
    "deep nesting": b"\x91" * 100_000 + b"\xc0",
    "a map with a list key": b"\x92\x01\x91\x81\x90\xc0",
}


@pytest.mark.parametrize("data", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_frame_that_is_not_type_and_body_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        wire.parse(data)


def test_a_frame_length_over_the_limit_is_refused_before_it_is_read() -> None:
    assert wire.frame_length(struct.pack(">I", wire.MAX_FRAME)) == wire.MAX_FRAME
    for length in (wire.MAX_FRAME + 1, 2**32 - 1):
        with pytest.raises(ProtocolViolation):
            wire.frame_length(struct.pack(">I", length))


def test_no_frame_over_the_limit_is_ever_built() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        wire.frame([wire.GET, [bytes(MAX_KEY)] * (wire.MAX_FRAME // MAX_KEY)])


RANGE = st.one_of(
    st.builds(Range, st.none() | SYNC_KEYS, st.just(Mode.SKIP)),
    st.builds(
        Range,
        st.none() | SYNC_KEYS,
        st.just(Mode.FINGERPRINT),
        st.integers(0, 2**63 - 1),
        st.binary(min_size=16, max_size=16),
    ),
    st.builds(
        lambda upper, mode, listed: Range(upper, mode, items=tuple(listed)),
        st.none() | SYNC_KEYS,
        st.sampled_from([Mode.ITEMS, Mode.REPLY]),
        st.lists(
            st.tuples(
                st.binary(min_size=1, max_size=MAX_KEY),
                st.integers(-(2**63) + 1, 2**63 - 1).filter(bool),
            ),
            max_size=8,
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(message=st.lists(RANGE, max_size=12))
def test_any_ranges_message_survives_the_wire_unchanged(message: list[Range]) -> None:
    assert carry(wire.ranges_frame(message)) == message


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.binary(min_size=1, max_size=MAX_KEY), min_size=1, max_size=wire.MAX_GET))
def test_a_get_survives_the_wire_unchanged(keys: list[bytes]) -> None:
    kind, body = wire.parse(wire.get_frame(keys)[4:])

    assert kind == wire.GET
    assert wire.decode_get(body) == keys


@pytest.mark.parametrize(
    "body",
    [[], [key(1)] * (wire.MAX_GET + 1), [b""], ["L1"], [key(1), None], [b"L" * (MAX_KEY + 1)]],
    ids=["no keys", "too many keys", "an empty key", "a text key", "a nil key", "a long key"],
)
def test_a_get_that_names_no_valid_keys_is_refused(body: list[Any]) -> None:
    with pytest.raises(ProtocolViolation):
        wire.decode_get(body)


def test_an_answer_to_a_get_holds_records_or_nils_in_the_order_asked() -> None:
    kind, body = wire.parse(wire.records_frame([b"one", None, b"three"])[4:])

    assert kind == wire.RECORDS
    assert wire.decode_records(body, 3) == [b"one", None, b"three"]
    # Fewer than asked is allowed: the rest is asked again.
    assert wire.decode_records(body, 5) == [b"one", None, b"three"]


@pytest.mark.parametrize(
    ("body", "asked"),
    [
        ([b"one", b"two"], 1),
        ([], 3),
        (["text"], 1),
        ([1], 1),
        ([b"x" * (MAX_RECORD_BYTES + 1)], 1),
    ],
    ids=["more than asked", "nothing", "a text record", "a number", "an oversize record"],
)
def test_an_answer_that_does_not_fit_the_get_is_refused(body: list[Any], asked: int) -> None:
    with pytest.raises(ProtocolViolation):
        wire.decode_records(body, asked)


def test_an_answer_stops_before_the_frame_limit() -> None:
    found: list[bytes | None] = [os.urandom(MAX_RECORD_BYTES) for _ in range(wire.MAX_GET)]

    frame = wire.records_frame(found)

    _, body = wire.parse(frame[4:])
    kept = wire.decode_records(body, len(found))
    assert len(frame) <= 4 + wire.MAX_FRAME
    assert 0 < len(kept) < len(found)
    assert kept == found[: len(kept)]
