"""Rejecting recipients: a failed payout is credited for ``claim`` and never blocks the other party."""

from __future__ import annotations

import pytest
from eth_abi import encode

from paychan.exceptions import NothingToClaim, PayoutFailed
from paychan.state import ETH

from .conftest import ETHER, deploy_test_contract, next_block_at, send_fn, tx_events, tx_fee


def _revert_of(contract, fn, sender):
    """The paychan exception a call of ``fn`` (a test contract's function) reverts with."""
    try:
        fn.call({"from": sender.address})
    except Exception as exc:  # web3 or eth-tester error carrying the revert data
        contract.errors.reraise(exc)
    raise AssertionError("the call did not revert")


@pytest.fixture
def receiver(chain, deployer, artifacts):
    """A RejectingReceiver contract: its `receive` reverts until `setAccepting(true)`."""
    return deploy_test_contract(chain, deployer, artifacts["RejectingReceiver"])


@pytest.fixture
def settled_with_receiver(chain, contract, alice, carol, receiver):
    """Alice (2 ether) and the receiver (1 ether, deposited by carol) settled their channel: its payout failed."""
    params, _ = contract.open_channel(alice, receiver.address, 2 * ETHER)
    contract.deposit(carol, params, receiver.address, ETHER)
    contract.close(alice, params)
    next_block_at(chain, contract.get_channel(contract.channel_id(params)).deadline + 1)
    before_alice, before_contract = chain.balance(alice.address), chain.balance(contract.address)
    receipt = contract.settle(carol, params)
    return params, receipt, before_alice, before_contract


def test_a_payout_the_recipient_rejects_is_deferred_and_the_other_party_is_still_paid(
    chain, contract, alice, receiver, settled_with_receiver
):
    params, receipt, before_alice, before_contract = settled_with_receiver
    cid = contract.channel_id(params)
    assert chain.balance(alice.address) == before_alice + 2 * ETHER
    assert chain.balance(receiver.address) == 0
    assert contract.owed(receiver.address) == ETHER
    assert contract.owed(alice.address) == 0
    (deferred,) = tx_events(contract, receipt, "PayoutDeferred")
    assert dict(deferred) == {"channelId": cid, "recipient": receiver.address, "asset": ETH, "amount": ETHER}
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["payoutA"], settled["payoutB"]) == (2 * ETHER, ETHER)
    assert chain.balance(contract.address) == before_contract - 2 * ETHER  # the deferred payout stays


def test_the_rejecting_participant_collects_its_payout_at_another_address(
    chain, contract, carol, receiver, settled_with_receiver
):
    before_carol = chain.balance(carol.address)
    receipt = send_fn(chain, carol, receiver.functions.claim(contract.address, ETH, carol.address))
    assert chain.balance(carol.address) == before_carol + ETHER - tx_fee(receipt)
    assert contract.owed(receiver.address) == 0
    (claimed,) = tx_events(contract, receipt, "Claimed")
    assert dict(claimed) == {"account": receiver.address, "asset": ETH, "to": carol.address, "amount": ETHER}


def test_claiming_twice_finds_nothing_to_claim(chain, contract, carol, receiver, settled_with_receiver):
    send_fn(chain, carol, receiver.functions.claim(contract.address, ETH, carol.address))
    with pytest.raises(NothingToClaim) as e:
        _revert_of(contract, receiver.functions.claim(contract.address, ETH, carol.address), carol)
    assert e.value == NothingToClaim(receiver.address, ETH)


def test_claiming_to_an_address_that_still_rejects_fails_and_keeps_the_credit(
    chain, contract, carol, receiver, settled_with_receiver
):
    with pytest.raises(PayoutFailed) as e:
        _revert_of(contract, receiver.functions.claim(contract.address, ETH, receiver.address), carol)
    assert e.value == PayoutFailed(receiver.address, ETH, ETHER)
    assert contract.owed(receiver.address) == ETHER


def test_once_accepting_the_recipient_claims_to_itself_with_all_the_gas_it_needs(
    chain, contract, carol, receiver, settled_with_receiver
):
    send_fn(chain, carol, receiver.functions.setAccepting(True))
    send_fn(chain, carol, receiver.functions.claim(contract.address, ETH, receiver.address))
    assert chain.balance(receiver.address) == ETHER
    assert contract.owed(receiver.address) == 0


def test_deferred_payouts_of_several_channels_add_up(chain, contract, alice, bob, carol, receiver):
    channels = []
    for depositor, amount in ((alice, ETHER), (bob, 2 * ETHER)):
        params, _ = contract.open_channel(depositor, receiver.address, 0, gas=300_000)
        contract.deposit(carol, params, receiver.address, amount, gas=200_000)
        contract.close(depositor, params, gas=200_000)
        channels.append(params)
    next_block_at(chain, max(contract.get_channel(contract.channel_id(p)).deadline for p in channels) + 1)
    for params in channels:
        contract.settle(carol, params)
    assert contract.owed(receiver.address) == 3 * ETHER
    receipt = send_fn(chain, carol, receiver.functions.claim(contract.address, ETH, carol.address))
    (claimed,) = tx_events(contract, receipt, "Claimed")
    assert claimed["amount"] == 3 * ETHER


def test_a_contract_participant_may_close_without_state(chain, contract, alice, carol, receiver):
    params, _ = contract.open_channel(alice, receiver.address, ETHER)
    encoded = encode(["(address,address,address,uint32,uint64)"], [params.as_tuple()])
    receipt = send_fn(chain, carol, receiver.functions.closeWithoutState(contract.address, encoded))
    (closed,) = tx_events(contract, receipt, "ChannelClosed")
    assert (closed["closer"], closed["nonce"], closed["balanceA"], closed["balanceB"]) == (
        receiver.address,
        0,
        ETHER,
        0,
    )


def test_claiming_with_nothing_owed_is_rejected(contract, alice):
    with pytest.raises(NothingToClaim) as e:
        contract.claim(alice, ETH, alice.address)
    assert e.value == NothingToClaim(alice.address, ETH)


def test_a_credit_in_ether_cannot_be_claimed_as_another_asset(contract, carol, receiver, settled_with_receiver):
    with pytest.raises(NothingToClaim) as e:
        _revert_of(contract, receiver.functions.claim(contract.address, carol.address, carol.address), carol)
    assert e.value == NothingToClaim(receiver.address, carol.address)


def test_only_the_credited_account_can_claim_its_payout(contract, carol, receiver, settled_with_receiver):
    with pytest.raises(NothingToClaim) as e:
        contract.claim(carol, ETH, carol.address)
    assert e.value == NothingToClaim(carol.address, ETH)
    assert contract.owed(receiver.address) == ETHER
