"""The penalty of contract v2: a participant who closes with a state it revoked (its signed ``Revocation``
of every nonce below a newer one) loses the whole channel to the other side once anyone proves it
(``proveRevoked``). Every refused proof reverts with its exact values and changes nothing.

The revocations are the off-chain ``Channel``'s (``sign_revocation``/``receive_revocation``); forged ones
are signed here with ``sign_message``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from paychan.contract import STATUS_CLOSING, STATUS_NONE, RecordedState
from paychan.exceptions import (
    ChannelNotClosing,
    ChannelPenalized,
    InvalidSignature,
    MalleableSignature,
    NotRevoked,
)
from paychan.signing import recover_digest_signer, revocation_digest, sign_message
from paychan.state import EMPTY_SIGNATURE, Lock, Revocation, Signature, hashlock, locks_root

from .conftest import ETHER, ChannelPair, next_block_at, tx_events

HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
TOTAL = 6 * ETHER  # every channel here: 5 ether from alice, 1 from bob


def snapshot(chain: Any, contract: Any, cid: bytes, *accounts: Any) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was: the slot, the record and the ETH balances."""
    return (
        contract.get_channel(cid),
        contract.recorded_state(cid),
        chain.balance(contract.address),
        tuple(chain.balance(a.address) for a in accounts),
    )


def three_payments(open_channel: Any) -> tuple[ChannelPair, list[Any]]:
    """A 5 + 1 ether channel after three payments: (4, 2), (3, 3), (3.5, 2.5) ether."""
    pair = open_channel(5 * ETHER, ETHER)
    return pair, [pair.pay("A", ETHER), pair.pay("A", ETHER), pair.pay("B", ETHER // 2)]


def revoke(pair: ChannelPair, role: str) -> tuple[Revocation, Signature]:
    """``role`` revokes every nonce below its latest state and the peer keeps the revocation."""
    own, peer = (pair.a, pair.b) if role == "A" else (pair.b, pair.a)
    revocation, signature = own.sign_revocation() or pytest.fail("nothing to revoke")
    peer.receive_revocation(revocation, signature)
    return revocation, signature


def proven_event(contract: Any, receipt: Any) -> dict[str, Any]:
    (event,) = tx_events(contract, receipt, "RevokedStateProven")
    return dict(event)


def settle_after_deadline(chain: Any, contract: Any, params: Any, sender: Any, **kwargs: Any) -> dict[str, Any]:
    deadline = contract.get_channel(contract.channel_id(params)).deadline
    if chain.now() < deadline + 1:
        next_block_at(chain, deadline + 1)
    (settled,) = tx_events(contract, contract.settle(sender, params, **kwargs), "ChannelSettled")
    return dict(settled)


@pytest.fixture
def cheated(contract, open_channel, alice):
    """alice revoked every nonce below 3, then closed with nonce 1 (4 ether to her instead of 3.5)."""
    pair, states = three_payments(open_channel)
    revocation, signature = revoke(pair, "A")
    assert revocation.below_nonce == 3
    contract.close(alice, pair.params, states[0])
    return pair, states, revocation, signature


# --- the proof -----------------------------------------------------------------------------------


def test_proving_the_closer_revoked_its_state_gives_the_honest_party_the_whole_channel(
    chain, contract, cheated, alice, bob, carol
):
    pair, _, revocation, signature = cheated
    cid = contract.channel_id(pair.params)
    closing, recorded = contract.get_channel(cid), contract.recorded_state(cid)
    receipt = contract.prove_revoked(bob, pair.params, revocation.below_nonce, signature)
    assert proven_event(contract, receipt) == {
        "channelId": cid,
        "cheater": alice.address,
        "closerNonce": 1,
        "belowNonce": 3,
    }
    onchain = contract.get_channel(cid)
    assert onchain == replace(closing, penalized=True)
    assert (onchain.status, onchain.closed_by, onchain.status_name) == (
        STATUS_CLOSING,
        "A",
        "closing (closer penalized)",
    )
    assert contract.recorded_state(cid) == recorded  # the record and its fingerprint stay
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert settled == {"channelId": cid, "nonce": 1, "payoutA": 0, "payoutB": TOTAL, "cooperative": False}
    assert chain.balance(alice.address) == before_a
    assert chain.balance(bob.address) == before_b + TOTAL
    assert contract.get_channel(cid).status == STATUS_NONE


def test_a_cheating_participant_b_loses_the_whole_channel_to_participant_a(
    chain, contract, open_channel, alice, bob, carol
):
    pair, states = three_payments(open_channel)
    revocation, signature = revoke(pair, "B")
    contract.close(bob, pair.params, states[1])  # nonce 2: 3 ether to bob instead of 2.5
    cid = contract.channel_id(pair.params)
    receipt = contract.prove_revoked(alice, pair.params, revocation.below_nonce, signature)
    assert proven_event(contract, receipt) == {
        "channelId": cid,
        "cheater": bob.address,
        "closerNonce": 2,
        "belowNonce": 3,
    }
    onchain = contract.get_channel(cid)
    assert (onchain.closed_by, onchain.penalized) == ("B", True)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (2, TOTAL, 0)
    assert chain.balance(alice.address) == before_a + TOTAL
    assert chain.balance(bob.address) == before_b


def test_a_watchtower_may_submit_the_proof_and_settle_for_the_offline_victim(
    chain, contract, cheated, alice, bob, watchtower
):
    pair, _, revocation, signature = cheated
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.prove_revoked(watchtower, pair.params, revocation.below_nonce, signature)
    assert proven_event(contract, receipt)["cheater"] == alice.address
    settled = settle_after_deadline(chain, contract, pair.params, watchtower)
    assert (settled["payoutA"], settled["payoutB"]) == (0, TOTAL)
    assert chain.balance(alice.address) == before_a
    assert chain.balance(bob.address) == before_b + TOTAL  # bob sent nothing


def test_a_proof_after_the_deadline_still_applies_until_the_channel_is_settled(
    chain, contract, cheated, alice, bob, carol
):
    pair, _, revocation, signature = cheated
    deadline = contract.get_channel(contract.channel_id(pair.params)).deadline
    next_block_at(chain, deadline + 60)
    contract.prove_revoked(bob, pair.params, revocation.below_nonce, signature)
    before_b = chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert (settled["payoutA"], settled["payoutB"]) == (0, TOTAL)
    assert chain.balance(bob.address) == before_b + TOTAL


def test_a_proven_cheaters_locks_are_ignored_and_the_honest_party_receives_them_too(
    chain, contract, open_channel, signed_state, alice, bob, carol
):
    """A revoked state with a lock of bob's towards alice, revealed in time: alice still gets nothing, and
    settle takes any lock list (none here) since it does not resolve locks of a penalized channel."""
    pair, _ = three_payments(open_channel)
    revocation, signature = revoke(pair, "A")
    secret = b"\x5a" * 32
    lock = Lock("B", ETHER, chain.now() + 1800, hashlock(secret))
    revoked = signed_state(pair.params, 2, 4 * ETHER, ETHER, locks_root=locks_root([lock]), locked_b=ETHER)
    contract.close(alice, pair.params, revoked)
    contract.reveal_secret(alice, secret)
    contract.prove_revoked(bob, pair.params, revocation.below_nonce, signature)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol, locks=b"")
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (2, 0, TOTAL)
    assert chain.balance(alice.address) == before_a
    assert chain.balance(bob.address) == before_b + TOTAL


@pytest.mark.parametrize("erasing", ["newest state", "final state"])
def test_a_cheater_challenging_its_own_close_with_a_newer_state_cannot_erase_the_evidence(
    chain, contract, cheated, alice, bob, carol, erasing
):
    """The record keeps the closer's nonce through challenges, so the proof still applies; a final state
    from the closer is only recorded, not paid out."""
    pair, states, revocation, signature = cheated
    cid = contract.channel_id(pair.params)
    newer = states[2] if erasing == "newest state" else pair.finalize()
    receipt = contract.challenge(alice, pair.params, newer)
    assert tx_events(contract, receipt, "ChannelSettled") == []
    recorded = contract.recorded_state(cid)
    assert (recorded.nonce, recorded.closer_nonce) == (newer.state.nonce, 1)
    receipt = contract.prove_revoked(bob, pair.params, revocation.below_nonce, signature)
    assert proven_event(contract, receipt) == {
        "channelId": cid,
        "cheater": alice.address,
        "closerNonce": 1,
        "belowNonce": 3,
    }
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (newer.state.nonce, 0, TOTAL)
    assert chain.balance(alice.address) == before_a
    assert chain.balance(bob.address) == before_b + TOTAL


def test_a_close_without_state_is_nonce_zero_and_any_revocation_covers_it(
    chain, contract, open_channel, alice, bob, carol
):
    pair = open_channel(5 * ETHER, ETHER)
    pair.pay("A", 2 * ETHER)  # bob is owed 2 ether; alice closes as if nothing was paid
    revocation, signature = revoke(pair, "A")
    assert revocation.below_nonce == 1
    contract.close(alice, pair.params)
    cid = contract.channel_id(pair.params)
    assert contract.recorded_state(cid).closer_nonce == 0
    receipt = contract.prove_revoked(bob, pair.params, 1, signature)
    assert proven_event(contract, receipt) == {
        "channelId": cid,
        "cheater": alice.address,
        "closerNonce": 0,
        "belowNonce": 1,
    }
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (0, 0, TOTAL)
    assert chain.balance(alice.address) == before_a
    assert chain.balance(bob.address) == before_b + TOTAL


# --- refused proofs ------------------------------------------------------------------------------


def _refused(chain, contract, params, sender, below_nonce, signature, expected, *accounts, recorded=None):
    cid = contract.channel_id(params)
    before = snapshot(chain, contract, cid, sender, *accounts)
    with pytest.raises(type(expected)) as e:
        contract.prove_revoked(sender, params, below_nonce, signature, recorded=recorded)
    assert e.value == expected
    assert snapshot(chain, contract, cid, sender, *accounts) == before


def test_a_revocation_that_does_not_cover_the_closers_nonce_reverts_not_revoked(
    chain, contract, cheated, alice, bob, carol
):
    pair, _, _, _ = cheated
    cid = contract.channel_id(pair.params)
    for below in (0, 1):  # alice closed with nonce 1: a revocation below 1 does not cover it
        signature = sign_message(contract.domain, Revocation(cid, below), alice.key)
        _refused(chain, contract, pair.params, bob, below, signature, NotRevoked(1, below), alice, carol)
    assert not contract.get_channel(cid).penalized


def test_an_honest_close_with_the_newest_state_cannot_be_penalized_with_the_revocation_below_it(
    chain, contract, open_channel, alice, bob, carol
):
    pair, states = three_payments(open_channel)
    revocation, signature = revoke(pair, "A")
    contract.close(alice, pair.params, states[2])  # nonce 3, the newest
    _refused(chain, contract, pair.params, bob, 3, signature, NotRevoked(3, 3), alice, carol)
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert (settled["payoutA"], settled["payoutB"]) == (35 * ETHER // 10, 25 * ETHER // 10)
    assert chain.balance(alice.address) == before_a + 35 * ETHER // 10
    assert chain.balance(bob.address) == before_b + 25 * ETHER // 10


def test_a_revocation_signed_by_anyone_but_the_closer_reverts_invalid_signature(
    chain, contract, cheated, alice, bob, carol
):
    pair, _, _, _ = cheated
    cid = contract.channel_id(pair.params)
    for signer in (bob, carol):  # the honest party's own revocation, a third party's
        signature = sign_message(contract.domain, Revocation(cid, 3), signer.key)
        _refused(
            chain, contract, pair.params, bob, 3, signature, InvalidSignature(alice.address, signer.address), alice
        )
    _refused(
        chain, contract, pair.params, bob, 3, EMPTY_SIGNATURE, InvalidSignature(alice.address, ZERO_ADDRESS), alice
    )


def test_a_revocation_submitted_with_another_below_nonce_than_signed_reverts_invalid_signature(
    chain, contract, cheated, alice, bob
):
    pair, _, revocation, signature = cheated
    cid = contract.channel_id(pair.params)
    for below in (2, 4):
        recovered = recover_digest_signer(revocation_digest(contract.domain, Revocation(cid, below)), signature)
        assert recovered != alice.address
        _refused(chain, contract, pair.params, bob, below, signature, InvalidSignature(alice.address, recovered), alice)


def test_a_revocation_of_another_channel_reverts_invalid_signature(chain, contract, cheated, open_channel, alice, bob):
    pair, _, _, _ = cheated
    other = open_channel(5 * ETHER, ETHER)  # the same two participants, another channel
    other_id = contract.channel_id(other.params)
    foreign = sign_message(contract.domain, Revocation(other_id, 3), alice.key)
    here = Revocation(contract.channel_id(pair.params), 3)
    recovered = recover_digest_signer(revocation_digest(contract.domain, here), foreign)
    assert recovered != alice.address
    _refused(chain, contract, pair.params, bob, 3, foreign, InvalidSignature(alice.address, recovered), alice)


def test_a_malleable_high_s_revocation_signature_reverts_malleable_signature(chain, contract, cheated, alice, bob):
    pair, _, revocation, signature = cheated
    for high_s in (HALF_N + 1, 2**255 - 1):
        for v_bit in (0, 1):
            twin = Signature(signature.r, ((v_bit << 255) | high_s).to_bytes(32, "big"))
            expected = MalleableSignature(high_s.to_bytes(32, "big"))
            _refused(chain, contract, pair.params, bob, revocation.below_nonce, twin, expected, alice)


def test_a_proof_on_an_open_channel_reverts_channel_not_closing(chain, contract, open_channel, alice, bob):
    pair, _ = three_payments(open_channel)
    _, signature = revoke(pair, "A")
    cid = contract.channel_id(pair.params)
    empty = RecordedState(0, 0, 0, 0, 0, 0, 0)
    _refused(chain, contract, pair.params, bob, 3, signature, ChannelNotClosing(cid), alice, recorded=empty)
    assert contract.get_channel(cid).deposit_a == 5 * ETHER


def test_a_proof_after_settlement_reverts_channel_not_closing(chain, contract, cheated, alice, bob, carol):
    pair, _, revocation, signature = cheated
    cid = contract.channel_id(pair.params)
    recorded = contract.recorded_state(cid)
    settle_after_deadline(chain, contract, pair.params, carol)
    _refused(chain, contract, pair.params, bob, 3, signature, ChannelNotClosing(cid), alice, carol, recorded=recorded)
    assert contract.get_channel(cid).status == STATUS_NONE


def test_a_second_proof_reverts_channel_penalized(chain, contract, cheated, alice, bob, watchtower):
    pair, _, revocation, signature = cheated
    cid = contract.channel_id(pair.params)
    contract.prove_revoked(bob, pair.params, revocation.below_nonce, signature)
    for sender in (bob, watchtower):
        _refused(chain, contract, pair.params, sender, 3, signature, ChannelPenalized(cid), alice)


def test_a_challenge_after_the_proof_reverts_channel_penalized(chain, contract, cheated, alice, bob, carol):
    pair, states, revocation, signature = cheated
    cid = contract.channel_id(pair.params)
    contract.prove_revoked(bob, pair.params, revocation.below_nonce, signature)
    for sender, newer in ((alice, states[2]), (alice, pair.finalize()), (bob, states[2])):
        before = snapshot(chain, contract, cid, alice, bob)
        with pytest.raises(ChannelPenalized) as e:
            contract.challenge(sender, pair.params, newer)
        assert e.value == ChannelPenalized(cid)
        assert snapshot(chain, contract, cid, alice, bob) == before
    before_b = chain.balance(bob.address)
    settled = settle_after_deadline(chain, contract, pair.params, carol)
    assert (settled["nonce"], settled["payoutA"], settled["payoutB"]) == (1, 0, TOTAL)
    assert chain.balance(bob.address) == before_b + TOTAL
