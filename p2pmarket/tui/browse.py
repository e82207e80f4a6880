"""``p2pmarket browse``: search and read the listing cache in a terminal UI.

It talks to a backend with the Node's method names: the running daemon (through
its control socket) or, offline, the home's store. A status line says whether
the node is online and, while a sync is filling the cache, that results may be
incomplete; the results refresh by themselves while that sync runs, so a new
user sees the market arrive instead of an empty screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Static

from p2pmarket.display import age, listing_json, rating_text, seller_label, sync_line, syncing_note
from p2pmarket.errors import P2PMarketError
from p2pmarket.money import format_price
from p2pmarket.records import Listing, format_id
from p2pmarket.text import tokens

if TYPE_CHECKING:
    from p2pmarket.events import NodeStatus
    from p2pmarket.reputation import SellerInfo

PAGE: Final = 200  # results shown at once
REFRESH: Final = 1.0  # seconds between status polls


class BrowseApp(App[None]):
    """Type words, read the matching listings; Enter on a row shows it whole."""

    TITLE = "p2pmarket"
    CSS = """
    #status { height: 2; padding: 0 1; background: $panel; }
    #results { width: 3fr; }
    #detail { width: 2fr; padding: 0 1; border-left: solid $primary; }
    """
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "focus_search", "Search"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend
        self.listings: dict[str, Listing] = {}
        self.sellers: dict[bytes, SellerInfo] = {}
        self.query_text = ""
        self.cached = -1

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search: words in titles, tags, categories, places", id="query")
        yield Static("", id="status")
        with Horizontal():
            yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
            yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#results", DataTable)
        table.add_columns("Title", "Price", "Location", "Category", "Listed", "Seller")
        self.refresh_status()  # and the first search
        self.set_interval(REFRESH, self.refresh_status)

    def action_focus_search(self) -> None:
        self.query_one("#query", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        self.run_search()
        self.query_one("#results", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self.run_search()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key is not None and key in self.listings:
            listing = self.listings[key]
            self.query_one("#detail", Static).update(
                detail(listing, self.sellers.get(listing.seller))
            )

    def run_search(self) -> None:
        text = self.query_text.strip()
        if text and not tokens(text):
            return  # punctuation only: nothing to look for yet
        try:
            page = self.backend.search(text, limit=PAGE)
            found = self.backend.sellers([listing.seller for listing in page.listings])
        except P2PMarketError as exc:
            self.notify(str(exc), severity="error")
            return
        table = self.query_one("#results", DataTable)
        keep = table.cursor_row
        table.clear()
        self.listings = {}
        self.sellers = {info.key: info for info in found}
        for listing in page.listings:
            key = format_id(listing.id)
            self.listings[key] = listing
            table.add_row(
                listing.title,
                format_price(listing.price, listing.currency),
                listing.location,
                listing.category,
                age(listing.created),
                seller_label(self.sellers[listing.seller]),
                key=key,
            )
        if page.listings:
            table.move_cursor(row=min(keep, len(page.listings) - 1))
        else:
            self.query_one("#detail", Static).update("No listings match.")

    def refresh_status(self) -> None:
        try:
            status: NodeStatus = self.backend.status()
        except P2PMarketError as exc:
            self.query_one("#status", Static).update(f"status unavailable: {exc}")
            return
        self.query_one("#status", Static).update(status_text(status))
        if status.cached_listings != self.cached:
            # The cache changed (a sync is filling it): show what has arrived.
            self.cached = status.cached_listings
            self.run_search()


def status_text(status: NodeStatus) -> str:
    """Two lines: the node, and the sync (a warning while one is running)."""
    network = f"online, {status.peers} peers" if status.online else "offline (no daemon)"
    first = f"{status.cached_listings:,} listings cached · {network}"
    sync = status.sync
    if sync is None:
        return first
    note = syncing_note(sync)
    return f"{first}\n{note if note else 'sync: ' + sync_line(sync)}"


def detail(listing: Listing, seller: SellerInfo | None = None) -> str:
    doc = listing_json(listing)
    who = doc["seller"]
    if seller is not None:
        name = f"{seller.name} " if seller.name else ""
        who = f"{name}{who} · {rating_text(seller.reputation)}"
    lines = [
        listing.title,
        f"{doc['price']['text']} · {listing.kind} · quantity {listing.quantity}",
        f"{listing.category} · {listing.location or 'no location'}",
        "",
        listing.description or "(no description)",
        "",
        f"tags: {', '.join(listing.tags) or '-'}",
        f"seller: {who}",
        f"listed {doc['created']}, expires {doc['expires']}",
        f"id: {doc['id']}",
    ]
    return "\n".join(lines)
