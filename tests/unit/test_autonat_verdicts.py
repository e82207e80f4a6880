"""AutoNAT's pure rules (p2pmarket/network/autonat_verdicts.py): servers'
verdicts -> status, the server's rate limit, the client's backoff."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2pmarket.network.autonat_verdicts import (
    MAX_SERVERS_REMEMBERED,
    Backoff,
    SlidingWindow,
    Verdicts,
    confirmations_for,
)


def test_confirmations_are_sized_to_the_servers_there_are() -> None:
    assert [confirmations_for(n) for n in range(5)] == [1, 1, 2, 2, 2]
    assert confirmations_for(10, wanted=4) == 4
    assert confirmations_for(3, wanted=4) == 3


def test_no_verdict_is_unknown() -> None:
    assert Verdicts(ttl=60).status(1, now=0) == "unknown"


def test_enough_successes_make_public_and_their_addresses_are_confirmed() -> None:
    v = Verdicts(ttl=60)
    v.record("1.1.1.1", True, 0, "/ip4/5.5.5.5/tcp/1")
    assert v.status(2, now=1) == "unknown"
    v.record("2.2.2.2", True, 1, "/ip4/5.5.5.5/tcp/1")
    assert v.status(2, now=1) == "public"
    assert v.confirmed_addrs(now=1) == ("/ip4/5.5.5.5/tcp/1",)


def test_enough_failures_make_private() -> None:
    v = Verdicts(ttl=60)
    v.record("1.1.1.1", False, 0)
    v.record("2.2.2.2", False, 0)
    assert v.status(2, now=0) == "private"
    assert v.confirmed_addrs(now=0) == ()


def test_one_server_counts_once_its_latest_verdict_wins() -> None:
    v = Verdicts(ttl=60)
    for t in range(5):
        v.record("1.1.1.1", True, t, "/ip4/5.5.5.5/tcp/1")
    assert v.status(2, now=5) == "unknown"
    v.record("1.1.1.1", False, 6)
    assert v.status(1, now=6) == "private"


def test_a_tie_stays_public_a_majority_of_failures_is_private() -> None:
    v = Verdicts(ttl=60)
    v.record("1.1.1.1", True, 0, "/a")
    v.record("2.2.2.2", True, 0, "/a")
    v.record("3.3.3.3", False, 0)
    v.record("4.4.4.4", False, 0)
    assert v.status(2, now=0) == "public"
    v.record("5.5.5.5", False, 0)
    assert v.status(2, now=0) == "private"


def test_verdicts_expire() -> None:
    v = Verdicts(ttl=10)
    v.record("1.1.1.1", True, 0, "/a")
    assert v.status(1, now=10) == "public"
    assert v.status(1, now=10.5) == "unknown"
    assert v.confirmed_addrs(now=11) == ()


def test_confirmed_addresses_are_newest_first_without_repeats() -> None:
    v = Verdicts(ttl=60)
    v.record("1.1.1.1", True, 0, "/old")
    v.record("2.2.2.2", True, 1, "/new")
    v.record("3.3.3.3", True, 2, "/new")
    assert v.confirmed_addrs(now=2) == ("/new", "/old")


def test_only_so_many_servers_are_remembered_oldest_go_first() -> None:
    v = Verdicts(ttl=1e9)
    v.record("first", False, 0)
    for i in range(MAX_SERVERS_REMEMBERED):
        v.record(f"s{i}", True, 1 + i, "/a")
    assert v.status(MAX_SERVERS_REMEMBERED, now=100) == "public"  # "first" was dropped


@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=30),
    st.integers(1, 4),
)
def test_status_agrees_with_a_plain_count_of_latest_verdicts(
    events: list[tuple[int, bool]], required: int
) -> None:
    v = Verdicts(ttl=1e9)
    latest: dict[int, bool] = {}
    for t, (server, reached) in enumerate(events):
        v.record(str(server), reached, t, "/a")
        latest[server] = reached
    ok = sum(latest.values())
    bad = len(latest) - ok
    expected = (
        "public"
        if ok >= required and ok >= bad
        else "private"
        if bad >= required and bad > ok
        else "unknown"
    )
    assert v.status(required, now=len(events)) == expected


def test_the_rate_limit_is_per_asker_and_in_total() -> None:
    w = SlidingWindow(limit=2, total=3, window=10)
    assert [w.allow("a", 0), w.allow("a", 1), w.allow("a", 2)] == [True, True, False]
    assert w.allow("b", 3) is True
    assert w.allow("c", 4) is False  # 3 in total within the window
    assert w.allow("a", 10) is True  # a's first has left the window, and the total's
    assert w.allow("c", 11) is True


def test_backoff_doubles_up_to_its_ceiling_and_resets() -> None:
    b = Backoff(low=2, high=10)
    assert [b.failed() for _ in range(5)] == [2, 4, 8, 10, 10]
    b.reset()
    assert b.failed() == 2
