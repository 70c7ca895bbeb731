"""Deposits: either participant or anyone adds to a participant's side of an open channel."""

from __future__ import annotations

import pytest

from paychan.contract import STATUS_OPEN
from paychan.exceptions import ChannelNotOpen, NotParticipant, ValueMismatch, ZeroDeposit
from paychan.state import ChannelParams

from .conftest import ETHER, tx_events, tx_fee

GAS = 200_000


def _deposit_raw(contract, sender, params, participant, amount, value, gas=None):
    fn = contract.contract.functions.deposit(params.as_tuple(), participant, amount)
    return contract._transact(sender, fn, value, gas)


def test_the_counterparty_funds_its_own_side_making_a_dual_funded_channel(chain, contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, 2 * ETHER)
    before_bob = chain.balance(bob.address)
    receipt = contract.deposit(bob, params, bob.address, 3 * ETHER)
    cid = contract.channel_id(params)
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b) == (STATUS_OPEN, 2 * ETHER, 3 * ETHER)
    assert chain.balance(bob.address) == before_bob - 3 * ETHER - tx_fee(receipt)
    (event,) = tx_events(contract, receipt, "Deposited")
    assert dict(event) == {
        "channelId": cid,
        "participant": bob.address,
        "depositor": bob.address,
        "amount": 3 * ETHER,
        "total": 3 * ETHER,
    }


def test_repeated_deposits_add_up_and_report_the_running_total(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    totals = []
    for amount in (1, 2, 3 * ETHER):
        receipt = contract.deposit(alice, params, alice.address, amount, gas=GAS)
        (event,) = tx_events(contract, receipt, "Deposited")
        totals.append(event["total"])
    assert totals == [ETHER + 1, ETHER + 3, 4 * ETHER + 3]
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (4 * ETHER + 3, 0)


def test_a_third_party_may_deposit_on_a_participants_behalf(chain, contract, alice, bob, carol):
    params, _ = contract.open_channel(alice, bob.address, 0)
    before_carol, before_bob = chain.balance(carol.address), chain.balance(bob.address)
    receipt = contract.deposit(carol, params, bob.address, ETHER)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (0, ETHER)
    assert chain.balance(carol.address) == before_carol - ETHER - tx_fee(receipt)
    assert chain.balance(bob.address) == before_bob
    (event,) = tx_events(contract, receipt, "Deposited")
    assert (event["participant"], event["depositor"], event["amount"], event["total"]) == (
        bob.address,
        carol.address,
        ETHER,
        ETHER,
    )


def test_a_participant_may_deposit_for_the_other_side(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    contract.deposit(alice, params, bob.address, 2 * ETHER)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (ETHER, 2 * ETHER)


def test_a_deposit_for_someone_who_is_not_a_participant_is_rejected(contract, alice, bob, carol):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    with pytest.raises(NotParticipant) as e:
        contract.deposit(alice, params, carol.address, ETHER)
    assert e.value == NotParticipant(contract.channel_id(params), carol.address)


def test_a_zero_deposit_is_rejected(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    with pytest.raises(ZeroDeposit) as e:
        contract.deposit(alice, params, bob.address, 0)
    assert e.value == ZeroDeposit()


def test_a_deposit_whose_ether_differs_from_the_amount_is_rejected(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    with pytest.raises(ValueMismatch) as e:
        _deposit_raw(contract, bob, params, bob.address, 2 * ETHER, 2 * ETHER - 1)
    assert e.value == ValueMismatch(2 * ETHER - 1, 2 * ETHER)
    with pytest.raises(ValueMismatch) as e:
        _deposit_raw(contract, bob, params, bob.address, 1, 2)
    assert e.value == ValueMismatch(2, 1)


def test_a_deposit_to_a_channel_that_was_never_opened_is_rejected(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    unknown = ChannelParams(alice.address, bob.address, params.asset, params.challenge_period, params.number + 100)
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(alice, unknown, alice.address, ETHER)
    assert e.value == ChannelNotOpen(contract.channel_id(unknown))


def test_parameters_that_differ_in_one_field_find_no_channel(contract, alice, bob, carol):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    variants = [
        ChannelParams(bob.address, alice.address, params.asset, params.challenge_period, params.number),
        ChannelParams(alice.address, carol.address, params.asset, params.challenge_period, params.number),
        ChannelParams(alice.address, bob.address, carol.address, params.challenge_period, params.number),
        ChannelParams(alice.address, bob.address, params.asset, params.challenge_period + 1, params.number),
    ]
    for variant in variants:
        with pytest.raises(ChannelNotOpen) as e:
            contract.deposit(alice, variant, alice.address, ETHER, gas=GAS)
        assert e.value == ChannelNotOpen(contract.channel_id(variant))


def test_a_deposit_to_a_closing_channel_is_rejected(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    contract.close(bob, params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(bob, params, bob.address, ETHER)
    assert e.value == ChannelNotOpen(contract.channel_id(params))


def test_a_deposit_to_a_cooperatively_closed_channel_is_rejected(contract, open_channel, alice):
    pair = open_channel(ETHER)
    contract.cooperative_close(alice, pair.params, pair.finalize())
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(alice, pair.params, alice.address, ETHER)
    assert e.value == ChannelNotOpen(contract.channel_id(pair.params))


def test_the_channel_state_is_checked_before_the_participant_and_the_amount(contract, alice, bob, carol):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    contract.close(alice, params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(alice, params, carol.address, 0)
    assert e.value == ChannelNotOpen(contract.channel_id(params))


def test_a_rejected_deposit_leaves_the_channel_and_the_depositor_unchanged(chain, contract, alice, bob, carol):
    params, _ = contract.open_channel(alice, bob.address, ETHER)
    cid = contract.channel_id(params)
    before = contract.get_channel(cid)
    before_contract = chain.balance(contract.address)
    with pytest.raises(NotParticipant):
        contract.deposit(alice, params, carol.address, ETHER, gas=GAS)  # mined and reverted
    assert contract.get_channel(cid) == before
    assert chain.balance(contract.address) == before_contract


def test_deposits_after_payments_are_added_to_the_next_signed_state(contract, open_channel, alice, bob):
    pair = open_channel(2 * ETHER, ETHER)
    pair.pay("A", ETHER)
    contract.deposit(bob, pair.params, bob.address, ETHER)
    pair.record_deposit("B", ETHER)
    signed = pair.pay("B", ETHER // 2)
    assert (signed.state.balance_a, signed.state.balance_b) == (ETHER + ETHER // 2, 2 * ETHER + ETHER // 2)
    final = pair.finalize()
    contract.cooperative_close(alice, pair.params, final)
    assert contract.get_channel(contract.channel_id(pair.params)).status == 0
