"""The blocking client of the control socket: a running daemon's Node, by method call.

The CLI talks to the daemon through this module, so it is deliberately plain:
the stdlib ``socket`` module, one request at a time, no trio and nothing of the
network stack, so that a command starts as fast as an offline one. Its methods
carry the names and keyword parameters of :class:`~p2pmarket.node.Node`'s, so code
written against one runs against the other::

    with Client.open(home / SOCKET_NAME) as daemon:
        page = daemon.search("sepeda", limit=5)

A client is not thread-safe: give each thread its own.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Generator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from p2pmarket.errors import P2PMarketError
from p2pmarket.nodestatus import EVENT_BUFFER, NodeStatus, PeerInfo, SyncProgress, SyncStatus
from p2pmarket.records import Kind, Listing, Profile, Review, Tombstone
from p2pmarket.reputation import Reputation, SellerInfo
from p2pmarket.rpc import codec
from p2pmarket.rpc.codec import ProtocolError
from p2pmarket.trade import TradeView

# Loaded by the methods that return them: a command imports what it uses (the
# message store and the search engine are not light).
if TYPE_CHECKING:
    from p2pmarket.events import Event
    from p2pmarket.ingest import IngestReport
    from p2pmarket.store.messages import Message, Thread
    from p2pmarket.store.search import Page, Sort

__all__ = [
    "BULK_TIMEOUT",
    "CALL_TIMEOUT",
    "CONNECT_TIMEOUT",
    "NETWORK_TIMEOUT",
    "Client",
    "ConnectionLost",
    "DaemonNotRunning",
]

CONNECT_TIMEOUT: Final = 5.0
CALL_TIMEOUT: Final = 30.0
# Calls that wait on other peers.
NETWORK_TIMEOUT: Final = 60.0
# A first sync of a large market takes minutes; the daemon's own deadlines bound it.
SYNC_TIMEOUT: Final = 3600.0
# Calls whose work grows with the cache or a file: an import of a million records
# takes minutes, and it is still progress.
BULK_TIMEOUT: Final = 600.0

_T = TypeVar("_T")


class DaemonNotRunning(P2PMarketError):
    """Nothing listens on the control socket: the daemon has not been started, or stopped."""


class ConnectionLost(P2PMarketError):
    """The daemon closed the connection before answering (it stopped, or crashed)."""


class Client:
    """A connection to the daemon. Open with :meth:`open`; close with :meth:`close`
    or a ``with`` block. A call that fails half-way (timeout, lost connection,
    garbled answer) closes the client, as the stream can no longer be trusted."""

    def __init__(self, sock: socket.socket, socket_path: Path, connect_timeout: float) -> None:
        self._sock: socket.socket | None = sock
        self._path = socket_path
        self._connect_timeout = connect_timeout
        self._ids = itertools.count(1)

    @classmethod
    def open(
        cls, socket_path: str | os.PathLike[str], *, timeout: float = CONNECT_TIMEOUT
    ) -> Client:
        """Connect to the daemon listening on ``socket_path`` (``<home>/node.sock``).

        Raises :class:`DaemonNotRunning` when no daemon listens there, and
        :class:`~p2pmarket.errors.ConfigError` when the socket file is not the
        user's own (a symlink, or another user's socket): the user's commands
        must never reach a daemon someone else runs.
        (Not named ``connect``: that is the Node method that connects to a peer.)
        """
        from p2pmarket.localtrust import check_own_socket

        path = Path(socket_path)
        address = codec.check_socket_path(path)
        if not check_own_socket(path):
            raise DaemonNotRunning(
                f"the p2pmarket daemon is not running (no socket at {path}): "
                "start it with `p2pmarket daemon`"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonNotRunning(
                f"the p2pmarket daemon is not running (nothing listens on {path}): "
                "start it with `p2pmarket daemon`"
            ) from None
        except TimeoutError:
            sock.close()
            raise P2PMarketError(
                f"the daemon at {path} did not accept a connection within {timeout:g} s"
            ) from None
        except OSError as exc:
            sock.close()
            raise P2PMarketError(
                f"cannot connect to the daemon at {path}: {exc.strerror}"
            ) from None
        return cls(sock, path, timeout)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol --------------------------------------------------------

    def call(
        self,
        method: str,
        params: Mapping[str, object] | None = None,
        *,
        timeout: float | None = CALL_TIMEOUT,
    ) -> object:
        """Call ``method`` with keyword ``params`` and return its decoded result.

        The typed methods below are the API; this is the untyped way in for
        methods a newer daemon offers. ``timeout`` (seconds, None for none) bounds
        the whole call."""
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id = self._send_request(method, params or {}, deadline)
        body = self._read_frame(deadline, method, timeout)
        if body is None:
            self.close()
            raise ConnectionLost(
                f"lost the connection to the daemon during {method}: it may have stopped; "
                "check `p2pmarket status`"
            )
        doc = self._document(body)
        if "error" in doc:
            if doc.get("id") != request_id:
                self.close()  # the daemon refused the stream itself and closed it
            raise codec.parse_error(doc["error"])
        if doc.get("id") != request_id or "result" not in doc:
            self.close()
            raise ProtocolError(f"the daemon's answer to {method} is not a response to it")
        return doc["result"]

    def _send_request(
        self, method: str, params: Mapping[str, object], deadline: float | None
    ) -> int:
        sock = self._open_socket()
        request_id = next(self._ids)
        data = codec.frame(
            codec.pack(codec.request_document(request_id, method, params), typed=False)
        )
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(data)
        except TimeoutError:
            self.close()
            raise P2PMarketError(f"the daemon did not take the {method} request in time") from None
        except OSError as exc:
            self.close()
            raise ConnectionLost(
                f"lost the connection to the daemon: {exc.strerror}; it may have stopped"
            ) from None
        return request_id

    def _read_frame(
        self, deadline: float | None, method: str, timeout: float | None
    ) -> bytes | None:
        """The next frame's body; None if the daemon closed the connection between frames."""
        try:
            header = self._receive(codec.HEADER.size, deadline, eof_ok=True)
            if header is None:
                return None
            body = self._receive(codec.body_length(header), deadline, eof_ok=False)
        except TimeoutError:
            self.close()
            raise P2PMarketError(
                f"the daemon did not answer {method} within {timeout:g} s: it may be busy, "
                "try again"
            ) from None
        except P2PMarketError:  # a garbled frame, or the daemon closed mid-frame
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise ConnectionLost(
                f"lost the connection to the daemon during {method}: {exc.strerror}"
            ) from None
        assert body is not None
        return body

    def _receive(self, size: int, deadline: float | None, *, eof_ok: bool) -> bytes | None:
        sock = self._open_socket()
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            sock.settimeout(_remaining(deadline))
            count = sock.recv_into(view[got:])
            if count == 0:
                if got == 0 and eof_ok:
                    return None
                raise ConnectionLost("lost the connection to the daemon in the middle of an answer")
            got += count
        return bytes(buffer)

    def _document(self, body: bytes) -> dict[str, object]:
        try:
            doc = codec.unpack(body)
        except ProtocolError:
            self.close()
            raise
        if not isinstance(doc, dict):
            self.close()
            raise ProtocolError("the daemon sent something that is not a response")
        return doc

    def _open_socket(self) -> socket.socket:
        if self._sock is None:
            raise P2PMarketError("this connection to the daemon is closed; open a new one")
        return self._sock

    # -- own listings ----------------------------------------------------------

    def create_listing(
        self,
        *,
        title: str,
        price: int,
        currency: str | None = None,
        category: str,
        kind: Kind = "sell",
        description: str = "",
        tags: Sequence[str] = (),
        location: str | None = None,
        quantity: int = 1,
        expires_days: int | None = None,
        images: Sequence[bytes] = (),
    ) -> Listing:
        result = self.call(
            "create_listing",
            {
                "title": title,
                "price": price,
                "currency": currency,
                "category": category,
                "kind": kind,
                "description": description,
                "tags": list(tags),
                "location": location,
                "quantity": quantity,
                "expires_days": expires_days,
                "images": list(images),
            },
        )
        return _expect(result, Listing, "create_listing")

    def update_listing(
        self,
        listing_id: bytes | str,
        *,
        title: str | None = None,
        price: int | None = None,
        currency: str | None = None,
        category: str | None = None,
        kind: Kind | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        location: str | None = None,
        quantity: int | None = None,
        expires_days: int | None = None,
    ) -> Listing:
        result = self.call(
            "update_listing",
            {
                "listing_id": listing_id,
                "title": title,
                "price": price,
                "currency": currency,
                "category": category,
                "kind": kind,
                "description": description,
                "tags": None if tags is None else list(tags),
                "location": location,
                "quantity": quantity,
                "expires_days": expires_days,
            },
        )
        return _expect(result, Listing, "update_listing")

    def withdraw_listing(self, listing_id: bytes | str) -> Tombstone:
        result = self.call("withdraw_listing", {"listing_id": listing_id})
        return _expect(result, Tombstone, "withdraw_listing")

    def my_listings(self) -> list[Listing]:
        return _expect_list(self.call("my_listings"), Listing, "my_listings")

    # -- the cache -------------------------------------------------------------

    def get_listing(self, listing_id: bytes | str) -> Listing:
        result = self.call("get_listing", {"listing_id": listing_id})
        return _expect(result, Listing, "get_listing")

    def search(
        self,
        text: str = "",
        *,
        kind: Kind | None = None,
        category: str | None = None,
        currency: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        location: str | None = None,
        seller: bytes | None = None,
        sort: Sort = "newest",
        min_rating: float | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Page:
        result = self.call(
            "search",
            {
                "text": text,
                "kind": kind,
                "category": category,
                "currency": currency,
                "min_price": min_price,
                "max_price": max_price,
                "location": location,
                "seller": seller,
                "sort": sort,
                "min_rating": min_rating,
                "limit": limit,
                "offset": offset,
            },
        )
        from p2pmarket.store.search import Page

        return _expect(result, Page, "search")

    def collect_garbage(self) -> int:
        result = self.call("collect_garbage", timeout=BULK_TIMEOUT)
        return _expect_int(result, "collect_garbage")

    # -- export / import -------------------------------------------------------
    # Paths are made absolute here: the daemon's working directory is not ours.

    def export_listings(self, path: str | os.PathLike[str], *, everything: bool = False) -> int:
        result = self.call(
            "export_listings",
            {"path": os.path.abspath(path), "everything": everything},
            timeout=BULK_TIMEOUT,
        )
        return _expect_int(result, "export_listings")

    def import_listings(self, path: str | os.PathLike[str]) -> IngestReport:
        from p2pmarket.ingest import IngestReport

        result = self.call("import_listings", {"path": os.path.abspath(path)}, timeout=BULK_TIMEOUT)
        return _expect(result, IngestReport, "import_listings")

    def profile(self, owner: bytes | None = None) -> Profile | None:
        result = self.call("profile", {"owner": owner})
        return None if result is None else _expect(result, Profile, "profile")

    def set_profile(
        self, *, name: str, bio: str = "", contacts: Sequence[str] = (), location: str = ""
    ) -> Profile:
        result = self.call(
            "set_profile",
            {"name": name, "bio": bio, "contacts": list(contacts), "location": location},
        )
        return _expect(result, Profile, "set_profile")

    # -- the network -----------------------------------------------------------

    def status(self) -> NodeStatus:
        return _expect(self.call("status"), NodeStatus, "status")

    def sync(self, peer: str | None = None) -> list[SyncProgress]:
        result = self.call("sync", {"peer": peer}, timeout=SYNC_TIMEOUT)
        return _expect_list(result, SyncProgress, "sync")

    def start_sync(self, peer: str | None = None) -> list[str]:
        result = self.call("start_sync", {"peer": peer})
        if not isinstance(result, list) or not all(isinstance(p, str) for p in result):
            raise ProtocolError("start_sync: the daemon sent something other than peer ids")
        return result

    def sync_status(self) -> SyncStatus:
        return _expect(self.call("sync_status"), SyncStatus, "sync_status")

    def send_message(self, to: bytes | str, text: str) -> Message:
        from p2pmarket.store.messages import Message

        return _expect(self.call("send_message", {"to": to, "text": text}), Message, "send_message")

    def thread(self, peer: bytes | str, limit: int = 100) -> list[Message]:
        result = self.call("thread", {"peer": peer, "limit": limit})
        from p2pmarket.store.messages import Message

        return _expect_list(result, Message, "thread")

    def conversations(self) -> list[Thread]:
        from p2pmarket.store.messages import Thread

        return _expect_list(self.call("conversations"), Thread, "conversations")

    def mark_read(self, peer: bytes | str) -> int:
        result = self.call("mark_read", {"peer": peer})
        if type(result) is not int:
            raise ProtocolError("mark_read: the daemon sent something other than a count")
        return result

    def offer(
        self,
        listing_id: bytes | str,
        *,
        price: int | None = None,
        quantity: int = 1,
        note: str = "",
    ) -> TradeView:
        params = {"listing_id": listing_id, "price": price, "quantity": quantity, "note": note}
        return _expect(self.call("offer", params), TradeView, "offer")

    def trade_step(
        self,
        trade_id: bytes | str,
        kind: str,
        *,
        price: int | None = None,
        quantity: int | None = None,
        note: str | None = None,
    ) -> TradeView:
        params = {
            "trade_id": trade_id,
            "kind": kind,
            "price": price,
            "quantity": quantity,
            "note": note,
        }
        return _expect(self.call("trade_step", params), TradeView, "trade_step")

    def trades(self) -> list[TradeView]:
        return _expect_list(self.call("trades"), TradeView, "trades")

    def get_trade(self, trade_id: bytes | str) -> TradeView:
        return _expect(self.call("get_trade", {"trade_id": trade_id}), TradeView, "get_trade")

    def review(self, trade_id: bytes | str, *, stars: int, text: str = "") -> Review:
        params = {"trade_id": trade_id, "stars": stars, "text": text}
        return _expect(self.call("review", params), Review, "review")

    def reviews(self, peer: bytes | str | None = None, *, written: bool = False) -> list[Review]:
        result = self.call("reviews", {"peer": peer, "written": written})
        return _expect_list(result, Review, "reviews")

    def reputation(self, peer: bytes | str | None = None) -> Reputation:
        return _expect(self.call("reputation", {"peer": peer}), Reputation, "reputation")

    def sellers(self, keys: Sequence[bytes]) -> list[SellerInfo]:
        return _expect_list(self.call("sellers", {"keys": list(keys)}), SellerInfo, "sellers")

    def fetch_reviews(self, peer: bytes | str) -> list[Review]:
        result = self.call("fetch_reviews", {"peer": peer}, timeout=NETWORK_TIMEOUT)
        return _expect_list(result, Review, "fetch_reviews")

    def check_mail(self) -> int:
        result = self.call("check_mail", timeout=60.0)
        if type(result) is not int:
            raise ProtocolError("check_mail: the daemon sent something other than a count")
        return result

    def block(self, peer: bytes | str) -> bool:
        return _expect_bool(self.call("block", {"peer": peer}), "block")

    def unblock(self, peer: bytes | str) -> bool:
        return _expect_bool(self.call("unblock", {"peer": peer}), "unblock")

    def blocked(self) -> list[str]:
        result = self.call("blocked")
        if not isinstance(result, list) or not all(isinstance(p, str) for p in result):
            raise ProtocolError("blocked: the daemon sent something other than peer ids")
        return result

    def peers(self) -> list[PeerInfo]:
        return _expect_list(self.call("peers"), PeerInfo, "peers")

    def connect(self, address: str) -> PeerInfo:
        """Connect the daemon to the peer at multiaddr ``address``."""
        result = self.call("connect", {"address": address}, timeout=NETWORK_TIMEOUT)
        return _expect(result, PeerInfo, "connect")

    def invite(self) -> str:
        """The daemon's invite line (see p2pmarket.invite)."""
        result = self.call("invite")
        if not isinstance(result, str):
            raise ProtocolError("invite: the daemon sent something other than a line")
        return result

    def join(self, line: str) -> PeerInfo:
        """Connect the daemon to the peer an invite line names."""
        result = self.call("join", {"line": line}, timeout=NETWORK_TIMEOUT)
        return _expect(result, PeerInfo, "join")

    def fetch_listing(self, listing_id: bytes | str) -> Listing:
        result = self.call("fetch_listing", {"listing_id": listing_id}, timeout=NETWORK_TIMEOUT)
        return _expect(result, Listing, "fetch_listing")

    def fetch_seller(self, seller: bytes | str) -> list[Listing]:
        result = self.call("fetch_seller", {"seller": seller}, timeout=NETWORK_TIMEOUT)
        return _expect_list(result, Listing, "fetch_seller")

    def stop(self) -> None:
        """Ask the daemon to stop. A daemon that goes away before it answers did
        what was asked, so a lost connection counts as success."""
        with suppress(ConnectionLost):
            self.call("stop")
        self.close()

    def events(self, buffer: int = EVENT_BUFFER) -> Generator[Event, None, None]:
        """Yield the daemon's events as they happen, until it stops or the caller
        closes the generator (or breaks out of a ``for`` over it). The daemon
        drops events for a reader that falls ``buffer`` behind.

        Events travel on a connection of their own, opened on the first
        ``next()``, so this client stays free for calls meanwhile. There is no
        timeout: a quiet market sends nothing for a long time."""
        from p2pmarket.events import Event

        stream = Client.open(self._path, timeout=self._connect_timeout)
        try:
            request_id = stream._send_request("events", {"buffer": buffer}, None)
            while True:
                body = stream._read_frame(None, "events", None)
                if body is None:
                    return  # the daemon stopped
                doc = stream._document(body)
                if "error" in doc:
                    raise codec.parse_error(doc["error"])
                if doc.get("id") != request_id:
                    raise ProtocolError("the daemon sent an event for another request")
                if "event" not in doc:
                    return  # the daemon ended the stream
                event = doc["event"]
                if not isinstance(event, Event):
                    raise ProtocolError(f"the daemon sent {type(event).__name__} as an event")
                yield event
        finally:
            stream.close()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    # Zero would make the socket non-blocking, which raises a different error.
    return max(deadline - time.monotonic(), 1e-3)


def _expect(value: object, cls: type[_T], method: str) -> _T:
    if not isinstance(value, cls):
        raise ProtocolError(
            f"the daemon answered {method} with {type(value).__name__}, not {cls.__name__}"
        )
    return value


def _expect_bool(value: object, method: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(f"{method}: the daemon sent something other than true or false")
    return value


def _expect_list(value: object, cls: type[_T], method: str) -> list[_T]:
    items = _expect(value, list, method)
    return [_expect(item, cls, method) for item in items]


def _expect_int(value: object, method: str) -> int:
    if type(value) is not int:
        raise ProtocolError(f"the daemon answered {method} with {type(value).__name__}, not int")
    return value
