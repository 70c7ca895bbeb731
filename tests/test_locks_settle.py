"""Settling a channel with pending locks (contract v2 HTLCs): each recorded lock pays its receiver if its
secret was revealed in the contract-wide registry at or before its expiry, and goes back to its sender
otherwise; a lock list that is not the committed one, or a state whose locked totals overflow, is refused
with its exact values and changes nothing.

The off-chain ``Channel`` builds the honest lock states; states no honest channel would sign (locks beyond
the deadline, locks larger than the locked total, overflowing totals) come from the ``signed_state`` factory.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from eth_hash.auto import keccak

from paychan.contract import STATUS_CLOSING, STATUS_NONE
from paychan.exceptions import (
    BalancesNotConserved,
    FinalStateHasLocks,
    LocksMismatch,
)
from paychan.signing import sign_state
from paychan.state import ZERO_ROOT, Lock, SignedState, hashlock, locks_root, pack_locks

from .conftest import ETHER, ChannelPair, block_time, next_block_at, tx_events


def secret(name: str) -> bytes:
    return hashlib.sha256(b"paychan lock secret " + name.encode()).digest()


S1, S2, S3, S4 = (secret(str(i)) for i in range(1, 5))


def add_lock(chain: Any, pair: ChannelPair, sender: str, amount: int, preimage: bytes, expiry: int) -> Lock:
    """``sender`` ("A" or "B") locks ``amount`` towards the other side; both sign the new state."""
    proposer, receiver = (pair.a, pair.b) if sender == "A" else (pair.b, pair.a)
    now = chain.now()
    proposal, lock = proposer.propose_lock(amount, hashlock(preimage), expiry, now)
    proposer.receive_countersignature(receiver.receive_proposal(proposal, lock=lock, now=now))
    return lock


def snapshot(chain: Any, contract: Any, cid: bytes, *accounts: Any) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was: the slot, the record and the ETH balances."""
    return (
        contract.get_channel(cid),
        contract.recorded_state(cid),
        chain.balance(contract.address),
        tuple(chain.balance(a.address) for a in accounts),
    )


def settle_after_deadline(chain: Any, contract: Any, pair: ChannelPair, sender: Any, locks: Any) -> Any:
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    if chain.now() < deadline + 1:
        next_block_at(chain, deadline + 1)
    return contract.settle(sender, pair.params, locks=locks)


def settled_event(contract: Any, receipt: Any) -> dict[str, Any]:
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    return dict(settled)


# --- success paths -------------------------------------------------------------------------------


def test_a_lock_whose_secret_was_revealed_before_its_expiry_pays_the_receiver(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    lock = add_lock(chain, pair, "A", ETHER, S1, chain.now() + 1800)
    reveal = contract.reveal_secret(bob, S1)
    assert contract.revealed_at(lock.hashlock) == block_time(chain, reveal) <= lock.expiry
    contract.close(alice, pair.params, pair.a.latest)
    cid = contract.channel_id(pair.params)
    recorded = contract.recorded_state(cid)
    assert (recorded.balance_a, recorded.balance_b, recorded.locked_a, recorded.locked_b, recorded.locks_root) == (
        4 * ETHER,
        0,
        ETHER,
        0,
        locks_root([lock]),
    )
    next_block_at(chain, recorded.deadline + 1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.settle(carol, pair.params, locks=pair.a.locks)
    assert chain.balance(alice.address) == before_a + 4 * ETHER
    assert chain.balance(bob.address) == before_b + ETHER
    assert settled_event(contract, receipt) == {
        "channelId": cid,
        "nonce": 1,
        "payoutA": 4 * ETHER,
        "payoutB": ETHER,
        "cooperative": False,
    }
    assert contract.get_channel(cid).status == STATUS_NONE


def test_an_expired_lock_whose_secret_was_never_revealed_goes_back_to_the_sender(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER, 2 * ETHER)
    lock = add_lock(chain, pair, "B", ETHER, S1, chain.now() + 120)
    contract.close(bob, pair.params, pair.b.latest)
    next_block_at(chain, contract.get_channel(contract.channel_id(pair.params)).deadline + 1)
    assert chain.now() > lock.expiry and contract.revealed_at(lock.hashlock) == 0
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.settle(carol, pair.params, locks=[lock])
    assert chain.balance(alice.address) == before_a + 5 * ETHER
    assert chain.balance(bob.address) == before_b + 2 * ETHER
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (5 * ETHER, 2 * ETHER)


def test_a_secret_revealed_exactly_at_the_lock_expiry_second_pays_the_receiver(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    lock = add_lock(chain, pair, "A", 2 * ETHER, S1, chain.now() + 120)
    contract.close(alice, pair.params, pair.a.latest)
    next_block_at(chain, lock.expiry)
    reveal = contract.reveal_secret(carol, S1)
    assert block_time(chain, reveal) == lock.expiry == contract.revealed_at(lock.hashlock)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = settle_after_deadline(chain, contract, pair, carol, [lock])
    assert chain.balance(alice.address) == before_a + 3 * ETHER
    assert chain.balance(bob.address) == before_b + 2 * ETHER
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (3 * ETHER, 2 * ETHER)


def test_a_secret_revealed_one_second_after_expiry_returns_the_lock_to_the_sender(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    lock = add_lock(chain, pair, "A", 2 * ETHER, S1, chain.now() + 120)
    contract.close(alice, pair.params, pair.a.latest)
    next_block_at(chain, lock.expiry + 1)
    reveal = contract.reveal_secret(bob, S1)
    assert block_time(chain, reveal) == lock.expiry + 1 == contract.revealed_at(lock.hashlock)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = settle_after_deadline(chain, contract, pair, carol, [lock])
    assert chain.balance(alice.address) == before_a + 5 * ETHER
    assert chain.balance(bob.address) == before_b
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (5 * ETHER, 0)


def test_several_locks_in_both_directions_each_resolve_on_their_own(chain, contract, open_channel, alice, bob, carol):
    pair = open_channel(5 * ETHER, 3 * ETHER)
    now = chain.now()
    a_paid = add_lock(chain, pair, "A", ETHER, S1, now + 1800)  # revealed in time: to B
    a_back = add_lock(chain, pair, "A", ETHER // 2, S2, now + 1800)  # never revealed: back to A
    pair.pay("B", ETHER // 10)  # a payment between locks keeps them
    b_paid = add_lock(chain, pair, "B", 7 * ETHER // 10, S3, now + 1800)  # revealed in time: to A
    b_late = add_lock(chain, pair, "B", 2 * ETHER // 10, S4, now + 150)  # revealed late: back to B
    locks = pair.a.locks
    assert locks == (a_paid, a_back, b_paid, b_late) == pair.b.locks
    assert pair.a.balances() == (5 * ETHER - 15 * ETHER // 10 + ETHER // 10, 3 * ETHER - 10 * ETHER // 10)
    contract.reveal_secrets(carol, [S1, S3])
    next_block_at(chain, b_late.expiry + 1)
    contract.reveal_secret(carol, S4)
    contract.close(bob, pair.params, pair.b.latest)
    recorded = contract.recorded_state(contract.channel_id(pair.params))
    assert (recorded.locked_a, recorded.locked_b) == (15 * ETHER // 10, 9 * ETHER // 10)
    next_block_at(chain, recorded.deadline + 1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.settle(carol, pair.params, locks=locks)
    payout_a = (36 * ETHER // 10) + ETHER // 2 + 7 * ETHER // 10  # balance, own lock back, B's revealed lock
    payout_b = (20 * ETHER // 10) + ETHER + 2 * ETHER // 10  # balance, A's revealed lock, own late lock back
    assert payout_a + payout_b == 8 * ETHER
    assert chain.balance(alice.address) == before_a + payout_a
    assert chain.balance(bob.address) == before_b + payout_b
    event = settled_event(contract, receipt)
    assert (event["nonce"], event["payoutA"], event["payoutB"]) == (5, payout_a, payout_b)


def test_a_lock_neither_revealed_nor_expired_at_the_deadline_goes_back_to_the_sender(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    """settle's rule: only a secret revealed at or before the expiry pays; a lock that has not expired yet
    but whose secret no one revealed is settled like an expired one."""
    pair = open_channel(5 * ETHER)
    lock = Lock("A", ETHER, chain.now() + 100_000, hashlock(S1))  # far beyond the deadline
    state = signed_state(pair.params, 1, 4 * ETHER, 0, locks_root=locks_root([lock]), locked_a=ETHER)
    contract.close(alice, pair.params, state)
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    assert lock.expiry > deadline + 1
    next_block_at(chain, deadline + 1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.settle(carol, pair.params, locks=[lock])
    assert block_time(chain, receipt) < lock.expiry
    assert chain.balance(alice.address) == before_a + 5 * ETHER
    assert chain.balance(bob.address) == before_b
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (5 * ETHER, 0)


def test_an_unexpired_lock_revealed_after_the_deadline_but_before_settle_pays_the_receiver(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    """The registry, not the deadline, decides: a secret revealed before the lock's expiry pays, even once
    the challenge period is over, as long as the channel is not settled yet."""
    pair = open_channel(5 * ETHER)
    lock = Lock("A", ETHER, chain.now() + 100_000, hashlock(S1))
    state = signed_state(pair.params, 1, 4 * ETHER, 0, locks_root=locks_root([lock]), locked_a=ETHER)
    contract.close(alice, pair.params, state)
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline + 10)
    reveal = contract.reveal_secret(bob, S1)
    assert deadline < block_time(chain, reveal) < lock.expiry
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.settle(carol, pair.params, locks=[lock])
    assert chain.balance(alice.address) == before_a + 4 * ETHER
    assert chain.balance(bob.address) == before_b + ETHER
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (4 * ETHER, ETHER)


def test_one_reveal_counts_for_every_channel_holding_that_hashlock(
    chain, contract, open_channel, alice, bob, carol, watchtower
):
    """A two-hop payment alice -> bob -> carol under one hashlock: carol's single reveal pays both hops."""
    first = open_channel(5 * ETHER, a=alice, b=bob)
    second = open_channel(5 * ETHER, a=bob, b=carol)
    now = chain.now()
    lock_1 = add_lock(chain, first, "A", ETHER, S1, now + 1800)
    lock_2 = add_lock(chain, second, "A", ETHER, S1, now + 1200)
    assert lock_1.hashlock == lock_2.hashlock
    reveal = contract.reveal_secret(carol, S1)
    assert len(tx_events(contract, reveal, "SecretRevealed")) == 1
    contract.close(alice, first.params, first.a.latest)
    contract.close(bob, second.params, second.a.latest)
    deadline = max(contract.get_channel(contract.channel_id(p.params)).deadline for p in (first, second))
    next_block_at(chain, deadline + 1)
    before = {x.address: chain.balance(x.address) for x in (alice, bob, carol)}
    settled_1 = settled_event(contract, contract.settle(watchtower, first.params, locks=[lock_1]))
    settled_2 = settled_event(contract, contract.settle(watchtower, second.params, locks=[lock_2]))
    assert (settled_1["payoutA"], settled_1["payoutB"]) == (4 * ETHER, ETHER)
    assert (settled_2["payoutA"], settled_2["payoutB"]) == (4 * ETHER, ETHER)
    assert chain.balance(alice.address) == before[alice.address] + 4 * ETHER
    assert chain.balance(bob.address) == before[bob.address] + ETHER + 4 * ETHER
    assert chain.balance(carol.address) == before[carol.address] + ETHER


# --- attacks -------------------------------------------------------------------------------------


@pytest.fixture
def closing_with_locks(chain, contract, open_channel, alice):
    """alice closed with two pending locks of hers (1 and 0.5 ether to bob), both revealed in time; the
    deadline has passed."""
    pair = open_channel(5 * ETHER, ETHER)
    now = chain.now()
    first = add_lock(chain, pair, "A", ETHER, S1, now + 1800)
    second = add_lock(chain, pair, "A", ETHER // 2, S2, now + 1800)
    contract.reveal_secrets(alice, [S1, S2])
    contract.close(alice, pair.params, pair.a.latest)
    next_block_at(chain, contract.get_channel(contract.channel_id(pair.params)).deadline + 1)
    return pair, first, second


def _refused_settle(chain, contract, pair, packed, expected, *accounts):
    cid = contract.channel_id(pair.params)
    before = snapshot(chain, contract, cid, *accounts)
    with pytest.raises(LocksMismatch) as e:
        contract.settle(accounts[0], pair.params, locks=packed)
    assert e.value == expected
    assert snapshot(chain, contract, cid, *accounts) == before
    assert contract.get_channel(cid).status == STATUS_CLOSING


def test_a_lock_list_that_is_not_the_committed_one_reverts_locks_mismatch_with_both_roots(
    chain, contract, closing_with_locks, alice, bob, carol
):
    pair, first, second = closing_with_locks
    root = locks_root([first, second])
    assert contract.recorded_state(contract.channel_id(pair.params)).locks_root == root
    richer = replace(second, amount=2 * ETHER)
    later = replace(first, expiry=first.expiry + 1)
    flipped = replace(first, sender="B")
    forged_lists = [
        pack_locks([first]),  # a lock left out
        pack_locks([first, richer]),  # an amount raised
        pack_locks([later, second]),  # an expiry moved
        pack_locks([flipped, second]),  # a direction flipped
        pack_locks([first, second]) + b"\x00",  # a trailing byte
        pack_locks([first, second])[:-1],  # a byte short
    ]
    for packed in forged_lists:
        _refused_settle(chain, contract, pair, packed, LocksMismatch(root, keccak(packed)), carol, alice, bob)
    # no list at all hashes to the zero root
    _refused_settle(chain, contract, pair, b"", LocksMismatch(root, ZERO_ROOT), carol, alice, bob)
    receipt = contract.settle(carol, pair.params, locks=[first, second])  # the committed list settles
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (35 * ETHER // 10, ETHER + 15 * ETHER // 10)


def test_a_lock_list_with_a_revealed_lock_duplicated_reverts_locks_mismatch(
    chain, contract, closing_with_locks, alice, bob
):
    pair, first, second = closing_with_locks
    root = locks_root([first, second])
    for locks in ([first, first, second], [first, second, second], [first, second, first, second]):
        packed = pack_locks(locks)
        _refused_settle(chain, contract, pair, packed, LocksMismatch(root, keccak(packed)), bob, alice)


def test_a_reordered_lock_list_reverts_locks_mismatch(chain, contract, closing_with_locks, alice, bob):
    pair, first, second = closing_with_locks
    packed = pack_locks([second, first])
    _refused_settle(
        chain, contract, pair, packed, LocksMismatch(locks_root([first, second]), keccak(packed)), bob, alice
    )


LOCKED_OVERFLOWS = [
    # (balanceA, balanceB, lockedA, lockedB): each sums to the 5 ether deposit modulo 2**256
    (0, 0, 2**256 - 1, 5 * ETHER + 1),
    (5 * ETHER, 0, 2**256 - 1, 1),
    (0, 5 * ETHER + 1, 2**256 - 1, 0),
    (1, 0, 2**255, 2**255 + 5 * ETHER - 1),
    (5 * ETHER, 0, 1, 2**256 - 1),
]


def test_locked_totals_that_overflow_to_look_conserved_revert_balances_not_conserved(
    chain, contract, open_channel, signed_state, alice, bob
):
    pair = open_channel(5 * ETHER)
    cid = contract.channel_id(pair.params)
    forged = []
    for balance_a, balance_b, locked_a, locked_b in LOCKED_OVERFLOWS:
        assert (balance_a + balance_b + locked_a + locked_b) % 2**256 == 5 * ETHER
        state = signed_state(
            pair.params, 1, balance_a, balance_b, locks_root=b"\x77" * 32, locked_a=locked_a, locked_b=locked_b
        )
        forged.append(((balance_a, balance_b), state))
    before = snapshot(chain, contract, cid, alice, bob)
    for (balance_a, balance_b), state in forged:
        with pytest.raises(BalancesNotConserved) as e:
            contract.close(alice, pair.params, state)
        assert e.value == BalancesNotConserved(balance_a, balance_b, 5 * ETHER)
        assert snapshot(chain, contract, cid, alice, bob) == before
    # and as a challenge of a close
    contract.close(alice, pair.params)
    before = snapshot(chain, contract, cid, alice, bob)
    for (balance_a, balance_b), state in forged:
        with pytest.raises(BalancesNotConserved) as e:
            contract.challenge(bob, pair.params, state)
        assert e.value == BalancesNotConserved(balance_a, balance_b, 5 * ETHER)
        assert snapshot(chain, contract, cid, alice, bob) == before


def test_a_final_state_keeping_a_pending_lock_reverts_final_state_has_locks_and_the_lock_still_settles(
    chain, contract, open_channel, alice, bob, carol
):
    """Neither a cooperative close nor bob's dispute-ending challenge takes a final state that still has
    the real pending lock; the lock is settled by its secret afterwards."""
    pair = open_channel(5 * ETHER)
    lock = add_lock(chain, pair, "A", ETHER, S1, chain.now() + 1800)
    cid = contract.channel_id(pair.params)
    held = pair.a.latest.state
    final = SignedState(replace(held, nonce=held.nonce + 1, is_final=True))
    final = final.with_signature("A", sign_state(contract.domain, final.state, alice.key))
    final = final.with_signature("B", sign_state(contract.domain, final.state, bob.key))
    expected = FinalStateHasLocks(ETHER, 0, locks_root([lock]))
    before = snapshot(chain, contract, cid, alice, bob)
    with pytest.raises(FinalStateHasLocks) as e:
        contract.cooperative_close(bob, pair.params, final)
    assert e.value == expected
    assert snapshot(chain, contract, cid, alice, bob) == before
    contract.close(alice, pair.params, pair.a.latest)
    before = snapshot(chain, contract, cid, alice, bob)
    with pytest.raises(FinalStateHasLocks) as e:
        contract.challenge(bob, pair.params, final)
    assert e.value == expected
    assert snapshot(chain, contract, cid, alice, bob) == before
    contract.reveal_secret(bob, S1)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = settle_after_deadline(chain, contract, pair, carol, [lock])
    assert chain.balance(alice.address) == before_a + 4 * ETHER
    assert chain.balance(bob.address) == before_b + ETHER
    assert settled_event(contract, receipt)["nonce"] == 1


def test_a_lock_larger_than_its_locked_total_pays_at_most_the_locked_total(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    """Both signed locks worth more than the state locks; revealed, each direction pays its locked total
    and no more, so the payouts still add up to the deposits."""
    pair = open_channel(5 * ETHER, 3 * ETHER)
    expiry = chain.now() + 1800
    oversized = Lock("A", 3 * ETHER, expiry, hashlock(S1))  # alone above lockedA (1 ether)
    split = [Lock("B", 3 * ETHER // 10, expiry, hashlock(S2)), Lock("B", 3 * ETHER // 10, expiry, hashlock(S3))]
    locks = [oversized, *split]  # together above lockedB (0.5 ether)
    state = signed_state(
        pair.params, 1, 4 * ETHER, 25 * ETHER // 10, locks_root=locks_root(locks), locked_a=ETHER, locked_b=ETHER // 2
    )
    contract.reveal_secrets(carol, [S1, S2, S3])
    contract.close(bob, pair.params, state)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = settle_after_deadline(chain, contract, pair, carol, locks)
    payout_a, payout_b = 4 * ETHER + ETHER // 2, 25 * ETHER // 10 + ETHER
    assert payout_a + payout_b == 8 * ETHER
    assert chain.balance(alice.address) == before_a + payout_a
    assert chain.balance(bob.address) == before_b + payout_b
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (payout_a, payout_b)


def test_a_lock_of_an_unknown_direction_pays_no_one_and_the_locked_total_goes_back(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    pair = open_channel(5 * ETHER)
    lock = Lock("A", ETHER, chain.now() + 1800, hashlock(S1))
    packed = bytes([2]) + lock.packed()[1:]  # direction 2: neither A pays B nor B pays A
    state = signed_state(pair.params, 1, 4 * ETHER, 0, locks_root=keccak(packed), locked_a=ETHER)
    contract.reveal_secret(bob, S1)
    contract.close(bob, pair.params, state)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = settle_after_deadline(chain, contract, pair, carol, packed)
    assert chain.balance(alice.address) == before_a + 5 * ETHER
    assert chain.balance(bob.address) == before_b
    event = settled_event(contract, receipt)
    assert (event["payoutA"], event["payoutB"]) == (5 * ETHER, 0)
