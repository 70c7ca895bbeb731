"""An intermediary's machine (paychan.transfer.mediator): every check before forwarding, named refusals with
their values, the secret settled upstream off chain, and revealed on chain when the upstream does not settle."""

from __future__ import annotations

from dataclasses import replace

from paychan.exceptions import InvalidAmount
from paychan.fees import FeeTooLow
from paychan.routing import REVEAL_MARGIN, ExpiryDeltaTooSmall
from paychan.transfer import mediator
from paychan.transfer.book import MAX_EARLY, TransferBook
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    AcceptSettle,
    ChannelClosed,
    CloseChannel,
    InitPayment,
    LockAdded,
    LockExpired,
    LockSettled,
    OfferLock,
    ProposeExpireLock,
    ProposeLock,
    ProposeSettleLock,
    ReceiveAcceptance,
    ReceiveExpireProposal,
    ReceiveLockedTransfer,
    ReceiveRefusal,
    ReceiveSettleProposal,
    ReceiveUnlock,
    Refuse,
    RevealSecretOnChain,
    SecretRevealedOnChain,
    StoreSecret,
    Tick,
)
from paychan.transfer.initiator import handle as initiator_handle
from paychan.transfer.mediator import (
    ABANDONED,
    ACCEPT_TIMEOUT,
    EXPIRED,
    LOCKED,
    OFFERED,
    ONCHAIN,
    PROPOSED,
    READY,
    REFUSED,
    SETTLED,
    SETTLING,
    UNLOCK_WAIT,
    WAITING,
)
from paychan.transfer.state import (
    OFFER_TIMEOUT,
    ChannelClosing,
    ExpireRefused,
    ExpiryTooLate,
    ExpiryTooSoon,
    LockExceedsCapacity,
    MalformedHashlock,
    NextHopRefused,
    NextHopTimedOut,
    NotOnRoute,
    ReplayedPayment,
    RouteTooLong,
    SettleTooLate,
)
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

AB, BC, CE = cid(ALICE, BOB), cid(BOB, CAROL), cid(CAROL, ERIN)
IN_EXPIRY, OUT_EXPIRY = PAYEE_EXPIRY + 480, PAYEE_EXPIRY + 240


def offer():
    """The offer bob receives from alice for the route alice -> bob -> carol -> erin."""
    state, actions = initiator_handle(
        None, InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, (route(ALICE, BOB, CAROL, ERIN),), views(ALICE, BOB), NOW)
    )
    return actions[0].transfer


def receive(transfer=None, channels=None, now=NOW + 1):
    transfer = transfer or offer()
    return ReceiveLockedTransfer(transfer, ALICE, channels or views(BOB, ALICE, CAROL), now)


def refusal(event):
    state, actions = mediator.handle(None, event, BOB)
    assert state is None
    (refuse,) = actions
    assert isinstance(refuse, Refuse) and refuse.to == ALICE and refuse.payment_id == PAYMENT_ID
    return refuse.error


def forwarding():
    """Bob with alice's lock signed and his offer to carol out."""
    state, _ = mediator.handle(None, receive(), BOB)
    state, _ = mediator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 2), BOB)
    return state


def forwarded():
    state, actions = mediator.handle(forwarding(), ReceiveAcceptance(PAYMENT_ID, BC, CAROL, NOW + 3), BOB)
    assert actions == [ProposeLock(offer().next())] and state.outgoing == PROPOSED
    state, _ = mediator.handle(state, LockAdded(PAYMENT_ID, BC, NOW + 3), BOB)
    assert state.outgoing == LOCKED
    return state


def test_the_outgoing_lock_is_signed_only_for_the_next_hops_acceptance_within_the_offer_timeout():
    state = forwarding()
    assert mediator.handle(state, ReceiveAcceptance(PAYMENT_ID, BC, DAVE, NOW + 3), BOB) == (state, [])
    late = ReceiveAcceptance(PAYMENT_ID, BC, CAROL, NOW + 2 + OFFER_TIMEOUT)
    assert mediator.handle(state, late, BOB) == (state, [])
    assert forwarded().outgoing == LOCKED


def test_an_accepted_offer_whose_lock_never_comes_is_abandoned_and_a_later_offer_is_not_a_replay():
    book = TransferBook(BOB)
    book.handle(receive())
    assert book.expects_lock(PAYMENT_ID, AB) and not book.expects_lock(PAYMENT_ID, BC)
    book.handle(Tick(NOW + 1 + ACCEPT_TIMEOUT - 1))
    assert book.expects_lock(PAYMENT_ID, AB)
    book.handle(Tick(NOW + 1 + ACCEPT_TIMEOUT))
    assert book.tasks[PAYMENT_ID].incoming == ABANDONED and book.tasks[PAYMENT_ID].is_done
    assert not book.expects_lock(PAYMENT_ID, AB)
    assert book.handle(receive(now=NOW + 200)) == [AcceptLock(offer()), OfferLock(offer().next())]


def test_a_refusal_after_our_outgoing_lock_was_proposed_is_passed_upstream_and_the_lock_waits_for_expiry():
    state, _ = mediator.handle(forwarding(), ReceiveAcceptance(PAYMENT_ID, BC, CAROL, NOW + 3), BOB)
    state, actions = mediator.handle(state, ReceiveRefusal(PAYMENT_ID, BC, CAROL, "x", NOW + 4), BOB)
    assert actions == [Refuse(PAYMENT_ID, AB, ALICE, NextHopRefused(1, "x"))] and state.outgoing == PROPOSED
    state, actions = mediator.handle(state, Tick(OUT_EXPIRY + 1), BOB)
    assert actions == [ProposeExpireLock(BC, CAROL, PAYMENT_ID, HASHLOCK)]


def with_hop(transfer, index, **changes):
    hops = list(transfer.hops)
    hops[index] = replace(hops[index], **changes)
    return replace(transfer, hops=tuple(hops))


def test_an_offer_that_pays_the_advertised_fee_is_accepted_and_forwarded_at_once_while_the_lock_is_signed():
    state, actions = mediator.handle(None, receive(), BOB)
    assert actions == [AcceptLock(offer()), OfferLock(offer().next())] and state.fee == 1_102
    assert state.outgoing == OFFERED  # an offer signs nothing: it need not wait for the incoming lock
    state, actions = mediator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 2), BOB)
    assert actions == [] and state.incoming == LOCKED
    assert offer().next().hop.amount == 1_002_050 and offer().next().hop.receiver == CAROL


def test_the_outgoing_lock_is_signed_once_both_the_incoming_lock_and_the_downstream_acceptance_are_in():
    state, _ = mediator.handle(None, receive(), BOB)
    state, actions = mediator.handle(state, ReceiveAcceptance(PAYMENT_ID, BC, CAROL, NOW + 2), BOB)
    assert actions == [] and state.outgoing == READY  # the incoming lock is not signed yet: nothing to forward
    state, actions = mediator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 3), BOB)
    assert actions == [ProposeLock(offer().next())] and (state.incoming, state.outgoing) == (LOCKED, PROPOSED)


def test_an_incoming_lock_signed_after_the_offer_timeout_is_not_forwarded_but_reported_upstream():
    state, _ = mediator.handle(None, receive(), BOB)
    state, _ = mediator.handle(state, ReceiveAcceptance(PAYMENT_ID, BC, CAROL, NOW + 2), BOB)
    state, actions = mediator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 1 + OFFER_TIMEOUT), BOB)
    assert actions == [Refuse(PAYMENT_ID, AB, ALICE, NextHopTimedOut(1, NOW + 1, NOW + 1 + OFFER_TIMEOUT))]
    assert (state.incoming, state.outgoing) == (LOCKED, REFUSED)


def test_a_refusal_from_downstream_before_the_incoming_lock_is_passed_upstream_and_nothing_is_forwarded():
    state, _ = mediator.handle(None, receive(), BOB)
    state, _ = mediator.handle(state, ReceiveAcceptance(PAYMENT_ID, BC, CAROL, NOW + 2), BOB)
    state, actions = mediator.handle(state, ReceiveRefusal(PAYMENT_ID, BC, CAROL, "x", NOW + 3), BOB)
    assert actions == [Refuse(PAYMENT_ID, AB, ALICE, NextHopRefused(1, "x"))] and state.outgoing == REFUSED
    state, actions = mediator.handle(state, LockAdded(PAYMENT_ID, AB, NOW + 4), BOB)
    assert actions == [] and state.incoming == LOCKED  # countersigned: it goes back to its sender at expiry


def test_an_offer_one_wei_below_the_fee_is_refused_with_fee_too_low_and_its_values():
    transfer = with_hop(offer(), 0, amount=1_002_050 + 1_101)
    error = refusal(receive(transfer))
    assert isinstance(error, FeeTooLow)
    assert (error.incoming, error.outgoing, error.fee) == (1_003_151, 1_002_050, 1_102)


def test_an_outgoing_expiry_closer_than_the_expiry_delta_is_refused():
    transfer = with_hop(offer(), 1, expiry=IN_EXPIRY - 239)
    error = refusal(receive(transfer))
    assert isinstance(error, ExpiryDeltaTooSmall)
    assert (error.incoming_expiry, error.outgoing_expiry, error.delta) == (IN_EXPIRY, IN_EXPIRY - 239, 240)


def test_an_outgoing_lock_that_leaves_its_receiver_too_little_time_is_refused():
    error = refusal(receive(now=OUT_EXPIRY - REVEAL_MARGIN + 1))
    assert isinstance(error, ExpiryTooSoon) and (error.expiry, error.earliest) == (OUT_EXPIRY, OUT_EXPIRY + 1)


def test_an_incoming_lock_beyond_the_channels_lock_window_is_refused():
    transfer = with_hop(with_hop(offer(), 0, expiry=NOW + 1 + 3000 + 1), 1, expiry=OUT_EXPIRY)
    error = refusal(receive(transfer))
    assert isinstance(error, ExpiryTooLate) and (error.expiry, error.latest) == (NOW + 3002, NOW + 3001)


def test_a_lock_above_the_upstreams_balance_or_a_forward_above_ours_is_refused_with_the_capacity():
    channels = views(BOB, CAROL, alice=view(BOB, ALICE, theirs=1_003_151))
    error = refusal(receive(channels=channels))
    assert isinstance(error, LockExceedsCapacity)
    assert (error.channel_id, error.amount, error.capacity) == (AB, 1_003_152, 1_003_151)
    channels = views(BOB, ALICE, carol=view(BOB, CAROL, ours=1_002_049))
    error = refusal(receive(channels=channels))
    assert (error.channel_id, error.amount, error.capacity) == (BC, 1_002_050, 1_002_049)


def test_a_hashlock_that_is_not_32_bytes_is_refused():
    error = refusal(receive(replace(offer(), hashlock=b"\x01" * 31)))
    assert isinstance(error, MalformedHashlock) and error.size == 31
    assert str(error) == "MalformedHashlock(size=31, expected=32)"


def test_an_offer_beyond_its_bounds_is_refused_before_anything_else_is_read():
    transfer = offer()
    error = refusal(receive(replace(transfer, hops=transfer.hops * 7)))
    assert isinstance(error, RouteTooLong) and (error.hops, error.limit) == (21, 20)
    error = refusal(receive(with_hop(transfer, 1, amount=0)))
    assert isinstance(error, InvalidAmount) and error.amount == 0
    _, (refuse,) = mediator.handle(None, receive(replace(transfer, index=9)), BOB)
    assert isinstance(refuse.error, NotOnRoute) and refuse.channel_id == bytes(32)


def test_an_offer_that_does_not_name_us_or_our_channel_or_a_closing_one_is_refused():
    error = refusal(receive(with_hop(offer(), 0, receiver=DAVE)))
    assert isinstance(error, NotOnRoute) and (error.index, error.receiver) == (0, DAVE)
    error = refusal(receive(channels=views(BOB, ALICE)))  # no channel with carol
    assert isinstance(error, NotOnRoute) and (error.index, error.receiver) == (1, CAROL)
    error = refusal(receive(replace(offer(), index=2)))
    assert isinstance(error, NotOnRoute)
    error = refusal(receive(channels=views(BOB, ALICE, carol=view(BOB, CAROL, closing=True))))
    assert isinstance(error, ChannelClosing) and error.channel_id == BC


def test_a_replayed_payment_id_is_refused_while_its_lock_is_live_and_taken_again_after_it_expired():
    book = TransferBook(BOB)
    assert book.handle(receive()) == [AcceptLock(offer()), OfferLock(offer().next())]
    (refuse,) = book.handle(receive(now=NOW + 5))
    assert refuse == Refuse(PAYMENT_ID, AB, ALICE, ReplayedPayment(PAYMENT_ID))
    book.handle(LockAdded(PAYMENT_ID, AB, NOW + 6))
    book.handle(ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY + 1))
    assert book.tasks[PAYMENT_ID].incoming == EXPIRED
    assert book.handle(receive(now=IN_EXPIRY + 2)) != [refuse]


def test_a_refusal_from_downstream_is_passed_upstream_and_the_incoming_lock_waits_for_its_expiry():
    state, actions = mediator.handle(forwarding(), ReceiveRefusal(PAYMENT_ID, BC, CAROL, "FeeTooLow(x)", NOW + 3), BOB)
    assert actions == [Refuse(PAYMENT_ID, AB, ALICE, NextHopRefused(1, "FeeTooLow(x)"))]
    assert state.outgoing == REFUSED
    assert mediator.handle(state, ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY), BOB)[1] == [
        Refuse(PAYMENT_ID, AB, ALICE, ExpireRefused(IN_EXPIRY, IN_EXPIRY, 0))
    ]
    state, actions = mediator.handle(state, ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY + 1), BOB)
    assert actions == [AcceptExpire(AB, PAYMENT_ID)] and state.is_done


def test_a_downstream_that_does_not_answer_within_the_offer_timeout_is_reported_upstream():
    state = forwarding()  # offered when the incoming offer was accepted, at NOW + 1
    assert mediator.handle(state, Tick(NOW + 1 + OFFER_TIMEOUT - 1), BOB)[1] == []
    state, actions = mediator.handle(state, Tick(NOW + 1 + OFFER_TIMEOUT), BOB)
    assert actions == [Refuse(PAYMENT_ID, AB, ALICE, NextHopTimedOut(1, NOW + 1, NOW + 1 + OFFER_TIMEOUT))]


def test_the_secret_from_downstream_settles_the_outgoing_lock_is_stored_and_settles_upstream_off_chain():
    state, actions = mediator.handle(forwarded(), ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 10), BOB)
    assert actions == [AcceptSettle(BC, PAYMENT_ID), StoreSecret(PAYMENT_ID, SECRET)]
    assert (state.incoming, state.outgoing) == (SETTLING, SETTLED)
    # our upstream is the payer, which unlocks its lock itself: ours only if its unlock does not come
    assert mediator.handle(state, Tick(NOW + 10 + UNLOCK_WAIT - 1), BOB)[1] == []
    state, actions = mediator.handle(state, Tick(NOW + 10 + UNLOCK_WAIT), BOB)
    assert actions == [ProposeSettleLock(AB, ALICE, PAYMENT_ID, SECRET)]
    state, actions = mediator.handle(state, LockSettled(PAYMENT_ID, AB, NOW + 11 + UNLOCK_WAIT), BOB)
    assert actions == [] and state.incoming == SETTLED and state.is_done


def test_the_payers_unlock_pays_the_incoming_lock_and_teaches_the_secret_and_downstream_settles_after_it():
    state, actions = mediator.handle(forwarded(), ReceiveUnlock(PAYMENT_ID, AB, SECRET, NOW + 10), BOB)
    assert actions == [StoreSecret(PAYMENT_ID, SECRET), AcceptSettle(AB, PAYMENT_ID)]
    assert (state.incoming, state.outgoing, state.secret) == (SETTLED, LOCKED, SECRET)
    _, again = mediator.handle(state, ReceiveUnlock(PAYMENT_ID, AB, SECRET, NOW + 40), BOB)
    assert again == [AcceptSettle(AB, PAYMENT_ID)]  # re-sent: the same countersignature
    state, actions = mediator.handle(state, ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 11), BOB)
    assert actions == [AcceptSettle(BC, PAYMENT_ID)] and state.is_done  # nothing more to claim upstream
    assert mediator.handle(state, Tick(IN_EXPIRY - REVEAL_MARGIN), BOB)[1] == []  # paid: no reveal on chain


def test_an_unlock_after_the_downstream_settle_cancels_our_own_settle_and_a_wrong_secret_unlocks_nothing():
    state, _ = mediator.handle(forwarded(), ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 10), BOB)
    assert mediator.handle(state, ReceiveUnlock(PAYMENT_ID, AB, b"\x09" * 32, NOW + 11), BOB) == (state, [])
    assert mediator.handle(state, ReceiveUnlock(PAYMENT_ID, BC, SECRET, NOW + 11), BOB) == (state, [])
    state, actions = mediator.handle(state, ReceiveUnlock(PAYMENT_ID, AB, SECRET, NOW + 11), BOB)
    assert actions == [AcceptSettle(AB, PAYMENT_ID)] and state.incoming == SETTLED and state.is_done
    assert mediator.handle(state, Tick(NOW + 10 + UNLOCK_WAIT), BOB)[1] == []  # no settle of ours left to send


def test_an_intermediary_whose_upstream_is_another_intermediary_settles_upstream_at_once():
    hop_in = offer().next()  # carol's offer from bob, on alice -> bob -> carol -> erin
    state, _ = mediator.handle(None, ReceiveLockedTransfer(hop_in, BOB, views(CAROL, BOB, ERIN), NOW + 1), CAROL)
    state, _ = mediator.handle(state, LockAdded(PAYMENT_ID, BC, NOW + 2), CAROL)
    state, _ = mediator.handle(state, ReceiveAcceptance(PAYMENT_ID, CE, ERIN, NOW + 3), CAROL)
    state, _ = mediator.handle(state, LockAdded(PAYMENT_ID, CE, NOW + 3), CAROL)
    state, actions = mediator.handle(state, ReceiveSettleProposal(PAYMENT_ID, CE, SECRET, NOW + 10), CAROL)
    assert actions == [
        AcceptSettle(CE, PAYMENT_ID),
        StoreSecret(PAYMENT_ID, SECRET),
        ProposeSettleLock(BC, BOB, PAYMENT_ID, SECRET),
    ]


def test_a_wrong_secret_changes_nothing_and_a_late_settle_is_refused_though_the_secret_is_kept():
    state = forwarded()
    assert mediator.handle(state, ReceiveSettleProposal(PAYMENT_ID, BC, b"\x09" * 32, NOW + 10), BOB) == (state, [])
    state, actions = mediator.handle(state, ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, OUT_EXPIRY + 1), BOB)
    assert actions == [
        StoreSecret(PAYMENT_ID, SECRET),
        Refuse(PAYMENT_ID, BC, CAROL, SettleTooLate(OUT_EXPIRY, OUT_EXPIRY + 1)),
    ]
    assert state.incoming == SETTLING  # the incoming lock is ours to claim: the payer's unlock, or ours


def test_an_upstream_that_does_not_settle_by_the_reveal_margin_makes_us_reveal_on_chain_and_close():
    state, _ = mediator.handle(forwarded(), ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 10), BOB)
    assert mediator.handle(state, Tick(NOW + 10 + OFFER_TIMEOUT - 1), BOB)[1] == []
    state, actions = mediator.handle(state, Tick(IN_EXPIRY - REVEAL_MARGIN - 1), BOB)
    assert actions == [ProposeSettleLock(AB, ALICE, PAYMENT_ID, SECRET)]  # not countersigned: sent again
    state, actions = mediator.handle(state, Tick(IN_EXPIRY - REVEAL_MARGIN), BOB)
    assert actions == [RevealSecretOnChain(PAYMENT_ID, SECRET)]
    assert mediator.handle(state, Tick(IN_EXPIRY - REVEAL_MARGIN + 1), BOB)[1] == []  # once
    revealed = SecretRevealedOnChain(HASHLOCK, SECRET, IN_EXPIRY - 100, IN_EXPIRY - 100)
    state, actions = mediator.handle(state, revealed, BOB)
    assert actions == [CloseChannel(AB, PAYMENT_ID)] and state.incoming == ONCHAIN
    error = mediator.handle(state, ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY + 1), BOB)
    assert error == (state, [])  # the lock is paid at settlement: no expiry signed


def test_a_secret_revealed_on_chain_by_downstream_is_learned_and_settled_upstream():
    revealed = SecretRevealedOnChain(HASHLOCK, SECRET, NOW + 20, NOW + 20)
    state, actions = mediator.handle(forwarded(), revealed, BOB)
    assert actions == [StoreSecret(PAYMENT_ID, SECRET)]  # the payer unlocks, else ours after UNLOCK_WAIT
    _, actions = mediator.handle(state, Tick(OUT_EXPIRY + 1), BOB)
    assert actions == [ProposeSettleLock(AB, ALICE, PAYMENT_ID, SECRET)]  # the outgoing lock is payable: kept
    state, actions = mediator.handle(state, ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, OUT_EXPIRY + 5), BOB)
    assert actions == [AcceptSettle(BC, PAYMENT_ID)]


def test_a_secret_downstream_revealed_on_chain_that_the_upstream_does_not_settle_makes_us_close_not_reveal_again():
    revealed = SecretRevealedOnChain(HASHLOCK, SECRET, NOW + 20, NOW + 20)
    state, _ = mediator.handle(forwarded(), revealed, BOB)
    assert state.incoming == SETTLING
    state, actions = mediator.handle(state, Tick(IN_EXPIRY - REVEAL_MARGIN), BOB)
    assert actions == [CloseChannel(AB, PAYMENT_ID)] and state.incoming == ONCHAIN


def test_a_secret_learned_from_the_chain_after_the_incoming_expiry_leaves_the_upstream_time_to_settle_first():
    revealed = SecretRevealedOnChain(HASHLOCK, SECRET, OUT_EXPIRY - 10, IN_EXPIRY + 500)  # we were offline
    state, actions = mediator.handle(forwarded(), revealed, BOB)
    assert actions == [StoreSecret(PAYMENT_ID, SECRET)]
    assert mediator.handle(state, Tick(IN_EXPIRY + 500 + OFFER_TIMEOUT - 1), BOB)[1] == []
    state, actions = mediator.handle(state, Tick(IN_EXPIRY + 500 + OFFER_TIMEOUT), BOB)
    assert actions == [CloseChannel(AB, PAYMENT_ID)]


def test_a_countersignature_lost_on_the_way_is_given_again_for_the_re_sent_proposal():
    state, _ = mediator.handle(forwarded(), ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 10), BOB)
    state, actions = mediator.handle(state, ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 50), BOB)
    assert actions == [AcceptSettle(BC, PAYMENT_ID)]  # the same state, countersigned again; no second secret
    expired = forwarding()
    expired, _ = mediator.handle(expired, ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY + 1), BOB)
    _, actions = mediator.handle(expired, ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY + 40), BOB)
    assert actions == [AcceptExpire(AB, PAYMENT_ID)]


def test_an_expire_proposal_not_countersigned_is_sent_again_every_offer_timeout():
    state, _ = mediator.handle(forwarded(), Tick(OUT_EXPIRY + 1), BOB)
    assert mediator.handle(state, Tick(OUT_EXPIRY + OFFER_TIMEOUT), BOB)[1] == []
    _, actions = mediator.handle(state, Tick(OUT_EXPIRY + 1 + OFFER_TIMEOUT), BOB)
    assert actions == [ProposeExpireLock(BC, CAROL, PAYMENT_ID, HASHLOCK)]


def test_an_outgoing_lock_that_expires_unclaimed_is_taken_back_and_the_upstream_takes_back_ours():
    state = forwarded()
    assert mediator.handle(state, Tick(OUT_EXPIRY), BOB)[1] == []
    state, actions = mediator.handle(state, Tick(OUT_EXPIRY + 1), BOB)
    assert actions == [ProposeExpireLock(BC, CAROL, PAYMENT_ID, HASHLOCK)]
    state, _ = mediator.handle(state, LockExpired(PAYMENT_ID, BC, OUT_EXPIRY + 2), BOB)
    state, actions = mediator.handle(state, ReceiveExpireProposal(PAYMENT_ID, AB, IN_EXPIRY + 1), BOB)
    assert actions == [AcceptExpire(AB, PAYMENT_ID)] and state.is_done
    assert (state.incoming, state.outgoing) == (EXPIRED, EXPIRED)


def test_an_incoming_channel_that_closes_while_we_know_the_secret_makes_us_reveal_at_once():
    state, _ = mediator.handle(forwarded(), ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 10), BOB)
    state, actions = mediator.handle(state, ChannelClosed(AB, NOW + 12), BOB)
    assert actions == [RevealSecretOnChain(PAYMENT_ID, SECRET)]
    assert mediator.handle(None, Tick(NOW), BOB) == (None, [])
    assert CE not in (AB, BC)


def test_an_intermediary_back_after_its_incoming_lock_expired_does_not_reveal_on_chain():
    state, _ = mediator.handle(forwarded(), ReceiveSettleProposal(PAYMENT_ID, BC, SECRET, NOW + 10), BOB)
    _, actions = mediator.handle(state, Tick(IN_EXPIRY + 1), BOB)
    assert RevealSecretOnChain(PAYMENT_ID, SECRET) not in actions


def test_offers_of_one_sender_beyond_max_early_not_yet_locked_are_forwarded_only_once_their_lock_is_signed():
    book = TransferBook(BOB)
    offers = [replace(offer(), payment_id=PAYMENT_ID + n, hashlock=bytes([n + 1]) * 32) for n in range(MAX_EARLY + 1)]
    for early in offers[:MAX_EARLY]:
        assert book.handle(receive(early)) == [AcceptLock(early), OfferLock(early.next())]
    last = offers[MAX_EARLY]  # costs alice nothing yet, like the four before it: it waits for its lock
    assert book.handle(receive(last)) == [AcceptLock(last)] and book.tasks[last.payment_id].outgoing == WAITING
    assert book.handle(LockAdded(last.payment_id, AB, NOW + 2)) == [OfferLock(last.next())]
    book.handle(LockAdded(offers[0].payment_id, AB, NOW + 2))  # one of the four is locked now: room again
    again = replace(offer(), payment_id=PAYMENT_ID + 99, hashlock=b"\x63" * 32)
    assert book.handle(receive(again)) == [AcceptLock(again), OfferLock(again.next())]
