"""A stock js-libp2p node (libp2p 3, @libp2p/gossipsub 17, @libp2p/kad-dht 16, from
npm) takes part in a network of real p2pmarket daemons: it receives and verifies
their listings, reads our DHT namespaces, publishes listings our nodes keep and
find, has a forged one refused, and delivers a sealed direct message. The JS
side (interop/) uses only stock libp2p APIs (pubsub subscribe/publish, dht.get,
dialProtocol) and implements our formats from docs/PROTOCOL.md, so this is the
proof that a second implementation can join.

`make interop` runs this file alone; `make test` runs it with the suite. It needs
`node` and `npm`: the first run installs interop/package-lock.json's exact
versions with `npm ci` (cached until the lock file changes), and the test is
skipped, saying why, where node is missing or npm cannot install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from tests.functional.daemon_harness import (
    Daemon,
    Daemons,
    Lines,
    cli,
    cli_json,
    create_listing,
    search_ids,
    wait_until,
)

ROOT: Final = Path(__file__).resolve().parents[2]
INTEROP: Final = ROOT / "interop"
VECTORS: Final = ROOT / "docs" / "test-vectors.json"
INSTALLED: Final = INTEROP / "node_modules" / ".p2pmarket-installed"  # the lock's hash
JS_TIMEOUT: Final = 30.0  # one command of the JS node, its own waits included
LISTINGS: Final = "p2pmarket/1/listings"


def _lock_hash() -> str:
    return hashlib.sha256((INTEROP / "package-lock.json").read_bytes()).hexdigest()


def _install() -> str | None:
    """``npm ci`` once per lock file; the reason to skip, or None when ready."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed (the JS interop test needs Node >= 20)"
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        return f"node {version.stdout.strip()} is too old: js-libp2p 3 needs Node >= 20"
    if INSTALLED.exists() and INSTALLED.read_text() == _lock_hash():
        return None
    try:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "npm ci in interop/ took over 10 minutes (no registry?)"
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if "complete log" not in line]
        return f"npm ci in interop/ failed (no registry?): {(said or ['no output'])[0]}"
    INSTALLED.write_text(_lock_hash())
    return None


class JsNode:
    """The JS program as a child process: one JSON command a line in, one answer out."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            ["node", str(INTEROP / "interop.mjs")],
            cwd=INTEROP,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=dict(os.environ),  # P2PMARKET_STAMP_BITS: the test network's, as the daemons
        )
        assert self.process.stdout is not None
        self.lines = Lines(self.process.stdout)
        hello = self._answer(JS_TIMEOUT)
        assert hello.get("ready"), hello
        self.peer_id: str = hello["peer"]
        self.log = log

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout)
        except EOFError:
            raise AssertionError(f"the JS node exited:\n{self.log.read_text()}") from None
        assert line is not None, f"the JS node did not answer within {timeout:g} s"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Run one command; fail the test with the JS error if it failed."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.process.stdin.flush()
        answer = self._answer(JS_TIMEOUT)
        assert answer.pop("ok"), f"{cmd}: {answer.get('error')}"
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("stop")
                self.process.wait(5)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.lines.close()
        self._log.close()


@dataclass
class Market:
    """Two daemons connected to each other, the JS node connected to both, and a
    listing the first daemon published once the JS node was in its mesh."""

    a: Daemon
    b: Daemon
    js: JsNode
    title: str
    listing_id: str


@pytest.fixture(scope="module")
def market() -> Iterator[Market]:
    reason = _install()
    if reason is not None:
        pytest.skip(reason)
    daemons = Daemons()
    js: JsNode | None = None
    try:
        a, b = daemons.start_all(2)
        assert cli(b.home, "connect", a.address).returncode == 0
        js = JsNode(daemons.root / "js.log")
        for daemon in (a, b):
            assert js.call("dial", addr=daemon.address)["peer"] == daemon.peer_id
        js.call("mesh", topic=LISTINGS, peers=[a.peer_id, b.peer_id])
        title = "Sepeda lipat Brompton"
        listing_id = create_listing(a.home, title, "--location", "Sleman")
        yield Market(a, b, js, title, listing_id)
    finally:
        if js is not None:
            js.close()
        problems = daemons.close()
    assert not problems, "; ".join(problems)


def _rejected(daemon: Daemon) -> int:
    """The daemon's count of gossip records its validator rejected."""
    count: int = cli_json(daemon.home, "status")["extra"].get("gossip_rejected", 0)
    return count


def test_js_receives_and_verifies_a_daemons_listing(market: Market) -> None:
    got = market.js.call("wait_gossip", title=market.title)["message"]
    assert got["valid"], got
    assert got["topic"] == LISTINGS
    assert got["type"] == "signed"  # StrictSign: a libp2p signature, checked by gossipsub
    record = got["record"]
    assert record["id"] == market.listing_id
    assert record["seller"] == market.a.peer_id
    assert (record["price"], record["cur"], record["cat"]) == (15000000, "IDR", "vehicles/bicycles")


def test_js_reads_a_listing_and_a_catalogue_from_our_dht(market: Market) -> None:
    keys = market.js.call("listing_key", seller_peer=market.a.peer_id, id=market.listing_id)
    # A seller's node puts ~2 s after its gossip: the JS side polls.
    values = market.js.call("dht_get", key=keys["listing"])["values"]
    assert {v["record"]["id"] for v in values} == {market.listing_id}
    assert values[0]["record"]["title"] == market.title

    # Its catalogue is put a second after the listing, replacing the empty one of
    # its start: the highest seq wins, by the namespace's selector.
    def catalogue() -> dict[str, Any]:
        best: dict[str, Any] = market.js.call("dht_get", key=keys["catalogue"])["best"]
        return best

    wait_until(lambda: [market.listing_id, 1] in catalogue()["items"], "the new catalogue")
    assert catalogue()["seller"] == market.a.peer_id


def test_a_listing_signed_in_js_is_stored_and_found(market: Market) -> None:
    js = market.js
    js.call("mesh", topic=LISTINGS, peers=[market.a.peer_id, market.b.peer_id])
    sent = js.call("publish_listing", title="Kursi rotan Jepara")
    for daemon in (market.a, market.b):
        wait_until(lambda d=daemon: search_ids(d.home, "rotan") == [sent["id"]], "JS listing")
    shown = cli_json(market.b.home, "listing", "show", sent["id"])
    assert shown["seller"] == js.peer_id


def test_a_forged_listing_from_js_is_refused(market: Market) -> None:
    """A listing whose title was changed after signing: its libp2p message
    signature is fine (GossipSub passes it on to our validator), its record
    signature is not. Both daemons reject it (and charge the JS node 10
    points, far from a ban); neither stores it."""
    daemons = (market.a, market.b)
    before = [_rejected(daemon) for daemon in daemons]
    market.js.call("publish_listing", title="Meja jati palsu", corrupt=True)
    for daemon, count in zip(daemons, before, strict=True):
        wait_until(lambda d=daemon, n=count: _rejected(d) > n, "the forged listing rejected")
        assert search_ids(daemon.home, "jati") == []


def test_js_delivers_a_sealed_direct_message(market: Market) -> None:
    text = "Halo, sepedanya masih ada? (from js-libp2p)"
    sent = market.js.call("send_dm", peer=market.a.peer_id, text=text)
    assert sent["acked"], sent  # the daemon's signed receipt, sealed to us, says delivered
    inbox = cli_json(market.a.home, "msg", "inbox")
    assert [t["peer"] for t in inbox] == [market.js.peer_id]
    thread = cli_json(market.a.home, "msg", "thread", market.js.peer_id)
    assert [(m["direction"], m["text"], m["id"]) for m in thread] == [("in", text, sent["id"])]


def test_js_checks_the_protocol_test_vectors(market: Market) -> None:
    """docs/test-vectors.json, recomputed in JS from its inputs (sealed boxes,
    whose ephemeral keys are random, are opened instead)."""
    if not VECTORS.exists():
        pytest.skip("docs/test-vectors.json does not exist yet")
    result = market.js.call("vectors", path=str(VECTORS))
    assert result["present"]
    failed = [check for check in result["checks"] if not check["ok"]]
    assert not failed, failed
    names = {check["name"] for check in result["checks"]}
    assert {"listing", "catalogue", "direct_message", "sync_session"} <= names, names
