"""``python -m bench.crash``: kill -9 loops with real daemons, and what each lost.

A daemon may die at any moment (kill -9, power cut, the OOM killer). What it has
*acknowledged* (a command that reported success, a receipt) must still be there
when it starts again, and what it was busy with must leave the store whole. Three
loops try that with real ``p2pmarket daemon`` processes on 127.0.0.1, each
killed with SIGKILL at varied moments and started again:

* **import**: ``p2pmarket listing import FILE`` through the daemon, one file
  after another; each round one import runs to completion, and the daemon is
  killed during the next. Acknowledged: every record of an import the CLI
  reported as done.
* **messaging**: a sender sends messages to a receiver without pause while one
  or the other is killed. Acknowledged: every message ``send_message``
  returned (written to the sender's outbox); each must reach the receiver once,
  and no message may arrive twice.
* **sync**: a new node catches up with a source holding thousands of listings
  and is killed mid-sync. Acknowledged: the source's whole live set, which the
  syncing node must end up holding exactly (every listing, at its seq, and
  nothing else).

After the last round every store is opened offline and checked for consistency
(:func:`check_store`). The table printed at the end (loop, kills, acknowledged,
lost) is what docs/SECURITY.md quotes; ``lost`` must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from bench.data import dataset
from p2pmarket import records
from p2pmarket.exchange import read_export, write_export
from p2pmarket.node import Node, init_home
from p2pmarket.records import Listing, Tombstone
from p2pmarket.rpc.client import Client
from p2pmarket.store import layout

SCRIPT: Final = Path(sys.executable).parent / "p2pmarket"
ANY_PORT: Final = "/ip4/127.0.0.1/tcp/0"
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 20.0
SEED: Final = 13


def _env() -> dict[str, str]:
    # The developer's own home and passphrase are never picked up.
    # The stamp difficulty is passed on: the daemons must accept the data set,
    # which was stamped at this process's (a test network's, see bench/__main__).
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("P2PMARKET_") or k == "P2PMARKET_STAMP_BITS"
    }


def cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``p2pmarket --home HOME ARGS…`` to completion, as a user runs it."""
    return subprocess.run(
        [str(SCRIPT), "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


class Daemon:
    """One ``p2pmarket daemon`` process of ``home``; its stderr goes to ``log``."""

    def __init__(self, home: Path, *args: str, listen: str = ANY_PORT) -> None:
        self.home = home
        self.log = home.parent / f"{home.name}.log"
        with self.log.open("a") as err:
            self.process = subprocess.Popen(
                [
                    str(SCRIPT),
                    "--home",
                    str(home),
                    "daemon",
                    "--listen",
                    listen,
                    "--no-mdns",
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=_env(),
            )
        self.address = ""
        self.ready = threading.Event()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.daemon = True
        self._reader.start()

    def _read(self, stdout: IO[str]) -> None:
        # Read every line, so that the daemon never blocks on a full pipe.
        for line in stdout:
            if line.startswith("listening on ") and not self.address:
                self.address = line.removeprefix("listening on ").strip()
            elif line.startswith("control socket "):
                self.ready.set()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Daemon:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"the daemon of {self.home} did not start:\n{self.log.read_text()[-3000:]}"
                )
        return self

    def client(self) -> Client:
        return Client.open(self.home / "node.sock")

    def kill(self) -> None:
        """SIGKILL: a crash, with no clean-up at all."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        self._done()

    def _done(self) -> None:
        self._reader.join(STOP_TIMEOUT)
        if not self._reader.is_alive() and self.process.stdout is not None:
            self.process.stdout.close()  # never while the reader still reads it

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C; the exit status (killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            return -signal.SIGKILL
        self._done()
        return status


@dataclass
class Outcome:
    """One loop's figures: ``lost`` acknowledged records, and what went wrong besides."""

    loop: str
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    landed: int = 0  # kills that interrupted the work (not after it was done)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.problems


# -- the store after the crashes ------------------------------------------------


def check_store(home: Path) -> tuple[dict[bytes, int], list[str]]:
    """Open ``home``'s store offline, as after a crash, and check that its parts
    agree: each record has its sync entry at its seq, each sync entry of a
    listing its record, each live listing its summary, and the live count
    matches. Returns the live set {listing id: seq} and the disagreements."""
    problems: list[str] = []
    live: dict[bytes, int] = {}
    with Node.open(home) as node:
        store = node.store
        db = store.db
        held: dict[bytes, int] = {}
        for key, raw in db.iterator(prefix=layout.RECORD):
            record = records.load_trusted(raw)
            if not isinstance(record, Listing | Tombstone):
                problems.append(f"record {key[1:].hex()} is a {type(record).__name__}")
                continue
            held[record.id] = record.seq
            if isinstance(record, Listing):
                live[record.id] = record.seq
                if db.get(layout.TIME + layout.suffix(record.created, record.id)) is None:
                    problems.append(f"listing {record.id.hex()} has no summary")
        synced: dict[bytes, int] = {}
        for key, raw in db.iterator(prefix=layout.SYNC + records.SYNC_LISTING):
            seq, _, flags = layout.SYNC_VALUE.unpack(raw)
            if not flags & layout.EVICTED:
                synced[key[len(layout.SYNC) + len(records.SYNC_LISTING) :]] = seq
        if synced != held:
            odd = set(synced.items()) ^ set(held.items())
            problems.append(f"{len(odd)} sync entries disagree with the records")
        summaries = sum(1 for _ in db.iterator(prefix=layout.TIME, include_value=False))
        if not store.listing_count == len(live) == summaries:
            problems.append(
                f"count {store.listing_count}, live listings {len(live)}, summaries {summaries}"
            )
    return live, problems


# -- sync ------------------------------------------------------------------------


def _listings_file(root: Path, count: int, seed: int) -> Path:
    return dataset(count, seed, root / "data", workers=1).path


def sync_loop(
    root: Path,
    *,
    listings: int = 6000,
    kills: int = 20,
    seed: int = SEED,
    log: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """A source daemon holds ``listings``; a new node dials it, catches up, and is
    killed ``kills`` times in a row mid-sync, then left to finish. Its live set
    must then equal the source's exactly, and its store must open cleanly after
    every kill.

    The moments vary (:func:`_kill_plan`): at start-up, before the dial or the
    reconciliation is done, and at a share of the listings fetched, spread so that
    each round fetches a part of the rest and the last kill still lands mid-sync."""
    started = time.monotonic()
    outcome = Outcome("sync")
    rng = random.Random(seed)
    source_home, sink_home = root / "source", root / "sink"
    init_home(source_home, None)
    init_home(sink_home, None)
    imported = cli(source_home, "listing", "import", str(_listings_file(root, listings, seed)))
    if imported.returncode != 0:
        raise RuntimeError(f"the import failed: {imported.stderr}")
    source = Daemon(source_home).wait_ready()
    try:
        with source.client() as client:
            expected = client.status().cached_listings
        outcome.acknowledged = expected
        held = 0
        for kill, moment in enumerate(_kill_plan(rng, kills)):
            sink = Daemon(sink_home, "--bootstrap", source.address).wait_ready()
            try:
                reached = _wait_for_moment(sink, moment, held, expected)
            finally:
                sink.kill()
            outcome.kills += 1
            now_held, problems = check_store(sink_home)
            outcome.problems += [f"after kill {kill + 1}: {p}" for p in problems]
            if len(now_held) < held:
                outcome.problems.append(f"kill {kill + 1}: {held - len(now_held)} listings gone")
            held = len(now_held)
            outcome.landed += held < expected
            log(f"sync: kill {kill + 1} at {reached}: {held} of {expected} held")
        _sync_once(sink_home, source.address, expected)
    finally:
        source.stop()
    final, problems = check_store(sink_home)
    reference, source_problems = check_store(source_home)
    outcome.problems += [f"sink: {p}" for p in problems] + [f"source: {p}" for p in source_problems]
    outcome.lost = len(set(reference.items()) - set(final.items()))
    extra = len(set(final.items()) - set(reference.items()))
    if extra:
        outcome.problems.append(f"the syncing node holds {extra} listings the source does not")
    outcome.seconds = time.monotonic() - started
    return outcome


# A kill moment: ("start", seconds after ready), ("session", 0) as soon as a sync
# session runs, or ("held", share) once the node has fetched more than that share
# of the whole set since it started.
Moment = tuple[str, float]


def _kill_plan(rng: random.Random, kills: int) -> Iterator[Moment]:
    """Every fourth kill at start-up (before or around the dial), every fourth as
    the session starts (reconciling), the rest once a batch or a few more have
    landed (up to 4% of the set; fetches store 256 at a time), so that even the
    last kill of twenty lands mid-sync."""
    for kill in range(kills):
        if kill % 4 == 0:
            yield ("start", rng.uniform(0.0, 0.4))
        elif kill % 4 == 1:
            yield ("session", 0.0)
        else:
            yield ("held", rng.uniform(0.0, 0.04))


def _wait_for_moment(sink: Daemon, moment: Moment, held: int, expected: int) -> str:
    """Wait until ``moment`` (or until the sync is done: then it was too late); say
    where the sink got to."""
    kind, value = moment
    if kind == "start":
        time.sleep(value)
        return f"{value:.2f} s after start"
    aim = held + 1 + int(expected * value)
    deadline = time.monotonic() + 60
    with sink.client() as client:
        while time.monotonic() < deadline:
            status = client.status()
            syncing = status.sync is not None and status.sync.syncing
            if kind == "session" and syncing:
                return f"session start ({status.cached_listings} held)"
            if kind == "held" and status.cached_listings >= aim:
                return f"{status.cached_listings} held (aimed at {aim})"
            if status.cached_listings >= expected and not syncing:
                return "the end (too late: the sync was done)"
            time.sleep(0.005)
    raise RuntimeError(f"the sink never reached {moment}")


def _sync_once(home: Path, address: str, expected: int) -> float:
    """Start ``home``'s daemon dialling ``address``, wait until it holds ``expected``
    listings and its sync is done, stop it cleanly; the seconds it took."""
    sink = Daemon(home, "--bootstrap", address).wait_ready()
    try:
        began = time.monotonic()
        with sink.client() as client:
            deadline = began + 300
            while True:
                status = client.status()
                if status.cached_listings >= expected and not _syncing(client):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sync stuck at {status.cached_listings} of {expected}")
                time.sleep(0.05)
        return time.monotonic() - began
    finally:
        sink.stop()


def _syncing(client: Client) -> bool:
    return bool(client.sync_status().syncing)


# -- import ------------------------------------------------------------------------


def import_loop(
    root: Path,
    *,
    kills: int = 20,
    per_file: int = 4000,
    seed: int = SEED,
    data_dir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Import files of ``per_file`` listings through a daemon. Each round imports
    one file to completion (the file the last kill interrupted: part of it may
    be stored already), then starts the next and kills the daemon during it, at
    a random moment of the time a whole import took. Every record of an import
    the CLI reported as done must be in the store at the end, and the store
    must be whole after every kill."""
    started = time.monotonic()
    outcome = Outcome("import")
    rng = random.Random(seed)
    home = root / "importer"
    init_home(home, None)
    source = dataset((kills + 1) * per_file, seed, data_dir or root / "data", workers=2)
    files = _split(source.path, root / "files", per_file)
    acknowledged: set[bytes] = set()
    for kill in range(kills):
        daemon = Daemon(home).wait_ready()
        try:
            began = time.monotonic()
            done = cli(home, "listing", "import", str(files[kill]), "--json")
            if done.returncode != 0:
                raise RuntimeError(f"an import the daemon survived failed: {done.stderr}")
            took = time.monotonic() - began
            acknowledged |= _acknowledged(done, files[kill], per_file, outcome)
            running = subprocess.Popen(
                [str(SCRIPT), "--home", str(home), "listing", "import", str(files[kill + 1])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=_env(),
            )
            # Not before the CLI has had time to start and call the daemon.
            delay = rng.uniform(0.3, 1.0) * took
            time.sleep(delay)
        finally:
            daemon.kill()
        outcome.kills += 1
        out, err = running.communicate(timeout=120)
        if running.returncode == 0:  # done before the kill (or offline, after it)
            finished = subprocess.CompletedProcess(running.args, 0, out, err)
            acknowledged |= _acknowledged(finished, files[kill + 1], per_file, outcome)
        else:
            outcome.landed += 1
            if "Traceback" in err:
                outcome.problems.append(f"kill {kill + 1}: the CLI showed a traceback")
        held, problems = check_store(home)
        outcome.problems += [f"after kill {kill + 1}: {p}" for p in problems]
        log(
            f"import: kill {kill + 1} after {delay:.2f} s of ~{took:.2f} s "
            f"(CLI exit {running.returncode}; {len(held)} held)"
        )
    held, problems = check_store(home)
    outcome.problems += problems
    outcome.acknowledged = len(acknowledged)
    outcome.lost = len(acknowledged - held.keys())
    outcome.seconds = time.monotonic() - started
    return outcome


def _split(path: Path, folder: Path, per_file: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    items = list(read_export(path))
    files = []
    for start in range(0, len(items), per_file):
        part = folder / f"part-{start // per_file:03}.export"
        write_export(part, items[start : start + per_file])
        files.append(part)
    return files


def _acknowledged(
    done: subprocess.CompletedProcess[str], file: Path, per_file: int, outcome: Outcome
) -> set[bytes]:
    """The ids of a file whose import the CLI reported as done (all of it: the
    file's records are new and valid)."""
    if "--json" in done.args:
        report = json.loads(done.stdout)
        taken = report["accepted"] + report["unchanged"]
    else:  # "accepted N (…), unchanged M, rejected 0"
        words = done.stdout.replace(",", " ").split()
        taken = int(words[1]) + int(words[words.index("unchanged") + 1])
    if taken != per_file:
        outcome.problems.append(f"{file.name}: the CLI reported {taken} of {per_file} taken")
    now = int(time.time())
    ids = set()
    for data in read_export(file):
        listing = records.decode(data, now)
        assert isinstance(listing, Listing)
        ids.add(listing.id)
    return ids


# -- messaging --------------------------------------------------------------------


def messaging_loop(
    root: Path,
    *,
    kills: int = 20,
    seed: int = SEED,
    log: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """A sends B messages without pause (one every 50 ms) while B or A, at random,
    is killed (after 0.5-2.5 s) and started again. Every message
    ``send_message`` returned must reach B, once; none may arrive twice."""
    started = time.monotonic()
    outcome = Outcome("messaging")
    rng = random.Random(seed)
    homes = {name: root / name for name in ("sender", "receiver")}
    ports = {name: _free_port() for name in homes}
    for home in homes.values():
        init_home(home, None)

    def address_of(name: str, peer_id: str) -> str:
        return f"/ip4/127.0.0.1/tcp/{ports[name]}/p2p/{peer_id}"

    def start(name: str, other: str) -> Daemon:
        return Daemon(
            homes[name],
            "--bootstrap",
            address_of(other, peer_ids[other]),
            listen=f"/ip4/127.0.0.1/tcp/{ports[name]}",
        ).wait_ready()

    peer_ids = {}
    for name, home in homes.items():
        with Node.open(home) as node:
            peer_ids[name] = node.peer_id
    daemons = {"receiver": start("receiver", "sender")}
    daemons["sender"] = start("sender", "receiver")
    sent: dict[bytes, str] = {}
    stop = threading.Event()
    sender = threading.Thread(
        target=_send_until, args=(daemons, peer_ids["receiver"], sent, stop), daemon=True
    )
    sender.start()
    try:
        for kill in range(kills):
            time.sleep(rng.uniform(0.5, 2.5))
            victim = rng.choice(("sender", "receiver"))
            daemons[victim].kill()
            outcome.kills += 1
            outcome.landed += sender.is_alive()
            log(f"messaging: kill {kill + 1}: the {victim} ({len(sent)} sent so far)")
            time.sleep(rng.uniform(0.0, 0.5))
            daemons[victim] = start(victim, "receiver" if victim == "sender" else "sender")
        stop.set()
        sender.join(30)
        _wait_until_delivered(daemons, timeout=300)
    finally:
        stop.set()
        for daemon in daemons.values():
            daemon.stop()
    outcome.acknowledged = len(sent)
    with Node.open(homes["receiver"]) as receiver:
        arrived = [m.id for m in receiver.thread(peer_ids["sender"], limit=10**9)]
    with Node.open(homes["sender"]) as node:
        undelivered = [m.id for m in node.thread(peer_ids["receiver"], limit=10**9) if m.state < 2]
    outcome.lost = len(sent.keys() - set(arrived))
    outcome.duplicated = len(arrived) - len(set(arrived))
    if undelivered:
        outcome.problems.append(f"{len(undelivered)} messages never marked delivered")
    for home in homes.values():
        outcome.problems += check_store(home)[1]
    outcome.seconds = time.monotonic() - started
    return outcome


def _send_until(
    daemons: dict[str, Daemon], to: str, sent: dict[bytes, str], stop: threading.Event
) -> None:
    """Send numbered messages through the sender's daemon until ``stop``; keep the
    ones it acknowledged. A call that fails (the daemon is down, or died during
    the call) is not acknowledged, and the next message is a new one."""
    number = 0
    client: Client | None = None
    while not stop.is_set():
        number += 1
        text = f"pesan {number}"
        try:
            if client is None:
                client = daemons["sender"].client()
            message = client.send_message(to, text)
            sent[message.id] = text
        except Exception:
            if client is not None:
                client.close()
            client = None
            time.sleep(0.1)
            continue
        time.sleep(0.05)
    if client is not None:
        client.close()


def _wait_until_delivered(daemons: dict[str, Daemon], timeout: float) -> None:
    """Until both outboxes are empty: every message and receipt is through."""
    deadline = time.monotonic() + timeout
    clients = {name: daemon.client() for name, daemon in daemons.items()}
    try:
        while time.monotonic() < deadline:
            if all(client.status().outbox == 0 for client in clients.values()):
                return
            time.sleep(0.25)
    finally:
        for client in clients.values():
            client.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the report ---------------------------------------------------------------------

LOOPS: Final = ("import", "messaging", "sync")


def table(outcomes: list[Outcome]) -> str:
    """The figures as a Markdown table (what docs/SECURITY.md quotes)."""
    lines = [
        "| loop | kills (mid-work) | acknowledged records | lost | duplicated | problems "
        "| seconds |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for o in outcomes:
        problems = "; ".join(o.problems[:3]) + (" …" if len(o.problems) > 3 else "") or "none"
        lines.append(
            f"| {o.loop} | {o.kills} ({o.landed}) | {o.acknowledged} | {o.lost} "
            f"| {o.duplicated} | {problems} | {o.seconds:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash",
        description="kill -9 loops with real daemons; exits 1 if any acknowledged record was lost",
    )
    parser.add_argument("loops", nargs="*", metavar="LOOP", help=f"of {', '.join(LOOPS)} (all)")
    parser.add_argument("--kills", type=int, default=20, help="kills per loop (20)")
    args = parser.parse_args(argv)
    unknown = set(args.loops) - set(LOOPS)
    if unknown:
        parser.error(f"no such loop: {', '.join(sorted(unknown))}")

    def log(line: str) -> None:
        print(f"[crash] {line}", file=sys.stderr, flush=True)

    from bench.config import DATA_DIR

    outcomes = []
    for name in args.loops or LOOPS:
        with tempfile.TemporaryDirectory(prefix="p2pm-crash-", dir="/tmp") as folder:
            root = Path(folder)
            try:
                if name == "import":
                    found = import_loop(root, kills=args.kills, data_dir=DATA_DIR, log=log)
                elif name == "messaging":
                    found = messaging_loop(root, kills=args.kills, log=log)
                else:
                    found = sync_loop(root, kills=args.kills, log=log)
            except Exception as exc:  # one loop that cannot run must not hide the others
                found = Outcome(name, problems=[f"the loop failed: {str(exc)[:200]}"])
            outcomes.append(found)
    print(table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


# Guarded: the data generator's spawn workers re-import this module.
if __name__ == "__main__":
    raise SystemExit(main())
