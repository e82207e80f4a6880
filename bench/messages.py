"""Direct messages: the round trip on an open connection, and offline delivery.

Real nodes (``Node.run``: TCP + Noise + Yamux on 127.0.0.1, mDNS off), each
scenario in a fresh interpreter (:func:`bench.cluster.run_child`):

* **round trip**: two connected nodes A and B in one process. A message's round
  trip is the time from ``a.send_message(b, text)`` until A's node emits
  ``MessageStateChanged`` with the message ``DELIVERED``: the sealed message is
  written to A's outbox (with sync), the outbox loop wakes and opens a
  ``/p2pmarket/dm/1.0.0`` stream, B opens and checks the envelope, stores the
  message (with sync) and answers with a signed receipt sealed to A, which A
  opens, checks and applies (with sync). The baseline, between the same two hosts
  in the same run and interleaved with the messages one for one, is a plain
  libp2p stream echo: open a new stream on an echo protocol, write one frame as
  large as the message's framed envelope, read it back, close the stream.
* **offline delivery**: A (the sender) and C (a mailbox holder) run in one
  process, A connected to C. The recipient B (one identity and home for every
  sample) is not running when A sends. Once A's message is ``SENT`` (left with
  the mailbox), B's node starts in a process of its own (:func:`recipient_main`),
  its peer book emptied so that it comes back only through C, and dials C; the
  clock runs until B's node emits ``MessageReceived``, from the start of
  ``B.run`` (coming back online: the user-facing figure) and from the
  ``connect`` call. B stays online until A learns it was delivered (B's receipt,
  not a target), then stops and its process exits before the next send.

B runs in its own process, as a user's node does: coming back online then
includes starting the node, which is what the user waits for. (Written while
finding that py-libp2p 0.8.1 kept a stopped node's listening socket serving
handshakes inside a process that went on running; the node now closes it.)
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from bench.cluster import (
    LOOPBACK,
    ROOT,
    Json,
    child_env,
    cluster,
    phase,
    run_child,
    start_profiling,
)
from bench.config import FULL, Sizes
from bench.report import table
from bench.results import Row, Section, verdict
from bench.stats import ms, ms_or_miss, percentile_or_miss

if TYPE_CHECKING:
    from p2pmarket.events import Event
    from p2pmarket.store.messages import State

Figures = dict[str, Json]

TARGET_RATIO: Final = 2.0  # a message round trip ≤ 2x a plain stream echo (p50 and p95)
TARGET_OFFLINE: Final = 2.0  # seconds from coming back online until the message is stored
ECHO_PROTOCOL: Final = "/bench/echo/1.0.0"
WARMUP: Final = 5
MESSAGE_TIMEOUT: Final = 10.0  # a round trip not done by then is a miss
SENT_TIMEOUT: Final = 60.0  # an offline send left with the mailbox
OFFLINE_TIMEOUT: Final = 30.0  # until the returning recipient has the message
RECEIPT_TIMEOUT: Final = 15.0  # until the sender learns it was delivered (not a target)
STOP_TIMEOUT: Final = 20.0
RECIPIENT_START_TIMEOUT: Final = 60.0
RECIPIENT_PREFIX: Final = "BENCH-RECIPIENT "
FULL_SAMPLES: Final = (200, 20)  # round trips, offline deliveries
QUICK_SAMPLES: Final = (30, 5)
TEXT: Final = "Halo, sepedanya masih ada? Bisa COD di Yogyakarta hari Sabtu? #{}"


# -- the child: round trips ----------------------------------------------------------


async def _wait_for(
    events: trio.MemoryReceiveChannel[Event], wanted: Callable[[Event], bool], timeout: float
) -> bool:
    """Until an event ``wanted`` accepts arrives (True), or ``timeout`` passes (False)."""
    with trio.move_on_after(timeout):
        async for event in events:
            if wanted(event):
                return True
    return False


def _state_is(mid: bytes, state: State) -> Callable[[Event], bool]:
    from p2pmarket.events import MessageStateChanged

    def check(event: Event) -> bool:
        return (
            isinstance(event, MessageStateChanged)
            and event.message.id == mid
            and event.message.state == state
        )

    return check


async def _round_trips(params: Json, report: Callable[[Json], None]) -> None:
    from libp2p.custom_types import TProtocol

    from p2pmarket.network.streams import close_quietly, frame, read_frame
    from p2pmarket.store.messages import State

    samples: int = params["samples"]
    root = params.get("root")
    async with cluster(Path(root) if root else None) as net:
        a, b = await net.start_node(), await net.start_node()
        with trio.fail_after(60):
            await a.connect(b.status().addresses[0])
        assert a._network is not None and b._network is not None
        host_a, host_b = a._network.host, b._network.host
        protocol = TProtocol(ECHO_PROTOCOL)

        async def echo(stream: Any) -> None:
            try:
                await stream.write(frame(await read_frame(stream, 1 << 16)))
            except Exception:
                pass
            finally:
                await close_quietly(stream)

        host_b.set_stream_handler(protocol, echo)
        envelope_sizes: list[int] = []

        async def message(events: trio.MemoryReceiveChannel[Event], i: int) -> float | None:
            started = time.perf_counter()
            sent = a.send_message(b.peer_id, TEXT.format(i))
            if not await _wait_for(events, _state_is(sent.id, State.DELIVERED), MESSAGE_TIMEOUT):
                return None
            elapsed = time.perf_counter() - started
            envelope_sizes.append(len(sent.envelope))
            return elapsed

        async def echo_once(size: int) -> float:
            payload = frame(os.urandom(size))
            started = time.perf_counter()
            stream = await host_a.new_stream(host_b.get_id(), [protocol])
            try:
                await stream.write(payload)
                got = await read_frame(stream, 1 << 16)
            finally:
                await close_quietly(stream)
            elapsed = time.perf_counter() - started
            if frame(got) != payload:
                raise RuntimeError("the echo stream returned other bytes")
            return elapsed

        phase("connected")
        messages: list[float | None] = []
        echoes: list[float] = []
        cpu_messages = cpu_echoes = 0.0
        async with a.events() as events:
            for i in range(WARMUP):
                await message(events, i)
            size = max(envelope_sizes, default=300)
            for _ in range(WARMUP):
                await echo_once(size)
            phase("warmed up")
            start_profiling()
            # Interleaved, so that any drift of the machine touches both alike.
            for i in range(samples):
                cpu = time.process_time()
                messages.append(await message(events, WARMUP + i))
                cpu_messages += time.process_time() - cpu
                cpu = time.process_time()
                echoes.append(await echo_once(size))
                cpu_echoes += time.process_time() - cpu
        phase("done")
        report(
            {
                "messages": messages,
                "echoes": echoes,
                "envelope": size,
                "cpu_message": cpu_messages / samples,
                "cpu_echo": cpu_echoes / samples,
                "dropped_events": a.dropped_events,
            }
        )


# -- the child: offline delivery -------------------------------------------------------


async def _offline(params: Json, report: Callable[[Json], None]) -> None:
    from p2pmarket.home import Home
    from p2pmarket.node import init_home
    from p2pmarket.store.messages import State

    samples: int = params["samples"]
    root = Path(params["root"])
    trials: list[Json] = []
    home = root / "b"
    b_id = init_home(home, None)  # the recipient: not running yet
    async with cluster(root / "net") as net:
        a, c = await net.start_node(), await net.start_node()
        with trio.fail_after(60):
            await a.connect(c.status().addresses[0])
        holder = c.status().addresses[0]
        phase("connected")
        start_profiling()
        async with a.events() as sender_events:
            for i in range(samples):
                started = time.perf_counter()
                sent = a.send_message(b_id, TEXT.format(i))
                left = await _wait_for(sender_events, _state_is(sent.id, State.SENT), SENT_TIMEOUT)
                trial: Json = {"sent": time.perf_counter() - started if left else None}
                if left:
                    # B comes back only through C: not by redialling the peers it knew.
                    Home(home).peers_file.unlink(missing_ok=True)
                    params = {"home": str(home), "holder": holder, "sender": a.peer_id}
                    params["message"] = sent.id.hex()
                    trial.update(await _recipient(params, root / f"b{i}.log", sender_events))
                trials.append(trial)
                phase(f"sample {i}: {trial}")
    report({"trials": trials})


async def _recipient(
    params: Json, log: Path, sender_events: trio.MemoryReceiveChannel[Event]
) -> Json:
    """Run the returning recipient in a process of its own (:func:`recipient_main`)
    until it has the message, then until the sender learns it was delivered (the
    recipient's receipt goes back through its outbox; not a target); stop it."""
    from p2pmarket.store.messages import State

    code = "from bench.messages import recipient_main; recipient_main()"
    argv = [sys.executable, "-c", code, json.dumps(params)]
    found: Json = {"receipt": None}
    with log.open("wb") as stderr:
        spawned = time.perf_counter()
        proc = await trio.lowlevel.open_process(
            argv,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            with trio.move_on_after(RECIPIENT_START_TIMEOUT + OFFLINE_TIMEOUT + 60):
                line = await _read_line(proc.stdout)
                if line.startswith(RECIPIENT_PREFIX):
                    found.update(json.loads(line[len(RECIPIENT_PREFIX) :]))
                    found["process"] = time.perf_counter() - spawned
            if found.get("online") is not None:
                receipt = time.perf_counter()
                mid = bytes.fromhex(params["message"])
                if await _wait_for(sender_events, _state_is(mid, State.DELIVERED), RECEIPT_TIMEOUT):
                    found["receipt"] = time.perf_counter() - receipt
            await proc.stdin.aclose()  # the recipient leaves
            with trio.move_on_after(STOP_TIMEOUT):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if "online" not in found:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"the recipient process failed (exit {proc.returncode}):\n{tail}")
    return found


async def _read_line(stream: trio.abc.ReceiveStream) -> str:
    """The first line of a child's stdout ("" if it ends without one)."""
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace")


# -- the recipient: a process of its own ----------------------------------------------


def recipient_main() -> None:
    """Entry point of a returning recipient: JSON params on the command line."""
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="%(relativeCreated)7.0f %(name)s %(message)s"
    )
    trio.run(_come_back, json.loads(sys.argv[1]))


async def _come_back(params: Json) -> None:
    """Start the node, connect it to the mailbox holder, and time until it has the
    message (from the start of ``run`` and from the ``connect`` call); print the
    figures, then serve until the parent closes our stdin, and stop."""
    from p2pmarket.events import MessageReceived
    from p2pmarket.node import Node

    mid = bytes.fromhex(params["message"])
    found: Json = {"online": None, "after_connect": None, "via": None}

    def arrived(event: Event) -> bool:
        if isinstance(event, MessageReceived) and event.message.id == mid:
            found["via"] = event.via
            return True
        return False

    b = Node.open(params["home"])
    try:
        async with b.events() as events, trio.open_nursery() as nursery:
            started = time.perf_counter()
            with trio.fail_after(RECIPIENT_START_TIMEOUT):
                await nursery.start(b.run, LOOPBACK)
            listening = time.perf_counter()
            with trio.fail_after(RECIPIENT_START_TIMEOUT):
                await b.connect(params["holder"])
            connected = time.perf_counter()
            if await _wait_for(events, arrived, OFFLINE_TIMEOUT):
                now = time.perf_counter()
                found["online"] = now - started
                found["after_connect"] = now - listening
            found["listening"] = listening - started
            found["connect"] = connected - listening
            found["stored"] = any(m.id == mid for m in b.thread(params["sender"]))
            print(RECIPIENT_PREFIX + json.dumps(found), flush=True)
            async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
                while await stdin.receive_some():
                    pass
            killer = threading.Timer(STOP_TIMEOUT, os._exit, args=(0,))
            killer.daemon = True
            killer.start()
            b.stop()
            with trio.move_on_after(STOP_TIMEOUT - 5):
                while b.online:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    finally:
        b.close()


async def measure(params: Json, report: Callable[[Json], None]) -> None:
    """The child side (:func:`bench.cluster.child_main`): one scenario per child."""
    if params["scenario"] == "round trip":
        await _round_trips(params, report)
    else:
        await _offline(params, report)


# -- the parent ------------------------------------------------------------------


def samples(sizes: Sizes) -> tuple[int, int]:
    """Round trips and offline deliveries timed: a full run's, or a quick run's (also
    for any other sizes)."""
    return FULL_SAMPLES if sizes == FULL else QUICK_SAMPLES


def figures(round_trips: int, offline: int) -> Figures:
    """Both scenarios' raw figures, each from a child process of its own."""
    return {
        "round trip": run_child(
            "messages",
            {"scenario": "round trip", "samples": round_trips},
            timeout=120 + (round_trips + WARMUP) * (MESSAGE_TIMEOUT + 2),
        ),
        "offline": run_child(
            "messages",
            {"scenario": "offline", "samples": offline},
            timeout=120
            + offline
            * (
                SENT_TIMEOUT
                + RECIPIENT_START_TIMEOUT
                + OFFLINE_TIMEOUT
                + 60
                + RECEIPT_TIMEOUT
                + STOP_TIMEOUT
            ),
        ),
    }


def _p(values: Sequence[float | None], q: float) -> str:
    return ms_or_miss(percentile_or_miss(values, q)) if values else "—"


def _ratio(ours: float | None, base: float) -> float | None:
    return None if ours is None else ours / base


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def section(found: Figures) -> Section:
    rt, off = found["round trip"], found["offline"]
    section = Section(
        "Direct messages (loopback; round trip in one process, the returning recipient in its own)"
    )

    messages, echoes = rt["messages"], rt["echoes"]
    misses = sum(m is None for m in messages)
    p50, p95 = percentile_or_miss(messages, 50), percentile_or_miss(messages, 95)
    e50, e95 = percentile_or_miss(echoes, 50), percentile_or_miss(echoes, 95)
    assert e50 is not None and e95 is not None
    r50, r95 = _ratio(p50, e50), _ratio(p95, e95)
    ours = f"p50 {ms_or_miss(p50)} · p95 {ms_or_miss(p95)} ({_x(r50)} · {_x(r95)} the echo)"
    if misses:
        ours += f" ({misses} of {len(messages)} not delivered in {MESSAGE_TIMEOUT:g} s)"
    section.rows.append(
        Row(
            f"message round trip on an open connection: send → delivered ({len(messages)}"
            " messages)",
            ours,
            f"stream echo, {rt['envelope'] + 4} bytes on a new stream: p50 {ms(e50)}"
            f" · p95 {ms(e95)}",
            f"≤ {TARGET_RATIO:g}x the echo at p50 and p95",
            verdict(
                not misses
                and r50 is not None
                and r95 is not None
                and r50 <= TARGET_RATIO
                and r95 <= TARGET_RATIO
            ),
        )
    )

    trials = off["trials"]
    online = [t.get("online") for t in trials]
    after = [t.get("after_connect") for t in trials]
    unsent = sum(t["sent"] is None for t in trials)
    lost = sum(t["sent"] is not None and t.get("online") is None for t in trials)
    back95 = percentile_or_miss(online, 95)
    ours = f"p50 {_p(online, 50)} · p95 {_p(online, 95)} from `run`"
    ours += f"; p50 {_p(after, 50)} · p95 {_p(after, 95)} from `connect`"
    if unsent:
        ours += f" ({unsent} of {len(trials)} not left with the mailbox in {SENT_TIMEOUT:g} s)"
    if lost:
        ours += f" ({lost} of {len(trials)} not received in {OFFLINE_TIMEOUT:g} s)"
    setup = [t["listening"] + t["connect"] for t in trials if t.get("listening") is not None]
    section.rows.append(
        Row(
            f"offline delivery: back online → message in the recipient's store ({len(trials)}"
            " messages sent while it was offline)",
            ours,
            f"`run` and `connect` alone: p50 {_p(setup, 50)}",
            f"p95 ≤ {TARGET_OFFLINE:g} s",
            verdict(not unsent and not lost and back95 is not None and back95 <= TARGET_OFFLINE),
        )
    )
    section.details.append(_details(found))
    return section


def _details(found: Figures) -> str:
    rt, off = found["round trip"], found["offline"]
    trials = off["trials"]

    def row(what: str, values: Sequence[float | None]) -> tuple[str, str, str, str]:
        done = [v for v in values if v is not None]
        return (what, _p(values, 50), _p(values, 95), ms(max(done)) if done else "—")

    def of(key: str) -> list[float | None]:
        return [t.get(key) for t in trials]

    rows = [
        row("round trip: send → delivered", rt["messages"]),
        row("round trip: stream echo (baseline)", rt["echoes"]),
        row("offline: send → left with the mailbox (sent)", of("sent")),
        row("offline: recipient's `run` start → listening", of("listening")),
        row("offline: `connect` to the holder", of("connect")),
        row("offline: `connect` call → message received", of("after_connect")),
        row("offline: `run` start → message received", of("online")),
        row("offline: process spawned → message received", of("process")),
        row("offline: received → sender sees delivered", of("receipt")),
    ]
    via: dict[str, int] = {}
    for t in trials:
        if t["sent"] is not None:
            key = t.get("via") or "not received"
            via[key] = via.get(key, 0) + 1
    stored = sum(bool(t.get("stored")) for t in trials)
    unsent = sum(t["sent"] is None for t in trials)
    notes = [
        table(("what", "p50", "p95", "max"), rows),
        "",
        "Every node is a real `Node` (its own home, identity and LevelDB store; TCP,"
        " Noise, Yamux on 127.0.0.1, mDNS off), each scenario in a fresh interpreter."
        " *Round trip*: A and B connected, in one process; the time runs from"
        " `send_message` (sealed, written to the outbox with sync, the outbox loop"
        " woken) until A's node emits `MessageStateChanged` with the message delivered:"
        " B stored it (with sync) and answered with a signed receipt that A opened and"
        " applied (with sync). The baseline, between the same two hosts and"
        " interleaved with the messages one for one, opens a new libp2p stream on"
        f" `{ECHO_PROTOCOL}`, writes one length-prefixed frame of {rt['envelope']} bytes"
        " (the size of the messages' sealed envelopes), reads it back and closes the"
        f" stream; {WARMUP} untimed rounds of each first. CPU per round trip (both"
        f" nodes, one process): {ms(rt['cpu_message'])} for a message,"
        f" {ms(rt['cpu_echo'])} for an echo. *Offline delivery*: A (the sender) and C"
        " (the mailbox holder) in one process, A connected to C; the recipient B (one"
        " identity and home for every sample) is not running. A sends; once A has left"
        " the message with C (`SENT`), B's node is started in a process of its own"
        " (`run` with default settings, so it also syncs with the peer it dials; its"
        " peer book emptied, so that it comes back only through C) and dials C; the"
        " time runs until B's node emits `MessageReceived`."
        " `run` includes the first import of libp2p in B's process (the *listening*"
        " row); *process spawned* adds the interpreter's start, imports and opening"
        " the home. B stays online until A's node marks the message delivered"
        " (*sender sees delivered*: B's receipt goes back through B's outbox, directly"
        f" or through a mailbox; waited for up to {RECEIPT_TIMEOUT:g} s), then stops."
        " B runs in its own process, as a user's node does."
        " Received via: "
        + ", ".join(f"{k} {v}" for k, v in sorted(via.items()))
        + f"; in B's thread when measured: {stored} of {len(trials) - unsent}.",
    ]
    for key in ("round trip", "offline"):
        if "warning" in found[key]:
            notes.append(f"{key}: {found[key]['warning']}.")
    return "\n".join(notes)


def run(sizes: Sizes, data_dir: Path) -> Section:
    return section(figures(*samples(sizes)))
