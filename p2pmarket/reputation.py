"""Reputation: what the reviews a node holds say about one key. Pure functions.

Every figure comes from reviews, because a review is the only thing a stranger
can check: it embeds a contract both parties signed. So "trades" here are the
contracts someone published a review of; a trade nobody reviewed is invisible to
everyone but its two parties.

**The rating** is a weighted mean of stars, pulled towards 3 by two imaginary
3-star reviews (a Bayesian average), so one glowing review does not outrank a
long good record. Against a seller who trades with sock puppets to review
themselves:

* each reviewer counts once, whatever the number of trades (their reviews of
  the key are averaged), so a hundred trades with one puppet are one voice;
* a reviewer's weight grows with their own history: a quarter for a key that
  has dealt with no one else, up to a full vote for one that has dealt with
  three or more others (counted from the reviews held). A fresh puppet is
  worth a quarter of a real customer, and every puppet needs a contract the
  seller also signed, which anyone can see in ``reviews``.

What it does not resist: a ring of puppets that trade with one another first
(each then has a history), and real people paid to trade and review. The
figures beside the rating (distinct counterparties, and when the key first
traded) make a young, inbred record visible to a careful buyer, but they do
not stop one. Stronger defences need a trust anchor the network does not
have (for example weighting reviewers by their distance from people the user
traded with themselves).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

PRIOR_STARS: Final = 3.0
PRIOR_WEIGHT: Final = 2.0
FULL_HISTORY: Final = 3  # others a reviewer has dealt with to count fully


class Dealing(NamedTuple):
    """One trade of a key with another, as a review shows it. (A tuple: a key's
    dealings are built by the dozen for every reputation shown.)"""

    other: bytes
    contract: bytes  # the contract's id
    role: Literal["buyer", "seller"]  # the key's role in the trade
    received: int  # stars the other gave the key (0: no review)
    given: int  # stars the key gave the other (0: no review)
    time: int  # when the agreed terms were proposed


@dataclass(frozen=True, slots=True)
class Reputation:
    key: bytes
    reviews: int  # reviews received
    mean_stars: float | None  # their plain mean
    rating: float | None  # the weighted rating (see the module); None without reviews
    counterparties: int  # distinct keys traded with
    trades_as_buyer: int
    trades_as_seller: int
    first_trade: int | None  # Unix time of the earliest trade


@dataclass(frozen=True, slots=True)
class SellerInfo:
    """What is shown beside a listing about its seller: profile and reputation."""

    key: bytes
    name: str  # "" without a profile
    location: str
    reputation: Reputation


def reviewer_weight(history: int) -> float:
    """A reviewer's weight from how many others (than the key reviewed) they
    dealt with: 0.25 for none, 1.0 for :data:`FULL_HISTORY` or more."""
    return (1 + min(history, FULL_HISTORY)) / (1 + FULL_HISTORY)


def reputation(
    key: bytes, dealings: Iterable[Dealing], history: Callable[[bytes], int]
) -> Reputation:
    """The reputation of ``key`` from its dealings; ``history(reviewer)`` is how
    many others than ``key`` the reviewer dealt with."""
    dealings = list(dealings)
    received: dict[bytes, list[int]] = defaultdict(list)
    roles: dict[str, set[bytes]] = {"buyer": set(), "seller": set()}
    for d in dealings:
        roles[d.role].add(d.contract)
        if d.received:
            received[d.other].append(d.received)
    stars = [s for given in received.values() for s in given]
    rating = None
    if received:
        total = PRIOR_STARS * PRIOR_WEIGHT
        weights = PRIOR_WEIGHT
        for reviewer, given in received.items():
            weight = reviewer_weight(history(reviewer))
            total += weight * sum(given) / len(given)
            weights += weight
        rating = total / weights
    return Reputation(
        key=key,
        reviews=len(stars),
        mean_stars=sum(stars) / len(stars) if stars else None,
        rating=rating,
        counterparties=len({d.other for d in dealings}),
        trades_as_buyer=len(roles["buyer"]),
        trades_as_seller=len(roles["seller"]),
        first_trade=min((d.time for d in dealings), default=None),
    )
