"""Reading and writing length-prefixed frames on libp2p streams.

Every p2pmarket protocol frames its messages the same way: a 4-byte big-endian
length, then that many bytes. The reader enforces the caller's limit before it
reads the body, so a peer cannot make us buffer more than the protocol allows.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Final

import trio
from libp2p.abc import INetStream

_LENGTH: Final = struct.Struct(">I")


def frame(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


async def read_exactly(stream: INetStream, n: int) -> bytes:
    """``n`` bytes from the stream (py-libp2p's own helper gives up after 100
    partial reads, fewer than a large frame can take)."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = await stream.read(n - got)
        if not chunk:
            raise EOFError(f"the stream ended {n - got} bytes short of a frame")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def read_frame(stream: INetStream, limit: int) -> bytes:
    """One frame's bytes; ValueError if the peer announces more than ``limit``."""
    (length,) = _LENGTH.unpack(await read_exactly(stream, 4))
    if length > limit:
        raise ValueError(f"a frame of {length} bytes (the limit is {limit})")
    return await read_exactly(stream, length)


async def close_quietly(stream: INetStream) -> None:
    """Close a stream we are done with; a peer that is gone is no error here."""
    with trio.move_on_after(2), contextlib.suppress(Exception):
        await stream.close()
