"""Unilateral close: a participant records its latest doubly-signed state (or none) and the period starts."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from paychan.contract import STATUS_CLOSING, RecordedState
from paychan.exceptions import (
    BalancesNotConserved,
    ChannelNotOpen,
    FinalStateHasLocks,
    InvalidSignature,
    NotParticipant,
    StaleState,
)
from paychan.state import ChannelParams

from .conftest import ETHER, PERIOD, block_time, record_salt, tx_events


def _fingerprint(
    balance_a, balance_b, deposit_a, deposit_b, salt, *, locked=(0, 0), root=bytes(32), withdrawals=0, closer_nonce=0
):
    """The low 160 bits of keccak256(abi.encode(Record(keccak256(abi.encode(Outcome)), funds, closerNonce))),
    as the contract's slot keeps them (funds: the open slot's counter and deposits, packed)."""
    outcome = keccak(encode(["uint256"] * 4 + ["bytes32", "uint64"], [balance_a, balance_b, *locked, root, salt]))
    funds = withdrawals << 232 | deposit_a << 116 | deposit_b
    return keccak(encode(["bytes32", "uint256", "uint48"], [outcome, funds, closer_nonce]))[-20:]


def test_a_close_records_the_state_nonce_and_deadline(chain, contract, open_channel, alice):
    pair = open_channel(5 * ETHER, ETHER)
    pair.pay("A", ETHER)
    latest = pair.pay("A", ETHER)
    receipt = contract.close(alice, pair.params, latest)
    deadline = block_time(chain, receipt) + PERIOD
    cid = contract.channel_id(pair.params)
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.nonce, onchain.deadline) == (STATUS_CLOSING, 2, deadline)
    assert (onchain.deposit_a, onchain.deposit_b) == (0, 0)
    salt = record_salt(contract, receipt)
    assert onchain.fingerprint == _fingerprint(3 * ETHER, 3 * ETHER, 5 * ETHER, ETHER, salt, closer_nonce=2)
    assert contract.recorded_state(cid) == RecordedState(
        2, 3 * ETHER, 3 * ETHER, deadline, 5 * ETHER, ETHER, salt, closer_nonce=2
    )
    (closed,) = tx_events(contract, receipt, "ChannelClosed")
    assert dict(closed) == {
        "channelId": cid,
        "closer": alice.address,
        "nonce": 2,
        "balanceA": 3 * ETHER,
        "balanceB": 3 * ETHER,
        "lockedA": 0,
        "lockedB": 0,
        "locksRoot": bytes(32),
        "deadline": deadline,
        "salt": salt,
    }


def test_participant_b_may_close_too(chain, contract, open_channel, bob):
    pair = open_channel(5 * ETHER)
    latest = pair.pay("A", 2 * ETHER)
    receipt = contract.close(bob, pair.params, latest)
    (closed,) = tx_events(contract, receipt, "ChannelClosed")
    assert (closed["closer"], closed["nonce"], closed["balanceA"], closed["balanceB"]) == (
        bob.address,
        1,
        3 * ETHER,
        2 * ETHER,
    )


def test_a_close_moves_no_funds(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER)
    latest = pair.pay("A", ETHER)
    before_contract, before_bob = chain.balance(contract.address), chain.balance(bob.address)
    contract.close(alice, pair.params, latest)
    assert chain.balance(contract.address) == before_contract
    assert chain.balance(bob.address) == before_bob


def test_the_deadline_follows_the_channels_own_challenge_period(chain, contract, open_channel, alice):
    pair = open_channel(ETHER, period=2 * 24 * 3600)
    receipt = contract.close(alice, pair.params)
    onchain = contract.get_channel(contract.channel_id(pair.params))
    assert onchain.deadline == block_time(chain, receipt) + 2 * 24 * 3600


def test_a_close_without_state_records_the_deposits_as_nonce_zero(chain, contract, open_channel, bob):
    pair = open_channel(4 * ETHER, ETHER)
    receipt = contract.close(bob, pair.params, None)
    cid = contract.channel_id(pair.params)
    deadline = block_time(chain, receipt) + PERIOD
    salt = record_salt(contract, receipt)
    assert contract.recorded_state(cid) == RecordedState(0, 4 * ETHER, ETHER, deadline, 4 * ETHER, ETHER, salt)
    assert contract.recorded_state(cid).closer_nonce == 0
    onchain = contract.get_channel(cid)
    fingerprint = _fingerprint(4 * ETHER, ETHER, 4 * ETHER, ETHER, salt)
    assert (onchain.status, onchain.nonce, onchain.fingerprint) == (STATUS_CLOSING, 0, fingerprint)
    (closed,) = tx_events(contract, receipt, "ChannelClosed")
    assert dict(closed) == {
        "channelId": cid,
        "closer": bob.address,
        "nonce": 0,
        "balanceA": 4 * ETHER,
        "balanceB": ETHER,
        "lockedA": 0,
        "lockedB": 0,
        "locksRoot": bytes(32),
        "deadline": deadline,
        "salt": salt,
    }


def test_an_empty_channel_can_be_closed_without_state(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, 0)
    contract.close(alice, params)
    assert contract.recorded_state(contract.channel_id(params)).balance_a == 0


def test_a_third_party_cannot_close(contract, open_channel, signed_state, carol):
    pair = open_channel(ETHER)
    signed = signed_state(pair.params, 1, 0, ETHER)
    cid = contract.channel_id(pair.params)
    with pytest.raises(NotParticipant) as e:
        contract.close(carol, pair.params, signed)
    assert e.value == NotParticipant(cid, carol.address)
    with pytest.raises(NotParticipant) as e:
        contract.close(carol, pair.params, None)
    assert e.value == NotParticipant(cid, carol.address)


def test_a_signed_state_with_nonce_zero_is_rejected_as_stale(contract, open_channel, signed_state, alice):
    pair = open_channel(ETHER)
    signed = signed_state(pair.params, 0, ETHER, 0)
    fn = contract.contract.functions.close(
        pair.params.as_tuple(), signed.state.as_tuple(), signed.sig_a.as_tuple(), signed.sig_b.as_tuple()
    )
    with pytest.raises(StaleState) as e:
        contract._transact(alice, fn)
    assert e.value == StaleState(0, 0)


def test_a_close_with_unconserved_balances_is_rejected(contract, open_channel, signed_state, alice):
    pair = open_channel(2 * ETHER)
    with pytest.raises(BalancesNotConserved) as e:
        contract.close(alice, pair.params, signed_state(pair.params, 1, ETHER, 2 * ETHER))
    assert e.value == BalancesNotConserved(ETHER, 2 * ETHER, 2 * ETHER)


def test_a_close_with_locks_is_recorded_unless_the_state_is_final(contract, open_channel, signed_state, alice):
    pair = open_channel(2 * ETHER)
    root = b"\x01" + bytes(31)
    with pytest.raises(FinalStateHasLocks) as e:
        contract.close(
            alice, pair.params, signed_state(pair.params, 1, ETHER, 0, True, locks_root=root, locked_a=ETHER)
        )
    assert e.value == FinalStateHasLocks(ETHER, 0, root)
    receipt = contract.close(
        alice, pair.params, signed_state(pair.params, 1, ETHER, 0, locks_root=root, locked_a=ETHER)
    )
    cid = contract.channel_id(pair.params)
    fingerprint = _fingerprint(
        ETHER, 0, 2 * ETHER, 0, record_salt(contract, receipt), locked=(ETHER, 0), root=root, closer_nonce=1
    )
    assert contract.get_channel(cid).fingerprint == fingerprint
    recorded = contract.recorded_state(cid)
    assert (recorded.balance_a, recorded.balance_b, recorded.locked_a, recorded.locked_b, recorded.locks_root) == (
        ETHER,
        0,
        ETHER,
        0,
        root,
    )


def test_a_close_with_a_state_the_counterparty_never_signed_is_rejected(contract, open_channel, alice, bob):
    pair = open_channel(2 * ETHER)
    proposal = pair.a.propose_payment(ETHER)  # only alice's signature
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, pair.params, proposal)
    assert e.value == InvalidSignature(bob.address, "0x0000000000000000000000000000000000000000")


def test_a_close_with_a_state_signed_by_an_outsider_is_rejected(contract, open_channel, signed_state, bob, carol):
    pair = open_channel(2 * ETHER)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, pair.params, signed_state(pair.params, 1, 0, 2 * ETHER, key_a=carol.key))
    assert e.value == InvalidSignature(pair.params.participant_a, carol.address)


def test_a_second_close_is_rejected(contract, open_channel, alice, bob):
    pair = open_channel(2 * ETHER)
    latest = pair.pay("A", ETHER)
    contract.close(alice, pair.params, latest)
    cid = contract.channel_id(pair.params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.close(bob, pair.params, latest)
    assert e.value == ChannelNotOpen(cid)
    with pytest.raises(ChannelNotOpen) as e:
        contract.close(bob, pair.params, None)
    assert e.value == ChannelNotOpen(cid)


def test_a_close_of_a_channel_that_was_never_opened_is_rejected(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, 0)
    unknown = ChannelParams(alice.address, bob.address, params.asset, params.challenge_period, params.number + 1)
    with pytest.raises(ChannelNotOpen) as e:
        contract.close(alice, unknown, None)
    assert e.value == ChannelNotOpen(contract.channel_id(unknown))


def test_the_closer_is_checked_before_the_channel_status(contract, open_channel, alice, carol):
    pair = open_channel(ETHER)
    contract.close(alice, pair.params)
    with pytest.raises(NotParticipant) as e:
        contract.close(carol, pair.params)
    assert e.value == NotParticipant(contract.channel_id(pair.params), carol.address)
