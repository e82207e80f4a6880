"""Search normalisation: the one definition of a token, shared by index and query.

A token is a run of letters and digits (and the combining marks attached to
them) after NFKD, with Latin/Greek/Cyrillic combining accents removed and case
folded: "Sépéda" → "sepeda". Only those diacritic blocks are stripped: in scripts
such as Devanagari or Thai the marks are vowels, part of the word ("काल" and "किल"
are different words), so they stay inside the token.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_TOKEN_CHARS: Final = 32

# Never valid in text from others: C0 controls other than tab and newline, DEL,
# C1 controls (U+009B is a terminal's CSI), and the bidi overrides and isolates
# that can make text display differently from what it says.
_UNSAFE: Final = "\x7f-\x9f\u202a-\u202e\u2066-\u2069"
CONTROL: Final = re.compile(f"[\\x00-\\x08\\x0b-\\x1f{_UNSAFE}]")
CONTROL_ONE_LINE: Final = re.compile(f"[\\x00-\\x1f{_UNSAFE}]")

_ASCII_WORD: Final = re.compile(r"[a-z0-9]+")
_ACCENTS: Final = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def normalise(text: str) -> str:
    """Fold case and strip accents; ASCII text skips the Unicode tables."""
    if text.isascii():
        return text.lower()
    return _ACCENTS.sub("", unicodedata.normalize("NFKD", text)).casefold()


def _unicode_words(text: str) -> list[str]:
    # Python's regex \w has no class for combining marks, so non-ASCII text is
    # split by hand: a word starts at a letter or digit and goes on through
    # letters, digits and marks.
    words: list[str] = []
    start = -1
    for i, ch in enumerate(text):
        if ch.isalnum() or (start >= 0 and unicodedata.category(ch)[0] == "M"):
            if start < 0:
                start = i
        elif start >= 0:
            words.append(text[start:i])
            start = -1
    if start >= 0:
        words.append(text[start:])
    return words


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` in order, each cut to MAX_TOKEN_CHARS."""
    folded = normalise(text)
    words = _ASCII_WORD.findall(folded) if folded.isascii() else _unicode_words(folded)
    return [w[:MAX_TOKEN_CHARS] for w in words]
