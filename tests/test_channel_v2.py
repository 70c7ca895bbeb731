"""The off-chain channel's v2 protocol, without a chain: conditional payments (locks), revocations and
withdrawals. Every refusal raises a named ``StateRejected`` and leaves both sides exactly as they were."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from paychan.channel import LOCK_EXPIRY_MARGIN, MAX_LOCKS, MIN_LOCK_TIME, Channel, pay
from paychan.exceptions import (
    DuplicateHashlock,
    FinalStateHasLocks,
    InvalidRevocation,
    InvalidSignature,
    LockedTotalsMismatch,
    LockExpiryOutOfRange,
    LockNotExpired,
    RevokedNonce,
    StateRejected,
    TooManyLocks,
    UnfavourableState,
    UnknownLock,
    WithdrawalRejected,
)
from paychan.signing import Domain, sign_message
from paychan.state import ETH, ChannelParams, Revocation, hashlock, locked_totals, locks_root

KEY_A = bytes.fromhex("a1" * 32)
KEY_B = bytes.fromhex("b2" * 32)
A, B = (Account.from_key(k).address for k in (KEY_A, KEY_B))
DOMAIN = Domain(1337, "0x" + "5c" * 20)
PARAMS = ChannelParams(A, B, ETH, 3600, 7)
DEPOSITS = (1000, 500)
NOW = 1_000_000
SECRET = b"\x42" * 32


def _pair() -> tuple[Channel, Channel]:
    return Channel(PARAMS, DOMAIN, KEY_A, deposits=DEPOSITS), Channel(PARAMS, DOMAIN, KEY_B, deposits=DEPOSITS)


def _snapshot(channel: Channel) -> tuple[object, ...]:
    return (
        channel.latest,
        channel.pending,
        channel.locks,
        channel.deposits,
        channel.own_revocation,
        channel.peer_revocation,
        channel.pending_withdrawal,
    )


def _lock(a: Channel, b: Channel, amount: int = 100, secret: bytes = SECRET, expiry: int | None = None) -> None:
    proposal, lock = a.propose_lock(amount, hashlock(secret), expiry or NOW + 1800, NOW)
    a.receive_countersignature(b.receive_proposal(proposal, lock=lock, now=NOW))


def test_a_lock_moves_the_amount_from_the_senders_balance_into_the_locked_total_on_both_sides():
    a, b = _pair()
    _lock(a, b, 100)
    for side in (a, b):
        assert side.balances() == (900, 500)
        assert (side.latest.state.locked_a, side.latest.state.locked_b) == (100, 0)
        assert side.latest.state.locks_root == locks_root(side.locks)
        assert side.total == sum(DEPOSITS)


def test_settling_a_lock_with_its_secret_pays_the_receiver_and_empties_the_list():
    a, b = _pair()
    _lock(a, b, 100)
    a.receive_countersignature(b.receive_proposal(a.propose_settle_lock(SECRET), settle=SECRET))
    for side in (a, b):
        assert side.balances() == (900, 600)
        assert side.locks == () and side.latest.state.locked_a == 0


def test_the_receiver_may_propose_the_settlement_itself_by_showing_the_secret():
    a, b = _pair()
    _lock(a, b, 100)
    b.receive_countersignature(a.receive_proposal(b.propose_settle_lock(SECRET), settle=SECRET))
    assert a.balances() == b.balances() == (900, 600)


def test_an_expired_lock_goes_back_to_its_sender_once_both_sign_it():
    a, b = _pair()
    _lock(a, b, 100, expiry=NOW + 1800)
    proposal = a.propose_expire_lock(hashlock(SECRET), NOW + 1801)
    a.receive_countersignature(b.receive_proposal(proposal, expire=hashlock(SECRET), now=NOW + 1801))
    assert a.balances() == b.balances() == (1000, 500)
    assert a.locks == b.locks == ()


def test_a_lock_cannot_be_taken_back_before_its_expiry():
    a, b = _pair()
    _lock(a, b, 100, expiry=NOW + 1800)
    before = _snapshot(a)
    with pytest.raises(LockNotExpired) as e:
        a.propose_expire_lock(hashlock(SECRET), NOW + 1800)
    assert (e.value.expiry, e.value.now) == (NOW + 1800, NOW + 1800)
    assert _snapshot(a) == before


def test_payments_keep_the_pending_locks_and_a_final_state_refuses_them():
    a, b = _pair()
    _lock(a, b, 100)
    pay(a, b, 50)
    assert a.locks == b.locks and len(a.locks) == 1
    assert a.balances() == (850, 550)
    with pytest.raises(FinalStateHasLocks):
        a.propose_final()


@pytest.mark.parametrize(
    "expiry",
    [NOW + MIN_LOCK_TIME - 1, NOW + PARAMS.challenge_period - LOCK_EXPIRY_MARGIN + 1],
    ids=["too soon", "beyond the challenge period minus the margin"],
)
def test_a_lock_whose_expiry_the_channel_does_not_allow_is_refused_by_both_sides(expiry):
    a, b = _pair()
    with pytest.raises(LockExpiryOutOfRange) as e:
        a.propose_lock(100, hashlock(SECRET), expiry, NOW)
    assert (e.value.earliest, e.value.latest) == (NOW + MIN_LOCK_TIME, NOW + 3600 - LOCK_EXPIRY_MARGIN)
    proposal, lock = a.propose_lock(100, hashlock(SECRET), NOW + 1800, NOW)
    before = _snapshot(b)
    with pytest.raises(LockExpiryOutOfRange):
        b.receive_proposal(proposal, lock=replace(lock, expiry=expiry), now=NOW)
    assert _snapshot(b) == before


def test_a_duplicate_hashlock_is_refused():
    a, b = _pair()
    _lock(a, b, 100)
    with pytest.raises(DuplicateHashlock):
        a.propose_lock(10, hashlock(SECRET), NOW + 1800, NOW)


def test_the_seventeenth_lock_is_refused():
    a, b = _pair()
    for i in range(MAX_LOCKS):
        _lock(a, b, 10, secret=bytes([i + 1]) * 32)
    with pytest.raises(TooManyLocks) as e:
        a.propose_lock(10, hashlock(b"\xff" * 32), NOW + 1800, NOW)
    assert (e.value.count, e.value.maximum) == (MAX_LOCKS + 1, MAX_LOCKS)


def test_a_lock_proposal_with_wrong_locked_totals_is_refused_and_changes_nothing():
    a, b = _pair()
    proposal, lock = a.propose_lock(100, hashlock(SECRET), NOW + 1800, NOW)
    wrong = replace(lock, amount=99)  # the state locks 100, the lock sent says 99
    before = _snapshot(b)
    with pytest.raises(LockedTotalsMismatch) as e:
        b.receive_proposal(proposal, lock=wrong, now=NOW)
    assert (e.value.locked_a, e.value.expected_a) == (100, 99)
    assert _snapshot(b) == before


def test_a_lock_taken_from_our_own_balance_is_refused():
    a, b = _pair()
    proposal, lock = a.propose_lock(100, hashlock(SECRET), NOW + 1800, NOW)
    with pytest.raises(UnfavourableState):
        b.receive_proposal(proposal, lock=replace(lock, sender="B"), now=NOW)


def test_settling_an_unknown_lock_is_refused():
    a, b = _pair()
    _lock(a, b, 100)
    with pytest.raises(UnknownLock):
        a.propose_settle_lock(b"\x01" * 32)


def test_a_sender_that_settles_a_lock_but_keeps_the_amount_is_refused():
    a, b = _pair()
    _lock(a, b, 100)
    # alice takes the lock back to herself and calls it a settlement: bob is owed 100 more
    state = a._next_state(1000, 500, is_final=False, locks=())
    forged = a._propose(state, ())
    before = _snapshot(b)
    with pytest.raises(UnfavourableState) as e:
        b.receive_proposal(forged, settle=SECRET)
    assert (e.value.current, e.value.proposed) == (600, 500)
    assert _snapshot(b) == before


def test_revocations_cover_every_nonce_below_the_latest_and_are_kept_by_the_peer():
    a, b = _pair()
    pay(a, b, 10)
    pay(a, b, 10)
    revocation, signature = a.sign_revocation() or pytest.fail("nothing revoked")
    assert revocation == Revocation(a.channel_id, 2) and a.own_revocation == 2
    assert a.sign_revocation() is None  # nothing new to revoke
    b.receive_revocation(revocation, signature)
    assert b.peer_revocation == (revocation, signature)


def test_a_channel_refuses_to_close_below_its_own_revocation():
    a, b = _pair()
    first = pay(a, b, 10)
    pay(a, b, 10)
    a.sign_revocation()
    with pytest.raises(RevokedNonce) as e:
        a.check_close(first)
    assert (e.value.nonce, e.value.below_nonce) == (1, 2)
    with pytest.raises(RevokedNonce):
        a.check_close(None)  # closeWithoutState is nonce 0
    a.check_close(a.latest)


def test_a_revocation_from_the_wrong_party_or_for_another_channel_is_refused():
    a, b = _pair()
    pay(a, b, 10)
    pay(a, b, 10)
    own = Revocation(b.channel_id, 2)
    with pytest.raises(InvalidSignature):
        b.receive_revocation(own, sign_message(DOMAIN, own, KEY_B))  # bob's own signature, not alice's
    other = Revocation(b"\x99" * 32, 2)
    with pytest.raises(InvalidRevocation):
        b.receive_revocation(other, sign_message(DOMAIN, other, KEY_A))
    beyond = Revocation(b.channel_id, 3)
    with pytest.raises(InvalidRevocation):
        b.receive_revocation(beyond, sign_message(DOMAIN, beyond, KEY_A))
    assert b.peer_revocation is None


def test_a_withdrawal_is_signed_with_the_state_it_leaves_and_blocks_payments_until_made():
    a, b = _pair()
    pay(b, a, 200)  # alice holds 1,200 of 1,500
    withdrawal, signature, proposal = a.propose_withdrawal(1100, NOW + 600)
    assert withdrawal.deposits_after() == (0, 400)  # 1,000 from alice's deposit, 100 from bob's
    b_signature, signed = b.receive_withdrawal(withdrawal, signature, proposal, NOW)
    a.receive_withdrawal_countersignature(b_signature, signed)
    for side in (a, b):
        state = side.latest.state
        assert (state.balance_a, state.balance_b, state.deposit_a, state.deposit_b) == (100, 300, 0, 400)
        assert state.withdrawals == 1 and side.pending_withdrawal is not None
        assert side.state_for_chain(0).state.nonce == 1  # until it is made, the chain takes the state before
    with pytest.raises(WithdrawalRejected):
        a.propose_payment(10)
    for side in (a, b):
        side.record_withdrawal(0, 400, 1)
    pay(a, b, 10)
    assert a.balances() == b.balances() == (90, 310)


def test_a_withdrawal_of_the_peers_balance_or_more_than_its_balance_is_refused():
    a, b = _pair()
    withdrawal, signature, proposal = a.propose_withdrawal(100, NOW + 600)
    before = _snapshot(b)
    with pytest.raises(WithdrawalRejected):
        b.receive_withdrawal(replace(withdrawal, amount_a=0, amount_b=100), signature, proposal, NOW)
    with pytest.raises(WithdrawalRejected):
        b.receive_withdrawal(withdrawal, signature, proposal, NOW + 600)  # expired on arrival
    assert _snapshot(b) == before


def test_an_abandoned_withdrawal_restores_the_state_before_it_and_the_next_nonce_stays_above():
    a, b = _pair()
    withdrawal, signature, proposal = a.propose_withdrawal(100, NOW + 600)
    a.receive_withdrawal_countersignature(*b.receive_withdrawal(withdrawal, signature, proposal, NOW))
    with pytest.raises(WithdrawalRejected):
        a.abandon_withdrawal(NOW + 600)
    for side in (a, b):
        side.abandon_withdrawal(NOW + 601)
        assert side.latest.state.nonce == 0 and side.latest.state.withdrawals == 0
    signed = pay(a, b, 10)
    assert signed.state.nonce == 2 and signed.state.withdrawals == 0


def test_every_v2_refusal_is_a_state_rejection():
    for cls in (
        TooManyLocks,
        LockExpiryOutOfRange,
        LockedTotalsMismatch,
        DuplicateHashlock,
        UnknownLock,
        LockNotExpired,
        RevokedNonce,
        InvalidRevocation,
        WithdrawalRejected,
    ):
        assert issubclass(cls, StateRejected)
    assert locked_totals([]) == (0, 0)
