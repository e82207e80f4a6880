"""`invite` and `join` as a newcomer uses them: the line from one daemon joins
another to it, for good; a bad line or an absent inviter is one clear line."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from daemon_harness import (
    NOT_RUNNING,
    SOME_PEER_ID,
    Daemons,
    cli,
    cli_json,
    closed_port,
    one_error_line,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    try:
        yield group
    finally:
        problems = group.close()
    assert not problems, "; ".join(problems)


def peer_ids(home: object) -> set[str]:
    return {p["peer_id"] for p in cli_json(home, "peers")}  # type: ignore[arg-type]


def invite_of(home: object) -> str:
    result = cli(home, "invite")  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # piped: no QR code, the line alone
    assert lines[0].startswith("p2pmarket:")
    return lines[0]


def test_a_joined_peer_is_connected_and_redialled_after_a_restart(daemons: Daemons) -> None:
    a, b = daemons.start_all(2)
    alone = cli(b.home, "status")
    assert "p2pmarket join" in alone.stdout  # the no-peer status line says how to join

    result = cli(b.home, "join", invite_of(a.home))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"joined {a.peer_id}\n"
    assert a.peer_id in peer_ids(b.home)
    assert cli_json(b.home, "status")["known_peers"] == 1
    assert b.crash() == -signal.SIGKILL  # the book was on disk when `join` answered
    b = daemons.start(b.home)
    wait_until(lambda: a.peer_id in peer_ids(b.home), "B redials A after the restart")


def test_a_malformed_invite_is_one_line_and_exit_2(daemons: Daemons) -> None:
    (a,) = daemons.start_all(1)
    line = invite_of(a.home)
    for bad in (line[:-3], line[:25] + ("a" if line[25] != "a" else "b") + line[26:], "hello"):
        result = cli(a.home, "join", bad)
        assert result.returncode == 2
        assert "invite" in one_error_line(result)


def test_the_invite_of_a_node_that_is_down_is_remembered(daemons: Daemons) -> None:
    a, b = daemons.start_all(2)
    line = invite_of(a.home)
    assert a.stop() == 0

    result = cli(b.home, "join", line)

    assert result.returncode == 1
    message = one_error_line(result)
    assert f"could not reach {a.peer_id}" in message and "remembered" in message
    status = cli(b.home, "status")
    assert "0 connected; 1 known, being retried" in status.stdout
    # Back on another port (the harness picks a free one): a fresh invite joins,
    # and replaces the stale address in B's book.
    a = daemons.start(a.home)
    assert cli(b.home, "join", invite_of(a.home)).returncode == 0
    assert cli_json(b.home, "status")["known_peers"] == 1


def test_invite_needs_the_daemon(daemons: Daemons) -> None:
    home = daemons.new_home()
    result = cli(home, "invite")
    assert result.returncode == 1
    assert NOT_RUNNING in one_error_line(result)


def test_a_bad_bootstrap_address_in_config_toml_is_one_line_before_starting(
    daemons: Daemons,
) -> None:
    home = daemons.new_home()
    (home / "config.toml").write_text('bootstrap = ["/ip4/127.0.0.1/tcp/1/p2p/nobody"]\n')
    result = daemons.refused(home)
    assert result.returncode == 1
    assert "is not a peer address" in one_error_line(result)


def test_an_unreachable_bootstrap_peer_leaves_the_daemon_running(daemons: Daemons) -> None:
    home = daemons.new_home()
    nobody = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{SOME_PEER_ID}"
    (home / "config.toml").write_text(f'bootstrap = ["{nobody}"]\n')
    daemon = daemons.start(home)
    status = cli_json(daemon.home, "status")
    assert status["online"] and status["peers"] == 0
    assert status["known_peers"] == 1  # in the peer book, retried with backoff
