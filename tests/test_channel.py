"""The off-chain Channel: payments both ways, and every invalid input refused with no change to its state."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from paychan.channel import Channel
from paychan.exceptions import (
    BalancesNotConserved,
    ChannelFinalized,
    InvalidAmount,
    InvalidSignature,
    LocksMismatch,
    MalformedMessage,
    MalleableSignature,
    NegativeBalance,
    NoPendingProposal,
    ProposalPending,
    StateRejected,
    UnexpectedNonce,
    UnfavourableState,
    WrongChannel,
)
from paychan.signing import HALF_N, ZERO_ADDRESS, Domain, recover_signer, sign_state
from paychan.state import ETH, ChannelParams, ChannelState, Signature, SignedState

KEY_A = bytes.fromhex("a1" * 32)
KEY_B = bytes.fromhex("b2" * 32)
KEY_C = bytes.fromhex("c3" * 32)
A, B, C = (Account.from_key(k).address for k in (KEY_A, KEY_B, KEY_C))
DOMAIN = Domain(1337, "0x" + "5c" * 20)
PARAMS = ChannelParams(A, B, ETH, 3600, 7)
DEPOSITS = (1000, 500)


def _pair(deposits=DEPOSITS):
    return Channel(PARAMS, DOMAIN, KEY_A, deposits=deposits), Channel(PARAMS, DOMAIN, KEY_B, deposits=deposits)


def _pay(payer: Channel, payee: Channel, amount: int) -> SignedState:
    signed = payee.receive_proposal(payer.propose_payment(amount))
    payer.receive_countersignature(signed)
    return signed


def _snapshot(channel: Channel):
    return (channel.latest, channel.pending, channel.nonce, channel.balances(), channel.is_final)


def _proposal_from_a(payee: Channel, nonce: int, balance_a: int, balance_b: int, **changes) -> SignedState:
    """A state proposed to ``payee`` (B), signed by A unless a signature is given."""
    sig_key = changes.pop("key", KEY_A)
    state = ChannelState(payee.channel_id, nonce, balance_a, balance_b, deposit_a=1000, deposit_b=500)
    state = replace(state, **changes)
    return SignedState(state, sign_state(DOMAIN, state, sig_key), None)


@pytest.fixture
def channels():
    """Alice's and bob's views after one payment of 100 from alice (nonce 1: 900 / 600)."""
    a, b = _pair()
    _pay(a, b, 100)
    return a, b


def _assert_refused(channel: Channel, call, expected: Exception):
    before = _snapshot(channel)
    seen = []
    channel.on_signed.append(seen.append)
    with pytest.raises(type(expected)) as e:
        call()
    channel.on_signed.remove(seen.append)
    assert _snapshot(channel) == before
    assert seen == []
    return e.value


# --- the happy path ---------------------------------------------------------------------------


def test_a_payment_leaves_both_sides_holding_the_same_doubly_signed_state():
    a, b = _pair()
    proposal = a.propose_payment(100)
    assert proposal.sig_a is not None and proposal.sig_b is None
    assert a.pending == proposal and a.nonce == 0
    signed = b.receive_proposal(proposal)
    assert signed.is_complete
    assert b.latest == signed and b.pending is None
    a.receive_countersignature(signed)
    assert a.latest == b.latest == signed
    assert a.pending is None
    assert signed.state == ChannelState(a.channel_id, 1, 900, 600, deposit_a=1000, deposit_b=500)
    assert recover_signer(DOMAIN, signed.state, signed.sig_a) == A
    assert recover_signer(DOMAIN, signed.state, signed.sig_b) == B


def test_payments_flow_both_ways_with_consecutive_nonces():
    a, b = _pair()
    _pay(a, b, 300)
    _pay(b, a, 50)
    _pay(b, a, 750)
    assert a.nonce == b.nonce == 3
    assert a.balances() == b.balances() == (1000 - 300 + 50 + 750, 500 + 300 - 50 - 750)


def test_each_side_is_told_of_each_new_doubly_signed_state():
    a, b = _pair()
    seen_a, seen_b = [], []
    a.on_signed.append(seen_a.append)
    b.on_signed.append(seen_b.append)
    first = _pay(a, b, 1)
    second = _pay(b, a, 2)
    assert [s.state.nonce for s in seen_a] == [1, 2]
    assert seen_a == seen_b == [first, second]


def test_a_final_state_keeps_the_balances_and_ends_the_payments(channels):
    a, b = channels
    final = b.receive_proposal(a.propose_final())
    a.receive_countersignature(final)
    assert final.state.is_final and final.state.nonce == 2
    assert (final.state.balance_a, final.state.balance_b) == (900, 600)
    assert a.is_final and b.is_final


def test_a_recorded_deposit_is_added_to_the_next_state(channels):
    a, b = channels
    a.record_deposit("B", 400)
    b.record_deposit("B", 400)
    assert a.balances() == b.balances() == (900, 1000)
    signed = _pay(b, a, 1000)
    assert (signed.state.balance_a, signed.state.balance_b) == (1900, 0)


def test_a_bad_deposit_record_is_refused(channels):
    a, _ = channels
    before = _snapshot(a)
    for role, amount in (("C", 1), ("A", 0), ("B", -5)):
        with pytest.raises(ValueError):
            a.record_deposit(role, amount)
    assert _snapshot(a) == before


def test_a_channel_can_be_restored_from_its_latest_state(channels):
    a, b = channels
    # `deposits` are the on-chain deposits; by default those the latest state splits (nothing since).
    restored = Channel(PARAMS, DOMAIN, KEY_B, latest=b.latest)
    assert restored.deposits == DEPOSITS
    assert Channel(PARAMS, DOMAIN, KEY_B, deposits=DEPOSITS, latest=b.latest).deposits == DEPOSITS
    assert restored.nonce == 1 and restored.balances() == (900, 600)
    _pay(a, restored, 900)
    assert restored.balances() == (0, 1500)


def test_a_channel_restored_with_deposits_made_since_its_latest_state_adds_them_to_their_side(channels):
    a, b = channels
    restored = Channel(PARAMS, DOMAIN, KEY_B, deposits=(1000, 700), latest=b.latest)
    assert restored.balances() == (900, 800)
    a.record_deposit("B", 200)
    signed = _pay(a, restored, 100)
    assert (signed.state.deposit_a, signed.state.deposit_b) == (1000, 700)
    assert (signed.state.balance_a, signed.state.balance_b) == (800, 900)


def test_a_channel_refuses_deposits_below_those_its_latest_state_splits(channels):
    _, b = channels
    with pytest.raises(ValueError):
        Channel(PARAMS, DOMAIN, KEY_B, deposits=(999, 500), latest=b.latest)


def test_a_channel_for_a_key_that_is_no_participant_cannot_be_made():
    with pytest.raises(ValueError):
        Channel(PARAMS, DOMAIN, KEY_C)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 1500)), max_size=12))
def test_random_payments_conserve_funds_and_raise_the_nonce_by_one(payments):
    a, b = _pair()
    for from_a, amount in payments:
        payer, payee = (a, b) if from_a else (b, a)
        nonce = a.nonce
        if amount > payer.balance():
            before = (_snapshot(a), _snapshot(b))
            with pytest.raises(NegativeBalance) as e:
                payer.propose_payment(amount)
            assert e.value.balance == payer.balance() - amount
            assert (_snapshot(a), _snapshot(b)) == before
            continue
        _pay(payer, payee, amount)
        assert a.nonce == b.nonce == nonce + 1
        assert sum(a.balances()) == sum(b.balances()) == 1500
        assert a.latest == b.latest
        assert min(a.balances()) >= 0


# --- refusals of a received proposal -------------------------------------------------------------


def test_a_proposal_for_another_channel_is_refused(channels):
    _, b = channels
    other = ChannelState(b"\x99" * 32, 2, 800, 700, deposit_a=1000, deposit_b=500)
    proposal = SignedState(other, sign_state(DOMAIN, other, KEY_A))
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), WrongChannel(b.channel_id, other.channel_id))
    assert (error.expected, error.received) == (b.channel_id, b"\x99" * 32)


@pytest.mark.parametrize("nonce", [0, 1, 3, 100])
def test_a_proposal_whose_nonce_is_not_exactly_the_next_is_refused(channels, nonce):
    _, b = channels
    proposal = _proposal_from_a(b, nonce, 800, 700)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), UnexpectedNonce(nonce, 2))
    assert (error.received, error.expected) == (nonce, 2)


def test_a_nonce_beyond_48_bits_is_refused(channels):
    _, b = channels
    proposal = SignedState(ChannelState(b.channel_id, 2**48, 800, 700, deposit_a=1000, deposit_b=500), None, None)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), UnexpectedNonce(2**48, -1))
    assert error.received == 2**48


@pytest.mark.parametrize("balances", [(800, 600), (900, 601), (0, 0), (1500, 1)])
def test_a_proposal_whose_balances_do_not_add_up_is_refused(channels, balances):
    _, b = channels
    proposal = _proposal_from_a(b, 2, *balances)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), BalancesNotConserved(*balances, 1500))
    assert error == BalancesNotConserved(balances[0], balances[1], 1500)


def test_a_proposal_with_a_negative_balance_is_refused(channels):
    _, b = channels
    state = ChannelState(b.channel_id, 2, -100, 1600, deposit_a=1000, deposit_b=500)
    proposal = SignedState(state)  # unsignable: checked before signatures
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), NegativeBalance(-100))
    assert error.balance == -100


def test_a_proposal_with_a_balance_above_uint256_is_refused(channels):
    _, b = channels
    state = ChannelState(b.channel_id, 2, 2**256, 1500 - 2**256, deposit_a=1000, deposit_b=500)
    proposal = SignedState(state, None, None)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), NegativeBalance(2**256))
    assert error.balance == 2**256


def test_a_proposal_that_lowers_the_receivers_balance_is_refused(channels):
    _, b = channels
    proposal = _proposal_from_a(b, 2, 1000, 500)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), UnfavourableState(600, 500))
    assert (error.current, error.proposed) == (600, 500)


def test_a_payment_that_changes_the_locks_root_is_refused_with_the_contracts_error(channels):
    _, b = channels
    root = b"\x07" * 32
    proposal = _proposal_from_a(b, 2, 800, 700, locks_root=root)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), LocksMismatch(b"\x00" * 32, root))
    assert error == LocksMismatch(b"\x00" * 32, root)


def test_a_proposal_signed_by_an_outsider_is_refused(channels):
    _, b = channels
    proposal = _proposal_from_a(b, 2, 800, 700, key=KEY_C)
    error = _assert_refused(b, lambda: b.receive_proposal(proposal), InvalidSignature(A, C))
    assert error == InvalidSignature(A, C)


def test_a_proposal_signed_by_the_receiver_itself_is_refused(channels):
    _, b = channels
    proposal = _proposal_from_a(b, 2, 800, 700, key=KEY_B)
    assert _assert_refused(b, lambda: b.receive_proposal(proposal), InvalidSignature(A, B)) == InvalidSignature(A, B)


def test_a_proposal_without_the_payers_signature_is_refused(channels):
    _, b = channels
    state = ChannelState(b.channel_id, 2, 800, 700, deposit_a=1000, deposit_b=500)
    error = _assert_refused(b, lambda: b.receive_proposal(SignedState(state)), InvalidSignature(A, ZERO_ADDRESS))
    assert error == InvalidSignature(A, ZERO_ADDRESS)


def test_a_signature_moved_onto_other_balances_is_refused(channels):
    _, b = channels
    honest = _proposal_from_a(b, 2, 800, 700)
    altered = SignedState(replace(honest.state, balance_a=700, balance_b=800), honest.sig_a)
    recovered = recover_signer(DOMAIN, altered.state, honest.sig_a)
    error = _assert_refused(b, lambda: b.receive_proposal(altered), InvalidSignature(A, recovered))
    assert error == InvalidSignature(A, recovered)


def test_a_signature_from_another_domain_is_refused(channels):
    _, b = channels
    state = ChannelState(b.channel_id, 2, 800, 700, deposit_a=1000, deposit_b=500)
    foreign = Domain(DOMAIN.chain_id + 1, DOMAIN.verifying_contract)
    proposal = SignedState(state, sign_state(foreign, state, KEY_A))
    recovered = recover_signer(DOMAIN, state, proposal.sig_a)
    assert _assert_refused(b, lambda: b.receive_proposal(proposal), InvalidSignature(A, recovered)) == (
        InvalidSignature(A, recovered)
    )


def test_a_high_s_signature_is_refused(channels):
    _, b = channels
    honest = _proposal_from_a(b, 2, 800, 700)
    malleable = Signature(honest.sig_a.r, (((honest.sig_a.v - 27) << 255) | (HALF_N + 1)).to_bytes(32, "big"))
    proposal = SignedState(honest.state, malleable)
    error = _assert_refused(
        b, lambda: b.receive_proposal(proposal), MalleableSignature((HALF_N + 1).to_bytes(32, "big"))
    )
    assert error == MalleableSignature((HALF_N + 1).to_bytes(32, "big"))


def test_a_proposal_after_the_final_state_is_refused(channels):
    a, b = channels
    a.receive_countersignature(b.receive_proposal(a.propose_final()))
    proposal = _proposal_from_a(b, 3, 800, 700)
    assert _assert_refused(b, lambda: b.receive_proposal(proposal), ChannelFinalized(2)).nonce == 2


@pytest.mark.parametrize(
    "message",
    [
        None,
        "0x00",
        ChannelState(b"\x00" * 32, 2, 800, 700, deposit_a=1000, deposit_b=500),
        SignedState("not a state"),  # type: ignore[arg-type]
    ],
    ids=["none", "string", "bare-state", "signed-string"],
)
def test_a_message_that_is_not_a_signed_state_is_refused(channels, message):
    _, b = channels
    _assert_refused(b, lambda: b.receive_proposal(message), MalformedMessage("x"))


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": "2"},
        {"nonce": True},
        {"balance_a": 800.0},
        {"channel_id": b"\x01" * 31},
        {"locks_root": "00" * 32},
        {"is_final": 1},
    ],
    ids=["string-nonce", "bool-nonce", "float-balance", "short-id", "string-root", "int-final"],
)
def test_a_state_with_fields_of_the_wrong_type_is_refused(channels, changes):
    _, b = channels
    state = replace(ChannelState(b.channel_id, 2, 800, 700, deposit_a=1000, deposit_b=500), **changes)
    _assert_refused(b, lambda: b.receive_proposal(SignedState(state)), MalformedMessage("x"))


def test_a_proposal_while_our_own_proposal_is_pending_is_refused(channels):
    a, b = channels
    a.propose_payment(10)  # alice waits for bob's countersignature of nonce 2...
    crossing = b.propose_payment(20)  # ...while bob proposes his own nonce 2
    error = _assert_refused(a, lambda: a.receive_proposal(crossing), ProposalPending(2))
    assert error.nonce == 2


# --- refusals of our own actions -------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, "10", None])
def test_an_invalid_payment_amount_is_refused(channels, amount):
    a, _ = channels
    error = _assert_refused(a, lambda: a.propose_payment(amount), InvalidAmount(amount))
    assert error.amount == amount


def test_paying_more_than_the_own_balance_is_refused(channels):
    a, _ = channels
    error = _assert_refused(a, lambda: a.propose_payment(901), NegativeBalance(-1))
    assert error.balance == -1
    a.propose_payment(900)  # everything is fine


def test_proposing_again_while_a_proposal_is_pending_is_refused(channels):
    a, _ = channels
    a.propose_payment(10)
    assert _assert_refused(a, lambda: a.propose_payment(10), ProposalPending(2)).nonce == 2
    assert _assert_refused(a, lambda: a.propose_final(), ProposalPending(2)).nonce == 2


def test_paying_after_the_final_state_is_refused(channels):
    a, b = channels
    a.receive_countersignature(b.receive_proposal(a.propose_final()))
    assert _assert_refused(a, lambda: a.propose_payment(1), ChannelFinalized(2)).nonce == 2
    assert _assert_refused(b, lambda: b.propose_final(), ChannelFinalized(2)).nonce == 2


# --- refusals of a countersignature ---------------------------------------------------------------


def test_a_countersignature_with_nothing_pending_is_refused(channels):
    a, b = channels
    stray = b.latest
    assert _assert_refused(a, lambda: a.receive_countersignature(stray), NoPendingProposal(1)).nonce == 1


def test_a_countersignature_of_another_state_than_the_pending_one_is_refused(channels):
    a, _ = channels
    a.propose_payment(10)
    other = ChannelState(a.channel_id, 2, 880, 620, deposit_a=1000, deposit_b=500)
    countersigned = SignedState(other, sign_state(DOMAIN, other, KEY_A), sign_state(DOMAIN, other, KEY_B))
    assert _assert_refused(a, lambda: a.receive_countersignature(countersigned), NoPendingProposal(2)).nonce == 2


def test_a_countersignature_by_an_outsider_is_refused_and_the_proposal_stays_pending(channels):
    a, _ = channels
    proposal = a.propose_payment(10)
    forged = proposal.with_signature("B", sign_state(DOMAIN, proposal.state, KEY_C))
    assert _assert_refused(a, lambda: a.receive_countersignature(forged), InvalidSignature(B, C)) == (
        InvalidSignature(B, C)
    )
    assert a.pending == proposal


def test_a_countersignature_missing_the_peers_signature_is_refused(channels):
    a, _ = channels
    proposal = a.propose_payment(10)
    error = _assert_refused(a, lambda: a.receive_countersignature(proposal), InvalidSignature(B, ZERO_ADDRESS))
    assert error == InvalidSignature(B, ZERO_ADDRESS)


def test_a_malformed_countersignature_is_refused(channels):
    a, _ = channels
    a.propose_payment(10)
    _assert_refused(a, lambda: a.receive_countersignature("signed"), MalformedMessage("x"))


def test_after_a_refusal_the_channel_still_works(channels):
    a, b = channels
    proposal = a.propose_payment(10)
    with pytest.raises(InvalidSignature):
        a.receive_countersignature(proposal)
    a.receive_countersignature(b.receive_proposal(proposal))
    assert a.latest == b.latest and a.nonce == 2


def test_every_refusal_is_a_state_rejection():
    for cls in (
        WrongChannel,
        UnexpectedNonce,
        NegativeBalance,
        UnfavourableState,
        ChannelFinalized,
        NoPendingProposal,
        ProposalPending,
        InvalidAmount,
        MalformedMessage,
        InvalidSignature,
        BalancesNotConserved,
        MalleableSignature,
        LocksMismatch,
    ):
        assert issubclass(cls, StateRejected)
