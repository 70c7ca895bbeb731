"""The payee's machine (paychan.transfer.target): the last hop checked, the secret asked of the payer and
shown to the upstream with the settle, revealed on chain if the upstream does not settle, or let expire."""

from __future__ import annotations

from dataclasses import replace

from paychan.routing import REVEAL_MARGIN
from paychan.transfer import target
from paychan.transfer.book import TransferBook
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    ChannelClosed,
    CloseChannel,
    InitPayment,
    LockAdded,
    LockSettled,
    PaymentReceived,
    ProposeSettleLock,
    ReceiveExpireProposal,
    ReceiveLockedTransfer,
    ReceiveSecretReveal,
    Refuse,
    RevealSecretOnChain,
    SecretRevealedOnChain,
    SendSecretRequest,
    StoreSecret,
    Tick,
)
from paychan.transfer.initiator import handle as initiator_handle
from paychan.transfer.mediator import ACCEPT_TIMEOUT
from paychan.transfer.state import (
    OFFER_TIMEOUT,
    ExpireRefused,
    ExpiryTooLate,
    ExpiryTooSoon,
    LockExceedsCapacity,
    MalformedHashlock,
    NotOnRoute,
    ReplayedPayment,
    WrongAmount,
)
from paychan.transfer.target import ABANDONED, ACCEPTED, EXPIRED, ONCHAIN, PAID, REQUESTED, SETTLING
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

CE = cid(CAROL, ERIN)


def offer():
    """The offer erin receives from carol on the route alice -> bob -> carol -> erin."""
    _, actions = initiator_handle(
        None, InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, (route(ALICE, BOB, CAROL, ERIN),), views(ALICE, BOB), NOW)
    )
    return replace(actions[0].transfer, index=2)


def receive(transfer=None, channels=None, now=NOW + 2):
    return ReceiveLockedTransfer(transfer or offer(), CAROL, channels or views(ERIN, CAROL), now)


def refusal(event):
    state, actions = target.handle(None, event, ERIN)
    assert state is None
    (refuse,) = actions
    assert isinstance(refuse, Refuse) and refuse.to == CAROL and refuse.channel_id == CE
    return refuse.error


def holding():
    state, _ = target.handle(None, receive(), ERIN)
    state, _ = target.handle(state, LockAdded(PAYMENT_ID, CE, NOW + 3), ERIN)
    return state


def with_last_hop(**changes):
    transfer = offer()
    return replace(transfer, hops=(*transfer.hops[:2], replace(transfer.hops[2], **changes)))


def test_the_payee_accepts_its_lock_and_asks_the_payer_for_the_secret_once_it_is_signed():
    state, actions = target.handle(None, receive(), ERIN)
    assert actions == [AcceptLock(offer())]  # not before: the payer then tries no other route
    state, actions = target.handle(state, LockAdded(PAYMENT_ID, CE, NOW + 3), ERIN)
    assert actions == [SendSecretRequest(ALICE, PAYMENT_ID, HASHLOCK, AMOUNT)] and state.status == REQUESTED


def test_a_secret_revealed_on_chain_before_the_lock_is_stored_and_settled_only_once_the_lock_is_signed():
    state, _ = target.handle(None, receive(), ERIN)
    state, actions = target.handle(state, SecretRevealedOnChain(HASHLOCK, SECRET, NOW + 3, NOW + 3), ERIN)
    assert actions == [StoreSecret(PAYMENT_ID, SECRET)] and state.status == ACCEPTED  # no lock to settle yet
    state, actions = target.handle(state, LockAdded(PAYMENT_ID, CE, NOW + 4), ERIN)
    assert actions == [ProposeSettleLock(CE, CAROL, PAYMENT_ID, SECRET)] and state.status == SETTLING


def test_with_the_payers_secret_the_payee_stores_it_and_proposes_the_settle_to_its_upstream():
    state, actions = target.handle(holding(), ReceiveSecretReveal(PAYMENT_ID, SECRET, ALICE, NOW + 4), ERIN)
    assert actions == [StoreSecret(PAYMENT_ID, SECRET), ProposeSettleLock(CE, CAROL, PAYMENT_ID, SECRET)]
    assert state.status == SETTLING
    state, actions = target.handle(state, LockSettled(PAYMENT_ID, CE, NOW + 5), ERIN)
    assert actions == [PaymentReceived(PAYMENT_ID, AMOUNT)] and state.status == PAID


def test_a_secret_from_someone_else_or_that_does_not_match_changes_nothing():
    state = holding()
    assert target.handle(state, ReceiveSecretReveal(PAYMENT_ID, SECRET, BOB, NOW + 4), ERIN) == (state, [])
    assert target.handle(state, ReceiveSecretReveal(PAYMENT_ID, b"\x05" * 32, ALICE, NOW + 4), ERIN) == (state, [])


def test_a_lock_below_the_payments_amount_is_refused_with_wrong_amount():
    error = refusal(receive(with_last_hop(amount=AMOUNT - 1)))
    assert isinstance(error, WrongAmount) and (error.amount, error.expected) == (AMOUNT - 1, AMOUNT)


def test_a_lock_that_leaves_less_than_the_reveal_margin_is_refused_with_expiry_too_soon():
    error = refusal(receive(now=PAYEE_EXPIRY - REVEAL_MARGIN + 1))
    assert isinstance(error, ExpiryTooSoon) and (error.expiry, error.earliest) == (PAYEE_EXPIRY, PAYEE_EXPIRY + 1)


def test_a_lock_beyond_the_channels_window_above_the_senders_balance_or_malformed_is_refused():
    error = refusal(receive(with_last_hop(expiry=NOW + 2 + 3001)))
    assert isinstance(error, ExpiryTooLate) and (error.expiry, error.latest) == (NOW + 3003, NOW + 3002)
    error = refusal(receive(channels=views(ERIN, carol=view(ERIN, CAROL, theirs=AMOUNT - 1))))
    assert isinstance(error, LockExceedsCapacity) and (error.amount, error.capacity) == (AMOUNT, AMOUNT - 1)
    error = refusal(receive(replace(offer(), hashlock=b"")))
    assert isinstance(error, MalformedHashlock) and error.size == 0


def test_an_offer_for_someone_else_or_not_the_last_hop_is_refused_with_not_on_route():
    error = refusal(receive(replace(offer(), target=DAVE)))
    assert isinstance(error, NotOnRoute)
    _, (refuse,) = target.handle(None, receive(replace(offer(), index=1)), ERIN)
    assert isinstance(refuse.error, NotOnRoute) and refuse.channel_id == cid(BOB, CAROL)


def test_an_upstream_that_does_not_settle_makes_the_payee_reveal_on_chain_and_close():
    state, _ = target.handle(holding(), ReceiveSecretReveal(PAYMENT_ID, SECRET, ALICE, NOW + 4), ERIN)
    state, actions = target.handle(state, Tick(PAYEE_EXPIRY - REVEAL_MARGIN - 1), ERIN)
    assert actions == [ProposeSettleLock(CE, CAROL, PAYMENT_ID, SECRET)]  # not countersigned: sent again
    state, actions = target.handle(state, Tick(PAYEE_EXPIRY - REVEAL_MARGIN), ERIN)
    assert actions == [RevealSecretOnChain(PAYMENT_ID, SECRET)]
    revealed = SecretRevealedOnChain(HASHLOCK, SECRET, PAYEE_EXPIRY - 110, PAYEE_EXPIRY - 110)
    state, actions = target.handle(state, revealed, ERIN)
    assert actions == [PaymentReceived(PAYMENT_ID, AMOUNT), CloseChannel(CE, PAYMENT_ID)] and state.status == ONCHAIN


def test_a_secret_already_on_chain_that_the_upstream_does_not_settle_makes_the_payee_close_at_the_margin():
    state, _ = target.handle(holding(), ReceiveSecretReveal(PAYMENT_ID, SECRET, ALICE, NOW + 4), ERIN)
    revealed = SecretRevealedOnChain(HASHLOCK, SECRET, NOW + 5, NOW + 5)  # revealed by someone else
    state, actions = target.handle(state, revealed, ERIN)
    assert actions == [] and state.status == SETTLING
    state, actions = target.handle(state, Tick(PAYEE_EXPIRY - REVEAL_MARGIN), ERIN)
    assert actions == [PaymentReceived(PAYMENT_ID, AMOUNT), CloseChannel(CE, PAYMENT_ID)] and state.status == ONCHAIN


def test_a_payee_that_never_reveals_lets_its_upstream_take_the_lock_back_after_expiry_only():
    state = holding()
    (refuse,) = target.handle(state, ReceiveExpireProposal(PAYMENT_ID, CE, PAYEE_EXPIRY), ERIN)[1]
    assert refuse == Refuse(PAYMENT_ID, CE, CAROL, ExpireRefused(PAYEE_EXPIRY, PAYEE_EXPIRY, 0))
    state, actions = target.handle(state, ReceiveExpireProposal(PAYMENT_ID, CE, PAYEE_EXPIRY + 1), ERIN)
    assert actions == [AcceptExpire(CE, PAYMENT_ID)] and state.status == EXPIRED and not state.is_live


def test_a_secret_learned_after_the_lock_expired_is_stored_but_claims_nothing():
    state, actions = target.handle(holding(), ReceiveSecretReveal(PAYMENT_ID, SECRET, ALICE, PAYEE_EXPIRY + 1), ERIN)
    assert actions == [StoreSecret(PAYMENT_ID, SECRET)] and state.status == REQUESTED


def test_an_accepted_lock_that_never_comes_is_abandoned_after_the_accept_timeout():
    state, _ = target.handle(None, receive(), ERIN)
    assert target.handle(state, Tick(NOW + 2 + ACCEPT_TIMEOUT - 1), ERIN)[0].status == "accepted"
    state, _ = target.handle(state, Tick(NOW + 2 + ACCEPT_TIMEOUT), ERIN)
    assert state.status == ABANDONED and not state.is_live


def test_a_closing_channel_makes_the_payee_reveal_the_known_secret_at_once():
    state, _ = target.handle(holding(), ReceiveSecretReveal(PAYMENT_ID, SECRET, ALICE, NOW + 4), ERIN)
    state, actions = target.handle(state, ChannelClosed(CE, NOW + 5), ERIN)
    assert actions == [RevealSecretOnChain(PAYMENT_ID, SECRET)]
    assert target.handle(None, Tick(NOW), ERIN) == (None, [])


def test_a_payee_back_after_its_lock_expired_does_not_reveal_a_secret_that_would_only_pay_the_others():
    state, _ = target.handle(holding(), ReceiveSecretReveal(PAYMENT_ID, SECRET, ALICE, NOW + 4), ERIN)
    state, actions = target.handle(state, Tick(PAYEE_EXPIRY + 1), ERIN)
    assert actions == [] and not state.reveal_sent


def test_an_offer_over_another_channel_takes_the_place_of_an_accepted_one_whose_lock_never_came():
    book = TransferBook(ERIN)
    assert book.handle(receive()) == [AcceptLock(offer())]
    (replay,) = book.handle(receive(now=NOW + 3))  # the same offer over the same channel: a replay
    assert replay == Refuse(PAYMENT_ID, CE, CAROL, ReplayedPayment(PAYMENT_ID))
    _, actions = initiator_handle(
        None,
        InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, (route(ALICE, DAVE, ERIN),), views(ALICE, DAVE), NOW + 100),
    )
    second = replace(actions[0].transfer, index=1)  # the payer's next route, after the first one died
    soon = ReceiveLockedTransfer(second, DAVE, views(ERIN, CAROL, DAVE), NOW + 2 + OFFER_TIMEOUT - 1)
    (refused,) = book.handle(soon)  # carol could still be signing its lock: a replay for now
    assert refused == Refuse(PAYMENT_ID, cid(DAVE, ERIN), DAVE, ReplayedPayment(PAYMENT_ID))
    event = ReceiveLockedTransfer(second, DAVE, views(ERIN, CAROL, DAVE), NOW + 101)
    assert book.handle(event) == [AcceptLock(second)]
    assert book.expects_lock(PAYMENT_ID, cid(DAVE, ERIN)) and not book.expects_lock(PAYMENT_ID, CE)
    book.handle(LockAdded(PAYMENT_ID, cid(DAVE, ERIN), NOW + 102))
    (replay,) = book.handle(receive(now=NOW + 103))  # a lock is signed now: no offer takes its place
    assert replay == Refuse(PAYMENT_ID, CE, CAROL, ReplayedPayment(PAYMENT_ID))
