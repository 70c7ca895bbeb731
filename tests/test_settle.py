"""Settle: after the deadline anyone pays out the recorded state; never before it, never twice."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paychan.contract import STATUS_NONE, RecordedState
from paychan.exceptions import (
    ChallengePeriodActive,
    ChannelNotClosing,
    ChannelNotOpen,
    OutOfGas,
    RecordMismatch,
)

from .conftest import ETHER, PERIOD, block_time, next_block_at, record_mismatch, tx_events, tx_fee


@pytest.fixture
def closing(contract, open_channel, alice):
    """A dual-funded channel (5 + 1 ether) alice closed with its latest state: alice 3.5, bob 2.5 ether."""
    pair = open_channel(5 * ETHER, ETHER)
    pair.pay("A", 2 * ETHER)
    latest = pair.pay("B", ETHER // 2)
    contract.close(alice, pair.params, latest)
    return pair, latest


def test_settling_after_the_deadline_pays_the_recorded_state_to_the_wei(chain, contract, closing, alice, bob):
    pair, latest = closing
    cid = contract.channel_id(pair.params)
    deadline = contract.get_channel(cid).deadline
    before_a, before_b, before_contract = (chain.balance(x) for x in (alice.address, bob.address, contract.address))
    next_block_at(chain, deadline + 1)
    receipt = contract.settle(bob, pair.params)
    assert block_time(chain, receipt) == deadline + 1
    assert chain.balance(alice.address) == before_a + 3 * ETHER + ETHER // 2
    assert chain.balance(bob.address) == before_b + 2 * ETHER + ETHER // 2 - tx_fee(receipt)
    assert chain.balance(contract.address) == before_contract - 6 * ETHER
    assert contract.get_channel(cid).status == STATUS_NONE
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert dict(settled) == {
        "channelId": cid,
        "nonce": 2,
        "payoutA": 3 * ETHER + ETHER // 2,
        "payoutB": 2 * ETHER + ETHER // 2,
        "cooperative": False,
    }
    assert tx_events(contract, receipt, "PayoutDeferred") == []


def test_settling_on_the_deadline_second_is_rejected(chain, contract, closing, bob):
    pair, _ = closing
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline)
    with pytest.raises(ChallengePeriodActive) as e:
        contract.settle(bob, pair.params)
    assert e.value == ChallengePeriodActive(deadline, deadline)


def test_settling_right_after_the_deadline_with_too_little_gas_raises_out_of_gas_not_challenge_period_active(
    chain, contract, closing, bob
):
    # The client replays a failed transaction on the parent block to find its error; one second after the
    # deadline the parent block is not yet past it, so the replay used to report ChallengePeriodActive.
    pair, _ = closing
    cid = contract.channel_id(pair.params)
    onchain, recorded = contract.get_channel(cid), contract.recorded_state(cid)
    before = chain.balance(contract.address)
    next_block_at(chain, onchain.deadline + 1)
    block = chain.w3.eth.block_number
    with pytest.raises(OutOfGas) as e:
        contract.settle(bob, pair.params, recorded, gas=30_000)
    assert e.value == OutOfGas(30_000, 30_000)
    assert (e.value.gas_limit, e.value.gas_used) == (30_000, 30_000)
    assert not isinstance(e.value, ChallengePeriodActive)
    (failed,) = chain.w3.eth.get_block(block + 1, full_transactions=True)["transactions"]
    assert chain.w3.eth.get_transaction_receipt(failed["hash"])["status"] == 0  # it was mined, and failed
    assert chain.w3.eth.get_block(block + 1)["timestamp"] == onchain.deadline + 1
    assert contract.get_channel(cid) == onchain and contract.recorded_state(cid) == recorded
    assert chain.balance(contract.address) == before
    receipt = contract.settle(bob, pair.params, recorded)  # with the gas it needs, it settles
    assert contract.get_channel(cid).status == STATUS_NONE
    assert [dict(e) for e in tx_events(contract, receipt, "ChannelSettled")][0]["nonce"] == 2


def test_settling_right_after_the_close_is_rejected(chain, contract, open_channel, alice):
    pair = open_channel(ETHER)
    receipt = contract.close(alice, pair.params)
    closed_at = block_time(chain, receipt)
    next_block_at(chain, closed_at + 1)
    with pytest.raises(ChallengePeriodActive) as e:
        contract.settle(alice, pair.params)
    assert e.value == ChallengePeriodActive(closed_at + PERIOD, closed_at + 1)


def test_anyone_may_settle(chain, contract, closing, alice, bob, carol):
    pair, _ = closing
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    next_block_at(chain, deadline + 1)
    contract.settle(carol, pair.params)
    assert chain.balance(alice.address) == before_a + 3 * ETHER + ETHER // 2
    assert chain.balance(bob.address) == before_b + 2 * ETHER + ETHER // 2


def test_a_second_settle_is_rejected(chain, contract, closing, bob):
    pair, _ = closing
    cid = contract.channel_id(pair.params)
    recorded = contract.recorded_state(cid)
    next_block_at(chain, recorded.deadline + 1)
    contract.settle(bob, pair.params)
    with pytest.raises(ChannelNotClosing) as e:
        contract.settle(bob, pair.params, recorded=recorded)
    assert e.value == ChannelNotClosing(cid)


def test_a_challenge_after_settlement_is_rejected(chain, contract, closing, bob):
    pair, latest = closing
    newer = pair.pay("A", 1)
    cid = contract.channel_id(pair.params)
    recorded = contract.recorded_state(cid)
    next_block_at(chain, recorded.deadline + 1)
    contract.settle(bob, pair.params)
    with pytest.raises(ChannelNotClosing) as e:
        contract.challenge(bob, pair.params, newer, recorded=recorded)
    assert e.value == ChannelNotClosing(cid)


def test_settling_an_open_channel_is_rejected(contract, open_channel, alice):
    pair = open_channel(ETHER)
    with pytest.raises(ChannelNotClosing) as e:
        contract.settle(alice, pair.params, recorded=RecordedState(0, ETHER, 0, 0, ETHER, 0, 0))
    assert e.value == ChannelNotClosing(contract.channel_id(pair.params))


def test_settling_with_balances_other_than_the_recorded_ones_is_rejected(chain, contract, closing, carol):
    pair, latest = closing
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    next_block_at(chain, deadline + 1)
    for balance_a, balance_b in ((6 * ETHER, 0), (3 * ETHER + ETHER // 2, 2 * ETHER + ETHER // 2 + 1)):
        wrong = replace(recorded, balance_a=balance_a, balance_b=balance_b)
        with pytest.raises(RecordMismatch) as e:
            contract.settle(carol, pair.params, recorded=wrong)
        assert e.value == record_mismatch(contract, pair.params, wrong)
    other_deposits = ((recorded.deposit_a + 1, recorded.deposit_b), (recorded.deposit_b, recorded.deposit_a))
    for deposit_a, deposit_b in other_deposits:
        wrong = replace(recorded, deposit_a=deposit_a, deposit_b=deposit_b)
        with pytest.raises(RecordMismatch) as e:
            contract.settle(carol, pair.params, recorded=wrong)
        assert e.value == record_mismatch(contract, pair.params, wrong)
    for salt in (recorded.salt ^ 1, (recorded.salt + 1) % 2**64):
        wrong = replace(recorded, salt=salt)
        with pytest.raises(RecordMismatch) as e:
            contract.settle(carol, pair.params, recorded=wrong)
        assert e.value == record_mismatch(contract, pair.params, wrong)


def test_settle_checks_the_recorded_balances_before_the_deadline(contract, closing, carol):
    pair, _ = closing
    wrong = RecordedState(2, 1, 2, 0, 1, 2, 0)
    with pytest.raises(RecordMismatch) as e:
        contract.settle(carol, pair.params, recorded=wrong)
    assert e.value == record_mismatch(contract, pair.params, wrong)


def test_settling_a_close_without_state_returns_the_deposits(chain, contract, open_channel, alice, bob):
    pair = open_channel(2 * ETHER, 3 * ETHER)
    pair.pay("A", ETHER)  # never submitted: bob closes without state and loses it
    contract.close(bob, pair.params, None)
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    next_block_at(chain, deadline + 1)
    receipt = contract.settle(alice, pair.params)
    assert chain.balance(alice.address) == before_a + 2 * ETHER - tx_fee(receipt)
    assert chain.balance(bob.address) == before_b + 3 * ETHER
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["nonce"], settled["cooperative"]) == (0, False)


def test_settling_after_a_challenge_pays_the_challenged_state(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", 3 * ETHER)
    contract.close(alice, pair.params, stale)
    contract.challenge(bob, pair.params, latest)
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    next_block_at(chain, deadline + 1)
    receipt = contract.settle(bob, pair.params)
    assert chain.balance(alice.address) == before_a + ETHER
    assert chain.balance(bob.address) == before_b + 4 * ETHER - tx_fee(receipt)
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (2, ETHER, 4 * ETHER)


def test_a_long_time_after_the_deadline_settling_still_works(chain, contract, closing, bob):
    pair, _ = closing
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline + 365 * 24 * 3600)
    contract.settle(bob, pair.params)
    assert contract.get_channel(contract.channel_id(pair.params)).status == STATUS_NONE


def test_a_settled_channel_cannot_be_deposited_to_or_closed_again(chain, contract, closing, alice):
    pair, latest = closing
    cid = contract.channel_id(pair.params)
    next_block_at(chain, contract.get_channel(cid).deadline + 1)
    contract.settle(alice, pair.params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.close(alice, pair.params, latest)
    assert e.value == ChannelNotOpen(cid)
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(alice, pair.params, alice.address, ETHER)
    assert e.value == ChannelNotOpen(cid)
