"""How records look to people and to scripts: text lines and JSON documents.

Pure functions, shared by the CLI and any other front end.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.money import format_price
from p2pmarket.nodestatus import NodeStatus, SyncProgress, SyncStatus
from p2pmarket.records import Listing, Profile, Review, Tombstone, format_id

if TYPE_CHECKING:
    from p2pmarket.events import Event
    from p2pmarket.reputation import Reputation, SellerInfo
    from p2pmarket.store.messages import Message
    from p2pmarket.trade import TradeView


def iso_time(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):  # a time no calendar holds
        return f"@{ts}"


def age(ts: int, now: float | None = None) -> str:
    """'just now', '5m ago', '3h ago', '2d ago'."""
    seconds = int((time.time() if now is None else now) - ts)
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"  # pragma: no cover


def price_json(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency, "text": format_price(amount, currency)}


def listing_json(listing: Listing) -> dict[str, Any]:
    return {
        "id": format_id(listing.id),
        "seller": peer_id_from_public_key(listing.seller),
        "seq": listing.seq,
        "kind": listing.kind,
        "title": listing.title,
        "description": listing.description,
        "price": price_json(listing.price, listing.currency),
        "quantity": listing.quantity,
        "category": listing.category,
        "tags": list(listing.tags),
        "location": listing.location,
        "created": iso_time(listing.created),
        "expires": iso_time(listing.expires),
        "images": [h.hex() for h in listing.images],
    }


def tombstone_json(tombstone: Tombstone) -> dict[str, Any]:
    return {
        "id": format_id(tombstone.id),
        "seller": peer_id_from_public_key(tombstone.seller),
        "seq": tombstone.seq,
        "withdrawn": iso_time(tombstone.created),
    }


def profile_json(profile: Profile) -> dict[str, Any]:
    return {
        "peer_id": peer_id_from_public_key(profile.owner),
        "seq": profile.seq,
        "name": profile.name,
        "bio": profile.bio,
        "contacts": list(profile.contacts),
        "location": profile.location,
        "updated": iso_time(profile.created),
    }


def listing_line(
    listing: Listing, now: float | None = None, seller: SellerInfo | None = None
) -> str:
    """One search hit: id, price, title, place, age; and who sells it, when known."""
    price = format_price(listing.price, listing.currency)
    wanted = "[WANTED] " if listing.kind == "wanted" else ""
    place = f" · {listing.location}" if listing.location else ""
    line = (
        f"{format_id(listing.id)}  {price:>16}  {wanted}{listing.title}"
        f"  ({listing.category}{place} · {age(listing.created, now)})"
    )
    if seller is not None:
        line += f"  — {seller_label(seller)}"
    return line


def seller_listing_json(listing: Listing, seller: SellerInfo) -> dict[str, Any]:
    """A search hit with what is known of its seller."""
    return {
        **listing_json(listing),
        "seller_name": seller.name or None,
        "seller_reputation": reputation_json(seller.reputation),
    }


def seller_label(seller: SellerInfo) -> str:
    """A seller in a few words: name (or short peer id) and rating."""
    name = seller.name or peer_id_from_public_key(seller.key)[-8:]
    return f"{name} {rating_text(seller.reputation)}"


def rating_text(reputation: Reputation) -> str:
    """'★4.3 (12 reviews)', or '(no reviews yet)'."""
    if reputation.rating is None:
        return "(no reviews yet)"
    count = reputation.reviews
    return f"★{reputation.rating:.1f} ({count} review{'s' if count != 1 else ''})"


def reputation_json(reputation: Reputation) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    first = reputation.first_trade
    return {
        "peer_id": peer_id_from_public_key(reputation.key),
        "rating": rounded(reputation.rating),
        "mean_stars": rounded(reputation.mean_stars),
        "reviews": reputation.reviews,
        "counterparties": reputation.counterparties,
        "trades_as_buyer": reputation.trades_as_buyer,
        "trades_as_seller": reputation.trades_as_seller,
        "first_trade": None if first is None else iso_time(first),
    }


def reputation_lines(reputation: Reputation, now: float | None = None) -> list[str]:
    lines = [f"rating    {rating_text(reputation)}"]
    if reputation.mean_stars is not None:
        lines.append(f"stars     {reputation.mean_stars:.2f} on average")
    lines.append(
        f"trades    {reputation.trades_as_seller} as seller, {reputation.trades_as_buyer} "
        f"as buyer, with {reputation.counterparties} different people"
    )
    if reputation.first_trade is not None:
        lines.append(
            f"since     {iso_time(reputation.first_trade)} ({age(reputation.first_trade, now)})"
        )
    return lines


def review_json(review: Review) -> dict[str, Any]:
    contract = review.contract
    return {
        "trade": contract.trade.hex(),
        "contract": contract.id.hex(),
        "reviewer": peer_id_from_public_key(review.reviewer),
        "reviewer_role": review.reviewer_role,
        "subject": peer_id_from_public_key(review.subject),
        "seq": review.seq,
        "stars": review.stars,
        "text": review.text,
        "written": iso_time(review.created),
        "terms": {
            "listing": format_id(contract.terms.listing_id),
            "price": price_json(contract.terms.price, contract.terms.currency),
            "quantity": contract.terms.quantity,
            "agreed": iso_time(contract.proposed),
        },
    }


def review_line(review: Review, now: float | None = None) -> str:
    stars = "★" * review.stars + "☆" * (5 - review.stars)
    who = peer_id_from_public_key(review.reviewer)
    price = format_price(review.contract.terms.price, review.contract.terms.currency)
    text = " ".join(review.text.split())
    return f"{stars}  by {who} ({review.reviewer_role}, {price}, {age(review.created, now)})" + (
        f"  {text}" if text else ""
    )


def listing_details(listing: Listing, now: float | None = None) -> list[str]:
    """The full listing, one field a line."""
    lines = [
        listing.title,
        f"  {'Wanted' if listing.kind == 'wanted' else 'For sale'}: "
        f"{format_price(listing.price, listing.currency)}"
        + (f", {listing.quantity} available" if listing.quantity != 1 else ""),
        f"  id        {format_id(listing.id)} (version {listing.seq})",
        f"  seller    {peer_id_from_public_key(listing.seller)}",
        f"  category  {listing.category}",
    ]
    if listing.tags:
        lines.append(f"  tags      {', '.join(listing.tags)}")
    if listing.location:
        lines.append(f"  location  {listing.location}")
    lines.append(f"  posted    {iso_time(listing.created)} ({age(listing.created, now)})")
    lines.append(f"  expires   {iso_time(listing.expires)}")
    if listing.description:
        lines.append("")
        lines.extend(f"  {line}" for line in listing.description.splitlines())
    return lines


def event_json(event: Event) -> dict[str, Any]:
    """One ``watch --json`` line: the event's name and its data."""
    from p2pmarket.events import (
        ListingAdded,
        ListingUpdated,
        ListingWithdrawn,
        MessageReceived,
        MessageStateChanged,
        PeerConnected,
        ProfileUpdated,
        ReviewAdded,
        TradeUpdated,
    )

    if isinstance(event, ListingAdded | ListingUpdated):
        body: dict[str, Any] = {"listing": listing_json(event.listing), "source": event.source}
    elif isinstance(event, ListingWithdrawn):
        body = {"withdrawal": tombstone_json(event.tombstone), "source": event.source}
    elif isinstance(event, ProfileUpdated):
        body = {"profile": profile_json(event.profile), "source": event.source}
    elif isinstance(event, ReviewAdded):
        body = {"review": review_json(event.review), "source": event.source}
    elif isinstance(event, PeerConnected):
        body = {"peer_id": event.peer_id, "address": event.address}
    elif isinstance(event, MessageReceived):
        body = {"message": message_json(event.message), "via": event.via}
    elif isinstance(event, MessageStateChanged):
        body = {"message": message_json(event.message)}
    elif isinstance(event, TradeUpdated):
        body = {"trade": trade_json(event.view)}
    else:
        body = {"peer_id": event.peer_id}
    return {"event": _event_names()[type(event)], "time": iso_time(int(time.time())), **body}


def event_line(event: Event) -> str:
    """One ``watch`` line: the event's name and what it is about."""
    from p2pmarket.events import (
        ListingAdded,
        ListingUpdated,
        ListingWithdrawn,
        MessageReceived,
        MessageStateChanged,
        PeerConnected,
        ProfileUpdated,
        ReviewAdded,
        TradeUpdated,
    )

    name = _event_names()[type(event)]
    if isinstance(event, ListingAdded | ListingUpdated):
        return f"{name:18} {listing_line(event.listing)}"
    if isinstance(event, ListingWithdrawn):
        return f"{name:18} {format_id(event.tombstone.id)}"
    if isinstance(event, ProfileUpdated):
        return f"{name:18} {event.profile.name} {peer_id_from_public_key(event.profile.owner)}"
    if isinstance(event, ReviewAdded):
        return f"{name:18} {review_line(event.review)}"
    if isinstance(event, PeerConnected):
        return f"{name:18} {event.peer_id} {event.address}"
    if isinstance(event, MessageReceived | MessageStateChanged):
        peer = peer_id_from_public_key(event.message.peer)
        return f"{name:18} {peer} {message_line(event.message)}"
    if isinstance(event, TradeUpdated):
        return f"{name:18} {trade_line(event.view)}"
    return f"{name:18} {event.peer_id}"


@functools.cache
def _event_names() -> dict[type, str]:
    """Each event's name in ``watch``. Built on first use: events (and the records
    and messages they carry) are loaded only by the commands that show them."""
    from p2pmarket import events

    return {
        events.ListingAdded: "listing-added",
        events.ListingUpdated: "listing-updated",
        events.ListingWithdrawn: "listing-withdrawn",
        events.ProfileUpdated: "profile-updated",
        events.ReviewAdded: "review-added",
        events.PeerConnected: "peer-connected",
        events.PeerDisconnected: "peer-disconnected",
        events.MessageReceived: "message-received",
        events.MessageStateChanged: "message-state",
        events.TradeUpdated: "trade-updated",
    }


def sync_line(status: SyncStatus) -> str:
    """One line for ``status``: what sync is doing, and when it last finished."""
    running = [s for s in status.sessions if s.active]
    if running:
        known = sum(s.known for s in running)
        fetched = sum(s.fetched for s in running)
        first = " (first sync)" if status.first_sync else ""
        now = f"syncing with {len(running)} peer{'s' * (len(running) != 1)}{first}"
        now += f": {fetched:,} of {known:,} records fetched"
    else:
        now = "idle"
    last = (
        f"last {iso_time(status.last_sync)} ({age(status.last_sync)})"
        if status.last_sync
        else "never synced"
    )
    return f"{now}; {last}; {status.synced_peers} peers synced since start"


def syncing_note(status: SyncStatus) -> str | None:
    """A warning for search output while a sync is filling the cache, so an
    empty or short result is not taken for an empty market."""
    running = [s for s in status.sessions if s.active]
    if not running:
        return None
    known = sum(s.known for s in running)
    fetched = sum(s.fetched for s in running)
    what = "the first sync" if status.first_sync else "a sync"
    return (
        f"syncing: {what} is running ({fetched:,} of {known:,} records fetched "
        "so far); results may be incomplete"
    )


def progress_line(progress: SyncProgress) -> str:
    """How one session ended (or stands)."""
    peer = progress.peer_id
    took = (progress.finished or time.time()) - progress.started
    moved = (progress.bytes_sent + progress.bytes_received) / 1e6
    text = (
        f"{peer}  {progress.phase}: fetched {progress.fetched:,} of {progress.known:,} "
        f"records, {moved:.1f} MB in {took:.1f} s"
    )
    if progress.rejected or progress.missing:
        text += f" ({progress.rejected} rejected, {progress.missing} no longer there)"
    if progress.error:
        text += f" — {progress.error}"
    return text


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id.hex(),
        "peer": peer_id_from_public_key(message.peer),
        "direction": "out" if message.outgoing else "in",
        "sent": iso_time(message.sent),
        "kind": message.kind,
        "text": message.text,
        "state": message.state.name.lower(),
        "read": message.read,
        "attempts": message.attempts,  # outgoing: deliveries tried and failed so far
    }


def message_line(message: Message) -> str:
    arrow = "→" if message.outgoing else "←"
    state = f" [{message.state.name.lower()}]" if message.outgoing else ""
    return f"{iso_time(message.sent)} {arrow} {message.text}{state}"


def trade_json(view: TradeView) -> dict[str, Any]:
    terms = view.terms
    return {
        "trade": view.trade.hex(),
        "state": view.state.value,
        "buyer": peer_id_from_public_key(view.buyer),
        "seller": peer_id_from_public_key(view.seller),
        "listing": format_id(terms.listing_id),
        "price": price_json(terms.price, terms.currency),
        "quantity": terms.quantity,
        "note": terms.note,
        "proposed_by": peer_id_from_public_key(view.proposer),
        "paid": view.paid,
        "shipped": view.shipped,
        "contract": view.contract is not None,
    }


def trade_line(view: TradeView) -> str:
    terms = view.terms
    marks = "".join((" paid" if view.paid else "", " shipped" if view.shipped else ""))
    return (
        f"{view.trade.hex()}  {view.state.value:11} {format_price(terms.price, terms.currency)}"
        f" x{terms.quantity}{marks}"
    )


def reach_line(status: NodeStatus) -> str:
    """The ``reach`` line of ``status``: can peers dial us, and how."""
    if status.reachability == "public":
        return "public: peers dial this node directly"
    if status.reachability == "relayed":
        via = ", ".join(r[:12] + "…" for r in status.relays)
        return f"behind NAT, reachable through relay {via}"
    if status.reachability == "private":
        return "behind NAT, no relay yet: peers cannot dial this node (it still dials them)"
    return "unknown: not enough peers asked yet"
