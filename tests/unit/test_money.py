"""Prices: decimal text in, integer minor units stored, the local way of writing out."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmarket.errors import InvalidInput
from p2pmarket.money import (
    CURRENCIES,
    MAX_MINOR_UNITS,
    check_currency,
    exponent,
    format_price,
    parse_amount,
)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("150000", "IDR", 15_000_000),
        ("12.50", "USD", 1250),
        ("12.5", "USD", 1250),
        ("0.01", "USD", 1),
        ("0", "USD", 0),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("1.2345", "CLF", 12345),
        ("  12.50 ", "USD", 1250),
        ("1_000_000", "IDR", 100_000_000),
        ("12.500", "USD", 1250),  # trailing zeros are not extra precision
    ],
)
def test_an_amount_is_parsed_into_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [("12.345", "USD"), ("1.5", "JPY"), ("0.001", "IDR"), ("1.23456", "CLF")],
)
def test_more_decimals_than_the_currency_has_are_rejected(text: str, currency: str) -> None:
    with pytest.raises(InvalidInput, match="decimals"):
        parse_amount(text, currency)


@pytest.mark.parametrize("text", ["-1", "-0.01", "-150000"])
def test_a_negative_amount_is_rejected(text: str) -> None:
    with pytest.raises(InvalidInput, match="zero or more"):
        parse_amount(text, "USD")


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "12,50", "150.000,00", "1.2.3", "$12", "12 USD", "NaN", "Infinity", "1e3"],
)
def test_text_that_is_not_digits_and_one_point_is_rejected(text: str) -> None:
    # The documented rule: "only digits and one '.' are accepted".
    with pytest.raises(InvalidInput):
        parse_amount(text, "USD")


def test_an_amount_above_the_maximum_is_rejected() -> None:
    limit_in_major_units = str(Decimal(MAX_MINOR_UNITS).scaleb(-2))

    assert parse_amount(limit_in_major_units, "USD") == MAX_MINOR_UNITS
    with pytest.raises(InvalidInput, match="too large"):
        parse_amount(str(Decimal(MAX_MINOR_UNITS + 1).scaleb(-2)), "USD")


def test_the_error_for_a_non_number_says_how_to_write_one() -> None:
    with pytest.raises(InvalidInput, match=r"digits and at most one '\.'"):
        parse_amount("12,50", "USD")


@given(
    minor=st.integers(0, MAX_MINOR_UNITS),
    currency=st.sampled_from(sorted(CURRENCIES)),
)
def test_any_amount_written_in_major_units_parses_back_exactly(minor: int, currency: str) -> None:
    text = format(Decimal(minor).scaleb(-exponent(currency)), "f")

    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (15_000_000, "IDR", "Rp 150.000"),
        (15_000_050, "IDR", "Rp 150.000,50"),
        (0, "IDR", "Rp 0"),
        (1250, "USD", "$12.50"),
        (123_456_789, "USD", "$1,234,567.89"),
        (5, "USD", "$0.05"),
        (1500, "JPY", "¥1,500"),
        (123_456, "EUR", "€1.234,56"),
        (150_000, "VND", "150.000 ₫"),
        (1250, "MYR", "RM 12.50"),
        (1250, "CHF", "12.50 CHF"),
        (1500, "KWD", "1.500 KWD"),
        (1_000_000, "KRW", "1,000,000 KRW"),
    ],
)
def test_a_price_is_written_the_way_its_currency_usually_is(
    minor: int, currency: str, text: str
) -> None:
    assert format_price(minor, currency) == text


def test_rupiah_without_cents_hides_them_but_dollars_do_not() -> None:
    assert format_price(100, "IDR") == "Rp 1"
    assert format_price(100, "USD") == "$1.00"


@pytest.mark.parametrize("code", ["idr", " USD ", "Jpy"])
def test_a_currency_code_is_accepted_in_any_case(code: str) -> None:
    assert check_currency(code) == code.strip().upper()


@pytest.mark.parametrize("code", ["", "IRD", "XYZ", "US", "DOLLAR", "Rp"])
def test_an_unknown_currency_code_is_rejected(code: str) -> None:
    with pytest.raises(InvalidInput, match="ISO 4217"):
        check_currency(code)


def test_minor_unit_exponents_follow_iso_4217() -> None:
    assert (exponent("IDR"), exponent("USD"), exponent("JPY")) == (2, 2, 0)
    assert (exponent("KWD"), exponent("CLF")) == (3, 4)
