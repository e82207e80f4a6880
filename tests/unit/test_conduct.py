"""What peers owe for misbehaving, and bans (network/conduct.py): pure, with
the clock passed in."""

from __future__ import annotations

from p2pmarket.network.conduct import (
    BAN_THRESHOLD,
    FIRST_BAN,
    MAX_BAN,
    MAX_ENTRIES,
    BanList,
    Conduct,
)


def test_a_debt_decays_by_one_percent_a_second() -> None:
    conduct = Conduct()
    conduct.charge("p", 10.0, now=100.0)
    assert conduct.owed("p", 100.0) == 10.0
    assert abs(conduct.owed("p", 110.0) - 10.0 * 0.99**10) < 1e-9
    assert conduct.owed("stranger", 100.0) == 0.0


def test_the_charge_that_reaches_the_threshold_bans_and_says_until_when() -> None:
    conduct = Conduct()
    for _ in range(4):
        assert conduct.charge("p", 10.0, now=0.0) is None
    until = conduct.charge("p", 10.0, now=0.0)
    assert until == FIRST_BAN
    assert conduct.owed("p", 0.0) == BAN_THRESHOLD
    assert conduct.banned("p", 1.0) == FIRST_BAN - 1
    assert conduct.charge("p", 10.0, now=1.0) is None  # banned already: not again
    assert conduct.banned("p", FIRST_BAN) is None  # served


def test_each_repeat_ban_doubles_up_to_a_day() -> None:
    bans = BanList()
    now, lengths = 0.0, []
    for _ in range(10):
        until = bans.ban("p", now)
        lengths.append(until - now)
        now = until + 1
    assert lengths[:3] == [FIRST_BAN, 2 * FIRST_BAN, 4 * FIRST_BAN]
    assert max(lengths) == MAX_BAN


def test_the_ban_table_stays_bounded_against_fresh_identities() -> None:
    bans = BanList()
    for i in range(MAX_ENTRIES + 500):
        bans.ban(f"sybil-{i}", now=float(i))
    assert len(bans.entries) <= MAX_ENTRIES
    assert bans.banned(f"sybil-{MAX_ENTRIES + 499}", MAX_ENTRIES + 499.0)  # the newest kept
