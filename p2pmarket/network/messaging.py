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

import logging
from collections.abc import Callable
from typing import Final

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2pmarket.crypto.envelope import MAX_ENVELOPE
from p2pmarket.errors import EnvelopeOutOfTime, InvalidEnvelope, NetworkError, NotYet
from p2pmarket.network.streams import close_quietly, frame, read_frame

log = logging.getLogger("p2pmarket.messaging")

DM_PROTOCOL: Final = TProtocol("/p2pmarket/dm/1.0.0")
TIMEOUT: Final = 10.0  # a delivery: stream, envelope, receipt

OnEnvelope = Callable[[bytes, str], bytes | None]


class Messenger:
    """Sends envelopes to peers and hands the ones we receive to the node."""

    def __init__(
        self, host: IHost, on_envelope: OnEnvelope, penalise: Callable[[ID], None]
    ) -> None:
        self._host = host
        self._on_envelope = on_envelope
        self._penalise = penalise
        host.set_stream_handler(DM_PROTOCOL, self._receive)

    async def deliver(self, peer: ID, envelope: bytes) -> bytes:
        """Hand ``envelope`` to ``peer`` (connected already); return its receipt.
        Raises :class:`NetworkError` if it cannot be delivered now."""
        try:
            with trio.fail_after(TIMEOUT):
                stream = await self._host.new_stream(peer, [DM_PROTOCOL])
                try:
                    await stream.write(frame(envelope))
                    return await read_frame(stream, MAX_ENVELOPE)
                finally:
                    await close_quietly(stream)
        except trio.TooSlowError:
            raise NetworkError(f"{peer} did not answer in time") from None
        except Exception as exc:
            raise NetworkError(f"delivering to {peer} failed: {exc}") from None

    async def _receive(self, stream: INetStream) -> None:
        """One envelope in, its receipt out. An envelope that does not open or
        check, or an oversized frame, costs the peer that sent it."""
        peer_id = stream.muxed_conn.peer_id
        peer = peer_id.to_base58()
        try:
            with trio.fail_after(TIMEOUT):
                envelope = await read_frame(stream, MAX_ENVELOPE)
                receipt = self._on_envelope(envelope, peer)
                if receipt is not None:
                    await stream.write(frame(receipt))
        except (EnvelopeOutOfTime, NotYet) as exc:  # clocks drift, letters overtake:
            # no receipt (the sender retries), and no blame
            log.info("a direct message from %s: %s", peer, exc)
        except (InvalidEnvelope, ValueError) as exc:
            log.info("a bad direct message from %s: %s", peer, exc)
            self._penalise(peer_id)
        except Exception as exc:
            log.debug("a direct message from %s failed: %r", peer, exc)
        finally:
            await close_quietly(stream)
