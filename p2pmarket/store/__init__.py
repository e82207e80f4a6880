"""The local store: one LevelDB per home. The only package that imports plyvel.

Its public names are imported on first use (PEP 562): ``p2pmarket.store.messages``
is loaded by clients of the daemon for its dataclasses, and must not bring the
listing store and its search engine with it.
"""

from __future__ import annotations

import typing as _typing

from p2pmarket import lazy as _lazy

if _typing.TYPE_CHECKING:
    from p2pmarket.store.listings import Change as Change
    from p2pmarket.store.listings import ListingStore as ListingStore
    from p2pmarket.store.listings import Outcome as Outcome
    from p2pmarket.store.search import Page as Page
    from p2pmarket.store.search import Query as Query
    from p2pmarket.store.search import Sort as Sort

_PUBLIC = {
    "Change": "p2pmarket.store.listings",
    "ListingStore": "p2pmarket.store.listings",
    "Outcome": "p2pmarket.store.listings",
    "Page": "p2pmarket.store.search",
    "Query": "p2pmarket.store.search",
    "Sort": "p2pmarket.store.search",
}
__all__ = sorted(_PUBLIC)


__getattr__ = _lazy.attribute_loader(__name__, _PUBLIC, globals())
__dir__ = _lazy.listing(_PUBLIC, globals())
