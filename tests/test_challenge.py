"""Challenge: a newer doubly-signed state replaces the recorded one until the deadline (inclusive)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paychan.contract import STATUS_CLOSING, STATUS_NONE, RecordedState
from paychan.exceptions import (
    BalancesNotConserved,
    ChallengePeriodOver,
    ChannelNotClosing,
    FinalStateHasLocks,
    InvalidSignature,
    RecordMismatch,
    StaleState,
)

from .conftest import ETHER, PERIOD, block_time, next_block_at, record_mismatch, record_salt, tx_events, tx_fee


@pytest.fixture
def disputed(contract, open_channel, alice):
    """A channel with three payments where alice closed with the stale state nonce 1."""
    pair = open_channel(5 * ETHER, ETHER)
    states = [pair.pay("A", ETHER), pair.pay("A", ETHER), pair.pay("B", ETHER // 2)]
    contract.close(alice, pair.params, states[0])
    return pair, states


def test_a_newer_state_replaces_the_recorded_one_and_keeps_the_deadline(chain, contract, disputed, bob):
    pair, states = disputed
    cid = contract.channel_id(pair.params)
    deadline = contract.get_channel(cid).deadline
    receipt = contract.challenge(bob, pair.params, states[1])
    salt = record_salt(contract, receipt)
    assert contract.recorded_state(cid) == RecordedState(
        2, 3 * ETHER, 3 * ETHER, deadline, 5 * ETHER, ETHER, salt, closer_nonce=1
    )
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.nonce, onchain.deadline) == (STATUS_CLOSING, 2, deadline)
    (accepted,) = tx_events(contract, receipt, "ChallengeAccepted")
    assert dict(accepted) == {
        "channelId": cid,
        "nonce": 2,
        "balanceA": 3 * ETHER,
        "balanceB": 3 * ETHER,
        "lockedA": 0,
        "lockedB": 0,
        "locksRoot": bytes(32),
        "salt": salt,
    }


def test_a_challenge_draws_a_new_salt_and_the_old_record_no_longer_verifies(chain, contract, disputed, bob):
    pair, states = disputed
    cid = contract.channel_id(pair.params)
    before = contract.recorded_state(cid)
    receipt = contract.challenge(bob, pair.params, states[1])
    after = contract.recorded_state(cid)
    assert after.salt == record_salt(contract, receipt) != before.salt
    stale_salt = replace(after, salt=before.salt)
    with pytest.raises(RecordMismatch) as e:
        contract.challenge(bob, pair.params, states[2], recorded=stale_salt)
    assert e.value == record_mismatch(contract, pair.params, stale_salt)
    assert tx_events(contract, receipt, "ChannelSettled") == []


def test_a_challenge_moves_no_funds(chain, contract, disputed, bob):
    pair, states = disputed
    before_contract, before_alice = chain.balance(contract.address), chain.balance(pair.params.participant_a)
    contract.challenge(bob, pair.params, states[2])
    assert chain.balance(contract.address) == before_contract
    assert chain.balance(pair.params.participant_a) == before_alice


def test_a_watchtower_may_challenge_for_an_offline_participant(contract, disputed, watchtower):
    pair, states = disputed
    receipt = contract.challenge(watchtower, pair.params, states[2])
    (accepted,) = tx_events(contract, receipt, "ChallengeAccepted")
    assert (receipt["from"], accepted["nonce"]) == (watchtower.address, 3)


def test_successive_challenges_each_need_a_higher_nonce(contract, disputed, alice, bob):
    pair, states = disputed
    cid = contract.channel_id(pair.params)
    contract.challenge(bob, pair.params, states[1])
    contract.challenge(alice, pair.params, states[2])
    assert contract.recorded_state(cid).nonce == 3
    with pytest.raises(StaleState) as e:
        contract.challenge(bob, pair.params, states[1])
    assert e.value == StaleState(2, 3)


def test_a_challenge_may_skip_nonces(contract, disputed, bob):
    pair, states = disputed
    contract.challenge(bob, pair.params, states[2])
    assert contract.recorded_state(contract.channel_id(pair.params)).nonce == 3


def test_a_challenge_with_the_recorded_nonce_is_rejected(contract, disputed, bob):
    pair, states = disputed
    with pytest.raises(StaleState) as e:
        contract.challenge(bob, pair.params, states[0])
    assert e.value == StaleState(1, 1)


def test_a_challenge_with_an_older_nonce_is_rejected(contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER)
    states = [pair.pay("A", ETHER) for _ in range(3)]
    contract.close(bob, pair.params, states[2])
    with pytest.raises(StaleState) as e:
        contract.challenge(alice, pair.params, states[0])
    assert e.value == StaleState(1, 3)


def test_any_signed_state_beats_a_close_without_state(contract, open_channel, bob):
    pair = open_channel(2 * ETHER)
    latest = pair.pay("A", ETHER)
    contract.close(bob, pair.params, None)
    contract.challenge(bob, pair.params, latest)
    assert contract.recorded_state(contract.channel_id(pair.params)).nonce == 1


def test_a_final_state_from_the_participant_who_did_not_close_ends_the_dispute_and_pays_out_at_once(
    chain, contract, disputed, alice, bob
):
    pair, states = disputed
    final = pair.finalize()
    cid = contract.channel_id(pair.params)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.challenge(bob, pair.params, final)
    assert contract.get_channel(cid).status == STATUS_NONE
    assert chain.balance(alice.address) == before_a + 3 * ETHER + ETHER // 2
    assert chain.balance(bob.address) == before_b + 2 * ETHER + ETHER // 2 - tx_fee(receipt)
    (accepted,) = tx_events(contract, receipt, "ChallengeAccepted")
    assert (accepted["nonce"], accepted["balanceA"], accepted["balanceB"]) == (
        4,
        3 * ETHER + ETHER // 2,
        2 * ETHER + ETHER // 2,
    )
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert dict(settled) == {
        "channelId": cid,
        "nonce": 4,
        "payoutA": 3 * ETHER + ETHER // 2,
        "payoutB": 2 * ETHER + ETHER // 2,
        "cooperative": True,
    }


@pytest.mark.parametrize("sender", ["watchtower", "alice"])
def test_a_final_state_from_a_third_party_or_the_closer_is_only_recorded_and_settle_pays_it(
    chain, contract, disputed, request, alice, bob, carol, sender
):
    """A challenge by the closer (alice) or a third party does not pay out: the record keeps the closer's
    nonce, so a proof that the closer cheated could still follow; settling pays the final state."""
    pair, _ = disputed
    final = pair.finalize()
    cid = contract.channel_id(pair.params)
    deadline = contract.get_channel(cid).deadline
    receipt = contract.challenge(request.getfixturevalue(sender), pair.params, final)
    assert tx_events(contract, receipt, "ChannelSettled") == []
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.nonce, onchain.closed_by, onchain.deadline) == (STATUS_CLOSING, 4, "A", deadline)
    recorded = contract.recorded_state(cid)
    assert (recorded.nonce, recorded.closer_nonce, recorded.balance_a, recorded.balance_b) == (
        4,
        1,
        3 * ETHER + ETHER // 2,
        2 * ETHER + ETHER // 2,
    )
    next_block_at(chain, deadline + 1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.settle(carol, pair.params)
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"], settled["cooperative"]) == (
        4,
        3 * ETHER + ETHER // 2,
        2 * ETHER + ETHER // 2,
        False,
    )
    assert chain.balance(alice.address) == before_a + 3 * ETHER + ETHER // 2
    assert chain.balance(bob.address) == before_b + 2 * ETHER + ETHER // 2


def test_front_running_a_cooperative_close_with_a_stale_close_gains_nothing(chain, contract, open_channel, alice, bob):
    pair = open_channel(4 * ETHER)
    stale = pair.pay("A", ETHER)
    pair.pay("A", 2 * ETHER)
    final = pair.finalize()
    contract.close(alice, pair.params, stale)  # alice races bob's cooperative close
    before_b = chain.balance(bob.address)
    receipt = contract.challenge(bob, pair.params, final)
    assert chain.balance(bob.address) == before_b + 3 * ETHER - tx_fee(receipt)


def test_a_challenge_on_the_deadline_second_is_accepted(chain, contract, disputed, bob):
    pair, states = disputed
    cid = contract.channel_id(pair.params)
    deadline = contract.get_channel(cid).deadline
    next_block_at(chain, deadline)
    receipt = contract.challenge(bob, pair.params, states[1])
    assert block_time(chain, receipt) == deadline
    assert contract.recorded_state(cid).nonce == 2


def test_a_challenge_one_second_after_the_deadline_is_rejected(chain, contract, disputed, bob):
    pair, states = disputed
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline + 1)
    with pytest.raises(ChallengePeriodOver) as e:
        contract.challenge(bob, pair.params, states[1])
    assert e.value == ChallengePeriodOver(deadline, deadline + 1)


def test_a_final_state_after_the_deadline_is_rejected_too(chain, contract, disputed, bob):
    pair, states = disputed
    final = pair.finalize()
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline + PERIOD)
    with pytest.raises(ChallengePeriodOver) as e:
        contract.challenge(bob, pair.params, final)
    assert e.value == ChallengePeriodOver(deadline, deadline + PERIOD)


def test_challenges_never_extend_the_deadline(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER)
    states = [pair.pay("A", 1) for _ in range(4)]
    contract.close(alice, pair.params, states[0])
    cid = contract.channel_id(pair.params)
    deadline = contract.get_channel(cid).deadline
    for signed in states[1:3]:
        contract.challenge(bob, pair.params, signed, gas=300_000)
        assert contract.get_channel(cid).deadline == deadline
    next_block_at(chain, deadline + 1)
    with pytest.raises(ChallengePeriodOver) as e:
        contract.challenge(bob, pair.params, states[3])
    assert e.value == ChallengePeriodOver(deadline, deadline + 1)


def test_a_challenge_of_an_open_channel_is_rejected(contract, open_channel, bob):
    pair = open_channel(2 * ETHER)
    latest = pair.pay("A", ETHER)
    with pytest.raises(ChannelNotClosing) as e:
        contract.challenge(bob, pair.params, latest, recorded=RecordedState(0, 2 * ETHER, 0, 0, 2 * ETHER, 0, 0))
    assert e.value == ChannelNotClosing(contract.channel_id(pair.params))


def test_a_challenge_with_wrong_recorded_balances_is_rejected(contract, disputed, bob):
    pair, states = disputed
    salt = contract.recorded_state(contract.channel_id(pair.params)).salt
    wrong = RecordedState(1, 3 * ETHER, 3 * ETHER, 0, 5 * ETHER, ETHER, salt)  # the balances of nonce 2, not of 1
    with pytest.raises(RecordMismatch) as e:
        contract.challenge(bob, pair.params, states[2], recorded=wrong)
    assert e.value == record_mismatch(contract, pair.params, wrong)


def test_a_challenge_with_the_recorded_balances_but_other_deposits_is_rejected(contract, disputed, bob):
    pair, states = disputed
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    for deposits in ((6 * ETHER, 0), (5 * ETHER, ETHER + 1)):
        wrong = RecordedState(1, recorded.balance_a, recorded.balance_b, 0, *deposits, recorded.salt)
        with pytest.raises(RecordMismatch) as e:
            contract.challenge(bob, pair.params, states[2], recorded=wrong)
        assert e.value == record_mismatch(contract, pair.params, wrong)


def test_a_challenge_with_unconserved_balances_is_rejected(contract, disputed, signed_state, bob):
    pair, _ = disputed
    with pytest.raises(BalancesNotConserved) as e:
        contract.challenge(bob, pair.params, signed_state(pair.params, 9, 6 * ETHER, 1))
    assert e.value == BalancesNotConserved(6 * ETHER, 1, 6 * ETHER)


def test_a_challenge_with_locks_is_recorded_unless_it_is_final_which_is_rejected(contract, disputed, signed_state, bob):
    pair, _ = disputed
    cid = contract.channel_id(pair.params)
    root = bytes(31) + b"\x01"
    final = signed_state(pair.params, 9, 4 * ETHER, ETHER, True, locks_root=root, locked_b=ETHER)
    with pytest.raises(FinalStateHasLocks) as e:
        contract.challenge(bob, pair.params, final)
    assert e.value == FinalStateHasLocks(0, ETHER, root)
    contract.challenge(
        bob, pair.params, signed_state(pair.params, 9, 4 * ETHER, ETHER, locks_root=root, locked_b=ETHER)
    )
    recorded = contract.recorded_state(cid)
    assert (recorded.nonce, recorded.balance_a, recorded.balance_b, recorded.locked_b, recorded.locks_root) == (
        9,
        4 * ETHER,
        ETHER,
        ETHER,
        root,
    )


def test_a_challenge_signed_by_one_participant_only_is_rejected(contract, disputed, signed_state, alice, bob):
    pair, _ = disputed
    with pytest.raises(InvalidSignature) as e:
        contract.challenge(bob, pair.params, signed_state(pair.params, 9, 0, 6 * ETHER, key_a=bob.key))
    assert e.value == InvalidSignature(alice.address, bob.address)


def test_the_period_is_checked_before_the_nonce_and_signatures(chain, contract, disputed, signed_state, bob, carol):
    pair, states = disputed
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline + 1)
    with pytest.raises(ChallengePeriodOver) as e:
        contract.challenge(bob, pair.params, signed_state(pair.params, 0, 1, 1, key_a=carol.key))
    assert e.value == ChallengePeriodOver(deadline, deadline + 1)


def test_a_signed_nonce_zero_state_cannot_challenge_a_close_without_state(contract, open_channel, signed_state, bob):
    pair = open_channel(2 * ETHER)
    contract.close(bob, pair.params, None)
    with pytest.raises(StaleState) as e:
        contract.challenge(bob, pair.params, signed_state(pair.params, 0, 0, 2 * ETHER))
    assert e.value == StaleState(0, 0)
