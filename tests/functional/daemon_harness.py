"""A harness for functional tests with real ``p2pmarket daemon`` processes.

Each daemon has its own home in a short folder under /tmp (a Unix socket path is
limited to ~107 bytes, and pytest's tmp_path is long), listens on 127.0.0.1 on a
port the kernel picks, and has mDNS off, so it meets only the peers a test
connects. :class:`Daemons` starts them and, on :meth:`Daemons.close`, stops every
one (SIGTERM, then SIGKILL after a timeout) and reports any that did not exit as
expected. The CLI is run as the installed console script, as a user would.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from p2pmarket.node import init_home

SCRIPT: Final = Path(sys.executable).parent / "p2pmarket"
# Loopback only, a port the kernel picks, no peers found behind the test's back.
LOOPBACK: Final = ("--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
# Two daemons importing libp2p at once on a busy 2-core machine can take several seconds.
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
# A first publish waits up to 5 s for a GossipSub mesh (heartbeat 1 s).
GOSSIP_TIMEOUT: Final = 15.0
NOT_RUNNING: Final = "daemon is not running"
# A well-formed peer id of nobody in particular.
SOME_PEER_ID: Final = "12D3KooWG9G9Dhiypj5htefESqkm1Cf9mH2cxia34tRgtcVGM2XY"

# ---------------------------------------------------------------------------
# Running the CLI


def _env() -> dict[str, str]:
    # No test may pick up the developer's own home or passphrase.
    # The stamp difficulty is the test network's (tests/conftest.py), not the
    # developer's: daemons and the records the tests make must agree on it.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("P2PMARKET_") or k == "P2PMARKET_STAMP_BITS"
    }


def cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``p2pmarket --home HOME ARGS…`` to completion, as a user would."""
    return subprocess.run(
        [str(SCRIPT), "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,  # no terminal: nothing may wait for a prompt
        timeout=timeout,
        check=False,
    )


def cli_json(home: Path, *args: str) -> Any:
    result = cli(home, *args, "--json")
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return json.loads(result.stdout)


def search_ids(home: Path, *words: str) -> list[str]:
    return [hit["id"] for hit in cli_json(home, "search", *words)["results"]]


def create_listing(home: Path, title: str, *extra: str) -> str:
    result = cli(
        home,
        "listing",
        "create",
        "--title",
        title,
        "--price",
        "150000",
        "--category",
        "vehicles/bicycles",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: …`` line of a failed command (and nothing else)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    return result.stderr.strip()


def wait_for(
    get: Callable[[], object], expected: object, what: str, timeout: float = GOSSIP_TIMEOUT
) -> None:
    """Poll ``get()`` until it returns ``expected``; fail with the last thing it gave."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = get()
        except AssertionError as exc:  # a command failed: that too may pass
            got = exc
        if got == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: got {got!r}, not {expected!r}, for {timeout:g} s")
        time.sleep(0.1)


def wait_until(check: Callable[[], object], what: str, timeout: float = GOSSIP_TIMEOUT) -> None:
    """Poll ``check()`` until it returns something true."""
    wait_for(lambda: bool(check()), True, what, timeout)


def closed_port() -> int:
    """A loopback TCP port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ---------------------------------------------------------------------------
# Child processes


class _EOF:
    pass


class Lines:
    """The lines a child writes to a pipe, read by a thread so that a test can wait
    for the next one with a deadline (a blocking pipe read cannot time out)."""

    def __init__(self, pipe: IO[str]) -> None:
        self._pipe = pipe
        self._queue: queue.Queue[str | _EOF] = queue.Queue()
        self.seen: list[str] = []
        self.ended = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(_EOF())

    def get(self, timeout: float) -> str | None:
        """The next line; None if none came within ``timeout``; EOFError once the pipe
        is closed (the child exited)."""
        if self.ended:
            raise EOFError
        try:
            item = self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if isinstance(item, _EOF):
            self.ended = True
            raise EOFError
        self.seen.append(item)
        return item

    def drain(self, timeout: float = STOP_TIMEOUT) -> list[str]:
        """Every line up to the end of the stream (call once the child has exited)."""
        deadline = time.monotonic() + timeout
        try:
            while self.get(deadline - time.monotonic()) is not None:
                pass
        except EOFError:
            pass
        return self.seen

    def close(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT)
        if not self._thread.is_alive():  # never close a pipe a thread is reading
            self._pipe.close()


class Daemon:
    """One ``p2pmarket daemon`` process and what it said when it became ready."""

    def __init__(self, home: Path, log: Path, args: tuple[str, ...] = LOOPBACK) -> None:
        self.home = home
        self.log = log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            [str(SCRIPT), "--home", str(home), "daemon", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            env=_env(),
        )
        assert self.process.stdout is not None
        self.stdout = Lines(self.process.stdout)
        self.peer_id = ""
        self.address = ""
        self.expected_status = 0  # checked at teardown

    @property
    def socket(self) -> Path:
        return self.home / "node.sock"

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Daemon:
        """Read the start-up lines up to the control socket's, and see the socket file."""
        deadline = time.monotonic() + timeout
        if not self._start_up(timeout):
            raise AssertionError(
                f"the daemon of {self.home} exited with {self.wait()} before it was ready:\n"
                f"{self.stderr}"
            )
        assert self.peer_id and self.address.endswith(f"/p2p/{self.peer_id}"), self.stdout.seen
        wait_until(self.socket.exists, f"{self.socket} created", deadline - time.monotonic())
        return self

    def _start_up(self, timeout: float) -> bool:
        """Read the start-up lines: True at the control socket's, False if the daemon exited."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stdout.get(deadline - time.monotonic())
            except EOFError:
                return False
            if line is None:
                raise AssertionError(f"the daemon of {self.home} not ready within {timeout:g} s")
            if line.startswith("p2pmarket daemon "):
                self.peer_id = line.split()[-1]
            elif line.startswith("listening on ") and not self.address:
                self.address = line.removeprefix("listening on ")
            elif line.startswith("control socket "):
                return True

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit status; a daemon that does not exit in time is killed (and fails)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the daemon of {self.home} did not exit within {timeout:g} s; killed it"
            ) from None

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.wait()

    def crash(self) -> int:
        """Kill the daemon as a crash would (no clean-up at all)."""
        self.expected_status = -signal.SIGKILL
        return self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stdout.close()
        self._log_file.close()


class Daemons:
    """Homes and daemons of one test (or module), all under one short /tmp folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="p2pm-", dir="/tmp"))
        self.started: list[Daemon] = []
        self.children: list[tuple[subprocess.Popen[str], Lines]] = []
        self._homes = 0

    def new_home(self, name: str = "") -> Path:
        """An initialised home with an unencrypted key (a passphrase is not the point)."""
        self._homes += 1
        home = self.root / (name or f"h{self._homes}")
        init_home(home, None)
        return home

    def start(self, home: Path | None = None) -> Daemon:
        return self.start_all([home or self.new_home()])[0]

    def start_all(self, homes: list[Path] | int) -> list[Daemon]:
        """Start a daemon on each home at once (their start-ups overlap), wait for all."""
        if isinstance(homes, int):
            homes = [self.new_home() for _ in range(homes)]
        started = []
        for home in homes:
            daemon = Daemon(home, self.root / f"{home.name}-{len(self.started)}.log")
            self.started.append(daemon)
            started.append(daemon)
        return [daemon.wait_ready() for daemon in started]

    def refused(self, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a daemon that must not start, to its exit status and output. One that
        starts all the same is stopped at once, and the test fails."""
        daemon = Daemon(home, self.root / f"refused-{len(self.started)}.log", args or LOOPBACK)
        try:
            if daemon._start_up(START_TIMEOUT):
                raise AssertionError(f"the daemon started: {daemon.stdout.seen}")
            status = daemon.wait()
            stdout = "".join(f"{line}\n" for line in daemon.stdout.seen)
            return subprocess.CompletedProcess(daemon.process.args, status, stdout, daemon.stderr)
        finally:
            if daemon.process.poll() is None:
                daemon.stop()
            daemon.close()

    def popen_cli(self, home: Path, *args: str) -> tuple[subprocess.Popen[str], Lines]:
        """A long-running CLI command (``watch``); terminated at teardown."""
        process = subprocess.Popen(
            [str(SCRIPT), "--home", str(home), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        assert process.stdout is not None
        lines = Lines(process.stdout)
        self.children.append((process, lines))
        return process, lines

    def close(self) -> list[str]:
        """Stop everything; return what went wrong (a daemon that failed or hung)."""
        problems = []
        for child, lines in self.children:
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            lines.close()
        for daemon in self.started:
            try:
                if daemon.process.poll() is None:
                    daemon.process.send_signal(signal.SIGTERM)
                status = daemon.wait()
                if status != daemon.expected_status:
                    problems.append(f"the daemon of {daemon.home} exited with {status}")
            except AssertionError as exc:
                problems.append(str(exc))
            finally:
                daemon.close()
            if daemon.stderr.strip():
                # Shown by pytest only when the test fails.
                print(f"--- stderr of the daemon of {daemon.home}:\n{daemon.stderr}")
        shutil.rmtree(self.root, ignore_errors=True)
        return problems
