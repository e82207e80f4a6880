"""Resource limits as pure rules: what config.toml sets, and which connections
the gate closes (network/limits.py). The real-host side is
tests/network/test_limits.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from p2pmarket.errors import ConfigError
from p2pmarket.home import Config, Home
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.limits import Conn, Limits, connection_config, to_close

LIMITS = Limits(
    inbound=3,
    outbound_room=2,
    per_peer=2,
    per_ip=2,
    streams_per_peer=8,
    limit_loopback=False,
)


def conn(
    peer: str,
    opened: int,
    *,
    ip: str = "203.0.113.1",
    inbound: bool = True,
    protected: bool = False,
    score: float = 0.0,
) -> Conn:
    return Conn(f"{peer}#{opened}", peer, ip, inbound, opened, protected, score)


def closed(conns: list[Conn], limits: Limits = LIMITS) -> set[object]:
    return {c.ref for c in to_close(conns, limits)}


# -- config.toml ---------------------------------------------------------------


def test_config_toml_limits_reach_the_network_config(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_file.write_text(
        "max_connections = 40\nmax_connections_per_peer = 2\nmax_connections_per_ip = 4\n"
        "max_streams_per_peer = 16\ngossip_rate = 20\ngossip_burst = 200.5\n",
        encoding="utf-8",
    )
    network = home.load_config().network()
    assert (
        network.max_connections,
        network.max_connections_per_peer,
        network.max_connections_per_ip,
        network.max_streams_per_peer,
        network.rate,
        network.burst,
    ) == (40, 2, 4, 16, 20.0, 200.5)
    assert Limits.of(network).total == 40 + NetworkConfig().outbound_room


def test_without_config_toml_the_defaults_are_the_network_defaults(tmp_path: Path) -> None:
    network = Home(tmp_path).load_config().network()
    default = NetworkConfig()
    assert Limits.of(network) == Limits.of(default)
    assert (network.rate, network.burst) == (default.rate, default.burst)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_connections", "0"),
        ("max_connections", "-5"),
        ("max_connections", "2.5"),
        ("max_connections", '"many"'),
        ("max_connections", "true"),
        ("max_connections_per_peer", "0"),
        ("max_connections_per_ip", "1000000"),
        ("max_streams_per_peer", "0"),
        ("gossip_rate", "0"),
        ("gossip_rate", "-1.0"),
        ("gossip_rate", "nan"),
        ("gossip_rate", '"fast"'),
        ("gossip_burst", "0.5"),
        ("gossip_burst", "inf"),
    ],
)
def test_a_bad_limit_in_config_toml_is_a_config_error_naming_the_key(
    tmp_path: Path, key: str, value: str
) -> None:
    home = Home(tmp_path)
    home.config_file.write_text(f"{key} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{key} must be"):
        home.load_config()


def test_libp2p_is_told_the_total_of_both_directions() -> None:
    config = connection_config(LIMITS)
    assert config.max_connections == LIMITS.total == 5
    assert config.max_connections_per_peer == LIMITS.per_peer
    # py-libp2p's own watermarks must fit under the cap (it raises otherwise).
    big = connection_config(Limits.of(replace(NetworkConfig(), max_connections=1000)))
    assert big.max_connections == 1000 + NetworkConfig().outbound_room


def test_config_defaults_match_the_network_defaults() -> None:
    config, network = Config(), NetworkConfig()
    assert config.max_connections == network.max_connections
    assert config.max_connections_per_peer == network.max_connections_per_peer
    assert config.max_connections_per_ip == network.max_connections_per_ip
    assert config.max_streams_per_peer == network.max_streams_per_peer


# -- the gate -------------------------------------------------------------------


def test_within_every_limit_nothing_is_closed() -> None:
    conns = [conn("a", 1, ip="1.1.1.1"), conn("b", 2, ip="2.2.2.2"), conn("c", 3, ip="3.3.3.3")]
    assert closed(conns) == set()


def test_over_the_inbound_cap_the_newest_goes() -> None:
    conns = [conn(p, i, ip=f"10.0.0.{i}") for i, p in enumerate("abcd", start=1)]
    assert closed(conns) == {"d#4"}


def test_over_the_inbound_cap_a_misbehaving_peer_goes_before_the_newcomer() -> None:
    conns = [
        conn("a", 1, ip="10.0.0.1"),
        conn("bad", 2, ip="10.0.0.2", score=-20.0),
        conn("c", 3, ip="10.0.0.3"),
        conn("new", 4, ip="10.0.0.4"),
    ]
    assert closed(conns) == {"bad#2"}


def test_our_dials_and_protected_peers_do_not_count_against_the_inbound_cap() -> None:
    conns = [
        conn("boot", 1, ip="10.0.0.1", protected=True, score=-100.0),
        conn("a", 2, ip="10.0.0.2"),
        conn("b", 3, ip="10.0.0.3"),
        conn("out1", 4, ip="10.0.0.4", inbound=False),
        conn("out2", 5, ip="10.0.0.5", inbound=False),
        conn("c", 6, ip="10.0.0.6"),
    ]
    # Four inbound, one over: not the protected peer even with the worst score.
    assert closed(conns) == {"c#6"}


def test_a_peer_over_its_connection_cap_loses_its_newest_inbound_ones() -> None:
    conns = [
        conn("a", 1, inbound=False),
        conn("a", 2),
        conn("a", 3),
        conn("a", 4),
    ]
    assert closed(conns) == {"a#4", "a#3"}


def test_one_ip_over_its_cap_loses_its_worst_connections_and_loopback_is_exempt() -> None:
    conns = [conn("a", 1), conn("b", 2, score=-5.0), conn("c", 3)]
    assert closed(conns) == {"b#2"}
    local = [conn(p, i, ip="127.0.0.1") for i, p in enumerate("abc", start=1)]
    assert closed(local) == set()
    assert closed(local, replace(LIMITS, limit_loopback=True)) == {"c#3"}
