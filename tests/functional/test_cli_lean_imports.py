"""A command through a running daemon imports only what it needs (issue 15: a
command in <= 150 ms, most of which was start-up).

Each probe runs one real command against a real daemon in a fresh interpreter and
lists what it loaded. The daemon holds the store and the network, so its client
must load neither libp2p, trio, libsodium, the node nor the listing store; and
typer builds only the command that was asked for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.daemon_harness import Daemons, _env

# Modules (and packages) a client of the daemon must never load.
HEAVY = (
    "libp2p",
    "trio",
    "nacl",
    "rich",
    "textual",
    "p2pmarket.node",
    "p2pmarket.network.service",
    "p2pmarket.store.listings",
    "p2pmarket.ingest",
)

_PROBE = """
import json, sys
from p2pmarket.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = {heavy!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
sys.stdout.write("\\n" + json.dumps({{"code": code, "loaded": loaded}}) + "\\n")
"""


@pytest.fixture(scope="module")
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    yield group
    assert group.close() == []


@pytest.fixture(scope="module")
def home(daemons: Daemons) -> Path:
    home = daemons.new_home("lean")
    daemons.start(home)
    return home


def _probe(home: Path, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    doc = json.loads(result.stdout.splitlines()[-1])
    assert doc["code"] in (0, None), result.stderr
    loaded: list[str] = doc["loaded"]
    return loaded


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("search", "sepeda"),
        ("search", "sepeda", "--json"),
        ("listing", "create", "--title", "Sepeda", "--price", "150000", "--category", "vehicles"),
        ("peers",),
    ],
    ids=" ".join,
)
def test_a_command_through_the_daemon_loads_no_engine(home: Path, args: tuple[str, ...]) -> None:
    assert _probe(home, *args) == []


def test_the_probe_sees_an_engine_when_one_is_loaded(tmp_path: Path) -> None:
    """Without a daemon the command opens the store here: the node and the listing
    store are loaded, so the probe above can tell."""
    from p2pmarket.node import init_home

    home = tmp_path / "home"
    init_home(home, None)
    loaded = _probe(home, "search", "sepeda")
    assert "p2pmarket.node" in loaded
    assert "p2pmarket.store.listings" in loaded


def test_only_the_named_command_is_built() -> None:
    """typer reads the signature of every command it builds; a command line that
    names one builds that one, and help still lists them all."""
    import typer.main

    from p2pmarket.cli import _only_the_command, app

    def names(args: list[str]) -> set[str]:
        group = typer.main.get_command(_only_the_command(app, args))
        return set(getattr(group, "commands", {}))

    everything = names([])
    assert {"status", "search", "listing", "trade"} <= everything
    assert names(["--home", "status", "status"]) == {"status"}
    assert names(["--debug", "listing", "create", "--title", "x"]) == {"listing"}
    assert names(["--help"]) == everything
    assert names(["statu"]) == everything  # click's "No such command" still lists them
    listing = typer.main.get_command(_only_the_command(app, ["listing", "create"]))
    assert set(listing.commands["listing"].commands) == {"create"}  # type: ignore[attr-defined]
    listing = typer.main.get_command(_only_the_command(app, ["listing", "--help"]))
    assert "mine" in listing.commands["listing"].commands  # type: ignore[attr-defined]


def test_status_loads_neither_the_events_nor_the_store(home: Path) -> None:
    """``status`` reads a NodeStatus (p2pmarket.nodestatus): not the events, the
    records they carry, the message store nor LevelDB."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE.format(heavy=("p2pmarket.events", "p2pmarket.store", "plyvel")),
            "--home",
            str(home),
            "status",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == {"code": 0, "loaded": []}, result.stderr
