"""Starting a daemon: commands during its start-up, and what it refuses to start on.

* For a second or more a starting daemon holds the store but its control socket
  does not answer yet; a command then waits for it instead of calling the store
  "in use".
* What would run unnoticed is refused before the node starts: a TCP port another
  daemon listens on (py-libp2p binds with SO_REUSEPORT, so the kernel would split
  the peers between the two), and an identity another daemon runs.
* A read-only home is called read-only, not "in use".
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.daemon_harness import (
    LOOPBACK,
    SCRIPT,
    Daemon,
    Daemons,
    cli,
    cli_json,
    closed_port,
    create_listing,
    one_error_line,
    wait_until,
)


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    yield group
    assert group.close() == []


def _store_locked(home: Path) -> bool:
    """Whether some process holds the LevelDB lock of ``home``'s store (Linux)."""
    inode = os.stat(home / "store" / "LOCK").st_ino
    with open("/proc/locks", encoding="ascii") as locks:
        return any(f":{inode} " in line for line in locks)


def test_a_command_during_the_daemons_start_up_waits_for_it(daemons: Daemons) -> None:
    home = daemons.new_home()
    create_listing(home, "Sepeda lipat")  # the store exists, so its lock can be watched
    starting = Daemon(home, daemons.root / "starting.log")
    daemons.started.append(starting)
    wait_until(lambda: _store_locked(home), "the daemon took the store", timeout=30)
    assert not starting.socket.exists(), "the start-up was over before the test could look"

    during = cli(home, "status", "--json")

    assert during.returncode == 0, during.stderr
    assert "in use" not in during.stderr
    assert '"online": true' in during.stdout  # it was answered by the daemon


def test_a_second_daemon_on_a_port_in_use_is_refused(daemons: Daemons) -> None:
    port = closed_port()
    listen = ("--listen", f"/ip4/127.0.0.1/tcp/{port}", "--no-mdns")
    first = Daemon(daemons.new_home(), daemons.root / "first.log", listen)
    daemons.started.append(first)
    first.wait_ready()

    second = daemons.refused(daemons.new_home(), *listen)

    assert second.returncode == 1
    line = one_error_line(second)
    assert f"TCP port {port} on 127.0.0.1 is already in use" in line
    assert first.process.poll() is None
    assert cli_json(first.home, "status")["online"] is True


def test_one_identity_in_two_daemons_is_refused(daemons: Daemons) -> None:
    first = daemons.start()
    twin = daemons.root / "twin"
    twin.mkdir(mode=0o700)
    shutil.copy2(first.home / "identity.key", twin / "identity.key")

    second = daemons.refused(twin, *LOOPBACK)

    assert second.returncode == 1
    line = one_error_line(second)
    assert f"the identity {first.peer_id} is already online in another daemon" in line
    assert str(first.home) in line
    # Once the first has stopped, the same key may run from the other home.
    assert first.stop() == 0
    assert daemons.start(twin).peer_id == first.peer_id


def _read_only(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI on ``home`` bind-mounted read-only in a private mount namespace
    (root can write through any mode bits, not through a read-only mount)."""
    command = [str(SCRIPT), "--home", str(home), *args]
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(home), *command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def test_a_read_only_home_is_called_read_only_not_in_use(daemons: Daemons) -> None:
    home = daemons.new_home()
    create_listing(home, "Sepeda lipat")
    if shutil.which("unshare") is None or _read_only(home, "id").returncode != 0:
        pytest.skip("needs root and mount namespaces (unshare -m)")

    result = _read_only(home, "search", "sepeda")

    assert result.returncode == 1
    line = one_error_line(result)
    assert "read-only file system" in line
    assert "in use" not in line
