"""Other users of this machine: they may not steer the owner's node.

Whoever can write the home, or a folder above it, could swap the key or the
control socket; a ``node.sock`` that is a symlink or another user's socket would
send the owner's commands to someone else's daemon. The tests run as root, so
"another user" is a mode bit or a uid given with chown, not a second login.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.daemon_harness import (
    Daemon,
    Daemons,
    cli,
    cli_json,
    create_listing,
    one_error_line,
)

OTHER_UID = 4242  # nobody in particular: no such user is needed to own a file


@pytest.fixture(scope="module")
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    yield group
    assert group.close() == []


@pytest.fixture(scope="module")
def other(daemons: Daemons) -> Daemon:
    """A daemon the owner must never reach by accident: somebody else's."""
    return daemons.start(daemons.new_home("other"))


@pytest.mark.parametrize(
    ("unsafe", "mode"),
    [("home", 0o777), ("home", 0o720), ("parent", 0o777), ("parent", 0o775)],
    ids=["home-world-writable", "home-group-writable", "parent-world-writable", "parent-g+w"],
)
def test_a_home_others_can_write_is_refused_with_the_one_line_fix(
    daemons: Daemons, unsafe: str, mode: int
) -> None:
    parent = daemons.root / f"{unsafe}-{mode:o}"
    parent.mkdir(mode=0o755)
    home = parent / "home"
    cli(home, "init", "--no-passphrase")
    target = home if unsafe == "home" else parent
    os.chmod(target, mode)

    result = cli(home, "search", "sepeda")

    assert result.returncode == 1
    assert f"run `chmod go-w {target}`" in one_error_line(result)


def test_the_daemon_refuses_an_unsafe_home_before_it_starts(daemons: Daemons) -> None:
    home = daemons.new_home("open-home")
    os.chmod(home, 0o777)

    result = daemons.refused(home)

    assert result.returncode == 1
    assert f"chmod go-w {home}" in one_error_line(result)
    assert not (home / "store").exists()


def test_a_sticky_world_writable_folder_on_the_way_is_fine(daemons: Daemons) -> None:
    # Like /tmp: in a sticky folder only an entry's owner may rename or remove it.
    shared = daemons.root / "sticky"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    home = shared / "home"
    assert cli(home, "init", "--no-passphrase").returncode == 0

    assert create_listing(home, "Sepeda lipat")


def test_a_key_file_others_can_write_is_refused(daemons: Daemons) -> None:
    home = daemons.new_home("open-key")
    os.chmod(home / "identity.key", 0o622)

    result = cli(home, "search", "sepeda")

    assert result.returncode == 1
    assert f"chmod go-w {home / 'identity.key'}" in one_error_line(result)


def test_the_cli_does_not_follow_a_symlinked_control_socket(
    daemons: Daemons, other: Daemon
) -> None:
    home = daemons.new_home("victim")
    (home / "node.sock").symlink_to(other.socket)

    result = cli(home, "status", "--json")

    assert result.returncode == 1
    line = one_error_line(result)
    assert "is a symlink" in line and other.peer_id not in line


def test_the_cli_does_not_talk_to_a_socket_another_user_made(
    daemons: Daemons, other: Daemon
) -> None:
    home = daemons.new_home("victim2")
    # The same socket inode, as another user would have bound it: a hard link
    # reaches the other daemon just as the symlink would.
    os.link(other.socket, home / "node.sock")
    os.chown(home / "node.sock", OTHER_UID, -1)
    try:
        result = cli(home, "listing", "create", "--title", "x", "--price", "1", "--category", "x")
    finally:
        os.chown(home / "node.sock", os.geteuid(), -1)  # the other daemon's own again

    assert result.returncode == 1
    assert f"made by user {OTHER_UID}, not by you" in one_error_line(result)
    assert cli_json(other.home, "listing", "mine") == []


def _modes(store: Path) -> dict[str, str]:
    return {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in [store, *store.iterdir()]}


def test_store_files_are_only_for_their_user_whatever_the_umask(daemons: Daemons) -> None:
    home = daemons.new_home("modes")
    previous = os.umask(0o022)  # what the CLI and daemon inherit from a usual shell
    try:
        create_listing(home, "Sepeda lipat")
        daemon = daemons.start(home)
        create_listing(home, "Sepeda gunung")
        assert daemon.stop() == 0
    finally:
        os.umask(previous)
    store = home / "store"

    modes = _modes(store)

    assert modes.pop("store") == "0o700"
    assert set(modes.values()) == {"0o600"}, modes


def test_a_store_made_readable_by_all_is_made_private_again(daemons: Daemons) -> None:
    home = daemons.new_home("old-modes")
    create_listing(home, "Sepeda lipat")
    store = home / "store"
    os.chmod(store, 0o755)
    for path in store.iterdir():
        os.chmod(path, 0o644)

    assert cli(home, "search", "sepeda").returncode == 0

    modes = _modes(store)
    assert modes.pop("store") == "0o700"
    assert set(modes.values()) == {"0o600"}, modes
