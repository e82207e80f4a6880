"""The attacker side of the flood benchmark (:mod:`bench.flood`), in a process of its own.

The attackers are bare py-libp2p hosts with GossipSub and none of our code (the
approach of the test suite's ``tests/network/raw_peer.py``, rebuilt here since
the benchmarks do not import from ``tests/``): they speak the node's wire
protocols, sign every pubsub message with their host key as the network
requires, and publish whatever record bytes they are given. They run in their
own interpreter so that the attackers' work (key generation, handshakes,
building and publishing records) is not charged to the honest nodes' process,
and so that the process's CPU time is the attack's own cost.

Modes, over one ``budget`` of records and a deadline:

* **one identity** (``swarm`` false): one key, one connection; it publishes
  while it is connected and, once cut off, redials every ``REDIAL_GAP``
  seconds until the deadline, as a persistent attacker would;
* **a Sybil swarm** (``swarm`` true): ``SYBIL_CONCURRENCY`` workers, each
  making fresh identities one after another (a new key pair, a new host, a new
  connection), each of which publishes until the node hangs up on it, or, with
  ``per_identity``, sends that many records and leaves on its own: an attacker
  who knows the ban threshold stays under it and is never banned.

Records (``records``): ``bad-signature`` is a well-formed, canonically encoded
listing whose signature does not verify (the node decodes it and runs one
ed25519 verify); ``bad-stamp`` is a listing signed correctly by the identity's
own fresh key whose proof-of-work stamp fails the network's difficulty (the
node also runs the signature check and one Argon2id evaluation, the most an
invalid record can cost it). Every record is distinct: an identical one would
be dropped as already seen before it reached the validator.

Prints one JSON line (``RESULT_PREFIX``) with the figures, then exits at once
without tearing the hosts down: the node sees their connections close.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final

import trio

from bench.cluster import RESULT_PREFIX, Json
from p2pmarket import records
from p2pmarket.crypto import stamp
from p2pmarket.crypto.signing import Signer
from p2pmarket.records import DAY, Listing

CATEGORY: Final = "vehicles/bicycles"
STARTED: Final = "FLOOD-STARTED"  # printed once the first attacker is connected
SYBIL_CONCURRENCY: Final = 8  # identities connected at once
PER_IDENTITY_CAP: Final = 1000  # a Sybil never cut off stops here (the node's burst is 1,000)
REDIAL_GAP: Final = 0.1  # seconds between a cut-off identity's redials
CONNECT_TIMEOUT: Final = 5.0  # to connect and learn the node's subscriptions
LINGER: Final = 3.0  # seconds an identity waits to be cut off once its budget is spent
QUIET_LINGER: Final = 0.3  # …or, staying under the ban, before it leaves on its own

MakeRecord = Callable[[Signer, int], bytes]


def _draft(seller: bytes, n: int) -> Listing:
    now = int(time.time())
    return Listing(
        seller=seller,
        nonce=os.urandom(16),
        seq=1,
        kind="sell",
        title=f"Sepeda lipat murah {n}",
        description="Harga nego, COD Sleman",
        price=150_000_000,
        currency="IDR",
        quantity=1,
        category=CATEGORY,
        tags=("sepeda",),
        location="Sleman",
        created=now,
        expires=now + 30 * DAY,
    )


def bad_signature(signer: Signer, n: int) -> bytes:
    """A listing that decodes but whose signature (random bytes) does not verify."""
    record = replace(
        _draft(signer.public_key, n),
        signature=os.urandom(64),
        stamp=os.urandom(stamp.NONCE_SIZE),
    )
    return records.encode(record)


def bad_stamp(signer: Signer, n: int) -> bytes:
    """A listing signed correctly by ``signer`` whose stamp is not worth the
    network's difficulty: stamped at 0 bits, and re-drawn while it happens to pass
    (half the time on a 1-bit test network)."""
    record = records.sign(_draft(signer.public_key, n), signer.sign, bits=0)
    while stamp.check(record.signature, record.stamp):
        record = replace(record, stamp=os.urandom(stamp.NONCE_SIZE), encoded=b"")
    return records.encode(record)


RECORDS: Final[dict[str, MakeRecord]] = {"bad-signature": bad_signature, "bad-stamp": bad_stamp}


@dataclass(slots=True)
class _State:
    budget: int
    deadline: float  # trio clock
    sent: int = 0  # records handed to pubsub while connected to the node
    making: float = 0.0  # seconds spent building records
    started: bool = False
    identities: list[Json] = field(default_factory=list)

    def more(self) -> bool:
        return self.sent < self.budget and trio.current_time() < self.deadline

    def mark_started(self) -> None:
        if not self.started:
            self.started = True
            print(STARTED, flush=True)


@dataclass(slots=True)
class _Peer:
    host: Any
    pubsub: Any


@asynccontextmanager
async def _peer(seed: bytes) -> AsyncIterator[_Peer]:
    """A bare py-libp2p host with GossipSub on 127.0.0.1, keyed by ``seed``."""
    import multiaddr  # type: ignore[import-untyped]
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service

    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(
        key_pair=create_new_key_pair(seed), listen_addrs=listen, muxer_preference="YAMUX"
    )
    gossipsub = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        heartbeat_initial_delay=0.1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    async with (
        host.run(listen),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        try:
            yield _Peer(host, pubsub)
        finally:
            # Hang up before the services stop (py-libp2p 0.8.1's pubsub fails on
            # a message arriving while it shuts down).
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 2):
                for peer in list(host.get_connected_peers()):
                    await host.disconnect(peer)


def _listening(peer: _Peer, entry: Any) -> bool:
    """Connected to the node, and its subscriptions known: a publish reaches it."""
    from p2pmarket.network.topics import ALL_LISTINGS

    return bool(
        entry.peer_id in peer.host.get_connected_peers()
        and entry.peer_id in peer.pubsub.peer_topics.get(ALL_LISTINGS, ())
    )


def _settled(peer: _Peer, entry: Any) -> bool:
    """Our pubsub has finished taking the node on: its whole subscription list
    read and our stream to it registered. Publishing before that sends each
    record two or three times: py-libp2p 0.8.1 queues a message for a connected
    peer not (yet) known to subscribe to all its topics (the category topic,
    which a default node never joins) and, once the peer is registered or
    subscribes to something, flushes that queue and replays its message cache
    to it. An invalid record sent again is checked and charged again."""
    from p2pmarket.network.topics import subscriptions

    known = peer.pubsub.peer_topics
    return entry.peer_id in peer.pubsub.peers and all(
        entry.peer_id in known.get(topic, ()) for topic in subscriptions(())
    )


async def _connect(peer: _Peer, entry: Any) -> bool:
    """Dial the node and wait until a publish would reach it; False if refused."""
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            await peer.host.connect(entry)
            while not (_listening(peer, entry) and _settled(peer, entry)):
                if entry.peer_id not in peer.host.get_connected_peers():
                    return False  # hung up on us (a banned identity)
                await trio.sleep(0.01)
            await trio.sleep(0.05)  # the flush and replay that follow registration
    except Exception:  # refused during the handshake, or too slow
        return False
    return True


async def _publish(peer: _Peer, state: _State, signer: Signer, make: MakeRecord) -> bool:
    from p2pmarket.network.topics import ALL_LISTINGS

    began = time.perf_counter()
    data = make(signer, state.sent)
    state.making += time.perf_counter() - began
    state.sent += 1
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            await peer.pubsub.publish([ALL_LISTINGS], data)
    except Exception:
        return False
    await trio.sleep(0)  # let a hang-up from the node be seen
    return True


async def _one_identity(entry: Any, state: _State, make: MakeRecord, cap: int) -> None:
    """A fresh identity publishes until it is cut off, or has sent ``cap`` records
    (or the budget is spent)."""
    seed = os.urandom(32)
    signer = Signer(seed)
    figures: Json = {"sent": 0, "connected": False, "cut_off": False}
    began = time.perf_counter()
    async with _peer(seed) as peer:
        if await _connect(peer, entry):
            figures["connected"] = True
            state.mark_started()
            while state.more() and figures["sent"] < cap:
                if not _listening(peer, entry):
                    figures["cut_off"] = True
                    break
                figures["sent"] += 1
                if not await _publish(peer, state, signer, make):
                    figures["cut_off"] = True
                    break
            # Give the node time to read what is in flight before we hang up (a
            # socket closed with unread data resets, and the node loses the rest),
            # and to cut us off if it is going to.
            with trio.move_on_after(LINGER if cap == PER_IDENTITY_CAP else QUIET_LINGER):
                while _listening(peer, entry):
                    await trio.sleep(0.02)
                figures["cut_off"] = True
    figures["seconds"] = time.perf_counter() - began
    state.identities.append(figures)


async def _swarm(entry: Any, state: _State, make: MakeRecord, cap: int) -> None:
    async def worker() -> None:
        while state.more():
            await _one_identity(entry, state, make, cap)

    async with trio.open_nursery() as nursery:
        for _ in range(SYBIL_CONCURRENCY):
            nursery.start_soon(worker)


async def _single(entry: Any, state: _State, make: MakeRecord) -> Json:
    """One identity: publish while connected; once cut off, keep redialling."""
    seed = os.urandom(32)
    signer = Signer(seed)
    redials = refused = 0
    figures: Json = {"sent": 0, "connected": False, "cut_off": False}
    async with _peer(seed) as peer:
        figures["connected"] = await _connect(peer, entry)
        state.mark_started()
        while state.more():
            if _listening(peer, entry):
                figures["sent"] += 1
                await _publish(peer, state, signer, make)
                continue
            figures["cut_off"] = True
            await trio.sleep(REDIAL_GAP)
            redials += 1
            if not await _connect(peer, entry):
                refused += 1
        # As a Sybil does: leave what is in flight time to be read (a short run
        # on a busy machine can end before the node has got to it).
        with trio.move_on_after(LINGER):
            while _listening(peer, entry):
                await trio.sleep(0.02)
    state.identities.append(figures)
    return {"redials": redials, "redials_refused": refused}


async def attack(params: Json) -> Json:
    """Run one attack on the node at ``params["entry"]``; its figures."""
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from p2pmarket.network import _libp2p_fixes

    # A real attacker would not wait py-libp2p's 250 ms head start on every dial.
    _libp2p_fixes.apply()
    entry = info_from_p2p_addr(multiaddr.Multiaddr(params["entry"]))
    make = RECORDS[params["records"]]
    state = _State(budget=params["budget"], deadline=trio.current_time() + params["seconds"])
    cpu, wall = time.process_time(), time.perf_counter()
    extra: Json = {}
    if params["swarm"]:
        await _swarm(entry, state, make, params.get("per_identity") or PER_IDENTITY_CAP)
    else:
        extra = await _single(entry, state, make)
    return {
        "sent": state.sent,
        "budget": state.budget,
        "finished": state.sent >= state.budget,
        "identities": state.identities,
        "making_seconds": state.making,
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        **extra,
    }


def main() -> None:
    """Entry point: JSON params on the command line; the figures on stdout."""
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    result = trio.run(attack, json.loads(sys.argv[1]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # no teardown: it can hang in py-libp2p 0.8.1, and there is nothing to keep
