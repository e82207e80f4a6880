"""Our DHT shares its protocol id with the public IPFS DHT (py-libp2p 0.8.1
hard-codes ``/ipfs/kad/1.0.0``), so a node stores values only in our own
namespaces: anything else (an IPFS ``/ipns/`` or ``/pk/`` record, another
application's namespace, a key with no namespace) is refused, or any peer could
park data in every node's memory (docs/PROTOCOL.md, "DHT namespaces").
"""

from __future__ import annotations

import time

import trio
from conftest import Cluster, dht_value, eventually
from factories import SELLER, signed_listing
from libp2p.kad_dht.kad_dht import DHTMode
from raw_peer import raw_peer

from p2pmarket import records
from p2pmarket.network.dht import listing_key

FOREIGN_KEYS = ["/ipns/12D3KooWforeign", "/pk/12D3KooWforeign", "/other-app/x", "plain-key"]


async def test_a_dht_server_stores_our_namespaces_only(cluster: Cluster) -> None:
    _, b = await cluster.start(2)
    dht = b._network.routing.dht  # type: ignore[union-attr]
    # "auto": B serves the DHT once AutoNAT (A, on loopback) says it is public.
    await eventually(lambda: dht.mode == DHTMode.SERVER, timeout=20)
    ours = signed_listing(SELLER, created=int(time.time()))
    async with raw_peer() as raw:
        await raw.connect(b)
        with trio.fail_after(10):
            await raw.dht.put_value(listing_key(ours.id), records.encode(ours))
            for key in FOREIGN_KEYS:
                await raw.dht.put_value(key, b"not ours")
        # The same peer's put in our namespace is stored: the puts did reach B.
        await eventually(lambda: dht_value(b, listing_key(ours.id)) == records.encode(ours))
        for key in FOREIGN_KEYS:
            assert dht_value(b, key) is None, key
