"""docs/test-vectors.json and the hex in docs/PROTOCOL.md are what our code
produces and accepts: a wire change shows up here before it reaches a second
implementation (the JavaScript interop test reads the same file)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import msgpack
import nacl.public
import nacl.signing
import pytest
import vectors_gen as gen

from p2pmarket import records
from p2pmarket.crypto import envelope as env
from p2pmarket.crypto import stamp
from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.crypto.signing import Signer
from p2pmarket.network import sync_wire as wire
from p2pmarket.network.reconcile import ItemSet, Reconciler
from p2pmarket.records import Catalogue, Listing, Profile, Tombstone


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gen.JSON_PATH.read_text())
    return data


def vector(vectors: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in vectors["vectors"] if v["name"] == name)
    return found


def test_the_file_is_what_the_code_produces_from_the_fixed_inputs(
    vectors: dict[str, Any],
) -> None:
    # Envelopes are random; the generator keeps the file's while they still open.
    assert gen.build(vectors) == vectors, (
        "the wire changed: if on purpose, run `.venv/bin/python tests/vectors_gen.py --write`"
    )


def test_every_vector_has_the_documented_shape(vectors: dict[str, Any]) -> None:
    assert vectors["format"] == 1
    for v in vectors["vectors"]:
        assert set(v) == {"name", "description", "inputs", "expected", "random"}
        assert set(v["random"]) <= set(v["expected"])
    names = [v["name"] for v in vectors["vectors"]]
    assert len(names) == len(set(names))


PAIR_LISTS = {"items", "a_items", "b_items"}  # [bytes as hex, integer] pairs (the about)


def _is_hex(value: object) -> bool:
    if not isinstance(value, str) or len(value) % 2:
        return False
    try:
        return bytes.fromhex(value).hex() == value  # lowercase, nothing else
    except ValueError:
        return False


def _hex_slots_agree(key: str, value: object, where: str) -> None:
    """Bytes sit exactly where the file's ``about`` says, and nowhere else."""
    if key.endswith("_hex") or key == "hex":
        if isinstance(value, dict):
            leaves = list(value.values())
        else:
            leaves = value if isinstance(value, list) else [value]
        assert leaves and all(_is_hex(x) for x in leaves), where
    elif key in PAIR_LISTS:
        assert isinstance(value, list), where
        for pair in value:
            assert len(pair) == 2 and _is_hex(pair[0]) and type(pair[1]) is int, where
    elif isinstance(value, dict):
        for k, v in value.items():
            _hex_slots_agree(k, v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _hex_slots_agree(key, v, f"{where}[{i}]")
    else:
        # Text or an integer; a long run of hex digits would be unmarked bytes.
        assert type(value) is int or (
            isinstance(value, str) and not (_is_hex(value) and len(value) >= 16)
        ), where


def test_bytes_are_hex_exactly_where_the_about_says(vectors: dict[str, Any]) -> None:
    assert any("a_items and b_items" in line for line in vectors["about"])
    for v in vectors["vectors"]:
        for part in ("inputs", "expected"):
            _hex_slots_agree(part, v[part], f"{v['name']}.{part}")


def test_record_fields_are_the_decoded_record_key_for_key(vectors: dict[str, Any]) -> None:
    for name in ("listing", "tombstone", "profile", "catalogue"):
        expected = vector(vectors, name)["expected"]
        doc = msgpack.unpackb(bytes.fromhex(expected["record_hex"]), raw=False)
        fields = expected["fields"]
        assert [k.removesuffix("_hex") for k in fields] == list(doc), name
        for key, value in fields.items():
            got = doc[key.removesuffix("_hex")]
            if key == "items":
                value = [[bytes.fromhex(i), s] for i, s in value]
            elif key.endswith("_hex"):
                value = (
                    [bytes.fromhex(x) for x in value]
                    if isinstance(value, list)
                    else bytes.fromhex(value)
                )
            assert got == value, f"{name}.{key}"


def test_identities_give_their_keys_and_peer_ids(vectors: dict[str, Any]) -> None:
    for name in ("identity_seller", "identity_buyer"):
        v = vector(vectors, name)
        signer = Signer(bytes.fromhex(v["inputs"]["seed_hex"]))
        assert signer.public_key.hex() == v["expected"]["public_key_hex"]
        assert peer_id_from_public_key(signer.public_key) == v["expected"]["peer_id"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("listing", Listing), ("tombstone", Tombstone), ("profile", Profile)],
)
def test_records_validate_with_their_signature_and_a_real_network_stamp(
    vectors: dict[str, Any], name: str, kind: type
) -> None:
    v = vector(vectors, name)
    expected = v["expected"]
    data = bytes.fromhex(expected["record_hex"])
    record = records.validate(data, v["inputs"]["now"])
    assert isinstance(record, kind)
    assert records.encode(record) == data
    assert records.signed_message(record).hex() == expected["signed_message_hex"]
    assert stamp.check(record.signature, record.stamp, stamp.DEFAULT_BITS)
    work = stamp.work(record.signature, record.stamp)
    assert work.hex() == expected["stamp_work_hex"]
    assert stamp.leading_zero_bits(work) >= v["inputs"]["stamp_bits"] == 13
    # The listed fields are the map's, key for key.
    doc = msgpack.unpackb(data, raw=False)
    shown = {k.removesuffix("_hex"): val for k, val in expected["fields"].items()}
    assert sorted(shown) == sorted(doc)
    assert [k for k in doc] == sorted(doc)


def test_a_changed_byte_breaks_the_listing(vectors: dict[str, Any]) -> None:
    v = vector(vectors, "listing")
    data = bytearray.fromhex(v["expected"]["record_hex"])
    data[data.index(b"Sepeda lipat")] ^= 0x20  # "sepeda": the signature no longer covers it
    with pytest.raises(records.InvalidRecord):
        records.validate(bytes(data), v["inputs"]["now"])


def test_the_catalogue_validates_and_names_the_listing(vectors: dict[str, Any]) -> None:
    v = vector(vectors, "catalogue")
    catalogue = records.validate_catalogue(
        bytes.fromhex(v["expected"]["record_hex"]), v["inputs"]["now"]
    )
    assert isinstance(catalogue, Catalogue)
    listing = vector(vectors, "listing")["expected"]
    assert catalogue.items == ((bytes.fromhex(listing["listing_id_hex"]), 1),)


def test_the_gossip_message_id_covers_the_topic_and_the_data(vectors: dict[str, Any]) -> None:
    expected = vector(vectors, "listing")["expected"]
    data = bytes.fromhex(expected["record_hex"])
    ids = expected["gossip_message_id_hex"]
    assert sorted(ids) == sorted(expected["gossip_topics"])
    for topic, message_id in ids.items():
        documented = hashlib.blake2b(topic.encode() + b"\x00" + data, digest_size=20)
        assert documented.hexdigest() == message_id, topic
    assert len(set(ids.values())) == len(ids), "each topic's copy is its own message"


def test_the_direct_message_opens_with_the_recipients_seed(vectors: dict[str, Any]) -> None:
    v = vector(vectors, "direct_message")
    inputs, expected = v["inputs"], v["expected"]
    seller = Signer(bytes.fromhex(inputs["recipient_seed_hex"]))
    buyer = Signer(bytes.fromhex(inputs["sender_seed_hex"]))
    envelope = bytes.fromhex(expected["envelope_hex"])
    letter = env.open_envelope(envelope, seller, inputs["now"])
    assert letter.sender == buyer.public_key
    assert letter.id.hex() == inputs["letter_id_hex"]
    assert (letter.sent, letter.kind) == (inputs["sent"], "text")
    assert letter.body == inputs["text"].encode() == bytes.fromhex(expected["body_hex"])
    plain = gen.opened_letter(envelope, seller.seed())
    assert plain.hex() == expected["letter_hex"]
    body = msgpack.unpackb(plain, raw=False)[6]
    assert isinstance(body, bytes), "the body is msgpack bin, never str"
    frame = bytes.fromhex(expected["dm_request_frame_hex"])
    assert frame == struct.pack(">I", len(envelope)) + envelope


def test_the_receipt_answers_the_letter(vectors: dict[str, Any]) -> None:
    v = vector(vectors, "direct_message")
    inputs, expected = v["inputs"], v["expected"]
    buyer = Signer(bytes.fromhex(inputs["sender_seed_hex"]))
    answer = bytes.fromhex(expected["dm_answer_frame_hex"])
    (length,) = struct.unpack(">I", answer[:4])
    assert length == len(answer) - 4
    receipt = env.open_envelope(answer[4:], buyer, inputs["now"])
    assert receipt.kind == "receipt"
    assert receipt.body.hex() == expected["receipt_body_hex"]
    assert msgpack.unpackb(receipt.body) == [[bytes.fromhex(inputs["letter_id_hex"]), 2]]
    assert gen.opened_letter(answer[4:], buyer.seed()).hex() == expected["receipt_letter_hex"]


def test_a_str_body_does_not_open(vectors: dict[str, Any]) -> None:
    """What a JS encoder does by default with a string: refused, with no receipt."""
    v = vector(vectors, "direct_message")
    inputs = v["inputs"]
    buyer = Signer(bytes.fromhex(inputs["sender_seed_hex"]))
    seller = Signer(bytes.fromhex(inputs["recipient_seed_hex"]))
    fields = [buyer.public_key, seller.public_key, bytes(16), inputs["sent"], "text", "halo"]
    sig = buyer.sign(b"p2pmarket/letter/v1\x00" + msgpack.packb(fields, use_bin_type=True))
    box_key = nacl.signing.VerifyKey(seller.public_key).to_curve25519_public_key()
    inner = msgpack.packb([1, *fields, sig], use_bin_type=True)
    sealed = nacl.public.SealedBox(box_key).encrypt(inner)
    envelope = msgpack.packb({"box": sealed, "to": seller.public_key, "v": 1}, use_bin_type=True)
    with pytest.raises(env.InvalidEnvelope, match="must be bytes"):
        env.open_envelope(envelope, seller, inputs["now"])


def _frames(vectors: dict[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = vector(vectors, "sync_session")["expected"]["frames"]
    return frames


def test_the_sync_frames_decode_and_carry_valid_records(vectors: dict[str, Any]) -> None:
    now = vector(vectors, "listing")["inputs"]["now"]
    kinds = []
    for f in _frames(vectors):
        data = bytes.fromhex(f["hex"])
        assert wire.frame_length(data[:4]) == len(data) - 4
        kind, body = wire.parse(data[4:])
        kinds.append((f["from"], f["stream"], kind))
        if kind == wire.RANGES:
            assert wire.decode_ranges(body)
        elif kind == wire.GET:
            assert wire.decode_get(body)
        else:
            for record in wire.decode_records(body, len(body)):
                assert record is not None
                records.validate(record, now)
    assert kinds == [
        ("A", "reconcile", wire.RANGES),
        ("B", "reconcile", wire.RANGES),
        ("A", "reconcile", wire.RANGES),
        ("A", "fetch", wire.GET),
        ("B", "fetch", wire.RECORDS),
        ("B", "fetch", wire.GET),
        ("A", "fetch", wire.RECORDS),
    ]


def test_replaying_the_session_leaves_each_side_needing_the_others_newer_record(
    vectors: dict[str, Any],
) -> None:
    inputs = vector(vectors, "sync_session")["inputs"]
    sides = {
        side: Reconciler(
            ItemSet.build((bytes.fromhex(k), s, True) for k, s in inputs[f"{side.lower()}_items"])
        )
        for side in "AB"
    }
    reconcile = [f for f in _frames(vectors) if f["stream"] == "reconcile"]
    assert wire.ranges_frame(sides["A"].first()).hex() == reconcile[0]["hex"]
    for sent, answer in zip(reconcile, [*reconcile[1:], None], strict=True):
        receiver = sides["B" if sent["from"] == "A" else "A"]
        _, body = wire.parse(bytes.fromhex(sent["hex"])[4:])
        reply = receiver.receive(wire.decode_ranges(body))
        if answer is None:
            assert reply is None and receiver.done
        else:
            assert reply is not None and wire.ranges_frame(reply).hex() == answer["hex"]
    b_key = bytes.fromhex(inputs["b_items"][0][0])
    assert sides["A"].needs == {b_key: 2}
    assert list(sides["B"].needs) == [bytes.fromhex(inputs["a_items"][0][0])]


def test_the_fingerprint_is_as_documented(vectors: dict[str, Any]) -> None:
    v = vector(vectors, "sync_fingerprint")
    items = [(bytes.fromhex(k), s) for k, s in v["inputs"]["items"]]
    hashes = [hashlib.blake2b(k + s.to_bytes(8, "big"), digest_size=32).digest() for k, s in items]
    assert [x.hex() for x in hashes] == v["expected"]["item_hashes_hex"]
    total = sum(int.from_bytes(x, "big") for x in hashes) % 2**256
    assert total.to_bytes(32, "big").hex() == v["expected"]["sum_hex"]
    fp = hashlib.blake2b(total.to_bytes(32, "big") + len(items).to_bytes(8, "big"), digest_size=16)
    assert fp.hexdigest() == v["expected"]["fingerprint_hex"]


def test_protocol_md_shows_the_same_hex_as_the_file(vectors: dict[str, Any]) -> None:
    doc = gen.DOC_PATH.read_text()
    assert gen.doc_section(vectors) in doc, (
        "PROTOCOL.md's test vectors are stale: run `.venv/bin/python tests/vectors_gen.py --write`"
    )
    blocks = gen.doc_blocks(doc)
    frames = _frames(vectors)
    assert len(blocks) == len(gen.SHOWN) + len(frames)
    for name, hex_text in blocks.items():
        head, _, path = name.partition(".")
        if head == "sync_session":
            index = int(path.removeprefix("frames."))
            assert hex_text == frames[index]["hex"], name
        else:
            assert hex_text == gen.lookup(vectors, head, path), name
