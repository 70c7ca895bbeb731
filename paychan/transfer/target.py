"""The payee's side of a mediated transfer: check the last hop's offer, ask the payer for the secret, and
claim the lock from its upstream with it.

``handle(state, event, us) -> (state, actions)``; the first event is ``ReceiveLockedTransfer`` (``state``
None). The payee refuses (``Refuse``, nothing signed): an offer beyond its bounds (``RouteTooLong``,
``InvalidAmount``), a hashlock that is not 32 bytes
(``MalformedHashlock``), an offer that is not the route's last hop from its sender to us over a channel of
ours (``NotOnRoute``), a closing channel (``ChannelClosing``), a lock above its sender's balance
(``LockExceedsCapacity``), a lock below the payment's amount (``WrongAmount``; more is a gift), a lock that
leaves it less than ``TARGET_MIN_LOCK_TIME`` to reveal on chain (``ExpiryTooSoon``) or lies beyond the
channel's lock window (``ExpiryTooLate``).

Once the lock is signed (``LockAdded``) it asks the payer for the secret (``SendSecretRequest``, with the
amount). Not before: the payer tells the secret once and then tries no other route, so a payee that asked on
a route whose lock never reached it would leave the payment to fail instead of being retried. With the
secret (``ReceiveSecretReveal``, checked against the hashlock) it stores it and proposes the settle to its
upstream (``ProposeSettleLock``: the secret reaches the upstream with it); a secret learned before the lock
(on chain) waits for it: a payee settles only a lock it holds. If the
upstream does not countersign by ``REVEAL_MARGIN`` before the lock's expiry, it reveals on chain and closes
the channel: the settlement pays it. A payee that never asks for the secret, or never reveals it, lets its
lock expire: its upstream takes it back (``AcceptExpire``), and every lock upstream expires in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from paychan.channel import LOCK_EXPIRY_MARGIN
from paychan.exceptions import StateRejected
from paychan.routing import REVEAL_MARGIN
from paychan.state import ChannelId
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    Action,
    ChannelClosed,
    CloseChannel,
    Event,
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
from paychan.transfer.initiator import hashlock_of
from paychan.transfer.mediator import ACCEPT_TIMEOUT
from paychan.transfer.state import (
    OFFER_TIMEOUT,
    TARGET_MIN_LOCK_TIME,
    ChannelClosing,
    ExpireRefused,
    ExpiryTooLate,
    ExpiryTooSoon,
    LockedTransfer,
    LockExceedsCapacity,
    NotOnRoute,
    RouteHop,
    WrongAmount,
    check_shape,
)

ACCEPTED, REQUESTED, SETTLING = "accepted", "requested", "settling"
PAID, EXPIRED, ONCHAIN = "paid", "expired", "onchain"
ABANDONED = "abandoned"  # accepted, but the sender never proposed the lock


@dataclass(frozen=True)
class TargetState:
    """One payment to us: its last hop's offer, where it stands, the secret once known."""

    transfer: LockedTransfer
    accepted_at: int = 0
    status: str = ACCEPTED
    secret: bytes | None = None
    revealed_on_chain_at: int = 0
    reveal_sent: bool = False
    settle_proposed_at: int = 0
    settle_sent_at: int = 0  # when our settle proposal was last sent (re-sent until countersigned)
    closed: bool = False

    @property
    def hop(self) -> RouteHop:
        return self.transfer.hop

    @property
    def payment_id(self) -> int:
        return self.transfer.payment_id

    @property
    def is_live(self) -> bool:
        return self.status not in (EXPIRED, ABANDONED)


Transition = tuple[TargetState | None, list[Action]]
_Step = tuple[TargetState, list[Action]]


def check_offer(event: ReceiveLockedTransfer, us: str) -> None:
    """Raises the refusal (a ``StateRejected``) unless ``event``'s offer is a lock we take as the payee."""
    transfer, now = event.transfer, event.now
    check_shape(transfer)
    if not transfer.hops or not transfer.is_last or transfer.target != us:
        raise NotOnRoute(transfer.index, event.sender, us)
    hop = transfer.hop
    channel = event.channels.get(hop.channel_id)
    if hop.sender != event.sender or hop.receiver != us or channel is None or channel.peer != event.sender:
        raise NotOnRoute(transfer.index, hop.sender, hop.receiver)
    if channel.closing:
        raise ChannelClosing(channel.channel_id)
    if hop.amount > channel.theirs:
        raise LockExceedsCapacity(hop.channel_id, hop.amount, channel.theirs)
    if hop.amount < transfer.target_amount:
        raise WrongAmount(hop.amount, transfer.target_amount)
    if hop.expiry < now + TARGET_MIN_LOCK_TIME:
        raise ExpiryTooSoon(hop.expiry, now + TARGET_MIN_LOCK_TIME)
    latest = now + channel.challenge_period - LOCK_EXPIRY_MARGIN
    if hop.expiry > latest:
        raise ExpiryTooLate(hop.expiry, latest)


def handle(state: TargetState | None, event: Event, us: str) -> Transition:
    """The payee ``us``'s machine for one payment: ``state`` after ``event`` and the actions, in order."""
    if state is None:
        if not isinstance(event, ReceiveLockedTransfer):
            return None, []
        try:
            check_offer(event, us)
        except StateRejected as refused:
            hops = event.transfer.hops
            hop_index = event.transfer.index
            cid = hops[hop_index].channel_id if 0 <= hop_index < len(hops) else ChannelId(b"\x00" * 32)
            return None, [Refuse(event.transfer.payment_id, cid, event.sender, refused)]
        return TargetState(event.transfer, event.now), [AcceptLock(event.transfer)]
    hop = state.hop
    if isinstance(event, LockAdded) and event.channel_id == hop.channel_id and state.status == ACCEPTED:
        state = replace(state, status=REQUESTED)
        if state.secret is not None:  # learned on chain before the lock came
            return _settle(state, state.secret, event.now, [])
        transfer = state.transfer
        request = SendSecretRequest(transfer.initiator, transfer.payment_id, transfer.hashlock, transfer.target_amount)
        return state, [request]
    if isinstance(event, ReceiveSecretReveal):
        if event.sender != state.transfer.initiator or hashlock_of(event.secret) != state.transfer.hashlock:
            return state, []
        return _learn_secret(state, event.secret, event.now)
    if isinstance(event, LockSettled) and event.channel_id == hop.channel_id and state.status == SETTLING:
        return replace(state, status=PAID), [PaymentReceived(state.payment_id, hop.amount)]
    if isinstance(event, ReceiveExpireProposal) and event.channel_id == hop.channel_id:
        if state.status == EXPIRED:  # re-sent: countersign again
            return state, [AcceptExpire(hop.channel_id, state.payment_id)]
        if state.status not in (ACCEPTED, REQUESTED, SETTLING):
            return state, []
        paid_on_chain = 0 < state.revealed_on_chain_at <= hop.expiry
        if event.now <= hop.expiry or paid_on_chain:
            error = ExpireRefused(hop.expiry, event.now, state.revealed_on_chain_at)
            return state, [Refuse(state.payment_id, hop.channel_id, hop.sender, error)]
        return replace(state, status=EXPIRED), [AcceptExpire(hop.channel_id, state.payment_id)]
    if isinstance(event, SecretRevealedOnChain) and event.hashlock == state.transfer.hashlock:
        state = replace(state, revealed_on_chain_at=state.revealed_on_chain_at or event.revealed_at)
        state, actions = _learn_secret(state, event.secret, event.now)
        unsettled = state.reveal_sent or state.closed
        if state.status == SETTLING and unsettled and state.revealed_on_chain_at <= hop.expiry:
            state, actions = _claim_on_chain(state, actions)
        return state, actions
    if isinstance(event, ChannelClosed) and event.channel_id == hop.channel_id:
        state = replace(state, closed=True)
        if state.secret is not None and state.status == SETTLING:
            return _reveal(state, event.now)
        return state, []
    if isinstance(event, Tick):
        if state.status == ACCEPTED and event.now >= state.accepted_at + ACCEPT_TIMEOUT:
            return replace(state, status=ABANDONED), []
        if state.secret is not None and state.status == SETTLING and event.now >= hop.expiry - REVEAL_MARGIN:
            if not 0 < state.revealed_on_chain_at <= hop.expiry:
                return _reveal(state, event.now)
            if event.now >= state.settle_proposed_at + OFFER_TIMEOUT:  # on chain, upstream had its time: close
                return _claim_on_chain(state, [])
        secret = state.secret
        if secret is not None and state.status == SETTLING and event.now >= state.settle_sent_at + OFFER_TIMEOUT:
            state = replace(state, settle_sent_at=event.now)  # not countersigned yet: send it again
            return state, [ProposeSettleLock(hop.channel_id, hop.sender, state.payment_id, secret)]
    return state, []


def _learn_secret(state: TargetState, secret: bytes, now: int) -> _Step:
    if state.secret is not None or state.status not in (ACCEPTED, REQUESTED):
        return state, []
    state = replace(state, secret=secret)
    actions: list[Action] = [StoreSecret(state.payment_id, secret)]
    if state.status == ACCEPTED:
        return state, actions  # the lock is not signed yet: its ``LockAdded`` settles it
    return _settle(state, secret, now, actions)


def _settle(state: TargetState, secret: bytes, now: int, actions: list[Action]) -> _Step:
    """The lock is signed and we know its secret: propose the settle (or reveal, the channel closed)."""
    hop = state.hop
    if now > hop.expiry:
        return state, actions  # too late: the lock is its sender's
    state = replace(state, status=SETTLING, settle_proposed_at=now, settle_sent_at=now)
    if state.closed:
        state, more = _reveal(state, now)
        return state, [*actions, *more]
    return state, [*actions, ProposeSettleLock(hop.channel_id, hop.sender, state.payment_id, secret)]


def _claim_on_chain(state: TargetState, actions: list[Action]) -> _Step:
    """The secret is on chain in time and the upstream has not settled: we are paid at settlement (close)."""
    hop = state.hop
    state = replace(state, status=ONCHAIN)
    actions = [*actions, PaymentReceived(state.payment_id, hop.amount)]
    if not state.closed:
        actions.append(CloseChannel(hop.channel_id, state.payment_id))
    return state, actions


def _reveal(state: TargetState, now: int) -> _Step:
    """Reveal the secret on chain, once, while that still pays our lock (after its expiry it would pay only
    the hops upstream)."""
    if state.reveal_sent or state.revealed_on_chain_at or state.secret is None or now > state.hop.expiry:
        return state, []
    return replace(state, reveal_sent=True), [RevealSecretOnChain(state.payment_id, state.secret)]


__all__ = ["TargetState", "check_offer", "handle"]
