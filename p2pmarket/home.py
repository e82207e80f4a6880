"""The home folder and its configuration.

A home holds everything one node owns::

    config.toml      optional settings (see Config)
    identity.key     the node's key file (0600)
    store/           the LevelDB store
    peers            peers this node has connected to, redialled after a restart
    node.sock        the running daemon's control socket (0600)
    daemon.lock      held (flock) by the daemon while it runs; see daemonlock

The home must be the user's alone (see localtrust): whoever can write it could
swap the key or the control socket.

Settings come from defaults, then ``config.toml``; the CLI applies its flags on top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from p2pmarket.errors import ConfigError, InvalidInput
from p2pmarket.money import check_currency
from p2pmarket.network.config import DEFAULT_LISTEN, NetworkConfig
from p2pmarket.records import CATEGORY_RE, DAY, MAX_LIFETIME, MAX_LOCATION

HOME_ENV = "P2PMARKET_HOME"


def default_home() -> Path:
    """``$P2PMARKET_HOME``, else the per-user data folder (``~/.local/share/p2pmarket``…)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("p2pmarket", appauthor=False)


@dataclass(frozen=True, slots=True)
class Config:
    """Settings of one home. Bad values raise ConfigError naming the key."""

    currency: str = "IDR"
    location: str = ""
    listing_days: int = 30
    listen: tuple[str, ...] = DEFAULT_LISTEN  # multiaddrs the daemon listens on
    bootstrap: tuple[str, ...] = ()  # multiaddrs (with /p2p/<id>) dialled at start
    mdns: bool = True  # find peers on the local network
    # Reachability (docs/PROTOCOL.md, "Reachability"): the DHT is a server only
    # while AutoNAT says peers can dial us ("auto"), or always/never.
    dht_mode: str = "auto"
    relay_service: bool = True  # relay for peers behind NAT while we are public
    upnp: bool = True  # ask the router to forward our port (UPnP IGD)
    follow: tuple[str, ...] = ()  # categories to follow; empty means all
    max_listings: int = 1_000_000  # cache cap: past it the oldest others' listings go
    sync_minutes: int = 10  # catch up with one peer this often (0: only on connect)
    read_receipts: bool = True  # tell senders when we have read their messages
    mailbox_mb: int = 64  # others' offline mail we hold at most (0: hold none)
    # Resource limits: see NetworkConfig and docs/PROTOCOL.md, "Resource limits".
    max_connections: int = 100  # connections peers dial to us (ours get 25 more)
    max_connections_per_peer: int = 3
    max_connections_per_ip: int = 8  # inbound; loopback is not counted
    max_streams_per_peer: int = 64  # inbound streams one peer has open at once
    gossip_rate: float = 100.0  # gossip records a second one peer may send us…
    gossip_burst: float = 1000.0  # …in bursts of up to this many
    seller_rate: float = 3.0  # new records a second we take from one seller…
    seller_burst: float = 500.0  # …in bursts of up to this many (however forwarded)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], origin: str) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{origin}: unknown setting {sorted(unknown)[0]!r}")
        for key in ("listen", "bootstrap", "follow"):
            value = data.get(key, ())
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{origin}: {key} must be a list of text")
            if key in data:
                data = {**data, key: tuple(value)}
        if data.get("dht_mode", "auto") not in ("auto", "server", "client"):
            raise ConfigError(f'{origin}: dht_mode must be "auto", "server" or "client"')
        for key in ("mdns", "read_receipts", "relay_service", "upnp"):
            if not isinstance(data.get(key, True), bool):
                raise ConfigError(f"{origin}: {key} must be true or false")
        # Light checks, without importing multiaddr (every command reads the
        # config); the daemon parses the addresses fully when it starts.
        for address in data.get("listen", ()):
            if not address.startswith("/") or "/tcp/" not in address:
                raise ConfigError(f"{origin}: listen {address!r} must be a TCP multiaddr")
        for address in data.get("bootstrap", ()):
            if not address.startswith("/") or "/p2p/" not in address:
                raise ConfigError(
                    f"{origin}: bootstrap {address!r} must be a multiaddr ending in /p2p/<peer id>"
                )
        for category in data.get("follow", ()):
            if not CATEGORY_RE.match(category):
                raise ConfigError(f"{origin}: follow {category!r} is not a category")
        config = cls(**data)
        if not isinstance(config.currency, str):
            raise ConfigError(f'{origin}: currency must be text, e.g. "IDR"')
        try:
            check_currency(config.currency)
        except InvalidInput as exc:
            raise ConfigError(f"{origin}: currency: {exc}") from None
        if not isinstance(config.location, str) or len(config.location) > MAX_LOCATION:
            raise ConfigError(
                f"{origin}: location must be text of at most {MAX_LOCATION} characters"
            )
        days = config.listing_days
        if type(days) is not int or not 1 <= days <= MAX_LIFETIME // DAY:
            raise ConfigError(f"{origin}: listing_days must be a whole number from 1 to 90")
        for key, low in (("max_listings", 1000), ("sync_minutes", 0), ("mailbox_mb", 0)):
            value = getattr(config, key)
            if type(value) is not int or not low <= value <= 10**9:
                raise ConfigError(f"{origin}: {key} must be a whole number of at least {low}")
        _check_limits(config, origin)
        return replace(config, currency=check_currency(config.currency))

    def network(self) -> NetworkConfig:
        return NetworkConfig(
            listen=self.listen,
            bootstrap=self.bootstrap,
            mdns=self.mdns,
            dht_mode=self.dht_mode,
            relay_service=self.relay_service,
            upnp=self.upnp,
            follow=self.follow,
            sync_interval=self.sync_minutes * 60.0,
            hold_mail=self.mailbox_mb > 0,
            max_connections=self.max_connections,
            max_connections_per_peer=self.max_connections_per_peer,
            max_connections_per_ip=self.max_connections_per_ip,
            max_streams_per_peer=self.max_streams_per_peer,
            rate=float(self.gossip_rate),
            burst=float(self.gossip_burst),
            seller_rate=float(self.seller_rate),
            seller_burst=float(self.seller_burst),
        )


def _check_limits(config: Config, origin: str) -> None:
    """The resource limits: whole numbers of at least 1; rates positive numbers."""
    for key in (
        "max_connections",
        "max_connections_per_peer",
        "max_connections_per_ip",
        "max_streams_per_peer",
    ):
        value = getattr(config, key)
        if type(value) is not int or not 1 <= value <= 100_000:
            raise ConfigError(f"{origin}: {key} must be a whole number from 1 to 100000")
    for kind in ("gossip", "seller"):
        rate, burst = getattr(config, f"{kind}_rate"), getattr(config, f"{kind}_burst")
        if type(rate) not in (int, float) or not 0 < rate <= 1e9:
            raise ConfigError(f"{origin}: {kind}_rate must be a number above 0 (records a second)")
        if type(burst) not in (int, float) or not 1 <= burst <= 1e9:
            raise ConfigError(f"{origin}: {kind}_burst must be a number of at least 1")


@dataclass(frozen=True, slots=True)
class Home:
    """Paths inside one home folder."""

    root: Path

    @property
    def key_file(self) -> Path:
        return self.root / "identity.key"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def peers_file(self) -> Path:
        return self.root / "peers"

    @property
    def control_socket(self) -> Path:
        return self.root / "node.sock"

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def initialised(self) -> bool:
        return self.key_file.exists()

    def load_config(self) -> Config:
        try:
            text = self.config_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Config()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {self.config_file}: {exc}") from None
        import tomllib  # here: most commands never read the config

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.config_file} is not valid TOML: {exc}") from None
        return Config.from_mapping(data, str(self.config_file))

    def require(self) -> None:
        """Fail clearly when the home was never initialised, or is not safe to use
        (other users can write it, or a folder above it)."""
        from p2pmarket.localtrust import check_home, check_private_file

        check_home(self.root)
        if not self.root.is_dir():
            raise ConfigError(
                f"no p2pmarket home at {self.root}: run `p2pmarket init` (or pass --home)"
            )
        if not self.initialised:
            raise ConfigError(f"{self.root} has no identity yet: run `p2pmarket init`")
        check_private_file(self.key_file)
