"""A signature-verifying worker process: ``python -m p2pmarket.crypto.verify_worker``.

Bulk ingest hands batches of (public key, message, signature) to this process so
that verification runs on another core without contending for the parent's GIL.
It is a plain subprocess rather than ``multiprocessing`` because spawn-mode
multiprocessing re-imports the parent's ``__main__``, which would re-run an
embedding program's unguarded script.

Protocol on stdin/stdout: each request is a msgpack array of [key, message,
signature] arrays; each reply is a msgpack array of booleans, in request order.
The worker exits when stdin closes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Final

import msgpack

from p2pmarket.crypto.signing import verify_batch

_MAX_FRAME: Final = 64 << 20


class _FdReader:
    """``read(n)`` that returns what the pipe has instead of waiting for n bytes,
    so msgpack's streaming Unpacker never blocks on a partial frame."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, n: int) -> bytes:
        return os.read(self._fd, n)


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group. The parent owns it:
    # it stops the ingest and closes our stdin, which ends this loop. Left to
    # the default, each Ctrl-C printed this process's KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    unpacker = msgpack.Unpacker(_FdReader(sys.stdin.fileno()), max_buffer_size=_MAX_FRAME)
    out = sys.stdout.buffer
    try:
        for batch in unpacker:
            out.write(msgpack.packb(verify_batch([(k, m, s) for k, m, s in batch])))
            out.flush()
    except BrokenPipeError:
        # The parent is gone (killed with -9, say) and nobody reads the answers:
        # nothing is lost, since only the parent stores what was verified. Leave
        # without the interpreter's final flush, which would fail the same way
        # and print a traceback into the parent's log.
        os._exit(0)


class VerifierProcess:
    """The parent's side: send batches, receive results in order."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "p2pmarket.crypto.verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # A process group of its own: Ctrl-C in the terminal goes to the
            # foreground group only, so it reaches the parent, which stops the
            # ingest and closes our stdin. (A SIGINT during the worker's own
            # start-up would otherwise print its KeyboardInterrupt traceback.)
            process_group=0,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._results = msgpack.Unpacker(
            _FdReader(self._proc.stdout.fileno()), max_buffer_size=_MAX_FRAME
        )

    def send(self, batch: list[tuple[bytes, bytes, bytes]]) -> None:
        self._stdin.write(msgpack.packb(batch, use_bin_type=True))
        self._stdin.flush()

    def receive(self) -> list[bool]:
        try:
            result = next(self._results)
        except StopIteration:
            raise OSError("the verifier process stopped") from None
        return [bool(ok) for ok in result]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        assert self._proc.stdout is not None
        self._proc.stdout.close()


if __name__ == "__main__":
    main()
