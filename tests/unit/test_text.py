"""Search normalisation: one definition of a token for the index and the query."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmarket.text import MAX_TOKEN_CHARS, normalise, tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SEPEDA", "sepeda"),
        ("Sépéda", "sepeda"),
        ("SÉPÉDA", "sepeda"),
        ("Straße", "strasse"),
        ("ﬁets", "fiets"),  # the "fi" ligature decomposes under NFKD
        ("\uff21\uff22\uff23\uff11\uff12", "abc12"),  # full-width "ABC12"
        ("Ελληνικά", "ελληνικα"),
        ("Велосипед", "велосипед"),
    ],
)
def test_normalise_folds_case_accents_and_compatibility_forms(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sepeda lipat", ["sepeda", "lipat"]),
        ("sepeda-lipat, murah!", ["sepeda", "lipat", "murah"]),
        ("vehicles/bicycles", ["vehicles", "bicycles"]),
        ("snake_case", ["snake", "case"]),
        ("(iPhone 12) 128GB", ["iphone", "12", "128gb"]),
        ("  \t\n ", []),
        ("...", []),
        ("", []),
    ],
)
def test_tokens_are_runs_of_letters_and_digits(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


@pytest.mark.parametrize(
    "word",
    [
        "自転車",  # Japanese
        "자전거",  # Korean
        "велосипед",  # Russian
        "ποδήλατο",  # Greek (its accent goes, the word stays one token)
        "دراجة",  # Arabic
        "साइकिल",  # Hindi: vowel signs are part of the word
        "จักรยาน",  # Thai: likewise
    ],
)
def test_a_word_in_a_non_latin_script_stays_one_token(word: str) -> None:
    assert tokens(f"jual {word} murah") == ["jual", normalise(word), "murah"]


def test_marks_that_belong_to_letters_are_kept_so_different_words_stay_different() -> None:
    # "kal" (काल, time) and "kil" (किल): only a vowel sign tells them apart.
    assert tokens("काल") != tokens("किल")


def test_a_token_is_cut_to_the_maximum_length() -> None:
    long_word = "a" * (MAX_TOKEN_CHARS + 10)

    assert tokens(long_word) == ["a" * MAX_TOKEN_CHARS]


@given(st.text())
def test_tokenising_is_idempotent(text: str) -> None:
    once = tokens(text)

    assert tokens(" ".join(once)) == once


@given(st.text())
def test_every_token_is_already_normalised(text: str) -> None:
    for token in tokens(text):
        assert normalise(token) == token
        assert 0 < len(token) <= MAX_TOKEN_CHARS
