"""Amounts as people write them, and as paychan shows them: ``0.5ether``, ``20 gwei``, ``2500`` (wei).

The rule ``parse_amount`` follows, exactly (integer arithmetic only, never floats):

- An amount is a non-negative decimal number (``2500``, ``0.5``, ``.5``, ``1e15``, ``1.5E-3``), optionally
  followed, with or without spaces, by a unit (case-insensitive).
- ETH amounts (``decimals=18``, the default): the units are ``ether``/``eth`` (10**18 wei), ``gwei``
  (10**9 wei) and ``wei``. A number without a unit counts wei, so it must be a whole number, written plainly
  (``2500``) or in scientific notation that comes to whole wei (``1e15``, ``2.5e3``; ``1e-3`` is refused). A
  plain decimal without a unit (``1.5``, even ``1.0``) is refused: it reads like ether, so write ``1.5ether``.
  A number with a unit may have a fraction as long as it comes to a whole number of wei: ``0.5gwei`` is
  500000000 wei, ``1.5wei`` is refused.
- Token amounts (``decimals`` of the token, ``whole_units=True``): a number without a unit counts whole
  tokens, with up to ``decimals`` fraction digits: ``parse_amount("1.5", decimals=6, whole_units=True)`` is
  1500000 base units. The token's ``symbol``, if given, may follow the number (``1.5 USDC``). ETH's unit
  names are refused for a token.
- ``whole_units=True`` with ``decimals=18`` reads a bare number as ether.
- Refused, each with ``InvalidAmountText`` and one plain sentence: negative amounts, zero when
  ``allow_zero=False``, more fraction digits than the unit allows, more than 2**256 - 1 base units, and
  anything that is not a number (with a unit).

``format_amount`` is exact and its output parses back to the same amount: ``4700`` wei is
``0.0000000000000047 ETH``, ``10**18`` wei is ``1 ETH``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from paychan.exceptions import InvalidAmountText

ETH_DECIMALS = 18
ETH_UNITS: dict[str, int] = {"ether": 18, "eth": 18, "gwei": 9, "wei": 0}
MAX_AMOUNT = 2**256 - 1
_MAX_TEXT = 200  # longer text is refused before any arithmetic
_MAX_EXPONENT = 100  # 10**100 base units is far beyond 2**256 already
_AMOUNT = re.compile(r"(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?:e(?P<exp>[+-]?[0-9]+))?\s*(?P<unit>[a-z]*)")


def parse_amount(
    text: str,
    decimals: int = ETH_DECIMALS,
    *,
    whole_units: bool = False,
    symbol: str | None = None,
    allow_zero: bool = True,
) -> int:
    """The amount ``text`` names, in base units (wei for ETH); see the module docstring for the rule."""
    units = _units(decimals, symbol)
    cleaned = text.strip().lower()
    if cleaned.startswith("-"):
        raise InvalidAmountText(text, "amounts cannot be negative")
    match = _AMOUNT.fullmatch(cleaned) if len(cleaned) <= _MAX_TEXT else None
    if match is None or not (match["int"] or match["frac"]):
        raise InvalidAmountText(text, _expected(decimals, whole_units, symbol))
    unit = match["unit"]
    if unit and unit not in units:
        raise InvalidAmountText(text, _unknown_unit(unit, decimals, symbol))
    if unit:
        scale = units[unit]
    elif whole_units:
        scale = decimals
    elif match["frac"] is not None and match["exp"] is None:
        raise InvalidAmountText(text, _bare_fraction(decimals))
    else:
        scale = 0
    amount = _scaled(text, match["int"] + (match["frac"] or ""), len(match["frac"] or ""), match["exp"], scale)
    if amount is None:
        bare = not unit and not whole_units
        raise InvalidAmountText(text, _bare_fraction(decimals) if bare else _too_precise(unit, scale, decimals))
    if amount > MAX_AMOUNT:
        raise InvalidAmountText(text, "more than the largest amount a channel holds (2**256 - 1 base units)")
    if amount == 0 and not allow_zero:
        raise InvalidAmountText(text, "the amount must be more than zero")
    return amount


def _units(decimals: int, symbol: str | None) -> dict[str, int]:
    if decimals < 0:
        raise ValueError(f"decimals must be 0 or more, not {decimals}")
    units = dict(ETH_UNITS) if decimals == ETH_DECIMALS else {}
    if symbol:
        units[symbol.lower()] = decimals
    return units


def _scaled(text: str, digits: str, fraction_digits: int, exponent: str | None, scale: int) -> int | None:
    """``digits`` (with ``fraction_digits`` of them after the point) times 10**(exponent + scale), or
    ``None`` if that is not a whole number."""
    mantissa = int(digits)
    if mantissa == 0:
        return 0
    shift = (int(exponent) if exponent else 0) + scale - fraction_digits
    if shift > _MAX_EXPONENT:
        raise InvalidAmountText(text, "more than the largest amount a channel holds (2**256 - 1 base units)")
    if shift >= 0:
        factor: int = 10**shift
        return mantissa * factor
    if shift < -_MAX_EXPONENT:
        return None
    divisor: int = 10**-shift
    whole, rest = divmod(mantissa, divisor)
    return None if rest else whole


def _expected(decimals: int, whole_units: bool, symbol: str | None) -> str:
    if decimals != ETH_DECIMALS:
        name = f"{symbol} tokens" if symbol else "whole tokens"
        return f"expected a number of {name} (up to {decimals} decimals), e.g. 1.5"
    if whole_units:
        return "expected a number of ether or a number with a unit (ether, gwei, wei), e.g. 0.5"
    return "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"


def _unknown_unit(unit: str, decimals: int, symbol: str | None) -> str:
    if decimals != ETH_DECIMALS:
        if unit in ETH_UNITS:
            return f"'{unit}' names an ETH amount; give a number of whole tokens, e.g. 1.5"
        return f"unknown unit '{unit}'" + (f": use {symbol} or none" if symbol else ": give a number of whole tokens")
    return f"unknown unit '{unit}': use ether, gwei or wei"


def _bare_fraction(decimals: int) -> str:
    if decimals != ETH_DECIMALS:
        return "a number without a unit counts base units of the token, which are whole"
    return "a number without a unit counts wei, which are whole; add a unit (e.g. 1.5ether) or give whole wei"


def _too_precise(unit: str, scale: int, decimals: int) -> str:
    if unit == "wei" or scale == 0:
        return "wei are whole" if decimals == ETH_DECIMALS else "base units are whole"
    if unit in ETH_UNITS:
        return f"{unit} allows at most {scale} decimals"
    return f"this token allows at most {scale} decimals"


def format_amount(wei: int, decimals: int = ETH_DECIMALS, symbol: str = "ETH") -> str:
    """``wei`` base units in whole units of the asset, exactly: ``4700`` is ``0.0000000000000047 ETH``."""
    if decimals < 0:
        raise ValueError(f"decimals must be 0 or more, not {decimals}")
    sign = "-" if wei < 0 else ""
    whole, fraction = divmod(abs(wei), 10**decimals)
    text = f"{whole}.{fraction:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(whole)
    return f"{sign}{text} {symbol}" if symbol else f"{sign}{text}"


def amount_type(
    decimals: int = ETH_DECIMALS, *, whole_units: bool = False, symbol: str | None = None, allow_zero: bool = True
) -> Callable[[str], int]:
    """An ``argparse`` ``type=``: parses an option's text with ``parse_amount`` (same arguments), so a bad
    amount is one usage error line naming the option."""

    def amount(text: str) -> int:
        try:
            return parse_amount(text, decimals, whole_units=whole_units, symbol=symbol, allow_zero=allow_zero)
        except InvalidAmountText as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    amount.__name__ = "amount"
    return amount
