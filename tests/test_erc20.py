"""ERC-20 channels with the test token: the same lifecycle as ETH, token transfers instead of value."""

from __future__ import annotations

import pytest

from paychan.contract import STATUS_NONE, STATUS_OPEN
from paychan.exceptions import (
    DepositTooLarge,
    NothingToClaim,
    PayoutFailed,
    TokenTransferFailed,
    ValueMismatch,
)
from paychan.state import ETH

from .conftest import ETHER, PERIOD, next_block_at, send_fn, tx_events

MAX_DEPOSIT = 2**116 - 1


def _balance(token, address):
    return token.functions.balanceOf(address).call()


def _settle_after_deadline(chain, contract, params, sender):
    next_block_at(chain, contract.get_channel(contract.channel_id(params)).deadline + 1)
    return contract.settle(sender, params)


def test_opening_a_token_channel_pulls_the_deposit(chain, contract, token, alice, bob):
    before_alice, before_eth = _balance(token, alice.address), chain.balance(contract.address)
    params, receipt = contract.open_channel(alice, bob.address, 7 * ETHER, asset=token.address)
    assert params.asset == token.address
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b) == (STATUS_OPEN, 7 * ETHER, 0)
    assert _balance(token, alice.address) == before_alice - 7 * ETHER
    assert _balance(token, contract.address) == 7 * ETHER
    assert chain.balance(contract.address) == before_eth
    (opened,) = tx_events(contract, receipt, "ChannelOpened")
    assert opened["asset"] == token.address
    (deposited,) = tx_events(contract, receipt, "Deposited")
    assert (deposited["amount"], deposited["total"]) == (7 * ETHER, 7 * ETHER)


def test_a_token_deposit_pulls_from_the_depositor_for_the_participant(contract, token, alice, bob, carol):
    params, _ = contract.open_channel(alice, bob.address, ETHER, asset=token.address)
    before_carol = _balance(token, carol.address)
    receipt = contract.deposit(carol, params, bob.address, 2 * ETHER)
    assert _balance(token, carol.address) == before_carol - 2 * ETHER
    assert _balance(token, contract.address) == 3 * ETHER
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (ETHER, 2 * ETHER)
    (deposited,) = tx_events(contract, receipt, "Deposited")
    assert (deposited["participant"], deposited["depositor"], deposited["total"]) == (
        bob.address,
        carol.address,
        2 * ETHER,
    )


def test_a_token_channel_closes_cooperatively(contract, token, open_channel, alice, bob):
    pair = open_channel(5 * ETHER, 2 * ETHER, asset=token.address)
    pair.pay("A", 3 * ETHER)
    pair.pay("B", 1)
    final = pair.finalize()
    before_a, before_b = _balance(token, alice.address), _balance(token, bob.address)
    contract.cooperative_close(bob, pair.params, final)
    assert _balance(token, alice.address) == before_a + 2 * ETHER + 1
    assert _balance(token, bob.address) == before_b + 5 * ETHER - 1
    assert _balance(token, contract.address) == 0
    assert contract.get_channel(contract.channel_id(pair.params)).status == STATUS_NONE


def test_a_token_dispute_settles_the_challenged_state(chain, contract, token, open_channel, alice, bob, carol):
    pair = open_channel(4 * ETHER, ETHER, asset=token.address)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", 2 * ETHER)
    contract.close(alice, pair.params, stale)
    contract.challenge(bob, pair.params, latest)
    before_a, before_b = _balance(token, alice.address), _balance(token, bob.address)
    receipt = _settle_after_deadline(chain, contract, pair.params, carol)
    assert _balance(token, alice.address) == before_a + ETHER
    assert _balance(token, bob.address) == before_b + 4 * ETHER
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"], settled["cooperative"]) == (
        2,
        ETHER,
        4 * ETHER,
        False,
    )


def test_ether_sent_with_a_token_open_is_rejected(contract, token, alice, bob):
    fn = contract.contract.functions.open(bob.address, token.address, PERIOD, ETHER)
    with pytest.raises(ValueMismatch) as e:
        contract._transact(alice, fn, 1)
    assert e.value == ValueMismatch(1, 0)


def test_ether_sent_with_an_empty_token_open_is_rejected(contract, token, alice, bob):
    fn = contract.contract.functions.open(bob.address, token.address, PERIOD, 0)
    with pytest.raises(ValueMismatch) as e:
        contract._transact(alice, fn, 3)
    assert e.value == ValueMismatch(3, 0)


def test_ether_sent_with_a_token_deposit_is_rejected(contract, token, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, 0, asset=token.address)
    fn = contract.contract.functions.deposit(params.as_tuple(), bob.address, ETHER)
    with pytest.raises(ValueMismatch) as e:
        contract._transact(bob, fn, ETHER)
    assert e.value == ValueMismatch(ETHER, 0)


def test_a_deposit_without_allowance_fails_to_transfer(contract, token, alice, bob, deployer):
    params, _ = contract.open_channel(alice, bob.address, 0, asset=token.address)
    send_fn(contract.chain, deployer, token.functions.mint(deployer.address, ETHER))  # a balance, no allowance
    with pytest.raises(TokenTransferFailed) as e:
        contract.deposit(deployer, params, bob.address, ETHER)
    assert e.value == TokenTransferFailed(token.address, deployer.address, ETHER)


def test_an_open_beyond_the_depositors_balance_fails_to_transfer(contract, token, alice, bob):
    amount = _balance(token, alice.address) + 1
    with pytest.raises(TokenTransferFailed) as e:
        contract.open_channel(alice, bob.address, amount, asset=token.address)
    assert e.value == TokenTransferFailed(token.address, alice.address, amount)


def test_a_token_address_without_code_fails_to_transfer(contract, alice, bob, carol):
    with pytest.raises(TokenTransferFailed) as e:
        contract.open_channel(alice, bob.address, ETHER, asset=carol.address)
    assert e.value == TokenTransferFailed(carol.address, alice.address, ETHER)


def test_an_open_above_the_maximum_deposit_is_rejected(chain, contract, token, alice, bob):
    send_fn(chain, alice, token.functions.mint(alice.address, MAX_DEPOSIT + 1))
    with pytest.raises(DepositTooLarge) as e:
        contract.open_channel(alice, bob.address, MAX_DEPOSIT + 1, asset=token.address)
    assert e.value == DepositTooLarge(0, MAX_DEPOSIT + 1, MAX_DEPOSIT)


def test_deposits_reach_the_maximum_exactly_but_never_pass_it(chain, contract, token, alice, bob):
    send_fn(chain, alice, token.functions.mint(alice.address, 2 * MAX_DEPOSIT))
    params, _ = contract.open_channel(alice, bob.address, MAX_DEPOSIT - 10, asset=token.address)
    with pytest.raises(DepositTooLarge) as e:
        contract.deposit(alice, params, alice.address, 11)
    assert e.value == DepositTooLarge(MAX_DEPOSIT - 10, 11, MAX_DEPOSIT)
    contract.deposit(alice, params, alice.address, 10)
    with pytest.raises(DepositTooLarge) as e:
        contract.deposit(alice, params, alice.address, 1)
    assert e.value == DepositTooLarge(MAX_DEPOSIT, 1, MAX_DEPOSIT)
    contract.deposit(alice, params, bob.address, MAX_DEPOSIT)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (MAX_DEPOSIT, MAX_DEPOSIT)


def test_a_channel_holding_both_maximum_deposits_pays_everything_to_one_side(
    chain, contract, token, signed_state, alice, bob
):
    send_fn(chain, alice, token.functions.mint(alice.address, MAX_DEPOSIT))
    send_fn(chain, bob, token.functions.mint(bob.address, MAX_DEPOSIT))
    params, _ = contract.open_channel(alice, bob.address, MAX_DEPOSIT, asset=token.address)
    contract.deposit(bob, params, bob.address, MAX_DEPOSIT)
    before_b = _balance(token, bob.address)
    contract.cooperative_close(alice, params, signed_state(params, 1, 0, 2 * MAX_DEPOSIT, is_final=True))
    assert _balance(token, bob.address) == before_b + 2 * MAX_DEPOSIT


@pytest.mark.parametrize("reverts", [False, True], ids=["returns-false", "reverts"])
def test_a_blocklisted_recipients_payout_is_deferred_and_the_other_is_paid(
    chain, contract, token, open_channel, alice, bob, reverts
):
    pair = open_channel(3 * ETHER, ETHER, asset=token.address)
    pair.pay("A", ETHER)
    final = pair.finalize()
    send_fn(chain, alice, token.functions.setRevertOnBlock(reverts))
    send_fn(chain, alice, token.functions.setBlocked(bob.address, True))
    before_a, before_b = _balance(token, alice.address), _balance(token, bob.address)
    receipt = contract.cooperative_close(alice, pair.params, final)
    assert _balance(token, alice.address) == before_a + 2 * ETHER
    assert _balance(token, bob.address) == before_b
    assert contract.owed(bob.address, token.address) == 2 * ETHER
    assert contract.owed(bob.address, ETH) == 0
    (deferred,) = tx_events(contract, receipt, "PayoutDeferred")
    assert dict(deferred) == {
        "channelId": contract.channel_id(pair.params),
        "recipient": bob.address,
        "asset": token.address,
        "amount": 2 * ETHER,
    }


def test_a_blocklisted_recipient_claims_its_tokens_to_another_address(
    chain, contract, token, open_channel, alice, bob, carol
):
    pair = open_channel(3 * ETHER, asset=token.address)
    pair.pay("A", ETHER)
    contract.close(alice, pair.params, pair.b.latest)
    send_fn(chain, alice, token.functions.setBlocked(bob.address, True))
    _settle_after_deadline(chain, contract, pair.params, carol)
    assert contract.owed(bob.address, token.address) == ETHER
    with pytest.raises(PayoutFailed) as e:
        contract.claim(bob, token.address, bob.address)
    assert e.value == PayoutFailed(bob.address, token.address, ETHER)
    before_carol = _balance(token, carol.address)
    receipt = contract.claim(bob, token.address, carol.address)
    assert _balance(token, carol.address) == before_carol + ETHER
    assert contract.owed(bob.address, token.address) == 0
    (claimed,) = tx_events(contract, receipt, "Claimed")
    assert dict(claimed) == {"account": bob.address, "asset": token.address, "to": carol.address, "amount": ETHER}
    with pytest.raises(NothingToClaim) as e:
        contract.claim(bob, token.address, carol.address)
    assert e.value == NothingToClaim(bob.address, token.address)


def test_a_token_channel_may_be_opened_empty_and_funded_later(contract, token, alice, bob):
    before = _balance(token, alice.address)
    params, receipt = contract.open_channel(alice, bob.address, 0, asset=token.address)
    assert tx_events(contract, receipt, "Deposited") == []
    assert _balance(token, alice.address) == before
    contract.deposit(alice, params, alice.address, ETHER)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.status, onchain.deposit_a) == (STATUS_OPEN, ETHER)
