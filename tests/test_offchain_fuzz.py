"""Fuzzing the off-chain validators: whatever a peer sends, it is refused with a named exception or accepted
because it is valid, never a crash, and a refusal leaves the channel exactly as it was.

Targets: ``Channel.receive_proposal`` and ``Channel.receive_countersignature`` (mutated signed states, random
objects, truncated or high-s signatures, wrong types, huge integers), ``signing.recover_signer`` (random
signatures), ``Signature.from_bytes`` and ``ChannelParams.from_json`` (random input), and the node's wire
parser ``paychan.node.messages`` (random and mutated JSON). Pure Python: no chain.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from paychan.channel import Channel
from paychan.exceptions import PaychanError, StateRejected
from paychan.node import messages
from paychan.signing import Domain, recover_signer, sign_state
from paychan.state import ETH, ChannelParams, ChannelState, Signature, SignedState

KEY_A = bytes.fromhex("11" * 32)
KEY_B = bytes.fromhex("22" * 32)
KEY_C = bytes.fromhex("33" * 32)
ADDRESS_A = Account.from_key(KEY_A).address
ADDRESS_B = Account.from_key(KEY_B).address
DOMAIN = Domain(chain_id=1337, verifying_contract="0x" + "ab" * 20)
PARAMS = ChannelParams(ADDRESS_A, ADDRESS_B, ETH, 3600, 7)
DEPOSITS = (10**18, 5 * 10**17)
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values of the wrong type, or of the right type but absurd: what a hostile or buggy peer could send.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**255, max_value=2**300),
    st.integers(max_value=-1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=70),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
word_sized = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=70), junk)


def fresh_pair(payments: int = 1) -> tuple[Channel, Channel]:
    a = Channel(PARAMS, DOMAIN, KEY_A, deposits=DEPOSITS)
    b = Channel(PARAMS, DOMAIN, KEY_B, deposits=DEPOSITS)
    for _ in range(payments):
        signed = b.receive_proposal(a.propose_payment(10**15))
        a.receive_countersignature(signed)
    return a, b


def view(channel: Channel) -> tuple[Any, ...]:
    """Everything a refusal must leave unchanged."""
    return (channel.latest, channel.pending, channel.balances(), channel.nonce, channel.is_final)


def mutate_signature(sig: Signature, how: str, data: st.DataObject) -> Any:
    if how == "truncate r":
        return Signature(sig.r[: data.draw(st.integers(0, 31))], sig.vs)
    if how == "truncate vs":
        return Signature(sig.r, sig.vs[: data.draw(st.integers(0, 31))])
    if how == "extend":
        return Signature(sig.r + b"\x00", sig.vs)
    if how == "high s":  # the malleable twin, and an s just above N/2
        s = data.draw(st.sampled_from([SECP256K1_N - sig.s, HALF_N + 1, 2**255 - 1]))
        return Signature(sig.r, ((s % 2**255) | (int(sig.vs[0] >> 7) << 255)).to_bytes(32, "big"))
    if how == "flip bit":
        raw = bytearray(sig.to_bytes())
        raw[data.draw(st.integers(0, 63))] ^= 1 << data.draw(st.integers(0, 7))
        return Signature(bytes(raw[:32]), bytes(raw[32:]))
    if how == "zero":
        return Signature(b"\x00" * 32, b"\x00" * 32)
    if how == "other signer":
        return None  # replaced by the caller with a third party's signature
    if how == "junk fields":
        return Signature(data.draw(word_sized), data.draw(word_sized))
    return data.draw(junk)  # not a Signature at all


STATE_FIELDS = ("channel_id", "nonce", "balance_a", "balance_b", "deposit_a", "deposit_b", "locks_root", "is_final")
SIGNATURE_MUTATIONS = (
    "truncate r",
    "truncate vs",
    "extend",
    "high s",
    "flip bit",
    "zero",
    "other signer",
    "junk fields",
    "junk",
)


def field_value(name: str, state: ChannelState, data: st.DataObject) -> Any:
    if name in ("channel_id", "locks_root"):
        return data.draw(st.one_of(word_sized, st.just(b"\x00" * 32), st.just(b"\x01" * 32)))
    if name == "is_final":
        return data.draw(st.one_of(st.booleans(), junk))
    current = getattr(state, name)
    return data.draw(
        st.one_of(
            st.integers(min_value=-2, max_value=2).map(lambda d: current + d),
            st.integers(min_value=2**256 - 2, max_value=2**256 + 2),
            st.integers(min_value=2**48 - 2, max_value=2**48 + 2),
            junk,
        )
    )


def mutate(signed: SignedState, role: str, data: st.DataObject) -> Any:
    """A mutation of ``signed`` (whose signature of ``role`` is checked): of its state, signatures or type."""
    what = data.draw(st.sampled_from(["state", "signature", "resign", "shift", "object"]))
    if what == "shift":  # balances moved between the two, total kept, properly signed by the sender
        delta = data.draw(st.integers(-(10**18), 10**18))
        state = replace(
            signed.state, balance_a=signed.state.balance_a + delta, balance_b=signed.state.balance_b - delta
        )
        try:
            fresh = sign_state(DOMAIN, state, KEY_A if role == "A" else KEY_B)
        except OverflowError:  # a negative balance has no uint256 encoding: sent with the old signature
            return replace(signed, state=state)
        return replace(signed, state=state, sig_a=fresh) if role == "A" else replace(signed, state=state, sig_b=fresh)
    if what == "object":
        return data.draw(st.one_of(junk, st.builds(SignedState, junk, junk, junk), st.just(signed.state)))
    if what == "state" or what == "resign":
        name = data.draw(st.sampled_from(STATE_FIELDS))
        state = replace(signed.state, **{name: field_value(name, signed.state, data)})
        if what == "resign":  # a state the peer really signed, but not a valid one
            try:
                fresh = sign_state(DOMAIN, state, KEY_A if role == "A" else KEY_B)
            except Exception:  # noqa: BLE001 - junk that cannot even be hashed goes with the old signature
                return replace(signed, state=state)
            return (
                replace(signed, state=state, sig_a=fresh) if role == "A" else replace(signed, state=state, sig_b=fresh)
            )
        return replace(signed, state=state)
    how = data.draw(st.sampled_from(SIGNATURE_MUTATIONS))
    original = signed.signature_of(role)
    assert original is not None
    bad = mutate_signature(original, how, data)
    if how == "other signer":
        bad = sign_state(DOMAIN, signed.state, KEY_C)
    return replace(signed, sig_a=bad) if role == "A" else replace(signed, sig_b=bad)


@FUZZ
@given(data=st.data(), payments=st.integers(0, 2))
def test_mutated_proposals_are_refused_with_a_named_error_and_change_nothing(data, payments):
    a, b = fresh_pair(payments)
    proposal = a.propose_payment(data.draw(st.integers(1, 10**17)))
    mutated = mutate(proposal, "A", data)
    before = view(b)
    try:
        countersigned = b.receive_proposal(mutated)
    except PaychanError as exc:
        event(type(exc).__name__)
        assert isinstance(exc, StateRejected), f"{type(exc).__name__} is not a refusal"
        assert view(b) == before
        return
    event("accepted")
    # Accepted: then it was a valid proposal (a mutation that changed nothing that matters).
    assert countersigned.state == mutated.state
    assert recover_signer(DOMAIN, mutated.state, countersigned.sig_a) == ADDRESS_A
    assert mutated.state.nonce == before[3] + 1
    assert mutated.state.balance_a + mutated.state.balance_b == sum(before[2])


@FUZZ
@given(data=st.data(), payments=st.integers(0, 2))
def test_mutated_countersignatures_are_refused_with_a_named_error_and_change_nothing(data, payments):
    a, b = fresh_pair(payments)
    countersigned = b.receive_proposal(a.propose_payment(data.draw(st.integers(1, 10**17))))
    mutated = mutate(countersigned, "B", data)
    before = view(a)
    try:
        latest = a.receive_countersignature(mutated)
    except PaychanError as exc:
        event(type(exc).__name__)
        assert isinstance(exc, StateRejected), f"{type(exc).__name__} is not a refusal"
        assert view(a) == before
        return
    event("accepted")
    assert latest.state == countersigned.state
    assert recover_signer(DOMAIN, latest.state, latest.sig_b) == ADDRESS_B


@FUZZ
@given(
    obj=st.one_of(
        junk,
        st.builds(SignedState, junk, junk, junk),
        st.builds(
            SignedState,
            st.builds(ChannelState, junk, junk, junk, junk, junk, junk, deposit_a=junk, deposit_b=junk),
            junk,
            junk,
        ),
    )
)
def test_random_objects_sent_as_proposals_or_countersignatures_are_refused(obj):
    a, b = fresh_pair(1)
    a.propose_payment(10**15)
    for channel, receive in ((b, b.receive_proposal), (a, a.receive_countersignature)):
        before = view(channel)
        with pytest.raises(StateRejected):
            receive(obj)
        assert view(channel) == before


@FUZZ
@given(r=word_sized, vs=word_sized, nonce=st.integers(0, 2**48 - 1), balance=st.integers(0, 2**256 - 1))
@example(r=b"\x00" * 32, vs=b"", nonce=1, balance=0)
@example(r=b"", vs=b"\x80" + b"\x00" * 31, nonce=1, balance=0)
def test_recover_signer_returns_an_address_or_raises_a_named_error(r, vs, nonce, balance):
    state = ChannelState(b"\x01" * 32, nonce, balance, 0, deposit_a=balance, deposit_b=0)
    try:
        recovered = recover_signer(DOMAIN, state, Signature(r, vs))
    except PaychanError:
        return
    assert isinstance(recovered, str) and recovered.startswith("0x") and len(recovered) == 42


@FUZZ
@given(raw=st.one_of(st.binary(max_size=130), junk))
def test_signature_from_bytes_returns_a_signature_or_raises_a_named_error(raw):
    try:
        sig = Signature.from_bytes(raw)
    except PaychanError:
        return
    assert len(sig.r) == 32 and len(sig.vs) == 32


params_json = st.fixed_dictionaries(
    {
        "participantA": st.one_of(st.just(ADDRESS_A), junk),
        "participantB": st.one_of(st.just(ADDRESS_B), junk),
        "asset": st.one_of(st.just(ETH), junk),
        "challengePeriod": st.one_of(st.just(3600), junk),
        "number": st.one_of(st.just(7), junk),
    }
)


@FUZZ
@given(
    data=st.one_of(
        params_json,
        params_json.flatmap(lambda d: st.sampled_from(sorted(d)).map(lambda k: {x: y for x, y in d.items() if x != k})),
        junk,
    )
)
def test_channel_params_from_json_returns_params_or_raises_a_named_error(data):
    try:
        params = ChannelParams.from_json(data)
    except PaychanError:
        return
    assert params.to_json() == ChannelParams.from_json(params.to_json()).to_json()
    assert isinstance(params.challenge_period, int) and 0 <= params.challenge_period < 2**32
    assert isinstance(params.number, int) and 0 <= params.number < 2**64


def wire_signed() -> dict[str, Any]:
    a, b = fresh_pair(0)
    return b.receive_proposal(a.propose_payment(10**15)).to_json()


def mutate_json(value: Any, data: st.DataObject) -> Any:
    """Replaces one leaf (or drops/adds a key) somewhere in a JSON value."""
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        action = data.draw(st.sampled_from(["recurse", "recurse", "drop", "add"]))
        copy = dict(value)
        if action == "drop":
            del copy[key]
        elif action == "add":
            copy[data.draw(st.text(max_size=8))] = data.draw(st.integers())
        else:
            copy[key] = mutate_json(value[key], data)
        return copy
    return data.draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.integers(min_value=2**256 - 1, max_value=2**300),
            st.text(max_size=140),
            st.floats(allow_nan=False, allow_infinity=False),
            st.just("0x" + "ff" * 64),
            st.just("0x" + "00" * 31),
            st.just(str(2**256)),
            st.just("-1"),
            st.lists(st.integers(), max_size=2),
        )
    )


@FUZZ
@given(data=st.data())
def test_wire_parser_refuses_mutated_signed_states_with_malformed_message(data):
    mutated = mutate_json(wire_signed(), data)
    body = json.dumps(mutated).encode()
    try:
        parsed = messages.parse_signed(messages.decode_json(body))
    except PaychanError as exc:
        assert isinstance(exc, StateRejected)
        return
    assert isinstance(parsed, SignedState) and isinstance(parsed.state, ChannelState)


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_wire_parser_refuses_random_bytes_with_malformed_message(body):
    try:
        value = messages.decode_json(body)
        messages.parse_signed(value)
    except PaychanError as exc:
        assert isinstance(exc, StateRejected)
