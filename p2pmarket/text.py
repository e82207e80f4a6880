"""Search normalisation: the one definition of a token, shared by index and query.

A token is a run of letters and digits after NFKD, with Latin/Greek/Cyrillic
combining accents removed and case folded: "Sépéda" → "sepeda". Only those
diacritic blocks are stripped, not every combining mark, because in scripts such as
Devanagari or Thai the marks are part of the letters and stripping them would merge
different words.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_TOKEN_CHARS: Final = 32

_WORD: Final = re.compile(r"[^\W_]+")
_ACCENTS: Final = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def normalise(text: str) -> str:
    """Fold case and strip accents; ASCII text skips the Unicode tables."""
    if text.isascii():
        return text.lower()
    return _ACCENTS.sub("", unicodedata.normalize("NFKD", text)).casefold()


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` in order, each cut to MAX_TOKEN_CHARS."""
    return [t[:MAX_TOKEN_CHARS] for t in _WORD.findall(normalise(text))]
