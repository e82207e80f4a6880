"""Valid inputs for every decoder: what the mutations start from.

Built with the project's own encoders and the tests' fixed keys and clock, so a
valid case passes every check and a mutation reaches as deep as one edit can.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from fuzz.mutate import pack
from p2pmarket import records, trade
from p2pmarket.crypto import keystore
from p2pmarket.crypto.backup import to_words
from p2pmarket.crypto.envelope import seal
from p2pmarket.crypto.signing import Signer
from p2pmarket.network import dht, sync_wire
from p2pmarket.network.peerbook import PeerBook
from p2pmarket.network.reconcile import ItemSet, Reconciler
from p2pmarket.records import Catalogue
from p2pmarket.rpc import codec
from p2pmarket.store.messages import State
from tests import factories
from tests.factories import NOW, OTHER, SELLER, THIRD

ME = Signer(b"\x07" * 32)  # the node whose decoders are attacked


@dataclass(frozen=True)
class Corpus:
    listing: records.Listing
    tombstone: records.Tombstone
    profile: records.Profile
    review: records.Review
    review2: records.Review
    catalogue: Catalogue
    moves: list[trade.Move]


@functools.cache
def build() -> Corpus:
    listing = factories.signed_listing(tags=("lipat", "bekas"), images=(b"\x01" * 32,))
    contract = factories.agreed_contract()
    contract2 = factories.agreed_contract(buyer=THIRD, trade=b"\x0d" * 16)
    terms = trade.Terms(listing.id, 1, 100, "IDR", 2, "note", b"\x0c" * 32)
    offer = trade.make_offer(OTHER, SELLER.public_key, terms, NOW, b"\x0a" * 16)
    view = trade.resolve([offer], offer.trade, NOW)
    assert view is not None
    counter = trade.make_move(SELLER, view, "counter", 1, NOW + 5, terms)
    accept = trade.make_move(SELLER, view, "accept", 1, NOW + 5)
    catalogue = records.sign(Catalogue(SELLER.public_key, 7, ((listing.id, 1),), NOW), SELLER.sign)
    assert isinstance(catalogue, Catalogue)
    return Corpus(
        listing=listing,
        tombstone=factories.signed_tombstone(listing),
        profile=factories.signed_profile(),
        review=factories.signed_review(contract=contract),
        review2=factories.signed_review(THIRD, contract=contract2),
        catalogue=catalogue,
        moves=[offer, counter, accept],
    )


def record_docs() -> list[bytes]:
    c = build()
    return [records.encode(r) for r in (c.listing, c.tombstone, c.profile, c.review, c.catalogue)]


def bundles() -> list[bytes]:
    c = build()
    return [dht.pack_bundle([c.review]), dht.pack_bundle([c.review, c.review2])]


def envelopes() -> list[bytes]:
    move = trade.pack_move(build().moves[0])
    return [
        seal(OTHER, ME.public_key, kind, body, NOW)[1]
        for kind, body in (("text", b"Halo"), ("trade", move), ("receipt", receipts()[0]))
    ]


def letters() -> list[Any]:
    """The insides of envelopes to ME: [version, sender, recipient, id, sent, kind, body, sig]."""
    out = []
    for kind, body in (("text", b"Halo"), ("trade", trade.pack_move(build().moves[0]))):
        letter = seal(OTHER, ME.public_key, kind, body, NOW)[0]
        fields = [letter.sender, letter.recipient, letter.id, letter.sent, letter.kind, letter.body]
        signed = b"p2pmarket/letter/v1\x00" + msgpack.packb(fields, use_bin_type=True)
        out.append([1, *fields, OTHER.sign(signed)])
    return out


def moves() -> list[bytes]:
    return [trade.pack_move(m) for m in build().moves]


def terms() -> list[Any]:
    return [m.terms.fields() for m in build().moves if m.terms is not None] + [None]


def receipts() -> list[bytes]:
    states = [(b"\x01" * 16, State.DELIVERED), (b"\x02" * 16, State.READ)]
    return [msgpack.packb([[mid, int(s)] for mid, s in states], use_bin_type=True)]


# -- sync ----------------------------------------------------------------------


def item_set(offset: int) -> ItemSet:
    """60 items, keys 3 bytes; ``offset`` shifts which keys and seqs a side holds."""
    keys = sorted(b"L" + (i * 7 + offset).to_bytes(2, "big") for i in range(60))
    return ItemSet.build((k, 1 + (i + offset) % 3, i % 5 != 0) for i, k in enumerate(keys))


def sync_frames() -> list[bytes]:
    """Frames as a peer sends them: the opening ranges, an answer, a get, records."""
    peer = Reconciler(item_set(3))
    opening = peer.first()
    answer = Reconciler(item_set(0)).receive(opening) or []
    small = Reconciler(ItemSet.build([(b"L\x00\x01", 2, True), (b"L\x00\x09", 1, True)]))
    found: list[bytes | None] = [record_docs()[0], None]
    frames = [
        sync_wire.ranges_frame(opening),
        sync_wire.ranges_frame(answer),
        sync_wire.ranges_frame(small.first()),
        sync_wire.get_frame([b"L" + b"\x01" * 16, b"F" + b"\x02" * 32]),
        sync_wire.records_frame(found),
    ]
    return [f[4:] for f in frames]  # the bodies: the length is read apart


# -- mailbox and control socket ------------------------------------------------------


def mailbox_requests() -> list[Any]:
    """Requests to a holder, as documents (the target frames them)."""
    return [[1, envelopes()[0]], [2], [3, [b"\x01" * 16, b"\x02" * 16]]]


def mailbox_answers() -> list[Any]:
    env = envelopes()
    return [[0, [[b"\x01" * 16, env[0]], [b"\x02" * 16, env[1]]], True], [0, [], False]]


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def rpc_requests() -> list[bytes]:
    docs = [
        codec.request_document(1, "search", {"query": "sepeda", "limit": 20, "sort": None}),
        codec.request_document(2, "offer", {"listing": "abc", "price": 10, "note": "x"}),
        codec.request_document(3, "events", {}),
    ]
    return [codec.pack(d, typed=False) for d in docs]


def rpc_answers() -> list[bytes]:
    c = build()
    view = trade.resolve(c.moves, c.moves[0].trade, NOW)
    from p2pmarket.errors import InvalidRecord

    docs = [
        {"id": 1, "result": [c.listing, c.profile, c.review]},
        {"id": 2, "result": view},
        {"id": 3, "result": {"terms": c.moves[0].terms, "n": 3}},
        codec.error_document(4, InvalidRecord("listing.title", "too long")),
    ]
    return [codec.pack(d) for d in docs]


# -- files ---------------------------------------------------------------------------


def export_files() -> list[Any]:
    """Export files as documents: the header map, then the records (see exchange.py)."""
    header = {"format": "p2pmarket-export", "v": 1}
    docs = record_docs()
    return [[header, *docs[:2]], [header, docs[2]], [header]]


def pack_stream(doc: Any) -> bytes:
    """An export file's bytes: its documents one after another."""
    if isinstance(doc, list):
        return b"".join(pack(d) for d in doc)
    return pack(doc)


def key_files() -> list[bytes]:
    protected = {
        "format": "p2pmarket-key",
        "v": 1,
        "public_key": ME.public_key,
        "kdf": "argon2id",
        "opslimit": 2,
        "memlimit": 64 << 20,
        "salt": b"\x03" * 16,
        "box": b"\x04" * 72,
    }
    return [keystore.seal(ME, None), msgpack.packb(protected, use_bin_type=True)]


def peer_books() -> list[bytes]:
    with tempfile.TemporaryDirectory() as folder:
        book = PeerBook(Path(folder) / "peers")
        book.seen("12D3KooWA", ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"], NOW)
        book.seen("12D3KooWB", ["/ip4/10.0.0.1/tcp/1"], NOW - 5.5)
        book.failed("12D3KooWB", NOW)
        book.save()
        return [book.path.read_bytes()]


def config_files() -> list[bytes]:
    return [
        b'currency = "IDR"\nlocation = "Sleman"\nlisting_days = 30\nmdns = false\n',
        b'listen = ["/ip4/0.0.0.0/tcp/4001"]\nbootstrap = ["/ip4/1.2.3.4/tcp/1/p2p/12D3"]\n'
        b'follow = ["vehicles/bicycles", "books"]\nmax_listings = 5000\nsync_minutes = 0\n'
        b"read_receipts = true\nmailbox_mb = 0\n",
    ]


def backup_words() -> list[str]:
    return [to_words(ME), to_words(Signer(os.urandom(32)))]
