"""The wallet-safe typed data: plain JSON a JavaScript wallet reads exactly (integers as decimal strings,
bytes as hex), hashing and signing to the very digest and signature of ``state_digest``/``sign_state``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from paychan.signing import Domain, sign_state, state_digest, typed_data
from paychan.state import ChannelState, Signature

MAX_SAFE_INTEGER = 2**53  # JavaScript's Number.MAX_SAFE_INTEGER + 1
KEY = bytes.fromhex("11" * 32)
uint256 = st.integers(0, 2**256 - 1)
large = st.integers(MAX_SAFE_INTEGER + 1, 2**256 - 1)

states = st.builds(
    ChannelState,
    channel_id=st.binary(min_size=32, max_size=32),
    nonce=st.integers(0, 2**48 - 1),
    balance_a=uint256,
    balance_b=uint256,
    is_final=st.booleans(),
    deposit_a=uint256,
    deposit_b=uint256,
    locks_root=st.binary(min_size=32, max_size=32),
)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
domains = st.builds(Domain, st.integers(1, 2**256 - 1), addresses)


def json_integers(value: Any) -> list[int]:
    """Every JSON number (not bool) in ``value``, a parsed JSON document."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in json_integers(v)]
    if isinstance(value, list):
        return [n for v in value for n in json_integers(v)]
    return []


def through_json(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` as a wallet receives it: serialised and parsed again."""
    parsed: dict[str, Any] = json.loads(json.dumps(message))
    return parsed


@settings(max_examples=50, deadline=None)
@given(state=states, domain=domains)
def test_the_wallet_safe_form_hashes_to_the_state_digest_after_a_json_round_trip(
    state: ChannelState, domain: Domain
) -> None:
    signable = encode_typed_data(full_message=through_json(typed_data(domain, state, wallet_safe=True)))
    assert _hash_eip191_message(signable) == state_digest(domain, state)


@settings(max_examples=20, deadline=None)
@given(state=states, balance_a=large, deposit_b=large)
def test_balances_above_2_53_sign_to_the_same_signature_as_sign_state(
    state: ChannelState, balance_a: int, deposit_b: int
) -> None:
    domain = Domain(31337, "0x" + "ab" * 20)
    state = replace(state, balance_a=balance_a, deposit_b=deposit_b)
    signed = Account.sign_typed_data(KEY, full_message=through_json(typed_data(domain, state, wallet_safe=True)))
    assert bytes(signed.message_hash) == state_digest(domain, state)
    assert Signature.from_vrs(signed.v, signed.r, signed.s) == sign_state(domain, state, KEY)


@settings(max_examples=50, deadline=None)
@given(state=states, domain=domains)
def test_the_wallet_safe_form_serialises_with_no_integer_above_2_53(state: ChannelState, domain: Domain) -> None:
    text = json.dumps(typed_data(domain, state, wallet_safe=True))
    assert [n for n in json_integers(json.loads(text)) if abs(n) > MAX_SAFE_INTEGER] == []


def test_the_wallet_safe_form_writes_integers_as_decimal_strings_and_bytes_as_hex() -> None:
    state = ChannelState(b"\x01" * 32, 7, 10**18 + 1, 2**200, b"\x00" * 32, True, deposit_a=3 * 10**18, deposit_b=0)
    domain = Domain(131277322940537, "0x" + "cd" * 20)
    message = typed_data(domain, state, wallet_safe=True)
    assert message["domain"]["chainId"] == "131277322940537"
    assert message["message"] == {
        "channelId": "0x" + "01" * 32,
        "nonce": "7",
        "balanceA": "1000000000000000001",
        "balanceB": str(2**200),
        "depositA": "3000000000000000000",
        "depositB": "0",
        "locksRoot": "0x" + "00" * 32,
        "isFinal": True,
    }
    assert message["types"] == typed_data(domain, state)["types"]


def test_the_default_form_is_unchanged_integers_and_bytes() -> None:
    state = ChannelState(b"\x02" * 32, 1, 5, 6, deposit_a=11, deposit_b=0)
    message = typed_data(Domain(1, "0x" + "ab" * 20), state)
    assert message["domain"]["chainId"] == 1
    assert message["message"]["balanceA"] == 5
    assert message["message"]["channelId"] == b"\x02" * 32
