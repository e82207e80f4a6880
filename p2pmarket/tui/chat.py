"""``p2pmarket chat PEER_ID``: a live conversation with one peer in the terminal.

It runs against the daemon's control socket: sending goes through the daemon's
outbox, and the conversation is read again every :data:`POLL` seconds, so new
messages and delivery states appear as they happen. (Polling, not the daemon's
event stream: that stream is read by a blocking call that a quitting app could
not interrupt, and a local call twice a second costs nothing.) What is shown is
what the store keeps; the conversation is marked read while it is on screen.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, RichLog, Static

from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.display import iso_time
from p2pmarket.errors import P2PMarketError
from p2pmarket.store.messages import Message, State

HISTORY: Final = 200  # messages shown
POLL: Final = 0.5  # seconds between looks at the conversation
_MARKS: Final = {
    State.QUEUED: "queued",
    State.SENT: "sent",
    State.DELIVERED: "delivered",
    State.READ: "read",
    State.FAILED: "not delivered: the recipient stayed away 14 days",
}


def chat_line(message: Message) -> str:
    """One message as the chat shows it: time, who, text, and our message's state."""
    when = iso_time(message.sent)[11:16]  # HH:MM
    if message.outgoing:
        return f"{when}  you: {message.text}  ({_MARKS.get(message.state, '')})"
    return f"{when} them: {message.text}"


class ChatApp(App[None]):
    """Type and press Enter to send; incoming messages appear as they arrive."""

    TITLE = "p2pmarket chat"
    CSS = """
    #peer { height: 1; padding: 0 1; background: $panel; }
    #log { height: 1fr; }
    """
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, backend: Any, peer: bytes) -> None:
        super().__init__()
        self.backend = backend
        self.peer = peer
        self.peer_id = peer_id_from_public_key(peer)
        self.shown: list[Message] = []

    def compose(self) -> ComposeResult:
        try:
            profile = self.backend.profile(self.peer)
        except P2PMarketError:
            profile = None
        name = f"{profile.name} · " if profile is not None else ""
        yield Static(f"chat with {name}{self.peer_id}", id="peer")
        yield RichLog(id="log", wrap=True, markup=False)
        yield Input(placeholder="type a message, Enter to send", id="say")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.query_one("#say", Input).focus()
        self.set_interval(POLL, self.redraw)

    def redraw(self) -> None:
        """Show the conversation if it changed; mark what arrived read."""
        try:
            messages = self.backend.thread(self.peer, HISTORY)
            if any(not m.outgoing and not m.read for m in messages):
                self.backend.mark_read(self.peer)
        except P2PMarketError as exc:
            self.notify(str(exc), severity="error")
            return
        if messages == self.shown:
            return
        log = self.query_one("#log", RichLog)
        log.clear()
        for message in messages:
            log.write(chat_line(message))
        self.shown = messages

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        try:
            self.backend.send_message(self.peer, text)
        except P2PMarketError as exc:
            self.notify(str(exc), severity="error")
            return
        event.input.value = ""
        self.redraw()
