"""Joining the market from an invite line (see p2pmarket.invite), for the Node.

The inviter's addresses are tried in the order the line gives them (best first).
When none answers, the peer is still remembered in the peer book: the inviter may
simply be offline now (a phone asleep, a laptop closed), and the network's redial
loop tries a remembered peer again with backoff (10 s, then doubling up to an hour;
see network/peerbook.py), so the join completes by itself when it comes back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from p2pmarket import invite
from p2pmarket.errors import InvalidInput, NetworkError

if TYPE_CHECKING:
    from p2pmarket.events import PeerInfo
    from p2pmarket.network.service import Network

__all__ = ["JOIN_DEADLINE", "invite_line", "join"]

# All the addresses together, within the control socket's 60 s network timeout.
JOIN_DEADLINE: Final = 45.0


def invite_line(peer_id: str, addresses: tuple[str, ...]) -> str:
    """This node's invite: its id and the addresses its network announces
    (public, LAN and relayed ones). InvalidInput while it announces none."""
    return invite.encode(peer_id, addresses)


async def join(network: Network, own_peer_id: str, line: str) -> PeerInfo:
    """Connect to the peer ``line`` invites to, at the first address that works.
    InvalidInput for a line that is not an invite; NetworkError, saying the peer
    is remembered and retried, when no address answered."""
    import trio

    found = invite.decode(line)
    if found.peer_id == own_peer_id:
        raise InvalidInput("that is this node's own invite: paste it to the others")
    why = f"no answer within {JOIN_DEADLINE:g} s"
    with trio.move_on_after(JOIN_DEADLINE):
        for address in found.addresses:
            try:
                return await network.connect(address)
            except NetworkError as exc:
                why = str(exc)
    book = network.peer_set.book
    book.remember(found.peer_id, list(found.addresses), time.time())
    book.save()
    count = len(found.addresses)
    raise NetworkError(
        f"could not reach {found.peer_id} at its {count} address{'es' if count > 1 else ''} "
        f"({why}); it is remembered and the daemon will keep retrying it "
        "(after 10 s, then less and less often, up to hourly)"
    )
