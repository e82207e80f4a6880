"""`connect` as a user relies on it: what it reports as done is on disk when it
returns, and it never says "connected" for an address it did not reach."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from daemon_harness import Daemons, cli, cli_json, closed_port, one_error_line, wait_until

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


def test_a_peer_connected_just_before_a_crash_is_redialled_after_restart(
    daemons: Daemons,
) -> None:
    a, b = daemons.start_all(2)
    assert cli(b.home, "connect", a.address).returncode == 0
    # Killed at once: before issue 13 the peer book was written only by the
    # redial loop, seconds later, and the peer was forgotten.
    assert b.crash() == -signal.SIGKILL

    b = daemons.start(b.home)
    wait_until(lambda: a.peer_id in peer_ids(b.home), "B redials A after the restart")


def test_connect_with_a_wrong_address_to_a_connected_peer_says_it_failed(
    daemons: Daemons,
) -> None:
    a, b = daemons.start_all(2)
    assert cli(b.home, "connect", a.address).returncode == 0
    wrong = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{a.peer_id}"

    result = cli(b.home, "connect", wrong)

    assert result.returncode == 1
    assert "could not connect" in one_error_line(result)
    assert a.peer_id in peer_ids(b.home)  # the good connection is untouched
    assert cli(b.home, "connect", a.address).returncode == 0  # the right one still works
