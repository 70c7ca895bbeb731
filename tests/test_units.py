"""Amounts as text: ``parse_amount`` reads them exactly, ``format_amount`` writes them exactly, and what one
writes the other reads back to the same number of base units."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paychan import format_amount, parse_amount
from paychan.exceptions import InvalidAmountText, PaychanError
from paychan.units import MAX_AMOUNT, amount_type

ETHER = 10**18
GWEI = 10**9


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("1ether", ETHER),
        ("1 ether", ETHER),
        ("1ETH", ETHER),
        ("  2.5 Eth ", 5 * ETHER // 2),
        ("0.5gwei", GWEI // 2),
        (".5gwei", GWEI // 2),
        ("1e15", 10**15),
        ("2.5e3", 2500),
        ("1000e-3", 1),
        ("1e-3ether", 10**15),
        ("2500wei", 2500),
        ("2500", 2500),
        ("0", 0),
        ("0.000000000000000001ether", 1),
        (str(MAX_AMOUNT), MAX_AMOUNT),
    ],
)
def test_an_eth_amount_reads_as_an_exact_number_of_wei(text: str, wei: int) -> None:
    assert parse_amount(text) == wei


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.2.3", "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"),
        ("", "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"),
        ("ether", "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"),
        ("0x10", "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"),
        ("1,5ether", "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"),
        ("nan", "expected a number of wei or a number with a unit (ether, gwei, wei), e.g. 0.5ether"),
        ("1.5", "a number without a unit counts wei, which are whole; add a unit (e.g. 1.5ether) or give whole wei"),
        ("1.0", "a number without a unit counts wei, which are whole; add a unit (e.g. 1.5ether) or give whole wei"),
        ("1e-3", "a number without a unit counts wei, which are whole; add a unit (e.g. 1.5ether) or give whole wei"),
        ("-1ether", "amounts cannot be negative"),
        ("1.5wei", "wei are whole"),
        ("0.0000000001gwei", "gwei allows at most 9 decimals"),
        ("0.0000000000000000001ether", "ether allows at most 18 decimals"),
        ("1finney", "unknown unit 'finney': use ether, gwei or wei"),
        (str(MAX_AMOUNT + 1), "more than the largest amount a channel holds (2**256 - 1 base units)"),
        ("1e999999", "more than the largest amount a channel holds (2**256 - 1 base units)"),
    ],
)
def test_a_bad_eth_amount_is_refused_with_one_plain_sentence(text: str, reason: str) -> None:
    with pytest.raises(InvalidAmountText) as raised:
        parse_amount(text)
    assert str(raised.value) == f"invalid amount '{text}': {reason}"
    assert isinstance(raised.value, PaychanError) and (raised.value.text, raised.value.reason) == (text, reason)


def test_zero_is_refused_where_the_caller_says_so() -> None:
    with pytest.raises(InvalidAmountText, match="^invalid amount '0ether': the amount must be more than zero$"):
        parse_amount("0ether", allow_zero=False)
    assert parse_amount("1", allow_zero=False) == 1


def test_a_token_amount_without_a_unit_counts_whole_tokens_when_asked() -> None:
    assert parse_amount("1.5", decimals=6, whole_units=True) == 1_500_000
    assert parse_amount("1.5 USDC", decimals=6, whole_units=True, symbol="USDC") == 1_500_000
    assert parse_amount("1500000", decimals=6) == 1_500_000  # without whole_units: base units
    assert parse_amount("2", decimals=18, whole_units=True) == 2 * ETHER


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.1234567", "this token allows at most 6 decimals"),
        ("1ether", "'ether' names an ETH amount; give a number of whole tokens, e.g. 1.5"),
        ("1 DAI", "unknown unit 'dai': use USDC or none"),
        ("1..5", "expected a number of USDC tokens (up to 6 decimals), e.g. 1.5"),
    ],
)
def test_a_bad_token_amount_is_refused_with_one_plain_sentence(text: str, reason: str) -> None:
    with pytest.raises(InvalidAmountText) as raised:
        parse_amount(text, decimals=6, whole_units=True, symbol="USDC")
    assert str(raised.value) == f"invalid amount '{text}': {reason}"


@pytest.mark.parametrize(
    ("wei", "decimals", "symbol", "text"),
    [
        (4700, 18, "ETH", "0.0000000000000047 ETH"),
        (ETHER, 18, "ETH", "1 ETH"),
        (0, 18, "ETH", "0 ETH"),
        (ETHER + 1, 18, "ETH", "1.000000000000000001 ETH"),
        (1_500_000, 6, "USDC", "1.5 USDC"),
        (7, 0, "PTS", "7 PTS"),
        (ETHER, 18, "", "1"),
    ],
)
def test_an_amount_formats_exactly_in_whole_units(wei: int, decimals: int, symbol: str, text: str) -> None:
    assert format_amount(wei, decimals, symbol) == text


@given(st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_a_formatted_eth_amount_parses_back_to_the_same_wei(wei: int) -> None:
    assert parse_amount(format_amount(wei)) == wei


@given(st.integers(min_value=0, max_value=MAX_AMOUNT), st.integers(min_value=0, max_value=30))
def test_a_formatted_token_amount_parses_back_to_the_same_base_units(amount: int, decimals: int) -> None:
    text = format_amount(amount, decimals, "TOK")
    assert parse_amount(text, decimals, whole_units=True, symbol="TOK") == amount
    assert parse_amount(text.removesuffix(" TOK"), decimals, whole_units=True) == amount


@given(st.integers(min_value=0, max_value=MAX_AMOUNT), st.sampled_from(["ether", "gwei", "wei"]))
def test_an_amount_in_any_eth_unit_reads_as_the_same_wei(wei: int, unit: str) -> None:
    scale = {"ether": 18, "gwei": 9, "wei": 0}[unit]
    whole, fraction = divmod(wei, 10**scale)
    text = f"{whole}.{fraction:0{scale}d}{unit}" if scale else f"{whole}{unit}"
    assert parse_amount(text) == wei


@given(st.text(max_size=40))
def test_any_text_either_parses_or_raises_invalid_amount_text(text: str) -> None:
    try:
        wei = parse_amount(text)
    except InvalidAmountText as exc:
        assert str(exc).startswith(f"invalid amount '{text}': ")
    else:
        assert 0 <= wei <= MAX_AMOUNT


def test_an_option_typed_as_an_amount_reads_units_and_refuses_bad_text_as_one_usage_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="paychan pay")
    parser.add_argument("amount", type=amount_type(allow_zero=False))
    assert parser.parse_args(["0.5gwei"]).amount == GWEI // 2
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["1.5"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "paychan pay: error: argument amount: invalid amount '1.5': a number without a unit counts wei, which are "
        "whole; add a unit (e.g. 1.5ether) or give whole wei"
    )
