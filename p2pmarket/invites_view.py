"""What the CLI prints for invites and for a node that knows no peer.

Kept out of cli.py (which only wraps these in typer commands) so the wording is in
one place and testable without a terminal.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p2pmarket.events import NodeStatus

__all__ = ["peers_line", "qr_text"]

HOW_TO_JOIN = (
    "no peer known yet: join with `p2pmarket join <invite>` (a member runs "
    "`p2pmarket invite` and shares the line), add bootstrap addresses to config.toml, "
    "or start another node on this network (found by mDNS)"
)


def qr_text(line: str) -> str:
    """``line`` as a QR code drawn with half-block characters (two modules a
    character cell, so it fits a phone-sized terminal). Upper-cased first: the
    invite is read case-insensitively, and upper case puts it in QR's compact
    alphanumeric mode (a smaller code, easier for a phone camera)."""
    import segno

    code = segno.make(line.upper(), error="m", micro=False)
    out = io.StringIO()
    code.terminal(out=out, compact=True)
    return out.getvalue()


def peers_line(status: NodeStatus) -> str:
    """The ``peers`` line of ``status``: how many are connected and, when none
    is, whether any is known (and being retried) or how to find one."""
    if status.peers:
        return str(status.peers)
    if status.known_peers:
        return (
            f"0 connected; {status.known_peers} known, being retried with backoff "
            "(or join another: `p2pmarket join <invite>`)"
        )
    return "0: " + HOW_TO_JOIN
