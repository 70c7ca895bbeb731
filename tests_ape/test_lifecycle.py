"""The full channel lifecycle through Ape: open, pay off-chain, close cooperatively or dispute and settle;
reverts checked with ``ape.reverts`` on the contract's custom errors and their arguments."""

from __future__ import annotations

import ape

from paychan.contract import RecordedState
from paychan.signing import sign_state, state_digest
from paychan.state import ETH, SignedState

from .conftest import ETHER, PERIOD, key_of, signatures

DEPOSITS = (5 * ETHER, 0)  # what `open_channel` deposits by default; `challenge` and `settle` take them back


def record(receipt, event, balance_a: int, balance_b: int, closer_nonce: int) -> RecordedState:
    """The record that `challenge` (`as_record()`) and `settle` (`settle_args`) pass back: the recorded
    balances (no locks), the deposits, the withdrawal counter (0), the nonce the closer submitted and the
    salt of the `ChannelClosed`/`ChallengeAccepted` event in ``receipt``."""
    (log,) = receipt.decode_logs(event)
    return RecordedState(0, balance_a, balance_b, 0, *DEPOSITS, log.salt, closer_nonce=closer_nonce)


def settle_args(recorded: RecordedState) -> tuple[object, ...]:
    """`settle`'s arguments after the channel: the outcome, the funds, the closer's nonce, no locks."""
    return recorded.as_outcome(), recorded.funds, recorded.closer_nonce, b""


STATUS_NONE, STATUS_OPEN, STATUS_CLOSING = 0, 1, 2


def test_python_and_contract_compute_the_same_state_digest(paychan, domain, open_channel):
    opened = open_channel()
    signed = opened.pay("A", ETHER)
    assert paychan.stateDigest(opened.params.as_tuple(), signed.state.as_tuple()) == state_digest(domain, signed.state)
    assert paychan.channelIdOf(opened.params.as_tuple()) == opened.a.channel_id


def test_cooperative_lifecycle_pays_both_their_final_balances(paychan, open_channel, alice, bob):
    opened = open_channel(5 * ETHER, 3 * ETHER)
    for _ in range(10):
        opened.pay("A", ETHER // 10)
        opened.pay("B", ETHER // 100)
    final = opened.finalize()
    assert (final.state.balance_a, final.state.balance_b) == (5 * ETHER - 9 * ETHER // 10, 3 * ETHER + 9 * ETHER // 10)
    alice_before, bob_before = alice.balance, bob.balance
    receipt = paychan.cooperativeClose(opened.params.as_tuple(), final.state.as_tuple(), *signatures(final), sender=bob)
    assert alice.balance == alice_before + final.state.balance_a
    assert bob.balance == bob_before + final.state.balance_b - receipt.total_fees_paid
    (settled,) = receipt.decode_logs(paychan.ChannelSettled)
    assert (settled.nonce, settled.payoutA, settled.payoutB, settled.cooperative) == (
        21,
        final.state.balance_a,
        final.state.balance_b,
        True,
    )
    assert paychan.getChannel(opened.a.channel_id)[0] == STATUS_NONE
    assert paychan.balance == 0


def test_disputed_lifecycle_the_latest_state_wins_after_the_deadline(chain, paychan, open_channel, alice, bob, carol):
    opened = open_channel(5 * ETHER)
    stale = opened.pay("A", ETHER)
    latest = opened.pay("A", 2 * ETHER)
    close = paychan.close(opened.params.as_tuple(), stale.state.as_tuple(), *signatures(stale), sender=alice)
    (closed,) = close.decode_logs(paychan.ChannelClosed)
    deadline = chain.blocks[close.block_number].timestamp + PERIOD
    assert (closed.nonce, closed.balanceA, closed.balanceB, closed.deadline) == (1, 4 * ETHER, ETHER, deadline)

    challenged = paychan.challenge(
        opened.params.as_tuple(),
        record(close, paychan.ChannelClosed, 4 * ETHER, ETHER, 1).as_record(),
        latest.state.as_tuple(),
        *signatures(latest),
        sender=bob,
    )
    recorded = record(challenged, paychan.ChallengeAccepted, 2 * ETHER, 3 * ETHER, 1)
    chain.pending_timestamp = deadline
    with ape.reverts(paychan.ChallengePeriodActive, deadline=deadline, timestamp=deadline):
        paychan.settle(opened.params.as_tuple(), *settle_args(recorded), sender=carol)
    chain.pending_timestamp = deadline + 1
    alice_before, bob_before = alice.balance, bob.balance
    paychan.settle(opened.params.as_tuple(), *settle_args(recorded), sender=carol)  # anyone may settle
    assert (alice.balance, bob.balance) == (alice_before + 2 * ETHER, bob_before + 3 * ETHER)
    assert paychan.getChannel(opened.a.channel_id)[0] == STATUS_NONE
    assert paychan.balance == 0


def test_a_challenge_with_an_older_state_reverts_with_both_nonces(paychan, open_channel, alice, bob):
    opened = open_channel()
    older = opened.pay("A", ETHER)
    newer = opened.pay("A", ETHER)
    close = paychan.close(opened.params.as_tuple(), newer.state.as_tuple(), *signatures(newer), sender=alice)
    recorded = record(close, paychan.ChannelClosed, 3 * ETHER, 2 * ETHER, 2)
    with ape.reverts(paychan.StaleState, submittedNonce=1, recordedNonce=2):
        paychan.challenge(
            opened.params.as_tuple(), recorded.as_record(), older.state.as_tuple(), *signatures(older), sender=bob
        )
    assert paychan.getChannel(opened.a.channel_id)[0] == STATUS_CLOSING


def test_a_challenge_after_the_deadline_reverts(chain, paychan, open_channel, alice, bob):
    opened = open_channel()
    latest = opened.pay("A", ETHER)
    receipt = paychan.closeWithoutState(opened.params.as_tuple(), sender=alice)
    deadline = chain.blocks[receipt.block_number].timestamp + PERIOD
    recorded = record(receipt, paychan.ChannelClosed, 5 * ETHER, 0, 0)
    chain.pending_timestamp = deadline + 1
    with ape.reverts(paychan.ChallengePeriodOver, deadline=deadline, timestamp=deadline + 1):
        paychan.challenge(
            opened.params.as_tuple(), recorded.as_record(), latest.state.as_tuple(), *signatures(latest), sender=bob
        )


def test_cooperative_close_with_a_state_not_marked_final_reverts(paychan, open_channel, bob):
    opened = open_channel()
    signed = opened.pay("A", ETHER)
    with ape.reverts(paychan.StateNotFinal, nonce=1):
        paychan.cooperativeClose(opened.params.as_tuple(), signed.state.as_tuple(), *signatures(signed), sender=bob)


def test_a_state_signed_by_a_third_party_reverts_naming_both_signers(paychan, domain, open_channel, alice, bob, carol):
    opened = open_channel()
    honest = opened.pay("A", ETHER)
    forged = SignedState(honest.state, honest.sig_a, sign_state(domain, honest.state, key_of(carol)))
    with ape.reverts(paychan.InvalidSignature, expected=bob.address, recovered=carol.address):
        paychan.close(opened.params.as_tuple(), forged.state.as_tuple(), *signatures(forged), sender=alice)


def test_opening_a_channel_with_oneself_reverts(paychan, alice):
    with ape.reverts(paychan.InvalidCounterparty, counterparty=alice.address):
        paychan.open(alice, ETH, PERIOD, ETHER, sender=alice, value=ETHER)


def test_a_challenge_period_below_the_minimum_reverts_with_the_bounds(paychan, alice, bob):
    with ape.reverts(
        paychan.InvalidChallengePeriod, challengePeriod=PERIOD - 1, minimum=PERIOD, maximum=30 * 24 * 3600
    ):
        paychan.open(bob, ETH, PERIOD - 1, 0, sender=alice)
