"""Signed records: one valid byte form per record, and every broken rule is InvalidRecord."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from factories import (
    NOW,
    OTHER,
    SELLER,
    THIRD,
    draft_listing,
    listing_fields,
    pack,
    raw_record,
    signed_listing,
    signed_profile,
    signed_tombstone,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from p2pmarket import records
from p2pmarket.errors import InvalidInput, InvalidRecord
from p2pmarket.money import CURRENCIES, MAX_MINOR_UNITS
from p2pmarket.records import (
    CLOCK_SKEW,
    DAY,
    EARLIEST,
    MAX_LIFETIME,
    MAX_RECORD_BYTES,
    Listing,
    Profile,
    Tombstone,
)

SIGNERS = (SELLER, OTHER, THIRD)

# -- strategies: every value they draw is valid --------------------------------

# Text without the characters records refuse (C0 controls, DEL) or cannot encode
# (lone surrogates).
_one_line_char = st.characters(blacklist_categories=("Cs", "Cc"))
_multi_line_char = st.one_of(_one_line_char, st.sampled_from("\t\n"))


def _text(limit: int, *, required: bool = False, multi_line: bool = False) -> Any:
    chars = _multi_line_char if multi_line else _one_line_char
    strategy = st.text(chars, min_size=1 if required else 0, max_size=limit)
    return strategy.filter(str.strip) if required else strategy


_word = st.from_regex(r"[a-z0-9]{1,10}(-[a-z0-9]{1,10}){0,2}", fullmatch=True)
categories = st.one_of(_word, st.builds("{}/{}".format, _word, _word)).filter(
    lambda c: len(c) <= records.MAX_CATEGORY and records.CATEGORY_RE.match(c) and "\n" not in c
)
tags = st.lists(_text(records.MAX_TAG, required=True), max_size=records.MAX_TAGS, unique=True)
seqs = st.integers(1, records.MAX_SEQ)
signers = st.sampled_from(SIGNERS)


@st.composite
def lifetimes(draw: st.DrawFn) -> tuple[int, int]:
    """(created, expires) that are valid at NOW: not too far ahead, not expired."""
    created = draw(st.integers(NOW - MAX_LIFETIME + 1, NOW + CLOCK_SKEW))
    expires = draw(st.integers(max(created + 1, NOW + 1), created + MAX_LIFETIME))
    return created, expires


@st.composite
def listings(draw: st.DrawFn) -> Listing:
    signer = draw(signers)
    created, expires = draw(lifetimes())
    draft = Listing(
        seller=signer.public_key,
        nonce=draw(st.binary(min_size=16, max_size=16)),
        seq=draw(seqs),
        kind=draw(st.sampled_from(records.KINDS)),
        title=draw(_text(records.MAX_TITLE, required=True)),
        description=draw(_text(records.MAX_DESCRIPTION, multi_line=True)),
        price=draw(st.integers(0, MAX_MINOR_UNITS)),
        currency=draw(st.sampled_from(sorted(CURRENCIES))),
        quantity=draw(st.integers(1, records.MAX_QUANTITY)),
        category=draw(categories),
        tags=tuple(draw(tags)),
        location=draw(_text(records.MAX_LOCATION)),
        created=created,
        expires=expires,
        images=tuple(draw(st.lists(st.binary(min_size=32, max_size=32), max_size=8))),
    )
    # Every field within its cap can still add up to more than 8 KiB (4000
    # four-byte characters); that case has its own test below.
    assume(len(pack(draft.fields())) + 80 <= MAX_RECORD_BYTES)
    return _sign(draft, signer)


@st.composite
def tombstones(draw: st.DrawFn) -> Tombstone:
    signer = draw(signers)
    created, expires = draw(lifetimes())
    draft = Tombstone(
        seller=signer.public_key,
        nonce=draw(st.binary(min_size=16, max_size=16)),
        seq=draw(seqs),
        created=created,
        expires=expires,
    )
    return _sign(draft, signer)


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    signer = draw(signers)
    draft = Profile(
        owner=signer.public_key,
        seq=draw(seqs),
        name=draw(_text(records.MAX_NAME, required=True)),
        bio=draw(_text(records.MAX_BIO, multi_line=True)),
        contacts=tuple(
            draw(
                st.lists(
                    _text(records.MAX_CONTACT, required=True),
                    max_size=records.MAX_CONTACTS,
                    unique=True,
                )
            )
        ),
        location=draw(_text(records.MAX_LOCATION)),
        created=draw(st.integers(EARLIEST, NOW + CLOCK_SKEW)),
    )
    return _sign(draft, signer)


def _sign(draft: Any, signer: Any) -> Any:
    return records.sign(draft, signer.sign)


any_record = st.one_of(listings(), tombstones(), profiles())

# Signing and verifying make each example cost ~0.3 ms; deadlines would only flake.
PROPERTY = settings(max_examples=150, deadline=None)


# -- round trip ----------------------------------------------------------------


@PROPERTY
@given(record=any_record)
def test_a_valid_record_survives_encode_and_validate_unchanged(record: Any) -> None:
    data = records.encode(record)

    decoded = records.validate(data, NOW)

    assert decoded == record
    assert type(decoded) is type(record)
    assert records.encode(decoded) == data


def test_the_encoding_is_a_map_with_keys_in_ascending_order() -> None:
    # The module's contract for other implementations: "a msgpack map with string
    # keys in ascending order".
    for record in (signed_listing(), signed_tombstone(signed_listing()), signed_profile()):
        keys = list(msgpack.unpackb(records.encode(record), raw=False))

        assert keys == sorted(keys), type(record).__name__


# -- tampering -----------------------------------------------------------------


@PROPERTY
@given(record=any_record, data=st.data())
def test_changing_any_single_byte_makes_the_record_invalid(record: Any, data: Any) -> None:
    encoded = records.encode(record)
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    old = encoded[position]
    new = data.draw(st.integers(0, 255).filter(lambda b: b != old), label="new byte")
    mutated = encoded[:position] + bytes([new]) + encoded[position + 1 :]

    stamp_at = encoded.index(b"\xa3pow\xc4\x10") + 6
    if stamp_at <= position < stamp_at + records.STAMP_SIZE:
        # The stamp is outside the signature (crypto/stamp.py): another nonce
        # leaves every signed field as it was, and is refused only if it is not
        # a stamp itself, which at the test network's 1 bit is one time in two.
        try:
            assert records.validate(mutated, NOW).signature == record.signature
        except InvalidRecord as exc:
            assert exc.field == "pow"
        return
    with pytest.raises(InvalidRecord):
        records.validate(mutated, NOW)


@PROPERTY
@given(record=any_record, data=st.data())
def test_a_truncated_record_is_invalid(record: Any, data: Any) -> None:
    encoded = records.encode(record)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="kept bytes")

    with pytest.raises(InvalidRecord):
        records.validate(encoded[:cut], NOW)


# Every msgpack type header: a byte that turns a value into a map, list, nil, bool,
# bin, float, ext or integer of another width.
_TYPE_HEADERS = [*range(0x80, 0xA0), 0xA0, 0xA1, 0xA3, 0xBF, *range(0xC0, 0xE0), 0xFF]


def test_every_type_confusing_byte_anywhere_in_a_listing_is_invalid_record() -> None:
    # Random mutation rarely hits the one byte that turns a value into a list or a
    # map; this sweep tries every type header at every position of the signed part.
    listing = signed_listing(tags=("lipat", "murah"))
    encoded = records.encode(listing)
    # The 64 signature bytes are left to the random test: changing them only
    # ever reaches the signature check, and verifying is the slow part.
    sig_start = encoded.index(b"\xa3sig\xc4\x40") + 6
    # The stamp's 16 bytes likewise: any nonce there leaves the signed fields
    # whole (see test_changing_any_single_byte_makes_the_record_invalid).
    stamp_start = encoded.index(b"\xa3pow\xc4\x10") + 6
    signed_part = [
        p
        for p in range(len(encoded))
        if not sig_start <= p < sig_start + 64
        and not stamp_start <= p < stamp_start + records.STAMP_SIZE
    ]
    escaped: list[tuple[int, int, str]] = []

    for position in signed_part:
        for new in _TYPE_HEADERS:
            if new == encoded[position]:
                continue
            mutated = encoded[:position] + bytes([new]) + encoded[position + 1 :]
            try:
                records.validate(mutated, NOW)
            except InvalidRecord:
                continue
            except Exception as exc:
                escaped.append((position, new, repr(exc)))
            else:
                escaped.append((position, new, "accepted"))

    assert escaped == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cur", ["I", "D", "R"]),
        ("cur", {"code": "IDR"}),
        ("kind", ["sell"]),
        ("kind", {"sell": 1}),
        ("cat", ["vehicles"]),
        ("tags", "lipat"),
        ("img", b"\x00" * 32),
        ("price", 1.5),
        ("seq", None),
        ("title", b"Sepeda"),
    ],
)
def test_a_field_of_the_wrong_type_fails_on_that_field(key: str, value: Any) -> None:
    data = raw_record(listing_fields(**{key: value}))

    with pytest.raises(InvalidRecord) as caught:
        records.validate(data, NOW)

    assert caught.value.field == f"listing.{key}"


# -- caps and rules, one at a time ----------------------------------------------


def _rejects(fields: dict[str, Any], *, now: int = NOW) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        records.validate(raw_record(fields), now)
    return caught.value


def test_the_default_test_listing_is_valid() -> None:
    # The baseline every "one broken rule" test below starts from.
    assert isinstance(records.validate(raw_record(listing_fields()), NOW), Listing)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "x" * (records.MAX_TITLE + 1)),
        ("title", "   "),
        ("title", "line\nbreak"),
        ("desc", "x" * (records.MAX_DESCRIPTION + 1)),
        ("desc", "bell\x07"),
        ("tags", [f"tag{i}" for i in range(records.MAX_TAGS + 1)]),
        ("tags", ["x" * (records.MAX_TAG + 1)]),
        ("tags", ["same", "same"]),
        ("tags", [""]),
        ("loc", "x" * (records.MAX_LOCATION + 1)),
        ("cur", "IRD"),
        ("cur", "idr"),
        ("cat", "Vehicles"),
        ("cat", "vehicles/bicycles/folding"),
        ("cat", "vehicles//bicycles"),
        ("cat", "-vehicles"),
        ("cat", "vehicles\n"),
        ("kind", "rent"),
        ("price", -1),
        ("price", MAX_MINOR_UNITS + 1),
        ("qty", 0),
        ("qty", records.MAX_QUANTITY + 1),
        ("seq", 0),
        ("nonce", b"\x00" * 15),
        ("seller", b"\x00" * 31),
        ("img", [b"\x00" * 31]),
        ("img", [bytes([i]) * 32 for i in range(records.MAX_IMAGES + 1)]),
    ],
)
def test_a_listing_field_past_its_cap_fails_on_that_field(field: str, value: Any) -> None:
    error = _rejects(listing_fields(**{field: value}))

    assert error.field == f"listing.{field}"


def test_the_caps_themselves_are_allowed() -> None:
    fields = listing_fields(
        title="x" * records.MAX_TITLE,
        desc="x" * records.MAX_DESCRIPTION,
        tags=[f"tag{i}" for i in range(records.MAX_TAGS)],
        loc="x" * records.MAX_LOCATION,
        price=MAX_MINOR_UNITS,
        qty=records.MAX_QUANTITY,
    )

    assert isinstance(records.validate(raw_record(fields), NOW), Listing)


def test_a_record_over_8_kib_is_rejected_before_it_is_parsed() -> None:
    # 3000 three-byte characters: every field is within its cap, the whole is not.
    fields = listing_fields(desc="€" * 3000)
    data = raw_record(fields)
    assert len(data) > MAX_RECORD_BYTES

    error = _rejects(fields)

    assert error.field is None
    assert str(MAX_RECORD_BYTES) in error.reason


def test_signing_a_record_over_8_kib_is_refused() -> None:
    with pytest.raises(InvalidRecord) as caught:
        signed_listing(description="€" * 3000)

    assert str(MAX_RECORD_BYTES) in caught.value.reason


def test_a_record_created_more_than_ten_minutes_ahead_fails_on_ts() -> None:
    ahead = NOW + CLOCK_SKEW + 1

    error = _rejects(listing_fields(ts=ahead, exp=ahead + DAY))

    assert error.field == "listing.ts"
    assert "clock" in error.reason


def test_a_record_created_exactly_ten_minutes_ahead_is_accepted() -> None:
    ahead = NOW + CLOCK_SKEW
    fields = listing_fields(ts=ahead, exp=ahead + DAY)

    assert isinstance(records.validate(raw_record(fields), NOW), Listing)


def test_a_record_from_before_2020_fails_on_ts() -> None:
    error = _rejects(listing_fields(ts=EARLIEST - 1, exp=NOW + DAY), now=NOW)

    assert error.field == "listing.ts"


def test_expiry_more_than_90_days_after_creation_fails_on_exp() -> None:
    error = _rejects(listing_fields(ts=NOW, exp=NOW + MAX_LIFETIME + 1))

    assert error.field == "listing.exp"


def test_expiry_exactly_90_days_after_creation_is_accepted() -> None:
    fields = listing_fields(ts=NOW, exp=NOW + MAX_LIFETIME)

    assert isinstance(records.validate(raw_record(fields), NOW), Listing)


def test_an_expiry_not_after_creation_fails_on_exp() -> None:
    error = _rejects(listing_fields(ts=NOW - 10, exp=NOW - 10))

    assert error.field == "listing.exp"


def test_an_expired_record_fails_on_exp() -> None:
    fields = listing_fields(ts=NOW - 2 * DAY, exp=NOW)

    error = _rejects(fields)

    assert error.field == "listing.exp"
    assert "expired" in error.reason
    # One second earlier the same bytes were valid.
    assert isinstance(records.validate(raw_record(fields), NOW - 1), Listing)


def test_an_unknown_field_is_named_in_the_error() -> None:
    error = _rejects({**listing_fields(), "color": "red"})

    assert error.field == "listing.color"
    assert "not a known field" in error.reason


def test_a_missing_field_is_named_in_the_error() -> None:
    fields = listing_fields()
    del fields["title"]

    assert _rejects(fields).field == "listing.title"


@pytest.mark.parametrize("type_tag", ["offer", "", 1, None])
def test_an_unknown_type_tag_fails_on_type(type_tag: Any) -> None:
    data = pack({**listing_fields(type=type_tag), "sig": b"\x00" * 64})

    with pytest.raises(InvalidRecord) as caught:
        records.validate(data, NOW)

    assert caught.value.field == "type"


def test_a_listing_labelled_as_a_tombstone_is_invalid() -> None:
    with pytest.raises(InvalidRecord) as caught:
        records.validate(raw_record(listing_fields(type="tombstone"), domain="listing"), NOW)

    assert caught.value.field is not None
    assert caught.value.field.startswith("tombstone.")


def test_an_unsupported_format_version_fails_on_v() -> None:
    assert _rejects(listing_fields(v=2)).field == "listing.v"


@pytest.mark.parametrize(
    "doc",
    [b"", b"\xc1", pack([1, 2, 3]), pack("listing"), pack({1: "x"}), b"\xa2\xff\xfe"],
    ids=["empty", "reserved byte", "array", "string", "int key", "bad utf-8"],
)
def test_bytes_that_are_not_a_record_map_are_invalid_record(doc: bytes) -> None:
    with pytest.raises(InvalidRecord):
        records.validate(doc, NOW)


# -- canonical encoding ----------------------------------------------------------


def test_the_same_fields_with_keys_in_another_order_are_refused() -> None:
    listing = signed_listing()
    doc = msgpack.unpackb(records.encode(listing), raw=False)
    reordered = pack(dict(reversed(list(doc.items()))))
    # Same content, same (valid) signature: only the byte form differs.
    assert msgpack.unpackb(reordered, raw=False) == doc

    with pytest.raises(InvalidRecord) as caught:
        records.validate(reordered, NOW)

    assert "canonical" in caught.value.reason


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, f"{old!r} must occur exactly once"
    return data.replace(old, new)


def test_an_integer_in_a_wider_format_than_needed_is_refused() -> None:
    listing = signed_listing(seq=1)
    encoded = records.encode(listing)
    # "seq" → 1 as a positive fixint, rewritten as a uint64 (0xcf + 8 bytes).
    wider = _replace_once(encoded, b"\xa3seq\x01", b"\xa3seq\xcf" + (1).to_bytes(8, "big"))
    assert msgpack.unpackb(wider, raw=False) == msgpack.unpackb(encoded, raw=False)

    with pytest.raises(InvalidRecord) as caught:
        records.validate(wider, NOW)

    assert "canonical" in caught.value.reason


def test_a_short_string_in_a_long_string_format_is_refused() -> None:
    listing = signed_listing(kind="sell")
    encoded = records.encode(listing)
    # "sell" as str8 (0xd9 len) instead of fixstr (0xa4).
    wider = _replace_once(encoded, b"\xa4sell", b"\xd9\x04sell")

    with pytest.raises(InvalidRecord) as caught:
        records.validate(wider, NOW)

    assert "canonical" in caught.value.reason


def test_trailing_bytes_after_the_record_are_refused() -> None:
    with pytest.raises(InvalidRecord):
        records.validate(records.encode(signed_listing()) + b"\x00", NOW)


# -- signatures ------------------------------------------------------------------


def test_a_signature_by_another_key_fails_on_sig() -> None:
    # SELLER's public key, OTHER's signature.
    data = raw_record(listing_fields(), OTHER)

    with pytest.raises(InvalidRecord) as caught:
        records.validate(data, NOW)

    assert caught.value.field == "sig"


def test_decode_checks_every_rule_but_the_signature() -> None:
    data = raw_record(listing_fields(), OTHER)

    assert isinstance(records.decode(data, NOW), Listing)


def test_a_listing_signature_cannot_be_replayed_as_a_tombstone() -> None:
    # Sign the tombstone's exact field bytes, but under the listing domain: only
    # the domain prefix tells the two apart.
    listing = signed_listing()
    tombstone_fields = Tombstone(
        seller=listing.seller,
        nonce=listing.nonce,
        seq=listing.seq + 1,
        created=NOW,
        expires=listing.expires,
    ).fields()
    replayed = raw_record(tombstone_fields, SELLER, domain="listing")

    with pytest.raises(InvalidRecord) as caught:
        records.validate(replayed, NOW)

    assert caught.value.field == "sig"
    # The same fields signed under their own domain are fine.
    assert isinstance(records.validate(raw_record(tombstone_fields, SELLER), NOW), Tombstone)


def test_every_record_type_has_its_own_signing_domain() -> None:
    domains = list(records.DOMAIN.values())

    assert len(set(domains)) == len(domains)
    # No domain is a prefix of another, so no message is valid under two of them.
    assert not any(a != b and b.startswith(a) for a in domains for b in domains)


# -- ids -------------------------------------------------------------------------


def test_a_listing_id_is_bound_to_its_seller() -> None:
    nonce = b"\x07" * 16
    mine = draft_listing(SELLER, nonce=nonce)
    theirs = draft_listing(OTHER, nonce=nonce)

    assert mine.id != theirs.id
    assert mine.id == records.listing_id(SELLER.public_key, nonce)


def test_a_tombstone_has_the_id_of_the_listing_it_withdraws() -> None:
    listing = signed_listing()

    assert signed_tombstone(listing).id == listing.id


def test_a_new_version_keeps_the_listing_id() -> None:
    listing = signed_listing(seq=1)
    newer = signed_listing(nonce=listing.nonce, seq=2, title="Sepeda lipat murah")

    assert newer.id == listing.id


@given(raw=st.binary(min_size=16, max_size=16))
def test_format_id_and_parse_id_round_trip(raw: bytes) -> None:
    text = records.format_id(raw)

    assert len(text) == 26
    assert records.parse_id(text) == raw
    assert records.parse_id(f"  {text.upper()} ") == raw


@pytest.mark.parametrize("text", ["", "abc", "0" * 26, "a" * 27, "not an id at all!!"])
def test_text_that_is_not_a_listing_id_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        records.parse_id(text)


# -- tombstones and profiles: their own rules ---------------------------------------


def test_a_tombstone_with_an_unknown_field_is_invalid() -> None:
    fields = {**signed_tombstone(signed_listing()).fields(), "title": "x"}

    with pytest.raises(InvalidRecord) as caught:
        records.validate(raw_record(fields), NOW)

    assert caught.value.field == "tombstone.title"


def test_an_expired_tombstone_fails_on_exp() -> None:
    tombstone = signed_tombstone(signed_listing())

    with pytest.raises(InvalidRecord) as caught:
        records.validate(records.encode(tombstone), tombstone.expires)

    assert caught.value.field == "tombstone.exp"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "x" * (records.MAX_NAME + 1)),
        ("name", " "),
        ("bio", "x" * (records.MAX_BIO + 1)),
        ("contacts", [f"c{i}" for i in range(records.MAX_CONTACTS + 1)]),
        ("contacts", ["x" * (records.MAX_CONTACT + 1)]),
        ("loc", "x" * (records.MAX_LOCATION + 1)),
        ("owner", b"\x00" * 33),
    ],
)
def test_a_profile_field_past_its_cap_fails_on_that_field(field: str, value: Any) -> None:
    fields = {**signed_profile().fields(), field: value}

    with pytest.raises(InvalidRecord) as caught:
        records.validate(raw_record(fields), NOW)

    assert caught.value.field == f"profile.{field}"


def test_a_profile_does_not_expire() -> None:
    profile = signed_profile(created=NOW - 5 * 365 * DAY)

    assert records.validate(records.encode(profile), NOW) == profile


@pytest.mark.parametrize(
    "text",
    ["Sepeda\x9b[2J", "Sepeda \u202egnirps", "Sepeda \u2066x\u2069"],
    ids=["C1 CSI", "bidi override", "bidi isolate"],
)
def test_text_that_can_take_over_a_terminal_or_reorder_itself_is_invalid(text: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        signed_listing(title=text)
    assert caught.value.field == "listing.title"


def test_a_record_over_the_size_limit_names_the_field_to_shorten() -> None:
    with pytest.raises(InvalidRecord) as caught:
        signed_listing(description="ก" * 4000)  # Thai: 3 bytes a character
    assert caught.value.field == "listing.desc"
    assert "8192" in str(caught.value)


def test_a_number_too_large_to_encode_is_invalid_record() -> None:
    with pytest.raises(InvalidRecord):
        signed_listing(quantity=10**20)


@settings(max_examples=50, deadline=None)
@given(title=st.text(min_size=1, max_size=40).filter(str.strip), seq=st.integers(1, 2**40))
def test_loading_a_stored_record_gives_back_the_record_that_was_stored(
    title: str, seq: int
) -> None:
    assume(not records._CONTROL_ONE_LINE.search(title))
    listing = signed_listing(title=title, seq=seq, tags=("a", "b"), images=(b"\x01" * 32,))
    tombstone = records.sign(
        records.Tombstone(listing.seller, listing.nonce, seq + 1, NOW, NOW + 60), SELLER.sign
    )
    for record in (listing, tombstone):
        loaded = records.load_trusted(records.encode(record))
        assert loaded == record
        assert loaded.encoded == records.encode(record)
