"""EIP-712 signing: the Python digest is the contract's, eth-account agrees, EIP-2098 round trips, no high s."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paychan.exceptions import InvalidSignature, MalleableSignature
from paychan.signing import (
    HALF_N,
    REVOCATION_TYPEHASH,
    STATE_TYPEHASH,
    WITHDRAWAL_TYPEHASH,
    ZERO_ADDRESS,
    Domain,
    check_message_signer,
    check_signer,
    message_digest,
    recover_signer,
    revocation_digest,
    sign_message,
    sign_state,
    state_digest,
    typed_data,
    withdrawal_digest,
)
from paychan.state import (
    ChannelParams,
    ChannelState,
    Lock,
    Revocation,
    Signature,
    SignedState,
    Withdrawal,
    channel_id,
    hashlock,
    locked_totals,
    locks_root,
)

from .conftest import ETHER

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY_A = bytes.fromhex("11" * 32)
KEY_B = bytes.fromhex("22" * 32)
DOMAIN = Domain(1, "0x" + "ab" * 20)

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
params_strategy = st.builds(
    ChannelParams,
    addresses,
    addresses,
    addresses,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
)
states = st.builds(
    ChannelState,
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**48 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
    st.binary(min_size=32, max_size=32),
    st.booleans(),
    deposit_a=st.integers(0, 2**256 - 1),
    deposit_b=st.integers(0, 2**256 - 1),
    locked_a=st.integers(0, 2**256 - 1),
    locked_b=st.integers(0, 2**256 - 1),
    withdrawals=st.integers(0, 2**16 - 1),
)
withdrawals = st.builds(
    Withdrawal,
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**40 - 1),
)
CHAIN_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _with_s(signature: Signature, s: int) -> Signature:
    """``signature`` with its 255-bit ``s`` replaced (the recovery bit kept)."""
    return Signature(signature.r, (((signature.v - 27) << 255) | s).to_bytes(32, "big"))


# EIP-2098 keeps 255 bits of s, so the high-s twin N - s of a real signature (almost always above 2**255)
# cannot even be encoded; the contract still rejects every encodable s above N/2.
HIGH_S = [HALF_N + 1, 2**255 - 1]


# --- the digest -------------------------------------------------------------------------------


@CHAIN_SETTINGS
@given(params=params_strategy, state=states)
def test_the_python_digest_equals_the_contracts_state_digest(chain, contract, params, state):
    state = ChannelState(
        channel_id(params, chain.chain_id, contract.address),
        state.nonce,
        state.balance_a,
        state.balance_b,
        state.locks_root,
        state.is_final,
        deposit_a=state.deposit_a,
        deposit_b=state.deposit_b,
        locked_a=state.locked_a,
        locked_b=state.locked_b,
        withdrawals=state.withdrawals,
    )
    assert state_digest(contract.domain, state) == contract.onchain_digest(params, state)


def test_the_digest_of_a_state_with_locks_and_a_withdrawal_count_equals_the_contracts(contract, open_channel):
    pair = open_channel(3 * ETHER, ETHER)
    locks = [Lock("A", ETHER, 1_900_000_000, hashlock(b"\x01" * 32)), Lock("B", 5, 2**40 - 1, hashlock(b"\x02" * 32))]
    locked_a, locked_b = locked_totals(locks)
    state = ChannelState(
        contract.channel_id(pair.params),
        9,
        2 * ETHER,
        ETHER - 5,
        locks_root(locks),
        deposit_a=3 * ETHER,
        deposit_b=ETHER,
        locked_a=locked_a,
        locked_b=locked_b,
        withdrawals=3,
    )
    assert state_digest(contract.domain, state) == contract.onchain_digest(pair.params, state)
    assert message_digest(contract.domain, state) == state_digest(contract.domain, state)


@CHAIN_SETTINGS
@given(params=params_strategy, below_nonce=st.integers(0, 2**48 - 1))
def test_the_python_revocation_digest_equals_the_contracts(chain, contract, params, below_nonce):
    revocation = Revocation(channel_id(params, chain.chain_id, contract.address), below_nonce)
    digest = revocation_digest(contract.domain, revocation)
    assert digest == contract.onchain_revocation_digest(params, below_nonce)
    assert message_digest(contract.domain, revocation) == digest


@CHAIN_SETTINGS
@given(params=params_strategy, withdrawal=withdrawals)
def test_the_python_withdrawal_digest_equals_the_contracts(chain, contract, params, withdrawal):
    withdrawal = replace(withdrawal, channel_id=channel_id(params, chain.chain_id, contract.address))
    digest = withdrawal_digest(contract.domain, withdrawal)
    assert digest == contract.onchain_withdrawal_digest(params, withdrawal)
    assert message_digest(contract.domain, withdrawal) == digest


def test_the_revocation_and_withdrawal_typehashes_match_the_contract(chain, contract):
    assert bytes(contract.contract.functions.REVOCATION_TYPEHASH().call()) == REVOCATION_TYPEHASH
    assert bytes(contract.contract.functions.WITHDRAWAL_TYPEHASH().call()) == WITHDRAWAL_TYPEHASH


def test_every_field_of_a_revocation_and_a_withdrawal_changes_the_digest():
    revocation = Revocation(b"\x01" * 32, 5)
    revocations = [revocation, Revocation(b"\x02" * 32, 5), Revocation(b"\x01" * 32, 6)]
    assert len({revocation_digest(DOMAIN, r) for r in revocations}) == len(revocations)
    base = Withdrawal(b"\x01" * 32, 1, 2, 3, 4, 5, 6)
    variants = [
        base,
        replace(base, channel_id=b"\x02" * 32),
        replace(base, amount_a=2, amount_b=1),
        replace(base, deposit_a=4, deposit_b=3),
        replace(base, withdrawals=6),
        replace(base, expiry=7),
    ]
    assert len({withdrawal_digest(DOMAIN, w) for w in variants}) == len(variants)
    # the three types never share a digest, even over the same words
    state = ChannelState(b"\x01" * 32, 5, 0, 0, deposit_a=0, deposit_b=0)
    assert len({message_digest(DOMAIN, m) for m in (state, revocation, base)}) == 3


@settings(max_examples=15, deadline=None)
@given(below_nonce=st.integers(0, 2**48 - 1), withdrawal=withdrawals)
def test_eth_account_signs_revocations_and_withdrawals_to_the_signatures_of_sign_message(below_nonce, withdrawal):
    account = Account.from_key(KEY_B)
    for message in (Revocation(b"\x07" * 32, below_nonce), withdrawal):
        signed = Account.sign_typed_data(KEY_B, full_message=typed_data(DOMAIN, message))
        ours = sign_message(DOMAIN, message, KEY_B)
        assert Signature.from_vrs(signed.v, signed.r, signed.s) == ours
        assert bytes(signed.message_hash) == message_digest(DOMAIN, message)
        check_message_signer(DOMAIN, message, ours, account.address)
        with pytest.raises(InvalidSignature):
            check_message_signer(DOMAIN, message, ours, Account.from_key(KEY_A).address)


def test_the_digest_of_a_real_channels_state_equals_the_contracts(contract, open_channel):
    pair = open_channel(3 * ETHER, ETHER)
    signed = pair.pay("A", ETHER)
    assert state_digest(contract.domain, signed.state) == contract.onchain_digest(pair.params, signed.state)


def test_the_state_typehash_and_domain_separator_match_the_contract(chain, contract):
    assert bytes(contract.contract.functions.STATE_TYPEHASH().call()) == STATE_TYPEHASH
    assert bytes(contract.contract.functions.DOMAIN_SEPARATOR().call()) == contract.domain.separator


def test_every_field_of_the_state_changes_the_digest():
    base = ChannelState(b"\x01" * 32, 5, 10, 20, b"\x00" * 32, False, deposit_a=10, deposit_b=20)
    variants = [
        replace(base, deposit_a=11),
        replace(base, deposit_b=21),
        replace(base, deposit_a=20, deposit_b=10),
        ChannelState(b"\x02" * 32, 5, 10, 20, b"\x00" * 32, False, deposit_a=10, deposit_b=20),
        ChannelState(b"\x01" * 32, 6, 10, 20, b"\x00" * 32, False, deposit_a=10, deposit_b=20),
        ChannelState(b"\x01" * 32, 5, 11, 20, b"\x00" * 32, False, deposit_a=10, deposit_b=20),
        ChannelState(b"\x01" * 32, 5, 10, 21, b"\x00" * 32, False, deposit_a=10, deposit_b=20),
        ChannelState(b"\x01" * 32, 5, 10, 20, b"\x01" * 32, False, deposit_a=10, deposit_b=20),
        ChannelState(b"\x01" * 32, 5, 10, 20, b"\x00" * 32, True, deposit_a=10, deposit_b=20),
        ChannelState(b"\x01" * 32, 5, 20, 10, b"\x00" * 32, False, deposit_a=10, deposit_b=20),
        replace(base, locked_a=1),
        replace(base, locked_b=1),
        replace(base, withdrawals=1),
    ]
    digests = {state_digest(DOMAIN, s) for s in [base, *variants]}
    assert len(digests) == 1 + len(variants)
    assert state_digest(Domain(2, DOMAIN.verifying_contract), base) != state_digest(DOMAIN, base)
    assert state_digest(Domain(1, "0x" + "cd" * 20), base) != state_digest(DOMAIN, base)


# --- eth-account agrees -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(state=states, chain_id=st.integers(1, 2**64), contract=addresses)
def test_eth_account_hashes_the_typed_data_to_the_same_digest(state, chain_id, contract):
    domain = Domain(chain_id, contract)
    signable = encode_typed_data(full_message=typed_data(domain, state))
    assert _hash_eip191_message(signable) == state_digest(domain, state)


@settings(max_examples=15, deadline=None)
@given(state=states)
def test_eth_account_sign_typed_data_gives_the_same_signature_and_signer(state):
    account = Account.from_key(KEY_A)
    signed = Account.sign_typed_data(KEY_A, full_message=typed_data(DOMAIN, state))
    theirs = Signature.from_vrs(signed.v, signed.r, signed.s)
    ours = sign_state(DOMAIN, state, KEY_A)
    assert theirs == ours
    assert Signature.from_bytes(bytes(signed.signature)) == ours
    assert recover_signer(DOMAIN, state, theirs) == account.address
    assert bytes(signed.message_hash) == state_digest(DOMAIN, state)


def test_a_signature_made_by_eth_account_is_accepted_on_chain(contract, open_channel, alice, bob):
    pair = open_channel(2 * ETHER)
    cid = contract.channel_id(pair.params)
    state = ChannelState(cid, 1, ETHER, ETHER, is_final=True, deposit_a=2 * ETHER, deposit_b=0)
    sigs = [
        Account.sign_typed_data(key, full_message=typed_data(contract.domain, state)) for key in (alice.key, bob.key)
    ]
    signed = SignedState(state, *(Signature.from_bytes(bytes(s.signature)) for s in sigs))
    contract.cooperative_close(alice, pair.params, signed)
    assert contract.get_channel(contract.channel_id(pair.params)).status == 0


# --- EIP-2098 compact signatures ----------------------------------------------------------------


@given(v=st.sampled_from([27, 28]), r=st.integers(1, N - 1), s=st.integers(1, HALF_N))
def test_compact_signatures_round_trip(v, r, s):
    signature = Signature.from_vrs(v, r, s)
    assert len(signature.to_bytes()) == 64
    assert (signature.v, int.from_bytes(signature.r, "big"), signature.s) == (v, r, s)
    assert Signature.from_bytes(signature.to_bytes()) == signature
    assert Signature.from_vrs(v - 27, r, s) == signature
    long_form = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    assert Signature.from_bytes(long_form) == signature
    assert (int.from_bytes(signature.vs, "big") >> 255) == v - 27


def test_a_signature_of_another_length_is_refused():
    for length in (0, 63, 66):
        with pytest.raises(ValueError):
            Signature.from_bytes(bytes(length))


@settings(max_examples=20, deadline=None)
@given(state=states, key=st.integers(1, N - 1))
def test_sign_state_always_produces_low_s_signatures_that_recover_the_signer(state, key):
    private_key = key.to_bytes(32, "big")
    signature = sign_state(DOMAIN, state, private_key)
    assert signature.s <= HALF_N
    assert recover_signer(DOMAIN, state, signature) == Account.from_key(private_key).address


# --- malleability and bad signatures --------------------------------------------------------------


@pytest.mark.parametrize("high_s", HIGH_S, ids=["half-n-plus-1", "max-255-bit"])
def test_a_high_s_signature_is_rejected_off_chain(high_s):
    state = ChannelState(b"\x01" * 32, 1, 2, 3, deposit_a=2, deposit_b=3)
    signature = _with_s(sign_state(DOMAIN, state, KEY_A), high_s)
    with pytest.raises(MalleableSignature) as e:
        recover_signer(DOMAIN, state, signature)
    assert e.value == MalleableSignature(high_s.to_bytes(32, "big"))
    with pytest.raises(MalleableSignature):
        check_signer(DOMAIN, state, signature, Account.from_key(KEY_A).address)


@pytest.mark.parametrize("high_s", HIGH_S, ids=["half-n-plus-1", "max-255-bit"])
def test_a_high_s_signature_is_rejected_on_chain_with_the_off_chain_error(
    contract, open_channel, signed_state, alice, high_s
):
    pair = open_channel(2 * ETHER)
    signed = signed_state(pair.params, 1, ETHER, ETHER, is_final=True)
    malleable = _with_s(signed.sig_a, high_s)
    with pytest.raises(MalleableSignature) as on_chain:
        contract.cooperative_close(alice, pair.params, SignedState(signed.state, malleable, signed.sig_b))
    assert on_chain.value == MalleableSignature(high_s.to_bytes(32, "big"))
    with pytest.raises(MalleableSignature) as off_chain:
        recover_signer(contract.domain, signed.state, malleable)
    assert off_chain.value == on_chain.value


def test_a_high_s_signature_of_b_is_rejected_on_chain(contract, open_channel, signed_state, bob):
    pair = open_channel(2 * ETHER)
    signed = signed_state(pair.params, 1, ETHER, ETHER)
    malleable = _with_s(signed.sig_b, HALF_N + 1)
    with pytest.raises(MalleableSignature) as e:
        contract.close(bob, pair.params, SignedState(signed.state, signed.sig_a, malleable))
    assert e.value == MalleableSignature((HALF_N + 1).to_bytes(32, "big"))


def test_s_equal_to_half_n_is_not_malleable_but_recovers_someone_else(contract, open_channel, signed_state, alice):
    pair = open_channel(2 * ETHER)
    signed = signed_state(pair.params, 1, ETHER, ETHER, is_final=True)
    edge = _with_s(signed.sig_a, HALF_N)
    recovered = recover_signer(contract.domain, signed.state, edge)
    assert recovered != alice.address
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, SignedState(signed.state, edge, signed.sig_b))
    assert e.value == InvalidSignature(alice.address, recovered)


def test_a_signature_that_recovers_no_key_recovers_the_zero_address():
    state = ChannelState(b"\x01" * 32, 1, 2, 3, deposit_a=2, deposit_b=3)
    assert recover_signer(DOMAIN, state, Signature(b"\x00" * 32, b"\x00" * 32)) == ZERO_ADDRESS
    assert recover_signer(DOMAIN, state, Signature.from_vrs(27, N, 1)) == ZERO_ADDRESS


def test_check_signer_names_who_was_expected_and_who_signed():
    state = ChannelState(b"\x01" * 32, 1, 2, 3, deposit_a=2, deposit_b=3)
    a, b = Account.from_key(KEY_A).address, Account.from_key(KEY_B).address
    check_signer(DOMAIN, state, sign_state(DOMAIN, state, KEY_A), a)
    with pytest.raises(InvalidSignature) as e:
        check_signer(DOMAIN, state, sign_state(DOMAIN, state, KEY_B), a)
    assert e.value == InvalidSignature(a, b)
    with pytest.raises(InvalidSignature) as e:
        check_signer(DOMAIN, state, None, a)
    assert e.value == InvalidSignature(a, ZERO_ADDRESS)
    with pytest.raises(InvalidSignature) as e:
        check_signer(Domain(2, DOMAIN.verifying_contract), state, sign_state(DOMAIN, state, KEY_A), a)
    assert e.value.expected == a and e.value.recovered not in (a, ZERO_ADDRESS)
