"""``p2pmarket browse``: the terminal UI over a real store, driven by Textual's pilot.

Textual runs on asyncio, so each scenario runs in its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Static

from p2pmarket.events import NodeStatus, SyncProgress, SyncStatus
from p2pmarket.node import Node
from p2pmarket.records import format_id
from p2pmarket.tui.browse import BrowseApp, status_text


def fill(node: Node) -> list[str]:
    made = [
        node.create_listing(title=title, price=price, category="vehicles/bicycles")
        for title, price in (("Sepeda lipat", 1_500_000_00), ("Sepeda gunung", 2_000_000_00))
    ]
    node.create_listing(title="Helm bogo", price=150_000_00, category="vehicles/parts")
    return [format_id(x.id) for x in made]


def test_typing_words_shows_the_matching_listings_and_a_row_shows_it_whole(node: Node) -> None:
    bikes = fill(node)

    async def scenario() -> tuple[list[str], str, str]:
        app = BrowseApp(node)
        async with app.run_test() as pilot:
            await pilot.press(*"sepeda", "enter")
            await pilot.pause()
            table = app.query_one("#results", DataTable)
            keys = [str(row.key.value) for row in table.ordered_rows]
            await pilot.press("down")
            await pilot.pause()
            detail = str(app.query_one("#detail", Static).render())
            status = str(app.query_one("#status", Static).render())
        return keys, detail, status

    keys, detail, status = asyncio.run(scenario())

    assert sorted(keys) == sorted(bikes)
    assert "Sepeda" in detail and "seller:" in detail
    assert "3 listings cached" in status and "offline" in status


def test_the_status_line_warns_while_the_first_sync_fills_the_cache() -> None:
    running = SyncProgress("12D3KooWpeer", "initiator", "fetching", known=1000, fetched=250)
    status = NodeStatus(
        "12D3KooWme",
        True,
        peers=1,
        cached_listings=250,
        sync=SyncStatus(True, True, 0, 0, (running,)),
    )

    text = status_text(status)

    assert "syncing: the first sync is running (250 of 1,000 records fetched" in text
    assert "results may be incomplete" in text
