"""``p2pmarket chat``: the terminal conversation over a real store, driven by
Textual's pilot; the other side's messages are real sealed envelopes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from textual.widgets import Input, RichLog, Static

from p2pmarket.crypto.envelope import seal
from p2pmarket.node import Node
from p2pmarket.store.messages import State
from p2pmarket.tui.chat import ChatApp, chat_line


def lines(app: ChatApp) -> list[str]:
    return [strip.text for strip in app.query_one("#log", RichLog).lines]


def test_the_chat_sends_what_is_typed_and_shows_what_arrives(node: Node, other_node: Node) -> None:
    node.send_message(other_node.peer_id, "Sepedanya masih ada?")
    node.store.put(other_node.set_profile(name="Toko Sepeda Budi"))

    async def scenario() -> tuple[str, list[str], list[str]]:
        app = ChatApp(node, other_node.public_key)
        async with app.run_test() as pilot:
            await pilot.pause()
            header = str(app.query_one("#peer", Static).render())
            before = lines(app)
            await pilot.press(*"Bisa COD?", "enter")
            # The seller answers: a real envelope, taken in as the node would.
            envelope = seal(
                other_node._signer_or_unlock(),
                node.public_key,
                "text",
                b"Bisa, di Jogja",
                node.now(),
            )[1]
            node._post.receive(envelope, other_node.peer_id)
            await pilot.pause(0.8)  # one poll
            assert app.query_one("#say", Input).value == ""
            return header, before, lines(app)

    header, before, after = asyncio.run(scenario())

    assert header == f"chat with Toko Sepeda Budi · {other_node.peer_id}"
    assert len(before) == 1 and "you: Sepedanya masih ada?  (queued)" in before[0]
    assert [line[5:].strip() for line in after] == [  # after the HH:MM
        "you: Sepedanya masih ada?  (queued)",
        "you: Bisa COD?  (queued)",
        "them: Bisa, di Jogja",
    ]
    assert [m.read for m in node.thread(other_node.peer_id) if not m.outgoing] == [True]


def test_a_chat_line_shows_the_state_of_our_messages(node: Node, other_node: Node) -> None:
    sent = node.send_message(other_node.peer_id, "Halo")
    assert chat_line(sent).endswith("you: Halo  (queued)")
    assert chat_line(replace(sent, state=State.READ)).endswith("(read)")
