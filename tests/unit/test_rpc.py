"""The control API: the wire codec, the server's rules and the blocking client.

The server runs in the test's trio loop against a fake Node (the RPC layer is
under test here; the Node has tests of its own). The client blocks, so every call
that waits for an answer runs in a worker thread.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
import trio
from factories import NOW, signed_listing, signed_profile, signed_review, signed_tombstone
from hypothesis import given
from hypothesis import strategies as st

from p2pmarket import events, records
from p2pmarket.errors import InvalidRecord, NotFound, P2PMarketError, StoreLocked
from p2pmarket.events import (
    Event,
    ListingAdded,
    ListingUpdated,
    ListingWithdrawn,
    MessageReceived,
    MessageStateChanged,
    NodeStatus,
    PeerConnected,
    PeerDisconnected,
    PeerInfo,
    ProfileUpdated,
    ReviewAdded,
    SyncProgress,
    SyncStatus,
    TradeUpdated,
)
from p2pmarket.ingest import IngestReport
from p2pmarket.node import Node
from p2pmarket.reputation import Reputation, SellerInfo
from p2pmarket.rpc import codec
from p2pmarket.rpc.client import Client, ConnectionLost, DaemonNotRunning
from p2pmarket.rpc.codec import DATACLASSES, MAX_FRAME, NODE_METHODS, ProtocolError
from p2pmarket.rpc.server import serve
from p2pmarket.store import Page
from p2pmarket.store.messages import Message, State, Thread
from p2pmarket.trade import Contract, Terms, TradeState, TradeView

_T = TypeVar("_T")

LISTING = signed_listing()
TOMBSTONE = signed_tombstone(signed_listing())
PROFILE = signed_profile()
PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"

# One instance of every dataclass the codec carries, with every tuple field filled.
_TERMS = Terms(b"\x01" * 16, 2, 1_400_000_00, "IDR", 1, "COD", b"\x0a" * 32)
CONTRACT = Contract(
    b"\x07" * 16, b"\x02" * 32, b"\x03" * 32, _TERMS, NOW, b"\x02" * 32, b"s" * 64, b"t" * 64
)
VIEW = TradeView(
    TradeState.AGREED,
    b"\x07" * 16,
    b"\x02" * 32,
    b"\x03" * 32,
    _TERMS,
    NOW,
    b"\x02" * 32,
    b"\x09" * 16,
    True,
    False,
    (b"\x08" * 16, b"\x09" * 16),
    CONTRACT,
)

REVIEW = signed_review()
REPUTATION = Reputation(b"\x07" * 32, 3, 4.5, 3.9, 4, 1, 3, NOW)

SAMPLES: dict[str, object] = {
    "Page": Page(listings=[LISTING, signed_listing(title="Helm sepeda")], more=True),
    "IngestReport": IngestReport(
        added=2, updated=1, withdrawn=1, unchanged=3, rejected=[(4, "listing.title: missing")]
    ),
    "PeerInfo": PeerInfo(PEER, ("/ip4/10.0.0.2/tcp/4001",), "outbound"),
    "NodeStatus": NodeStatus(
        peer_id=PEER,
        online=True,
        addresses=(f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}",),
        peers=3,
        cached_listings=120,
        topics=("p2pmarket/listings/v1",),
        started=NOW,
        sync=SyncStatus(True, True, 0, 1, (SyncProgress(PEER, "initiator", "fetching", 9, 4),)),
        extra={"dropped": 2},
    ),
    "SyncStatus": SyncStatus(False, False, NOW, 2, ()),
    "Message": Message(b"\x07" * 32, b"\x01" * 16, True, NOW, "text", b"Halo", State.SENT),
    "Thread": Thread(
        b"\x07" * 32,
        Message(b"\x07" * 32, b"\x02" * 16, False, NOW, "text", b"Masih ada?", State.RECEIVED),
        1,
    ),
    "SyncProgress": SyncProgress(
        PEER, "responder", "failed", 3, 1, 1, 0, 900, 12_000, NOW, NOW + 2, "lied"
    ),
    "MessageReceived": MessageReceived(
        Message(b"\x07" * 32, b"\x03" * 16, False, NOW, "text", b"Ada", State.RECEIVED),
        "mailbox",
    ),
    "MessageStateChanged": MessageStateChanged(
        Message(b"\x07" * 32, b"\x01" * 16, True, NOW, "text", b"Halo", State.READ)
    ),
    "TradeUpdated": TradeUpdated(VIEW),
    "TradeView": VIEW,
    "Terms": VIEW.terms,
    "Contract": CONTRACT,
    "ListingAdded": ListingAdded(LISTING, "gossip"),
    "ListingUpdated": ListingUpdated(LISTING, "dht"),
    "ListingWithdrawn": ListingWithdrawn(TOMBSTONE, "local"),
    "ProfileUpdated": ProfileUpdated(PROFILE, "import"),
    "ReviewAdded": ReviewAdded(REVIEW, "gossip"),
    "Reputation": REPUTATION,
    "SellerInfo": SellerInfo(b"\x07" * 32, "Budi", "Yogyakarta", REPUTATION),
    "PeerConnected": PeerConnected(PEER, "/ip4/10.0.0.2/tcp/4001"),
    "PeerDisconnected": PeerDisconnected(PEER),
}
RECORDS: dict[str, object] = {
    "Listing": LISTING,
    "Tombstone": TOMBSTONE,
    "Profile": PROFILE,
    "Review": REVIEW,
}


# -- fixtures --------------------------------------------------------------------


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # pytest's tmp_path can be longer than a Unix socket path may be.
    folder = tempfile.mkdtemp(prefix="p2pm-", dir="/tmp")
    yield Path(folder) / "node.sock"
    shutil.rmtree(folder, ignore_errors=True)


class FakeNode:
    """Stands in for the Node: each method records the keyword arguments it got and
    returns (or raises, or calls) what the test put in ``answers``; events come from
    a channel."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, object] = {}
        self.server_scope = trio.CancelScope()
        self.unsubscribed = trio.Event()
        self.feed, self._events = trio.open_memory_channel[Event](100)

    def _answer(self, name: str, params: dict[str, Any]) -> object:
        self.calls.append((name, params))
        answer = self.answers.get(name)
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer

    @asynccontextmanager
    async def events(self, buffer: int = 1000) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        self.calls.append(("events", {"buffer": buffer}))
        try:
            yield self._events
        finally:
            self.unsubscribed.set()

    # Methods that only tests offer.

    def echo(self, value: object) -> object:
        return value

    def sample(self, name: str) -> object:
        return {**SAMPLES, **RECORDS}[name]

    def blob(self, size: int) -> bytes:
        return b"x" * size

    async def slow_echo(self, value: object) -> object:
        await trio.sleep(0)
        return value

    async def hang(self) -> None:
        await trio.sleep_forever()

    def crash(self) -> None:
        """Take the whole server down before answering, as a dying daemon would."""
        self.server_scope.cancel()


def _recorder(name: str) -> Callable[..., object]:
    def method(self: FakeNode, **params: Any) -> object:
        return self._answer(name, params)

    return method


for _name in NODE_METHODS - {"events"}:
    setattr(FakeNode, _name, _recorder(_name))

TEST_METHODS = NODE_METHODS | {"echo", "sample", "blob", "slow_echo", "hang", "crash"}


async def _serve_until_cancelled(
    target: FakeNode, path: Path, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    with target.server_scope:
        await serve(target, path, TEST_METHODS, task_status=task_status)


@pytest.fixture
async def fake(socket_path: Path, nursery: trio.Nursery) -> FakeNode:
    """A fake Node served on ``socket_path`` for the rest of the test."""
    node = FakeNode()
    await nursery.start(_serve_until_cancelled, node, socket_path)
    return node


@pytest.fixture
def client(fake: FakeNode, socket_path: Path) -> Iterator[Client]:
    # Connecting does not wait for the server to accept, so it may block the loop.
    with Client.open(socket_path) as opened:
        yield opened


async def in_thread(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await trio.to_thread.run_sync(partial(function, *args, **kwargs))


async def receive_documents(stream: trio.SocketStream, count: int | None = None) -> list[Any]:
    """The next ``count`` documents from ``stream``, or all until the server hangs up."""
    received = bytearray()
    docs: list[Any] = []
    with trio.fail_after(5):
        while count is None or len(docs) < count:
            if len(received) >= 4:
                end = 4 + codec.body_length(bytes(received[:4]))
                if len(received) >= end:
                    docs.append(codec.unpack(bytes(received[4:end])))
                    del received[:end]
                    continue
            chunk = await stream.receive_some()
            if not chunk:
                assert not received, "the server hung up in the middle of a frame"
                break
            received += chunk
    return docs


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def wait_until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.01)


def request(request_id: int, method: str, **params: object) -> bytes:
    return codec.frame(codec.pack(codec.request_document(request_id, method, params)))


def wire(value: object) -> object:
    """``value`` as it comes back from msgpack: every tuple an array."""
    if isinstance(value, tuple | list):
        return [wire(item) for item in value]
    if isinstance(value, dict):
        return {key: wire(item) for key, item in value.items()}
    return value


# -- the codec -------------------------------------------------------------------

plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(plain_values)
def test_plain_values_round_trip_with_tuples_as_arrays(value: object) -> None:
    data = codec.pack(value, typed=False)

    assert codec.unpack(data, typed=False) == wire(value)
    assert codec.unpack(data) == wire(value)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_signed_record_round_trips_as_its_canonical_bytes(name: str) -> None:
    record: Any = RECORDS[name]

    decoded: Any = codec.unpack(codec.pack(record))

    assert type(decoded) is type(record)
    assert decoded == record
    assert records.encode(decoded) == records.encode(record)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_dataclass_round_trips_with_its_tuples_restored(name: str) -> None:
    # Equality fails if a tuple field comes back as a list.
    assert codec.unpack(codec.pack(SAMPLES[name])) == SAMPLES[name]


def test_the_codec_carries_every_event_and_status_class() -> None:
    shipped = {
        name
        for name, value in vars(events).items()
        if isinstance(value, type) and value.__module__ == events.__name__
    }

    assert shipped <= set(DATACLASSES)
    assert set(SAMPLES) == set(DATACLASSES)


def test_a_dataclass_missing_from_the_table_cannot_be_sent() -> None:
    @dataclass
    class Unlisted:
        x: int = 1

    with pytest.raises(ProtocolError, match=r"Unlisted is not in rpc\.codec\.DATACLASSES"):
        codec.pack({"id": 1, "result": Unlisted()})


def test_an_unknown_dataclass_name_is_refused() -> None:
    forged = msgpack.ExtType(2, msgpack.packb(["Exploit", {"x": 1}], use_bin_type=True))

    with pytest.raises(ProtocolError, match="unknown dataclass 'Exploit'"):
        codec.unpack(msgpack.packb(forged, use_bin_type=True))


def test_an_unknown_extension_type_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown extension type 9"):
        codec.unpack(msgpack.packb(msgpack.ExtType(9, b""), use_bin_type=True))


def test_a_dataclass_with_a_field_it_does_not_have_is_refused() -> None:
    forged = msgpack.ExtType(2, msgpack.packb(["PeerDisconnected", {"peer": PEER}]))

    with pytest.raises(ProtocolError, match="cannot read"):
        codec.unpack(msgpack.packb(forged, use_bin_type=True))


@pytest.mark.parametrize(
    "value",
    [LISTING, SAMPLES["PeerInfo"], msgpack.Timestamp(NOW, 0)],
    ids=["record", "dataclass", "timestamp"],
)
def test_the_server_accepts_plain_values_only_in_requests(value: object) -> None:
    with pytest.raises(ProtocolError, match="plain values only"):
        codec.unpack(codec.pack({"params": {"deep": [{"x": value}]}}), typed=False)


def test_the_client_sends_plain_values_only() -> None:
    with pytest.raises(ProtocolError, match="plain values only, not Listing"):
        codec.pack({"params": {"x": LISTING}}, typed=False)


@given(st.binary(max_size=64) | plain_values.map(lambda v: codec.pack(v, typed=False)))
def test_no_input_makes_request_parsing_fail_other_than_by_protocol_error(data: bytes) -> None:
    with suppress(ProtocolError):
        codec.parse_request(codec.unpack(data, typed=False))


@pytest.mark.parametrize(
    "error",
    [NotFound("no listing x in the local cache"), StoreLocked("locked"), P2PMarketError("no")],
)
def test_an_error_is_rebuilt_as_its_own_class_with_its_message(error: P2PMarketError) -> None:
    rebuilt = codec.parse_error(codec.error_document(7, error)["error"])

    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_an_invalid_record_error_keeps_its_field_and_reason() -> None:
    rebuilt = codec.parse_error(
        codec.error_document(7, InvalidRecord("listing.title", "must not be empty"))["error"]
    )

    assert isinstance(rebuilt, InvalidRecord)
    assert (rebuilt.field, rebuilt.reason) == ("listing.title", "must not be empty")


def test_an_error_class_this_client_does_not_know_becomes_the_root() -> None:
    rebuilt = codec.parse_error({"type": "FutureError", "message": "new", "field": None})

    assert type(rebuilt) is P2PMarketError
    assert str(rebuilt) == "new"


def test_an_error_subclass_defined_elsewhere_travels_as_its_branch_in_errors_py() -> None:
    class PeerUnreachable(NotFound):
        pass

    document = codec.error_document(1, PeerUnreachable("peer x did not answer"))

    assert document["error"] == {
        "type": "NotFound",
        "message": "peer x did not answer",
        "field": None,
    }


def test_a_socket_path_too_long_for_the_os_is_refused_with_what_to_do() -> None:
    path = "/tmp/" + "h" * 120 + "/node.sock"

    with pytest.raises(P2PMarketError, match="use a shorter --home") as caught:
        codec.check_socket_path(path)
    assert path in str(caught.value)
    assert "\n" not in str(caught.value)


# -- calls through the socket ----------------------------------------------------


@pytest.mark.parametrize("name", sorted({**SAMPLES, **RECORDS}))
async def test_every_type_a_method_returns_reaches_the_client_intact(
    client: Client, name: str
) -> None:
    expected = {**SAMPLES, **RECORDS}[name]

    assert await in_thread(client.call, "sample", {"name": name}) == expected


async def test_plain_values_cross_the_socket_in_both_directions(client: Client) -> None:
    value = {"text": "Sepeda ✓", "bytes": b"\x00\xff", "n": [1, -2, 2**64 - 1], "f": 1.5}

    assert await in_thread(client.call, "echo", {"value": value}) == value
    assert await in_thread(client.call, "echo", {"value": None}) is None


async def test_an_async_method_is_awaited(client: Client) -> None:
    assert await in_thread(client.call, "slow_echo", {"value": [1, 2]}) == [1, 2]


async def test_client_methods_send_the_node_keyword_arguments(
    client: Client, fake: FakeNode
) -> None:
    fake.answers["search"] = SAMPLES["Page"]

    await in_thread(client.search, "sepeda", max_price=2_000_000, seller=b"\x01" * 32, limit=5)

    assert fake.calls == [
        (
            "search",
            {
                "text": "sepeda",
                "kind": None,
                "category": None,
                "currency": None,
                "min_price": None,
                "max_price": 2_000_000,
                "location": None,
                "seller": b"\x01" * 32,
                "sort": "newest",
                "min_rating": None,
                "limit": 5,
                "offset": 0,
            },
        )
    ]


async def test_paths_are_sent_absolute_because_the_daemon_has_its_own_working_folder(
    client: Client, fake: FakeNode
) -> None:
    fake.answers["export_listings"] = 3
    fake.answers["import_listings"] = SAMPLES["IngestReport"]

    assert await in_thread(client.export_listings, "mine.p2pm", everything=True) == 3
    assert await in_thread(client.import_listings, Path("in.p2pm")) == SAMPLES["IngestReport"]

    assert fake.calls == [
        ("export_listings", {"path": os.path.abspath("mine.p2pm"), "everything": True}),
        ("import_listings", {"path": os.path.abspath("in.p2pm")}),
    ]


@pytest.mark.parametrize(
    ("method", "args", "answer"),
    [
        ("create_listing", {"title": "Sepeda", "price": 1, "category": "vehicles"}, LISTING),
        ("update_listing", {"listing_id": LISTING.id, "price": 2}, LISTING),
        ("withdraw_listing", {"listing_id": records.format_id(LISTING.id)}, TOMBSTONE),
        ("get_listing", {"listing_id": LISTING.id}, LISTING),
        ("my_listings", {}, [LISTING]),
        ("collect_garbage", {}, 4),
        ("profile", {}, PROFILE),
        ("profile", {"owner": b"\x02" * 32}, None),
        ("set_profile", {"name": "Budi", "contacts": ["wa: 0812"]}, PROFILE),
        ("status", {}, SAMPLES["NodeStatus"]),
        ("peers", {}, [SAMPLES["PeerInfo"]]),
        ("connect", {"address": "/ip4/10.0.0.2/tcp/4001"}, SAMPLES["PeerInfo"]),
        ("fetch_listing", {"listing_id": LISTING.id}, LISTING),
        ("fetch_seller", {"seller": LISTING.seller}, [LISTING]),
        ("stop", {}, None),
    ],
)
async def test_each_client_method_returns_what_the_node_method_returned(
    client: Client, fake: FakeNode, method: str, args: dict[str, Any], answer: object
) -> None:
    fake.answers[method] = answer

    assert await in_thread(getattr(client, method), **args) == answer
    assert [name for name, _ in fake.calls] == [method]


async def test_a_typed_method_refuses_an_answer_of_the_wrong_type(
    client: Client, fake: FakeNode
) -> None:
    fake.answers["get_listing"] = PROFILE

    with pytest.raises(ProtocolError, match="answered get_listing with Profile, not Listing"):
        await in_thread(client.get_listing, LISTING.id)


async def test_a_node_error_reaches_the_client_as_its_class_and_message(
    client: Client, fake: FakeNode
) -> None:
    fake.answers["get_listing"] = NotFound("no listing abc in the local cache")

    with pytest.raises(NotFound, match=r"^no listing abc in the local cache$"):
        await in_thread(client.get_listing, "abc")
    # The connection stays usable after an error answer.
    assert await in_thread(client.call, "echo", {"value": 1}) == 1


async def test_an_invalid_record_reaches_the_client_with_its_field(
    client: Client, fake: FakeNode
) -> None:
    fake.answers["create_listing"] = InvalidRecord("listing.title", "must not be empty")

    with pytest.raises(InvalidRecord) as caught:
        await in_thread(client.create_listing, title="", price=1, category="vehicles")
    assert caught.value.field == "listing.title"
    assert str(caught.value) == "listing.title: must not be empty"


async def test_an_unexpected_exception_is_logged_and_answered_as_an_internal_error(
    client: Client, fake: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answers["collect_garbage"] = KeyError("postings")

    with pytest.raises(P2PMarketError) as caught:
        await in_thread(client.collect_garbage)

    assert type(caught.value) is P2PMarketError
    assert str(caught.value) == "internal error in collect_garbage: KeyError: 'postings'"
    [logged] = [r for r in caplog.records if r.name == "p2pmarket.rpc"]
    assert logged.exc_info is not None
    assert await in_thread(client.call, "echo", {"value": "still serving"}) == "still serving"


@pytest.mark.parametrize("method", ["close", "_answer", "__init__", "no_such_method"])
async def test_only_allowed_methods_can_be_called(
    client: Client, fake: FakeNode, method: str
) -> None:
    with pytest.raises(P2PMarketError, match=f"the daemon has no method '{method}'"):
        await in_thread(client.call, method)


async def test_bad_parameters_are_refused_before_the_method_runs(
    client: Client, fake: FakeNode
) -> None:
    with pytest.raises(P2PMarketError, match="bad parameters for echo"):
        await in_thread(client.call, "echo", {"valeu": 1})


async def test_an_answer_too_large_for_one_frame_becomes_an_error(client: Client) -> None:
    with pytest.raises(P2PMarketError, match="over the 16 MiB the control socket carries"):
        await in_thread(client.call, "blob", {"size": MAX_FRAME})
    assert await in_thread(client.call, "blob", {"size": 3}) == b"xxx"


async def test_requests_on_one_connection_are_answered_in_order(
    socket_path: Path, fake: FakeNode
) -> None:
    pipelined = b"".join(
        [request(1, "slow_echo", value="a"), request(2, "echo", value="b"), request(3, "hang")]
    )
    stream = await trio.open_unix_socket(str(socket_path))
    async with stream:
        await stream.send_all(pipelined)
        answers = await receive_documents(stream, 2)

    # The first (async) method finishes before the second starts: no overtaking.
    assert answers == [{"id": 1, "result": "a"}, {"id": 2, "result": "b"}]


# -- bad clients -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x03\xc1\xc1\xc1",  # not msgpack
        codec.frame(codec.pack([1, "echo", {}])),  # msgpack, not a request
        codec.frame(codec.pack({"id": True, "method": "echo", "params": {}})),
        codec.frame(msgpack.packb({"id": 1, "method": "echo", "params": {1: 2}})),
        codec.frame(codec.pack({"id": 1, "method": "echo", "params": {"value": LISTING}})),
        b"\x00\x00\x00\x10\x80",  # the connection ends inside the frame
        b"\xff\xff\xff\xff",  # a length over the limit: refused before buffering it
    ],
    ids=[
        "garbage",
        "not-a-map",
        "bool-id",
        "int-key",
        "record-param",
        "truncated",
        "oversized-length",
    ],
)
async def test_a_bad_frame_closes_only_its_connection(
    socket_path: Path, client: Client, data: bytes
) -> None:
    stream = await trio.open_unix_socket(str(socket_path))
    async with stream:
        await stream.send_all(data)
        if data.startswith(b"\x00\x00\x00\x10"):
            await stream.send_eof()
        [answer] = await receive_documents(stream)

    # The server explains before it hangs up, then goes on serving everyone else.
    assert answer["id"] is None
    assert answer["error"]["message"].startswith("bad request:")
    assert await in_thread(client.call, "echo", {"value": "still serving"}) == "still serving"


async def test_a_client_that_hangs_up_mid_answer_does_not_disturb_the_server(
    socket_path: Path, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    stream = await trio.open_unix_socket(str(socket_path))
    await stream.send_all(request(1, "echo", value=b"x" * 4_000_000))
    await stream.aclose()

    assert await in_thread(client.call, "echo", {"value": 2}) == 2
    assert errors_logged(caplog) == []


# -- the socket file -------------------------------------------------------------


async def test_the_socket_is_for_its_owner_only_whatever_the_umask(
    socket_path: Path, nursery: trio.Nursery
) -> None:
    previous = os.umask(0o000)
    try:
        await nursery.start(serve, FakeNode(), socket_path)
        assert os.umask(0o000) == 0o000, "serve must put the process umask back"
    finally:
        os.umask(previous)

    assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600


async def test_a_second_server_on_a_live_socket_is_refused(
    socket_path: Path, client: Client
) -> None:
    with pytest.raises(StoreLocked, match="another p2pmarket daemon is serving"):
        await serve(FakeNode(), socket_path)

    assert await in_thread(client.call, "echo", {"value": "first"}) == "first"


async def test_a_stale_socket_left_by_a_crashed_daemon_is_replaced(
    socket_path: Path, nursery: trio.Nursery
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))
    assert socket_path.exists()

    await nursery.start(serve, FakeNode(), socket_path, TEST_METHODS)

    with Client.open(socket_path) as client:
        assert await in_thread(client.call, "echo", {"value": 1}) == 1


async def test_a_file_that_is_not_a_socket_is_left_alone(socket_path: Path) -> None:
    socket_path.write_text("mine")

    with pytest.raises(P2PMarketError, match="is not a socket: move it out of the way"):
        await serve(FakeNode(), socket_path)
    assert socket_path.read_text() == "mine"


async def test_a_socket_path_too_long_is_refused_before_anything_is_created() -> None:
    path = Path("/tmp/" + "h" * 120 + "/node.sock")

    with pytest.raises(P2PMarketError, match="use a shorter --home"):
        await serve(FakeNode(), path)
    with pytest.raises(P2PMarketError, match="use a shorter --home"):
        Client.open(path)


async def test_the_socket_file_is_removed_when_the_server_stops(socket_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, FakeNode(), socket_path)
        assert socket_path.exists()
        nursery.cancel_scope.cancel()

    assert not socket_path.exists()


# -- events ----------------------------------------------------------------------

STREAM: list[Event] = [
    ListingAdded(LISTING, "gossip"),
    PeerConnected(PEER, "/ip4/10.0.0.2/tcp/4001"),
    ListingWithdrawn(TOMBSTONE, "local"),
    PeerDisconnected(PEER),
]


def take(stream: Iterator[Event], count: int) -> list[Event]:
    return [next(stream) for _ in range(count)]


async def test_events_arrive_in_order_until_the_client_closes_the_stream(
    client: Client, fake: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    for event in STREAM:
        fake.feed.send_nowait(event)
    stream = client.events(buffer=10)

    received = await in_thread(take, stream, len(STREAM))
    stream.close()

    assert received == STREAM
    assert fake.calls == [("events", {"buffer": 10})]
    with trio.fail_after(5):
        await fake.unsubscribed.wait()
    assert errors_logged(caplog) == []  # a reader leaving is normal, not a failure


async def test_events_use_their_own_connection_so_calls_go_on_meanwhile(
    client: Client, fake: FakeNode
) -> None:
    fake.feed.send_nowait(STREAM[0])
    stream = client.events()
    try:
        assert await in_thread(take, stream, 1) == STREAM[:1]
        assert await in_thread(client.call, "echo", {"value": 5}) == 5
    finally:
        stream.close()


async def test_the_event_stream_ends_when_the_node_ends_it(client: Client, fake: FakeNode) -> None:
    fake.feed.send_nowait(STREAM[1])
    fake.feed.close()

    assert await in_thread(list, client.events()) == [STREAM[1]]


async def test_events_not_allowed_by_the_server_are_refused(
    socket_path: Path, nursery: trio.Nursery
) -> None:
    await nursery.start(serve, FakeNode(), socket_path, frozenset({"echo"}))

    with Client.open(socket_path) as client, pytest.raises(P2PMarketError, match="no method"):
        await in_thread(list, client.events())


# -- the client ------------------------------------------------------------------


def test_the_client_says_the_daemon_is_not_running_when_there_is_no_socket(
    socket_path: Path,
) -> None:
    with pytest.raises(DaemonNotRunning, match="start it with `p2pmarket daemon`"):
        Client.open(socket_path)


def test_the_client_says_the_daemon_is_not_running_when_the_socket_is_stale(
    socket_path: Path,
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))

    with pytest.raises(DaemonNotRunning):
        Client.open(socket_path)


async def test_a_daemon_that_dies_mid_call_is_reported_as_a_lost_connection(
    client: Client,
) -> None:
    with pytest.raises(ConnectionLost, match="lost the connection to the daemon during crash"):
        await in_thread(client.call, "crash")
    with pytest.raises(P2PMarketError, match="connection to the daemon is closed"):
        await in_thread(client.call, "echo", {"value": 1})


async def test_stop_counts_a_daemon_that_vanishes_before_answering_as_stopped(
    client: Client, fake: FakeNode, socket_path: Path
) -> None:
    fake.answers["stop"] = fake.crash

    await in_thread(client.stop)

    await wait_until(lambda: not socket_path.exists())


async def test_a_call_that_outlives_its_timeout_fails_and_closes_the_client(
    client: Client,
) -> None:
    with pytest.raises(P2PMarketError, match=r"did not answer hang within 0\.2 s"):
        await in_thread(client.call, "hang", timeout=0.2)
    with pytest.raises(P2PMarketError, match="connection to the daemon is closed"):
        await in_thread(client.call, "echo", {"value": 1})


def test_the_client_offers_every_node_method() -> None:
    assert {name for name in NODE_METHODS if callable(getattr(Client, name, None))} == NODE_METHODS


def _parameters(function: Callable[..., object]) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name != "self"
    ]


@pytest.mark.parametrize("name", sorted(NODE_METHODS & set(dir(Node))))
def test_a_client_method_takes_the_parameters_of_the_node_method(name: str) -> None:
    assert _parameters(getattr(Client, name)) == _parameters(getattr(Node, name))


@pytest.mark.parametrize("module", ["p2pmarket.rpc", "p2pmarket.rpc.client"])
def test_the_client_loads_neither_trio_nor_libp2p_nor_libsodium(module: str) -> None:
    probe = (
        f"import sys, json, {module}\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('trio', 'libp2p', 'nacl'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.splitlines()[-1]) == []
