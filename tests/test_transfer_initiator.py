"""The payer's machine (paychan.transfer.initiator): routes tried in order, one hashlock, the secret told once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paychan.routing import ChannelGraph
from paychan.transfer import initiator
from paychan.transfer.events import (
    AcceptSettle,
    ChannelClosed,
    InitPayment,
    LockAdded,
    LockExpired,
    LockSettled,
    OfferLock,
    PaymentFailed,
    PaymentSucceeded,
    ProposeExpireLock,
    ProposeLock,
    ProposeUnlock,
    ReceiveAcceptance,
    ReceiveRefusal,
    ReceiveSecretRequest,
    ReceiveSettleProposal,
    Refuse,
    SecretRevealedOnChain,
    SendSecretReveal,
    Tick,
)
from paychan.transfer.initiator import DEAD, EXPIRING, FAILED, LOCKED, PROPOSED, REFUSED, SETTLED, SUCCEEDED
from paychan.transfer.state import OFFER_TIMEOUT, ChannelView, SettleTooLate
from tests import test_routing as graphs
from tests.transfer_helpers import (
    ALICE,
    AMOUNT,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    HASHLOCK,
    NOW,
    PAYEE_EXPIRY,
    PAYMENT_ID,
    SECRET,
    cid,
    route,
    view,
    views,
)

VIA_BOB = route(ALICE, BOB, CAROL, ERIN)
VIA_DAVE = route(ALICE, DAVE, ERIN)
AB, AD = cid(ALICE, BOB), cid(ALICE, DAVE)


def start(routes=(VIA_BOB, VIA_DAVE), channels=None):
    event = InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, tuple(routes), channels or views(ALICE, BOB, DAVE), NOW)
    return initiator.handle(None, event)


def proposed(routes=(VIA_BOB, VIA_DAVE)):
    state, _ = start(routes)
    state, actions = initiator.handle(state, ReceiveAcceptance(PAYMENT_ID, AB, BOB, NOW + 1))
    assert actions == [ProposeLock(state.current.transfer)]
    return state


def locked(routes=(VIA_BOB, VIA_DAVE)):
    state, _ = initiator.handle(proposed(routes), LockAdded(PAYMENT_ID, AB, NOW + 1))
    return state


def test_the_payer_offers_the_cheapest_route_with_each_hops_amount_and_expiry():
    state, actions = start()
    assert actions == [OfferLock(state.current.transfer)]
    transfer = state.current.transfer
    assert transfer.hashlock == HASHLOCK and transfer.payment_id == PAYMENT_ID and transfer.index == 0
    assert [(h.sender, h.receiver, h.amount) for h in transfer.hops] == [
        (ALICE, BOB, 1_003_152),
        (BOB, CAROL, 1_002_050),
        (CAROL, ERIN, 1_000_000),
    ]
    assert [h.expiry for h in transfer.hops] == [PAYEE_EXPIRY + 480, PAYEE_EXPIRY + 240, PAYEE_EXPIRY]


def test_a_refusal_before_anything_was_signed_moves_to_the_next_route_at_once_with_the_same_hashlock():
    state, _ = start()
    state, actions = initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AB, BOB, "FeeTooLow(...)", NOW + 2))
    assert state.attempts[0].status == DEAD and state.attempts[0].reason == "FeeTooLow(...)"
    (offer,) = actions
    assert isinstance(offer, OfferLock)
    assert offer.transfer.hops[0].receiver == DAVE and offer.transfer.hashlock == HASHLOCK
    assert offer.transfer.payment_id == PAYMENT_ID
    assert [h.expiry for h in offer.transfer.hops] == [NOW + 2 + 300 + 240, NOW + 2 + 300]


def test_an_unanswered_offer_times_out_after_offer_timeout_and_the_next_route_is_offered():
    state, _ = start()
    assert initiator.handle(state, Tick(NOW + OFFER_TIMEOUT - 1)) == (state, [])
    state, actions = initiator.handle(state, Tick(NOW + OFFER_TIMEOUT))
    assert state.attempts[0].reason == f"NextHopTimedOut(hop=0, offered_at={NOW}, now={NOW + OFFER_TIMEOUT})"
    assert isinstance(actions[0], OfferLock) and actions[0].transfer.hops[0].receiver == DAVE


def test_a_refusal_after_the_first_lock_was_signed_waits_for_its_expiry_before_the_next_route():
    state = locked()
    state, actions = initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AB, BOB, "NextHopTimedOut(...)", NOW + 40))
    assert actions == [] and state.current.status == REFUSED
    expiry = PAYEE_EXPIRY + 480
    assert initiator.handle(state, Tick(expiry)) == (state, [])  # not expired yet: it could still pay
    state, actions = initiator.handle(state, Tick(expiry + 1))
    assert actions == [ProposeExpireLock(AB, BOB, PAYMENT_ID, HASHLOCK)] and state.current.status == EXPIRING
    state, actions = initiator.handle(state, LockExpired(PAYMENT_ID, AB, expiry + 2))
    assert state.attempts[0].status == DEAD
    (offer,) = actions
    assert isinstance(offer, OfferLock) and offer.transfer.hops[0].receiver == DAVE


def test_the_secret_goes_to_the_payee_only_once_the_attempts_first_lock_is_signed_with_the_payments_amount():
    state, _ = start()
    request = ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 3)
    assert initiator.handle(state, request) == (state, [])  # offered only: our lock is not signed
    _, actions = initiator.handle(proposed(), request)  # signed, its countersignature not back yet
    assert actions == [SendSecretReveal(ERIN, PAYMENT_ID, SECRET), ProposeUnlock(AB, BOB, PAYMENT_ID, SECRET)]
    state = locked()
    for wrong in (
        replace(request, amount=AMOUNT - 1),
        replace(request, sender=CAROL),
        replace(request, hashlock=b"\x01" * 32),
        replace(request, payment_id=PAYMENT_ID + 1),
    ):
        assert initiator.handle(state, wrong) == (state, [])
    state, actions = initiator.handle(state, request)
    assert actions == [SendSecretReveal(ERIN, PAYMENT_ID, SECRET), ProposeUnlock(AB, BOB, PAYMENT_ID, SECRET)]
    assert state.secret_revealed


def test_once_it_told_the_secret_the_payer_unlocks_its_first_hop_and_succeeds_when_that_is_countersigned():
    state, _ = initiator.handle(locked(), ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 3))
    _, again = initiator.handle(state, ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 4))
    assert again == [SendSecretReveal(ERIN, PAYMENT_ID, SECRET)]  # asked again: told again, one unlock
    assert initiator.handle(state, Tick(NOW + 3 + OFFER_TIMEOUT - 1))[1] == []
    state, actions = initiator.handle(state, Tick(NOW + 3 + OFFER_TIMEOUT))
    assert actions == [ProposeUnlock(AB, BOB, PAYMENT_ID, SECRET)]  # not countersigned yet: sent again
    assert initiator.handle(state, LockSettled(PAYMENT_ID, AD, NOW + 40)) == (state, [])  # not our first hop
    state, actions = initiator.handle(state, LockSettled(PAYMENT_ID, AB, NOW + 40))
    assert actions == [PaymentSucceeded(PAYMENT_ID, VIA_BOB, 1)]
    assert state.outcome == SUCCEEDED and state.current.status == SETTLED
    assert initiator.handle(state, Tick(NOW + 3 + 3 * OFFER_TIMEOUT))[1] == []


def test_an_unlock_is_not_sent_again_after_the_locks_expiry_and_a_settled_lock_without_one_changes_nothing():
    state = locked()
    assert initiator.handle(state, LockSettled(PAYMENT_ID, AB, NOW + 3)) == (state, [])  # we proposed no unlock
    state, _ = initiator.handle(state, ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 3))
    expiry = state.current.hop.expiry
    state, actions = initiator.handle(state, Tick(expiry + 1))
    assert actions == [ProposeExpireLock(AB, BOB, PAYMENT_ID, HASHLOCK)]  # bob had the time to take it
    state, actions = initiator.handle(state, LockSettled(PAYMENT_ID, AB, expiry + 2))  # the unlock got there first
    assert actions == [PaymentSucceeded(PAYMENT_ID, VIA_BOB, 1)] and state.current.status == SETTLED


def test_once_the_secret_is_told_a_refused_attempt_is_not_retried_on_another_route():
    state, _ = initiator.handle(proposed(), ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 2))
    state, _ = initiator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 2))
    state, _ = initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AB, BOB, "NextHopTimedOut(...)", NOW + 40))
    expiry = PAYEE_EXPIRY + 480
    state, actions = initiator.handle(state, Tick(expiry + 1))
    assert actions == [ProposeExpireLock(AB, BOB, PAYMENT_ID, HASHLOCK)]
    state, actions = initiator.handle(state, LockExpired(PAYMENT_ID, AB, expiry + 2))
    assert state.outcome == FAILED and len(state.attempts) == 1
    assert [type(action) for action in actions] == [PaymentFailed]


def test_the_payment_succeeded_when_the_first_hop_settles_with_the_secret():
    state = locked()
    state, _ = initiator.handle(state, ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 3))
    assert initiator.handle(state, ReceiveSettleProposal(PAYMENT_ID, AB, b"\x02" * 32, NOW + 4)) == (state, [])
    state, actions = initiator.handle(state, ReceiveSettleProposal(PAYMENT_ID, AB, SECRET, NOW + 4))
    assert actions == [AcceptSettle(AB, PAYMENT_ID), PaymentSucceeded(PAYMENT_ID, VIA_BOB, 1)]
    assert state.outcome == SUCCEEDED and state.current.status == SETTLED
    assert VIA_BOB.total_fee == 3_152 and VIA_BOB.fees == {BOB: 1_102, CAROL: 2_050}


def test_a_settle_proposed_after_the_first_locks_expiry_is_refused():
    state = locked()
    expiry = PAYEE_EXPIRY + 480
    state, actions = initiator.handle(state, ReceiveSettleProposal(PAYMENT_ID, AB, SECRET, expiry + 1))
    assert actions == [Refuse(PAYMENT_ID, AB, BOB, SettleTooLate(expiry, expiry + 1))]
    assert str(actions[0].error) == f"SettleTooLate(expiry={expiry}, now={expiry + 1})"


def test_a_payee_that_never_claims_lets_the_lock_expire_and_the_payment_fails_without_another_route():
    state = locked()
    expiry = PAYEE_EXPIRY + 480
    state, actions = initiator.handle(state, Tick(expiry + 1))
    assert actions == [ProposeExpireLock(AB, BOB, PAYMENT_ID, HASHLOCK)]
    state, actions = initiator.handle(state, LockExpired(PAYMENT_ID, AB, expiry + 1))
    assert actions == [PaymentFailed(PAYMENT_ID, "the payee did not claim the payment before its lock expired", 1)]
    assert state.outcome == FAILED and len(state.attempts) == 1


def test_a_secret_revealed_on_chain_in_time_means_the_payment_succeeded_and_the_lock_is_not_taken_back():
    state = locked()
    expiry = PAYEE_EXPIRY + 480
    state, actions = initiator.handle(state, SecretRevealedOnChain(HASHLOCK, SECRET, expiry, expiry))
    assert actions == [PaymentSucceeded(PAYMENT_ID, VIA_BOB, 1)]
    assert initiator.handle(state, Tick(expiry + 100))[1] == []  # never ProposeExpireLock: it is payable


def test_a_route_our_first_channel_cannot_carry_is_skipped_with_its_reason():
    channels = views(ALICE, DAVE, bob=view(ALICE, BOB, ours=1_003_151))
    state, actions = start(channels=channels)
    assert actions[0].transfer.hops[0].receiver == DAVE
    assert state.skipped == (
        f"route 1: LockExceedsCapacity(channel_id=0x{AB.hex()}, amount=1003152, capacity=1003151)",
    )


def test_when_every_route_failed_the_payment_failed_with_the_reasons():
    state, _ = start()
    state, _ = initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AB, BOB, "A", NOW + 1))
    state, actions = initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AD, DAVE, "B", NOW + 2))
    assert actions == [PaymentFailed(PAYMENT_ID, "B", 2)] and state.outcome == FAILED
    assert start(routes=())[1] == [PaymentFailed(PAYMENT_ID, "no route", 0)]


def test_a_refusal_from_someone_else_than_the_first_hop_changes_nothing():
    state, _ = start()
    assert initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AB, CAROL, "x", NOW + 1)) == (state, [])
    assert initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AD, DAVE, "x", NOW + 1)) == (state, [])


def test_a_closed_first_channel_kills_an_offered_attempt_and_lets_settlement_return_a_locked_one():
    state, _ = start()
    state, actions = initiator.handle(state, ChannelClosed(AB, NOW + 1))
    assert actions[0].transfer.hops[0].receiver == DAVE
    state = locked()
    state, _ = initiator.handle(state, ReceiveRefusal(PAYMENT_ID, AB, BOB, "r", NOW + 2))
    state, actions = initiator.handle(state, ChannelClosed(AB, NOW + 3))
    assert actions == [] and state.current.closed
    state, actions = initiator.handle(state, Tick(PAYEE_EXPIRY + 481))
    assert isinstance(actions[0], OfferLock) and actions[0].transfer.hops[0].receiver == DAVE  # nothing to sign


def test_a_payment_needs_a_32_byte_secret_and_routes_that_pay_its_amount_to_its_target():
    with pytest.raises(ValueError, match="32 bytes"):
        initiator.handle(None, InitPayment(1, b"x", ERIN, AMOUNT, (), {}, NOW))
    with pytest.raises(ValueError, match="does not pay"):
        initiator.handle(None, InitPayment(1, SECRET, ERIN, AMOUNT + 1, (VIA_BOB,), {}, NOW))
    assert initiator.handle(None, Tick(NOW)) == (None, [])


def test_the_payer_signs_its_lock_only_when_the_first_hop_accepts_in_time_and_it_is_locked_once_countersigned():
    state, _ = start()
    assert initiator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 1)) == (state, [])  # nothing proposed yet
    assert initiator.handle(state, ReceiveAcceptance(PAYMENT_ID, AB, CAROL, NOW + 1)) == (state, [])
    assert initiator.handle(state, ReceiveAcceptance(PAYMENT_ID, AB, BOB, NOW + OFFER_TIMEOUT)) == (state, [])
    assert proposed().current.status == PROPOSED
    assert locked().current.status == LOCKED


def test_an_acceptance_after_the_payer_moved_to_the_next_route_gets_no_lock():
    state, _ = start()
    state, _ = initiator.handle(state, Tick(NOW + OFFER_TIMEOUT))
    assert state.current.hop.receiver == DAVE
    assert initiator.handle(state, ReceiveAcceptance(PAYMENT_ID, AB, BOB, NOW + OFFER_TIMEOUT + 1)) == (state, [])


def test_a_refusal_after_our_lock_was_proposed_waits_for_its_expiry_as_if_it_were_signed_by_both():
    state, actions = initiator.handle(proposed(), ReceiveRefusal(PAYMENT_ID, AB, BOB, "r", NOW + 2))
    assert actions == [] and state.current.status == REFUSED
    assert initiator.handle(proposed(), Tick(NOW + OFFER_TIMEOUT + 5))[1] == []  # no timeout once signed


def test_plan_payment_takes_the_k_cheapest_routes_from_the_graph_with_the_payers_own_balances():
    a, b, c, d = graphs.A, graphs.B, graphs.C, graphs.D
    graph = ChannelGraph(graphs.DOMAIN)
    ab, bd = graphs.channel(graph, a, b), graphs.channel(graph, b, d)
    ac, cd = graphs.channel(graph, a, c), graphs.channel(graph, c, d)
    graphs.announce(graph, bd, b, 100, 10_000)
    graphs.announce(graph, cd, c, 10, 1_000)
    mine = {ab: ChannelView(ab, b, 10**6, 0), ac: ChannelView(ac, c, 1_000, 0)}  # alice spent most via carol
    event = initiator.plan_payment(graph, PAYMENT_ID, SECRET, a, d, 10_000, mine, NOW)
    assert [route.nodes for route in event.routes] == [(a, b, d)]  # via carol would need 10,020 of her 1,000
    mine[ac] = ChannelView(ac, c, 10**6, 0)
    event = initiator.plan_payment(graph, PAYMENT_ID, SECRET, a, d, 10_000, mine, NOW, k=2)
    assert [route.nodes for route in event.routes] == [(a, c, d), (a, b, d)]
    assert [route.total_fee for route in event.routes] == [20, 200]
    state, actions = initiator.handle(None, event)
    assert actions[0].transfer.hops[0].receiver == c and state.routes == event.routes


def test_a_restarted_payer_sends_its_unlock_again_while_the_lock_pays_and_not_once_it_is_dead():
    state = locked()
    assert initiator.pending_unlock(state, NOW + 3) is None  # no unlock sent: nothing to send again
    state, _ = initiator.handle(state, ReceiveSecretRequest(PAYMENT_ID, HASHLOCK, AMOUNT, ERIN, NOW + 3))
    expiry = state.current.hop.expiry
    unlock = ProposeUnlock(AB, BOB, PAYMENT_ID, SECRET)
    assert initiator.pending_unlock(state, expiry) == unlock
    assert initiator.pending_unlock(state, expiry + 1) is None  # expired, the secret not on chain: dead
    revealed, _ = initiator.handle(state, SecretRevealedOnChain(HASHLOCK, SECRET, expiry - 5, expiry - 4))
    assert initiator.pending_unlock(revealed, expiry + 100) == unlock  # on chain in time: bob's for good
    settled, _ = initiator.handle(revealed, LockSettled(PAYMENT_ID, AB, expiry + 101))
    assert initiator.pending_unlock(settled, expiry + 102) is None
