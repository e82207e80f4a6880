"""A mailbox holder that answers a put with garbage: the sender's node refuses the
answer with our own error, and its delivery goes on.

Found while fuzzing the decoders (issue 13): the answer to a put was quoted into
the error message with repr, so a holder answering ``[1, <a list nested 1000
deep>]`` raised RecursionError out of ``deposit``, which nothing above catches:
it would end the sender's post office, and with it the daemon.
"""

from __future__ import annotations

import msgpack
import pytest
import trio
from conftest import Cluster
from factories import OTHER
from libp2p.abc import INetStream
from raw_peer import raw_peer

from p2pmarket.crypto.envelope import seal
from p2pmarket.errors import NetworkError
from p2pmarket.network import mailbox as mail_wire
from p2pmarket.network.streams import frame, read_frame

DEEP = b"\x91" * 1010 + b"\xc0"  # msgpack decodes it; repr() of it raises RecursionError


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"\x92\x01" + DEEP, id="refused-with-a-deep-reason"),
        pytest.param(b"\x92\x05" + DEEP, id="unknown-code-with-a-deep-value"),
        pytest.param(msgpack.packb([0, "extra"]), id="ok-with-extra"),
    ],
)
async def test_a_garbage_answer_to_a_put_is_a_network_error(
    cluster: Cluster, answer: bytes
) -> None:
    (a,) = await cluster.start(1)
    network = a._network
    assert network is not None and network.mailbox is not None

    async def holder(stream: INetStream) -> None:
        with trio.move_on_after(5):
            await read_frame(stream, mail_wire.MAX_REQUEST)
            await stream.write(frame(answer))

    async with raw_peer() as raw:
        raw.handle(str(mail_wire.MAILBOX_PROTOCOL), holder)
        await raw.connect(a)
        envelope = seal(a._signer_or_unlock(), OTHER.public_key, "text", b"hi", a.now())
        with pytest.raises(NetworkError):
            await network.mailbox.deposit(raw.host.get_id(), envelope[1])
