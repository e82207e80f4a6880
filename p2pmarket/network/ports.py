"""Refuse a listen port that another program already listens on.

py-libp2p's TCP transport (through trio) binds with ``SO_REUSEPORT``, so a second
daemon on the same port binds without an error and the kernel then splits the
incoming connections between the two: each node sees half its peers, silently.
Before the node starts, each fixed TCP port it will listen on is bound once the
ordinary way (``SO_REUSEADDR`` only, which a port in TIME_WAIT after a restart
allows, but not one with a live listener) and released at once.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from p2pmarket.errors import NetworkError

__all__ = ["PortInUse", "check_listen_ports"]


class PortInUse(NetworkError):
    """Another program listens on a port this node was told to listen on."""


def _host_port(address: str) -> tuple[int, str, int] | None:
    """(family, host, port) of ``/ip4|ip6/<host>/tcp/<port>…``; None for anything
    else (port 0, DNS names, other transports), which needs no check."""
    parts = address.split("/")
    if len(parts) < 5 or parts[0] != "" or parts[3] != "tcp":
        return None
    family = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}.get(parts[1])
    if family is None or not parts[4].isdigit():
        return None
    port = int(parts[4])
    return None if port == 0 else (family, parts[2], port)


def check_listen_ports(listen: Iterable[str]) -> None:
    """Raise :class:`PortInUse` if something already listens on one of ``listen``."""
    for address in listen:
        target = _host_port(address)
        if target is None:
            continue
        family, host, port = target
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(
                        f"TCP port {port} on {host} is already in use (another p2pmarket "
                        "daemon?): stop that program, or choose another port with --listen "
                        "(e.g. /ip4/0.0.0.0/tcp/4691)"
                    ) from None
                # Anything else (an address not on this machine…) is left for the
                # transport to report as it always has.
