"""The locks a daemon holds while it lives: one per home, one per identity.

* ``<home>/daemon.lock`` says "a daemon owns this home", from before it opens the
  store until after it has closed it. A CLI command that finds the store taken
  but no control socket yet asks this lock whether a daemon is starting (then it
  waits for the socket) or another command holds the store (then it fails).
* ``<runtime dir>/<peer id>.lock`` says "this identity is online on this
  machine". Two daemons with one key (two homes, a copied key file) would fight
  over one peer id: peers, the DHT and mailboxes would see one node flicker
  between two addresses and two caches. The second one is refused instead.

Both are ``flock`` locks, so the kernel drops them when the process dies, even by
``kill -9``: a stale lock file means nothing. The lock files hold the pid and home
of their daemon, for the error message only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Final

from p2pmarket.errors import ConfigError, StoreLocked

__all__ = ["DaemonLocks", "IdentityInUse", "daemon_alive", "runtime_dir"]

HOME_LOCK: Final = "daemon.lock"
# A CLI probing the home lock holds it (shared) for a moment; the daemon retries
# that long before it believes another daemon has it.
_RETRY_FOR: Final = 0.5


def _warn(message: str, *args: object) -> None:
    """Log a warning to the daemon's logger. logging is imported here, not with the
    module: every CLI command loads this module, and only a starting daemon warns."""
    import logging

    logging.getLogger("p2pmarket.daemon").warning(message, *args)


class IdentityInUse(StoreLocked):
    """Another daemon on this machine runs the same identity."""


def runtime_dir() -> Path:
    """The per-user folder for identity locks: ``$XDG_RUNTIME_DIR/p2pmarket`` when
    the session has one, else ``/tmp/p2pmarket-<uid>``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        return Path(base) / "p2pmarket"
    return Path("/tmp") / f"p2pmarket-{os.geteuid()}"


def _open_lock(path: Path, *, create: bool) -> int:
    flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    return os.open(path, flags, 0o600)


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _holder(path: Path) -> str:
    """What the lock file says about its holder: ``pid N, home H``."""
    try:
        pid, _, home = path.read_text(encoding="utf-8", errors="replace").partition("\n")
    except OSError:
        return "pid unknown"
    return f"pid {pid.strip() or '?'}, home {home.strip() or '?'}"


def daemon_alive(home_root: Path) -> bool:
    """True while a daemon holds this home (starting, running or stopping)."""
    try:
        fd = os.open(home_root / HOME_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


class DaemonLocks:
    """The home lock at :meth:`take_home`, the identity lock at :meth:`take_identity`;
    both released by :meth:`release` (or by the process dying)."""

    def __init__(self, home_root: Path) -> None:
        self._home = home_root
        self._fds: list[int] = []

    def take_home(self) -> None:
        """Own the home, or raise StoreLocked naming the daemon that does."""
        path = self._home / HOME_LOCK
        try:
            fd = _open_lock(path, create=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
        if not self._lock(fd):
            os.close(fd)
            raise StoreLocked(
                f"the home {self._home} is in use by another p2pmarket daemon "
                f"({_holder(path)}): stop it first (`p2pmarket stop`), or use another --home"
            )
        self._note(fd)

    def take_identity(self, peer_id: str) -> None:
        """Own ``peer_id`` on this machine, or raise IdentityInUse. A runtime folder
        others could tamper with is skipped with a warning (refusing would let any
        local user keep the daemon from starting)."""
        folder = runtime_dir()
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(folder)
        except OSError as exc:
            _warn("cannot check for this identity in other daemons: %s", exc.strerror)
            return
        if (
            not stat.S_ISDIR(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            _warn(
                "not checking for this identity in other daemons: %s is not a private "
                "folder of yours",
                folder,
            )
            return
        path = folder / f"{peer_id}.lock"
        try:
            fd = _open_lock(path, create=True)
        except OSError as exc:
            _warn("cannot check for this identity in other daemons: %s", exc.strerror)
            return
        if not self._lock(fd):
            os.close(fd)
            raise IdentityInUse(
                f"the identity {peer_id} is already online in another daemon on this "
                f"machine ({_holder(path)}): two nodes with one key confuse every peer; "
                "stop that daemon first, or give this home its own identity"
            )
        self._note(fd)

    def release(self) -> None:
        """Drop both locks. Idempotent."""
        while self._fds:
            os.close(self._fds.pop())  # closing the only descriptor unlocks

    def _lock(self, fd: int) -> bool:
        deadline = time.monotonic() + _RETRY_FOR
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _note(self, fd: int) -> None:
        """Write who holds the lock (for the other side's error message)."""
        self._fds.append(fd)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self._home}\n".encode(errors="replace"), 0)
