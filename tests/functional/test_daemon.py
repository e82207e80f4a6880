"""Real ``p2pmarket daemon`` processes on loopback, driven through the CLI as a user would.

Rules: a CLI command reaches a running daemon through ``<home>/node.sock`` (so a
listing created there is published to peers, and peers' listings are searchable);
commands that need the network fail in one line when no daemon runs; a daemon
owns its home, stops cleanly on SIGTERM, SIGINT or ``p2pmarket stop``, and leaves
the home ready for the next one. The harness is in ``daemon_harness.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    GOSSIP_TIMEOUT,
    NOT_RUNNING,
    SCRIPT,
    SOME_PEER_ID,
    STOP_TIMEOUT,
    Daemon,
    Daemons,
    cli,
    cli_json,
    closed_port,
    create_listing,
    one_error_line,
    search_ids,
    wait_for,
    wait_until,
)

from p2pmarket.records import format_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the package (make test does)"


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    try:
        yield group
    finally:
        problems = group.close()
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="module")
def lone() -> Iterator[Daemon]:
    """One daemon without peers, shared by the tests that only look at it."""
    group = Daemons()
    try:
        yield group.start()
    finally:
        problems = group.close()
    assert not problems, "; ".join(problems)


@pytest.fixture
def idle_home(daemons: Daemons) -> Path:
    """An initialised home whose daemon is not running."""
    return daemons.new_home()


# ---------------------------------------------------------------------------
# Listings travel between daemons


def test_a_listing_created_updated_and_withdrawn_on_one_daemon_reaches_a_connected_peer(
    daemons: Daemons,
) -> None:
    a, b = daemons.start_all(2)

    connect = cli(b.home, "connect", a.address)
    assert connect.returncode == 0, connect.stderr
    assert connect.stdout.strip() == f"connected to {a.peer_id}"
    wait_for(lambda: [p["peer_id"] for p in cli_json(a.home, "peers")], [b.peer_id], "A's peers")
    assert cli_json(a.home, "status")["peers"] == 1

    listing_id = create_listing(a.home, "Sepeda lipat Brompton")
    wait_for(lambda: search_ids(b.home, "brompton"), [listing_id], "B finds the listing")

    update = cli(a.home, "listing", "update", listing_id, "--title", "Sepeda lipat Dahon")
    assert update.returncode == 0, update.stderr
    wait_for(lambda: search_ids(b.home, "dahon"), [listing_id], "B finds the new title")
    assert search_ids(b.home, "brompton") == []
    assert cli_json(b.home, "listing", "show", listing_id)["seq"] == 2

    withdraw = cli(a.home, "listing", "withdraw", listing_id)
    assert withdraw.returncode == 0, withdraw.stderr
    wait_for(lambda: search_ids(b.home, "dahon"), [], "B drops the withdrawn listing")
    assert "withdrawn" in one_error_line(cli(b.home, "listing", "show", listing_id))


def test_watch_json_prints_one_object_a_line_for_a_listing_gossiped_from_another_daemon(
    daemons: Daemons,
) -> None:
    a, b = daemons.start_all(2)
    watch, lines = daemons.popen_cli(b.home, "watch", "--json")

    def next_event(timeout: float) -> dict[str, Any] | None:
        try:
            line = lines.get(timeout)
        except EOFError:
            raise AssertionError(f"watch exited with {watch.wait(STOP_TIMEOUT)}") from None
        if line is None:
            return None
        doc = json.loads(line)  # every line is one whole JSON object
        assert isinstance(doc, dict) and "event" in doc, line
        return doc

    def wait_for_event(wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + GOSSIP_TIMEOUT
        while time.monotonic() < deadline:
            doc = next_event(deadline - time.monotonic())
            if doc is not None and wanted(doc):
                return doc
        raise AssertionError(f"watch printed no {what} within {GOSSIP_TIMEOUT:g} s")

    # watch says nothing when it has subscribed: change B's profile until an event
    # shows that it has, so that no later event can slip by before it.
    for attempt in range(10):
        assert cli(b.home, "profile", "set", "--name", f"Budi {attempt}").returncode == 0
        first = next_event(1.0)
        if first is not None:
            break
    else:
        raise AssertionError("watch printed nothing for ten profile changes")
    assert first["event"] == "profile-updated" and first["source"] == "local", first

    assert cli(b.home, "connect", a.address).returncode == 0
    connected = wait_for_event(lambda e: e["event"] == "peer-connected", "peer-connected")
    assert connected["peer_id"] == a.peer_id

    listing_id = create_listing(a.home, "Sepeda gunung Polygon")
    added = wait_for_event(lambda e: e["event"] == "listing-added", "listing-added")
    assert added["source"] == "gossip"
    assert added["listing"]["id"] == listing_id
    assert added["listing"]["seller"] == a.peer_id

    watch.terminate()
    assert watch.wait(STOP_TIMEOUT) == -signal.SIGTERM


def test_listing_fetch_and_seller_find_through_the_dht_what_gossip_never_brought(
    daemons: Daemons,
) -> None:
    # A - B - C in a line; C connects after A's listings were gossiped (gossip is
    # not re-sent). `listing fetch` and `seller` ask the DHT, where A put them,
    # whatever C's sync with B brings meanwhile. C is started with the others
    # only to overlap the start-ups: unconnected, it hears nothing.
    a, b, c = daemons.start_all(3)
    assert cli(b.home, "connect", a.address).returncode == 0
    puts_before = cli_json(a.home, "status")["extra"]["dht_puts"]
    fetched_id = create_listing(a.home, "Sepeda onthel Gazelle")
    other_id = create_listing(a.home, "Sepeda BMX Wimcycle")
    wait_for(lambda: set(search_ids(b.home, "sepeda")), {fetched_id, other_id}, "B has both")
    # Two listings, then one catalogue a second after the burst.
    wait_until(
        lambda: cli_json(a.home, "status")["extra"]["dht_puts"] >= puts_before + 3,
        "A put its listings and catalogue in the DHT",
    )

    assert cli(c.home, "connect", b.address).returncode == 0

    fetch = cli(c.home, "listing", "fetch", fetched_id, "--json")
    assert fetch.returncode == 0, fetch.stderr
    assert json.loads(fetch.stdout)["id"] == fetched_id
    assert fetched_id in search_ids(c.home, "onthel")

    def catalogue() -> list[str]:
        result = cli(c.home, "seller", a.peer_id, "--json")
        assert result.returncode == 0, result.stderr
        return [item["id"] for item in json.loads(result.stdout)["listings"]]

    wait_for(lambda: set(catalogue()), {fetched_id, other_id}, "A's catalogue seen from C")
    assert search_ids(c.home, "wimcycle") == [other_id]


def test_sync_brings_a_newcomer_what_was_listed_before_it_came_and_status_says_so(
    daemons: Daemons,
) -> None:
    a, b = daemons.start_all(2)
    made = {create_listing(a.home, f"Sepeda gunung {i}") for i in range(5)}
    assert cli_json(b.home, "status")["sync"]["last_sync"] == 0
    assert cli(b.home, "connect", a.address).returncode == 0

    result = cli(b.home, "sync", "--json")

    assert result.returncode == 0, result.stderr
    (session,) = json.loads(result.stdout)
    assert session["peer_id"] == a.peer_id and session["phase"] == "done"
    assert set(search_ids(b.home, "sepeda")) == made
    line = next(x for x in cli(b.home, "status").stdout.splitlines() if x.startswith("sync"))
    assert "idle; last " in line and "1 peers synced" in line
    text = cli(b.home, "sync", "--peer", a.peer_id)
    assert text.returncode == 0 and text.stdout.startswith(f"{a.peer_id}  done: fetched 0 of 0")


def test_a_message_sent_with_the_cli_is_delivered_acknowledged_and_read(
    daemons: Daemons,
) -> None:
    a, b = daemons.start_all(2)
    assert cli(b.home, "connect", a.address).returncode == 0

    sent = cli_json(a.home, "msg", "send", b.peer_id, "Helmnya masih ada?", "--json")

    assert sent["state"] == "queued" and sent["direction"] == "out"
    wait_for(
        lambda: cli_json(a.home, "msg", "thread", b.peer_id, "--json")[-1]["state"],
        "delivered",
        "A sees its message delivered",
    )
    (inbox,) = cli_json(b.home, "msg", "inbox", "--json")
    assert inbox["peer"] == a.peer_id and inbox["unread"] == 1
    assert inbox["last"]["text"] == "Helmnya masih ada?"
    thread = cli(b.home, "msg", "thread", a.peer_id)
    assert thread.returncode == 0 and "← Helmnya masih ada?" in thread.stdout
    assert cli_json(b.home, "msg", "inbox", "--json")[0]["unread"] == 0
    wait_for(
        lambda: cli_json(a.home, "msg", "thread", b.peer_id, "--json")[-1]["state"],
        "read",
        "A learns B has read it",
    )


def test_blocking_a_seller_hides_its_listings_and_drops_its_messages(daemons: Daemons) -> None:
    a, b = daemons.start_all(2)
    assert cli(b.home, "connect", a.address).returncode == 0
    create_listing(a.home, "Kamera analog")
    wait_for(lambda: len(search_ids(b.home, "kamera")), 1, "B sees A's listing")

    blocked = cli(b.home, "block", a.peer_id)

    assert blocked.returncode == 0 and f"blocked {a.peer_id}" in blocked.stdout
    assert cli_json(b.home, "blocked", "--json") == [a.peer_id]
    assert search_ids(b.home, "kamera") == []
    cli_json(a.home, "msg", "send", b.peer_id, "Halo?", "--json")
    wait_for(
        lambda: cli_json(a.home, "msg", "thread", b.peer_id, "--json")[-1]["attempts"] > 0,
        True,
        "A tried to deliver",
    )
    assert cli_json(b.home, "msg", "inbox", "--json") == []
    assert cli(b.home, "unblock", a.peer_id).returncode == 0
    assert len(search_ids(b.home, "kamera")) == 1
    checked = cli(b.home, "msg", "check")
    assert checked.returncode == 0 and "No new mail." in checked.stdout


def test_sync_without_peers_or_with_an_unknown_peer_fails_in_one_line(lone: Daemon) -> None:
    alone = cli(lone.home, "sync")
    assert alone.returncode == 1 and "no peers are connected" in one_error_line(alone)
    stranger = cli(lone.home, "sync", "--peer", SOME_PEER_ID)
    assert stranger.returncode == 1 and "not connected to" in one_error_line(stranger)


# ---------------------------------------------------------------------------
# Status, the control socket, and errors with and without a daemon


def test_status_through_a_running_daemon_reports_it_online(lone: Daemon) -> None:
    status = cli_json(lone.home, "status")

    assert status["online"] is True
    assert status["peer_id"] == lone.peer_id
    assert any(f"/p2p/{lone.peer_id}" in address for address in status["addresses"])
    assert lone.address in status["addresses"]
    assert status["peers"] == 0


def test_status_without_a_daemon_works_offline(idle_home: Path) -> None:
    status = cli_json(idle_home, "status")
    text = cli(idle_home, "status")

    assert status["online"] is False
    assert status["peer_id"].startswith("12D3KooW")
    assert text.returncode == 0, text.stderr
    assert "offline" in text.stdout


def test_the_control_socket_is_only_for_its_user(lone: Daemon) -> None:
    mode = os.stat(lone.socket).st_mode

    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize(
    "command",
    ["peers", "connect", "listing fetch", "seller", "watch", "msg check"],
)
def test_a_command_that_needs_the_network_fails_in_one_line_without_a_daemon(
    idle_home: Path, command: str
) -> None:
    args = {
        "connect": ["connect", f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{SOME_PEER_ID}"],
        "listing fetch": ["listing", "fetch", format_id(bytes(range(16)))],
        "seller": ["seller", SOME_PEER_ID],
        "msg check": ["msg", "check"],
    }.get(command, [command])

    result = cli(idle_home, *args)

    assert result.returncode == 1
    line = one_error_line(result)
    assert NOT_RUNNING in line
    assert "`p2pmarket daemon`" in line


def test_chat_outside_a_terminal_says_so_in_one_line(idle_home: Path) -> None:
    result = cli(idle_home, "chat", SOME_PEER_ID)
    assert result.returncode == 1
    assert "chat needs a terminal" in one_error_line(result)


def test_a_second_daemon_on_the_same_home_is_refused_and_the_first_keeps_running(
    lone: Daemon, daemons: Daemons
) -> None:
    second = daemons.refused(lone.home)

    assert second.returncode != 0
    assert "in use" in one_error_line(second)
    assert lone.process.poll() is None
    assert lone.socket.exists()
    assert cli_json(lone.home, "status")["online"] is True


def test_connect_to_a_malformed_address_fails_in_one_line(lone: Daemon) -> None:
    result = cli(lone.home, "connect", "not-a-multiaddr")

    assert result.returncode in (1, 2)
    assert "not-a-multiaddr" in one_error_line(result)


def test_connect_to_an_unreachable_peer_fails_in_one_line_within_seconds(
    lone: Daemon, idle_home: Path
) -> None:
    absent = cli(idle_home, "id")
    assert absent.returncode == 0, absent.stderr
    peer_id = absent.stdout.strip()

    started = time.monotonic()
    result = cli(lone.home, "connect", f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{peer_id}")

    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert peer_id in one_error_line(result)
    assert cli_json(lone.home, "status")["online"] is True


def test_an_unreachable_peer_leaves_the_daemon_log_quiet(lone: Daemon) -> None:
    before = lone.stderr
    absent = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{SOME_PEER_ID}"

    assert cli(lone.home, "connect", absent).returncode == 1

    assert lone.stderr == before


# ---------------------------------------------------------------------------
# A daemon that cannot start says why


@pytest.mark.parametrize(
    ("home_name", "listen", "message"),
    [
        ("", "/ip4/127.0.0.1/udp/4690", "must be TCP"),
        ("h" * 100, "/ip4/127.0.0.1/tcp/0", "use a shorter --home"),
    ],
    ids=["udp-listen-address", "socket-path-too-long"],
)
def test_a_daemon_that_cannot_start_says_why_in_one_line(
    daemons: Daemons, home_name: str, listen: str, message: str
) -> None:
    home = daemons.new_home(home_name)

    result = daemons.refused(home, "--listen", listen, "--no-mdns")

    assert result.returncode == 1
    assert message in one_error_line(result)


def test_a_daemon_whose_port_is_taken_exits_instead_of_running_unreachable(
    daemons: Daemons,
) -> None:
    home = daemons.new_home()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = daemons.refused(home, "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--no-mdns")

    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") and str(port) in last, result.stderr


# ---------------------------------------------------------------------------
# Stopping


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "p2pmarket stop"])
def test_a_daemon_stops_cleanly_and_frees_its_home_for_the_next(daemons: Daemons, how: str) -> None:
    first = daemons.start()

    if how == "p2pmarket stop":
        stop = cli(first.home, "stop")
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout.strip() == "daemon stopped"
        status = first.wait()
    else:
        status = first.stop(signal.Signals[how])

    assert status == 0, first.stderr
    assert first.stdout.drain()[-1] == "stopped"
    assert "Traceback" not in first.stderr, first.stderr
    assert not first.socket.exists()
    # The store's lock and the socket path are free: the next daemon starts at once.
    second = daemons.start(first.home)
    assert second.peer_id == first.peer_id
    assert cli_json(first.home, "status")["online"] is True


def test_a_killed_daemon_leaves_a_stale_socket_that_misleads_nobody(daemons: Daemons) -> None:
    crashed = daemons.start()

    assert crashed.crash() == -signal.SIGKILL
    assert crashed.socket.exists()  # nobody was left to remove it
    assert NOT_RUNNING in one_error_line(cli(crashed.home, "peers"))
    assert cli_json(crashed.home, "status")["online"] is False
    # The next daemon replaces the stale socket and takes the store.
    daemons.start(crashed.home)
    assert cli_json(crashed.home, "status")["online"] is True


def test_a_trade_with_the_cli_from_offer_to_a_contract_both_can_show(daemons: Daemons) -> None:
    buyer, seller = daemons.start_all(2)
    assert cli(buyer.home, "connect", seller.address).returncode == 0
    listing = create_listing(seller.home, "Kamera analog")
    wait_for(lambda: len(search_ids(buyer.home, "kamera")), 1, "the buyer sees the listing")

    offered = cli_json(buyer.home, "trade", "offer", listing, "--price", "1200000", "--note", "COD")
    trade = offered["trade"]
    assert offered["state"] == "negotiating" and offered["price"]["amount"] == 1_200_000_00
    wait_for(lambda: [t["trade"] for t in cli_json(seller.home, "trade", "list")], [trade], "offer")

    refused = cli(seller.home, "trade", "mark-paid", trade)
    assert refused.returncode == 1 and "cannot take the step 'paid'" in one_error_line(refused)
    assert cli_json(seller.home, "trade", "accept", trade)["state"] == "agreed"
    wait_for(lambda: cli_json(buyer.home, "trade", "show", trade)["state"], "agreed", "accept")

    shown = cli_json(buyer.home, "trade", "show", trade)
    assert shown["contract"]["verified"] is True
    assert cli(buyer.home, "trade", "complete", trade).returncode == 0
    wait_for(lambda: cli_json(seller.home, "trade", "show", trade)["state"], "completed", "done")

    # The buyer reviews the seller; the seller's daemon gets it by gossip, and the
    # buyer's search shows and ranks the seller by it.
    bad = cli(buyer.home, "review", trade, "--stars", "6")
    assert bad.returncode == 2 and "--stars" in one_error_line(bad)
    written = cli_json(buyer.home, "review", trade, "--stars", "5", "--text", "Mantap")
    assert (written["stars"], written["subject"], written["reviewer_role"]) == (
        5,
        seller.peer_id,
        "buyer",
    )
    wait_for(lambda: cli_json(seller.home, "reviews")["reputation"]["reviews"], 1, "review")
    about = cli_json(seller.home, "reviews", seller.peer_id)
    assert [r["text"] for r in about["reviews"]] == ["Mantap"]
    assert about["reputation"]["trades_as_seller"] == 1
    hits = cli_json(buyer.home, "search", "kamera", "--sort", "rating")["results"]
    assert hits[0]["seller_reputation"]["reviews"] == 1
    assert "★3.2 (1 review)" in cli(buyer.home, "search", "kamera").stdout
    assert search_ids(buyer.home, "kamera", "--min-rating", "3") == [listing]
    assert search_ids(buyer.home, "kamera", "--min-rating", "4.5") == []
    shown = cli(buyer.home, "profile", "show", seller.peer_id)
    assert shown.returncode == 0 and "1 as seller" in shown.stdout
