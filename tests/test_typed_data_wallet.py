"""The wallet-safe typed data: plain JSON a JavaScript wallet reads exactly (integers as decimal strings,
bytes as hex), hashing and signing to the very digest and signature of ``message_digest``/``sign_message``,
for each of the three typed messages: ``State`` (with its locked totals, withdrawal counter and locks root),
``Revocation`` and ``Withdrawal``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from paychan.signing import Domain, message_digest, sign_message, sign_state, state_digest, typed_data
from paychan.state import ChannelState, Revocation, Signature, Withdrawal

MAX_SAFE_INTEGER = 2**53  # JavaScript's Number.MAX_SAFE_INTEGER + 1
KEY = bytes.fromhex("11" * 32)
uint256 = st.integers(0, 2**256 - 1)
large = st.integers(MAX_SAFE_INTEGER + 1, 2**256 - 1)
bytes32 = st.binary(min_size=32, max_size=32)

states = st.builds(
    ChannelState,
    channel_id=bytes32,
    nonce=st.integers(0, 2**48 - 1),
    balance_a=uint256,
    balance_b=uint256,
    is_final=st.booleans(),
    deposit_a=uint256,
    deposit_b=uint256,
    locks_root=bytes32,
    locked_a=uint256,
    locked_b=uint256,
    withdrawals=st.integers(0, 2**16 - 1),
)
revocations = st.builds(Revocation, channel_id=bytes32, below_nonce=st.integers(0, 2**48 - 1))
withdrawals = st.builds(
    Withdrawal,
    channel_id=bytes32,
    amount_a=uint256,
    amount_b=uint256,
    deposit_a=uint256,
    deposit_b=uint256,
    withdrawals=st.integers(0, 2**16 - 1),
    expiry=st.integers(0, 2**40 - 1),
)
messages = st.one_of(states, revocations, withdrawals)
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


@settings(max_examples=60, deadline=None)
@given(message=messages, domain=domains)
def test_the_wallet_safe_form_hashes_to_the_message_digest_after_a_json_round_trip(
    message: Any, domain: Domain
) -> None:
    signable = encode_typed_data(full_message=through_json(typed_data(domain, message, wallet_safe=True)))
    assert _hash_eip191_message(signable) == message_digest(domain, message)


@settings(max_examples=30, deadline=None)
@given(message=messages, domain=domains)
def test_eth_account_signs_the_default_form_to_the_signature_of_sign_message(message: Any, domain: Domain) -> None:
    signed = Account.sign_typed_data(KEY, full_message=typed_data(domain, message))
    assert bytes(signed.message_hash) == message_digest(domain, message)
    assert Signature.from_vrs(signed.v, signed.r, signed.s) == sign_message(domain, message, KEY)


@settings(max_examples=20, deadline=None)
@given(state=states, balance_a=large, locked_b=large, deposit_b=large)
def test_balances_above_2_53_sign_to_the_same_signature_as_sign_state(
    state: ChannelState, balance_a: int, locked_b: int, deposit_b: int
) -> None:
    domain = Domain(31337, "0x" + "ab" * 20)
    state = replace(state, balance_a=balance_a, locked_b=locked_b, deposit_b=deposit_b)
    signed = Account.sign_typed_data(KEY, full_message=through_json(typed_data(domain, state, wallet_safe=True)))
    assert bytes(signed.message_hash) == state_digest(domain, state)
    assert Signature.from_vrs(signed.v, signed.r, signed.s) == sign_state(domain, state, KEY)


@settings(max_examples=20, deadline=None)
@given(withdrawal=withdrawals, amount_a=large, deposit_b=large)
def test_withdrawal_amounts_above_2_53_sign_to_the_same_signature_as_sign_message(
    withdrawal: Withdrawal, amount_a: int, deposit_b: int
) -> None:
    domain = Domain(31337, "0x" + "ab" * 20)
    withdrawal = replace(withdrawal, amount_a=amount_a, deposit_b=deposit_b)
    signed = Account.sign_typed_data(KEY, full_message=through_json(typed_data(domain, withdrawal, wallet_safe=True)))
    assert Signature.from_vrs(signed.v, signed.r, signed.s) == sign_message(domain, withdrawal, KEY)


@settings(max_examples=60, deadline=None)
@given(message=messages, domain=domains)
def test_the_wallet_safe_form_serialises_with_no_integer_above_2_53(message: Any, domain: Domain) -> None:
    text = json.dumps(typed_data(domain, message, wallet_safe=True))
    assert [n for n in json_integers(json.loads(text)) if abs(n) > MAX_SAFE_INTEGER] == []


def test_the_wallet_safe_form_writes_integers_as_decimal_strings_and_bytes_as_hex() -> None:
    state = ChannelState(
        b"\x01" * 32,
        7,
        10**18 + 1,
        2**200,
        b"\x5a" * 32,
        False,
        deposit_a=3 * 10**18,
        deposit_b=0,
        locked_a=2**60,
        locked_b=9,
        withdrawals=65_535,
    )
    domain = Domain(131277322940537, "0x" + "cd" * 20)
    message = typed_data(domain, state, wallet_safe=True)
    assert message["domain"]["chainId"] == "131277322940537"
    assert message["primaryType"] == "State"
    assert message["message"] == {
        "channelId": "0x" + "01" * 32,
        "nonce": "7",
        "balanceA": "1000000000000000001",
        "balanceB": str(2**200),
        "lockedA": "1152921504606846976",
        "lockedB": "9",
        "depositA": "3000000000000000000",
        "depositB": "0",
        "withdrawals": "65535",
        "locksRoot": "0x" + "5a" * 32,
        "isFinal": False,
    }
    assert message["types"] == typed_data(domain, state)["types"]
    assert [f["name"] for f in message["types"]["State"]] == list(message["message"])


def test_a_wallet_safe_revocation_is_its_channel_id_in_hex_and_its_nonce_as_a_decimal_string() -> None:
    domain = Domain(131277322940537, "0x" + "cd" * 20)
    message = typed_data(domain, Revocation(b"\x03" * 32, 2**48 - 1), wallet_safe=True)
    assert message["primaryType"] == "Revocation"
    assert message["domain"]["chainId"] == "131277322940537"
    assert message["types"]["Revocation"] == [
        {"name": "channelId", "type": "bytes32"},
        {"name": "belowNonce", "type": "uint48"},
    ]
    assert message["message"] == {"channelId": "0x" + "03" * 32, "belowNonce": str(2**48 - 1)}


def test_a_wallet_safe_withdrawal_writes_every_integer_as_a_decimal_string() -> None:
    domain = Domain(5, "0x" + "cd" * 20)
    withdrawal = Withdrawal(b"\x04" * 32, 10**18 + 3, 2**116 - 1, 2 * 10**18, 2**116, 12, 2**40 - 1)
    message = typed_data(domain, withdrawal, wallet_safe=True)
    assert message["primaryType"] == "Withdrawal"
    assert [(f["name"], f["type"]) for f in message["types"]["Withdrawal"]] == [
        ("channelId", "bytes32"),
        ("amountA", "uint256"),
        ("amountB", "uint256"),
        ("depositA", "uint256"),
        ("depositB", "uint256"),
        ("withdrawals", "uint16"),
        ("expiry", "uint40"),
    ]
    assert message["message"] == {
        "channelId": "0x" + "04" * 32,
        "amountA": "1000000000000000003",
        "amountB": str(2**116 - 1),
        "depositA": "2000000000000000000",
        "depositB": str(2**116),
        "withdrawals": "12",
        "expiry": str(2**40 - 1),
    }


def test_the_default_form_is_unchanged_integers_and_bytes() -> None:
    state = ChannelState(b"\x02" * 32, 1, 5, 6, deposit_a=11, deposit_b=0)
    message = typed_data(Domain(1, "0x" + "ab" * 20), state)
    assert message["domain"]["chainId"] == 1
    assert message["message"]["balanceA"] == 5
    assert message["message"]["lockedA"] == 0
    assert message["message"]["withdrawals"] == 0
    assert message["message"]["channelId"] == b"\x02" * 32
    revocation = typed_data(Domain(1, "0x" + "ab" * 20), Revocation(b"\x02" * 32, 4))
    assert revocation["message"] == {"channelId": b"\x02" * 32, "belowNonce": 4}
