"""A seller over the network's publish limit is told, in one line, when to try
again, instead of publishing records every peer would drop (sellerlimit.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from daemon_harness import Daemons, cli, create_listing, one_error_line


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    group = Daemons()
    try:
        yield group
    finally:
        problems = group.close()
    assert not problems, "; ".join(problems)


def test_listing_create_past_the_seller_limit_says_when_to_try_again(daemons: Daemons) -> None:
    home = daemons.new_home()
    (home / "config.toml").write_text("seller_burst = 2\nseller_rate = 0.01\n", encoding="utf-8")
    daemons.start(home)
    create_listing(home, "Sepeda satu")
    create_listing(home, "Sepeda dua")

    result = cli(
        home,
        "listing",
        "create",
        "--title",
        "Sepeda tiga",
        "--price",
        "150000",
        "--category",
        "vehicles/bicycles",
    )

    assert result.returncode == 1
    line = one_error_line(result)
    assert re.fullmatch(
        r"error: publishing too fast: peers take at most 2 records at once from one "
        r"seller, then 0\.01 a second; try again in \d+ s",
        line,
    ), line
    titles = [x["title"] for x in json.loads(cli(home, "listing", "mine", "--json").stdout)]
    assert sorted(titles) == ["Sepeda dua", "Sepeda satu"]  # nothing signed or stored
