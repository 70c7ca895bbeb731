"""Withdrawing while open (contract v2): a withdrawal both signed pays its amounts out of the deposits it
names, once, until its expiry, and moves the channel's withdrawal counter on, so no state signed before it
closes or challenges any more. Every refused withdrawal reverts with its exact values and changes nothing.

Honest withdrawals go through the off-chain ``Channel`` (``propose_withdrawal``/``receive_withdrawal``);
two-sided and forged ones are signed here with ``sign_message``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from paychan.contract import STATUS_NONE, STATUS_OPEN
from paychan.exceptions import (
    ChannelNotOpen,
    InvalidSignature,
    MalleableSignature,
    StaleWithdrawal,
    UnknownDeposit,
    WithdrawalCountMismatch,
    WithdrawalExpired,
    WithdrawalTooLarge,
)
from paychan.signing import recover_digest_signer, sign_message, withdrawal_digest
from paychan.state import EMPTY_SIGNATURE, Signature, Withdrawal

from .conftest import ETHER, ChannelPair, block_time, next_block_at, tx_events

HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def through_channels(chain: Any, pair: ChannelPair, role: str, amount: int, expiry: int) -> tuple[Any, ...]:
    """``role`` withdraws ``amount`` of its balance: it proposes, the peer countersigns the withdrawal and
    the state it leaves. Returns the withdrawal and both signatures (A's, B's)."""
    own, peer = (pair.a, pair.b) if role == "A" else (pair.b, pair.a)
    withdrawal, signature, proposal = own.propose_withdrawal(amount, expiry)
    peer_signature, signed = peer.receive_withdrawal(withdrawal, signature, proposal, chain.now())
    own.receive_withdrawal_countersignature(peer_signature, signed)
    return (withdrawal, signature, peer_signature) if role == "A" else (withdrawal, peer_signature, signature)


def signed(
    contract: Any, withdrawal: Withdrawal, key_a: bytes, key_b: bytes
) -> tuple[Withdrawal, Signature, Signature]:
    return (
        withdrawal,
        sign_message(contract.domain, withdrawal, key_a),
        sign_message(contract.domain, withdrawal, key_b),
    )


def snapshot(chain: Any, contract: Any, cid: bytes, *accounts: Any, token: Any = None) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was: the slot and the ETH (and token) balances."""
    holders = [contract.address, *(a.address for a in accounts)]
    tokens = tuple(token.functions.balanceOf(h).call() for h in holders) if token is not None else ()
    return contract.get_channel(cid), tuple(chain.balance(h) for h in holders), tokens


def withdrawn_event(contract: Any, receipt: Any) -> dict[str, Any]:
    (event,) = tx_events(contract, receipt, "Withdrawn")
    return dict(event)


def _refused(chain, contract, params, sender, parts, expected, *accounts):
    cid = contract.channel_id(params)
    before = snapshot(chain, contract, cid, sender, *accounts)
    with pytest.raises(type(expected)) as e:
        contract.withdraw(sender, params, *parts)
    assert e.value == expected
    assert snapshot(chain, contract, cid, sender, *accounts) == before


# --- withdrawals made ----------------------------------------------------------------------------


def test_a_withdrawal_pays_its_proposer_while_the_channel_stays_open_and_later_states_close_it(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    pair.pay("B", ETHER // 2)  # alice holds 5.5 ether, bob 0.5
    parts = through_channels(chain, pair, "A", 2 * ETHER, chain.now() + 600)
    cid = contract.channel_id(pair.params)
    before_a, before_b, held = (chain.balance(x) for x in (alice.address, bob.address, contract.address))
    receipt = contract.withdraw(carol, pair.params, *parts)  # anyone may submit it
    assert withdrawn_event(contract, receipt) == {
        "channelId": cid,
        "withdrawals": 1,
        "amountA": 2 * ETHER,
        "amountB": 0,
        "depositA": 3 * ETHER,
        "depositB": ETHER,
    }
    assert chain.balance(alice.address) == before_a + 2 * ETHER
    assert chain.balance(bob.address) == before_b
    assert chain.balance(contract.address) == held - 2 * ETHER
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b, onchain.withdrawals) == (
        STATUS_OPEN,
        3 * ETHER,
        ETHER,
        1,
    )
    for side in (pair.a, pair.b):
        side.record_withdrawal(3 * ETHER, ETHER, 1)
    pair.pay("A", ETHER)
    final = pair.finalize()
    assert final.state.withdrawals == 1
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.cooperative_close(carol, pair.params, final)
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["payoutA"], settled["payoutB"]) == (25 * ETHER // 10, 15 * ETHER // 10)
    assert chain.balance(alice.address) == before_a + 25 * ETHER // 10
    assert chain.balance(bob.address) == before_b + 15 * ETHER // 10


def test_a_withdrawal_above_the_own_deposit_takes_the_rest_from_the_other_sides_deposit(
    chain, contract, open_channel, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    pair.pay("B", ETHER // 2)
    withdrawal, sig_a, sig_b = through_channels(chain, pair, "A", 52 * ETHER // 10, chain.now() + 600)
    assert withdrawal.deposits_after() == (0, 8 * ETHER // 10)
    receipt = contract.withdraw(carol, pair.params, withdrawal, sig_a, sig_b)
    event = withdrawn_event(contract, receipt)
    assert (event["amountA"], event["depositA"], event["depositB"]) == (52 * ETHER // 10, 0, 8 * ETHER // 10)
    onchain = contract.get_channel(contract.channel_id(pair.params))
    assert (onchain.deposit_a, onchain.deposit_b, onchain.withdrawals) == (0, 8 * ETHER // 10, 1)


def test_one_withdrawal_pays_both_sides_at_once(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER, 2 * ETHER)
    cid = contract.channel_id(pair.params)
    parts = signed(
        contract, Withdrawal(cid, ETHER, ETHER // 2, 5 * ETHER, 2 * ETHER, 0, chain.now() + 600), alice.key, bob.key
    )
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.withdraw(carol, pair.params, *parts)
    assert withdrawn_event(contract, receipt) == {
        "channelId": cid,
        "withdrawals": 1,
        "amountA": ETHER,
        "amountB": ETHER // 2,
        "depositA": 4 * ETHER,
        "depositB": 15 * ETHER // 10,
    }
    assert chain.balance(alice.address) == before_a + ETHER
    assert chain.balance(bob.address) == before_b + ETHER // 2
    assert tx_events(contract, receipt, "PayoutDeferred") == []


def test_a_token_withdrawal_transfers_the_token_and_no_ether(chain, contract, token, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER, 2 * ETHER, asset=token.address)
    pair.pay("A", ETHER)  # bob holds 3 tokens
    parts = through_channels(chain, pair, "B", 25 * ETHER // 10, chain.now() + 600)
    balance = token.functions.balanceOf
    before = [balance(x).call() for x in (alice.address, bob.address, contract.address)]
    eth_before = chain.balance(contract.address)
    receipt = contract.withdraw(carol, pair.params, *parts)
    assert withdrawn_event(contract, receipt) == {
        "channelId": contract.channel_id(pair.params),
        "withdrawals": 1,
        "amountA": 0,
        "amountB": 25 * ETHER // 10,
        "depositA": 45 * ETHER // 10,
        "depositB": 0,
    }
    assert [balance(x).call() for x in (alice.address, bob.address, contract.address)] == [
        before[0],
        before[1] + 25 * ETHER // 10,
        before[2] - 25 * ETHER // 10,
    ]
    assert chain.balance(contract.address) == eth_before == 0


def test_a_withdrawal_at_its_expiry_second_is_made(chain, contract, open_channel, alice, carol):
    pair = open_channel(5 * ETHER)
    expiry = chain.now() + 600
    parts = through_channels(chain, pair, "A", ETHER, expiry)
    next_block_at(chain, expiry)
    before = chain.balance(alice.address)
    receipt = contract.withdraw(carol, pair.params, *parts)
    assert block_time(chain, receipt) == expiry
    assert chain.balance(alice.address) == before + ETHER
    assert contract.get_channel(contract.channel_id(pair.params)).withdrawals == 1


@pytest.mark.parametrize("depositing", ["A", "B"])
def test_a_deposit_landing_between_signing_and_executing_stays_with_its_side(
    chain, contract, open_channel, alice, bob, carol, depositing
):
    pair = open_channel(5 * ETHER, ETHER)
    parts = through_channels(chain, pair, "A", 2 * ETHER, chain.now() + 600)
    assert (parts[0].deposit_a, parts[0].deposit_b) == (5 * ETHER, ETHER)
    contract.deposit(carol, pair.params, alice.address if depositing == "A" else bob.address, ETHER)
    receipt = contract.withdraw(carol, pair.params, *parts)
    deposits = (4 * ETHER, ETHER) if depositing == "A" else (3 * ETHER, 2 * ETHER)
    event = withdrawn_event(contract, receipt)
    assert (event["depositA"], event["depositB"]) == deposits
    onchain = contract.get_channel(contract.channel_id(pair.params))
    assert (onchain.deposit_a, onchain.deposit_b) == deposits
    # the state signed with the withdrawal (3 + 1 of deposits 3 + 1) pays the late deposit to its side
    latest = pair.a.latest
    assert (latest.state.balance_a, latest.state.balance_b, latest.state.deposit_a, latest.state.deposit_b) == (
        3 * ETHER,
        ETHER,
        3 * ETHER,
        ETHER,
    )
    contract.close(alice, pair.params, latest)
    next_block_at(chain, contract.get_channel(contract.channel_id(pair.params)).deadline + 1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    (settled,) = tx_events(contract, contract.settle(carol, pair.params), "ChannelSettled")
    assert (settled["payoutA"], settled["payoutB"]) == deposits
    assert chain.balance(alice.address) == before_a + deposits[0]
    assert chain.balance(bob.address) == before_b + deposits[1]


# --- refused withdrawals -------------------------------------------------------------------------


def test_replaying_a_made_withdrawal_reverts_stale_withdrawal(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER)
    parts = through_channels(chain, pair, "A", ETHER, chain.now() + 600)
    contract.withdraw(carol, pair.params, *parts)
    for sender in (carol, alice):
        _refused(chain, contract, pair.params, sender, parts, StaleWithdrawal(0, 1), alice, bob)
    assert contract.get_channel(contract.channel_id(pair.params)).deposit_a == 4 * ETHER


def test_a_withdrawal_one_second_after_its_expiry_reverts_withdrawal_expired(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    expiry = chain.now() + 600
    parts = through_channels(chain, pair, "A", ETHER, expiry)
    next_block_at(chain, expiry + 1)
    _refused(chain, contract, pair.params, carol, parts, WithdrawalExpired(expiry, expiry + 1), alice, bob)


def test_a_withdrawal_naming_another_counter_reverts_stale_withdrawal(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER, ETHER)
    cid = contract.channel_id(pair.params)
    expiry = chain.now() + 600
    ahead = signed(contract, Withdrawal(cid, ETHER, 0, 5 * ETHER, ETHER, 1, expiry), alice.key, bob.key)
    _refused(chain, contract, pair.params, carol, ahead, StaleWithdrawal(1, 0), alice, bob)
    contract.withdraw(carol, pair.params, *signed(contract, replace(ahead[0], withdrawals=0), alice.key, bob.key))
    behind = signed(contract, Withdrawal(cid, 0, ETHER, 4 * ETHER, ETHER, 0, expiry), alice.key, bob.key)
    _refused(chain, contract, pair.params, carol, behind, StaleWithdrawal(0, 1), alice, bob)
    skipping = signed(contract, Withdrawal(cid, 0, ETHER, 4 * ETHER, ETHER, 2, expiry), alice.key, bob.key)
    _refused(chain, contract, pair.params, carol, skipping, StaleWithdrawal(2, 1), alice, bob)


def test_withdrawing_more_than_the_named_deposits_reverts_withdrawal_too_large(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    cid = contract.channel_id(pair.params)
    too_large = [
        (6 * ETHER + 1, 0),  # one wei more than both deposits
        (0, 6 * ETHER + 1),
        (3 * ETHER, 3 * ETHER + 1),
        (2**256 - 1, 1),  # would wrap around in unchecked arithmetic
        (1, 2**256 - 1),
    ]
    for amount_a, amount_b in too_large:
        withdrawal = Withdrawal(cid, amount_a, amount_b, 5 * ETHER, ETHER, 0, chain.now() + 600)
        parts = signed(contract, withdrawal, alice.key, bob.key)
        expected = WithdrawalTooLarge(amount_a, amount_b, 6 * ETHER)
        _refused(chain, contract, pair.params, carol, parts, expected, alice, bob)


def test_a_withdrawal_naming_deposits_the_channel_does_not_hold_reverts_unknown_deposit(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    cid = contract.channel_id(pair.params)
    for named in ((5 * ETHER + 1, ETHER), (5 * ETHER, ETHER + 1), (0, 6 * ETHER)):
        withdrawal = Withdrawal(cid, ETHER, 0, *named, 0, chain.now() + 600)
        parts = signed(contract, withdrawal, alice.key, bob.key)
        _refused(chain, contract, pair.params, carol, parts, UnknownDeposit(*named, 5 * ETHER, ETHER), alice, bob)


def test_a_withdrawal_not_signed_by_both_participants_reverts_invalid_signature(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    cid = contract.channel_id(pair.params)
    withdrawal = Withdrawal(cid, ETHER, 0, 5 * ETHER, ETHER, 0, chain.now() + 600)
    cases = [
        (bob.key, bob.key, InvalidSignature(alice.address, bob.address)),  # bob signs both slots
        (alice.key, alice.key, InvalidSignature(bob.address, alice.address)),
        (bob.key, alice.key, InvalidSignature(alice.address, bob.address)),  # swapped
        (alice.key, carol.key, InvalidSignature(bob.address, carol.address)),  # a third party
        (carol.key, bob.key, InvalidSignature(alice.address, carol.address)),
    ]
    for key_a, key_b, expected in cases:
        _refused(chain, contract, pair.params, carol, signed(contract, withdrawal, key_a, key_b), expected, alice, bob)
    _, sig_a, sig_b = signed(contract, withdrawal, alice.key, bob.key)
    missing = (withdrawal, sig_a, EMPTY_SIGNATURE)
    _refused(chain, contract, pair.params, carol, missing, InvalidSignature(bob.address, ZERO_ADDRESS), alice, bob)


def test_a_withdrawal_altered_after_signing_reverts_invalid_signature(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER, ETHER)
    withdrawal, sig_a, sig_b = through_channels(chain, pair, "A", ETHER, chain.now() + 600)
    other = open_channel(5 * ETHER, ETHER)
    for altered in (
        replace(withdrawal, amount_a=2 * ETHER),
        replace(withdrawal, amount_b=1),
        replace(withdrawal, expiry=withdrawal.expiry + 3600),
        replace(withdrawal, channel_id=contract.channel_id(other.params)),
    ):
        # the contract hashes the channel id of the parameters it is given: the last one is a replay of the
        # first channel's signatures on the second channel
        params = pair.params if altered.channel_id == withdrawal.channel_id else other.params
        recovered = recover_digest_signer(withdrawal_digest(contract.domain, altered), sig_a)
        assert recovered != alice.address
        expected = InvalidSignature(alice.address, recovered)
        _refused(chain, contract, params, carol, (altered, sig_a, sig_b), expected, alice, bob)


def test_a_malleable_high_s_withdrawal_signature_reverts_malleable_signature(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    withdrawal, sig_a, sig_b = through_channels(chain, pair, "A", ETHER, chain.now() + 600)
    for high_s in (HALF_N + 1, 2**255 - 1):
        twin = Signature(sig_b.r, ((sig_b.vs[0] >> 7 << 255) | high_s).to_bytes(32, "big"))
        expected = MalleableSignature(high_s.to_bytes(32, "big"))
        _refused(chain, contract, pair.params, carol, (withdrawal, sig_a, twin), expected, alice, bob)


def test_a_withdrawal_from_a_closing_or_settled_channel_reverts_channel_not_open(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    parts = through_channels(chain, pair, "A", ETHER, chain.now() + 7200)
    cid = contract.channel_id(pair.params)
    contract.close(bob, pair.params)
    _refused(chain, contract, pair.params, carol, parts, ChannelNotOpen(cid), alice, bob)
    next_block_at(chain, contract.get_channel(cid).deadline + 1)
    contract.settle(carol, pair.params)
    assert contract.get_channel(cid).status == STATUS_NONE
    _refused(chain, contract, pair.params, carol, parts, ChannelNotOpen(cid), alice, bob)


# --- states from before a withdrawal -------------------------------------------------------------


def test_a_state_signed_before_the_withdrawal_cannot_close_the_channel(chain, contract, open_channel, alice, bob):
    """alice held 5.5 ether before withdrawing 2: her older state would pay her 5.5 of the 4 left."""
    pair = open_channel(5 * ETHER, ETHER)
    before_withdrawal = pair.pay("B", ETHER // 2)
    contract.withdraw(alice, pair.params, *through_channels(chain, pair, "A", 2 * ETHER, chain.now() + 600))
    cid = contract.channel_id(pair.params)
    assert pair.a.pending_withdrawal.before == before_withdrawal  # the state the withdrawal left behind
    assert before_withdrawal.state.withdrawals == 0
    for closer in (alice, bob):
        before = snapshot(chain, contract, cid, alice, bob)
        with pytest.raises(WithdrawalCountMismatch) as e:
            contract.close(closer, pair.params, before_withdrawal)
        assert e.value == WithdrawalCountMismatch(0, 1)
        assert snapshot(chain, contract, cid, alice, bob) == before


def test_a_final_state_signed_before_the_withdrawal_cannot_close_cooperatively(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    old_final = signed_state(pair.params, 1, 5 * ETHER, ETHER, True, withdrawals=0)
    contract.withdraw(carol, pair.params, *through_channels(chain, pair, "A", 2 * ETHER, chain.now() + 600))
    cid = contract.channel_id(pair.params)
    before = snapshot(chain, contract, cid, alice, bob)
    with pytest.raises(WithdrawalCountMismatch) as e:
        contract.cooperative_close(carol, pair.params, old_final)
    assert e.value == WithdrawalCountMismatch(0, 1)
    assert snapshot(chain, contract, cid, alice, bob) == before


def test_a_state_signed_before_the_withdrawal_cannot_challenge_a_close(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    stale = pair.pay("B", ETHER // 2)  # nonce 1, counter 0
    contract.withdraw(carol, pair.params, *through_channels(chain, pair, "A", 2 * ETHER, chain.now() + 600))
    # a pre-withdrawal state with a nonce above anything recorded, for the challenge not to be stale
    high = signed_state(pair.params, 99, 55 * ETHER // 10, ETHER // 2, deposits=(5 * ETHER, ETHER), withdrawals=0)
    contract.close(bob, pair.params)  # nonce 0, under counter 1
    cid = contract.channel_id(pair.params)
    for state in (stale, high):
        before = snapshot(chain, contract, cid, alice, bob)
        before_record = contract.recorded_state(cid)
        with pytest.raises(WithdrawalCountMismatch) as e:
            contract.challenge(alice, pair.params, state)
        assert e.value == WithdrawalCountMismatch(0, 1)
        assert snapshot(chain, contract, cid, alice, bob) == before
        assert contract.recorded_state(cid) == before_record
    contract.challenge(alice, pair.params, pair.a.latest)  # the state signed with the withdrawal is taken
    assert contract.recorded_state(cid).nonce == pair.a.latest.state.nonce


def test_a_state_signed_for_a_withdrawal_never_made_cannot_close_the_channel(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER, ETHER)
    pair.pay("B", ETHER // 2)
    through_channels(chain, pair, "A", 2 * ETHER, chain.now() + 600)  # signed, never submitted
    unmade = pair.a.latest
    assert unmade.state.withdrawals == 1
    cid = contract.channel_id(pair.params)
    before = snapshot(chain, contract, cid, alice, bob)
    with pytest.raises(WithdrawalCountMismatch) as e:
        contract.close(alice, pair.params, unmade)
    assert e.value == WithdrawalCountMismatch(1, 0)
    assert snapshot(chain, contract, cid, alice, bob) == before
    contract.close(alice, pair.params, pair.a.state_for_chain(0))  # the state before it still closes
    recorded = contract.recorded_state(cid)
    assert (recorded.nonce, recorded.withdrawals, recorded.balance_a, recorded.balance_b) == (
        1,
        0,
        55 * ETHER // 10,
        ETHER // 2,
    )
