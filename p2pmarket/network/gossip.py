"""GossipSub: our topics, the validator every record passes before it is
forwarded, peer scoring, and the publish queue.

Gossip is validated *inside* GossipSub's validator, so a record is checked and
stored before it is forwarded, and an invalid one is never forwarded and counts
against its sender in GossipSub's peer score. Our subscriptions are only
drained: with py-libp2p 0.8.1 their 32-message queues drop bursts, so nothing
depends on them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams

from p2pmarket.network import _libp2p_fixes, topics
from p2pmarket.network.config import NetworkConfig, Verdict
from p2pmarket.network.ratelimit import RateLimiter
from p2pmarket.records import MAX_RECORD_BYTES

log = logging.getLogger("p2pmarket.network")

# accept(record bytes, source, topic ids it came on, or None from the DHT) -> Verdict
Accept = Callable[[bytes, str, "tuple[str, ...] | None"], Verdict]
# GossipSub 1.1 with the spec's mesh degree. py-libp2p 0.8.1 spends 3-5 ms of CPU
# on each delivery, so in one process reach is bounded by nodes x degree x that
# cost. Measured (bench gossip, one process): at 25 nodes, 1.2 with D=6 gave
# p50/p95 955/1453 ms, 1.1 with D=6 321/623 ms: 1.2's IDONTWANT control messages
# cost as much as our small records. D=3 was faster still at 25 nodes but lost
# messages for seconds at 10 (5 of 20 publishes missed a node for > 15 s).
MESH_DEGREE: Final = 6
MESH_DEGREE_LOW: Final = 4
MESH_DEGREE_HIGH: Final = 12
_GOSSIP_PROTOCOLS: Final = [PROTOCOL_ID_V11, PROTOCOL_ID]
OUTBOX_SIZE: Final = 10_000
MESH_WAIT: Final = 5.0  # how long a publish waits for a first mesh peer
INVALID_PENALTY: Final = 10.0
_COUNTER: Final = {
    Verdict.ACCEPT: "gossip_accepted",
    Verdict.IGNORE: "gossip_ignored",
    Verdict.REJECT: "gossip_rejected",
}


def content_id(msg: rpc_pb2.Message) -> bytes:
    """Message id = BLAKE2b-160 of ``topic ‖ 0x00 ‖ record``: the same record
    reaching us from two publishers is seen, validated and forwarded once, while
    its copies on the market-wide and a category topic (topics.py) are two
    messages, each on its own mesh."""
    topic = msg.topicIDs[0] if len(msg.topicIDs) == 1 else ""
    return hashlib.blake2b(topic.encode() + b"\x00" + msg.data, digest_size=20).digest()


def score_params() -> ScoreParams:
    """Peer scoring: each invalid record costs its sender 10 points, decaying by 1%
    a heartbeat; below -50 a peer's messages are refused, below -80 it is graylisted.

    The penalty is the behaviour term (P5), applied by our validator, and not
    py-libp2p's invalid-message counter (P4, left at weight 0): 0.8.1 counts every
    rejection there, including a stale version an honest relay passed on, and
    again for every duplicate of a rejected message. Only we know which is which.
    """
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=0.0),
        p5_behavior_penalty_weight=1.0,
        p5_behavior_penalty_decay=0.99,
        p5_behavior_penalty_threshold=0.0,
        publish_threshold=-50.0,
        gossip_threshold=-30.0,
        graylist_threshold=-80.0,
    )


class Gossip:
    """Our GossipSub router and pubsub, built on a host by :meth:`build` and
    started by :meth:`start` once the host runs."""

    def __init__(
        self,
        config: NetworkConfig,
        *,
        accept: Accept,
        counters: dict[str, int],
        on_invalid: Callable[[ID], None],
    ) -> None:
        self._config = config
        self._accept = accept
        self._counters = counters
        self._on_invalid = on_invalid
        self._limiter = RateLimiter(config.rate, config.burst, time.monotonic)
        self.topics = topics.subscriptions(config.follow)
        self.router: GossipSub | None = None
        self.pubsub: Pubsub | None = None
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[tuple[bytes, list[str]]](
            OUTBOX_SIZE
        )

    def build(self, host: IHost) -> tuple[Pubsub, GossipSub]:
        """The two py-libp2p services to run (with ``background_trio_service``)."""
        router = GossipSub(
            protocols=_GOSSIP_PROTOCOLS,
            degree=MESH_DEGREE,
            degree_low=MESH_DEGREE_LOW,
            degree_high=MESH_DEGREE_HIGH,
            heartbeat_interval=self._config.heartbeat,  # type: ignore[arg-type]
            heartbeat_initial_delay=0.1,
            score_params=score_params(),
            spam_protection_enabled=False,  # see ratelimit.py
        )
        pubsub = Pubsub(host, router, msg_id_constructor=content_id, strict_signing=True)
        _libp2p_fixes.cache_only_successes(pubsub)
        self.router, self.pubsub = router, pubsub
        return pubsub, router

    async def start(self, nursery: trio.Nursery, host: IHost) -> None:
        """Subscribe with our validator on each topic, and start publishing."""
        assert self.pubsub is not None
        await self.pubsub.wait_until_ready()
        for topic in self.topics:
            self.pubsub.set_topic_validator(topic, self._validator(topic, host.get_id()), False)
            subscription = await self.pubsub.subscribe(topic)
            nursery.start_soon(self._drain, subscription)
        nursery.start_soon(self._outbox, host)

    def _validator(self, topic: str, me: ID) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                verdict = judge(forwarder, msg)
            except Exception:  # a bug must neither let a record through nor crash pubsub
                log.exception("judging a gossip record failed")
                return False
            if verdict is Verdict.REJECT:
                self._on_invalid(forwarder)
                log.info("dropped an invalid record from %s on %s", forwarder, topic)
            self._counters[_COUNTER[verdict]] += 1
            # A stale or duplicate record (IGNORE) is not forwarded either, but its
            # relay is not penalised: an honest peer may pass on an older version.
            return verdict is Verdict.ACCEPT

        def judge(forwarder: ID, msg: rpc_pb2.Message) -> Verdict:
            if forwarder == me:
                return Verdict.ACCEPT  # our own record: stored before it was published
            if len(msg.topicIDs) != 1:
                return Verdict.REJECT  # one topic per message (topics.py)
            if not self._limiter.allow(forwarder.to_base58()):
                self._counters["rate_limited"] += 1
                return Verdict.REJECT
            if len(msg.data) > MAX_RECORD_BYTES:
                return Verdict.REJECT
            return self._accept(bytes(msg.data), "gossip", tuple(msg.topicIDs))

        return validate

    def charge(self, peer: ID, amount: float) -> None:
        """Lower a peer's GossipSub score by ``amount`` (the behaviour penalty)."""
        scorer = getattr(self.router, "scorer", None)
        if scorer is not None:
            scorer.penalize_behavior(peer, amount)

    def score(self, peer_id: str) -> float:
        """GossipSub's score of a peer over our topics (negative: misbehaved)."""
        scorer = getattr(self.router, "scorer", None)
        if scorer is None:
            return 0.0
        return float(scorer.score(ID.from_base58(peer_id), list(self.topics)))

    @staticmethod
    async def _drain(subscription: Any) -> None:
        """Empty a subscription queue: records were handled by the validator."""
        while True:
            await subscription.get()

    def publish(self, data: bytes, topic_ids: list[str]) -> None:
        """Queue a record for gossip; returns at once."""
        try:
            self._outbox_send.send_nowait((data, topic_ids))
        except trio.WouldBlock:
            log.warning("the publish queue is full; a record was not gossiped")

    async def _outbox(self, host: IHost) -> None:
        """Publish each queued record once per topic, one message each.

        py-libp2p publishes to mesh peers only (no flood publish): a topic we
        subscribe to waits a moment for a fresh mesh, but not again and again
        when no peer wants it; a topic we do not subscribe to (a category copy)
        is published through fanout only while some peer subscribes to it."""
        assert self.pubsub is not None and self.router is not None
        pubsub, router = self.pubsub, self.router
        subscribed = set(self.topics)
        gave_up_at = -MESH_WAIT
        async for data, topic_ids in self._outbox_recv:
            for topic in topic_ids:
                if topic not in subscribed:
                    if not pubsub.peer_topics.get(topic):
                        continue
                elif trio.current_time() - gave_up_at > 30:
                    with trio.move_on_after(MESH_WAIT) as wait:
                        while not router.mesh.get(topic) and host.get_connected_peers():
                            await trio.sleep(0.05)
                    if wait.cancelled_caught:
                        gave_up_at = trio.current_time()
                try:
                    with trio.move_on_after(10):
                        await pubsub.publish([topic], data)
                except Exception:
                    log.exception("publishing a record failed")
