"""The adversarial catalog: one test per attack on the contract, each named after the attack.

Attackers: a participant (stale states, replayed or forged signatures, griefing, front-running), a third
party, a malicious token (returning false or nothing, taking a fee, re-entering from a transfer hook) and a
malicious payout recipient (re-entering, rejecting ETH, burning gas in a token transfer hook). Every test
asserts the exact custom error with its arguments, or the exact payouts; the ``contract`` fixture then checks
that no funds were created or lost.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from web3.logs import DISCARD

from paychan.contract import OUTCOME_SALT_WORD, STATUS_CLOSING, STATUS_NONE, PaychanContract, RecordedState
from paychan.exceptions import (
    BalancesNotConserved,
    ChallengePeriodActive,
    ChallengePeriodOver,
    ChannelNotClosing,
    ChannelNotOpen,
    DepositTooLarge,
    FinalStateHasLocks,
    InvalidCounterparty,
    InvalidSignature,
    MalleableSignature,
    NothingToClaim,
    NotParticipant,
    PayoutFailed,
    RecordMismatch,
    Reentrancy,
    StaleState,
    StateNotFinal,
    TokenTransferFailed,
    UnexpectedNonce,
    ValueMismatch,
)
from paychan.signing import Domain, recover_signer, sign_state
from paychan.state import EMPTY_SIGNATURE, ETH, ChannelState, Nonce, Signature, SignedState, Wei, channel_id

from .conftest import ETHER, PERIOD, assert_conservation, deploy_test_contract, record_mismatch, send_fn

MAX_DEPOSIT = 2**116 - 1
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
GAS = 1_000_000


# --- helpers -------------------------------------------------------------------------------------


def at_second(chain: Any, timestamp: int) -> None:
    """Makes the next block (and calls on the pending block) carry exactly ``timestamp``."""
    if chain.tester is not None:
        chain.tester.time_travel(timestamp)
    else:
        chain.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])


def assert_mined_at(chain: Any, receipt: Any, timestamp: int) -> None:
    assert chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == timestamp


def reentries(attacker: Any, receipt: Any) -> list[tuple[bool, bytes]]:
    """The re-entries ``attacker`` attempted in the transaction of ``receipt``: (success, returned data)."""
    events = attacker.events.ReentryAttempted().process_receipt(receipt, errors=DISCARD)
    return [(e["args"]["success"], bytes(e["args"]["result"])) for e in events]


def fee_of(receipt: Any) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def settle_args(recorded: RecordedState) -> tuple[Any, ...]:
    """``settle``'s arguments after the channel: the recorded outcome, funds, closer's nonce and no locks."""
    return recorded.as_outcome(), recorded.funds, recorded.closer_nonce, b""


def encode(contract: PaychanContract, fn: str, *args: Any) -> str:
    return contract.contract.encode_abi(fn, args=list(args))


def deploy(chain, deployer, artifacts, name: str, *args: Any) -> Any:
    return deploy_test_contract(chain, deployer, artifacts[name], *args)


def fund_token(chain, token, contract, *holders, amount: int = 1_000 * ETHER) -> None:
    for holder in holders:
        send_fn(chain, holder, token.functions.mint(holder.address, amount))
        send_fn(chain, holder, token.functions.approve(contract.address, 2**256 - 1))


def token_balance(token, address: str) -> int:
    return int(token.functions.balanceOf(address).call())


def closing_deadline(contract: PaychanContract, params) -> int:
    onchain = contract.get_channel(contract.channel_id(params))
    assert onchain.status == STATUS_CLOSING
    return onchain.deadline


# --- signatures ----------------------------------------------------------------------------------


def test_signature_replay_on_another_channel_of_the_same_pair_reverts_invalid_signature(contract, open_channel, alice):
    first = open_channel(5 * ETHER)
    second = open_channel(5 * ETHER)
    signed = first.pay("A", 2 * ETHER)  # both signed it for the first channel
    replayed_state = replace(signed.state, channel_id=contract.channel_id(second.params))
    recovered = recover_signer(contract.domain, replayed_state, signed.sig_a)
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, second.params, signed)
    assert e.value == InvalidSignature(alice.address, recovered)
    assert recovered != alice.address


def test_signature_replay_on_another_contract_reverts_invalid_signature(
    chain, contract, deployer, artifacts, open_channel, alice, bob
):
    pair = open_channel(5 * ETHER)
    signed = pair.pay("A", 2 * ETHER)
    other, _ = PaychanContract.deploy(chain, deployer, artifacts["PaymentChannels"])
    other_params, _ = other.open_channel(alice, bob.address, 5 * ETHER)
    replayed_state = replace(signed.state, channel_id=other.channel_id(other_params))
    recovered = recover_signer(other.domain, replayed_state, signed.sig_a)
    with pytest.raises(InvalidSignature) as e:
        other.close(alice, other_params, signed)
    assert e.value == InvalidSignature(alice.address, recovered)
    assert recovered != alice.address


def test_signature_replay_from_another_chain_id_reverts_invalid_signature(contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER)
    foreign = Domain(chain_id=1, verifying_contract=contract.address)
    foreign_id = channel_id(pair.params, 1, contract.address)
    state = ChannelState(
        foreign_id, Nonce(1), Wei(3 * ETHER), Wei(2 * ETHER), deposit_a=Wei(5 * ETHER), deposit_b=Wei(0)
    )
    signed = SignedState(state, sign_state(foreign, state, alice.key), sign_state(foreign, state, bob.key))
    here = replace(state, channel_id=contract.channel_id(pair.params))
    recovered = recover_signer(contract.domain, here, signed.sig_a)
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, pair.params, signed)
    assert e.value == InvalidSignature(alice.address, recovered)
    assert recovered != alice.address


def test_malleable_high_s_signature_reverts_malleable_signature(contract, open_channel, bob):
    pair = open_channel(5 * ETHER)
    signed = pair.pay("A", 2 * ETHER)
    sig = signed.sig_a
    assert sig is not None
    # Any s in (N/2, 2**255) is refused before recovery, on chain and off chain alike.
    for high_s in (HALF_N + 1, 2**255 - 1):
        for v_bit in (0, 1):
            twin = Signature(sig.r, ((v_bit << 255) | high_s).to_bytes(32, "big"))
            with pytest.raises(MalleableSignature) as e:
                contract.close(bob, pair.params, replace(signed, sig_a=twin))
            assert e.value == MalleableSignature(high_s.to_bytes(32, "big"))
            with pytest.raises(MalleableSignature) as e:
                recover_signer(contract.domain, signed.state, twin)
            assert e.value == MalleableSignature(high_s.to_bytes(32, "big"))
    # The classic twin (r, N - s, flipped v) has s >= 2**255 here: EIP-2098 cannot even carry it, and the
    # 255 bits that fit recover another address.
    high_s = SECP256K1_N - sig.s
    assert high_s >= 2**255
    twin = Signature.from_vrs(1 - (sig.v - 27), int.from_bytes(sig.r, "big"), high_s)
    recovered = recover_signer(contract.domain, signed.state, twin)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, pair.params, replace(signed, sig_a=twin))
    assert e.value == InvalidSignature(alice_of(pair), recovered)
    assert recovered != alice_of(pair)


def alice_of(pair) -> str:
    return pair.params.participant_a


def test_zero_signature_reverts_invalid_signature_recovering_the_zero_address(contract, open_channel, bob):
    pair = open_channel(5 * ETHER)
    signed = pair.pay("A", 2 * ETHER)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, pair.params, replace(signed, sig_a=EMPTY_SIGNATURE))
    assert e.value == InvalidSignature(pair.params.participant_a, ZERO_ADDRESS)
    zero_s = Signature(signed.sig_a.r, b"\x00" * 32)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, pair.params, replace(signed, sig_a=zero_s))
    assert e.value == InvalidSignature(pair.params.participant_a, ZERO_ADDRESS)


def test_state_signed_by_one_party_only_reverts_invalid_signature(contract, open_channel, signed_state, alice, bob):
    pair = open_channel(5 * ETHER)
    one_sided = signed_state(pair.params, 1, ETHER, 4 * ETHER, key_b=alice.key)  # alice signs both slots
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, pair.params, one_sided)
    assert e.value == InvalidSignature(bob.address, alice.address)
    missing = replace(one_sided, sig_b=None)
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, pair.params, missing)
    assert e.value == InvalidSignature(bob.address, ZERO_ADDRESS)


def test_state_countersigned_by_a_third_party_reverts_invalid_signature(
    contract, open_channel, signed_state, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    forged = signed_state(pair.params, 1, 5 * ETHER, 0, key_b=carol.key)
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, pair.params, forged)
    assert e.value == InvalidSignature(bob.address, carol.address)
    forged_a = signed_state(pair.params, 1, 0, 5 * ETHER, key_a=carol.key)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, pair.params, forged_a)
    assert e.value == InvalidSignature(alice.address, carol.address)


def test_third_party_cannot_start_a_unilateral_close_reverts_not_participant(contract, open_channel, carol):
    pair = open_channel(5 * ETHER)
    cid = contract.channel_id(pair.params)
    with pytest.raises(NotParticipant) as e:
        contract.close(carol, pair.params)
    assert e.value == NotParticipant(cid, carol.address)


# --- balances and nonces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance_a", "balance_b"),
    [
        (5 * ETHER, 1),  # one wei more than the deposits
        (2 * ETHER, 2 * ETHER),  # one ether less
        (2**256 - 1, 5 * ETHER + 1),  # would wrap around to the total in unchecked arithmetic
        (5 * ETHER + 1, 2**256 - 1),
    ],
)
def test_balances_that_do_not_sum_to_deposits_revert_balances_not_conserved(
    contract, open_channel, signed_state, alice, balance_a, balance_b
):
    pair = open_channel(3 * ETHER, 2 * ETHER)
    forged = signed_state(pair.params, 1, balance_a, balance_b)
    with pytest.raises(BalancesNotConserved) as e:
        contract.close(alice, pair.params, forged)
    assert e.value == BalancesNotConserved(balance_a, balance_b, 5 * ETHER)


def test_a_state_with_locks_closes_unless_it_is_final_which_reverts_final_state_has_locks(
    contract, open_channel, signed_state, alice
):
    pair = open_channel(5 * ETHER)
    root = b"\x11" * 32
    final = signed_state(pair.params, 1, 3 * ETHER, ETHER, True, locks_root=root, locked_a=ETHER)
    with pytest.raises(FinalStateHasLocks) as e:
        contract.close(alice, pair.params, final)
    assert e.value == FinalStateHasLocks(ETHER, 0, root)
    contract.close(alice, pair.params, signed_state(pair.params, 1, 3 * ETHER, ETHER, locks_root=root, locked_a=ETHER))
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    assert (recorded.balance_a, recorded.balance_b, recorded.locked_a, recorded.locked_b, recorded.locks_root) == (
        3 * ETHER,
        ETHER,
        ETHER,
        0,
        root,
    )


def test_nonce_reuse_with_different_balances_is_stale_on_chain_and_refused_off_chain(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    for_alice = signed_state(pair.params, 2, 4 * ETHER, ETHER)
    for_bob = signed_state(pair.params, 2, ETHER, 4 * ETHER)
    contract.close(alice, pair.params, for_alice)
    with pytest.raises(StaleState) as e:
        contract.challenge(bob, pair.params, for_bob)
    assert e.value == StaleState(2, 2)
    # Off chain a participant never countersigns a second state with a nonce already signed.
    signed = pair.pay("A", ETHER)
    reused = SignedState(replace(signed.state, balance_a=Wei(5 * ETHER), balance_b=Wei(0)))
    reused = reused.with_signature("B", sign_state(contract.domain, reused.state, bob.key))
    with pytest.raises(UnexpectedNonce) as e:
        pair.a.receive_proposal(reused)
    assert (e.value.received, e.value.expected) == (1, 2)
    # The first state recorded for nonce 2 is the one paid out.
    chain.time_travel(PERIOD + 1)
    before = chain.balance(alice.address), chain.balance(bob.address)
    contract.settle(carol, pair.params)
    assert chain.balance(alice.address) - before[0] == 4 * ETHER
    assert chain.balance(bob.address) - before[1] == ETHER


def test_submitting_a_state_older_than_the_recorded_one_reverts_stale_state(contract, open_channel, bob, alice):
    pair = open_channel(5 * ETHER)
    old = pair.pay("A", ETHER)
    new = pair.pay("A", ETHER)
    contract.close(bob, pair.params, new)
    with pytest.raises(StaleState) as e:
        contract.challenge(alice, pair.params, old)
    assert e.value == StaleState(1, 2)


def test_closing_with_a_signed_nonce_zero_state_reverts_stale_state(contract, open_channel, signed_state, alice):
    pair = open_channel(5 * ETHER)
    zero = signed_state(pair.params, 0, 5 * ETHER, 0)
    fn = contract.contract.functions.close(
        pair.params.as_tuple(), zero.state.as_tuple(), zero.sig_a.as_tuple(), zero.sig_b.as_tuple()
    )
    with pytest.raises(StaleState) as e:
        contract._transact(alice, fn)
    assert e.value == StaleState(0, 0)


def test_settling_with_forged_recorded_balances_reverts_record_mismatch(chain, contract, open_channel, alice, carol):
    pair = open_channel(5 * ETHER)
    contract.close(alice, pair.params)
    chain.time_travel(PERIOD + 1)
    salt = contract.recorded_state(contract.channel_id(pair.params)).salt
    forged = RecordedState(0, 0, 5 * ETHER, 0, 5 * ETHER, 0, salt)  # B paid what A deposited
    fn = contract.contract.functions.settle(
        pair.params.as_tuple(), forged.as_outcome(), forged.funds, forged.closer_nonce, b""
    )
    with pytest.raises(RecordMismatch) as e:
        contract._transact(carol, fn)
    assert e.value == record_mismatch(contract, pair.params, forged)


def test_a_record_whose_salt_word_has_dirty_high_bits_reverts_record_mismatch(
    chain, contract, open_channel, alice, carol
):
    """The record is hashed as passed: the right salt with bits above its 64 set does not verify."""
    pair = open_channel(5 * ETHER)
    contract.close(alice, pair.params)
    chain.time_travel(PERIOD + 1)
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    settle = contract.contract.functions.settle(
        pair.params.as_tuple(), recorded.as_outcome(), recorded.funds, recorded.closer_nonce, b""
    )
    clean = bytes.fromhex(settle._encode_transaction_data().removeprefix("0x"))
    word = OUTCOME_SALT_WORD
    dirty = clean[: word.start] + (recorded.salt | 1 << 64).to_bytes(32, "big") + clean[word.stop :]
    call = {"from": carol.address, "to": contract.address}
    assert chain.w3.eth.call({**call, "data": clean}, "pending") == b""  # the clean record settles
    with pytest.raises(RecordMismatch) as e:
        try:
            chain.w3.eth.call({**call, "data": dirty}, "pending")
        except Exception as exc:
            contract.errors.reraise(exc)
    fingerprint = contract.get_channel(contract.channel_id(pair.params)).fingerprint
    assert e.value.recorded == fingerprint != e.value.passed


def test_cooperative_close_with_a_non_final_state_reverts_state_not_final(contract, open_channel, carol):
    pair = open_channel(5 * ETHER)
    signed = pair.pay("A", ETHER)
    with pytest.raises(StateNotFinal) as e:
        contract.cooperative_close(carol, pair.params, signed)
    assert e.value == StateNotFinal(1)


# --- opening -------------------------------------------------------------------------------------


def test_counterparty_equal_to_opener_reverts_invalid_counterparty(contract, alice):
    with pytest.raises(InvalidCounterparty) as e:
        contract.open_channel(alice, alice.address, ETHER)
    assert e.value == InvalidCounterparty(alice.address)


def test_zero_address_counterparty_reverts_invalid_counterparty(contract, alice):
    with pytest.raises(InvalidCounterparty) as e:
        contract.open_channel(alice, ZERO_ADDRESS, ETHER)
    assert e.value == InvalidCounterparty(ZERO_ADDRESS)


def test_deposit_overflow_past_the_maximum_reverts_deposit_too_large(chain, contract, token, alice, bob, carol):
    send_fn(chain, alice, token.functions.mint(alice.address, 2**121))
    send_fn(chain, bob, token.functions.mint(bob.address, 2**121))
    with pytest.raises(DepositTooLarge) as e:
        contract.open_channel(alice, bob.address, MAX_DEPOSIT + 1, asset=token.address)
    assert e.value == DepositTooLarge(0, MAX_DEPOSIT + 1, MAX_DEPOSIT)
    params, _ = contract.open_channel(alice, bob.address, MAX_DEPOSIT, asset=token.address)
    with pytest.raises(DepositTooLarge) as e:
        contract.deposit(alice, params, alice.address, 1)
    assert e.value == DepositTooLarge(MAX_DEPOSIT, 1, MAX_DEPOSIT)
    contract.deposit(bob, params, bob.address, MAX_DEPOSIT - 5)
    with pytest.raises(DepositTooLarge) as e:
        contract.deposit(carol, params, bob.address, 6)
    assert e.value == DepositTooLarge(MAX_DEPOSIT - 5, 6, MAX_DEPOSIT)
    with pytest.raises(TokenTransferFailed) as e:  # more than anyone holds
        contract.deposit(alice, params, bob.address, 2**256 - 1)
    assert e.value == TokenTransferFailed(token.address, alice.address, 2**256 - 1)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (MAX_DEPOSIT, MAX_DEPOSIT - 5)


def test_deposit_with_ether_that_does_not_match_the_amount_reverts_value_mismatch(contract, open_channel, alice, token):
    pair = open_channel(ETHER)
    fn = contract.contract.functions.deposit(pair.params.as_tuple(), alice.address, ETHER)
    with pytest.raises(ValueMismatch) as e:
        contract._transact(alice, fn, value=ETHER - 1)
    assert e.value == ValueMismatch(ETHER - 1, ETHER)
    fn = contract.contract.functions.open(pair.params.participant_b, token.address, PERIOD, 10)
    with pytest.raises(ValueMismatch) as e:
        contract._transact(alice, fn, value=10)
    assert e.value == ValueMismatch(10, 0)


# --- the deadline, to the second -----------------------------------------------------------------


def test_close_records_a_deadline_exactly_one_challenge_period_after_its_block(chain, contract, open_channel, alice):
    pair = open_channel(5 * ETHER)
    closed_at = chain.now() + 1000
    at_second(chain, closed_at)
    receipt = contract.close(alice, pair.params, gas=GAS)
    assert_mined_at(chain, receipt, closed_at)
    assert closing_deadline(contract, pair.params) == closed_at + PERIOD
    assert contract.recorded_state(contract.channel_id(pair.params)).deadline == closed_at + PERIOD


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_second_close_one_second_before_at_or_after_the_deadline_reverts_channel_not_open(
    chain, contract, open_channel, alice, bob, offset
):
    """A close cannot restart the period: once closing, another close (with a newer state, by the other
    side) is refused at every second around the deadline, and the record and deadline stay."""
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", ETHER)
    contract.close(alice, pair.params, stale)
    cid = contract.channel_id(pair.params)
    deadline, recorded = closing_deadline(contract, pair.params), contract.recorded_state(cid)
    at_second(chain, deadline + offset)
    with pytest.raises(ChannelNotOpen) as e:
        contract.close(bob, pair.params, latest)
    assert e.value == ChannelNotOpen(cid)
    assert (closing_deadline(contract, pair.params), contract.recorded_state(cid)) == (deadline, recorded)


@pytest.mark.parametrize("offset", [-1, 0])
def test_challenge_one_second_before_and_at_the_deadline_is_accepted(chain, contract, open_channel, alice, bob, offset):
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", ETHER)
    contract.close(alice, pair.params, stale)
    deadline = closing_deadline(contract, pair.params)
    at_second(chain, deadline + offset)
    receipt = contract.challenge(bob, pair.params, latest, gas=GAS)
    assert_mined_at(chain, receipt, deadline + offset)
    assert contract.recorded_state(contract.channel_id(pair.params)).nonce == 2
    assert closing_deadline(contract, pair.params) == deadline


def test_challenge_one_second_after_the_deadline_reverts_challenge_period_over(
    chain, contract, open_channel, alice, bob
):
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", ETHER)
    contract.close(alice, pair.params, stale)
    deadline = closing_deadline(contract, pair.params)
    at_second(chain, deadline + 1)
    with pytest.raises(ChallengePeriodOver) as e:
        contract.challenge(bob, pair.params, latest)
    assert e.value == ChallengePeriodOver(deadline, deadline + 1)


@pytest.mark.parametrize("offset", [-1, 0])
def test_settle_one_second_before_and_at_the_deadline_reverts_challenge_period_active(
    chain, contract, open_channel, alice, carol, offset
):
    pair = open_channel(5 * ETHER)
    contract.close(alice, pair.params)
    deadline = closing_deadline(contract, pair.params)
    at_second(chain, deadline + offset)
    with pytest.raises(ChallengePeriodActive) as e:
        contract.settle(carol, pair.params)
    assert e.value == ChallengePeriodActive(deadline, deadline + offset)


def test_settle_one_second_after_the_deadline_pays_the_recorded_state(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER)
    signed = pair.pay("A", 2 * ETHER)
    contract.close(bob, pair.params, signed)
    deadline = closing_deadline(contract, pair.params)
    before = chain.balance(alice.address), chain.balance(bob.address)
    at_second(chain, deadline + 1)
    receipt = contract.settle(carol, pair.params, gas=GAS)
    assert_mined_at(chain, receipt, deadline + 1)
    assert chain.balance(alice.address) - before[0] == 3 * ETHER
    assert chain.balance(bob.address) - before[1] == 2 * ETHER


# --- after settlement ----------------------------------------------------------------------------


def test_double_settle_reverts_channel_not_closing(chain, contract, open_channel, alice, carol):
    pair = open_channel(5 * ETHER)
    contract.close(alice, pair.params)
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    chain.time_travel(PERIOD + 1)
    contract.settle(carol, pair.params, recorded)
    with pytest.raises(ChannelNotClosing) as e:
        contract.settle(carol, pair.params, recorded)
    assert e.value == ChannelNotClosing(contract.channel_id(pair.params))


def test_challenge_after_settle_reverts_channel_not_closing(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", ETHER)
    contract.close(alice, pair.params, stale)
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    chain.time_travel(PERIOD + 1)
    contract.settle(carol, pair.params, recorded)
    with pytest.raises(ChannelNotClosing) as e:
        contract.challenge(bob, pair.params, latest, recorded)
    assert e.value == ChannelNotClosing(contract.channel_id(pair.params))


def test_reopening_a_settled_channel_by_its_parameters_reverts_channel_not_open(
    chain, contract, open_channel, alice, carol
):
    pair = open_channel(5 * ETHER)
    final = pair.finalize()
    contract.cooperative_close(carol, pair.params, final)
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(alice, pair.params, alice.address, ETHER)
    assert e.value == ChannelNotOpen(contract.channel_id(pair.params))
    with pytest.raises(ChannelNotOpen) as e:
        contract.cooperative_close(carol, pair.params, final)
    assert e.value == ChannelNotOpen(contract.channel_id(pair.params))


# --- griefing and front-running ------------------------------------------------------------------


def test_griefing_challenges_cannot_delay_settlement_beyond_the_original_deadline(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(10 * ETHER)
    states = [pair.pay("A", ETHER) for _ in range(6)]
    contract.close(alice, pair.params, states[0])
    deadline = closing_deadline(contract, pair.params)
    for signed in states[1:-1]:  # bob keeps submitting newer states, the last one at the deadline second
        contract.challenge(bob, pair.params, signed, gas=GAS)
        assert closing_deadline(contract, pair.params) == deadline
    with pytest.raises(StaleState) as e:  # resubmitting the same state does not help either
        contract.challenge(bob, pair.params, states[-2])
    assert e.value == StaleState(5, 5)
    at_second(chain, deadline)
    receipt = contract.challenge(bob, pair.params, states[-1], gas=GAS)
    assert_mined_at(chain, receipt, deadline)
    assert closing_deadline(contract, pair.params) == deadline
    before = chain.balance(alice.address), chain.balance(bob.address)
    at_second(chain, deadline + 1)
    receipt = contract.settle(carol, pair.params, gas=GAS)
    assert_mined_at(chain, receipt, deadline + 1)
    assert chain.balance(alice.address) - before[0] == 4 * ETHER
    assert chain.balance(bob.address) - before[1] == 6 * ETHER


def test_front_running_a_cooperative_close_with_a_stale_unilateral_close_pays_the_final_state(
    chain, contract, open_channel, alice, bob
):
    pair = open_channel(5 * ETHER, 1 * ETHER)
    stale = pair.pay("A", ETHER)  # A 4, B 2: better for alice than what follows
    pair.pay("A", 2 * ETHER)
    final = pair.finalize()  # A 2, B 4, final
    assert (final.state.balance_a, final.state.balance_b) == (2 * ETHER, 4 * ETHER)
    contract.close(alice, pair.params, stale)  # alice's close lands before bob's cooperative close
    cid = contract.channel_id(pair.params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.cooperative_close(bob, pair.params, final)
    assert e.value == ChannelNotOpen(cid)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.challenge(bob, pair.params, final)  # a final state pays out at once
    assert chain.balance(alice.address) - before_a == 2 * ETHER
    assert chain.balance(bob.address) - before_b == 4 * ETHER - fee_of(receipt)
    assert contract.get_channel(cid).status == STATUS_NONE


# --- malicious payout recipients -----------------------------------------------------------------


@pytest.fixture
def receiver_channel(chain, contract, deployer, artifacts, alice, carol):
    """An ETH channel alice (5) → a ReentrantReceiver contract (2, paid in by carol), closed by alice."""
    receiver = deploy(chain, deployer, artifacts, "ReentrantReceiver")
    params, _ = contract.open_channel(alice, receiver.address, 5 * ETHER)
    contract.deposit(carol, params, receiver.address, 2 * ETHER)
    contract.close(alice, params)
    chain.time_travel(PERIOD + 1)
    return receiver, params


def test_reentrancy_from_a_recipient_into_settle_during_payout_reverts_reentrancy_and_pays_once(
    chain, contract, receiver_channel, alice, carol
):
    receiver, params = receiver_channel
    settle_again = encode(
        contract, "settle", params.as_tuple(), *settle_args(contract.recorded_state(contract.channel_id(params)))
    )
    send_fn(chain, carol, receiver.functions.setAttack(contract.address, settle_again, False))
    before = chain.balance(alice.address)
    receipt = contract.settle(carol, params, gas=GAS)
    ((success, result),) = reentries(receiver, receipt)
    assert not success and contract.errors.decode(result) == Reentrancy()
    assert receiver.functions.attempts().call() == 1
    assert chain.balance(receiver.address) == 2 * ETHER
    assert chain.balance(alice.address) - before == 5 * ETHER
    assert contract.owed(receiver.address) == 0


def test_reentrancy_from_a_recipient_into_close_during_payout_finds_the_channel_gone(
    chain, contract, receiver_channel, carol
):
    receiver, params = receiver_channel
    close_again = encode(contract, "closeWithoutState", params.as_tuple())  # `close` has no guard: CEI protects it
    send_fn(chain, carol, receiver.functions.setAttack(contract.address, close_again, False))
    receipt = contract.settle(carol, params, gas=GAS)
    ((success, result),) = reentries(receiver, receipt)
    assert not success and contract.errors.decode(result) == ChannelNotOpen(contract.channel_id(params))
    assert chain.balance(receiver.address) == 2 * ETHER
    assert contract.get_channel(contract.channel_id(params)).status == STATUS_NONE


def test_reentrancy_from_a_rejecting_recipient_defers_its_payout_and_still_pays_the_other_party(
    chain, contract, receiver_channel, alice, carol
):
    receiver, params = receiver_channel
    settle_again = encode(
        contract, "settle", params.as_tuple(), *settle_args(contract.recorded_state(contract.channel_id(params)))
    )
    send_fn(chain, carol, receiver.functions.setAttack(contract.address, settle_again, True))
    before = chain.balance(alice.address)
    receipt = contract.settle(carol, params, gas=GAS)
    (deferred,) = contract.contract.events.PayoutDeferred().process_receipt(receipt, errors=DISCARD)
    assert deferred["args"]["recipient"] == receiver.address and deferred["args"]["amount"] == 2 * ETHER
    assert chain.balance(alice.address) - before == 5 * ETHER
    assert chain.balance(receiver.address) == 0
    assert contract.owed(receiver.address) == 2 * ETHER


def test_reentrancy_from_a_recipient_into_claim_during_claim_reverts_reentrancy_and_pays_once(
    chain, contract, receiver_channel, carol
):
    receiver, params = receiver_channel
    settle_again = encode(
        contract, "settle", params.as_tuple(), *settle_args(contract.recorded_state(contract.channel_id(params)))
    )
    send_fn(chain, carol, receiver.functions.setAttack(contract.address, settle_again, True))
    contract.settle(carol, params, gas=GAS)
    assert contract.owed(receiver.address) == 2 * ETHER
    claim = encode(contract, "claim", ETH, receiver.address)
    send_fn(chain, carol, receiver.functions.setAttack(contract.address, claim, False))
    receipt = send_fn(chain, carol, receiver.functions.execute(contract.address, claim))
    ((success, result),) = reentries(receiver, receipt)
    assert not success and contract.errors.decode(result) == Reentrancy()
    assert chain.balance(receiver.address) == 2 * ETHER
    assert contract.owed(receiver.address) == 0
    fn = contract.contract.functions.claim(ETH, receiver.address)
    with pytest.raises(NothingToClaim) as e:  # and there is nothing left to claim a second time
        try:
            fn.call({"from": receiver.address})
        except Exception as exc:
            contract.errors.reraise(exc)
    assert e.value == NothingToClaim(receiver.address, ETH)


# --- malicious tokens ----------------------------------------------------------------------------


def test_reentrancy_from_a_token_transfer_hook_during_deposit_reverts_reentrancy_and_credits_once(
    chain, contract, deployer, artifacts, alice, bob
):
    token = deploy(chain, deployer, artifacts, "ReentrantToken")
    fund_token(chain, token, contract, alice)
    params, _ = contract.open_channel(alice, bob.address, 100, asset=token.address)
    deposit_again = encode(contract, "deposit", params.as_tuple(), alice.address, 50)
    send_fn(chain, alice, token.functions.setAttack(contract.address, deposit_again, False))
    receipt = contract.deposit(alice, params, alice.address, 10, gas=GAS)
    ((success, result),) = reentries(token, receipt)
    assert not success and contract.errors.decode(result) == Reentrancy()
    assert contract.get_channel(contract.channel_id(params)).deposit_a == 110
    assert token_balance(token, contract.address) == 110
    # A hook that turns the failed re-entry into a failed transfer makes the deposit revert.
    send_fn(chain, alice, token.functions.setAttack(contract.address, deposit_again, True))
    with pytest.raises(TokenTransferFailed) as e:
        contract.deposit(alice, params, alice.address, 10)
    assert e.value == TokenTransferFailed(token.address, alice.address, 10)
    assert contract.get_channel(contract.channel_id(params)).deposit_a == 110


def test_reentrancy_from_a_token_transfer_hook_during_payout_reverts_reentrancy_and_pays_once(
    chain, contract, deployer, artifacts, alice, bob, carol
):
    token = deploy(chain, deployer, artifacts, "ReentrantToken")
    fund_token(chain, token, contract, alice, bob)
    params, _ = contract.open_channel(alice, bob.address, 100, asset=token.address)
    contract.deposit(bob, params, bob.address, 40)
    contract.close(alice, params)
    chain.time_travel(PERIOD + 1)
    settle_again = encode(
        contract, "settle", params.as_tuple(), *settle_args(contract.recorded_state(contract.channel_id(params)))
    )
    send_fn(chain, carol, token.functions.setAttack(contract.address, settle_again, False))
    before = token_balance(token, alice.address), token_balance(token, bob.address)
    receipt = contract.settle(carol, params, gas=GAS)
    ((success, result),) = reentries(token, receipt)
    assert not success and contract.errors.decode(result) == Reentrancy()
    assert token_balance(token, alice.address) - before[0] == 100
    assert token_balance(token, bob.address) - before[1] == 40
    assert token_balance(token, contract.address) == 0


def test_token_returning_false_on_deposit_reverts_token_transfer_failed(
    chain, contract, deployer, artifacts, alice, bob
):
    token = deploy(chain, deployer, artifacts, "FalseToken")
    fund_token(chain, token, contract, alice)
    send_fn(chain, alice, token.functions.setFailing(False, True))
    with pytest.raises(TokenTransferFailed) as e:
        contract.open_channel(alice, bob.address, 100, asset=token.address)
    assert e.value == TokenTransferFailed(token.address, alice.address, 100)
    send_fn(chain, alice, token.functions.setFailing(False, False))
    params, _ = contract.open_channel(alice, bob.address, 100, asset=token.address)
    send_fn(chain, alice, token.functions.setFailing(False, True))
    with pytest.raises(TokenTransferFailed) as e:
        contract.deposit(alice, params, bob.address, 7)
    assert e.value == TokenTransferFailed(token.address, alice.address, 7)
    assert contract.get_channel(contract.channel_id(params)).total_deposit == 100


def test_token_returning_false_on_payout_defers_it_to_claim(chain, contract, deployer, artifacts, alice, bob, carol):
    token = deploy(chain, deployer, artifacts, "FalseToken")
    fund_token(chain, token, contract, alice)
    params, _ = contract.open_channel(alice, bob.address, 100, asset=token.address)
    contract.close(alice, params)
    chain.time_travel(PERIOD + 1)
    send_fn(chain, carol, token.functions.setFailing(True, False))
    before = token_balance(token, alice.address)
    contract.settle(carol, params, gas=GAS)
    assert token_balance(token, alice.address) == before
    assert contract.owed(alice.address, token.address) == 100
    with pytest.raises(PayoutFailed) as e:
        contract.claim(alice, token.address)
    assert e.value == PayoutFailed(alice.address, token.address, 100)
    assert contract.owed(alice.address, token.address) == 100
    send_fn(chain, carol, token.functions.setFailing(False, False))
    contract.claim(alice, token.address, gas=GAS)
    assert token_balance(token, alice.address) - before == 100
    assert contract.owed(alice.address, token.address) == 0


def test_token_returning_nothing_is_deposited_and_paid_out_exactly(
    chain, contract, deployer, artifacts, alice, bob, carol, signed_state
):
    token = deploy(chain, deployer, artifacts, "NoReturnToken")
    fund_token(chain, token, contract, alice, bob)
    params, _ = contract.open_channel(alice, bob.address, 100, asset=token.address)
    contract.deposit(bob, params, bob.address, 50)
    assert contract.get_channel(contract.channel_id(params)).total_deposit == 150
    before = token_balance(token, alice.address), token_balance(token, bob.address)
    final = signed_state(params, 3, 70, 80, is_final=True)
    contract.cooperative_close(carol, params, final)
    assert token_balance(token, alice.address) - before[0] == 70
    assert token_balance(token, bob.address) - before[1] == 80
    assert token_balance(token, contract.address) == 0


def test_fee_on_transfer_token_deposits_are_credited_by_what_arrived(
    chain, contract, deployer, artifacts, alice, bob, carol, signed_state
):
    token = deploy(chain, deployer, artifacts, "FeeOnTransferToken")
    fund_token(chain, token, contract, alice, bob)
    params, receipt = contract.open_channel(alice, bob.address, 1000, asset=token.address)
    (opened,) = contract.contract.events.Deposited().process_receipt(receipt, errors=DISCARD)
    assert opened["args"]["amount"] == 990  # 1% burned on the way in
    contract.deposit(bob, params, bob.address, 500)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (990, 495)
    assert token_balance(token, contract.address) == 1485
    claimed_full = signed_state(params, 1, 1000, 500, is_final=True)  # what was sent, not what arrived
    with pytest.raises(BalancesNotConserved) as e:
        contract.cooperative_close(carol, params, claimed_full)
    assert e.value == BalancesNotConserved(1000, 500, 1485)
    before = token_balance(token, alice.address), token_balance(token, bob.address)
    contract.cooperative_close(carol, params, signed_state(params, 1, 900, 585, is_final=True))
    assert token_balance(token, alice.address) - before[0] == 900 - 9  # the token's fee on the way out
    assert token_balance(token, bob.address) - before[1] == 585 - 5
    assert token_balance(token, contract.address) == 0


def test_unilateral_close_from_a_token_hook_during_a_deposit_reverts_the_deposit_channel_not_open(
    chain, contract, deployer, artifacts, alice, carol
):
    # The token is itself participant B (any contract participant with a hook-calling token would do):
    # while alice's deposit is being pulled it closes the channel, which `close` allows without a guard.
    # The deposit must then refuse to credit a slot that is no longer an open channel's.
    token = deploy(chain, deployer, artifacts, "ReentrantToken")
    fund_token(chain, token, contract, alice)
    params, _ = contract.open_channel(alice, token.address, 100, asset=token.address)
    cid = contract.channel_id(params)
    close_now = encode(contract, "closeWithoutState", params.as_tuple())
    send_fn(chain, carol, token.functions.setAttack(contract.address, close_now, False))
    with pytest.raises(ChannelNotOpen) as e:
        contract.deposit(alice, params, alice.address, 10**18)
    assert e.value == ChannelNotOpen(cid)
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b) == (1, 100, 0)
    # Without the hook's help the channel still closes and settles normally, paying what was deposited.
    contract.close(alice, params)
    chain.time_travel(PERIOD + 1)
    before = token_balance(token, alice.address)
    contract.settle(carol, params)
    assert token_balance(token, alice.address) - before == 100


BURN = 1_000_000  # what the GasBurningReceiver's token hook burns: every unbounded push would cost that
BOUNDED = 200_000  # what settling or closing may cost with such a recipient: two pushes of PAYOUT_GAS at most
AMPLE = 3_000_000  # a gas limit with room for the hook, so only the contract's own bound can stop it


def test_a_token_hook_burning_gas_cannot_make_settle_cost_more_than_a_bounded_push_and_claim_delivers(
    chain, contract, deployer, artifacts, alice, carol
):
    # A participant contract whose token transfer hook loops: before the fix every settle of its channel
    # forwarded all the gas to the token push and cost about a million gas, paid by whoever settled.
    token = deploy(chain, deployer, artifacts, "HookToken")
    burner = deploy(chain, deployer, artifacts, "GasBurningReceiver", BURN)
    fund_token(chain, token, contract, alice, carol)
    params, _ = contract.open_channel(alice, burner.address, 100, asset=token.address)
    contract.deposit(carol, params, burner.address, 40)
    contract.close(alice, params)
    chain.time_travel(PERIOD + 1)
    before = token_balance(token, alice.address)
    receipt = contract.settle(carol, params, gas=AMPLE)
    assert receipt["gasUsed"] < BOUNDED
    (deferred,) = contract.contract.events.PayoutDeferred().process_receipt(receipt, errors=DISCARD)
    assert dict(deferred["args"]) == {
        "channelId": contract.channel_id(params),
        "recipient": burner.address,
        "asset": token.address,
        "amount": 40,
    }
    assert token_balance(token, alice.address) - before == 100  # the other party is paid at once
    assert (token_balance(token, burner.address), contract.owed(burner.address, token.address)) == (0, 40)
    assert burner.functions.completed().call() == 0
    assert token_balance(token, contract.address) == 40
    assert_conservation(contract)
    # `claim` forwards all the gas it is given: with enough for the hook, the payout arrives.
    claim = encode(contract, "claim", token.address, burner.address)
    receipt = send_fn(chain, carol, burner.functions.execute(contract.address, claim), gas=AMPLE)
    assert receipt["gasUsed"] > BURN
    assert burner.functions.completed().call() == 1
    assert (token_balance(token, burner.address), contract.owed(burner.address, token.address)) == (40, 0)
    assert token_balance(token, contract.address) == 0
    assert_conservation(contract)


def test_a_token_hook_burning_gas_cannot_make_a_cooperative_close_cost_more_than_a_bounded_push(
    chain, contract, deployer, artifacts, alice, bob, carol, signed_state
):
    # The same hook registered by alice's account (ERC-1820 style), so that she can sign a final state.
    token = deploy(chain, deployer, artifacts, "HookToken")
    burner = deploy(chain, deployer, artifacts, "GasBurningReceiver", BURN)
    fund_token(chain, token, contract, alice, bob)
    send_fn(chain, alice, token.functions.setHook(burner.address))
    params, _ = contract.open_channel(alice, bob.address, 100, asset=token.address)
    contract.deposit(bob, params, bob.address, 50)
    before_a, before_b = token_balance(token, alice.address), token_balance(token, bob.address)
    receipt = contract.cooperative_close(carol, params, signed_state(params, 3, 70, 80, is_final=True), gas=AMPLE)
    assert receipt["gasUsed"] < BOUNDED
    (deferred,) = contract.contract.events.PayoutDeferred().process_receipt(receipt, errors=DISCARD)
    assert (deferred["args"]["recipient"], deferred["args"]["amount"]) == (alice.address, 70)
    assert token_balance(token, bob.address) - before_b == 80
    assert token_balance(token, alice.address) == before_a
    assert contract.owed(alice.address, token.address) == 70
    assert contract.get_channel(contract.channel_id(params)).status == STATUS_NONE
    assert_conservation(contract)
    receipt = contract.claim(alice, token.address, gas=AMPLE)
    assert receipt["gasUsed"] > BURN and burner.functions.completed().call() == 1
    assert token_balance(token, alice.address) - before_a == 70
    assert (contract.owed(alice.address, token.address), token_balance(token, contract.address)) == (0, 0)
    assert_conservation(contract)


def test_deposit_after_payments_cannot_let_the_payer_reclaim_them(chain, contract, open_channel, alice, bob, carol):
    # Finding F1 (fixed): a state commits to the deposits it splits, so a later deposit does not void it.
    pair = open_channel(5 * ETHER)
    latest = pair.pay("A", 3 * ETHER)  # alice 2, bob 3, both signed
    contract.deposit(alice, pair.params, alice.address, 1)  # one wei the state does not know of
    contract.close(alice, pair.params)  # without a state: the deposits as they stand, alice 5 ETH + 1 wei
    contract.challenge(bob, pair.params, latest)  # bob's newest state still counts
    chain.time_travel(PERIOD + 1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    contract.settle(carol, pair.params)
    assert chain.balance(bob.address) - before_b == 3 * ETHER
    assert chain.balance(alice.address) - before_a == 2 * ETHER + 1  # the wei goes back to its depositor
