"""GossipSub topic names, and which topics a record travels on.

Every listing (and withdrawal) is published once, on two topics at the same time:
the market-wide topic and the topic of its top-level category. A default node
subscribes only to the market-wide topic and so sees everything; a node that
cares about a few categories (a phone on a metered link) subscribes only to
those. One message carries both topic ids, so it is sent, validated and counted
once, and message-id deduplication stops it from looping between the two meshes.
A node never subscribes to both kinds, so its validator runs once per message.
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
    """The topics a listing, or the withdrawal of a listing in ``category``, goes to."""
    return [ALL_LISTINGS, category_topic(category)]


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
