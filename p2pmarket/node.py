"""The Node: the one public face of p2pmarket for programs and for the CLI.

A Node owns one home: its identity, its store and, while :meth:`Node.run` runs,
its connection to peers. Operations on the local cache are plain synchronous
methods, because they never wait on anything but a local LevelDB write; they are
safe to call from inside a trio task, and while the network runs, a write also
publishes. Operations that wait on peers (``fetch_listing``, ``connect``…) are
``async``. The private key is unlocked lazily, on the first operation that signs,
so reading and searching never ask for a passphrase.

    with Node.open("~/market", passphrase="…") as node:
        listing = node.create_listing(title="Sepeda lipat", price=150_000_000,
                                      currency="IDR", category="vehicles/bicycles")
        page = node.search("sepeda")

    async with open_node("~/market", network=NetworkConfig()) as node:
        async with node.events() as events:
            async for event in events: ...
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from p2pmarket import records
from p2pmarket.cachecap import CacheCap
from p2pmarket.crypto.keystore import KeyFile, read_key_file, seal, write_key_file
from p2pmarket.crypto.peer_id import peer_id_from_public_key, public_key_from_peer_id
from p2pmarket.errors import (
    IdentityError,
    InvalidInput,
    InvalidRecord,
    NotFound,
    OfflineError,
    P2PMarketError,
    RateLimited,
)
from p2pmarket.events import (
    EVENT_BUFFER,
    Event,
    ListingAdded,
    ListingUpdated,
    ListingWithdrawn,
    NodeStatus,
    PeerConnected,
    PeerInfo,
    ProfileUpdated,
    ReviewAdded,
    Source,
    SyncProgress,
    SyncStatus,
)
from p2pmarket.home import Config, Home, default_home
from p2pmarket.money import MAX_MINOR_UNITS
from p2pmarket.network.config import NetworkConfig, Verdict
from p2pmarket.records import (
    CATEGORY_RE,
    DAY,
    Catalogue,
    Kind,
    Listing,
    Profile,
    Record,
    Review,
    Tombstone,
)
from p2pmarket.sellerlimit import SellerLimits
from p2pmarket.store import ListingStore, Outcome, Page, Query, Sort
from p2pmarket.text import tokens

if TYPE_CHECKING:
    import trio

    from p2pmarket.catchup import CatchUp
    from p2pmarket.crypto.signing import Signer
    from p2pmarket.ingest import IngestReport
    from p2pmarket.network.service import Network
    from p2pmarket.postoffice import PostOffice
    from p2pmarket.ratings import Ratings
    from p2pmarket.reputation import Reputation, SellerInfo
    from p2pmarket.store.blocklist import BlockList
    from p2pmarket.store.mailbox import Mailbox
    from p2pmarket.store.messages import Message, Thread
    from p2pmarket.trade import TradeView
    from p2pmarket.trading import TradeDesk

Passphrase = str | Callable[[], str] | None
# Deep pages are read through from the start; past this, narrow the search instead.
MAX_OFFSET = 100_000
# Expired records collected per write.
_GC_STEP = 1000
_R = TypeVar("_R", Listing, Tombstone, Profile, Review)
Clock = Callable[[], float]
# Listings fetched at once when reading a seller's catalogue from the DHT.
_FETCH_CONCURRENCY = 8
# fetch_seller returns what it has after this long (the CLI waits 60 s).
_SELLER_DEADLINE = 45.0
# A burst of our own changes is put in the DHT as one catalogue after this pause.
_CATALOGUE_DELAY = 1.0
# While online, expired records are collected (and the cache cap kept) this often.
_UPKEEP_EVERY = 600.0
_REANNOUNCE_EVERY = 12 * 3600.0  # half the DHT's 24 h value lifetime
# An import checks the cache cap this often (records read), between its writes.
_CAP_CHECK_EVERY = 1000


def _resolve_home(home: str | os.PathLike[str] | None) -> Home:
    return Home(Path(home).expanduser() if home is not None else default_home())


def init_home(
    home: str | os.PathLike[str] | None,
    passphrase: str | None,
    *,
    signer: Signer | None = None,
) -> str:
    """Create a home with a new identity (or ``signer``, when restoring a backup).

    ``passphrase=None`` stores the key unencrypted (0600). Returns the peer id.
    """
    from p2pmarket.crypto.signing import Signer

    paths = _resolve_home(home)
    if paths.initialised:
        raise IdentityError(f"{paths.root} already has an identity; use another --home")
    signer = signer or Signer.generate()
    data = seal(signer, passphrase)
    try:
        paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_key_file(paths.key_file, data)
    except OSError as exc:
        raise IdentityError(f"cannot write {paths.key_file}: {exc.strerror}") from None
    return peer_id_from_public_key(signer.public_key)


class Node:
    """A p2pmarket node bound to one home. Use :meth:`open` or :func:`open_node`."""

    def __init__(
        self,
        home: Home,
        key_file: KeyFile,
        store: ListingStore,
        config: Config,
        passphrase: Passphrase,
        clock: Clock,
    ) -> None:
        self.home = home
        self.config = config
        self.public_key: bytes = key_file.public_key
        self.peer_id: str = peer_id_from_public_key(key_file.public_key)
        self._key_file = key_file
        self._store: ListingStore | None = store
        self._passphrase = passphrase
        self._signer: Signer | None = None
        self._clock = clock
        self._network: Network | None = None
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self._catalogue_due: trio.Event | None = None
        self._own_tasks: trio.CancelScope | None = None
        self._catalogue_seq = 0
        self._catchup: CatchUp | None = None
        self._post_office: PostOffice | None = None
        self._held_mail: Mailbox | None = None  # mail kept for others, while online
        self._blocks: BlockList | None = None
        self._trade_desk: TradeDesk | None = None
        self._ratings: Ratings | None = None
        self._bundles_due: set[bytes] = set()  # review bundles to merge into the DHT
        self._bundles_event: trio.Event | None = None
        self.dropped_events = 0
        # Publish limits per seller (sellerlimit.py), while online: the remote
        # one judges gossip; our own keeps us from publishing what peers drop.
        self._seller_limits: SellerLimits | None = None
        self._own_limit: SellerLimits | None = None
        self.seller_limited = 0  # gossip records dropped as over their seller's limit
        self._cap: CacheCap | None = None

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        passphrase: Passphrase = None,
        clock: Clock = time.time,
        resident: bool = False,
    ) -> Node:
        """Open an initialised home. ``passphrase`` (text, or a function asked once
        when a signature is first needed) unlocks an encrypted key. ``resident``
        sizes the store's buffers for a long-running process (a daemon) rather
        than for bulk imports."""
        paths = _resolve_home(home)
        paths.require()
        config = paths.load_config()
        key_file = read_key_file(paths.key_file)
        store = ListingStore(paths.store_dir, resident=resident)
        return cls(paths, key_file, store, config, passphrase, clock)

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the store. Idempotent; the node is unusable afterwards."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store(self) -> ListingStore:
        if self._store is None:
            raise P2PMarketError("this node is closed")
        return self._store

    def now(self) -> int:
        return int(self._clock())

    def unlock(self) -> None:
        """Unlock the private key now (asking for the passphrase if needed)."""
        self._signer_or_unlock()

    def _signer_or_unlock(self) -> Signer:
        if self._signer is None:
            secret: str | None = None
            if self._key_file.encrypted:
                secret = self._passphrase() if callable(self._passphrase) else self._passphrase
            if secret is None and self._key_file.encrypted:
                raise IdentityError(
                    "this needs the key's passphrase: set P2PMARKET_PASSPHRASE or run in a terminal"
                )
            self._signer = self._key_file.unlock(secret)
        return self._signer

    # -- own listings ------------------------------------------------------

    def create_listing(
        self,
        *,
        title: str,
        price: int,
        currency: str | None = None,
        category: str,
        kind: Kind = "sell",
        description: str = "",
        tags: Sequence[str] = (),
        location: str | None = None,
        quantity: int = 1,
        expires_days: int | None = None,
        images: Sequence[bytes] = (),
    ) -> Listing:
        """Sign and store a new listing; return it. ``price`` is in minor units of
        ``currency`` (Rp 150.000 is ``15_000_000`` IDR): see :func:`money.parse_amount`."""
        now = self.now()
        draft = Listing(
            seller=self.public_key,
            nonce=os.urandom(16),
            seq=1,
            kind=kind,
            title=title.strip(),
            description=description.strip(),
            price=price,
            currency=(currency or self.config.currency).upper(),
            quantity=quantity,
            category=category.strip().lower(),
            tags=_clean_tags(tags),
            location=(self.config.location if location is None else location).strip(),
            created=now,
            expires=now
            + _lifetime(self.config.listing_days if expires_days is None else expires_days),
            images=tuple(images),
        )
        return self._publish(draft)

    def update_listing(
        self,
        listing_id: bytes | str,
        *,
        title: str | None = None,
        price: int | None = None,
        currency: str | None = None,
        category: str | None = None,
        kind: Kind | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        location: str | None = None,
        quantity: int | None = None,
        expires_days: int | None = None,
    ) -> Listing:
        """Publish a new version (seq + 1) of one of our listings with the given changes.

        An update also renews the listing: it counts as new from now, for
        ``expires_days`` (default: what is left of its current lifetime, at least a day).
        """
        current = self._own_listing(listing_id)
        if currency is not None and currency.upper() != current.currency and price is None:
            raise InvalidInput(
                "a new currency needs a new price too (the old amount means another sum)"
            )
        now = self.now()
        lifetime = (
            _lifetime(expires_days) if expires_days is not None else max(current.expires - now, DAY)
        )
        draft = replace(
            current,
            seq=current.seq + 1,
            title=current.title if title is None else title.strip(),
            price=current.price if price is None else price,
            currency=current.currency if currency is None else currency.upper(),
            category=current.category if category is None else category.strip().lower(),
            kind=current.kind if kind is None else kind,
            description=current.description if description is None else description.strip(),
            tags=current.tags if tags is None else _clean_tags(tags),
            location=current.location if location is None else location.strip(),
            quantity=current.quantity if quantity is None else quantity,
            created=now,
            expires=now + lifetime,
            signature=b"",
            encoded=b"",
        )
        return self._publish(draft)

    def withdraw_listing(self, listing_id: bytes | str) -> Tombstone:
        """Withdraw one of our listings for good; it cannot be revived, only relisted."""
        current = self._own_listing(listing_id)
        now = self.now()
        draft = Tombstone(
            seller=self.public_key,
            nonce=current.nonce,
            seq=current.seq + 1,
            created=now,
            # The tombstone must outlive every version of the listing it hides, and
            # an older version may expire later than the current one (an update can
            # shorten the lifetime); none can outlive now + the maximum lifetime.
            expires=now + records.MAX_LIFETIME,
        )
        return self._publish(draft, category=current.category)

    def _publish(self, draft: _R, *, category: str | None = None) -> _R:
        self._check_publish_limit()  # before the stamp's work, not after
        signed = records.sign(draft, self._signer_or_unlock().sign)
        outcome = self.store.put(signed, sync=True)
        if outcome.stored and self._own_limit is not None:
            self._own_limit.charge(self.public_key)
        # Writers tidy up as they go (a bounded step); reads never write, so that
        # search stays fast and works on a store it may not write to.
        self.store.collect_expired(self.now(), limit=_GC_STEP)
        self._announce(signed, outcome, "local", category)
        return signed

    def _check_publish_limit(self) -> None:
        """While online, refuse a record that peers would drop as over our
        seller limit (they gossip nothing of it), saying when to try again.
        Offline records spread later by sync, which peers do not limit."""
        limits = self._own_limit
        if limits is None or self._network is None or limits.allows(self.public_key):
            return
        wait = math.ceil(limits.wait(self.public_key))
        raise RateLimited(
            f"publishing too fast: peers take at most {limits.burst:g} records at once "
            f"from one seller, then {limits.rate:g} a second; try again in {wait} s"
        )

    def _seeded_own_limit(self, config: NetworkConfig) -> SellerLimits:
        """Our own bucket, as peers' buckets for us stand: charged with what we
        published lately (a restarted daemon does not reset theirs). Older
        records do not matter: a bucket is full again ``burst / rate`` seconds
        after its last record."""
        limits = SellerLimits(config.seller_rate, config.seller_burst, self._clock)
        since = self._clock() - config.seller_burst / config.seller_rate
        for created in sorted(x.created for x in self.my_listings() if x.created >= since):
            limits.charge(self.public_key, created)
        return limits

    @property
    def _cache_cap(self) -> CacheCap:
        if self._cap is None:
            self._cap = CacheCap(self.store, self.config.max_listings, self.public_key, self.now)
        return self._cap

    def _announce(
        self,
        record: Record,
        outcome: Outcome,
        source: Source,
        category: str | None = None,
    ) -> None:
        """Tell subscribers about a stored record; gossip it if it is ours and new."""
        if not outcome.stored:
            return
        if self._subscribers:  # a 100k sync need not build 100k unread events
            self._emit(_event(record, outcome, source))
        network = self._network
        if network is None or source != "local":
            return
        from p2pmarket.network import topics
        from p2pmarket.network.dht import listing_key, profile_key

        data = records.encode(record)
        if isinstance(record, Profile):
            network.publish(data, [topics.PROFILES], profile_key(record.owner))
            return
        if isinstance(record, Review):
            network.publish(data, [topics.REVIEWS], None)
            self._bundle_due(record.subject)
            return
        topic_ids = topics.listing_topics(
            record.category if isinstance(record, Listing) else category or "other"
        )
        network.publish(data, topic_ids, listing_key(record.id))
        if self._catalogue_due is not None:
            self._catalogue_due.set()

    def _own_listing(self, listing_id: bytes | str) -> Listing:
        listing = self.get_listing(listing_id)
        if listing.seller != self.public_key:
            raise InvalidInput(
                f"listing {records.format_id(listing.id)} belongs to another seller; "
                "you can change only your own"
            )
        return listing

    def my_listings(self) -> list[Listing]:
        """Our live listings, newest first."""
        return self.store.by_seller(self.public_key, self.now())

    # -- the cache ---------------------------------------------------------

    def get_listing(self, listing_id: bytes | str) -> Listing:
        """A live listing from the cache; NotFound if unknown, withdrawn or expired."""
        raw_id = records.parse_id(listing_id) if isinstance(listing_id, str) else listing_id
        record = self.store.get(raw_id, self.now())
        text = records.format_id(raw_id)
        if record is None:
            raise NotFound(f"no listing {text} in the local cache (it may have expired)")
        if isinstance(record, Tombstone):
            raise NotFound(f"listing {text} was withdrawn by its seller")
        return record

    def search(
        self,
        text: str = "",
        *,
        kind: Kind | None = None,
        category: str | None = None,
        currency: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        location: str | None = None,
        seller: bytes | None = None,
        sort: Sort = "newest",
        min_rating: float | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Page:
        """Search the local cache. Words are ANDed; the last word also matches as a
        prefix. Prices are minor units of ``currency``. ``sort="rating"`` puts the
        best-rated sellers' listings first, unrated sellers' after those rated 3
        or more, and poorly rated ones last; ``min_rating`` keeps only sellers
        rated at least that (1 to 5, see :mod:`p2pmarket.reputation`)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}")
        for name, value in (("min price", min_price), ("max price", max_price)):
            if value is not None and not 0 <= value <= MAX_MINOR_UNITS:
                raise InvalidInput(f"{name} must be between 0 and {MAX_MINOR_UNITS} minor units")
        if category is not None and not CATEGORY_RE.match(category.strip().lower()):
            raise InvalidInput(
                f"{category!r} is not a category: lowercase words joined by '-', "
                "at most one '/' (e.g. vehicles/bicycles)"
            )
        if text.strip() and not tokens(text):
            raise InvalidInput(f"{text!r} has no letters or digits to search for")
        if location is not None and not tokens(location):
            raise InvalidInput(f"location {location!r} has no letters or digits to match")
        if min_rating is not None and not 1 <= min_rating <= 5:
            raise InvalidInput("min rating must be between 1 and 5")
        ranked: tuple[bytes, ...] = ()
        below: tuple[bytes, ...] = ()
        only: frozenset[bytes] | None = None
        if sort == "rating" or min_rating is not None:
            ranked, below = self._rated.standing(min_rating)
            only = frozenset(ranked + below) if min_rating is not None else None
        query = Query(
            text=text,
            kind=kind,
            category=category.strip().lower() if category else None,
            currency=currency.upper() if currency else None,
            min_price=min_price,
            max_price=max_price,
            location=location,
            seller=seller,
            sort=sort,
            limit=limit,
            offset=offset,
            hide_sellers=self._block_list.keys(),
            ranked=ranked,
            below=below,
            only_sellers=only,
        )
        return self.store.search(query, self.now())

    def collect_garbage(self) -> int:
        """Drop expired listings and tombstones from the cache; return how many."""
        return self.store.collect_expired(self.now())

    # -- export / import ---------------------------------------------------

    def export_listings(self, path: str | os.PathLike[str], *, everything: bool = False) -> int:
        """Write our live listings (or, with ``everything``, every unexpired listing and
        withdrawal in the cache) to an export file; return how many."""
        from p2pmarket.exchange import write_export

        now = self.now()
        if everything:
            items: Iterable[bytes] = (records.encode(r) for r in self.store.iter_records(now))
        else:
            items = (
                records.encode(r)
                for r in self.store.iter_records(now)
                if r.seller == self.public_key
            )
        return write_export(Path(path), items)

    def import_listings(self, path: str | os.PathLike[str]) -> IngestReport:
        """Verify every record of an export file and store the valid ones."""
        from p2pmarket.exchange import read_export
        from p2pmarket.ingest import ingest

        cap = self._cache_cap
        items = cap.checking(read_export(Path(path)), every=_CAP_CHECK_EVERY)
        report = ingest(self.store, items, self.now(), own_key=self.public_key)
        self.collect_garbage()
        cap.trim()
        return report

    def ingest(self, items: Iterable[bytes]) -> IngestReport:
        """Verify and store raw signed records (from any source)."""
        from p2pmarket.ingest import ingest

        cap = self._cache_cap
        report = ingest(
            self.store, cap.checking(items, _CAP_CHECK_EVERY), self.now(), own_key=self.public_key
        )
        cap.check()
        return report

    # -- the network ---------------------------------------------------------

    def network_config(self) -> NetworkConfig:
        """The network settings of this home (config.toml); the CLI overrides them."""
        return self.config.network()

    @property
    def online(self) -> bool:
        """True from when :meth:`run` has started listening until it has fully
        stopped (connections closed, peer book saved)."""
        return self._network is not None

    def _require_network(self) -> Network:
        if self._network is None or not self._network.running:
            raise OfflineError(
                "this node is not connected to the network: run it with "
                "`await nursery.start(node.run)` (the CLI: start `p2pmarket daemon`)"
            )
        return self._network

    async def run(
        self,
        config: NetworkConfig | None = None,
        *,
        task_status: Any = None,
    ) -> None:
        """Join the network and serve it until cancelled or :meth:`stop` is called.

        Runs in the caller's nursery: ``await nursery.start(node.run)`` returns once
        the node listens. Writes made meanwhile are also published."""
        import trio

        from p2pmarket.network.service import Network
        from p2pmarket.store.mailbox import Mailbox, Quotas

        if self._network is not None:
            raise P2PMarketError("this node's network is already running")
        signer = self._signer_or_unlock()
        from p2pmarket.catchup import CatchUp

        self._held_mail = Mailbox(self.store.db, Quotas(total_bytes=self.config.mailbox_mb << 20))
        config = config or self.network_config()
        self._seller_limits = SellerLimits(config.seller_rate, config.seller_burst, time.monotonic)
        self._own_limit = self._seeded_own_limit(config)
        self._catchup = CatchUp(
            self.store,
            now=self.now,
            own_key=self.public_key,
            cap=self._cache_cap,
            announce=lambda record, outcome: self._announce(record, outcome, "sync"),
        )
        network = Network(
            signer.seed(),
            config,
            accept=self._accept_remote,
            on_event=self._on_network_event,
            peerbook=self.home.peers_file,
            now=self.now,
            sync=self._catchup,
            on_synced=self._on_synced,
            on_envelope=self._post.receive,
            mailbox=self._held_mail,
            on_mail=self._post.receive_mail,
        )
        try:
            async with trio.open_nursery() as nursery:

                async def network_then_the_rest(task_status: Any) -> None:
                    await network.run(task_status=task_status)
                    nursery.cancel_scope.cancel()  # stopped: end the node's own tasks

                await nursery.start(network_then_the_rest)
                self._network = network
                self._catalogue_due = trio.Event()
                self._own_tasks = await nursery.start(self._run_own_tasks)
                if task_status is not None:
                    task_status.started()
        finally:
            self._network = None
            self._catalogue_due = None
            self._own_tasks = None
            self._own_limit = None

    async def _run_own_tasks(self, task_status: Any) -> None:
        """The node's background work while online; cancelled before the network
        stops, so none of it runs against a network that is shutting down."""
        import trio

        with trio.CancelScope() as scope:
            task_status.started(scope)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._catalogue_loop)
                nursery.start_soon(self._bundle_loop)
                nursery.start_soon(self._announce_own)
                nursery.start_soon(self._upkeep)
                nursery.start_soon(self._restamp_own)
                assert self._network is not None
                nursery.start_soon(self._post.run, self._network)

    async def _restamp_own(self) -> int:
        """Stamp the user's own records stored before stamps existed (store
        schema 4 stopped serving them): a stamp needs no key, only work, done
        in a thread (~0.4 s each) so the node's networking goes on. They are
        synced again from then on. Returns how many were stamped."""
        import trio

        def waiting() -> list[Record]:  # a scan of the sync index: off the event loop
            return list(self.store.unstamped(self.public_key))

        done = 0
        for record in await trio.to_thread.run_sync(waiting):
            stamped = await trio.to_thread.run_sync(records.stamped, record)
            done += self.store.restamp(stamped)
        self.store.restamped_all()
        return done

    def stop(self) -> None:
        """Leave the network: connections are closed first, so peers see us go at
        once, then :meth:`run` returns. Returns immediately."""
        if self._own_tasks is not None:
            self._own_tasks.cancel()
        if self._network is not None:
            self._network.stop()

    def _accept_remote(
        self, data: bytes, source: str, topic_ids: tuple[str, ...] | None = None
    ) -> Verdict:
        """A record from a peer: valid and newer → stored (ACCEPT); valid but not
        newer → IGNORE; anything invalid → REJECT. Shared by gossip and the DHT.

        A gossiped record must also travel on its own topic, so that no one can
        push, say, a phone listing into the ``vehicles`` topic (topics.carries)."""
        try:
            record = records.validate(data, self.now())
        except InvalidRecord:
            return Verdict.REJECT
        if topic_ids is not None and not _on_its_topics(record, topic_ids):
            return Verdict.REJECT
        # Gossip is pushed at us, so each seller has a budget (sellerlimit.py);
        # a DHT fetch is one we asked for. Over the budget the record is dropped
        # unforwarded, and its forwarder (likely honest) is not penalised.
        author = records.author(record)
        limits = self._seller_limits if source == "gossip" else None
        if limits is not None and not limits.allows(author):
            self.seller_limited += 1
            return Verdict.IGNORE
        outcome = self.store.put(record)
        if not outcome.stored:
            return Verdict.IGNORE  # a replay charges its seller nothing
        if limits is not None:
            limits.charge(author)
        self._announce(record, outcome, "dht" if source == "dht" else "gossip")
        self._cache_cap.check()
        return Verdict.ACCEPT

    async def _announce_own(self) -> None:
        """On start, and every :data:`_REANNOUNCE_EVERY`, put our live listings
        and catalogue in the DHT again: DHT records held by peers are lost when
        those peers restart, and py-libp2p 0.8.1 servers drop a value 24 h
        after its put (the Kademlia spec has publishers re-put)."""
        import trio

        network = self._require_network()
        while True:
            # A put with no peers reaches no one: wait for a connection
            # (bootstrap, redial or someone dialling in), then give identify a moment.
            while not network.host.get_connected_peers():
                await trio.sleep(0.25)
            await trio.sleep(0.5)
            self._put_own(network)
            await trio.sleep(_REANNOUNCE_EVERY)

    def _put_own(self, network: Network) -> None:
        from p2pmarket.network.dht import listing_key, profile_key

        for listing in self.my_listings():
            network.put_dht(listing_key(listing.id), records.encode(listing))
        if self._catalogue_due is not None:
            self._catalogue_due.set()
        profile = self.profile()
        if profile is not None:
            network.put_dht(profile_key(self.public_key), records.encode(profile))
        for review in self.store.reviews.by(self.public_key):
            self._bundle_due(review.subject)

    def _bundle_due(self, subject: bytes) -> None:
        self._bundles_due.add(subject)
        if self._bundles_event is not None:
            self._bundles_event.set()

    async def _bundle_loop(self) -> None:
        """Merge the reviews we hold about each due key into its DHT bundle: read
        the bundle, add ours, put the union back (see :mod:`p2pmarket.network.dht`)."""
        import trio

        from p2pmarket.network.dht import pack_bundle, reviews_key

        network = self._require_network()
        while True:
            while not self._bundles_due:
                self._bundles_event = trio.Event()
                await self._bundles_event.wait()
            subject = self._bundles_due.pop()
            reviews = self.store.reviews.about(subject)
            with contextlib.suppress(P2PMarketError):  # the lookup failed: ours alone
                reviews += await self._fetch_bundle(subject)
            if reviews:
                network.put_dht(reviews_key(subject), pack_bundle(reviews))

    async def _fetch_bundle(self, subject: bytes) -> list[Review]:
        """The reviews of ``subject``'s DHT bundle, each stored here too (and
        announced) when new; [] when there is none, or it is invalid."""
        from p2pmarket.network.dht import reviews_key, unpack_bundle

        # Fresh: the copy this node holds in its own DHT store may be older.
        data = await self._require_network().get_dht(reviews_key(subject), fresh=True)
        if data is None:
            return []
        try:
            reviews = unpack_bundle(data, subject, self.now())
        except InvalidRecord:
            return []
        for change in self.store.put_many(reviews):
            self._announce(change.record, change.outcome, "dht")
        return reviews

    async def _catalogue_loop(self) -> None:
        import trio

        while self._catalogue_due is not None:
            await self._catalogue_due.wait()
            await trio.sleep(_CATALOGUE_DELAY)  # one put for a burst of changes
            if self._catalogue_due is None:
                return
            self._catalogue_due = trio.Event()
            self._put_catalogue()

    def _put_catalogue(self) -> None:
        from p2pmarket.network.dht import catalogue_key

        network = self._network
        if network is None or not network.running:
            return
        now = self.now()
        mine = self.my_listings()[: records.MAX_CATALOGUE]
        self._catalogue_seq = max(self._catalogue_seq + 1, int(self._clock() * 1000))
        catalogue = records.sign(
            Catalogue(
                seller=self.public_key,
                seq=self._catalogue_seq,
                items=tuple((listing.id, listing.seq) for listing in mine),
                created=now,
            ),
            self._signer_or_unlock().sign,
        )
        network.put_dht(catalogue_key(self.public_key), records.encode(catalogue))

    @asynccontextmanager
    async def events(
        self, buffer: int = EVENT_BUFFER
    ) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """``async with node.events() as events: async for event in events``.

        Each subscriber has its own buffer; a subscriber that falls ``buffer``
        events behind misses the newer ones (counted in ``dropped_events``) rather
        than slowing the node down."""
        import trio

        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            # _emit drops a subscriber whose channel closed, maybe before this runs.
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def _on_network_event(self, event: Event) -> None:
        if isinstance(event, PeerConnected):
            self._post.peer_connected(event.peer_id)  # messages waiting for it go now
        self._emit(event)

    def _emit(self, event: Event) -> None:
        import trio

        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self.dropped_events += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)

    async def connect(self, address: str) -> PeerInfo:
        """Connect to a peer at a multiaddr ending in ``/p2p/<peer id>``."""
        return await self._require_network().connect(address)

    def invite(self) -> str:
        """This node's invite line, for others to :meth:`join` it (p2pmarket.invite)."""
        from p2pmarket.joining import invite_line

        return invite_line(self.peer_id, self._require_network().addresses())

    async def join(self, line: str) -> PeerInfo:
        """Connect to the peer an invite line names; remembered even when it is
        unreachable now, and retried with backoff (p2pmarket.joining)."""
        from p2pmarket import joining

        return await joining.join(self._require_network(), self.peer_id, line)

    def peers(self) -> list[PeerInfo]:
        return self._require_network().peers()

    async def sync(self, peer: str | None = None) -> list[SyncProgress]:
        """Catch up with one connected peer (a peer id), or with all of them, and
        wait until done. Both sides end with the newer of each record."""
        return await self._require_network().sync_now(peer)

    def start_sync(self, peer: str | None = None) -> list[str]:
        """:meth:`sync` without waiting: returns the peers being synced with;
        follow them with :meth:`sync_status`."""
        return self._require_network().start_sync(peer)

    def sync_status(self) -> SyncStatus:
        network = self._network
        service = network.sync if network is not None and network.running else None
        last = self.store.last_synced
        if service is None:
            return SyncStatus(False, False, last, 0)
        return SyncStatus(
            syncing=service.syncing,
            first_sync=service.syncing and last == 0,
            last_sync=last,
            synced_peers=len(service.synced_peers),
            sessions=service.sessions(),
        )

    def _on_synced(self, progress: SyncProgress) -> None:
        if progress.phase == "done" and self._store is not None:
            self.store.mark_synced(int(progress.finished))

    async def _upkeep(self) -> None:
        """Now and then: collect expired records, keep the cache under its cap,
        drop mail held past its 14 days and replay marks past their window."""
        import trio

        while True:
            while self.store.collect_expired(self.now(), limit=_GC_STEP):
                await trio.sleep(0)  # in steps, so gossip is not held up
            self._cache_cap.trim()
            if self._held_mail is not None:
                self._held_mail.collect(self.now())
            self._post.messages.forget_seen(self.now())
            await trio.sleep(_UPKEEP_EVERY)

    def status(self) -> NodeStatus:
        from p2pmarket.store.mailbox import Mailbox
        from p2pmarket.store.messages import MessageStore

        messages = self._post_office.messages if self._post_office else MessageStore(self.store.db)
        unread, outbox = messages.counts()
        offline = NodeStatus(
            self.peer_id,
            False,
            cached_listings=self.store.listing_count,
            sync=self.sync_status(),
            unread=unread,
            outbox=outbox,
            held_mail=(self._held_mail or Mailbox(self.store.db)).held()[0],
        )
        network = self._network
        if network is None or not network.running:
            return offline
        mail_counters = network.mailbox.counters if network.mailbox is not None else {}
        return replace(
            offline,
            online=True,
            addresses=network.addresses(),
            peers=len(network.host.get_connected_peers()),
            reachability=network.reachability,
            relays=network.relays,
            known_peers=len(network.peer_set.book.peers),
            topics=network.topics,
            started=network.started,
            extra={
                **network.counters,
                **mail_counters,
                "dropped_events": self.dropped_events,
                "seller_limited": self.seller_limited,
            },
        )

    async def fetch_listing(self, listing_id: bytes | str) -> Listing:
        """Look a listing up in the DHT, keep it in the cache, and return it."""
        from p2pmarket.network.dht import listing_key

        raw_id = records.parse_id(listing_id) if isinstance(listing_id, str) else listing_id
        network = self._require_network()
        data = await network.get_dht(listing_key(raw_id))
        if data is None:
            raise NotFound(f"no peer has listing {records.format_id(raw_id)} in the DHT")
        if self._accept_remote(data, "dht", None) is Verdict.REJECT:
            raise NotFound(f"the DHT returned an invalid record for {records.format_id(raw_id)}")
        return self.get_listing(raw_id)

    async def fetch_seller(self, seller: bytes | str) -> list[Listing]:
        """Read a seller's catalogue from the DHT, fetch the listings we lack or
        hold in an older version, and return the seller's live listings."""
        import trio

        from p2pmarket.network.dht import catalogue_key

        key = public_key_from_peer_id(seller) if isinstance(seller, str) else seller
        if len(key) != 32:
            raise InvalidInput("a seller is a peer id (12D3KooW…) or a 32-byte public key")
        network = self._require_network()
        data = await network.get_dht(catalogue_key(key))
        if data is None:
            raise NotFound(f"no catalogue for seller {peer_id_from_public_key(key)} in the DHT")
        try:
            catalogue = records.validate_catalogue(data, self.now())
        except InvalidRecord:
            raise NotFound("the DHT returned an invalid catalogue for that seller") from None
        now = self.now()
        wanted = []
        for listing_id, seq in catalogue.items:
            cached = self.store.get(listing_id, now)
            if cached is None or cached.seq < seq:
                wanted.append(listing_id)
        # Listings we hold that left the catalogue were withdrawn (or expired):
        # fetching them brings their tombstones, which hide them.
        listed = {listing_id for listing_id, _ in catalogue.items}
        wanted.extend(x.id for x in self.store.by_seller(key, now) if x.id not in listed)
        limiter = trio.CapacityLimiter(_FETCH_CONCURRENCY)

        async def fetch(listing_id: bytes) -> None:
            async with limiter:
                # Gone since the catalogue was signed, or unreachable: the rest
                # of the catalogue is still worth having.
                with contextlib.suppress(P2PMarketError):
                    await self.fetch_listing(listing_id)

        # Within the control client's patience: what arrived by then is returned.
        with trio.move_on_after(_SELLER_DEADLINE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._fetch_about, key)
                for listing_id in wanted:
                    nursery.start_soon(fetch, listing_id)
        return self.store.by_seller(key, self.now())

    async def _fetch_about(self, key: bytes) -> None:
        """The key's profile and review bundle from the DHT, into the cache."""
        from p2pmarket.network.dht import profile_key

        data = await self._require_network().get_dht(profile_key(key))
        if data is not None:
            self._accept_remote(data, "dht", None)
        await self._fetch_bundle(key)

    async def fetch_reviews(self, peer: bytes | str) -> list[Review]:
        """Read the reviews about a peer from the DHT (keeping the ones that are
        new here) and its profile; return every review about it we now hold."""
        key = _peer_key(peer)
        await self._fetch_about(key)
        return self.store.reviews.about(key)

    # -- direct messages ------------------------------------------------------

    @property
    def _post(self) -> PostOffice:
        if self._post_office is None:
            from p2pmarket.postoffice import PostOffice
            from p2pmarket.store.messages import MessageStore

            self._post_office = PostOffice(
                MessageStore(self.store.db),
                self._block_list,
                signer=self._signer_or_unlock,
                now=self.now,
                emit=self._emit,
                read_receipts=self.config.read_receipts,
                on_trade=lambda move: self._desk.take(move),
            )
        return self._post_office

    @property
    def _block_list(self) -> BlockList:
        """Read by every search: loaded without the messaging machinery."""
        if self._blocks is None:
            from p2pmarket.store.blocklist import BlockList

            self._blocks = BlockList(self.store.db)
        return self._blocks

    def send_message(self, to: bytes | str, text: str) -> Message:
        """Seal ``text`` to a peer (a peer id, a public key, or a cached listing's id
        to write to its seller) and put it in the outbox. While the node runs it is
        delivered, or left with the recipient's mailboxes, and retried until a
        receipt arrives, also across restarts."""
        recipient = self._recipient(to)
        if recipient == self.public_key:
            raise InvalidInput("that is your own key: a message needs another peer")
        return self._post.send(recipient, text)

    def _recipient(self, to: bytes | str) -> bytes:
        if isinstance(to, bytes) or to.startswith("12D3KooW"):
            return _peer_key(to)
        return self.get_listing(to).seller  # a listing id: its seller

    def thread(self, peer: bytes | str, limit: int = 100) -> list[Message]:
        """The conversation with a peer (peer id or key), oldest first."""
        return self._post.messages.thread(_peer_key(peer), limit)

    def conversations(self) -> list[Thread]:
        """One entry per peer we have written with, the latest first, with unread counts."""
        return self._post.messages.threads()

    def mark_read(self, peer: bytes | str) -> int:
        """Mark a conversation read (and send the peer a read receipt, unless the
        ``read_receipts`` setting is off); return how many messages were unread."""
        return self._post.mark_read(_peer_key(peer))

    async def check_mail(self) -> int:
        """Ask our mailbox holders for mail now; return how many envelopes arrived
        (receipts included). The node also does this on start and every 5 minutes."""
        return await self._require_network().collect_mail()

    def block(self, peer: bytes | str) -> bool:
        """Block a peer: its messages are dropped and its listings hidden from
        search. False if it was blocked already."""
        key = _peer_key(peer)
        if key == self.public_key:
            raise InvalidInput("you cannot block yourself")
        return self._block_list.block(key, self.now())

    def unblock(self, peer: bytes | str) -> bool:
        """Unblock a peer; False if it was not blocked."""
        return self._block_list.unblock(_peer_key(peer))

    def blocked(self) -> list[str]:
        """The blocked peers' ids, most recently blocked first."""
        return [peer_id_from_public_key(key) for key, _ in self._block_list.entries()]

    # -- trades -------------------------------------------------------------------

    @property
    def _desk(self) -> TradeDesk:
        if self._trade_desk is None:
            from p2pmarket.store.trades import TradeStore
            from p2pmarket.trading import TradeDesk

            self._trade_desk = TradeDesk(
                TradeStore(self.store.db),
                self._post,
                signer=self._signer_or_unlock,
                own_key=self.public_key,
                now=self.now,
                emit=self._emit,
            )
        return self._trade_desk

    def offer(
        self,
        listing_id: bytes | str,
        *,
        price: int | None = None,
        quantity: int = 1,
        note: str = "",
    ) -> TradeView:
        """Open a trade: an offer on a cached listing to its seller, at the listed
        price unless ``price`` (minor units) says otherwise. It travels like a
        message: delivered while the node runs, or left with mailboxes."""
        listing = self.get_listing(listing_id)
        return self._desk.offer(
            listing, listing.price if price is None else price, quantity, note.strip()
        )

    def trade_step(
        self,
        trade_id: bytes | str,
        kind: str,
        *,
        price: int | None = None,
        quantity: int | None = None,
        note: str | None = None,
    ) -> TradeView:
        """Take a step in a trade: ``counter`` (with new price, quantity or note),
        ``accept``, ``decline``, ``cancel``, ``paid``, ``shipped``, ``complete``."""
        from p2pmarket.trade import STEPS

        if kind not in STEPS:
            raise InvalidInput(f"unknown trade step {kind!r}")
        return self._desk.act(_trade_id(trade_id), kind, price=price, quantity=quantity, note=note)  # type: ignore[arg-type]

    def trades(self) -> list[TradeView]:
        """Every trade of ours, the most recently moved first."""
        return self._desk.views()

    def get_trade(self, trade_id: bytes | str) -> TradeView:
        return self._desk.view(_trade_id(trade_id))

    def profile(self, owner: bytes | None = None) -> Profile | None:
        return self.store.get_profile(owner or self.public_key)

    # -- reviews and reputation ------------------------------------------------------

    @property
    def _rated(self) -> Ratings:
        if self._ratings is None:
            from p2pmarket.ratings import Ratings

            self._ratings = Ratings(self.store, self.store.get_profile)
        return self._ratings

    def review(self, trade_id: bytes | str, *, stars: int, text: str = "") -> Review:
        """Review the other party of a completed trade of ours. The review embeds
        the contract both signed, is gossiped, synced and put in the DHT, and is
        kept by everyone; reviewing the same trade again replaces the review."""
        view = self.get_trade(trade_id)
        if view.contract is None or view.state.value != "completed":
            raise InvalidInput(
                f"only a completed trade can be reviewed (this one is {view.state.value})"
            )
        if type(stars) is not int or not 1 <= stars <= 5:
            raise InvalidInput("stars must be a whole number from 1 to 5")
        other = view.seller if self.public_key == view.buyer else view.buyer
        held = self.store.reviews.get(view.contract.id, self.public_key)
        draft = Review(
            reviewer=self.public_key,
            subject=other,
            seq=held.seq + 1 if held else 1,
            stars=stars,
            text=text.strip(),
            contract=view.contract,
            created=self.now(),
        )
        return self._publish(draft)

    def reviews(self, peer: bytes | str | None = None, *, written: bool = False) -> list[Review]:
        """The reviews about a peer (us by default), newest first; with
        ``written``, the reviews it wrote instead. From the local cache."""
        key = self.public_key if peer is None else _peer_key(peer)
        reviews = self.store.reviews
        return reviews.by(key) if written else reviews.about(key)

    def reputation(self, peer: bytes | str | None = None) -> Reputation:
        """A peer's reputation (ours by default) from the reviews held here."""
        return self._rated.of(self.public_key if peer is None else _peer_key(peer))

    def sellers(self, keys: Sequence[bytes]) -> list[SellerInfo]:
        """Name, location and reputation of each seller, e.g. beside search results."""
        return self._rated.sellers(_peer_key(key) for key in keys)

    def set_profile(
        self, *, name: str, bio: str = "", contacts: Sequence[str] = (), location: str = ""
    ) -> Profile:
        """Sign and store our profile (a new seq replaces the old one)."""
        current = self.profile()
        draft = Profile(
            owner=self.public_key,
            seq=current.seq + 1 if current else 1,
            name=name.strip(),
            bio=bio.strip(),
            contacts=tuple(c.strip() for c in contacts if c.strip()),
            location=location.strip(),
            created=self.now(),
        )
        return self._publish(draft)


@asynccontextmanager
async def open_node(
    home: str | os.PathLike[str] | None = None,
    *,
    passphrase: Passphrase = None,
    clock: Clock = time.time,
    network: NetworkConfig | None = None,
) -> AsyncIterator[Node]:
    """Open a node for use inside a trio program: ``async with open_node(home) as node``.

    With ``network`` the node also joins the network for the duration of the block.
    The node is closed when the block exits, also on error or cancellation.
    """
    import trio

    node = Node.open(home, passphrase=passphrase, clock=clock)
    try:
        if network is None:
            yield node
        else:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run, network)
                yield node
                node.stop()
    finally:
        node.close()


def _on_its_topics(record: Record, topic_ids: tuple[str, ...]) -> bool:
    from p2pmarket.network import topics

    if isinstance(record, Profile):
        return topics.carries("profile", None, topic_ids)
    if isinstance(record, Review):
        return topics.carries("review", None, topic_ids)
    if isinstance(record, Listing):
        return topics.carries("listing", record.category, topic_ids)
    return topics.carries("tombstone", None, topic_ids)


def _event(record: Record, outcome: Outcome, source: Source) -> Event:
    if isinstance(record, Profile):
        return ProfileUpdated(record, source)
    if isinstance(record, Review):
        return ReviewAdded(record, source)
    if isinstance(record, Tombstone):
        return ListingWithdrawn(record, source)
    if outcome is Outcome.ADDED:
        return ListingAdded(record, source)
    return ListingUpdated(record, source)


def _trade_id(trade: bytes | str) -> bytes:
    if isinstance(trade, str):
        try:
            trade = bytes.fromhex(trade.strip())
        except ValueError:
            trade = b""
    if len(trade) != 16:
        raise InvalidInput("a trade id is 32 hex digits")
    return trade


def _peer_key(peer: bytes | str) -> bytes:
    """A peer's public key from its peer id (or the key itself)."""
    if isinstance(peer, bytes):
        if len(peer) != 32:
            raise InvalidInput("a peer key is 32 bytes")
        return peer
    return public_key_from_peer_id(peer)


def _lifetime(days: int) -> int:
    if type(days) is not int or not 1 <= days <= records.MAX_LIFETIME // DAY:
        raise InvalidInput(f"expires-days must be a whole number from 1 to 90 (got {days})")
    return days * DAY


def _clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Trim, lowercase and de-duplicate tags, keeping their order."""
    return tuple(dict.fromkeys(t.strip().lower() for t in tags if t.strip()))
