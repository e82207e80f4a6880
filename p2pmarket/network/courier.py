"""Direct delivery and offline mail: handing a sealed envelope to its recipient,
or leaving it with the peers closest to the recipient's id, and collecting our
own. The protocols are messaging.py's and mailbox.py's; this decides where."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from p2pmarket.errors import NetworkError
from p2pmarket.network.hosts import protocols, speaks
from p2pmarket.network.mailbox import MAILBOX_PROTOCOL, MailboxService
from p2pmarket.network.messaging import Messenger

log = logging.getLogger("p2pmarket.network")

MAIL_COPIES: Final = 3  # holders an envelope is left with
MAIL_CANDIDATES: Final = 20  # closest peers tried, in that order, to find them
MAIL_LOOKUP: Final = 6  # closest peers to our id we ask for mail (twice the copies:
# the sender's view of the DHT and ours need not agree on the exact three)
MAIL_FIRST_CHECK: Final = 5.0  # seconds after start: the routing table has filled

Reach = Callable[[ID], Awaitable[bool]]
Closest = Callable[[ID], Awaitable["list[ID]"]]


class Courier:
    """Carries envelopes for a running host; either service may be absent."""

    def __init__(
        self,
        host: IHost,
        *,
        messenger: Messenger | None,
        mailbox: MailboxService | None,
        reach: Reach,
        closest: Closest,
        public: Callable[[ID], bool],
    ) -> None:
        self._host = host
        self._messenger = messenger
        self.mailbox = mailbox
        self._reach = reach
        self._closest = closest
        self._public = public

    async def deliver(self, peer_id: str, envelope: bytes) -> bytes:
        """Hand a sealed envelope to a peer, dialling it first if we are not
        connected; return its receipt. Raises NetworkError when it cannot be
        reached now."""
        if self._messenger is None:
            raise NetworkError("this node does not carry direct messages")
        peer = ID.from_base58(peer_id)
        if not await self._reach(peer):
            raise NetworkError(f"{peer_id} cannot be reached now")
        return await self._messenger.deliver(peer, envelope)

    def _holders(self) -> list[ID]:
        host = self._host
        return [p for p in host.get_connected_peers() if MAILBOX_PROTOCOL in protocols(host, p)]

    def _may_hold(self, peer: ID) -> bool:
        """Mail is left only with reachable peers: one behind NAT would be
        found by neither the recipient nor its lookups."""
        return self._public(peer) and MAILBOX_PROTOCOL in protocols(self._host, peer)

    async def leave_mail(self, peer_id: str, envelope: bytes) -> int:
        """Leave an envelope for an unreachable peer with the peers closest to its
        id; return how many took it (0: none could, try again later)."""
        mailbox = self._require_mailbox()
        recipient = ID.from_base58(peer_id)
        candidates = [p for p in await self._closest(recipient) if p != recipient]
        candidates = candidates[:MAIL_CANDIDATES]
        # Then any connected peer that holds mail: the recipient asks every peer
        # it connects to, and the nearest ones may all be gone (a routing table
        # keeps peers that left).
        candidates += [p for p in self._holders() if p != recipient and p not in candidates]
        connected = set(self._host.get_connected_peers())
        # A peer we are not connected to is judged once we reach it (in one()).
        candidates = [p for p in candidates if p not in connected or self._may_hold(p)]
        kept = 0

        async def one(peer: ID) -> None:
            nonlocal kept
            try:
                # A peer just dialled is judged once identify has told its
                # protocols (py-libp2p runs identify after the connection opens).
                if (
                    await self._reach(peer)
                    and await speaks(self._host, peer, MAILBOX_PROTOCOL, within=5)
                    and self._may_hold(peer)
                ):
                    await mailbox.deposit(peer, envelope)
                    kept += 1
            except NetworkError as exc:
                log.debug("leaving mail with %s: %s", peer, exc)

        tried = 0
        while kept < MAIL_COPIES and tried < len(candidates):
            batch = candidates[tried : tried + MAIL_COPIES - kept]
            tried += len(batch)
            async with trio.open_nursery() as nursery:
                for peer in batch:
                    nursery.start_soon(one, peer)
        return kept

    def _require_mailbox(self) -> MailboxService:
        if self.mailbox is None:
            raise NetworkError("this node does not carry offline mail")
        return self.mailbox

    async def collect_mail(self) -> int:
        """Ask our connected peers and the peers closest to our id (where senders
        leave it) for our mail; return how many envelopes arrived."""
        mailbox = self._require_mailbox()
        targets = set(self._holders())
        targets.update((await self._closest(self._host.get_id()))[:MAIL_LOOKUP])
        arrived = 0

        async def one(peer: ID) -> None:
            nonlocal arrived
            try:
                if await self._reach(peer):
                    arrived += await mailbox.collect(peer)
            except NetworkError as exc:
                log.debug("collecting mail from %s: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in targets:
                nursery.start_soon(one, peer)
        return arrived

    async def collect_when_ready(self, peer: ID) -> None:
        """Ask a newly connected peer for our mail once identify shows it holds
        mail: the first place to look when we come back online."""
        if self.mailbox is not None and await speaks(self._host, peer, MAILBOX_PROTOCOL):
            try:
                await self.mailbox.collect(peer)
            except NetworkError as exc:
                log.debug("collecting mail from %s: %s", peer, exc)

    async def mail_timer(self, interval: float) -> None:
        """Ask our mailbox holders for mail soon after start, then now and then."""
        await trio.sleep(MAIL_FIRST_CHECK)
        while True:
            with contextlib.suppress(NetworkError):
                await self.collect_mail()
            await trio.sleep(interval)
