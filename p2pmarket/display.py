"""How records look to people and to scripts: text lines and JSON documents.

Pure functions, shared by the CLI and any other front end.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.events import (
    Event,
    ListingAdded,
    ListingUpdated,
    ListingWithdrawn,
    PeerConnected,
    PeerDisconnected,
    ProfileUpdated,
)
from p2pmarket.money import format_price
from p2pmarket.records import Listing, Profile, Tombstone, format_id


def iso_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(ts: int, now: float | None = None) -> str:
    """'just now', '5m ago', '3h ago', '2d ago'."""
    seconds = int((time.time() if now is None else now) - ts)
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"  # pragma: no cover


def listing_json(listing: Listing) -> dict[str, Any]:
    return {
        "id": format_id(listing.id),
        "seller": peer_id_from_public_key(listing.seller),
        "seq": listing.seq,
        "kind": listing.kind,
        "title": listing.title,
        "description": listing.description,
        "price": {
            "amount": listing.price,
            "currency": listing.currency,
            "text": format_price(listing.price, listing.currency),
        },
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


def listing_line(listing: Listing, now: float | None = None) -> str:
    """One search hit: id, price, title, place, age."""
    price = format_price(listing.price, listing.currency)
    wanted = "[WANTED] " if listing.kind == "wanted" else ""
    place = f" · {listing.location}" if listing.location else ""
    return (
        f"{format_id(listing.id)}  {price:>16}  {wanted}{listing.title}"
        f"  ({listing.category}{place} · {age(listing.created, now)})"
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
    if isinstance(event, ListingAdded | ListingUpdated):
        body: dict[str, Any] = {"listing": listing_json(event.listing), "source": event.source}
    elif isinstance(event, ListingWithdrawn):
        body = {"withdrawal": tombstone_json(event.tombstone), "source": event.source}
    elif isinstance(event, ProfileUpdated):
        body = {"profile": profile_json(event.profile), "source": event.source}
    elif isinstance(event, PeerConnected):
        body = {"peer_id": event.peer_id, "address": event.address}
    else:
        body = {"peer_id": event.peer_id}
    return {"event": _EVENT_NAMES[type(event)], "time": iso_time(int(time.time())), **body}


def event_line(event: Event) -> str:
    name = _EVENT_NAMES[type(event)]
    if isinstance(event, ListingAdded | ListingUpdated):
        return f"{name:18} {listing_line(event.listing)}"
    if isinstance(event, ListingWithdrawn):
        return f"{name:18} {format_id(event.tombstone.id)}"
    if isinstance(event, ProfileUpdated):
        return f"{name:18} {event.profile.name} {peer_id_from_public_key(event.profile.owner)}"
    if isinstance(event, PeerConnected):
        return f"{name:18} {event.peer_id} {event.address}"
    return f"{name:18} {event.peer_id}"


_EVENT_NAMES: dict[type, str] = {
    ListingAdded: "listing-added",
    ListingUpdated: "listing-updated",
    ListingWithdrawn: "listing-withdrawn",
    ProfileUpdated: "profile-updated",
    PeerConnected: "peer-connected",
    PeerDisconnected: "peer-disconnected",
}
