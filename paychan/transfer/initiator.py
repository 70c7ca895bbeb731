"""The payer's side of a mediated transfer: pick a route, offer the first hop's lock, retry on the next route
when the attempt fails, reveal the secret to the payee, and report the outcome.

``handle(state, event) -> (state, actions)``; the first event is ``InitPayment`` (``state`` None).

One payment has one ``payment_id`` and one hashlock (``sha256(secret)``) whatever the route, and the secret
is known to the payer alone until it tells the payee. **The payer never pays twice** because it keeps at
most one attempt that could still be paid, and tells the secret only for that one:

- an attempt is *offered* (the first hop's receiver has the offer, nothing is signed), then *proposed*
  (the receiver accepted in time and the payer signed the lock state: ``ProposeLock``; an acceptance after
  ``OFFER_TIMEOUT`` is ignored), then *locked* (both signed the first hop's lock);
- a refusal or no answer (``OFFER_TIMEOUT``) to an offered attempt ends it at once: no signature exists
  that could pay anyone, so the next route is offered right away, with the same hashlock;
- a refusal that comes back after the payer signed its first lock (a hop further down refused, timed out
  or lacked capacity) leaves that lock payable until its expiry: a hop that refused could still forward
  it, so the payer waits for the expiry, takes the lock back (``ProposeExpireLock``, sent again every
  ``OFFER_TIMEOUT`` until countersigned; on a closed channel, the settlement does it) and only then offers
  the next route. A lock is dead after its expiry
  unless its secret was revealed on chain at or before it (``SecretRevealedOnChain``), and it was not: the
  payer had not told it to anyone;
- the secret goes to the payee (``SendSecretReveal``) only when it asks for it with the payment's amount
  and hashlock (``ReceiveSecretRequest``) while the current attempt's first lock is signed (the payee asks
  once its own lock is signed; the payer's first lock may still wait for its countersignature): every
  earlier attempt is dead by then, and no later one is made once the secret is told, so the payee can be
  paid by one chain of locks only.

Once it told the secret the payer pays its first hop itself: it proposes the state that moves its lock to the
first hop's receiver (``ProposeUnlock``, re-sent every ``OFFER_TIMEOUT`` until countersigned while the lock
pays: until its expiry, or for good once the secret is on chain in time). The payee can claim its own lock
with the secret from then on, so every hop is paid or can claim on chain; the payer need not wait for the
secret to come back upstream hop by hop. The payment succeeded when that unlock is countersigned
(``LockSettled``), when the first hop's receiver settles the lock itself (``ReceiveSettleProposal``, at or
before its expiry: an intermediary that learned the secret from downstream and got no unlock), or when the
secret appears on chain in time (then the first hop is paid at settlement); it failed when every route was
tried, or when the payee never claimed a locked attempt (another route would
reach the same payee: it is not retried).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from paychan.exceptions import StateRejected
from paychan.routing import PAYEE_LOCK_TIME, ChannelGraph, Route
from paychan.state import ChannelId, checksum_address, hashlock
from paychan.transfer.events import (
    AcceptSettle,
    Action,
    ChannelClosed,
    Event,
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
from paychan.transfer.state import (
    EXPIRY_SLACK,
    OFFER_TIMEOUT,
    ChannelClosing,
    ChannelView,
    ExpiryTooLate,
    LockedTransfer,
    LockExceedsCapacity,
    NextHopTimedOut,
    RouteHop,
    SettleTooLate,
)

OFFERED, PROPOSED, LOCKED, REFUSED = "offered", "proposed", "locked", "refused"
EXPIRING, DEAD, SETTLED = "expiring", "dead", "settled"
SIGNED = (PROPOSED, LOCKED, REFUSED)  # our first lock is signed by us: it may pay until it expires
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
ROUTE_ALTERNATIVES = 3  # routes a payment may try (k of Yen's k shortest paths)


@dataclass(frozen=True)
class Attempt:
    """One route tried: its offer, where it stands (``offered``; ``proposed``: accepted, our lock signed and
    sent; ``locked``: countersigned; ``refused``: refused downstream after our lock was signed; ``expiring``,
    ``dead``, ``settled``), when it was offered, why it failed, and whether the first hop's channel closed."""

    route: Route
    transfer: LockedTransfer
    status: str
    offered_at: int
    reason: str = ""
    closed: bool = False
    expire_sent_at: int = 0  # when our expire proposal was last sent (re-sent until countersigned)
    unlock_sent_at: int = 0  # when our unlock (the settle we propose once the payee has the secret) was last sent

    @property
    def hop(self) -> RouteHop:
        return self.transfer.hops[0]


@dataclass(frozen=True)
class InitiatorState:
    """One payment of ours: its terms, the routes left to try, every attempt (the current one last)."""

    payment_id: int
    secret: bytes
    target: str
    amount: int
    routes: tuple[Route, ...]
    channels: dict[ChannelId, ChannelView]
    next_route: int = 0
    attempts: tuple[Attempt, ...] = ()
    secret_revealed: bool = False
    revealed_on_chain_at: int = 0
    outcome: str = PENDING
    skipped: tuple[str, ...] = ()

    @property
    def hashlock(self) -> bytes:
        return hashlock(self.secret)

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


Transition = tuple[InitiatorState | None, list[Action]]
_Step = tuple[InitiatorState, list[Action]]


def plan_payment(
    graph: ChannelGraph,
    payment_id: int,
    secret: bytes,
    source: str,
    target: str,
    amount: int,
    channels: dict[ChannelId, ChannelView],
    now: int,
    k: int = ROUTE_ALTERNATIVES,
) -> InitPayment:
    """The event that starts a payment of ``amount`` from ``source`` to ``target``: its ``k`` cheapest routes
    from ``graph`` (``ChannelGraph.routes``, with the capacity and lock windows at ``now``), tried in order.
    ``channels``: the payer's own channels (its spendable balances, which the graph only estimates)."""
    for cid, channel in channels.items():
        if cid in graph:
            graph.set_capacity(cid, source, channel.ours)
    routes = graph.routes(source, target, amount, k, now=now)
    return InitPayment(payment_id, secret, checksum_address(target), amount, tuple(routes), channels, now)


def handle(state: InitiatorState | None, event: Event) -> Transition:
    """The payer's machine: ``state`` after ``event`` and the actions to take, in order."""
    if state is None:
        if not isinstance(event, InitPayment):
            return None, []
        return _start(event)
    if isinstance(event, ReceiveRefusal):
        return _on_refusal(state, event)
    if isinstance(event, ReceiveAcceptance):
        return _on_acceptance(state, event)
    if isinstance(event, LockAdded):
        return _on_lock_added(state, event)
    if isinstance(event, ReceiveSecretRequest):
        return _on_secret_request(state, event)
    if isinstance(event, ReceiveSettleProposal):
        return _on_settle_proposal(state, event)
    if isinstance(event, LockSettled):
        return _on_unlocked(state, event)
    if isinstance(event, LockExpired):
        return _on_lock_expired(state, event)
    if isinstance(event, SecretRevealedOnChain):
        return _on_revealed_on_chain(state, event)
    if isinstance(event, ChannelClosed):
        return _on_channel_closed(state, event)
    if isinstance(event, Tick):
        return _on_tick(state, event.now)
    return state, []


def _start(event: InitPayment) -> _Step:
    if not isinstance(event.secret, bytes) or len(event.secret) != 32:
        raise ValueError("a payment's secret is 32 bytes")
    if isinstance(event.amount, bool) or not isinstance(event.amount, int) or event.amount <= 0:
        raise ValueError(f"a payment amount is a positive integer, not {event.amount!r}")
    for route in event.routes:
        if route.nodes[-1] != event.target or route.amount != event.amount:
            raise ValueError(f"route {route.nodes} does not pay {event.amount} to {event.target}")
    state = InitiatorState(event.payment_id, event.secret, event.target, event.amount, event.routes, event.channels)
    return _try_next_route(state, event.now, "no route")


def _try_next_route(state: InitiatorState, now: int, reason: str) -> _Step:
    """Offers the next route that our first channel can carry and whose expiries fit its channels; when none
    is left the payment failed (with the last attempt's reason, or why each route was skipped)."""
    skipped = list(state.skipped)
    for index in range(state.next_route, len(state.routes)):
        route = state.routes[index]
        first = route.hops[0]
        channel = state.channels.get(first.channel_id)
        error: StateRejected | None = None
        payee_expiry = now + PAYEE_LOCK_TIME + EXPIRY_SLACK
        if channel is None or channel.closing:
            error = ChannelClosing(first.channel_id)
        elif channel.ours < route.sent:
            error = LockExceedsCapacity(first.channel_id, route.sent, channel.ours)
        elif route.latest_payee_expiry(now) < payee_expiry:
            error = ExpiryTooLate(payee_expiry, route.latest_payee_expiry(now))
        if error is not None:
            skipped.append(f"route {index + 1}: {error}")
            continue
        expiries = route.expiries(payee_expiry)
        hops = tuple(
            RouteHop(hop.channel_id, hop.sender, hop.receiver, hop.amount, expiry)
            for hop, expiry in zip(route.hops, expiries, strict=True)
        )
        transfer = LockedTransfer(state.payment_id, state.hashlock, first.sender, state.target, state.amount, hops, 0)
        attempt = Attempt(route, transfer, OFFERED, now)
        state = replace(state, next_route=index + 1, attempts=(*state.attempts, attempt), skipped=tuple(skipped))
        return state, [OfferLock(transfer)]
    reasons = "; ".join([reason, *skipped[len(state.skipped) :]]) if skipped[len(state.skipped) :] else reason
    state = replace(state, next_route=len(state.routes), outcome=FAILED, skipped=tuple(skipped))
    return state, [PaymentFailed(state.payment_id, reasons, len(state.attempts))]


def _set_current(state: InitiatorState, **changes: object) -> InitiatorState:
    current = state.current
    assert current is not None
    return replace(state, attempts=(*state.attempts[:-1], replace(current, **changes)))  # type: ignore[arg-type]


def _is_current_hop(state: InitiatorState, payment_id: int, channel_id: ChannelId) -> bool:
    current = state.current
    return (
        state.outcome != FAILED
        and current is not None
        and payment_id == state.payment_id
        and channel_id == current.hop.channel_id
    )


def _on_refusal(state: InitiatorState, event: ReceiveRefusal) -> _Step:
    current = state.current
    if not _is_current_hop(state, event.payment_id, event.channel_id) or current is None:
        return state, []
    if event.sender != current.hop.receiver or state.outcome != PENDING:
        return state, []
    if current.status == OFFERED:  # nothing signed: the next route at once
        return _try_next_route(_set_current(state, status=DEAD, reason=event.reason), event.now, event.reason)
    if current.status in (PROPOSED, LOCKED) and not state.secret_revealed:  # our lock is signed: wait for expiry
        return _set_current(state, status=REFUSED, reason=event.reason), []
    return state, []


def _on_acceptance(state: InitiatorState, event: ReceiveAcceptance) -> _Step:
    """The first hop accepted our offer: we sign the lock only if the attempt still stands (not timed out,
    not given up for the next route); a late acceptance gets nothing, so nothing signed can pay it."""
    current = state.current
    if not _is_current_hop(state, event.payment_id, event.channel_id) or current is None:
        return state, []
    if current.status != OFFERED or event.sender != current.hop.receiver or state.outcome != PENDING:
        return state, []
    if event.now >= current.offered_at + OFFER_TIMEOUT:
        return state, []  # the tick that ends the attempt is due: too late
    return _set_current(state, status=PROPOSED), [ProposeLock(current.transfer)]


def _on_lock_added(state: InitiatorState, event: LockAdded) -> _Step:
    current = state.current
    if (
        _is_current_hop(state, event.payment_id, event.channel_id)
        and current is not None
        and current.status == PROPOSED
    ):
        return _set_current(state, status=LOCKED), []
    return state, []


def _on_secret_request(state: InitiatorState, event: ReceiveSecretRequest) -> _Step:
    current = state.current
    if (
        current is None
        or state.outcome != PENDING
        or current.status not in (PROPOSED, LOCKED)
        or event.payment_id != state.payment_id
        or event.sender != state.target
        or event.hashlock != state.hashlock
        or event.amount != state.amount
        or event.now > current.transfer.hops[-1].expiry
    ):
        return state, []  # not for the live attempt, or not what we pay: the secret stays ours
    actions: list[Action] = [SendSecretReveal(state.target, state.payment_id, state.secret)]
    if not current.unlock_sent_at:  # the payee can claim from now on: we pay our first hop (once; re-sent on ticks)
        hop = current.hop
        state = _set_current(state, unlock_sent_at=event.now)
        actions.append(ProposeUnlock(hop.channel_id, hop.receiver, state.payment_id, state.secret))
    return replace(state, secret_revealed=True), actions


def pending_unlock(state: InitiatorState, now: int) -> ProposeUnlock | None:
    """Our unlock of the current attempt's first lock, if we sent it, it is not countersigned yet and the
    lock still pays (before its expiry, or the secret on chain in time): what a restarted node sends again."""
    current = state.current
    if current is None or not current.unlock_sent_at or current.status not in (PROPOSED, LOCKED):
        return None
    hop = current.hop
    if not (now <= hop.expiry or 0 < state.revealed_on_chain_at <= hop.expiry):
        return None
    return ProposeUnlock(hop.channel_id, hop.receiver, state.payment_id, state.secret)


def _on_unlocked(state: InitiatorState, event: LockSettled) -> _Step:
    """The first hop countersigned our unlock: it is paid, and so is the payee (it holds the secret)."""
    current = state.current
    if current is None or event.payment_id != state.payment_id or event.channel_id != current.hop.channel_id:
        return state, []
    if not current.unlock_sent_at or current.status not in (*SIGNED, EXPIRING):
        return state, []
    state = _set_current(state, status=SETTLED)
    if state.outcome != PENDING:
        return state, []
    state = replace(state, outcome=SUCCEEDED)
    return state, [PaymentSucceeded(state.payment_id, current.route, len(state.attempts))]


def _on_settle_proposal(state: InitiatorState, event: ReceiveSettleProposal) -> _Step:
    current = state.current
    if current is None or event.payment_id != state.payment_id or event.channel_id != current.hop.channel_id:
        return state, []
    if hashlock_of(event.secret) != state.hashlock:
        return state, []
    if current.status == SETTLED:  # a re-sent proposal: our countersignature again
        return state, [AcceptSettle(current.hop.channel_id, state.payment_id)]
    if current.status not in (*SIGNED, EXPIRING):
        return state, []
    paid_on_chain = 0 < state.revealed_on_chain_at <= current.hop.expiry
    if event.now > current.hop.expiry and not paid_on_chain:
        error = SettleTooLate(current.hop.expiry, event.now)
        return state, [Refuse(state.payment_id, current.hop.channel_id, current.hop.receiver, error)]
    actions: list[Action] = [AcceptSettle(current.hop.channel_id, state.payment_id)]
    state = _set_current(state, status=SETTLED)
    if state.outcome == PENDING:
        state = replace(state, outcome=SUCCEEDED)
        actions.append(PaymentSucceeded(state.payment_id, current.route, len(state.attempts)))
    return state, actions


def hashlock_of(secret: bytes) -> bytes | None:
    """``sha256(secret)``, or None for something that is not a 32-byte secret."""
    return hashlock(secret) if isinstance(secret, bytes) and len(secret) == 32 else None


def _on_lock_expired(state: InitiatorState, event: LockExpired) -> _Step:
    current = state.current
    if not _is_current_hop(state, event.payment_id, event.channel_id) or current is None:
        return state, []
    if current.status != EXPIRING:
        return state, []
    return _after_expiry(state, current, event.now)


def _after_expiry(state: InitiatorState, current: Attempt, now: int) -> _Step:
    """Our first lock of the current attempt is back (or dead on a closed channel): the next route if a hop
    refused the attempt (and the payee never had the secret), else the payment failed."""
    refused = bool(current.reason) and not state.secret_revealed
    state = _set_current(state, status=DEAD)
    if refused:
        return _try_next_route(state, now, current.reason)
    reason = "the payee did not claim the payment before its lock expired"
    state = replace(state, outcome=FAILED)
    return state, [PaymentFailed(state.payment_id, reason, len(state.attempts))]


def _on_revealed_on_chain(state: InitiatorState, event: SecretRevealedOnChain) -> _Step:
    if event.hashlock != state.hashlock:
        return state, []
    state = replace(state, revealed_on_chain_at=state.revealed_on_chain_at or event.revealed_at)
    current = state.current
    if current is None or current.status not in (*SIGNED, EXPIRING) or state.outcome != PENDING:
        return state, []
    if event.revealed_at > current.hop.expiry:
        return state, []  # too late to pay our lock: it is ours again
    state = replace(state, outcome=SUCCEEDED)  # the first hop is paid at settlement, or settles off chain
    return state, [PaymentSucceeded(state.payment_id, current.route, len(state.attempts))]


def _on_channel_closed(state: InitiatorState, event: ChannelClosed) -> _Step:
    current = state.current
    channels = dict(state.channels)
    if event.channel_id in channels:
        channels[event.channel_id] = replace(channels[event.channel_id], closing=True)
    state = replace(state, channels=channels)
    if current is None or event.channel_id != current.hop.channel_id:
        return state, []
    if current.status == OFFERED and state.outcome == PENDING:
        reason = str(ChannelClosing(event.channel_id))
        return _try_next_route(_set_current(state, status=DEAD, reason=reason), event.now, reason)
    return _set_current(state, closed=True), []


def _on_tick(state: InitiatorState, now: int) -> _Step:
    current = state.current
    if current is None or state.outcome == FAILED:
        return state, []
    if current.status == OFFERED and now >= current.offered_at + OFFER_TIMEOUT and state.outcome == PENDING:
        reason = str(NextHopTimedOut(0, current.offered_at, now))
        return _try_next_route(_set_current(state, status=DEAD, reason=reason), now, reason)
    unlock = pending_unlock(state, now)
    if unlock is not None and now >= current.unlock_sent_at + OFFER_TIMEOUT:  # not countersigned yet: again
        return _set_current(state, unlock_sent_at=now), [unlock]
    expired = now > current.hop.expiry and not 0 < state.revealed_on_chain_at <= current.hop.expiry
    if current.status in SIGNED and expired:
        if current.closed:  # the settlement gives it back: nothing to sign
            return _after_expiry(state, current, now)
        hop = current.hop
        state = _set_current(state, status=EXPIRING, expire_sent_at=now)
        return state, [ProposeExpireLock(hop.channel_id, hop.receiver, state.payment_id, state.hashlock)]
    if current.status == EXPIRING and now >= current.expire_sent_at + OFFER_TIMEOUT:  # not countersigned yet
        hop = current.hop
        state = _set_current(state, expire_sent_at=now)
        return state, [ProposeExpireLock(hop.channel_id, hop.receiver, state.payment_id, state.hashlock)]
    return state, []


__all__ = ["ROUTE_ALTERNATIVES", "Attempt", "InitiatorState", "handle", "pending_unlock", "plan_payment"]
