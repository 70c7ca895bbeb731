"""Cooperative close: a state both signed as final pays both participants out at once."""

from __future__ import annotations

import pytest

from paychan.contract import STATUS_NONE
from paychan.exceptions import (
    BalancesNotConserved,
    ChannelNotOpen,
    FinalStateHasLocks,
    InvalidSignature,
    StateNotFinal,
)
from paychan.signing import recover_signer
from paychan.state import EMPTY_SIGNATURE, SignedState

from .conftest import ETHER, tx_events, tx_fee


def test_a_final_state_pays_both_to_the_wei_and_clears_the_channel(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER, 2 * ETHER)
    pair.pay("A", ETHER + 7)
    pair.pay("B", 3)
    final = pair.finalize()
    assert (final.state.balance_a, final.state.balance_b) == (4 * ETHER - 4, 3 * ETHER + 4)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    before_contract = chain.balance(contract.address)
    receipt = contract.cooperative_close(bob, pair.params, final)
    assert chain.balance(alice.address) == before_a + 4 * ETHER - 4
    assert chain.balance(bob.address) == before_b + 3 * ETHER + 4 - tx_fee(receipt)
    assert chain.balance(contract.address) == before_contract - 7 * ETHER
    onchain = contract.get_channel(contract.channel_id(pair.params))
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b, onchain.nonce) == (STATUS_NONE, 0, 0, 0)


def test_a_cooperative_close_emits_a_cooperative_channel_settled(contract, open_channel, alice):
    pair = open_channel(5 * ETHER)
    pair.pay("A", ETHER)
    final = pair.finalize()
    receipt = contract.cooperative_close(alice, pair.params, final)
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert dict(settled) == {
        "channelId": contract.channel_id(pair.params),
        "nonce": 2,
        "payoutA": 4 * ETHER,
        "payoutB": ETHER,
        "cooperative": True,
    }
    assert tx_events(contract, receipt, "PayoutDeferred") == []


def test_anyone_holding_both_signatures_may_submit_the_final_state(
    chain, contract, open_channel, alice, bob, watchtower
):
    pair = open_channel(3 * ETHER)
    pair.pay("A", ETHER)
    final = pair.finalize()
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    contract.cooperative_close(watchtower, pair.params, final)
    assert chain.balance(alice.address) == before_a + 2 * ETHER
    assert chain.balance(bob.address) == before_b + ETHER


def test_a_final_state_signed_before_any_payment_returns_the_deposits(chain, contract, open_channel, alice, bob):
    pair = open_channel(2 * ETHER, ETHER)
    final = pair.finalize()
    assert final.state.nonce == 1
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.cooperative_close(alice, pair.params, final)
    assert chain.balance(alice.address) == before_a + 2 * ETHER - tx_fee(receipt)
    assert chain.balance(bob.address) == before_b + ETHER


def test_a_final_state_giving_everything_to_one_side_pays_nothing_to_the_other(
    chain, contract, open_channel, alice, bob, watchtower
):
    pair = open_channel(2 * ETHER)
    pair.pay("A", 2 * ETHER)
    final = pair.finalize()
    before_a = chain.balance(alice.address)
    receipt = contract.cooperative_close(watchtower, pair.params, final)
    assert chain.balance(alice.address) == before_a
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["payoutA"], settled["payoutB"]) == (0, 2 * ETHER)


def test_an_empty_channel_closes_cooperatively(contract, signed_state, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, 0)
    receipt = contract.cooperative_close(alice, params, signed_state(params, 0, 0, 0, is_final=True))
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (0, 0, 0)


def test_a_state_not_signed_as_final_is_rejected(contract, open_channel, alice):
    pair = open_channel(5 * ETHER)
    signed = pair.pay("A", ETHER)
    with pytest.raises(StateNotFinal) as e:
        contract.cooperative_close(alice, pair.params, signed)
    assert e.value == StateNotFinal(1)


def test_a_final_state_whose_balances_do_not_add_up_is_rejected(contract, open_channel, signed_state, alice):
    pair = open_channel(5 * ETHER, ETHER)
    with pytest.raises(BalancesNotConserved) as e:
        contract.cooperative_close(alice, pair.params, signed_state(pair.params, 3, 5 * ETHER, 2 * ETHER, True))
    assert e.value == BalancesNotConserved(5 * ETHER, 2 * ETHER, 6 * ETHER)
    with pytest.raises(BalancesNotConserved) as e:
        contract.cooperative_close(alice, pair.params, signed_state(pair.params, 3, 7 * ETHER, 0, True))
    assert e.value == BalancesNotConserved(7 * ETHER, 0, 6 * ETHER)


def test_a_balance_above_the_total_cannot_wrap_around_to_conserve(contract, open_channel, signed_state, alice):
    pair = open_channel(ETHER)
    wrapped = 2**256 - ETHER  # balanceA + balanceB == total modulo 2**256
    with pytest.raises(BalancesNotConserved) as e:
        contract.cooperative_close(alice, pair.params, signed_state(pair.params, 1, wrapped, 2 * ETHER, True))
    assert e.value == BalancesNotConserved(wrapped, 2 * ETHER, ETHER)


def test_a_final_state_with_a_locks_root_is_rejected(contract, open_channel, signed_state, alice):
    pair = open_channel(ETHER)
    root = b"\x11" * 32
    with pytest.raises(FinalStateHasLocks) as e:
        contract.cooperative_close(alice, pair.params, signed_state(pair.params, 1, ETHER, 0, True, locks_root=root))
    assert e.value == FinalStateHasLocks(0, 0, root)


def test_a_final_state_with_locked_amounts_is_rejected(contract, open_channel, signed_state, alice):
    pair = open_channel(ETHER)
    with pytest.raises(FinalStateHasLocks) as e:
        contract.cooperative_close(alice, pair.params, signed_state(pair.params, 1, ETHER - 5, 0, True, locked_a=5))
    assert e.value == FinalStateHasLocks(5, 0, bytes(32))


def test_a_final_state_signed_by_someone_other_than_a_is_rejected(contract, open_channel, signed_state, alice, carol):
    pair = open_channel(ETHER)
    forged = signed_state(pair.params, 1, 0, ETHER, True, key_a=carol.key)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, forged)
    assert e.value == InvalidSignature(alice.address, carol.address)


def test_a_final_state_signed_by_someone_other_than_b_is_rejected(contract, open_channel, signed_state, bob, carol):
    pair = open_channel(ETHER)
    forged = signed_state(pair.params, 1, ETHER, 0, True, key_b=carol.key)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(bob, pair.params, forged)
    assert e.value == InvalidSignature(bob.address, carol.address)


def test_a_final_state_signed_twice_by_one_participant_is_rejected(contract, open_channel, signed_state, alice, bob):
    pair = open_channel(ETHER)
    forged = signed_state(pair.params, 1, 0, ETHER, True, key_b=alice.key)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, forged)
    assert e.value == InvalidSignature(bob.address, alice.address)


def test_a_final_state_missing_a_signature_is_rejected(contract, open_channel, alice, bob):
    pair = open_channel(ETHER)
    proposal = pair.a.propose_final()  # alice's signature only
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, proposal)
    assert e.value == InvalidSignature(bob.address, "0x0000000000000000000000000000000000000000")


def test_a_signature_over_other_balances_recovers_someone_else(contract, open_channel, signed_state, alice):
    pair = open_channel(2 * ETHER)
    honest = signed_state(pair.params, 1, ETHER, ETHER, True)
    altered = SignedState(signed_state(pair.params, 1, 2 * ETHER, 0, True).state, honest.sig_a, honest.sig_b)
    recovered = recover_signer(contract.domain, altered.state, honest.sig_a)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, altered)
    assert e.value == InvalidSignature(alice.address, recovered)


def test_the_zero_signature_recovers_the_zero_address(contract, open_channel, signed_state, alice):
    pair = open_channel(ETHER)
    signed = signed_state(pair.params, 1, ETHER, 0, True)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, SignedState(signed.state, EMPTY_SIGNATURE, signed.sig_b))
    assert e.value == InvalidSignature(alice.address, "0x0000000000000000000000000000000000000000")


def test_a_second_cooperative_close_is_rejected(contract, open_channel, alice):
    pair = open_channel(ETHER)
    final = pair.finalize()
    contract.cooperative_close(alice, pair.params, final)
    with pytest.raises(ChannelNotOpen) as e:
        contract.cooperative_close(alice, pair.params, final)
    assert e.value == ChannelNotOpen(contract.channel_id(pair.params))


def test_a_cooperative_close_of_a_closing_channel_is_rejected(contract, open_channel, alice):
    pair = open_channel(ETHER)
    final = pair.finalize()
    contract.close(alice, pair.params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.cooperative_close(alice, pair.params, final)
    assert e.value == ChannelNotOpen(contract.channel_id(pair.params))


def test_a_rejected_cooperative_close_moves_no_funds(chain, contract, open_channel, alice):
    pair = open_channel(ETHER)
    signed = pair.pay("A", 1)
    cid = contract.channel_id(pair.params)
    before, before_contract = contract.get_channel(cid), chain.balance(contract.address)
    with pytest.raises(StateNotFinal):
        contract.cooperative_close(alice, pair.params, signed, gas=200_000)  # mined and reverted
    assert contract.get_channel(cid) == before
    assert chain.balance(contract.address) == before_contract
