"""GossipSub topic names, and which topic a record may travel on.

Every gossip message carries exactly one topic, as go-, js- and rust-libp2p
expect: a message with two topic ids (our first design) was decoded by stock
js-libp2p as a one-topic message whose signature then failed.

A listing (or withdrawal) is published on the market-wide topic, which a
default node subscribes to and so sees everything. A node that cares about a
few categories (a phone on a metered link) subscribes only to those
categories' topics; the seller's node publishes a second, separate message on
the category's topic, and only while some peer subscribes to it. The message
id covers the topic (gossip.py), so the two copies are two messages, and a node
never subscribes to both kinds, so its validator runs once per record. A record
relayed only on the market-wide topic (say, by a stock libp2p node) reaches a
category follower by sync rather than by gossip.

Profiles and reviews have a topic each, which every node subscribes to: they
are small, and they are what makes a stranger's listing worth trusting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from p2pmarket.errors import InvalidInput
from p2pmarket.records import CATEGORY_RE

PREFIX: Final = "p2pmarket/1"
ALL_LISTINGS: Final = f"{PREFIX}/listings"
PROFILES: Final = f"{PREFIX}/profiles"
REVIEWS: Final = f"{PREFIX}/reviews"


def category_topic(category: str) -> str:
    """The topic of a category's top level: ``vehicles/bicycles`` → ``…/listings/vehicles``."""
    return f"{ALL_LISTINGS}/{category.split('/', 1)[0]}"


def listing_topics(category: str) -> list[str]:
    """The topics a listing, or the withdrawal of a listing in ``category``, goes to:
    one message on each (the category's only while someone subscribes to it)."""
    return [ALL_LISTINGS, category_topic(category)]


def carries(kind: str, category: str | None, topic_ids: Sequence[str]) -> bool:
    """Whether a gossip message on ``topic_ids`` may carry a record of ``kind``
    ("profile", "review", "listing" or "tombstone"; ``category`` for a listing).

    Exactly one topic, and the record's own: no one can push, say, a phone
    listing into the ``vehicles`` topic. A withdrawal names no category, so any
    category topic may carry it."""
    if len(topic_ids) != 1:
        return False
    topic = topic_ids[0]
    if kind == "profile":
        return topic == PROFILES
    if kind == "review":
        return topic == REVIEWS
    if kind == "listing":
        return category is not None and topic in listing_topics(category)
    parent, _, top = topic.rpartition("/")
    return topic == ALL_LISTINGS or (parent == ALL_LISTINGS and bool(CATEGORY_RE.match(top)))


def subscriptions(follow: Sequence[str]) -> list[str]:
    """The topics a node subscribes to: everything, or only the ``follow`` categories."""
    if not follow:
        return [ALL_LISTINGS, PROFILES, REVIEWS]
    topics = []
    for category in follow:
        top = category.strip().lower().split("/", 1)[0]
        if not CATEGORY_RE.match(top):
            raise InvalidInput(f"follow: {category!r} is not a category")
        topics.append(category_topic(top))
    return [*dict.fromkeys(topics), PROFILES, REVIEWS]
