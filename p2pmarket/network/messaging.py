"""Direct delivery of sealed envelopes: ``/p2pmarket/dm/1.0.0``.

The sender opens a stream and writes one frame, the envelope; the recipient's
node answers with one frame, its receipt (itself an envelope, sealed to the
sender and signed by the recipient), or closes the stream without one if it
refused the envelope. Frames are a 4-byte big-endian length and the bytes, at
most :data:`~p2pmarket.crypto.envelope.MAX_ENVELOPE`. The network layer only
carries bytes: opening, checking and storing letters is the node's, through
the ``on_envelope(data, peer id) -> receipt | None`` callback.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable
from typing import Final

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2pmarket.errors import NetworkError
from p2pmarket.network.sync import read_exactly

log = logging.getLogger("p2pmarket.messaging")

DM_PROTOCOL: Final = TProtocol("/p2pmarket/dm/1.0.0")
MAX_FRAME: Final = 64 * 1024
TIMEOUT: Final = 10.0  # a delivery: stream, envelope, receipt
_LENGTH: Final = struct.Struct(">I")

OnEnvelope = Callable[[bytes, str], bytes | None]


def _frame(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


async def _read_frame(stream: INetStream) -> bytes:
    (length,) = _LENGTH.unpack(await read_exactly(stream, 4))
    if length > MAX_FRAME:
        raise ValueError(f"a frame of {length} bytes (the limit is {MAX_FRAME})")
    return await read_exactly(stream, length)


class Messenger:
    """Sends envelopes to peers and hands the ones we receive to the node."""

    def __init__(self, host: IHost, on_envelope: OnEnvelope) -> None:
        self._host = host
        self._on_envelope = on_envelope
        host.set_stream_handler(DM_PROTOCOL, self._receive)

    async def deliver(self, peer: ID, envelope: bytes) -> bytes:
        """Hand ``envelope`` to ``peer`` (connected already); return its receipt.
        Raises :class:`NetworkError` if it cannot be delivered now."""
        try:
            with trio.fail_after(TIMEOUT):
                stream = await self._host.new_stream(peer, [DM_PROTOCOL])
                try:
                    await stream.write(_frame(envelope))
                    return await _read_frame(stream)
                finally:
                    with trio.move_on_after(2), contextlib.suppress(Exception):
                        await stream.close()
        except trio.TooSlowError:
            raise NetworkError(f"{peer} did not answer in time") from None
        except Exception as exc:
            raise NetworkError(f"delivering to {peer} failed: {exc}") from None

    async def _receive(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.fail_after(TIMEOUT):
                envelope = await _read_frame(stream)
                receipt = self._on_envelope(envelope, peer)
                if receipt is not None:
                    await stream.write(_frame(receipt))
        except Exception as exc:
            log.debug("a direct message from %s failed: %r", peer, exc)
        finally:
            with trio.move_on_after(2), contextlib.suppress(Exception):
                await stream.close()
