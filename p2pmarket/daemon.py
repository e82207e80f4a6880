"""``p2pmarket daemon``: a Node on the network, with its control socket.

The daemon owns the home while it runs: ``<home>/daemon.lock`` says so to a second
daemon and to CLI commands arriving while it starts (see daemonlock), and a
per-user lock keyed by the peer id keeps one identity from running in two
daemons on this machine. CLI commands reach it through ``<home>/node.sock``,
which only the user can open. SIGINT and SIGTERM stop it cleanly: the control
socket is removed, the network is left (peers see the connections close), the
peer book is saved and the store is closed.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import trio

from p2pmarket.daemonlock import DaemonLocks
from p2pmarket.errors import P2PMarketError, StoreLocked
from p2pmarket.home import Home, default_home
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.ports import check_listen_ports
from p2pmarket.node import Node, Passphrase

log = logging.getLogger("p2pmarket.daemon")

# How long a starting daemon waits for a CLI command that holds the store.
_STORE_WAIT: Final = 5.0


async def run_daemon(
    home: Path | None,
    config: NetworkConfig | None,
    passphrase: Passphrase,
    *,
    ready: Callable[[Node], None] = lambda node: None,
) -> None:
    """Run until a signal or a ``stop`` call; ``ready`` is called once serving.

    Before anything starts: the home must be the user's alone, no other daemon may
    hold it or run the same identity on this machine, and no other program may
    listen on a fixed listen port. Each is refused in one line."""
    from p2pmarket.rpc.server import NODE_METHODS, serve

    paths = Home(home.expanduser() if home is not None else default_home())
    paths.require()  # a missing or unsafe home fails before any file is made in it
    locks = DaemonLocks(paths.root)
    node: Node | None = None
    try:
        locks.take_home()
        node = await _open_node(paths.root, passphrase)
        locks.take_identity(node.peer_id)
        check_listen_ports((config or node.network_config()).listen)
        node.unlock()  # fail now, not at the first write, on a wrong passphrase
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, node, nursery.cancel_scope)

            async def network(task_status: Any) -> None:
                assert node is not None
                await node.run(config, task_status=task_status)
                # node.stop() was called. Close the store before the control socket
                # goes away: a client that sees the socket gone may open the home.
                node.close()
                nursery.cancel_scope.cancel()

            await nursery.start(network)
            await nursery.start(serve, node, node.home.control_socket, NODE_METHODS)
            ready(node)
    except BaseExceptionGroup as group:
        # Trio wraps what fails while the daemon starts (a bad --listen, a port in
        # use, a socket path too long) in exception groups; a lone P2PMarketError is
        # an ordinary start-up failure, which the CLI shows in one line.
        cause = _lone_error(group)
        if cause is None:
            raise
        raise cause from None
    finally:
        if node is not None:
            node.close()
        locks.release()  # after the store is closed: see daemonlock


async def _open_node(root: Path, passphrase: Passphrase) -> Node:
    """Open the home's node; a short CLI command holding the store is waited for
    (a few seconds), as the command would wait for a starting daemon."""
    deadline = trio.current_time() + _STORE_WAIT
    while True:
        try:
            return Node.open(root, passphrase=passphrase, resident=True)
        except StoreLocked:
            if trio.current_time() > deadline:
                raise
        await trio.sleep(0.1)


def _lone_error(group: BaseExceptionGroup[BaseException]) -> P2PMarketError | None:
    """The one P2PMarketError in ``group`` (however nested), if that is all it holds."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1 and isinstance(leaves[0], P2PMarketError):
        return leaves[0]
    return None


async def _stop_on_signal(node: Node, scope: trio.CancelScope) -> None:
    """The first SIGINT/SIGTERM stops the node cleanly (peers are told); if that
    takes over 5 s, or a second signal comes, everything is cancelled."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            node.stop()
            break
        with trio.move_on_after(5):
            async for _ in signals:
                break
        scope.cancel()
