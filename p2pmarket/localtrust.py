"""Local trust: is the home ours alone, and is ``node.sock`` our own daemon's?

Whoever can write the home (or any folder on the way to it) can swap the key,
the store or the control socket, and so redirect the user's commands to a
daemon they run. So, like OpenSSH's ``StrictModes``, a home is refused unless
it and every folder above it is owned by the user (or root) and writable by no
one else. A world-writable folder with the sticky bit (``/tmp``) is allowed on
the way: in it only the owner of an entry may rename or remove it.

The control socket is checked with ``lstat`` before connecting: a socket file
owned by the user, not a symlink to somebody else's.

Each refusal is a :class:`ConfigError` whose message ends with the one-line fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from p2pmarket.errors import ConfigError

__all__ = ["check_home", "check_own_socket", "check_private_file"]

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def _uid() -> int:
    return os.geteuid()


def _owner_ok(st: os.stat_result, uid: int) -> bool:
    return st.st_uid in (uid, 0)


def _check_folder(path: Path, st: os.stat_result, uid: int, *, is_home: bool) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a folder: choose another --home")
    if not (st.st_uid == uid if is_home else _owner_ok(st, uid)):
        raise ConfigError(
            f"{path} belongs to user {st.st_uid}, not to you (user {uid}), so its owner "
            f"could take over this node: use a home of your own, or `chown {uid} {path}`"
        )
    writable = st.st_mode & _OTHERS_WRITE
    # Sticky folders (/tmp) are fine on the way, never as the home itself.
    if writable and (is_home or not st.st_mode & stat.S_ISVTX):
        raise ConfigError(
            f"{path} can be written by other users, who could replace this node's "
            f"key or control socket: run `chmod go-w {path}`"
        )


def _folders(path: Path) -> list[Path]:
    """``path`` and each folder above it, both as written and with symlinks resolved
    (a symlinked home is as safe as the folders on both routes to it)."""
    absolute = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    seen: dict[Path, None] = {}
    for route in (absolute, real):
        for folder in (route, *route.parents):
            seen.setdefault(folder, None)
    return list(seen)


def check_home(home: Path) -> None:
    """Refuse a home that anyone but the user (and root) can change.

    A home that does not exist yet is checked from its nearest existing folder up
    (``init`` will create it 0700). Raises :class:`ConfigError` with the fix."""
    uid = _uid()
    if not _encodable(home):
        raise ConfigError(f"the home path {_shown(home)} is not valid UTF-8: choose another")
    home_real = Path(os.path.realpath(home))
    for folder in _folders(home):
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            continue  # not created yet: init makes it 0700
        except OSError as exc:
            raise ConfigError(f"cannot check {folder}: {exc.strerror}") from None
        is_home = folder == home_real or folder == Path(os.path.abspath(home))
        _check_folder(folder, st, uid, is_home=is_home)


def check_private_file(path: Path) -> None:
    """Refuse a file in the home (the key) that others may write or that is not ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    uid = _uid()
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{path} is a symlink: replace it with the file itself")
    if st.st_uid != uid:
        raise ConfigError(f"{path} belongs to user {st.st_uid}, not to you: `chown {uid} {path}`")
    if st.st_mode & _OTHERS_WRITE:
        raise ConfigError(f"{path} can be written by other users: run `chmod go-w {path}`")


def check_own_socket(path: Path) -> bool:
    """True if ``path`` is a socket file of ours; False if there is nothing there.

    Raises :class:`ConfigError` for anything else: a symlink (perhaps to another
    user's daemon), a file that is not a socket, or a socket another user made."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(f"cannot check the control socket {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(
            f"{path} is a symlink, not this node's control socket (someone may be "
            f"redirecting your commands): stop the daemon and `rm {path}`"
        )
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} is not a socket: move it out of the way (`rm {path}`)")
    uid = _uid()
    if st.st_uid != uid:
        raise ConfigError(
            f"{path} was made by user {st.st_uid}, not by you: it is not your daemon's; `rm {path}`"
        )
    return True


def _encodable(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: Path) -> str:
    """``path`` as the user typed it, undecodable bytes as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
