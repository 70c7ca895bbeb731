"""The wire format: signed states survive encoding exactly, and anything else is refused as malformed.
Also the ``Channel.before_sign`` hook the store relies on."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paychan.channel import Channel
from paychan.exceptions import MalformedMessage
from paychan.node.messages import (
    MAX_STATES_PER_MESSAGE,
    AddLock,
    ExpireLock,
    Propose,
    SettleLock,
    SignedRevocation,
    decode_json,
    error_body,
    parse_propose,
)
from paychan.signing import sign_state
from paychan.state import MAX_NONCE, MAX_UINT256, ChannelState, Lock, Nonce, SignedState, Wei

from .conftest import CID, DEPOSIT_A, DOMAIN, KEY_A, KEY_B, PARAMS, make_state

SIG = sign_state(DOMAIN, make_state(1, 1, 1), KEY_A)


@given(
    nonce=st.integers(0, MAX_NONCE),
    balance_a=st.integers(0, MAX_UINT256),
    balance_b=st.integers(0, MAX_UINT256),
    root=st.binary(min_size=32, max_size=32),
    final=st.booleans(),
    epoch=st.integers(0, 2**62),
    with_b=st.booleans(),
    locked=st.tuples(st.integers(0, MAX_UINT256), st.integers(0, MAX_UINT256)),
    withdrawals=st.integers(0, 0xFFFF),
    revoked=st.none() | st.integers(0, MAX_NONCE),
)
def test_a_proposal_decodes_to_exactly_what_was_encoded(
    nonce: int,
    balance_a: int,
    balance_b: int,
    root: bytes,
    final: bool,
    epoch: int,
    with_b: bool,
    locked: tuple[int, int],
    withdrawals: int,
    revoked: int | None,
) -> None:
    extra = {
        "deposit_a": Wei(balance_b),  # any uint256, round-tripped
        "deposit_b": Wei(balance_a),
        "locked_a": Wei(locked[0]),
        "locked_b": Wei(locked[1]),
        "withdrawals": withdrawals,
    }
    state = ChannelState(CID, Nonce(nonce), Wei(balance_a), Wei(balance_b), root, final, **extra)  # type: ignore[arg-type]
    signed = SignedState(state, SIG, SIG if with_b else None)
    revocation = None if revoked is None else SignedRevocation(revoked, SIG)
    message = Propose(CID, epoch, [signed, signed], revocation)  # type: ignore[arg-type]
    assert parse_propose(json.dumps(message.to_json()).encode()) == message


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"withdrawals": 0x10000}, "withdrawals must be an integer in [0, 65535]"),
        ({"lockedA": 1}, "lockedA must be a decimal string"),
        ({"lockedB": None}, "lockedB must be a decimal string"),
    ],
)
def test_a_state_with_a_bad_v2_field_is_refused(change: dict[str, object], reason: str) -> None:
    body = Propose(CID, 0, [SignedState(make_state(1, 1, 1), SIG)]).to_json()  # type: ignore[arg-type]
    body["states"][0]["state"].update(change)
    with pytest.raises(MalformedMessage) as refused:
        parse_propose(json.dumps(body).encode())
    assert str(refused.value) == reason


def test_a_state_without_the_v2_fields_is_refused() -> None:
    body = Propose(CID, 0, [SignedState(make_state(1, 1, 1), SIG)]).to_json()  # type: ignore[arg-type]
    del body["states"][0]["state"]["withdrawals"]
    with pytest.raises(MalformedMessage) as refused:
        parse_propose(json.dumps(body).encode())
    assert str(refused.value) == "state lacks withdrawals"


@pytest.mark.parametrize(
    ("revocation", "reason"),
    [
        ({"belowNonce": 1}, "revocation lacks signature"),
        ({"belowNonce": 1, "signature": None}, "a revocation must be signed"),
        ({"belowNonce": -1, "signature": "0x" + "11" * 64}, f"belowNonce must be an integer in [0, {MAX_NONCE}]"),
        ({"belowNonce": 1, "signature": "0x11", "extra": 1}, "revocation has unknown field(s) extra"),
    ],
)
def test_a_malformed_revocation_is_refused(revocation: dict[str, object], reason: str) -> None:
    body = Propose(CID, 0, [SignedState(make_state(1, 1, 1), SIG)]).to_json()  # type: ignore[arg-type]
    body["revocation"] = revocation
    with pytest.raises(MalformedMessage) as refused:
        parse_propose(json.dumps(body).encode())
    assert str(refused.value) == reason


LOCK = Lock("A", 5, 1_900_000_000, b"\x33" * 32)


def test_lock_ops_decode_to_exactly_what_was_encoded_and_a_message_without_them_omits_ops() -> None:
    states = [SignedState(make_state(n, 1, 1), SIG) for n in (1, 2, 3, 4)]  # type: ignore[arg-type]
    ops = (AddLock(LOCK), None, SettleLock(b"\x44" * 32), ExpireLock(b"\x55" * 32))
    message = Propose(CID, 2, states, None, ops)  # type: ignore[arg-type]
    body = message.to_json()
    assert body["ops"][1] is None and body["ops"][0] == {"lock": LOCK.to_json()}
    assert parse_propose(json.dumps(body).encode()) == message
    plain = Propose(CID, 2, states, None, (None,) * 4)  # type: ignore[arg-type]
    assert "ops" not in plain.to_json()
    assert parse_propose(json.dumps(plain.to_json()).encode()).ops == ()


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([], "ops must be a list with one entry (null or an op) per state"),
        ({"lock": None}, "ops must be a list with one entry (null or an op) per state"),
        ([{"pay": "1"}], "unknown op 'pay'"),
        (
            [{"settle": "0x" + "44" * 32, "expire": "0x" + "55" * 32}],
            "an op is null or an object with one of lock, settle, expire",
        ),
        ([{"settle": "0x44"}], "secret must be 0x-prefixed hex of the right length"),
        ([{"expire": 5}], "hashlock must be 0x-prefixed hex of the right length"),
        ([{"lock": {**LOCK.to_json(), "extra": 1}}], "lock has unknown field(s) extra"),
        ([{"lock": {**LOCK.to_json(), "sender": "C"}}], "a lock's sender is 'A' or 'B'"),
        ([{"lock": {**LOCK.to_json(), "amount": 5}}], "amount must be a decimal string"),
        ([{"lock": {**LOCK.to_json(), "expiry": 2**40}}], f"expiry must be an integer in [0, {2**40 - 1}]"),
        ([{"lock": {**LOCK.to_json(), "hashlock": "0x33"}}], "hashlock must be 0x-prefixed hex of the right length"),
    ],
)
def test_a_malformed_lock_op_is_refused(ops: object, reason: str) -> None:
    body = Propose(CID, 0, [SignedState(make_state(1, 1, 1), SIG)]).to_json()  # type: ignore[arg-type]
    body["ops"] = ops
    with pytest.raises(MalformedMessage) as refused:
        parse_propose(json.dumps(body).encode())
    assert str(refused.value) == reason


def test_too_many_states_in_one_message_are_refused() -> None:
    signed = SignedState(make_state(1, 1, 1), SIG)
    body = json.dumps(Propose(CID, 0, [signed] * (MAX_STATES_PER_MESSAGE + 1)).to_json()).encode()  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage, match="1 to 1024 signed states"):
        parse_propose(body)


@pytest.mark.parametrize("body", [b"NaN", b'{"a": Infinity}', b'{"a": 1e5}', b"", b"\x00"])
def test_non_json_and_non_integer_numbers_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_json(body)


def test_an_error_answer_names_the_exception_and_its_fields() -> None:
    from paychan.exceptions import InvalidSignature, UnexpectedNonce

    assert error_body(UnexpectedNonce(4, 3)) == {
        "error": {
            "type": "UnexpectedNonce",
            "message": "UnexpectedNonce(received=4, expected=3)",
            "fields": {"received": 4, "expected": 3},
        }
    }
    body = error_body(InvalidSignature(expected="0x01", recovered="0x02"))
    assert body["error"]["fields"] == {"expected": "0x01", "recovered": "0x02"}


def test_before_sign_sees_the_state_before_the_signature_exists_and_can_refuse_it() -> None:
    payer = Channel(PARAMS, DOMAIN, KEY_A, deposits=(DEPOSIT_A, 0))
    payee = Channel(PARAMS, DOMAIN, KEY_B, deposits=(DEPOSIT_A, 0))
    seen: list[SignedState] = []
    payer.before_sign.append(seen.append)
    proposal = payer.propose_payment(5)
    assert seen == [SignedState(proposal.state)]  # no signature yet

    def refuse(signed: SignedState) -> None:
        raise MalformedMessage("store is full")

    payee.before_sign.append(refuse)
    with pytest.raises(MalformedMessage):
        payee.receive_proposal(proposal)
    assert (payee.nonce, payee.balances(), payee.pending) == (0, (DEPOSIT_A, 0), None)
    payee.before_sign.clear()
    payee.before_sign.append(seen.append)
    signed = payee.receive_proposal(proposal)
    assert seen[-1] == proposal and signed.is_complete  # the countersigning hook sees the peer's signature
