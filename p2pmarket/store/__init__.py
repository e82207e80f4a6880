"""The local store: one LevelDB per home. The only package that imports plyvel."""

from __future__ import annotations

from p2pmarket.store.listings import Change as Change
from p2pmarket.store.listings import ListingStore as ListingStore
from p2pmarket.store.listings import Outcome as Outcome
from p2pmarket.store.search import Page as Page
from p2pmarket.store.search import Query as Query
from p2pmarket.store.search import Sort as Sort
