"""Prices: integer minor units plus an ISO 4217 code, and how people write them.

Amounts never touch floats: a price is parsed from its decimal text straight into
minor units with :class:`decimal.Decimal`, and formatted back the same way.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

from p2pmarket.errors import InvalidInput

# ISO 4217 minor-unit exponents. Codes not listed here have two decimals.
_EXPONENT_0: Final = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
)
_EXPONENT_3: Final = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_EXPONENT_4: Final = frozenset("CLF UYW".split())

# Active ISO 4217 codes (2024 list). Records with other codes are rejected, so a
# typo such as "IRD" never reaches the network.
CURRENCIES: Final = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV
    BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK
    DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL
    HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR
    MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
    TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG
    XOF XPF YER ZAR ZMW ZWG""".split()
)

# How the currencies our users meet most are written: (symbol, thousands, decimal,
# symbol-before, space). Rupiah is written "Rp 150.000" and without cents when
# there are none, as on Indonesian price tags.
_STYLES: Final[dict[str, tuple[str, str, str, bool, bool]]] = {
    "IDR": ("Rp", ".", ",", True, True),
    "USD": ("$", ",", ".", True, False),
    "EUR": ("€", ".", ",", True, False),
    "GBP": ("£", ",", ".", True, False),
    "JPY": ("¥", ",", ".", True, False),
    "SGD": ("S$", ",", ".", True, False),
    "MYR": ("RM", ",", ".", True, True),
    "AUD": ("A$", ",", ".", True, False),
    "PHP": ("₱", ",", ".", True, False),
    "THB": ("฿", ",", ".", True, False),
    "VND": ("₫", ".", ",", False, True),
    "INR": ("₹", ",", ".", True, False),
}
_DROP_ZERO_CENTS: Final = frozenset({"IDR", "VND"})

MAX_MINOR_UNITS: Final = 10**15
# A sign is let through only so that "-5" gets the "zero or more" message.
_AMOUNT: Final = re.compile(r"-?[0-9]+(\.[0-9]*)?|-?\.[0-9]+")


def exponent(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (ISO 4217 minor unit)."""
    if currency in _EXPONENT_0:
        return 0
    if currency in _EXPONENT_3:
        return 3
    if currency in _EXPONENT_4:
        return 4
    return 2


def check_currency(code: str) -> str:
    """Return ``code`` upper-cased if it is an ISO 4217 code, else raise InvalidInput."""
    upper = code.strip().upper()
    if upper not in CURRENCIES:
        raise InvalidInput(f"unknown currency {code!r}: use an ISO 4217 code such as IDR or USD")
    return upper


def parse_amount(text: str, currency: str) -> int:
    """Parse a decimal amount in major units ("150000", "12.50") into minor units.

    Separators are not guessed: "150.000" would be ambiguous between locales, so
    only digits and one ``.`` are accepted, and the error says so.
    """
    cleaned = text.strip().replace("_", "")
    try:
        # Decimal alone would also take "1e3", "+5" or non-ASCII digits.
        if not _AMOUNT.fullmatch(cleaned):
            raise InvalidOperation
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidInput(
            f"price {text!r} is not a number: "
            "write digits and at most one '.', e.g. 150000 or 12.50"
        ) from None
    if not value.is_finite() or value < 0:
        raise InvalidInput(f"price {text!r} must be zero or more")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"price {text!r} has more decimals than {currency} allows ({exponent(currency)})"
        )
    minor = int(scaled)
    if minor > MAX_MINOR_UNITS:
        raise InvalidInput(f"price {text!r} is too large")
    return minor


def format_price(minor: int, currency: str) -> str:
    """Write a price the way its currency is usually written: ``Rp 150.000``, ``$12.50``."""
    exp = exponent(currency)
    whole, frac = divmod(minor, 10**exp) if exp else (minor, 0)
    symbol, thousands, decimal, before, space = _STYLES.get(
        currency, (currency, ",", ".", False, True)
    )
    text = f"{whole:,}".replace(",", thousands)
    if exp and not (frac == 0 and currency in _DROP_ZERO_CENTS):
        text += decimal + str(frac).rjust(exp, "0")
    gap = " " if space else ""
    return f"{symbol}{gap}{text}" if before else f"{text}{gap}{symbol}"
