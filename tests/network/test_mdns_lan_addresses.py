"""mDNS advertises addresses a LAN peer can dial (_libp2p_fixes, item 9).

py-libp2p 0.8.1 advertised a wildcard listener as ``/ip4/0.0.0.0/tcp/…``; a peer
dialling that reaches its own machine, so two daemons on one LAN never met
(measured with two network namespaces on a veth pair: 0 peers after 20 s without
the fix, connected within 2 s with it).
"""

from __future__ import annotations

import multiaddr  # type: ignore[import-untyped]
from libp2p.discovery.mdns.broadcaster import PeerBroadcaster
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from p2pmarket.network import _libp2p_fixes
from p2pmarket.network._libp2p_fixes import _lan_mdns_addrs, _usable_mdns_peer

PEER = "12D3KooWG9G9Dhiypj5htefESqkm1Cf9mH2cxia34tRgtcVGM2XY"


def test_a_wildcard_is_advertised_as_the_lan_address_and_loopback_not_at_all() -> None:
    addrs = ["/ip4/0.0.0.0/tcp/4690", "/ip4/127.0.0.1/tcp/4691", "/ip4/10.0.0.9/tcp/4692"]
    assert _lan_mdns_addrs(addrs, ["192.168.1.5", "fe80::1"]) == [
        "/ip4/192.168.1.5/tcp/4690",
        "/ip4/10.0.0.9/tcp/4692",
    ]
    assert _lan_mdns_addrs(["/ip6/::/tcp/4690"], ["192.168.1.5", "fd00::5"]) == [
        "/ip6/fd00::5/tcp/4690"
    ]
    # No LAN address (mDNS's probe fell back to 127.0.0.1): nothing to advertise.
    assert _lan_mdns_addrs(["/ip4/0.0.0.0/tcp/4690"], ["127.0.0.1"]) == []


def test_a_discovered_peer_keeps_only_addresses_that_do_not_dial_ourselves() -> None:
    peer = ID.from_base58(PEER)
    found = PeerInfo(
        peer,
        [
            multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/4690"),
            multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4690"),
            multiaddr.Multiaddr("/ip4/192.168.1.7/tcp/4690"),
        ],
    )
    kept = _usable_mdns_peer(found)
    assert [str(a) for a in kept.addrs] == ["/ip4/192.168.1.7/tcp/4690"]
    only_wildcard = PeerInfo(peer, [multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/4690")])
    assert _usable_mdns_peer(only_wildcard) is None
    assert _usable_mdns_peer(None) is None


def test_the_fix_is_installed_on_py_libp2p() -> None:
    _libp2p_fixes.apply()
    assert PeerBroadcaster._resolve_host_addrs.__qualname__.endswith("lan_addrs")
