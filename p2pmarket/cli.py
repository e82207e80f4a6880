"""The ``p2pmarket`` command line.

Every command talks to a :class:`~p2pmarket.node.Node`. Errors are caught in one
place (:func:`main`) and printed as one line on stderr with a non-zero exit:
1 for a failed operation, 2 for a bad command line. ``--debug`` shows tracebacks.

Imports are kept lazy: ``p2pmarket search`` loads neither libp2p, trio, rich nor
libsodium, so it starts in about the time Python and typer take.
"""

from __future__ import annotations

import enum
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from p2pmarket.errors import IdentityError, InvalidInput, P2PMarketError

if TYPE_CHECKING:
    from p2pmarket.events import SyncProgress
    from p2pmarket.home import Config
    from p2pmarket.node import Node
    from p2pmarket.records import Listing
    from p2pmarket.rpc.client import Client
    from p2pmarket.trade import TradeView

    Backend = Node | Client

PASSPHRASE_ENV = "P2PMARKET_PASSPHRASE"

app = typer.Typer(
    name="p2pmarket",
    help="A peer-to-peer marketplace node: sign listings, keep and search a local cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
identity_app = typer.Typer(help="Back up and restore this node's identity.", no_args_is_help=True)
listing_app = typer.Typer(help="Create and manage listings.", no_args_is_help=True)
profile_app = typer.Typer(help="Your public seller profile.", no_args_is_help=True)
msg_app = typer.Typer(help="End-to-end encrypted direct messages.", no_args_is_help=True)
app.add_typer(identity_app, name="identity")
app.add_typer(listing_app, name="listing")
app.add_typer(profile_app, name="profile")
trade_app = typer.Typer(help="Trades: offers, counters, signed contracts.", no_args_is_help=True)
app.add_typer(msg_app, name="msg")
app.add_typer(trade_app, name="trade")


class _State:
    home: Path | None = None
    debug: bool = False


STATE = _State()


class KindChoice(enum.StrEnum):
    sell = "sell"
    wanted = "wanted"


class SortChoice(enum.StrEnum):
    newest = "newest"
    price = "price"
    price_desc = "-price"
    rating = "rating"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _listing_id_callback(value: str) -> str:
    from p2pmarket.cli_input import check_listing_id

    return check_listing_id(value)


ListingIdArg = Annotated[str, typer.Argument(metavar="ID", callback=_listing_id_callback)]


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="P2PMARKET_HOME",
            help="Home folder (identity, store, config). Default: the per-user data folder.",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    STATE.home = home
    STATE.debug = debug


# -- helpers -----------------------------------------------------------------


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


def _ask_passphrase(*, confirm: bool = False) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise IdentityError(
            f"a passphrase is needed: set {PASSPHRASE_ENV} or run this in a terminal"
        )
    secret = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != secret:
        raise IdentityError("the two passphrases differ; nothing was created")
    return secret


def _open() -> Backend:
    """The running daemon (through its control socket), else the home's store.

    While a daemon runs it holds the store, so every command goes through it,
    and writes are published to peers as well as stored. A starting daemon is
    waited for (see p2pmarket.backend)."""
    from p2pmarket.backend import open_client_or_node

    return open_client_or_node(_home_path(), _ask_passphrase)


def _daemon(not_running: str | None = None) -> Client:
    """A client of the home's daemon (waiting while it starts); DaemonNotRunning,
    in one line, when none runs."""
    from p2pmarket.backend import open_client
    from p2pmarket.home import Home
    from p2pmarket.rpc.client import DaemonNotRunning

    home = Home(_home_path())
    client = open_client(home.root)
    if client is None:
        home.require()
        raise DaemonNotRunning(
            not_running
            or "this needs the network and the daemon is not running: "
            "start it with `p2pmarket daemon` (in another terminal)"
        )
    return client


def _config() -> Config:
    from p2pmarket.home import Home

    return Home(_home_path()).load_config()


def _public_key() -> bytes:
    from p2pmarket.crypto.keystore import read_key_file
    from p2pmarket.home import Home

    home = Home(_home_path())
    home.require()
    return read_key_file(home.key_file).public_key


def _home_path() -> Path:
    """The home, refused (with the fix) if other users could change it."""
    from p2pmarket.home import default_home
    from p2pmarket.localtrust import check_home

    home = STATE.home.expanduser() if STATE.home is not None else default_home()
    check_home(home)
    return home


def _amount(text: str | None, currency: str) -> int | None:
    from p2pmarket.money import parse_amount

    return None if text is None else parse_amount(text, currency)


def _currency(code: str | None) -> str:
    from p2pmarket.money import check_currency

    return check_currency(code) if code else _config().currency


def _show_listing(listing: Listing, as_json: bool) -> None:
    from p2pmarket.display import listing_details, listing_json

    if as_json:
        _print_json(listing_json(listing))
    else:
        typer.echo("\n".join(listing_details(listing)))


# -- identity ------------------------------------------------------------------


@app.command()
def init(
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Store the key unencrypted (file mode 0600).")
    ] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Succeed quietly if the home is already set up.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create this node's identity (an ed25519 key) in the home folder."""
    from p2pmarket.home import Home
    from p2pmarket.node import init_home

    home = _home_path()
    if exist_ok and Home(home).initialised:
        if as_json:
            from p2pmarket.crypto.keystore import read_key_file
            from p2pmarket.crypto.peer_id import peer_id_from_public_key

            key_file = read_key_file(Home(home).key_file)
            _print_json(
                {
                    "peer_id": peer_id_from_public_key(key_file.public_key),
                    "home": str(home),
                    "encrypted": key_file.encrypted,
                }
            )
        return
    passphrase = None if no_passphrase else _ask_passphrase(confirm=True)
    peer_id = init_home(home, passphrase)
    if as_json:
        _print_json({"peer_id": peer_id, "home": str(home), "encrypted": not no_passphrase})
    else:
        typer.echo(f"Created identity {peer_id} in {home}")


@app.command("id")
def show_id(as_json: JsonOpt = False) -> None:
    """Show this node's peer id (which is also its seller id)."""
    from p2pmarket.crypto.peer_id import peer_id_from_public_key

    public_key = _public_key()
    peer_id = peer_id_from_public_key(public_key)
    if as_json:
        with _open() as node:
            cached = node.status().cached_listings
        _print_json(
            {
                "peer_id": peer_id,
                "public_key": public_key.hex(),
                "home": str(_home_path()),
                "cached_listings": cached,
            }
        )
    else:
        typer.echo(peer_id)


@identity_app.command("export")
def identity_export(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="Copy the (encrypted) key file here instead of printing words."
        ),
    ] = None,
) -> None:
    """Print the 24 backup words of this identity (keep them secret and offline)."""
    from p2pmarket.crypto.backup import to_words
    from p2pmarket.crypto.keystore import read_key_file, write_key_file
    from p2pmarket.home import Home

    home = Home(_home_path())
    home.require()
    key_file = read_key_file(home.key_file)
    if file is not None:
        if file.exists():
            raise InvalidInput(f"{file} exists already; choose a new file name")
        try:
            write_key_file(file, home.key_file.read_bytes())
        except OSError as exc:
            raise InvalidInput(f"cannot write {file}: {exc.strerror}") from None
        typer.echo(f"Key file copied to {file}; it needs the same passphrase to restore.")
        return
    signer = key_file.unlock(_ask_passphrase() if key_file.encrypted else None)
    typer.echo(to_words(signer))


@identity_app.command("import")
def identity_import(
    file: Annotated[
        Path | None, typer.Option("--file", help="Restore from a key file made by export --file.")
    ] = None,
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Store the restored key unencrypted.")
    ] = False,
) -> None:
    """Restore an identity into a new home, from backup words (stdin) or a key file."""
    from p2pmarket.crypto.backup import from_words
    from p2pmarket.crypto.keystore import KeyFile
    from p2pmarket.node import init_home

    home = _home_path()
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
        key_file = KeyFile(data, str(file))
        signer = key_file.unlock(_ask_passphrase() if key_file.encrypted else None)
    else:
        if sys.stdin.isatty():
            typer.echo("Type the 24 backup words, then Enter:", err=True)
            words = input()
        else:
            words = sys.stdin.read()
        signer = from_words(words)
    passphrase = None if no_passphrase else _ask_passphrase(confirm=True)
    peer_id = init_home(home, passphrase, signer=signer)
    typer.echo(f"Restored identity {peer_id} in {home}")


# -- listings ------------------------------------------------------------------


@listing_app.command("create")
def listing_create(
    title: Annotated[str, typer.Option(help="Up to 140 characters.")],
    price: Annotated[
        str, typer.Option(help="Amount in the currency's units, e.g. 150000 or 12.50.")
    ],
    category: Annotated[str, typer.Option(help="e.g. vehicles/bicycles, electronics, services.")],
    currency: Annotated[
        str | None, typer.Option(help="ISO 4217 code. Default: the home's config (IDR).")
    ] = None,
    kind: Annotated[KindChoice, typer.Option(help="sell (an offer) or wanted (a request).")] = (
        KindChoice.sell
    ),
    description: Annotated[str, typer.Option(help="Up to 4000 characters.")] = "",
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Repeat for up to 10 tags.")
    ] = None,
    location: Annotated[str | None, typer.Option(help="Where the item is, e.g. Sleman.")] = None,
    quantity: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="How many are available.")
    ] = 1,
    expires_days: Annotated[
        int | None, typer.Option(min=1, max=90, help="Days until it expires (default 30).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign and store a new listing; print its id."""
    from p2pmarket.records import format_id

    with _open() as node:
        code = _currency(currency)
        listing = node.create_listing(
            title=title,
            price=_amount(price, code) or 0,
            currency=code,
            category=category,
            kind=kind.value,
            description=description,
            tags=tag or (),
            location=location,
            quantity=quantity,
            expires_days=expires_days,
        )
        if as_json:
            _show_listing(listing, True)
        else:
            typer.echo(format_id(listing.id))


@listing_app.command("update")
def listing_update(
    listing_id: ListingIdArg,
    title: Annotated[str | None, typer.Option()] = None,
    price: Annotated[str | None, typer.Option()] = None,
    currency: Annotated[str | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[KindChoice | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Replaces all tags; repeat for several.")
    ] = None,
    location: Annotated[str | None, typer.Option()] = None,
    quantity: Annotated[int | None, typer.Option(min=1, max=1_000_000)] = None,
    expires_days: Annotated[int | None, typer.Option(min=1, max=90)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish a new version of one of your listings with the given changes."""
    from p2pmarket.records import format_id

    with _open() as node:
        current = node.get_listing(listing_id)
        code = _currency(currency) if currency else current.currency
        listing = node.update_listing(
            listing_id,
            title=title,
            price=_amount(price, code),
            currency=code,
            category=category,
            kind=kind.value if kind else None,
            description=description,
            tags=tag,
            location=location,
            quantity=quantity,
            expires_days=expires_days,
        )
        if as_json:
            _show_listing(listing, True)
        else:
            typer.echo(f"{format_id(listing.id)} updated (version {listing.seq})")


@listing_app.command("withdraw")
def listing_withdraw(listing_id: ListingIdArg, as_json: JsonOpt = False) -> None:
    """Withdraw one of your listings for good."""
    from p2pmarket.display import tombstone_json
    from p2pmarket.records import format_id

    with _open() as node:
        tombstone = node.withdraw_listing(listing_id)
        if as_json:
            _print_json(tombstone_json(tombstone))
        else:
            typer.echo(f"{format_id(tombstone.id)} withdrawn")


@listing_app.command("show")
def listing_show(listing_id: ListingIdArg, as_json: JsonOpt = False) -> None:
    """Show one listing from the local cache."""
    with _open() as node:
        _show_listing(node.get_listing(listing_id), as_json)


@listing_app.command("mine")
def listing_mine(as_json: JsonOpt = False) -> None:
    """List your own live listings, newest first."""
    from p2pmarket.display import listing_json, listing_line

    with _open() as node:
        mine = node.my_listings()
        if as_json:
            _print_json([listing_json(item) for item in mine])
        elif not mine:
            typer.echo("You have no live listings. Create one with `p2pmarket listing create`.")
        else:
            for item in mine:
                typer.echo(listing_line(item))


@listing_app.command("export")
def listing_export(
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    everything: Annotated[
        bool, typer.Option("--all", help="Export the whole cache, not only your listings.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write signed records to FILE, for backup or to hand to another node."""
    with _open() as node:
        count = node.export_listings(file, everything=everything)
    if as_json:
        _print_json({"file": str(file), "records": count})
    else:
        typer.echo(f"Exported {count} records to {file}")


@listing_app.command("import")
def listing_import(
    file: Annotated[Path, typer.Argument(metavar="FILE")], as_json: JsonOpt = False
) -> None:
    """Verify and store the records of an export file. Exits 1 if any was rejected."""
    with _open() as node:
        report = node.import_listings(file)
    if as_json:
        _print_json(
            {
                "accepted": report.accepted,
                "added": report.added,
                "updated": report.updated,
                "withdrawn": report.withdrawn,
                "unchanged": report.unchanged,
                "rejected": [{"record": n, "reason": why} for n, why in report.rejected],
            }
        )
    else:
        typer.echo(
            f"accepted {report.accepted} ({report.added} new, {report.updated} updated, "
            f"{report.withdrawn} withdrawn), unchanged {report.unchanged}, "
            f"rejected {len(report.rejected)}"
        )
        for position, reason in report.rejected:
            typer.echo(f"  record {position}: {reason}", err=True)
    if report.rejected:
        raise typer.Exit(1)


# -- search --------------------------------------------------------------------


@app.command()
def search(
    words: Annotated[list[str] | None, typer.Argument(metavar="[WORDS]...")] = None,
    kind: Annotated[KindChoice | None, typer.Option(help="sell or wanted.")] = None,
    category: Annotated[str | None, typer.Option(help="A category or its parent.")] = None,
    currency: Annotated[str | None, typer.Option(help="Only prices in this currency.")] = None,
    min_price: Annotated[str | None, typer.Option(help="In the currency's units.")] = None,
    max_price: Annotated[str | None, typer.Option(help="In the currency's units.")] = None,
    location: Annotated[str | None, typer.Option(help="Words the location must contain.")] = None,
    seller: Annotated[str | None, typer.Option(help="A seller's peer id.")] = None,
    sort: Annotated[
        SortChoice, typer.Option(help="newest, price, -price or rating (best sellers first).")
    ] = SortChoice.newest,
    min_rating: Annotated[
        float | None, typer.Option(min=1, max=5, help="Only sellers rated at least this (1-5).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0, max=100_000)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Search the local listing cache (works offline). The last word also matches as a
    prefix: `sepe` finds `sepeda`. Each hit shows its seller's name and rating."""
    from p2pmarket.crypto.peer_id import public_key_from_peer_id
    from p2pmarket.display import listing_line, seller_listing_json, syncing_note

    with _open() as node:
        code = currency
        if code is None and (min_price is not None or max_price is not None):
            code = _config().currency  # a price means nothing without its currency
        code = _currency(code) if code else None
        page = node.search(
            " ".join(words or []),
            kind=kind.value if kind else None,
            category=category,
            currency=code,
            min_price=_amount(min_price, code) if code else None,
            max_price=_amount(max_price, code) if code else None,
            location=location,
            seller=public_key_from_peer_id(seller) if seller else None,
            sort=sort.value,
            min_rating=min_rating,
            limit=limit,
            offset=offset,
        )
        sellers = {info.key: info for info in node.sellers([x.seller for x in page.listings])}
        sync = node.sync_status()
        cached = node.status().cached_listings if not page.listings else None
    note = syncing_note(sync)
    if as_json:
        results = [seller_listing_json(x, sellers[x.seller]) for x in page.listings]
        doc = {"results": results, "more": page.more}
        _print_json({**doc, "syncing": sync.syncing, "first_sync": sync.first_sync})
        return
    if note:
        sys.stderr.write(note + "\n")
    if not page.listings:
        typer.echo("No listings match." if not offset else "No more listings.")
        if cached == 0 and not sync.syncing:
            sys.stderr.write(
                "the listing cache is empty: run `p2pmarket daemon` to sync with the market\n"
            )
        return
    for item in page.listings:
        typer.echo(listing_line(item, seller=sellers[item.seller]))
    if page.more:
        typer.echo(f"… more: add --offset {offset + limit}")


@app.command()
def browse() -> None:
    """Browse the listing cache in a terminal UI: type to search, arrows to move,
    Ctrl-Q to quit. Through the daemon while it runs, offline otherwise."""
    from p2pmarket.tui.browse import BrowseApp

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise P2PMarketError("browse needs a terminal; use `p2pmarket search` in scripts")
    with _open() as node:
        BrowseApp(node).run()


# -- profile -------------------------------------------------------------------


@profile_app.command("set")
def profile_set(
    name: Annotated[str, typer.Option(help="Display name, up to 64 characters.")],
    bio: Annotated[str, typer.Option(help="About you, up to 1000 characters.")] = "",
    contact: Annotated[
        list[str] | None, typer.Option("--contact", help="A contact hint; repeat up to 5.")
    ] = None,
    location: Annotated[str, typer.Option()] = "",
    as_json: JsonOpt = False,
) -> None:
    """Sign and store your seller profile."""
    from p2pmarket.display import profile_json

    with _open() as node:
        profile = node.set_profile(name=name, bio=bio, contacts=contact or (), location=location)
    if as_json:
        _print_json(profile_json(profile))
    else:
        typer.echo(f"Profile saved (version {profile.seq})")


@profile_app.command("show")
def profile_show(
    peer_id: Annotated[str | None, typer.Argument(metavar="[PEER_ID]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a profile and reputation from the local cache (yours by default)."""
    from p2pmarket.crypto.peer_id import peer_id_from_public_key, public_key_from_peer_id
    from p2pmarket.display import profile_json, reputation_json, reputation_lines
    from p2pmarket.errors import NotFound

    owner = public_key_from_peer_id(peer_id) if peer_id else _public_key()
    with _open() as node:
        profile = node.profile(owner)
        reputation = node.reputation(owner)
    if profile is None and reputation.counterparties == 0:
        raise NotFound(f"no profile or reviews for {peer_id or 'you'} in the local cache")
    who = {"peer_id": peer_id_from_public_key(owner), "contacts": []}
    doc: dict[str, Any] = profile_json(profile) if profile else who
    if as_json:
        _print_json({**doc, "reputation": reputation_json(reputation)})
        return
    for key in ("name", "peer_id", "location", "bio"):
        if doc.get(key):
            typer.echo(f"{key:9} {doc[key]}")
    for contact in doc["contacts"]:
        typer.echo(f"contact   {contact}")
    for line in reputation_lines(reputation):
        typer.echo(line)


# -- the network -----------------------------------------------------------------


@app.command()
def daemon(
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen",
            help="Multiaddr to listen on; repeat for several. Default: config, "
            "else /ip4/0.0.0.0/tcp/4690.",
        ),
    ] = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", help="Peer multiaddr (…/p2p/<id>) to dial at start; repeat."),
    ] = None,
    no_mdns: Annotated[
        bool, typer.Option("--no-mdns", help="Do not look for peers on the local network.")
    ] = False,
    relay_service: Annotated[
        bool | None,
        typer.Option(
            "--relay-service/--no-relay-service",
            help="Relay for peers behind NAT while this node is reachable (default: on).",
        ),
    ] = None,
    follow: Annotated[
        list[str] | None,
        typer.Option("--follow", help="Only receive listings of this category; repeat."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log network activity.")] = False,
) -> None:
    """Run this node on the network in the foreground (Ctrl-C stops it)."""
    import dataclasses
    import logging
    from functools import partial

    import trio

    from p2pmarket.daemon import run_daemon
    from p2pmarket.network.addresses import check_peer_address

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    config = _config().network()
    for address in bootstrap or config.bootstrap:
        # A bad address (a flag, or config.toml's bootstrap) is one line, before starting.
        check_peer_address(address)
    config = dataclasses.replace(
        config,
        listen=tuple(listen) if listen else config.listen,
        bootstrap=tuple(bootstrap) if bootstrap else config.bootstrap,
        mdns=config.mdns and not no_mdns,
        relay_service=config.relay_service if relay_service is None else relay_service,
        follow=tuple(follow) if follow else config.follow,
    )

    def ready(node: Node) -> None:
        status = node.status()
        typer.echo(f"p2pmarket daemon {status.peer_id}")
        for address in status.addresses:
            typer.echo(f"listening on {address}")
        typer.echo(f"control socket {node.home.control_socket}")
        typer.echo("press Ctrl-C to stop")

    trio.run(partial(run_daemon, STATE.home, config, _ask_passphrase, ready=ready))
    typer.echo("stopped")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show this node: peer id, addresses, peers, cached listings (works offline)."""
    import dataclasses

    with _open() as node:
        info = node.status()
    if as_json:
        _print_json(dataclasses.asdict(info))
        return
    from p2pmarket.display import reach_line, sync_line

    typer.echo(f"peer id   {info.peer_id}")
    if not info.online:
        typer.echo("network   offline (the daemon is not running: `p2pmarket daemon`)")
    else:
        for address in info.addresses:
            typer.echo(f"address   {address}")
        from p2pmarket.invites_view import peers_line

        typer.echo(f"peers     {peers_line(info)}")
        typer.echo(f"reach     {reach_line(info)}")
        typer.echo(f"topics    {', '.join(info.topics)}")
    if info.sync is not None:
        typer.echo(f"sync      {sync_line(info.sync)}")
    typer.echo(f"listings  {info.cached_listings} cached")
    typer.echo(
        f"messages  {info.unread} unread; {info.outbox} waiting to be delivered; "
        f"holding {info.held_mail} for offline peers"
    )


@app.command()
def peers(as_json: JsonOpt = False) -> None:
    """List the peers the daemon is connected to."""
    import dataclasses

    with _daemon() as client:
        found = client.peers()
    if as_json:
        _print_json([dataclasses.asdict(p) for p in found])
        return
    if not found:
        typer.echo("No peers connected.")
    for peer in found:
        typer.echo(f"{peer.peer_id}  {peer.direction:8}  {', '.join(peer.addresses)}")


@app.command()
def connect(
    address: Annotated[str, typer.Argument(metavar="MULTIADDR", help="…/p2p/<peer id>")],
) -> None:
    """Connect the daemon to a peer."""
    from p2pmarket.network.addresses import check_peer_address

    check_peer_address(address)  # a malformed address fails here, daemon or not
    with _daemon() as client:
        peer = client.connect(address)
    typer.echo(f"connected to {peer.peer_id}")


@app.command()
def invite(
    no_qr: Annotated[bool, typer.Option("--no-qr", help="Print the line only.")] = False,
) -> None:
    """Print a line (and a QR code) to share in a chat group: others join with it."""
    with _daemon() as client:
        line = client.invite()
    if not no_qr and sys.stdout.isatty():
        from p2pmarket.invites_view import qr_text

        typer.echo(qr_text(line), nl=False)
    typer.echo(line)


def _invite_callback(value: str) -> str:
    from p2pmarket.invite import decode

    try:
        decode(value)  # a malformed line fails here (exit 2), daemon or not
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@app.command()
def join(
    line: Annotated[str, typer.Argument(metavar="INVITE", callback=_invite_callback)],
) -> None:
    """Connect to the node an invite line names, and remember it."""
    with _daemon() as client:
        peer = client.join(line)
    typer.echo(f"joined {peer.peer_id}")


@app.command()
def stop() -> None:
    """Stop the running daemon."""
    import time

    from p2pmarket.home import Home

    not_running = f"no daemon is running on {_home_path()}: there is nothing to stop"
    with _daemon(not_running) as client:
        client.stop()
    # The daemon closes its store, then removes its socket: wait for that, so
    # that the next command can use the home at once.
    socket_file = Home(_home_path()).control_socket
    deadline = time.monotonic() + 15
    while socket_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if socket_file.exists():
        raise P2PMarketError("the daemon was asked to stop but is still running")
    typer.echo("daemon stopped")


@listing_app.command("fetch")
def listing_fetch(listing_id: ListingIdArg, as_json: JsonOpt = False) -> None:
    """Look a listing up in the DHT (and keep it in the local cache)."""
    from p2pmarket.records import parse_id

    raw = parse_id(listing_id)
    with _daemon() as client:
        listing = client.fetch_listing(raw)
    _show_listing(listing, as_json)


@app.command()
def seller(
    peer_id: Annotated[str, typer.Argument(metavar="PEER_ID")], as_json: JsonOpt = False
) -> None:
    """Fetch a seller's catalogue, profile and reviews from the DHT and show their
    live listings and reputation."""
    from p2pmarket.crypto.peer_id import public_key_from_peer_id
    from p2pmarket.display import listing_json, listing_line, reputation_json, reputation_lines

    key = public_key_from_peer_id(peer_id)
    with _daemon() as client:
        found = client.fetch_seller(key)
        profile = client.profile(key)
        reputation = client.reputation(key)
    if as_json:
        _print_json(
            {
                "peer_id": peer_id,
                "name": profile.name if profile else None,
                "location": profile.location if profile else None,
                "reputation": reputation_json(reputation),
                "listings": [listing_json(item) for item in found],
            }
        )
        return
    place = f" ({profile.location})" if profile and profile.location else ""
    name = profile.name if profile else "seller"
    typer.echo(f"{name}{place} {peer_id}: {len(found)} live listings")
    for line in reputation_lines(reputation):
        typer.echo(line)
    for item in found:
        typer.echo(listing_line(item))


@msg_app.command("send")
def msg_send(
    to: Annotated[str, typer.Argument(help="A peer id, or a listing id to write to its seller.")],
    text: Annotated[str, typer.Argument(help="The message.")],
    as_json: JsonOpt = False,
) -> None:
    """Seal a message and queue it; the daemon delivers it and retries until the
    recipient's node acknowledges it."""
    from p2pmarket.display import message_json

    with _open() as node:
        message = node.send_message(to, text)
    if as_json:
        _print_json(message_json(message))
    else:
        typer.echo(f"queued {message.id.hex()} (delivered while the daemon runs)")


@msg_app.command("thread")
def msg_thread(
    peer: Annotated[str, typer.Argument(help="The other side's peer id.")],
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The conversation with one peer, oldest first; marks it read."""
    from p2pmarket.display import message_json, message_line

    with _open() as node:
        found = node.thread(peer, limit)
        node.mark_read(peer)
    if as_json:
        _print_json([message_json(m) for m in found])
        return
    if not found:
        typer.echo("No messages with this peer.")
    for message in found:
        typer.echo(message_line(message))


@msg_app.command("check")
def msg_check() -> None:
    """Ask your mailbox holders for mail now (the daemon also does every 5 minutes)."""
    with _daemon() as client:
        arrived = client.check_mail()
    typer.echo(f"{arrived} envelopes collected" if arrived else "No new mail.")


@msg_app.command("inbox")
def msg_inbox(as_json: JsonOpt = False) -> None:
    """Conversations, the latest first, with unread counts."""
    from p2pmarket.crypto.peer_id import peer_id_from_public_key
    from p2pmarket.display import message_json

    with _open() as node:
        threads = node.conversations()
    if as_json:
        _print_json(
            [
                {
                    "peer": peer_id_from_public_key(t.peer),
                    "unread": t.unread,
                    "last": message_json(t.last),
                }
                for t in threads
            ]
        )
        return
    if not threads:
        typer.echo("No messages yet.")
    for t in threads:
        unread = f"{t.unread} unread" if t.unread else "read"
        arrow = "→" if t.last.outgoing else "←"
        typer.echo(f"{peer_id_from_public_key(t.peer)}  {unread:>9}  {arrow} {t.last.text[:60]}")


@app.command()
def chat(
    peer: Annotated[str, typer.Argument(help="The other side's peer id.")],
) -> None:
    """Talk with one peer: its messages appear as they arrive, Enter sends,
    Ctrl-Q quits. Needs the daemon running (`p2pmarket daemon`)."""
    from p2pmarket.crypto.peer_id import public_key_from_peer_id
    from p2pmarket.tui.chat import ChatApp

    key = public_key_from_peer_id(peer)
    if key == _public_key():
        raise InvalidInput("that is your own peer id: a chat needs another peer")
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise P2PMarketError("chat needs a terminal; use `p2pmarket msg send` in scripts")
    with _daemon() as client:
        ChatApp(client, key).run()


@app.command()
def block(peer: Annotated[str, typer.Argument(help="The peer id to block.")]) -> None:
    """Block a peer: its messages are dropped and its listings hidden from search."""
    with _open() as node:
        changed = node.block(peer)
    typer.echo(f"blocked {peer}" if changed else f"{peer} was already blocked")


@app.command()
def unblock(peer: Annotated[str, typer.Argument(help="The peer id to unblock.")]) -> None:
    """Unblock a peer: its new messages and its listings are seen again."""
    with _open() as node:
        changed = node.unblock(peer)
    typer.echo(f"unblocked {peer}" if changed else f"{peer} was not blocked")


@app.command()
def blocked(as_json: JsonOpt = False) -> None:
    """The peers you blocked, most recent first."""
    with _open() as node:
        peers = node.blocked()
    if as_json:
        _print_json(peers)
        return
    typer.echo("\n".join(peers) if peers else "No one is blocked.")


# -- trades --------------------------------------------------------------------

TradeId = Annotated[str, typer.Argument(metavar="TRADE_ID", help="The trade's id (32 hex digits).")]


def _print_trade(view: TradeView, as_json: bool) -> None:
    from p2pmarket.display import trade_json, trade_line

    if as_json:
        _print_json(trade_json(view))
    else:
        typer.echo(trade_line(view))


@trade_app.command("offer")
def trade_offer(
    listing_id: Annotated[str, typer.Argument(metavar="LISTING_ID", callback=_listing_id_callback)],
    price: Annotated[
        str | None, typer.Option(help="Your price in the listing's currency; default: its price.")
    ] = None,
    quantity: Annotated[int, typer.Option(min=1)] = 1,
    note: Annotated[str, typer.Option(help="e.g. how you want to pay or collect.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Make an offer on a listing; it goes to the seller like a message."""
    with _open() as node:
        listing = node.get_listing(listing_id)
        amount = _amount(price, listing.currency)
        view = node.offer(listing_id, price=amount, quantity=quantity, note=note)
    _print_trade(view, as_json)


@trade_app.command("counter")
def trade_counter(
    trade_id: TradeId,
    price: Annotated[str | None, typer.Option(help="New price, in the trade's currency.")] = None,
    quantity: Annotated[int | None, typer.Option(min=1)] = None,
    note: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer the terms on the table with new ones."""
    with _open() as node:
        currency = node.get_trade(trade_id).terms.currency
        view = node.trade_step(
            trade_id, "counter", price=_amount(price, currency), quantity=quantity, note=note
        )
    _print_trade(view, as_json)


def _step(kind: str, help_text: str) -> None:
    def command(trade_id: TradeId, as_json: JsonOpt = False) -> None:
        with _open() as node:
            view = node.trade_step(trade_id, kind)
        _print_trade(view, as_json)

    command.__doc__ = help_text
    trade_app.command(kind.replace("paid", "mark-paid").replace("shipped", "mark-shipped"))(command)


for _kind, _help in (
    ("accept", "Accept the terms on the table: the contract is then signed by both."),
    ("decline", "Decline the terms on the table; the trade ends."),
    ("cancel", "Cancel the trade (before or after agreeing)."),
    ("paid", "Say you have paid (buyer)."),
    ("shipped", "Say you have shipped or handed over (seller)."),
    ("complete", "Confirm you received it (buyer); the trade is complete."),
):
    _step(_kind, _help)


@trade_app.command("list")
def trade_list(as_json: JsonOpt = False) -> None:
    """Your trades, the most recently moved first."""
    from p2pmarket.display import trade_json, trade_line

    with _open() as node:
        views = node.trades()
    if as_json:
        _print_json([trade_json(v) for v in views])
        return
    if not views:
        typer.echo("No trades yet.")
    for view in views:
        typer.echo(trade_line(view))


@trade_app.command("show")
def trade_show(trade_id: TradeId, as_json: JsonOpt = False) -> None:
    """One trade, with its contract once agreed."""
    from p2pmarket.display import trade_json, trade_line

    with _open() as node:
        view = node.get_trade(trade_id)
    if as_json:
        doc = trade_json(view)
        contract = view.contract
        if contract is not None:
            doc["contract"] = {
                "message": contract.message().hex(),
                "proposer": contract.proposer.hex(),
                "proposer_signature": contract.proposer_signature.hex(),
                "acceptor_signature": contract.acceptor_signature.hex(),
                "verified": contract.verify(),
            }
        _print_json(doc)
        return
    typer.echo(trade_line(view))
    if view.contract is not None:
        ok = "verified" if view.contract.verify() else "NOT VALID"
        typer.echo(f"contract signed by both ({ok})")


# -- reviews -------------------------------------------------------------------------


@app.command()
def review(
    trade_id: TradeId,
    stars: Annotated[int, typer.Option(min=1, max=5, help="1 (bad) to 5 (excellent).")],
    text: Annotated[str, typer.Option(help="What happened, up to 1000 characters.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Review the other party of a completed trade. Anyone can check it: it carries
    the contract you both signed. Reviewing the trade again replaces your review."""
    from p2pmarket.display import review_json, review_line

    with _open() as node:
        written = node.review(trade_id, stars=stars, text=text)
    if as_json:
        _print_json(review_json(written))
    else:
        typer.echo(f"Review published: {review_line(written)}")


@app.command()
def reviews(
    peer_id: Annotated[str | None, typer.Argument(metavar="[PEER_ID]")] = None,
    written: Annotated[
        bool, typer.Option("--written", help="The reviews this peer wrote, not received.")
    ] = False,
    fetch: Annotated[
        bool, typer.Option("--fetch", help="Also ask the DHT (needs the daemon).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The reviews about a peer (you by default), newest first, with its reputation."""
    from p2pmarket.crypto.peer_id import public_key_from_peer_id
    from p2pmarket.display import rating_text, reputation_json, review_json, review_line

    key = public_key_from_peer_id(peer_id) if peer_id else _public_key()
    with _daemon() if fetch else _open() as node:
        if fetch:
            node.fetch_reviews(key)
        found = node.reviews(key, written=written)
        reputation = node.reputation(key)
    if as_json:
        doc = {"reputation": reputation_json(reputation)}
        _print_json({**doc, "reviews": [review_json(r) for r in found]})
        return
    if not written:
        typer.echo(f"{peer_id or 'you'}: {rating_text(reputation)}")
    if not found:
        typer.echo("No reviews in the local cache." + ("" if fetch else " Try --fetch."))
    for item in found:
        typer.echo(review_line(item))


@app.command("sync")
def sync_now(
    peer: Annotated[
        str | None, typer.Option("--peer", help="Only this connected peer (a peer id).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Catch up with connected peers now, showing progress per peer. Both sides
    end with the newer version of every record either holds."""
    import dataclasses
    import time

    from p2pmarket.display import progress_line

    with _daemon() as client:
        began = time.time()
        peers = client.start_sync(peer)
        if not peers:
            raise P2PMarketError(
                "no peers are connected: connect to one first (`p2pmarket connect`)"
            )
        ended = _follow_sync(client, peers, began, show=not as_json)
    if as_json:
        _print_json([dataclasses.asdict(p) for p in ended])
    else:
        for progress in ended:
            typer.echo(progress_line(progress))
    if all(p.phase == "failed" for p in ended):
        raise SystemExit(1)


def _follow_sync(
    client: Client, peers: list[str], began: float, *, show: bool
) -> list[SyncProgress]:
    """Poll the daemon until a session with each of ``peers`` that ran since
    ``began`` has finished; draw a progress bar per peer meanwhile."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[phase]}"),
        transient=True,
        disable=not show or not sys.stderr.isatty(),
        console=Console(stderr=True),
    )
    tasks = {p: bars.add_task(f"{p[:8]}…{p[-6:]}", total=None, phase="starting") for p in peers}
    with bars:
        while True:
            latest: dict[str, SyncProgress] = {}
            for session in client.sync_status().sessions:
                if session.peer_id in tasks and (session.active or session.finished >= began):
                    latest.setdefault(session.peer_id, session)
            for peer, task in tasks.items():
                if peer in latest:
                    s = latest[peer]
                    bars.update(task, total=s.known or None, completed=s.fetched, phase=s.phase)
            waited = time.time() - began
            if len(latest) == len(tasks) and not any(s.active for s in latest.values()):
                return list(latest.values())
            if len(latest) < len(tasks) and waited > 10:
                missing = ", ".join(p for p in tasks if p not in latest)
                raise P2PMarketError(f"the daemon did not start a sync with {missing}")
            time.sleep(0.25)


@app.command()
def watch(as_json: JsonOpt = False) -> None:
    """Print the daemon's events as they happen (Ctrl-C stops)."""
    from p2pmarket.display import event_json, event_line

    with _daemon() as client:
        for event in client.events():
            if as_json:
                sys.stdout.write(json.dumps(event_json(event), ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(event_line(event) + "\n")
            sys.stdout.flush()


# -- entry point ---------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _check_text_params(command: Any) -> None:
    """Make every command refuse text options that are not UTF-8 (see cli_input)
    before it runs, naming the option: nothing downstream can encode them."""
    from typer._click.types import StringParamType

    from p2pmarket.cli_input import check_text

    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for sub in subcommands.values():
            _check_text_params(sub)
        return
    inner = command.callback
    if inner is None:
        return
    names = {  # as the help shows them: --title, or WORDS for an argument
        p.name: p.opts[0] if p.opts[0].startswith("-") else p.name.upper()
        for p in command.params
        if isinstance(p.type, StringParamType) and p.name and p.opts
    }

    def checked(**kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if name in names:
                check_text(names[name], value)
        return inner(**kwargs)

    command.callback = checked


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr and an exit status."""
    # Nothing this program writes (the store, the socket, exports) is for other
    # users, and LevelDB creates its files with the umask. Restored on the way
    # out for a program (a test) that calls main() in-process.
    previous = os.umask(0o077)
    try:
        _run(argv)
    finally:
        os.umask(previous)


# The root's options that take a value: the word after one is not a command.
_ROOT_VALUED = frozenset({"--home"})


def _command_word(args: list[str], valued: frozenset[str]) -> str | None:
    """The first word of ``args`` that names a command (None for none, or for
    ``--help``, which lists them all)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--help", "--"):
            return None
        elif arg in valued:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _only_the_command(group: typer.Typer, args: list[str]) -> typer.Typer:
    """``group`` with only the command (or sub-group, itself pruned) that ``args``
    name, when they name one: typer builds a click command for every command it
    has, reading each one's signature and type hints, which was a third of a
    command's start-up (issue 15: a command through the daemon in <= 150 ms).
    With no such command (a typo, ``--help``) the whole group is built, so that
    help and click's "No such command" stay what they were."""
    import copy

    word = _command_word(args, _ROOT_VALUED if group is app else frozenset())
    if word is None:
        return group
    commands = [
        info
        for info in group.registered_commands
        if (info.name or typer.main.get_command_name(getattr(info.callback, "__name__", "")))
        == word
    ]
    groups = [info for info in group.registered_groups if info.name == word]
    if len(commands) + len(groups) != 1:
        return group
    pruned = copy.copy(group)
    pruned.registered_commands = commands
    pruned.registered_groups = []
    for info in groups:
        sub = info.typer_instance
        assert sub is not None
        rest = args[args.index(word) + 1 :]
        pruned.registered_groups = [copy.copy(info)]
        pruned.registered_groups[0].typer_instance = _only_the_command(sub, rest)
    return pruned


def _run(argv: list[str] | None) -> None:
    # typer 0.26-0.28 vendor click as typer._click (pinned in pyproject.toml); its
    # usage errors derive from ClickException.
    import typer.main
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from p2pmarket.cli_input import message_for

    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(_only_the_command(app, args))
    _check_text_params(command)
    try:
        result = command.main(args=args, prog_name="p2pmarket", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        raise SystemExit(0) from None
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "p2pmarket"
        _fail(f"{exc.format_message()} (see `{where} --help`)", 2)
    except (typer.Abort, KeyboardInterrupt, EOFError):
        _fail("interrupted", 130)
    except P2PMarketError as exc:
        if STATE.debug or "--debug" in args:
            raise
        _fail(message_for(exc), 1)
    except BrokenPipeError:
        raise SystemExit(1) from None
    if result == 130:  # typer's answer to a KeyboardInterrupt in a command
        _fail("interrupted", 130)
    if isinstance(result, int) and result:
        raise SystemExit(result)
