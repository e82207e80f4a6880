"""The daemon's side of the control socket: serve a Node's methods to local clients.

Only the user can open the socket (mode 0600, in a home that is 0700 already), so
whoever connects may do what the user may; the server still treats every frame as
untrusted input, because a buggy or outdated client must not be able to take the
daemon down. A bad frame closes that one connection; an unexpected exception in a
method becomes an error response and a logged traceback; neither stops the server.

Each connection is served by its own task and its requests are answered in order.
A connection that asks for ``events`` becomes an event stream until either end
closes it.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Set
from contextlib import AbstractAsyncContextManager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn, Protocol, cast

import trio

from p2pmarket.errors import P2PMarketError, StoreLocked
from p2pmarket.events import Event
from p2pmarket.rpc import codec
from p2pmarket.rpc.codec import NODE_METHODS as NODE_METHODS
from p2pmarket.rpc.codec import ProtocolError

if TYPE_CHECKING:
    # trio-typing's stubs (installed with libp2p) shadow trio's own annotations and
    # have no trio.TaskStatus; at run time this name is only ever a string.
    from trio_typing import TaskStatus

__all__ = ["NODE_METHODS", "EventSource", "serve"]

log = logging.getLogger("p2pmarket.rpc")

_BACKLOG: Final = 64
_RECEIVE: Final = 1 << 16
# How long a socket file may take to answer before we call its server alive: a
# daemon too busy to accept is still a daemon.
_PROBE_TIMEOUT: Final = 2.0


class EventSource(Protocol):
    """What the ``events`` method needs from the target (the Node offers it):
    ``async with target.events(**params) as stream: async for event in stream``,
    the params being whatever the client sent (the Node takes ``buffer``)."""

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...


async def serve(
    target: object,
    socket_path: str | os.PathLike[str],
    methods: Set[str] = NODE_METHODS,
    *,
    task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``target``'s ``methods`` on a Unix socket at ``socket_path`` until cancelled.

    Raises :class:`StoreLocked` if another server answers on that path, and
    :class:`P2PMarketError` if the socket cannot be created. A socket file left
    behind by a crashed daemon is replaced; the socket is removed on the way out.
    """
    path = Path(socket_path)
    sock, created = await _bind(path)
    try:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        handler = partial(_serve_connection, target=target, methods=frozenset(methods))
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, [listener])
            log.info("control socket listening on %s", path)
            task_status.started()
    finally:
        sock.close()
        _remove(path, created)
    raise AssertionError("serve_listeners returned")  # pragma: no cover


# ---------------------------------------------------------------------------
# The socket file


async def _bind(path: Path) -> tuple[socket.socket, os.stat_result]:
    address = codec.check_socket_path(path)
    await _clear_stale_socket(path, address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # bind() creates the file; the umask makes it 0600 from its first instant.
        # The umask is process-wide, so nothing may yield to other tasks in between:
        # this is a blocking bind on a stdlib socket, which on a local path is instant.
        previous = os.umask(0o177)
        try:
            sock.bind(address)
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)  # in case the platform ignores the umask for sockets
        created = os.stat(path)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise _already_running(path) from None
        raise P2PMarketError(f"cannot create the control socket {path}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock, created


async def _clear_stale_socket(path: Path, address: str) -> None:
    """Remove a socket file nobody listens on; refuse if a server answers."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise P2PMarketError(f"{path} exists and is not a socket: move it out of the way")
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            with trio.move_on_after(_PROBE_TIMEOUT):
                await probe.connect(address)
        except ConnectionRefusedError:
            # What a crashed daemon leaves behind.
            log.info("removing the stale control socket %s", path)
            path.unlink(missing_ok=True)
            return
        except FileNotFoundError:
            return
        except BlockingIOError:  # its backlog is full: it is alive
            pass
        except OSError as exc:
            raise P2PMarketError(
                f"cannot check the control socket {path}: {exc.strerror}"
            ) from None
    raise _already_running(path)


def _already_running(path: Path) -> StoreLocked:
    return StoreLocked(
        f"another p2pmarket daemon is serving {path}: stop it first, or use another --home"
    )


def _remove(path: Path, created: os.stat_result) -> None:
    """Unlink the socket file if it is still the one we made."""
    try:
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) == (created.st_dev, created.st_ino):
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove the control socket %s: %s", path, exc.strerror)


# ---------------------------------------------------------------------------
# Connections


class _FrameReader:
    """Whole frames from a stream, which delivers bytes in arbitrary pieces."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @property
    def buffered(self) -> bool:
        return bool(self._buffer)

    async def next_frame(self) -> bytes | None:
        """The next frame's body; None when the client closed between frames."""
        if not await self._fill(codec.HEADER.size):
            if self._buffer:
                raise ProtocolError("the connection closed in the middle of a frame header")
            return None
        length = codec.body_length(self._take(codec.HEADER.size))
        if not await self._fill(length):
            raise ProtocolError("the connection closed in the middle of a frame")
        return self._take(length)

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some(_RECEIVE)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


async def _serve_connection(
    stream: trio.SocketStream, *, target: object, methods: frozenset[str]
) -> None:
    # serve_listeners lets a handler's exception crash the whole server: nothing
    # but cancellation may leave this function.
    try:
        async with stream:
            await _Connection(stream, target, methods).run()
    except Exception as exc:
        if _client_went_away(exc):
            log.debug("a control client went away before its answer")
        else:
            log.exception("control connection failed")


_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


def _client_went_away(exc: Exception) -> bool:
    """True if ``exc`` (or every exception in the group) says the client hung up."""
    if isinstance(exc, ExceptionGroup):
        return exc.split(_GONE)[1] is None
    return isinstance(exc, _GONE)


class _Connection:
    def __init__(self, stream: trio.SocketStream, target: object, methods: frozenset[str]) -> None:
        self._stream = stream
        self._reader = _FrameReader(stream)
        self._target = target
        self._methods = methods

    async def run(self) -> None:
        while True:
            try:
                body = await self._reader.next_frame()
                if body is None:
                    return
                request = codec.parse_request(codec.unpack(body, typed=False))
            except ProtocolError as exc:
                log.warning("closing a control connection: %s", exc)
                await self._send(codec.error_document(None, ProtocolError(f"bad request: {exc}")))
                return
            if request.method == "events" and "events" in self._methods:
                await self._stream_events(request)
                return
            await self._stream.send_all(await self._answer(request))

    async def _send(self, doc: dict[str, object]) -> None:
        await self._stream.send_all(codec.frame(codec.pack(doc)))

    async def _answer(self, request: codec.Request) -> bytes:
        method, params = request.method, request.params
        try:
            result = await _call(self._target, method, params, self._methods)
        except P2PMarketError as exc:
            return _framed(codec.error_document(request.id, exc))
        except Exception as exc:
            log.exception("control method %s failed", method)
            return _framed(codec.error_document(request.id, _internal(method, exc)))
        try:
            return codec.frame(codec.pack({"id": request.id, "result": result}))
        except ProtocolError as exc:
            log.error("cannot send the result of %s: %s", method, exc)
            return _framed(codec.error_document(request.id, _internal(method, exc)))

    async def _stream_events(self, request: codec.Request) -> None:
        """Send every event until the client closes its end (or sends anything:
        a stream carries nothing else) or the target's stream ends."""
        request_id = request.id
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_when_client_closes, nursery.cancel_scope)
            try:
                subscribe = cast(
                    Callable[..., AbstractAsyncContextManager[AsyncIterator[Event]]],
                    _method(self._target, "events", request.params, self._methods),
                )
                async with subscribe(**request.params) as events:
                    async for event in events:
                        await self._send({"id": request_id, "event": event})
                await self._send({"id": request_id, "result": None})
            except P2PMarketError as exc:
                await self._send(codec.error_document(request_id, exc))
            except _GONE:
                log.debug("an event subscriber went away")
            except Exception as exc:
                log.exception("the event stream failed")
                await self._send(codec.error_document(request_id, _internal("events", exc)))
            nursery.cancel_scope.cancel()

    async def _cancel_when_client_closes(self, scope: trio.CancelScope) -> None:
        if not self._reader.buffered:
            with suppress(*_GONE):
                await self._stream.receive_some(1)
        scope.cancel()


def _method(
    target: object, method: str, params: dict[str, object], allowed: frozenset[str]
) -> Callable[..., object]:
    """``target``'s ``method``, if it is allowed and takes ``params``."""
    function = getattr(target, method, None) if method in allowed else None
    if not callable(function):
        raise P2PMarketError(
            f"the daemon has no method {method!r}: are the daemon and this program "
            "the same release?"
        )
    try:
        inspect.signature(function).bind(**params)
    except TypeError as exc:
        raise P2PMarketError(f"bad parameters for {method}: {exc}") from None
    return cast(Callable[..., object], function)


async def _call(
    target: object, method: str, params: dict[str, object], allowed: frozenset[str]
) -> object:
    result = _method(target, method, params, allowed)(**params)
    if inspect.isawaitable(result):
        result = await result
    return result


def _framed(doc: dict[str, object]) -> bytes:
    return codec.frame(codec.pack(doc))


def _internal(method: str, exc: BaseException) -> P2PMarketError:
    return P2PMarketError(f"internal error in {method}: {type(exc).__name__}: {exc}")
