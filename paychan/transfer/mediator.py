"""An intermediary's side of a mediated transfer: check the incoming offer, forward it, settle both locks
once the secret comes back, and reveal it on chain when the upstream does not settle in time.

``handle(state, event) -> (state, actions)``; the first event is ``ReceiveLockedTransfer`` (``state`` None).

Before taking an incoming lock (``AcceptLock``) the intermediary checks, and refuses with the named error
otherwise (``Refuse``, nothing signed): the offer's bounds (at most ``MAX_HOPS`` hops: ``RouteTooLong``;
positive amounts: ``InvalidAmount``); the hashlock is 32 bytes (``MalformedHashlock``); the offer is a lock
from its sender to us over a channel we have with it, and the next hop a lock from us over one of ours
(``NotOnRoute``); neither channel is closing (``ChannelClosing``); the incoming lock is within its sender's
balance and the outgoing one within ours (``LockExceedsCapacity``); it pays at least our advertised fee on
the outgoing channel (``paychan.fees.check_forward``: ``FeeTooLow``); the outgoing lock expires at least
``EXPIRY_DELTA`` before the incoming one (``paychan.routing.check_forward_expiry``:
``ExpiryDeltaTooSmall``), still leaves its receiver ``TARGET_MIN_LOCK_TIME`` (``ExpiryTooSoon``) and fits
the incoming channel's lock window (``ExpiryTooLate``). A payment id we already hold a live lock of is a
replay (checked by ``paychan.transfer.book``: ``ReplayedPayment``).

It offers the outgoing lock as soon as it accepts the incoming offer (``OfferLock``: an offer signs nothing,
so it travels while the upstream signs the incoming lock; for a sender with ``MAX_EARLY`` offers accepted and
not locked yet, once the incoming lock is signed), and signs the outgoing lock (``ProposeLock``)
only once both hold: the incoming lock is signed (``LockAdded``) and downstream accepted within
``OFFER_TIMEOUT`` (``ReceiveAcceptance``), in either order. A refusal or no answer from downstream is passed
upstream (``NextHopRefused``, ``NextHopTimedOut``): an incoming lock signed by then stays until its sender
takes it back after expiry (``AcceptExpire``).

The secret comes from downstream, as the proposal that settles the outgoing lock (``ReceiveSettleProposal``,
accepted at or before that lock's expiry) or on chain (``SecretRevealedOnChain``), or from the payer
upstream, as the state that pays the incoming lock (``ReceiveUnlock``: the payer unlocks its first hop as
soon as it told the payee the secret; countersigned whenever it comes, it pays us). The intermediary stores
it and proposes the settle of the incoming lock to its upstream (``ProposeSettleLock``); when that upstream
is the payer, only after ``UNLOCK_WAIT`` without its unlock (the two would cross, and the channel's turn
would go back and forth for nothing). If that is not
countersigned (``LockSettled``) by ``REVEAL_MARGIN`` before the incoming lock's expiry, it reveals the secret
on chain (``RevealSecretOnChain``) and, once the registry has it in time, closes the incoming channel
(``CloseChannel``): the settlement pays it the lock (the expiry rule in ``paychan.routing`` leaves it
``EXPIRY_DELTA = 2 * REVEAL_MARGIN`` for that). An outgoing lock that expires unsettled and unrevealed is
taken back (``ProposeExpireLock``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from paychan.channel import LOCK_EXPIRY_MARGIN
from paychan.exceptions import StateRejected
from paychan.fees import check_forward
from paychan.routing import REVEAL_MARGIN, check_forward_expiry
from paychan.state import ChannelId
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    AcceptSettle,
    Action,
    ChannelClosed,
    CloseChannel,
    Event,
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
from paychan.transfer.initiator import hashlock_of
from paychan.transfer.state import (
    OFFER_TIMEOUT,
    TARGET_MIN_LOCK_TIME,
    ChannelClosing,
    ExpireRefused,
    ExpiryTooLate,
    ExpiryTooSoon,
    LockedTransfer,
    LockExceedsCapacity,
    NextHopRefused,
    NextHopTimedOut,
    NotOnRoute,
    RouteHop,
    SettleTooLate,
    check_shape,
)

# incoming lock: accepted (waiting for the signed state), locked, settling (our settle proposed), settled,
# expired (given back), onchain (revealed in time, the channel closes: paid at settlement)
ACCEPTED, LOCKED, SETTLING = "accepted", "locked", "settling"
SETTLED, EXPIRED, ONCHAIN = "settled", "expired", "onchain"
ABANDONED = "abandoned"  # accepted, but its sender never proposed the lock: nothing signed, nothing to do
# outgoing lock: not offered yet, offered, ready (accepted downstream, the incoming lock not signed yet),
# proposed (accepted, signed by us), refused (or timed out), locked, settled, expiring, expired
WAITING, OFFERED, PROPOSED, REFUSED, EXPIRING = "waiting", "offered", "proposed", "refused", "expiring"
READY = "ready"
ACCEPT_TIMEOUT = 2 * OFFER_TIMEOUT  # seconds after our acceptance we wait for the sender's lock proposal
UNLOCK_WAIT = OFFER_TIMEOUT  # seconds we wait for the payer's unlock before we propose our settle to it


@dataclass(frozen=True)
class MediatorState:
    """One payment we forward: the incoming offer, where each lock stands, the fee, the secret once known."""

    transfer: LockedTransfer
    fee: int
    accepted_at: int = 0
    incoming: str = ACCEPTED
    outgoing: str = WAITING
    offered_at: int = 0
    secret: bytes | None = None
    revealed_on_chain_at: int = 0
    reveal_sent: bool = False
    settle_proposed_at: int = 0
    settle_sent_at: int = 0  # when our settle proposal upstream was last sent (re-sent until countersigned)
    expire_sent_at: int = 0  # when our expire proposal downstream was last sent
    incoming_closed: bool = False
    outgoing_closed: bool = False

    @property
    def incoming_hop(self) -> RouteHop:
        return self.transfer.hop

    @property
    def outgoing_hop(self) -> RouteHop:
        return self.transfer.hops[self.transfer.index + 1]

    @property
    def payment_id(self) -> int:
        return self.transfer.payment_id

    @property
    def is_done(self) -> bool:
        """Both locks resolved: nothing can move any more (the store may forget the payment)."""
        if self.incoming == ABANDONED:
            return True
        incoming_done = self.incoming in (SETTLED, EXPIRED, ONCHAIN)
        return incoming_done and self.outgoing in (REFUSED, SETTLED, EXPIRED)

    @property
    def is_live(self) -> bool:
        """Some lock of this payment is signed (or about to be) and unresolved: a new offer with its payment
        id is a replay."""
        return self.incoming not in (EXPIRED, ABANDONED)


Transition = tuple[MediatorState | None, list[Action]]
_Step = tuple[MediatorState, list[Action]]


def check_offer(event: ReceiveLockedTransfer, us: str) -> int:
    """The fee we earn by forwarding ``event``'s offer; raises the refusal (a ``StateRejected``) otherwise."""
    transfer, now = event.transfer, event.now
    check_shape(transfer)
    if not 0 <= transfer.index < len(transfer.hops) - 1:
        raise NotOnRoute(transfer.index, event.sender, us)
    incoming, outgoing = transfer.hop, transfer.hops[transfer.index + 1]
    channel_in = event.channels.get(incoming.channel_id)
    if (
        incoming.sender != event.sender
        or incoming.receiver != us
        or channel_in is None
        or channel_in.peer != event.sender
    ):
        raise NotOnRoute(transfer.index, incoming.sender, incoming.receiver)
    channel_out = event.channels.get(outgoing.channel_id)
    if outgoing.sender != us or channel_out is None or channel_out.peer != outgoing.receiver:
        raise NotOnRoute(transfer.index + 1, outgoing.sender, outgoing.receiver)
    for channel in (channel_in, channel_out):
        if channel.closing:
            raise ChannelClosing(channel.channel_id)
    if incoming.amount > channel_in.theirs:
        raise LockExceedsCapacity(incoming.channel_id, incoming.amount, channel_in.theirs)
    if outgoing.amount > channel_out.ours:
        raise LockExceedsCapacity(outgoing.channel_id, outgoing.amount, channel_out.ours)
    fee = check_forward(incoming.amount, outgoing.amount, channel_out.fee)
    check_forward_expiry(incoming.expiry, outgoing.expiry)
    if outgoing.expiry < now + TARGET_MIN_LOCK_TIME:
        raise ExpiryTooSoon(outgoing.expiry, now + TARGET_MIN_LOCK_TIME)
    latest = now + channel_in.challenge_period - LOCK_EXPIRY_MARGIN
    if incoming.expiry > latest:
        raise ExpiryTooLate(incoming.expiry, latest)
    return fee


def handle(state: MediatorState | None, event: Event, us: str) -> Transition:
    """The intermediary ``us``'s machine for one payment: ``state`` after ``event`` and the actions, in order."""
    if state is None:
        if not isinstance(event, ReceiveLockedTransfer):
            return None, []
        try:
            fee = check_offer(event, us)
        except StateRejected as refused:
            hops, index = event.transfer.hops, event.transfer.index
            cid = hops[index].channel_id if 0 <= index < len(hops) else ChannelId(b"\x00" * 32)
            return None, [Refuse(event.transfer.payment_id, cid, event.sender, refused)]
        if not event.early:  # (the book's bound: the offer waits for its lock)
            return MediatorState(event.transfer, fee, event.now), [AcceptLock(event.transfer)]
        state = MediatorState(event.transfer, fee, event.now, outgoing=OFFERED, offered_at=event.now)
        return state, [AcceptLock(event.transfer), OfferLock(event.transfer.next())]
    if isinstance(event, ReceiveAcceptance):
        return _on_acceptance(state, event)
    if isinstance(event, LockAdded):
        return _on_lock_added(state, event)
    if isinstance(event, ReceiveRefusal):
        return _on_refusal(state, event)
    if isinstance(event, ReceiveSettleProposal):
        return _on_settle_proposal(state, event)
    if isinstance(event, ReceiveUnlock):
        return _on_unlock(state, event)
    if isinstance(event, LockSettled):
        if event.channel_id == state.incoming_hop.channel_id and state.incoming == SETTLING:
            return replace(state, incoming=SETTLED), []
        return state, []
    if isinstance(event, ReceiveExpireProposal):
        return _on_expire_proposal(state, event)
    if isinstance(event, LockExpired):
        if event.channel_id == state.outgoing_hop.channel_id and state.outgoing == EXPIRING:
            return replace(state, outgoing=EXPIRED), []
        return state, []
    if isinstance(event, SecretRevealedOnChain):
        return _on_revealed_on_chain(state, event)
    if isinstance(event, ChannelClosed):
        return _on_channel_closed(state, event)
    if isinstance(event, Tick):
        return _on_tick(state, event.now)
    return state, []


def _on_lock_added(state: MediatorState, event: LockAdded) -> _Step:
    if event.channel_id == state.incoming_hop.channel_id and state.incoming == ACCEPTED:
        state = replace(state, incoming=LOCKED)
        if state.outgoing == WAITING:  # not offered with the acceptance (``early`` false)
            state = replace(state, outgoing=OFFERED, offered_at=event.now)
            return state, [OfferLock(state.transfer.next())]
        if state.outgoing == READY:
            return _propose_outgoing(state, event.now)
        return state, []
    if event.channel_id == state.outgoing_hop.channel_id and state.outgoing == PROPOSED:
        return replace(state, outgoing=LOCKED), []
    return state, []


def _on_acceptance(state: MediatorState, event: ReceiveAcceptance) -> _Step:
    """Downstream accepted our offer: we sign the outgoing lock only while the offer stands (before
    ``OFFER_TIMEOUT``, not refused upstream)."""
    hop = state.outgoing_hop
    if event.channel_id != hop.channel_id or event.sender != hop.receiver or state.outgoing != OFFERED:
        return state, []
    if event.now >= state.offered_at + OFFER_TIMEOUT:
        return state, []
    if state.incoming == ACCEPTED:  # the incoming lock is not signed yet: its ``LockAdded`` proposes ours
        return replace(state, outgoing=READY), []
    if state.incoming != LOCKED:
        return state, []
    return _propose_outgoing(state, event.now)


def _propose_outgoing(state: MediatorState, now: int) -> _Step:
    """Sign the outgoing lock: downstream accepted it and the incoming lock is ours; past ``OFFER_TIMEOUT``
    since the offer the downstream may have given up waiting (its acceptance is good for ``ACCEPT_TIMEOUT``),
    so the attempt is passed upstream as timed out instead."""
    if now >= state.offered_at + OFFER_TIMEOUT:
        return _refuse_upstream(state, NextHopTimedOut(state.transfer.index + 1, state.offered_at, now))
    return replace(state, outgoing=PROPOSED), [ProposeLock(state.transfer.next())]


def _refuse_upstream(state: MediatorState, error: StateRejected) -> _Step:
    hop = state.incoming_hop
    return replace(state, outgoing=REFUSED), [Refuse(state.payment_id, hop.channel_id, hop.sender, error)]


def _on_refusal(state: MediatorState, event: ReceiveRefusal) -> _Step:
    hop = state.outgoing_hop
    if event.channel_id != hop.channel_id or event.sender != hop.receiver:
        return state, []
    error = NextHopRefused(state.transfer.index + 1, event.reason)
    if state.outgoing in (OFFERED, READY):
        return _refuse_upstream(state, error)
    if state.outgoing == PROPOSED:  # our signed lock is out: it stays until it expires, but we forward nothing
        incoming = state.incoming_hop
        return state, [Refuse(state.payment_id, incoming.channel_id, incoming.sender, error)]
    return state, []


def _learn_secret(state: MediatorState, secret: bytes, now: int) -> _Step:
    """Store the secret and ask the upstream to settle our incoming lock (if it is still ours to claim)."""
    if state.secret is not None:
        return state, []
    state = replace(state, secret=secret)
    actions: list[Action] = [StoreSecret(state.payment_id, secret)]
    hop = state.incoming_hop
    payable = now <= hop.expiry or 0 < state.revealed_on_chain_at <= hop.expiry
    if state.incoming == LOCKED and payable:
        if state.incoming_closed:
            return _reveal(state, actions, now)
        if state.transfer.index == 0:  # our upstream is the payer, which unlocks: ours goes at the re-send if need be
            sent_at = now - OFFER_TIMEOUT + UNLOCK_WAIT
            return replace(state, incoming=SETTLING, settle_proposed_at=now, settle_sent_at=sent_at), actions
        state = replace(state, incoming=SETTLING, settle_proposed_at=now, settle_sent_at=now)
        actions.append(ProposeSettleLock(hop.channel_id, hop.sender, state.payment_id, secret))
    return state, actions


def _on_unlock(state: MediatorState, event: ReceiveUnlock) -> _Step:
    """The payer pays our incoming lock (it told the payee the secret): we countersign, and learn the secret."""
    hop = state.incoming_hop
    if event.channel_id != hop.channel_id or hashlock_of(event.secret) != state.transfer.hashlock:
        return state, []
    if state.incoming == SETTLED:  # a re-sent unlock: our countersignature again
        return state, [AcceptSettle(hop.channel_id, state.payment_id)]
    if state.incoming not in (LOCKED, SETTLING):
        return state, []
    actions: list[Action] = [] if state.secret is not None else [StoreSecret(state.payment_id, event.secret)]
    state = replace(state, secret=event.secret, incoming=SETTLED)
    return state, [*actions, AcceptSettle(hop.channel_id, state.payment_id)]


def _reveal(state: MediatorState, actions: list[Action], now: int) -> _Step:
    """Reveal the secret on chain, once, while that still pays our incoming lock (a reveal after its expiry
    would only pay the hops upstream of us)."""
    assert state.secret is not None
    if state.reveal_sent or state.revealed_on_chain_at or now > state.incoming_hop.expiry:
        return state, actions
    return replace(state, reveal_sent=True), [*actions, RevealSecretOnChain(state.payment_id, state.secret)]


def _on_settle_proposal(state: MediatorState, event: ReceiveSettleProposal) -> _Step:
    hop = state.outgoing_hop
    if event.channel_id != hop.channel_id or hashlock_of(event.secret) != state.transfer.hashlock:
        return state, []
    if state.outgoing == SETTLED:  # a re-sent proposal: our countersignature again (the same state)
        return state, [AcceptSettle(hop.channel_id, state.payment_id)]
    if state.outgoing not in (PROPOSED, LOCKED, EXPIRING):
        return state, []
    state, actions = _learn_secret(state, event.secret, event.now)
    paid_on_chain = 0 < state.revealed_on_chain_at <= hop.expiry
    if event.now > hop.expiry and not paid_on_chain:
        return state, [
            *actions,
            Refuse(state.payment_id, hop.channel_id, hop.receiver, SettleTooLate(hop.expiry, event.now)),
        ]
    return replace(state, outgoing=SETTLED), [AcceptSettle(hop.channel_id, state.payment_id), *actions]


def _on_expire_proposal(state: MediatorState, event: ReceiveExpireProposal) -> _Step:
    hop = state.incoming_hop
    if event.channel_id == hop.channel_id and state.incoming == EXPIRED:  # re-sent: countersign again
        return state, [AcceptExpire(hop.channel_id, state.payment_id)]
    if event.channel_id != hop.channel_id or state.incoming not in (LOCKED, SETTLING):
        return state, []
    paid_on_chain = 0 < state.revealed_on_chain_at <= hop.expiry
    if event.now <= hop.expiry or paid_on_chain:
        error = ExpireRefused(hop.expiry, event.now, state.revealed_on_chain_at)
        return state, [Refuse(state.payment_id, hop.channel_id, hop.sender, error)]
    return replace(state, incoming=EXPIRED), [AcceptExpire(hop.channel_id, state.payment_id)]


def _on_revealed_on_chain(state: MediatorState, event: SecretRevealedOnChain) -> _Step:
    if event.hashlock != state.transfer.hashlock:
        return state, []
    state = replace(state, revealed_on_chain_at=state.revealed_on_chain_at or event.revealed_at)
    state, actions = _learn_secret(state, event.secret, event.now)
    hop = state.incoming_hop
    unsettled = state.reveal_sent or state.incoming_closed  # we revealed because the upstream did not settle
    if unsettled and state.incoming in (LOCKED, SETTLING) and state.revealed_on_chain_at <= hop.expiry:
        state, actions = _claim_on_chain(state, actions)
    return state, actions


def _claim_on_chain(state: MediatorState, actions: list[Action]) -> _Step:
    """The secret is on chain in time and the upstream has not settled: the settlement pays us (close)."""
    state = replace(state, incoming=ONCHAIN)
    if state.incoming_closed:
        return state, actions
    return state, [*actions, CloseChannel(state.incoming_hop.channel_id, state.payment_id)]


def _on_channel_closed(state: MediatorState, event: ChannelClosed) -> _Step:
    if event.channel_id == state.outgoing_hop.channel_id:
        return replace(state, outgoing_closed=True), []
    if event.channel_id != state.incoming_hop.channel_id:
        return state, []
    state = replace(state, incoming_closed=True)
    if state.secret is not None and state.incoming in (LOCKED, SETTLING):
        return _reveal(state, [], event.now)  # no off-chain settle on a closing channel: the registry must have it
    return state, []


def _on_tick(state: MediatorState, now: int) -> _Step:
    if state.incoming == ACCEPTED and now >= state.accepted_at + ACCEPT_TIMEOUT:
        return replace(state, incoming=ABANDONED), []  # never signed: nothing to forward, nothing to claim
    if state.outgoing == OFFERED and now >= state.offered_at + OFFER_TIMEOUT:  # (ready: the upstream is late)
        return _refuse_upstream(state, NextHopTimedOut(state.transfer.index + 1, state.offered_at, now))
    actions: list[Action] = []
    incoming = state.incoming_hop
    if state.secret is not None and state.incoming in (LOCKED, SETTLING) and now >= incoming.expiry - REVEAL_MARGIN:
        if 0 < state.revealed_on_chain_at <= incoming.expiry:  # downstream revealed: no second reveal
            if now >= state.settle_proposed_at + OFFER_TIMEOUT:  # and the upstream had its time: close
                state, actions = _claim_on_chain(state, actions)
        else:
            state, actions = _reveal(state, actions, now)
    secret = state.secret
    if state.incoming == SETTLING and secret is not None and now >= state.settle_sent_at + OFFER_TIMEOUT:
        state = replace(state, settle_sent_at=now)  # the upstream has not countersigned: send it again
        actions.append(ProposeSettleLock(incoming.channel_id, incoming.sender, state.payment_id, secret))
    outgoing = state.outgoing_hop
    revealed_in_time = 0 < state.revealed_on_chain_at <= outgoing.expiry
    unresolved = state.outgoing in (PROPOSED, LOCKED)
    resend = state.outgoing == EXPIRING and now >= state.expire_sent_at + OFFER_TIMEOUT
    if (unresolved and now > outgoing.expiry and not revealed_in_time and not state.outgoing_closed) or resend:
        state = replace(state, outgoing=EXPIRING, expire_sent_at=now)
        actions.append(
            ProposeExpireLock(outgoing.channel_id, outgoing.receiver, state.payment_id, state.transfer.hashlock)
        )
    return state, actions


__all__ = ["MediatorState", "check_offer", "handle"]
