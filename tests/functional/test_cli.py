"""The command line, run in-process through ``p2pmarket.cli.main``.

Rules: every command works on the home given by --home; --json prints exactly one
JSON document; a failure prints one line starting with "error:" on stderr and exits
non-zero (1 for a failed operation, 2 for a bad command line), never a traceback.
"""

from __future__ import annotations

import io
import json
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from factories import OTHER
from typer.testing import CliRunner

from p2pmarket import records
from p2pmarket.cli import app, main
from p2pmarket.crypto.keystore import read_key_file
from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.exchange import read_export
from p2pmarket.node import Node, init_home


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``p2pmarket ARGS…`` in this process; return its exit code and output."""

    def run(*args: str) -> Result:
        capsys.readouterr()  # start from clean buffers
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        else:
            code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    """A path for a home that does not exist yet."""
    return tmp_path / "new-home"


@pytest.fixture
def p2pm(cli: Cli, home: Path) -> Cli:
    """The CLI bound to the shared unencrypted home (see conftest; `init` has its own
    tests, and each in-process call costs ~70 ms of typer start-up)."""
    return lambda *args: cli("--home", str(home), *args)


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    assert result.err == ""
    return result


def assert_one_line_error(result: Result, *, code: int = 1, mentions: str = "") -> str:
    """The failure contract: a non-zero exit, one "error:" line, no traceback."""
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err + result.out
    assert mentions in lines[0]
    return lines[0]


def create(p2pm: Cli, *extra: str, title: str = "Sepeda lipat", price: str = "150000") -> str:
    """Create a listing through the CLI; return its id."""
    result = ok(
        p2pm(
            "listing",
            "create",
            "--title",
            title,
            "--price",
            price,
            "--category",
            "vehicles/bicycles",
            *extra,
        )
    )
    listing_id = result.out.strip()
    assert len(listing_id) == 26
    return listing_id


def seed(home: Path | str, *titles: str) -> list[str]:
    """Create listings through the Node API, where the CLI's create is not under test."""
    with Node.open(home) as node:
        made = [node.create_listing(title=t, price=100, category="other") for t in titles]
    return [records.format_id(item.id) for item in made]


def titles(result: Result) -> list[str]:
    return sorted(item["title"] for item in ok(result).json()["results"])


# -- init and identity ------------------------------------------------------------------


def test_init_without_passphrase_writes_a_plain_key_readable_by_the_owner_only(
    cli: Cli, home_dir: Path
) -> None:
    result = ok(cli("--home", str(home_dir), "init", "--no-passphrase"))

    assert result.out.startswith("Created identity 12D3KooW")
    key_file = home_dir / "identity.key"
    assert not read_key_file(key_file).encrypted
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_init_takes_the_passphrase_from_the_environment(
    cli: Cli, home_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2PMARKET_PASSPHRASE", "rahasia")
    home = str(home_dir)

    ok(cli("--home", home, "init"))
    assert read_key_file(home_dir / "identity.key").encrypted
    created = cli(
        "--home", home, "listing", "create", "--title", "Sepeda", "--price", "1", "--category", "x"
    )
    listing_id = ok(created).out.strip()
    assert ok(cli("--home", home, "listing", "show", listing_id)).out.startswith("Sepeda")

    monkeypatch.setenv("P2PMARKET_PASSPHRASE", "salah")
    wrong = cli("--home", home, "listing", "withdraw", listing_id)
    assert_one_line_error(wrong, mentions="wrong passphrase")

    monkeypatch.delenv("P2PMARKET_PASSPHRASE")
    assert ok(cli("--home", home, "id")).out.startswith("12D3KooW")  # reading needs no key


def test_init_with_a_passphrase_but_no_terminal_or_environment_fails_cleanly(
    cli: Cli, home_dir: Path
) -> None:
    assert_one_line_error(cli("--home", str(home_dir), "init"), mentions="P2PMARKET_PASSPHRASE")
    assert not (home_dir / "identity.key").exists()


def test_init_refuses_a_home_that_has_an_identity_unless_exist_ok(p2pm: Cli) -> None:
    assert_one_line_error(p2pm("init", "--no-passphrase"), mentions="already has an identity")
    assert ok(p2pm("init", "--no-passphrase", "--exist-ok")).out == ""


def test_id_prints_the_peer_id_that_init_created(cli: Cli, home_dir: Path) -> None:
    created = ok(cli("--home", str(home_dir), "init", "--no-passphrase", "--json")).json()

    peer_id = ok(cli("--home", str(home_dir), "id")).out.strip()
    doc = ok(cli("--home", str(home_dir), "id", "--json")).json()

    assert peer_id == created["peer_id"]
    assert created["encrypted"] is False
    assert doc["peer_id"] == peer_id
    assert doc["cached_listings"] == 0


def test_backup_words_restore_the_identity_into_a_new_home(
    p2pm: Cli, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = ok(p2pm("identity", "export")).out
    assert len(words.split()) == 24
    restored = str(tmp_path / "restored")
    monkeypatch.setattr(sys, "stdin", io.StringIO(words))

    result = ok(cli("--home", restored, "identity", "import", "--no-passphrase"))

    peer_id = ok(p2pm("id")).out.strip()
    assert peer_id in result.out
    assert ok(cli("--home", restored, "id")).out.strip() == peer_id


def test_mistyped_backup_words_restore_nothing(
    p2pm: Cli, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = ok(p2pm("identity", "export")).out.split()
    words[3] = "notaword"
    monkeypatch.setattr(sys, "stdin", io.StringIO(" ".join(words)))
    restored = tmp_path / "restored"

    assert_one_line_error(
        cli("--home", str(restored), "identity", "import", "--no-passphrase"), mentions="mistyped"
    )
    assert not (restored / "identity.key").exists()


def test_a_key_file_copy_restores_the_identity(p2pm: Cli, cli: Cli, tmp_path: Path) -> None:
    copy = tmp_path / "backup.key"
    ok(p2pm("identity", "export", "--file", str(copy)))
    restored = str(tmp_path / "restored")

    ok(cli("--home", restored, "identity", "import", "--file", str(copy), "--no-passphrase"))

    assert ok(cli("--home", restored, "id")).out == ok(p2pm("id")).out
    assert_one_line_error(
        p2pm("identity", "export", "--file", str(copy)), mentions="exists already"
    )


# -- listings ----------------------------------------------------------------------------


def test_a_created_listing_can_be_shown(p2pm: Cli) -> None:
    listing_id = create(p2pm, "--tag", "lipat", "--location", "Sleman", "--description", "Mulus.")

    shown = ok(p2pm("listing", "show", listing_id)).out

    assert shown.startswith("Sepeda lipat\n")
    assert "Rp 150.000" in shown
    assert "vehicles/bicycles" in shown
    assert "Sleman" in shown
    assert "Mulus." in shown


def test_listing_create_json_prints_the_listing(p2pm: Cli) -> None:
    doc = ok(
        p2pm(
            "listing",
            "create",
            "--title",
            "Lampu",
            "--price",
            "12.50",
            "--currency",
            "usd",
            "--category",
            "home-garden",
            "--kind",
            "wanted",
            "--json",
        )
    ).json()

    assert doc["price"] == {"amount": 1250, "currency": "USD", "text": "$12.50"}
    assert doc["kind"] == "wanted"
    assert doc["seq"] == 1


def test_an_update_publishes_version_2_with_the_changes(p2pm: Cli) -> None:
    listing_id = create(p2pm)

    assert "version 2" in ok(p2pm("listing", "update", listing_id, "--price", "125000")).out

    doc = ok(p2pm("listing", "show", listing_id, "--json")).json()
    assert doc["seq"] == 2
    assert doc["price"]["text"] == "Rp 125.000"
    assert doc["title"] == "Sepeda lipat"


def test_a_withdrawn_listing_cannot_be_shown_or_found(p2pm: Cli) -> None:
    listing_id = create(p2pm)

    assert "withdrawn" in ok(p2pm("listing", "withdraw", listing_id)).out

    assert_one_line_error(p2pm("listing", "show", listing_id), mentions="withdrawn")
    assert titles(p2pm("search", "sepeda", "--json")) == []
    assert ok(p2pm("listing", "mine", "--json")).json() == []


def test_mine_lists_my_listings(p2pm: Cli, home: Path) -> None:
    assert "no live listings" in ok(p2pm("listing", "mine")).out
    first, second = seed(home, "Sepeda lipat", "Kursi rotan")

    lines = ok(p2pm("listing", "mine")).out.splitlines()
    doc = ok(p2pm("listing", "mine", "--json")).json()

    assert len(lines) == 2
    assert {line.split()[0] for line in lines} == {first, second}
    assert sorted(item["title"] for item in doc) == ["Kursi rotan", "Sepeda lipat"]


def test_an_export_imports_into_another_home(
    p2pm: Cli, cli: Cli, home: Path, tmp_path: Path
) -> None:
    seed(home, "Sepeda lipat", "Kursi rotan")
    path = tmp_path / "listings.p2pm"
    assert ok(p2pm("listing", "export", str(path), "--json")).json()["records"] == 2
    other = str(tmp_path / "other")
    init_home(other, None)

    first = ok(cli("--home", other, "listing", "import", str(path), "--json")).json()
    second = ok(cli("--home", other, "listing", "import", str(path)))

    assert (first["added"], first["rejected"]) == (2, [])
    assert "unchanged 2" in second.out
    assert titles(cli("--home", other, "search", "--json")) == ["Kursi rotan", "Sepeda lipat"]


# -- search --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stocked_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the read-only search tests, stocked through the Node API."""
    home = tmp_path_factory.mktemp("stocked") / "home"
    init_home(home, None)
    with Node.open(home) as node:
        for title, price, extra in [
            ("Sepeda lipat", 150_000_000, {"tags": ["lipat"], "location": "Sleman"}),
            ("Sepeda gunung", 300_000_000, {"location": "Bantul"}),
            ("Cari sepeda anak", 50_000_000, {"kind": "wanted", "location": "Sleman"}),
        ]:
            node.create_listing(title=title, price=price, category="vehicles/bicycles", **extra)
        node.create_listing(
            title="Kursi rotan", price=4500, currency="USD", category="home-garden/furniture"
        )
    return home


@pytest.fixture
def stocked(cli: Cli, stocked_home: Path) -> Cli:
    return lambda *args: cli("--home", str(stocked_home), *args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sepeda"], ["Cari sepeda anak", "Sepeda gunung", "Sepeda lipat"]),
        (["SEPE"], ["Cari sepeda anak", "Sepeda gunung", "Sepeda lipat"]),
        (["sepeda", "lipat"], ["Sepeda lipat"]),
        (["--kind", "wanted"], ["Cari sepeda anak"]),
        (["--category", "vehicles"], ["Cari sepeda anak", "Sepeda gunung", "Sepeda lipat"]),
        (["--category", "home-garden"], ["Kursi rotan"]),
        (["--currency", "usd"], ["Kursi rotan"]),
        (["--location", "sleman"], ["Cari sepeda anak", "Sepeda lipat"]),
        (["--min-price", "1000000"], ["Sepeda gunung", "Sepeda lipat"]),  # IDR by default
        (["--max-price", "1500000"], ["Cari sepeda anak", "Sepeda lipat"]),
        (["--currency", "USD", "--max-price", "45.00"], ["Kursi rotan"]),
        (["--currency", "USD", "--max-price", "44.99"], []),
        (["mobil"], []),
    ],
)
def test_search_filters(stocked: Cli, args: list[str], expected: list[str]) -> None:
    assert titles(stocked("search", *args, "--json")) == expected


def test_search_by_seller_peer_id(stocked: Cli) -> None:
    me = ok(stocked("id")).out.strip()
    stranger = peer_id_from_public_key(OTHER.public_key)

    assert len(titles(stocked("search", "--seller", me, "--json"))) == 4
    assert titles(stocked("search", "--seller", stranger, "--json")) == []


def test_search_sorts_by_price_and_pages(stocked: Cli) -> None:
    by_price = ok(stocked("search", "sepeda", "--sort", "price", "--json")).json()
    dearest = ok(stocked("search", "sepeda", "--sort", "-price", "--limit", "1")).out

    assert [i["price"]["amount"] for i in by_price["results"]] == [
        50_000_000,
        150_000_000,
        300_000_000,
    ]
    assert "Sepeda gunung" in dearest
    assert "--offset 1" in dearest  # the hint for the next page
    page = ok(stocked("search", "sepeda", "--sort", "price", "--limit", "2", "--json")).json()
    assert page["more"] is True
    last = ok(
        stocked("search", "sepeda", "--sort", "price", "--limit", "2", "--offset", "2", "--json")
    ).json()
    assert [i["title"] for i in last["results"]] == ["Sepeda gunung"]
    assert last["more"] is False


def test_search_without_matches_says_so(stocked: Cli) -> None:
    assert ok(stocked("search", "mobil")).out.strip() == "No listings match."


# -- profile ----------------------------------------------------------------------------


def test_a_profile_is_set_and_shown(p2pm: Cli) -> None:
    assert (
        "version 1"
        in ok(
            p2pm(
                "profile", "set", "--name", "Budi", "--contact", "wa: 0812", "--bio", "Jual sepeda."
            )
        ).out
    )
    ok(p2pm("profile", "set", "--name", "Budi Santoso", "--contact", "wa: 0812"))

    shown = ok(p2pm("profile", "show")).out
    doc = ok(p2pm("profile", "show", "--json")).json()

    assert "Budi Santoso" in shown
    assert "wa: 0812" in shown
    assert (doc["name"], doc["seq"], doc["contacts"]) == ("Budi Santoso", 2, ["wa: 0812"])


def test_a_profile_that_is_not_cached_is_an_error(p2pm: Cli) -> None:
    assert_one_line_error(p2pm("profile", "show"), mentions="no profile")


# -- --json everywhere ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["id"],
        ["listing", "show", "{id}"],
        ["listing", "mine"],
        ["search"],
        ["search", "sepeda", "--sort", "price"],
        ["profile", "show"],
        ["profile", "set", "--name", "Budi"],
        ["listing", "create", "--title", "Baru", "--price", "1", "--category", "other"],
        ["listing", "update", "{id}", "--price", "2"],
        ["listing", "export", "{file}"],
        ["listing", "import", "{file}"],
        ["listing", "withdraw", "{id}"],
    ],
    ids=lambda c: " ".join(w for w in c if not w.startswith("{"))[:30],
)
def test_json_output_is_exactly_one_document(
    p2pm: Cli, home: Path, tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "export.p2pm"
    with Node.open(home) as node:
        listing = node.create_listing(title="Sepeda lipat", price=1, category="other")
        node.set_profile(name="Budi")
        node.export_listings(path)
    args = [a.format(id=records.format_id(listing.id), file=path) for a in command]

    result = ok(p2pm(*args, "--json"))

    json.loads(result.out)  # the whole of stdout, not a line of it


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "code", "mentions"),
    [
        (["--price", "12,50"], 1, "is not a number"),
        (["--price", "-5"], 1, "zero or more"),
        (["--price", "1.234"], 1, "decimals"),
        (["--price", "1", "--currency", "XYZ"], 1, "unknown currency"),
        (["--price", "1", "--expires-days", "0"], 2, "--expires-days"),
        (["--price", "1", "--title", "x" * 141], 1, "--title: longer than 140"),
    ],
)
def test_bad_listing_values_are_one_error_line_and_store_nothing(
    p2pm: Cli, extra: list[str], code: int, mentions: str
) -> None:
    result = p2pm("listing", "create", "--title", "Sepeda", "--category", "other", *extra)

    assert_one_line_error(result, code=code, mentions=mentions)
    assert ok(p2pm("listing", "mine", "--json")).json() == []


def test_a_bad_kind_is_a_usage_error(p2pm: Cli) -> None:
    result = p2pm(
        "listing", "create", "--title", "S", "--price", "1", "--category", "other", "--kind", "rent"
    )

    assert_one_line_error(result, code=2, mentions="--kind")


def test_a_missing_required_option_is_a_usage_error(p2pm: Cli) -> None:
    assert_one_line_error(p2pm("listing", "create", "--title", "S"), code=2, mentions="--price")


def test_an_unknown_command_is_a_usage_error(p2pm: Cli) -> None:
    assert_one_line_error(p2pm("sell-everything"), code=2)


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        (["listing", "show", "aaaaaaaaaaaaaaaaaaaaaaaaaa"], "no listing"),
        (["listing", "update", "aaaaaaaaaaaaaaaaaaaaaaaaaa", "--price", "1"], "no listing"),
        (["listing", "withdraw", "aaaaaaaaaaaaaaaaaaaaaaaaaa"], "no listing"),
        (["listing", "show", "sepeda"], "not a listing id"),
        (["search", "--seller", "budi"], "peer id"),
        (["search", "--currency", "IRD"], "unknown currency"),
        (["search", "--min-price", "murah"], "not a number"),
    ],
)
def test_unknown_ids_and_bad_filters_are_one_error_line(
    p2pm: Cli, command: list[str], mentions: str
) -> None:
    assert_one_line_error(p2pm(*command), mentions=mentions)


@pytest.mark.parametrize("command", [["id"], ["search"], ["listing", "mine"]])
def test_a_missing_home_says_to_run_init(cli: Cli, tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nowhere"

    assert_one_line_error(cli("--home", str(missing), *command), mentions="p2pmarket init")
    assert not missing.exists()


def _store_snapshot(home: Path) -> list[tuple[bytes, bytes]]:
    with Node.open(home) as node:
        return list(node.store.db.iterator())


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_import_file_is_one_error_line_and_changes_nothing(
    p2pm: Cli, cli: Cli, home: Path, tmp_path: Path, damage: str
) -> None:
    seed(home, "Sepeda lipat", "Kursi rotan")
    path = tmp_path / "listings.p2pm"
    ok(p2pm("listing", "export", str(path)))
    other = tmp_path / "other"
    init_home(other, None)
    seed(other, "Sudah ada")
    data = path.read_bytes()
    path.write_bytes(b"\x00garbage\xc1" + data if damage == "garbage" else data[:-20])
    before = _store_snapshot(other)

    result = cli("--home", str(other), "listing", "import", str(path))

    assert_one_line_error(result, mentions=str(path))
    assert _store_snapshot(other) == before


def test_an_import_with_a_tampered_record_stores_the_rest_and_exits_1(
    p2pm: Cli, cli: Cli, home: Path, tmp_path: Path
) -> None:
    seed(home, "Sepeda lipat", "Kursi rotan")
    path = tmp_path / "listings.p2pm"
    ok(p2pm("listing", "export", str(path)))
    position = next(i for i, r in enumerate(read_export(path), 1) if b"Kursi rotan" in r)
    path.write_bytes(path.read_bytes().replace(b"Kursi rotan", b"Kursi rotap"))
    other = str(tmp_path / "other")
    init_home(other, None)

    result = cli("--home", other, "listing", "import", str(path))

    assert result.code == 1
    assert "rejected 1" in result.out
    assert f"record {position}: sig" in result.err
    assert "Traceback" not in result.err
    assert titles(cli("--home", other, "search", "--json")) == ["Sepeda lipat"]


def test_debug_shows_the_traceback(cli: Cli, tmp_path: Path) -> None:
    from p2pmarket.errors import ConfigError

    with pytest.raises(ConfigError):
        cli("--home", str(tmp_path / "nowhere"), "--debug", "id")


# -- through typer's test runner ---------------------------------------------------------------


@pytest.fixture
def seeded_home(home: Path) -> tuple[Path, str]:
    """A home (from the shared fixture) holding one listing made through the Node API."""
    with Node.open(home) as node:
        listing = node.create_listing(
            title="Sepeda lipat", price=15_000_000, category="vehicles/bicycles"
        )
    return home, records.format_id(listing.id)


def test_runner_id_prints_the_peer_id(seeded_home: tuple[Path, str]) -> None:
    home, _ = seeded_home

    result = CliRunner().invoke(app, ["--home", str(home), "id"])

    assert result.exit_code == 0, result.output
    with Node.open(home) as node:
        assert result.stdout.strip() == node.peer_id


def test_runner_search_and_show_find_the_listing(seeded_home: tuple[Path, str]) -> None:
    home, listing_id = seeded_home
    runner = CliRunner()

    found = runner.invoke(app, ["--home", str(home), "search", "sepe", "--json"])
    shown = runner.invoke(app, ["--home", str(home), "listing", "show", listing_id])

    assert found.exit_code == 0, found.output
    assert [r["id"] for r in json.loads(found.stdout)["results"]] == [listing_id]
    assert shown.exit_code == 0, shown.output
    assert "Rp 150.000" in shown.stdout


def test_runner_listing_create_with_the_passphrase_in_the_environment(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "sealed")
    env = {"P2PMARKET_PASSPHRASE": "rahasia"}
    assert runner.invoke(app, ["--home", home, "init"], env=env).exit_code == 0

    created = runner.invoke(
        app,
        [
            "--home",
            home,
            "listing",
            "create",
            "--title",
            "Sepeda",
            "--price",
            "1",
            "--category",
            "other",
        ],
        env=env,
    )

    assert created.exit_code == 0, created.output
    assert len(created.stdout.strip()) == 26


def test_a_quantity_beyond_the_limit_is_a_usage_error(p2pm: Cli) -> None:
    result = p2pm(
        "listing",
        "create",
        "--title",
        "x",
        "--price",
        "1",
        "--category",
        "x",
        "--quantity",
        "100000000000000000000",
    )
    assert result.code == 2
    assert result.err.startswith("error:") and result.err.count("\n") == 1


def test_init_exist_ok_with_json_still_prints_one_document(cli: Cli, home: Path) -> None:
    result = ok(cli("--home", str(home), "init", "--exist-ok", "--json"))
    assert json.loads(result.out)["peer_id"].startswith("12D3KooW")


def test_a_search_with_nothing_to_search_for_says_so(p2pm: Cli) -> None:
    result = p2pm("search", "!!!")
    assert result.code == 1
    assert "no letters or digits" in result.err
