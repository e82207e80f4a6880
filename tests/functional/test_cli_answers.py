"""What the CLI answers when the user typed something odd, or pressed Ctrl-C:
one true line, in the user's words, and never a traceback (from us or from the
signature-checking worker process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pmarket.exchange import write_export
from tests.factories import signed_listing
from tests.functional.daemon_harness import (
    SCRIPT,
    Daemons,
    _env,
    cli,
    one_error_line,
    wait_until,
)


@pytest.fixture(scope="module")
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    yield group
    assert group.close() == []


@pytest.fixture(scope="module")
def home(daemons: Daemons) -> Path:
    return daemons.new_home("answers")


LISTING = ("listing", "create", "--price", "1000", "--category", "other")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            (*LISTING, "--title", "Bad\udcff\udcfe"),
            "--title is not valid UTF-8 text: 'Bad\\xff\\xfe'",
        ),
        ((*LISTING, "--title", "ok", "--tag", "a", "--tag", "\udce9"), "--tag is not valid UTF-8"),
        (("search", "sepeda\udcff"), "WORDS is not valid UTF-8 text: 'sepeda\\xff'"),
        (("msg", "send", "12D3KooW", "hal\udcffo"), "TEXT is not valid UTF-8"),
    ],
    ids=["title", "tag", "search-words", "message"],
)
def test_text_that_is_not_utf8_is_named_and_shown_as_typed(
    home: Path, args: tuple[str, ...], named: str
) -> None:
    result = cli(home, *args)  # surrogates go out as the raw bytes \xff \xfe

    assert result.returncode == 1
    assert named in one_error_line(result)


def test_an_unknown_listing_id_is_quoted_as_typed(home: Path) -> None:
    typed = "z" * 26

    for args in (("listing", "show", typed), ("trade", "offer", typed)):
        result = cli(home, *args)
        assert result.returncode == 1
        assert f"'{typed}' is not a listing id" in one_error_line(result)


def test_stop_without_a_daemon_says_none_is_running(home: Path) -> None:
    result = cli(home, "stop")

    assert result.returncode == 1
    line = one_error_line(result)
    assert "no daemon is running" in line and "nothing to stop" in line
    assert "start it" not in line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--title", "ok", "--category", "Not A Category"), "--category: "),
        (("--title", "x" * 141, "--category", "other"), "--title: "),
        (("--title", "ok", "--category", "other", "--description", "\x07"), "--description: "),
    ],
)
def test_record_errors_name_the_option_the_user_typed(
    home: Path, args: tuple[str, ...], option: str
) -> None:
    result = cli(home, "listing", "create", "--price", "1", *args)

    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"error: {option}")
    assert "listing." not in line


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as found:
        return [int(child) for child in found.read().split()]


def test_ctrl_c_during_an_import_is_one_line_from_every_process(
    daemons: Daemons, tmp_path: Path
) -> None:
    home = daemons.new_home("import")
    # One record many times over: each copy is decoded and its signature checked,
    # which is what the worker process does; large enough that it starts.
    export = tmp_path / "many.p2pm"
    listing = signed_listing(created=int(time.time()) - 60)
    write_export(export, [listing.encoded] * 60_000)
    importing = subprocess.Popen(
        [str(SCRIPT), "--home", str(home), "listing", "import", str(export)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,  # its own process group, as a terminal's job
    )
    try:
        wait_until(lambda: _children(importing.pid), "the verify worker started", timeout=30)
        os.killpg(importing.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
        out, err = importing.communicate(timeout=20)
    finally:
        if importing.poll() is None:
            importing.kill()
            importing.wait()

    assert importing.returncode == 130
    assert err == "error: interrupted\n"
    assert out == ""


def test_the_verify_worker_leaves_quietly_when_its_parent_is_gone() -> None:
    """What the worker sees after kill -9 of the daemon that started it: nobody
    reads its answers. It must not write a traceback into the daemon's log."""
    import msgpack

    worker = subprocess.Popen(
        [sys.executable, "-m", "p2pmarket.crypto.verify_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None and worker.stderr is not None
    worker.stdout.close()  # the reader is gone
    listing = signed_listing()
    batch = [(listing.seller, listing.encoded, listing.signature)]
    try:
        worker.stdin.write(msgpack.packb(batch, use_bin_type=True))
        worker.stdin.flush()
        time.sleep(0.2)
        worker.stdin.close()
    except BrokenPipeError:
        pass
    status = worker.wait(timeout=10)
    err = worker.stderr.read().decode()
    worker.stderr.close()

    assert "Traceback" not in err, err
    assert status == 0
