"""The installed ``p2pmarket`` console script, run as a real process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "p2pmarket"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PMARKET_")}
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal: nothing may wait for a prompt
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the package (make test does)"


def test_init_create_and_search_through_the_console_script(tmp_path: Path) -> None:
    home = str(tmp_path / "home")

    init = _run("--home", home, "init", "--no-passphrase")
    assert init.returncode == 0, init.stderr
    create = _run(
        "--home",
        home,
        "listing",
        "create",
        "--title",
        "Sepeda lipat",
        "--price",
        "150000",
        "--category",
        "vehicles/bicycles",
        "--location",
        "Sleman",
    )
    assert create.returncode == 0, create.stderr
    search = _run("--home", home, "search", "sepe", "--location", "sleman", "--json")

    assert search.returncode == 0, search.stderr
    results = json.loads(search.stdout)["results"]
    assert [r["id"] for r in results] == [create.stdout.strip()]
    assert results[0]["price"]["text"] == "Rp 150.000"


def test_an_error_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    result = _run("--home", str(tmp_path / "nowhere"), "search", "sepeda")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: no p2pmarket home")
    assert result.stderr.count("\n") == 1


def test_no_arguments_prints_help_and_succeeds() -> None:
    result = _run()

    assert result.returncode == 0
    assert "listing" in result.stdout
    assert "search" in result.stdout
