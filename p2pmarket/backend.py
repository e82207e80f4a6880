"""What a CLI command talks to: the home's daemon, or the home's store itself.

A starting daemon holds the store for a few seconds (longer while it waits for
its passphrase) before its control socket answers. A command arriving then
would find no socket and a locked store; instead it sees the daemon's home lock
(:mod:`p2pmarket.daemonlock`) and waits for the socket, saying so on stderr if
that takes more than a moment. A store held by something else (another command,
an embedding program) is still reported at once.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from p2pmarket.daemonlock import daemon_alive
from p2pmarket.errors import P2PMarketError, StoreLocked

if TYPE_CHECKING:
    from p2pmarket.node import Node, Passphrase
    from p2pmarket.rpc.client import Client

__all__ = ["STARTING_NOTE", "START_WAIT", "open_client", "open_client_or_node"]

# The longest a command waits for a starting daemon's socket.
START_WAIT: Final = 60.0
# Said once a command has waited this long.
_NOTE_AFTER: Final = 1.0
STARTING_NOTE: Final = "the daemon is starting; waiting for it to answer…"
_POLL: Final = 0.1


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _Waiting:
    """The clock and the one note of a wait for a starting daemon."""

    def __init__(self, home: Path, wait: float, note: Callable[[str], None]) -> None:
        self._home = home
        self._began = time.monotonic()
        self._wait = wait
        self._note = note
        self._noted = False

    def tick(self) -> None:
        """Sleep a little; say once that the daemon is starting; fail past the wait."""
        waited = time.monotonic() - self._began
        if waited > self._wait:
            raise P2PMarketError(
                f"the daemon of {self._home} is starting but has not answered for "
                f"{self._wait:g} s (is it waiting for its passphrase?): try again, "
                "or stop it with Ctrl-C in its terminal"
            )
        if waited > _NOTE_AFTER and not self._noted:
            self._noted = True
            self._note(STARTING_NOTE)
        time.sleep(_POLL)


def _try_client(socket_path: Path) -> Client | None:
    from p2pmarket.rpc.client import Client, DaemonNotRunning

    if not os.path.lexists(socket_path):  # cheap, and right for any path length
        return None
    try:
        return Client.open(socket_path)
    except DaemonNotRunning:
        return None


def open_client(
    home: Path, *, wait: float = START_WAIT, note: Callable[[str], None] = _say
) -> Client | None:
    """A client of the home's daemon, waiting while it starts; None if none runs."""
    waiting: _Waiting | None = None
    while True:
        client = _try_client(home / "node.sock")
        if client is not None:
            return client
        if not daemon_alive(home):
            return None
        waiting = waiting or _Waiting(home, wait, note)
        waiting.tick()


def open_client_or_node(
    home: Path,
    passphrase: Passphrase,
    *,
    wait: float = START_WAIT,
    note: Callable[[str], None] = _say,
) -> Client | Node:
    """The running daemon if there is one (waiting while it starts), else the
    home's store opened here."""
    waiting: _Waiting | None = None
    while True:
        client = _try_client(home / "node.sock")
        if client is not None:
            return client
        from p2pmarket.node import Node  # only now: a daemon's client needs no store

        try:
            return Node.open(home, passphrase=passphrase)
        except StoreLocked:
            if not daemon_alive(home):
                raise
        waiting = waiting or _Waiting(home, wait, note)
        waiting.tick()
