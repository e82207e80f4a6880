"""What the CLI checks in what a user typed, and how it names it back.

* Text options and arguments must be UTF-8: on Linux an argument is bytes, which
  Python hands over with undecodable bytes as surrogates that no encoder (msgpack,
  the store, the terminal) accepts. They are refused naming the option, with the
  bytes shown as typed (``Bad\\xff\\xfe``). Paths are left alone: a file name in
  another encoding is still a file name.
* A listing id must be one that :func:`records.format_id` would print: base32 has
  several spellings of the same bytes in its last letter, and an id the user
  typed must come back unchanged in any message about it.
* Record errors name record fields (``listing.cat``); the CLI user typed an
  option (``--category``), so the message names that.
"""

from __future__ import annotations

import os
from typing import Final

from p2pmarket.errors import InvalidInput, InvalidRecord, P2PMarketError

__all__ = ["FIELD_OPTIONS", "check_listing_id", "check_text", "message_for"]

# Record fields a CLI option sets -> that option.
FIELD_OPTIONS: Final = {
    "listing.title": "--title",
    "listing.desc": "--description",
    "listing.price": "--price",
    "listing.cur": "--currency",
    "listing.cat": "--category",
    "listing.kind": "--kind",
    "listing.qty": "--quantity",
    "listing.tags": "--tag",
    "listing.loc": "--location",
    "listing.exp": "--expires-days",
    "profile.name": "--name",
    "profile.bio": "--bio",
    "profile.contacts": "--contact",
    "profile.loc": "--location",
    "review.stars": "--stars",
    "review.text": "--text",
}


def shown(text: str) -> str:
    """``text`` as typed, undecodable bytes written ``\\xff``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _decodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(option: str, value: object) -> None:
    """Refuse a text value (or list of them) that is not UTF-8, naming ``option``."""
    values = value if isinstance(value, list | tuple) else [value]
    for item in values:
        if isinstance(item, str) and not _decodable(item):
            raise InvalidInput(
                f"{option} is not valid UTF-8 text: '{shown(item)}'; "
                "check your terminal's encoding (it should be UTF-8)"
            )


def check_listing_id(text: str) -> str:
    """``text`` if it is a listing id in its one printed form; else InvalidInput
    quoting it as typed."""
    from p2pmarket.records import format_id, parse_id

    check_text("the listing id", text)
    if format_id(parse_id(text)) != text.strip().lower():
        raise InvalidInput(
            f"{text!r} is not a listing id (26 letters and digits, e.g. from `search`)"
        )
    return text


def message_for(exc: P2PMarketError) -> str:
    """The one line the CLI prints for ``exc``: a record field the user set through
    an option is named by that option."""
    if isinstance(exc, InvalidRecord) and exc.field in FIELD_OPTIONS:
        return f"{FIELD_OPTIONS[exc.field]}: {exc.reason}"
    return str(exc)
