"""A state commits to the deposits it splits (SECURITY.md finding F1).

Its balances sum to its own ``depositA + depositB``; each may be below the channel's deposit on that side
(deposits made after it was signed, which go back to their side) but never above it (``UnknownDeposit``).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from web3.logs import DISCARD

from paychan.exceptions import BalancesNotConserved, MissingDeposit, UnknownDeposit
from paychan.signing import sign_state
from paychan.state import SignedState

from .conftest import ETHER, PERIOD


def _settled(contract, receipt):
    (event,) = contract.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD)
    return event["args"]["payoutA"], event["args"]["payoutB"]


def test_the_payees_newest_state_wins_a_challenge_after_the_payer_tops_up_and_the_top_up_goes_back(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    pair.pay("A", ETHER)
    newest = pair.pay("A", 2 * ETHER)  # alice 2, bob 3 of alice's 5
    contract.deposit(alice, pair.params, alice.address, 4 * ETHER)  # the payer tops up afterwards
    contract.close(alice, pair.params)  # and closes by the deposits: alice 9, bob 0
    receipt = contract.challenge(bob, pair.params, newest)
    (accepted,) = contract.contract.events.ChallengeAccepted().process_receipt(receipt, errors=DISCARD)
    assert (accepted["args"]["balanceA"], accepted["args"]["balanceB"]) == (6 * ETHER, 3 * ETHER)
    chain.time_travel(PERIOD + 1)
    assert _settled(contract, contract.settle(carol, pair.params)) == (6 * ETHER, 3 * ETHER)


def test_a_deposit_by_the_counterparty_after_the_state_goes_back_to_it(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    newest = pair.pay("A", ETHER)  # alice 3, bob 2
    contract.deposit(carol, pair.params, bob.address, ETHER // 2)  # anyone may fund bob's side
    contract.close(alice, pair.params, stale)  # alice 4, bob 1 + 0.5
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    assert (recorded.balance_a, recorded.balance_b) == (4 * ETHER, ETHER + ETHER // 2)
    assert (recorded.deposit_a, recorded.deposit_b) == (5 * ETHER, ETHER // 2)
    contract.challenge(bob, pair.params, newest)
    chain.time_travel(PERIOD + 1)
    assert _settled(contract, contract.settle(carol, pair.params)) == (3 * ETHER, 2 * ETHER + ETHER // 2)


@pytest.mark.parametrize(
    ("deposits", "balances"),
    [
        ((5 * ETHER + 1, 0), (2 * ETHER + 1, 3 * ETHER)),
        ((5 * ETHER, 1), (2 * ETHER, 3 * ETHER + 1)),
        ((0, 5 * ETHER), (2 * ETHER, 3 * ETHER)),
    ],
    ids=["more-of-a", "b-never-deposited", "a-deposit-on-bs-side"],
)
def test_a_state_splitting_deposits_never_made_is_rejected_by_every_entry_point(
    chain, contract, open_channel, signed_state, alice, bob, deposits, balances
):
    pair = open_channel(5 * ETHER)
    expected = UnknownDeposit(*deposits, 5 * ETHER, 0)
    final = signed_state(pair.params, 1, *balances, is_final=True, deposits=deposits)
    with pytest.raises(UnknownDeposit) as e:
        contract.cooperative_close(alice, pair.params, final)
    assert e.value == expected
    with pytest.raises(UnknownDeposit) as e:
        contract.close(alice, pair.params, final)
    assert e.value == expected
    contract.close(alice, pair.params)
    with pytest.raises(UnknownDeposit) as e:
        contract.challenge(bob, pair.params, final)
    assert e.value == expected


def test_balances_must_sum_to_the_deposits_the_state_splits_not_the_channels(
    contract, open_channel, signed_state, alice
):
    pair = open_channel(5 * ETHER)
    contract.deposit(alice, pair.params, alice.address, ETHER)
    # Sums to the channel's 6 ether, but the state splits only 5.
    signed = signed_state(pair.params, 1, 3 * ETHER, 3 * ETHER, deposits=(5 * ETHER, 0))
    with pytest.raises(BalancesNotConserved) as e:
        contract.close(alice, pair.params, signed)
    assert e.value == BalancesNotConserved(3 * ETHER, 3 * ETHER, 5 * ETHER)


def test_a_cooperative_close_after_a_top_up_pays_the_final_state_that_includes_it(
    chain, contract, open_channel, alice, bob
):
    pair = open_channel(5 * ETHER)
    pair.pay("A", 2 * ETHER)
    contract.deposit(bob, pair.params, bob.address, ETHER)
    pair.record_deposit("B", ETHER)
    pair.pay("B", ETHER // 2)  # bob pays from his top-up
    final = pair.finalize()
    assert (final.state.deposit_a, final.state.deposit_b) == (5 * ETHER, ETHER)
    assert (final.state.balance_a, final.state.balance_b) == (3 * ETHER + ETHER // 2, 2 * ETHER + ETHER // 2)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.cooperative_close(alice, pair.params, final)
    assert _settled(contract, receipt) == (3 * ETHER + ETHER // 2, 2 * ETHER + ETHER // 2)
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(alice.address) - before_a == 3 * ETHER + ETHER // 2 - gas
    assert chain.balance(bob.address) - before_b == 2 * ETHER + ETHER // 2


def test_a_final_state_signed_before_a_top_up_still_closes_cooperatively_and_returns_it(
    contract, open_channel, alice, bob
):
    pair = open_channel(5 * ETHER)
    pair.pay("A", ETHER)
    final = pair.finalize()
    contract.deposit(alice, pair.params, alice.address, ETHER)
    assert _settled(contract, contract.cooperative_close(bob, pair.params, final)) == (5 * ETHER, ETHER)


def test_off_chain_a_proposal_may_not_split_deposits_the_receiver_has_not_seen(open_channel):
    pair = open_channel(5 * ETHER)
    pair.pay("A", ETHER)
    pair.a.record_deposit("A", ETHER)  # only alice has seen her top-up
    proposal = pair.a.propose_payment(ETHER)
    with pytest.raises(UnknownDeposit) as e:
        pair.b.receive_proposal(proposal)
    assert e.value == UnknownDeposit(6 * ETHER, 0, 5 * ETHER, 0)
    assert pair.b.nonce == 1 and pair.b.balances() == (4 * ETHER, ETHER)
    pair.b.record_deposit("A", ETHER)  # once bob has seen it, the same proposal is fine
    signed = pair.b.receive_proposal(proposal)
    pair.a.receive_countersignature(signed)
    assert pair.a.balances() == pair.b.balances() == (4 * ETHER, 2 * ETHER)


def test_off_chain_a_proposal_may_not_drop_deposits_an_earlier_state_split(open_channel, contract):
    pair = open_channel(5 * ETHER)
    pair.pay("A", ETHER)  # splits alice's 5
    state = replace(pair.a.latest.state, nonce=2, balance_a=0, balance_b=ETHER, deposit_a=ETHER)
    proposal = SignedState(state, sign_state(contract.domain, state, pair.a._key))
    with pytest.raises(MissingDeposit) as e:
        pair.b.receive_proposal(proposal)
    assert e.value == MissingDeposit(ETHER, 0, 5 * ETHER, 0)


def test_a_proposal_that_has_not_seen_a_deposit_is_judged_by_what_the_contract_pays(open_channel):
    pair = open_channel(5 * ETHER)
    proposal = pair.a.propose_payment(ETHER)  # alice 4, bob 1 of alice's 5
    pair.b.record_deposit("B", ETHER)  # bob sees his own top-up before alice's proposal arrives
    signed = pair.b.receive_proposal(proposal)  # it gives bob 1 + his 1 back: more than his 1 before
    pair.a.receive_countersignature(signed)
    pair.a.record_deposit("B", ETHER)
    assert (signed.state.deposit_a, signed.state.deposit_b) == (5 * ETHER, 0)
    assert pair.a.balances() == pair.b.balances() == (4 * ETHER, 2 * ETHER)
    nxt = pair.pay("B", ETHER)
    assert (nxt.state.deposit_a, nxt.state.deposit_b) == (5 * ETHER, ETHER)
    assert (nxt.state.balance_a, nxt.state.balance_b) == (5 * ETHER, ETHER)
