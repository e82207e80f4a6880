"""Reachability settings in config.toml reach the network config, and bad ones
are refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pmarket.errors import ConfigError
from p2pmarket.home import Home
from p2pmarket.network.config import NetworkConfig


def test_reachability_settings_reach_the_network_config(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_file.write_text(
        'dht_mode = "client"\nrelay_service = false\nupnp = false\n', encoding="utf-8"
    )
    network = home.load_config().network()
    assert (network.dht_mode, network.relay_service, network.upnp) == ("client", False, False)


def test_by_default_the_dht_follows_autonat_and_a_public_node_relays(tmp_path: Path) -> None:
    network = Home(tmp_path).load_config().network()
    assert (network.dht_mode, network.relay_service, network.upnp) == ("auto", True, True)
    assert network == NetworkConfig(sync_interval=network.sync_interval)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('dht_mode = "sometimes"', "dht_mode"),
        ('relay_service = "yes"', "relay_service"),
        ("upnp = 1", "upnp"),
    ],
)
def test_a_bad_reachability_setting_is_refused_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    home = Home(tmp_path)
    home.config_file.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=key):
        home.load_config()
