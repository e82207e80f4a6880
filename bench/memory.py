"""Memory: the resident set size of one ``p2pmarket daemon``, idle and with a full cache.

The daemon is the real command (``p2pmarket --home H daemon --listen
/ip4/127.0.0.1/tcp/0 --no-mdns``), started twice: on a fresh home with an empty
store, and on a copy of the benchmark home holding the cached listings (the
same store the search benchmark uses). Its RSS is read from
``/proc/<pid>/status`` after it has been idle for a few seconds, and again after
a few searches sent to it through its control socket (``p2pmarket search``, as a
user would), which is when LevelDB's block cache and the mapped table files
fill. RSS counts both anonymous memory (the Python heap, LevelDB's cache) and
mapped file pages the process has touched; both are shown.

Baselines are interpreters that only import: libp2p alone, and everything the
daemon imports before it starts serving.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.config import Sizes
from bench.data import Dataset, dataset
from bench.queries import workload
from bench.report import table
from bench.results import Row, Section, verdict
from bench.semantics import indexed_fields
from bench.stats import count
from bench.stores import our_home
from p2pmarket.home import Home
from p2pmarket.node import init_home
from p2pmarket.rpc.client import Client

TARGET_MIB: Final = 150.0
SEARCHES: Final = (
    ["sepeda"],
    ["sepeda", "--sort", "price"],
    ["jual", "murah"],
    ["lipat", "--category", "vehicles"],
)
START_TIMEOUT: Final = 60.0
_IMPORTS_LIBP2P: Final = "import libp2p"
_IMPORTS_DAEMON: Final = (
    "import p2pmarket.cli, p2pmarket.daemon, p2pmarket.node, p2pmarket.network.service,"
    " p2pmarket.rpc.server, trio"
)
_STATUS_PROBE: Final = "; print(open('/proc/self/status').read())"

Mem = dict[str, float]
Query = dict[str, Any]  # keyword arguments of Client.search


def parse_status(text: str) -> Mem:
    """MiB figures from a /proc/<pid>/status text."""
    wanted = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anon", "RssFile": "file"}
    found: Mem = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[wanted[key]] = int(value.split()[0]) / 1024
    return found


def process_memory(pid: int) -> Mem:
    return parse_status(Path(f"/proc/{pid}/status").read_text())


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k not in ("P2PMARKET_PASSPHRASE", "P2PMARKET_HOME")
    }


def import_memory(*codes: str) -> list[Mem]:
    """Memory of interpreters that ran each of ``codes`` (imports) and nothing else;
    they run at the same time."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code + _STATUS_PROBE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for code in codes
    ]
    found = []
    for code, proc in zip(codes, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"`python -c {code!r}` failed: {err[-1000:]}")
        found.append(parse_status(out))
    return found


def _cli() -> Path:
    cli = Path(sys.executable).with_name("p2pmarket")
    if not cli.exists():
        raise RuntimeError(f"{cli} is missing: install the project (`make`) first")
    return cli


def daemon_memory(home: Path, idle: float, workload_queries: list[Query]) -> dict[str, Mem]:
    """Start a daemon on ``home``; its memory when idle, after :data:`SEARCHES` made
    with the CLI, and after ``workload_queries`` sent through its control socket."""
    cli = str(_cli())
    socket = Home(home).control_socket
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [cli, "--home", str(home), "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not socket.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the daemon did not start:\n{log.read()[-2000:]}")
                time.sleep(0.05)
            time.sleep(idle)
            found = {"idle": process_memory(proc.pid)}
            for words in SEARCHES:
                subprocess.run(
                    [cli, "--home", str(home), "search", *words],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=_env(),
                    check=True,
                )
            time.sleep(0.5)
            found["searched"] = process_memory(proc.pid)
            with Client.open(socket) as client:
                for query in workload_queries:
                    client.search(**query)
            time.sleep(0.5)
            found["workload"] = process_memory(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return found


def _queries(ds: Dataset, sizes: Sizes) -> list[Query]:
    """The search benchmark's queries, each also sorted by price (a different path)."""
    now = int(time.time())
    shapes = workload(ds, indexed_fields(), sizes.queries_per_shape, sizes.seed, now)
    found: list[Query] = []
    for queries in shapes.values():
        for query in queries:
            for sort in ("newest", "price"):
                found.append(
                    {
                        "text": query.text,
                        "currency": "IDR",
                        "min_price": query.min_price,
                        "max_price": query.max_price,
                        "sort": sort,
                    }
                )
    return found


def _mib(mem: Mem) -> str:
    return f"{mem['rss']:.0f} MiB"


def run(sizes: Sizes, data_dir: Path) -> Section:
    ds = dataset(sizes.memory_listings, sizes.seed, data_dir)
    built = our_home(ds, data_dir).path
    libp2p, imports = import_memory(_IMPORTS_LIBP2P, _IMPORTS_DAEMON)
    queries = _queries(ds, sizes)
    # A short root: the daemon's Unix socket path must stay under ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="p2pm-mem-", dir="/tmp") as root:
        empty_home = Path(root) / "empty"
        init_home(empty_home, None)
        empty = daemon_memory(empty_home, sizes.memory_idle, [])
        full_home = Path(root) / "full"
        # A copy: the daemon writes to its home (peer book, LevelDB logs), and the
        # search benchmark must find its store as it left it.
        shutil.copytree(built, full_home)
        full = daemon_memory(full_home, sizes.memory_idle, queries)
    worst = max(mem["peak"] for mem in full.values())
    label = count(ds.count)
    section = Section(f"Memory (one daemon, {label} cached listings)")
    baseline = f"`python -c 'import libp2p'`: {_mib(libp2p)}"
    section.rows.append(
        Row(
            "daemon RSS, idle, empty store",
            _mib(empty["idle"]),
            baseline,
            "—",
            "info",
        )
    )
    section.rows.append(
        Row(
            f"daemon RSS with {label} cached listings: idle · after {len(SEARCHES)} CLI"
            f" searches · after {len(queries)} more (peak)",
            f"{_mib(full['idle'])} · {_mib(full['searched'])} · {_mib(full['workload'])}"
            f" ({worst:.0f} MiB)",
            baseline,
            f"≤ {TARGET_MIB:.0f} MiB",
            verdict(worst <= TARGET_MIB),
        )
    )
    rows = []
    for name, mem in (
        ("`import libp2p`", libp2p),
        ("the daemon's imports", imports),
        ("daemon, empty store, idle", empty["idle"]),
        ("daemon, empty store, after CLI searches", empty["searched"]),
        (f"daemon, {label} listings, idle", full["idle"]),
        (f"daemon, {label} listings, after CLI searches", full["searched"]),
        (f"daemon, {label} listings, after {len(queries)} more searches", full["workload"]),
    ):
        rows.append(
            (
                name,
                f"{mem['rss']:.1f}",
                f"{mem.get('anon', 0):.1f}",
                f"{mem.get('file', 0):.1f}",
                f"{mem['peak']:.1f}",
            )
        )
    section.details.append(
        table(("process", "RSS MiB", "anonymous", "file-backed", "peak RSS"), rows)
        + "\n\n"
        + f"Read {sizes.memory_idle:g} s after the daemon's control socket appeared;"
        f" 0.5 s after the CLI searches ({'; '.join(' '.join(w) for w in SEARCHES)}),"
        " each a separate `p2pmarket search` that the daemon answered; and 0.5 s after"
        " the search benchmark's queries (each sorted by date, then by price) sent"
        " through the control socket. File-backed pages are mostly LevelDB's table"
        " files, which it maps into memory: the kernel can drop them under pressure."
        f" The daemon's imports are `{_IMPORTS_DAEMON}`."
    )
    return section
