"""Peer addresses typed by people: checked without importing libp2p.

``p2pmarket connect`` and ``--bootstrap`` check their address before anything
else, so a typo is one line at once rather than after the ~1.5 s libp2p import.
"""

from __future__ import annotations

from typing import Any

import multiaddr  # type: ignore[import-untyped]

from p2pmarket.errors import InvalidInput

_EXAMPLE = "/ip4/192.168.1.5/tcp/4690/p2p/12D3KooW…"


def check_peer_address(text: str) -> Any:
    """The multiaddr in ``text`` if it names a peer (``…/p2p/<peer id>``); else
    InvalidInput saying what is wrong."""
    try:
        addr = multiaddr.Multiaddr(text.strip())
    except Exception:  # multiaddr raises many types for bad text
        raise InvalidInput(f"{text!r} is not a peer address; expected e.g. {_EXAMPLE}") from None
    try:
        peer = addr.value_for_protocol("p2p")
    except Exception:
        peer = None
    if not peer:
        raise InvalidInput(
            f"{text!r} has no peer id: give the full address, ending in /p2p/12D3KooW…"
        )
    return addr


def parse_peer_address(text: str) -> Any:
    """A libp2p PeerInfo for ``text`` (imports libp2p: for the network layer only)."""
    from libp2p.peer.peerinfo import info_from_p2p_addr

    addr = check_peer_address(text)
    try:
        return info_from_p2p_addr(addr)
    except Exception:
        raise InvalidInput(f"{text!r} does not name a valid peer id") from None
