"""The per-seller publish limit: a token bucket per author key, bounded in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from p2pmarket.errors import ConfigError
from p2pmarket.home import Config
from p2pmarket.network.config import NetworkConfig
from p2pmarket.sellerlimit import MAX_SELLERS, SellerLimits

ALICE = b"a" * 32
BOB = b"b" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spend(limits: SellerLimits, key: bytes) -> int:
    """Charge ``key`` while it is allowed; return how many records went through."""
    taken = 0
    while limits.allows(key):
        limits.charge(key)
        taken += 1
        assert taken <= 10_000
    return taken


def test_a_new_seller_gets_the_whole_burst_and_then_nothing() -> None:
    limits = SellerLimits(rate=2.0, burst=5, clock=Clock())
    assert spend(limits, ALICE) == 5
    assert not limits.allows(ALICE)
    assert limits.wait(ALICE) == pytest.approx(0.5)


def test_the_bucket_refills_at_the_rate_and_never_past_the_burst() -> None:
    clock = Clock()
    limits = SellerLimits(rate=2.0, burst=5, clock=clock)
    spend(limits, ALICE)
    clock.now += 1.0
    assert spend(limits, ALICE) == 2  # two a second
    clock.now += 0.25
    assert not limits.allows(ALICE)  # half a token is not a record
    assert limits.wait(ALICE) == pytest.approx(0.25)
    clock.now += 3600
    assert limits.tokens(ALICE) == 5
    assert spend(limits, ALICE) == 5  # an hour idle buys one burst, not 7,200


def test_sellers_have_separate_buckets() -> None:
    limits = SellerLimits(rate=1.0, burst=3, clock=Clock())
    assert spend(limits, ALICE) == 3
    assert spend(limits, BOB) == 3
    assert not limits.allows(ALICE)


def test_checking_a_seller_costs_no_memory() -> None:
    limits = SellerLimits(rate=1.0, burst=3, clock=Clock())
    for n in range(1000):
        assert limits.allows(n.to_bytes(32, "big"))
        limits.wait(n.to_bytes(32, "big"))
    assert len(limits) == 0


def test_an_empty_bucket_stays_at_zero() -> None:
    # A peer stores nothing past the limit, so it charges nothing past it either:
    # charging an empty bucket (our own seeded history) must not push it below.
    clock = Clock()
    limits = SellerLimits(rate=1.0, burst=3, clock=clock)
    for _ in range(10):
        limits.charge(ALICE)
    assert limits.tokens(ALICE) == 0
    clock.now += 1
    assert limits.allows(ALICE)


def test_history_can_be_charged_at_its_own_times() -> None:
    clock = Clock()
    limits = SellerLimits(rate=0.1, burst=3, clock=clock)
    for at in (clock.now - 10, clock.now - 9, clock.now - 1):
        limits.charge(ALICE, at)
    # 3 - 1 at -10 s, + 0.1 - 1 at -9 s, + 0.8 - 1 at -1 s, + 0.1 by now.
    assert limits.tokens(ALICE) == pytest.approx(1.0)


def test_fresh_keys_cannot_grow_the_table_past_its_bound() -> None:
    clock = Clock()
    limits = SellerLimits(rate=1.0, burst=3, clock=clock, max_sellers=100)
    for n in range(5000):
        limits.charge(n.to_bytes(32, "big"))
        clock.now += 0.001
    assert len(limits) == 100


def test_the_least_recently_charged_seller_is_forgotten_first() -> None:
    clock = Clock()
    limits = SellerLimits(rate=0.001, burst=3, clock=clock, max_sellers=3)
    spend(limits, ALICE)
    for n in range(2):
        limits.charge(n.to_bytes(32, "big"))
    limits.charge(ALICE, clock.now)  # ALICE is now the most recent…
    limits.charge(b"x" * 32)  # …so key 0 goes, not ALICE
    assert not limits.allows(ALICE)
    assert limits.tokens((0).to_bytes(32, "big")) == 3
    assert limits.tokens((1).to_bytes(32, "big")) == 2


def test_the_default_table_stays_small_at_its_bound() -> None:
    # MAX_SELLERS buckets: measured here, to back the figure in the docs.
    limits = SellerLimits(rate=3.0, burst=500, clock=Clock())
    before = _size(limits)
    for n in range(MAX_SELLERS + 500):
        limits.charge(n.to_bytes(32, "big"))
    assert len(limits) == MAX_SELLERS
    per_seller = (_size(limits) - before) / MAX_SELLERS
    assert per_seller < 400, per_seller


def _size(limits: SellerLimits) -> int:
    buckets = limits._buckets
    total = sys.getsizeof(buckets)
    for key, bucket in buckets.items():
        total += sys.getsizeof(key) + sys.getsizeof(bucket) + 2 * sys.getsizeof(bucket.tokens)
    return total


def test_defaults_are_above_what_one_core_can_stamp() -> None:
    # ~0.45 s of one core per stamp (crypto/stamp.py): ~8,000 records an hour.
    config = NetworkConfig()
    assert config.seller_rate * 3600 > 8_000
    assert config.seller_burst == 500
    assert Config().network().seller_rate == config.seller_rate
    assert Config().network().seller_burst == config.seller_burst


def test_the_limit_is_set_in_config_toml(tmp_path: Path) -> None:
    config = Config.from_mapping({"seller_rate": 0.5, "seller_burst": 20}, "config.toml")
    assert config.network().seller_rate == 0.5
    assert config.network().seller_burst == 20.0
    with pytest.raises(ConfigError, match="seller_rate must be a number above 0"):
        Config.from_mapping({"seller_rate": 0}, "config.toml")
    with pytest.raises(ConfigError, match="seller_burst must be a number of at least 1"):
        Config.from_mapping({"seller_burst": "many"}, "config.toml")
