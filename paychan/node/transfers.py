"""The node's mediated transfers: it pays anyone through intermediaries, forwards for a fee, and is paid.

``NodeTransfers`` drives the pure machines of ``paychan.transfer`` (initiator, mediator, target, one
``TransferBook`` per node) with the node's channels, peers, store and chain. It only translates: events in
(a peer's message, a step of the channel exchange, a chain event, the clock), actions out (a message, a lock
operation on a channel, a chain transaction, an outcome); every decision is the machines'.

**Durability.** Each step's new machine state is written (``transfers`` table, ``paychan.transfer.codec``) in
one transaction before any of its actions leaves the process; a secret a step learns (``StoreSecret``) is in
that transaction too. A step fed by the peer's proposal that settles or expires a lock (``check_peer_op``)
is written in the transaction of the countersignature itself, so the machine and the channel never
disagree after a crash. A node restarted from its store loads every payment where it was and goes on with
the next tick (a machine re-sends what is not answered).

**Messages** (``POST /peer/transfer``, authenticated like every peer request, bounded before it is read):

- ``offer``: a ``LockedTransfer`` from the counterparty that will lock towards us, with the payer's URL;
  answered at once with the machine's decision (``accepted``, or ``refused`` with the named error), so an
  offer costs one round trip. Nothing is signed: the lock itself comes through the channel exchange
  (``AddLock``), and we countersign it only while the machine ``expects_lock`` it with exactly the offered
  terms (``LockNotOffered`` otherwise). A node holds at most ``MAX_LIVE_PER_PEER`` live payments from one
  counterparty and ``MAX_LIVE`` in all; one hashlock names one payment (``HashlockInUse``).
- ``refuse``: a hop further down refused or timed out (passed upstream hop by hop).
- ``secretRequest``: the payee, which holds its lock, asks the payer (at the URL the offer carried) for the
  secret; the answer carries it when the payer's machine says so (``noSecret`` otherwise, also before the
  payer has seen its first lock countersigned: the payee asks again, with a growing pause, while its lock
  can still be used). The
  payee is any node, not a counterparty: its request draws on a peer's budget while it is the payee of one
  of our live payments (``awaits_secret_request``), else on the strangers' budget of its IP address.

**Lock operations** go through the channel exchange of ``paychan.node.server`` (``Node.queue_op``); the
peer's proposals of a lock op are checked with the machines before ``Channel`` countersigns them
(``check_peer_op``), and our own op's countersignature is fed back (``own_op_countersigned``).

**Chain**: a reveal (``RevealSecretOnChain``) is sent on the watcher's thread; the watcher feeds
``ChannelClosed`` and ``SecretRevealed`` events of the node's payments (``note_chain_event``,
``note_revealed``); a close (``CloseChannel``) is a unilateral close with the latest state.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_utils.address import to_checksum_address

from paychan.exceptions import MalformedMessage, StateRejected
from paychan.fees import FeePolicy
from paychan.node.exceptions import ChainLost
from paychan.node.messages import AddLock, ExpireLock, LockOp, SettleLock
from paychan.node.peer import PeerRefused, PeerUnavailable
from paychan.node.store import STATUS_CLOSED, STATUS_OPEN
from paychan.routing import Route
from paychan.state import ChannelId, Lock, hashlock
from paychan.transfer import codec, initiator, mediator, target
from paychan.transfer.book import Task, TransferBook
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    AcceptSettle,
    Action,
    ChannelClosed,
    CloseChannel,
    Event,
    InitPayment,
    LockAdded,
    LockExpired,
    LockSettled,
    OfferLock,
    PaymentFailed,
    PaymentReceived,
    PaymentSucceeded,
    ProposeExpireLock,
    ProposeLock,
    ProposeSettleLock,
    ProposeUnlock,
    ReceiveAcceptance,
    ReceiveExpireProposal,
    ReceiveLockedTransfer,
    ReceiveRefusal,
    ReceiveSecretRequest,
    ReceiveSecretReveal,
    ReceiveSettleProposal,
    ReceiveUnlock,
    Refuse,
    RevealSecretOnChain,
    SecretRevealedOnChain,
    SendSecretRequest,
    SendSecretReveal,
    StoreSecret,
    Tick,
)
from paychan.transfer.state import (
    MAX_PAYMENT_ID,
    TARGET_MIN_LOCK_TIME,
    ChannelView,
    LockedTransfer,
    ReplayedPayment,
    _bytes32,
    _uint,
)

if TYPE_CHECKING:
    from paychan.node.server import Node, Runtime

log = logging.getLogger("paychan.node.transfers")

MAX_LIVE_PER_PEER = 32  # live payments a counterparty may have us hold (a channel holds 16 locks)
MAX_LIVE = 1024  # live payments in all
MAX_REASON = 400  # characters of a refusal's reason kept from a peer
MAX_URL = 200
TICK_INTERVAL = 0.5  # seconds between the clock events the machines get while a payment is live
DURABLE_WAIT = 2.0  # seconds a secret's answer waits for the unlock's transaction before writing on its own
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(?::\d{1,5})?(?:/[A-Za-z0-9._~\-/]*)?")
ROLES = {initiator.InitiatorState: "initiator", mediator.MediatorState: "mediator", target.TargetState: "target"}


class HashlockInUse(StateRejected):
    """Raised when an offer's hashlock is that of another payment (``held``) this node holds: one hashlock
    names one payment, so a step fed by a lock operation reaches the right machine."""

    def __init__(self, payment_id: int, held: int) -> None:
        self.payment_id, self.held = payment_id, held
        super().__init__(f"HashlockInUse(payment_id={payment_id}, held={held})")


class TooManyTransfers(StateRejected):
    """Raised when an offer would make ``count`` live payments from ``peer`` (or in all), above ``limit``."""

    def __init__(self, peer: str, count: int, limit: int) -> None:
        self.peer, self.count, self.limit = peer, count, limit
        super().__init__(f"TooManyTransfers(peer={peer}, count={count}, limit={limit})")


class SettleNotAccepted(StateRejected):
    """Raised when the peer proposes to settle a lock of our payment ``payment_id`` that its machine does
    not pay (not the lock of its live attempt or forward); the peer may still reveal the secret on chain."""

    def __init__(self, payment_id: int) -> None:
        self.payment_id = payment_id
        super().__init__(f"SettleNotAccepted(payment_id={payment_id})")


class LockNotOffered(StateRejected):
    """Raised when the peer proposes a lock under the hashlock of a payment of ours other than the one we
    accepted (``payment_id``): not expected now, or not on the offered terms."""

    def __init__(self, payment_id: int, reason: str) -> None:
        self.payment_id, self.reason = payment_id, reason
        super().__init__(f"LockNotOffered(payment_id={payment_id}): {reason}")


@dataclass
class Staged:
    """A step fed by the peer's proposal, written in the transaction of its countersignature: the task
    before (to undo it if that transaction fails) and the actions to take once it committed."""

    payment_id: int
    before: Task | None
    actions: list[Action]


class NodeTransfers:
    """The mediated transfers of ``node`` (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.book = TransferBook(node.address)
        self.urls: dict[int, str] = {}  # the payer's URL of each payment (ours: our public URL)
        self.by_hashlock: dict[bytes, int] = {}
        self.waiters: dict[int, asyncio.Future[Action]] = {}  # our payments' outcomes
        self.outcomes: dict[int, Action] = {}  # the final outcome of each payment of ours
        self.done: dict[int, Task] = {}  # payments of which nothing can move any more (out of the book's ticks)
        self._staged: list[Staged] = []
        self._open_ops: set[tuple[bytes, str, bytes]] = set()  # settle/expire ops queued, not answered yet
        self._dirty: set[int] = set()  # payments whose newest state waits for a transaction (``_defer``)
        self._durable: dict[int, asyncio.Future[None]] = {}  # answers waiting for a deferred state's commit
        self._ticker: asyncio.Task[None] | None = None
        self._routes_shown: dict[Route, dict[str, Any]] = {}  # the routes of payments the control API waits on
        self.stats = {"offersReceived": 0, "offersRefused": 0, "paymentsSent": 0, "paymentsReceived": 0}
        for payment_id, url, text in node.store.transfers():
            try:
                task = codec.load(text)
            except MalformedMessage as exc:
                log.error("payment %d: the stored state does not load: %s", payment_id, exc)
                continue
            (self.done if _is_done(task) else self.book.tasks)[payment_id] = task
            self.urls[payment_id] = url
            self.by_hashlock[_hashlock_of(task)] = payment_id
            outcome = _outcome_of(task)
            if outcome is not None:
                self.outcomes[payment_id] = outcome

    # --- the clock ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        for action in self._resumed():
            self._take(action)

    def _resumed(self) -> list[Action]:
        """What a node restarted from its store does at once rather than at the machines' next re-send: ask
        for the secret it waited for, propose again the settles and expiries it had proposed (the ones that
        were signed before the stop are in flight already and not queued twice)."""
        actions: list[Action] = []
        for payment_id, task in self.book.tasks.items():
            if isinstance(task, target.TargetState):
                hop, secret = task.hop, task.secret
                if task.status == target.REQUESTED:
                    transfer = task.transfer
                    actions.append(
                        SendSecretRequest(transfer.initiator, payment_id, transfer.hashlock, transfer.target_amount)
                    )
                elif task.status == target.SETTLING and secret is not None:
                    actions.append(ProposeSettleLock(hop.channel_id, hop.sender, payment_id, secret))
            elif isinstance(task, mediator.MediatorState):
                incoming, outgoing, secret = task.incoming_hop, task.outgoing_hop, task.secret
                if task.incoming == mediator.SETTLING and secret is not None:
                    actions.append(ProposeSettleLock(incoming.channel_id, incoming.sender, payment_id, secret))
                if task.outgoing == mediator.EXPIRING:
                    lock_hash = task.transfer.hashlock
                    actions.append(ProposeExpireLock(outgoing.channel_id, outgoing.receiver, payment_id, lock_hash))
            elif task.current is not None and task.current.status == initiator.EXPIRING:
                hop = task.current.hop
                actions.append(ProposeExpireLock(hop.channel_id, hop.receiver, payment_id, task.hashlock))
            elif (unlock := initiator.pending_unlock(task, self.node.chain_now())) is not None:
                actions.append(unlock)
        return actions

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            if self.book.tasks:
                try:
                    self.feed(Tick(self.node.chain_now()))
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug or a full disk: logged, the next tick tries again
                    log.exception("a transfer tick failed")

    # --- feeding the machines ----------------------------------------------------------------------

    def feed(self, event: Event, reply_to: str | None = None) -> list[Action]:
        """Feeds ``event`` to the book, stores what changed (one transaction), then takes the actions. The
        actions addressed to ``reply_to`` about the event's payment (an offer's acceptance or refusal, a
        secret for the payee that asked) are returned instead: they go back in the answer to its message."""
        before = dict(self.book.tasks)
        try:
            with self.node.store.transaction():
                actions = self.book.handle(event)
                if not self._defer(before, event, actions):
                    self._persist(before, actions)
        except Exception:
            self.book.tasks = before
            raise
        self._retire()
        replies = [a for a in actions if reply_to is not None and _is_reply(a, reply_to)]
        for action in actions:
            if not any(action is reply for reply in replies):
                self._take(action)
        return replies

    def _retire(self) -> None:
        """Moves the payments that are done out of the book: the clock no longer visits them."""
        for payment_id in [pid for pid, task in self.book.tasks.items() if _is_done(task)]:
            self.done[payment_id] = self.book.tasks.pop(payment_id)

    def _defer(self, before: dict[int, Task], event: Event, actions: list[Action]) -> bool:
        """Whether the step's new state may wait for a later transaction instead of a commit of its own (one
        fsync less on a payment's path), and if so marks it ``_dirty``:

        - an offer we accept (and the offer we forward with it), or downstream's acceptance of ours before
          the incoming lock is signed: nothing is signed yet, and a node that
          forgets it (a crash before the lock comes) countersigns the lock as one it does not forward: its
          sender takes it back after expiry;
        - a payment we start (its first offer): an offer signs nothing, and a payer that forgets it (a crash
          before its lock) has paid nothing, and its caller got no outcome;
        - a step whose only actions propose a lock or a lock's settle (``ProposeLock``, ``ProposeSettleLock``,
          ``ProposeUnlock``, the secret that settle shows): it is written in the transaction that signs the proposal
          (``flush``, called by the node inside it), so it is durable before the signature leaves; if the
          proposal is not signed, ``_op_done`` writes it on its own;
        - the payer's answer to the payee's secret request with its unlock (``SendSecretReveal``,
          ``ProposeUnlock``), when the unlock's channel signs it at once (``_signs_at_once``): written in the
          unlock's transaction, one commit instead of two on the payment's path; the secret leaves only once
          that committed (``receive`` waits for it, and writes the step on
          its own after ``DURABLE_WAIT``), so a payer that restarts never forgets it told the secret.
        """
        changed = [pid for pid, task in self.book.tasks.items() if before.get(pid) is not task]
        if len(changed) != 1:
            return False
        deferrable = isinstance(event, ReceiveLockedTransfer) and all(
            isinstance(a, AcceptLock | Refuse | OfferLock) for a in actions
        )
        if isinstance(event, ReceiveAcceptance) and not actions:  # downstream accepted, nothing signed yet
            deferrable = True
        if isinstance(event, InitPayment) and all(isinstance(a, OfferLock) for a in actions):
            deferrable = True
        if isinstance(event, ReceiveSecretRequest) and [type(a) for a in actions] == [SendSecretReveal, ProposeUnlock]:
            unlock = actions[1]
            assert isinstance(unlock, ProposeUnlock)
            deferrable = self._signs_at_once(unlock)  # in the unlock's transaction; the answer waits for it
        proposals = [a for a in actions if isinstance(a, ProposeLock | ProposeSettleLock | ProposeUnlock)]
        if proposals and all(
            isinstance(a, ProposeLock | ProposeSettleLock | ProposeUnlock | StoreSecret) for a in actions
        ):
            deferrable = True
        if deferrable:
            self._dirty.add(changed[0])
            task = self.book.tasks[changed[0]]
            self.by_hashlock.setdefault(_hashlock_of(task), changed[0])
            self.urls.setdefault(changed[0], self.node.public_url)
        return deferrable

    def _signs_at_once(self, action: ProposeUnlock) -> bool:
        """Whether the channel of ``action`` signs it as soon as it is queued: nothing in flight or queued, and
        the turn ours. Else the step commits on its own: the secret's answer does not wait for an exchange."""
        runtime = self.node.runtimes.get(action.channel_id)
        return runtime is not None and runtime.signs_at_once

    def flush(self, lock_hash: bytes) -> None:
        """Writes the deferred state of the payment of ``lock_hash`` (inside the caller's transaction: the
        one that signs its lock operation)."""
        payment_id = self.by_hashlock.get(lock_hash)
        if payment_id is not None and payment_id in self._dirty:
            self._write(payment_id)

    def _write(self, payment_id: int) -> None:
        task = self.book.tasks.get(payment_id) or self.done.get(payment_id)
        self._dirty.discard(payment_id)
        if task is None:
            return
        lock_hash = _hashlock_of(task)
        url = self.urls.setdefault(payment_id, self.node.public_url)
        self.node.store.put_transfer(payment_id, ROLES[type(task)], lock_hash, url, codec.dump(task), _is_done(task))
        self.by_hashlock.setdefault(lock_hash, payment_id)
        self.node.store.after_transaction(lambda: self._made_durable(payment_id), lambda: self._dirty.add(payment_id))

    def _made_durable(self, payment_id: int) -> None:
        waiter = self._durable.pop(payment_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _until_durable(self, payment_id: int) -> None:
        """Returns once the deferred state of ``payment_id`` has committed (in the transaction of its proposal),
        or writes it on its own after ``DURABLE_WAIT`` (the proposal waits for the turn, or was not signed)."""
        if payment_id not in self._dirty:
            return
        waiter = self._durable.setdefault(payment_id, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), DURABLE_WAIT)
        except TimeoutError:
            if payment_id in self._dirty:
                with self.node.store.transaction():
                    self._write(payment_id)

    def _persist(self, before: dict[int, Task], actions: list[Action]) -> None:
        store = self.node.store
        for action in actions:
            if isinstance(action, StoreSecret):
                store.add_secret(action.secret)
        for payment_id, task in self.book.tasks.items():
            if before.get(payment_id) is not task or payment_id in self._dirty:
                self._write(payment_id)

    # --- the channel exchange (called by Node) -----------------------------------------------------

    def check_peer_op(self, runtime: Runtime, op: LockOp) -> None:
        """The peer proposes ``op`` on ``runtime``'s channel: the machine of its payment (if it is one of
        ours) decides, before ``Channel`` checks and countersigns it, inside the transaction of that
        countersignature. Raises the machine's refusal (nothing signed); the step is undone by
        ``rollback`` if the transaction fails, its actions taken by ``after_exchange`` once it committed."""
        lock_hash = op.lock.hashlock if isinstance(op, AddLock) else _op_hashlock(op)
        payment_id = self.by_hashlock.get(lock_hash)
        if payment_id is None or payment_id not in self.book.tasks:
            return  # not a payment of ours: a lock of `paychan lock`, which Channel alone checks
        now, cid = self.node.chain_now(), runtime.cid
        event: Event
        if isinstance(op, AddLock):
            self._check_offered_lock(runtime, payment_id, op.lock)
            event = LockAdded(payment_id, cid, now)  # written with the countersignature; the forward after it
        elif isinstance(op, SettleLock):  # the lock's sender pays it (an unlock), or its receiver claims it
            held = next((x for x in runtime.channel.locks if x.hashlock == lock_hash), None)
            if held is not None and held.sender == runtime.peer_role:
                event = ReceiveUnlock(payment_id, cid, op.secret, now)
            else:
                event = ReceiveSettleProposal(payment_id, cid, op.secret, now)
        else:
            event = ReceiveExpireProposal(payment_id, cid, now)
        before = self.book.tasks.get(payment_id)
        old = dict(self.book.tasks)
        actions = self.book.handle(event)
        refusal = next((a for a in actions if isinstance(a, Refuse) and a.channel_id == cid), None)
        if refusal is not None:
            self.book.tasks = old
            raise refusal.error
        if isinstance(op, SettleLock) and not any(_is_answer(a, cid) for a in actions):
            self.book.tasks = old  # a lock of a payment of ours its machine does not pay now (stale, or not ours)
            raise SettleNotAccepted(payment_id)
        self._persist(old, actions)
        self._staged.append(Staged(payment_id, before, [a for a in actions if not _is_answer(a, cid)]))

    def _check_offered_lock(self, runtime: Runtime, payment_id: int, lock: Lock) -> None:
        task = self.book.tasks[payment_id]
        if not self.book.expects_lock(payment_id, runtime.cid):
            raise LockNotOffered(payment_id, "no offer of it accepted on this channel waits for its lock")
        assert isinstance(task, mediator.MediatorState | target.TargetState)
        hop = task.transfer.hop
        terms = (lock.sender, lock.amount, lock.expiry)
        if terms != (runtime.peer_role, hop.amount, hop.expiry):
            raise LockNotOffered(payment_id, f"the lock ({lock.amount} until {lock.expiry}) is not the offered one")

    def sign_forwards_now(self) -> None:
        """Inside the transaction of the peer's proposals, once they are countersigned: each outgoing lock the
        staged steps forward (``ProposeLock``) that its channel signs at once (``Node.sign_lock_now``) is
        signed in this transaction, so it commits with the countersignature of the incoming lock; the others
        are queued after the commit, as before (``after_exchange``). Only a step written already (not
        deferred): the lock's own transaction would write a deferred one, and this one may be undone."""
        node = self.node
        forwards = Counter(
            a.transfer.hop.channel_id for step in self._staged for a in step.actions if isinstance(a, ProposeLock)
        )
        for step in self._staged:
            for action in list(step.actions):
                if not isinstance(action, ProposeLock) or step.payment_id in self._dirty:
                    continue
                hop = action.transfer.hop
                runtime = node.runtimes.get(hop.channel_id)
                if runtime is None:
                    continue
                lock = Lock(runtime.role, hop.amount, hop.expiry, action.transfer.hashlock)
                # more forwards on that channel follow it (queued): it keeps the turn for them
                future = node.sign_lock_now(hop.channel_id, AddLock(lock), more=forwards[hop.channel_id] > 1)
                if future is not None:
                    step.actions.remove(action)
                    future.add_done_callback(lambda done: self._op_done(done, None))

    def mark(self) -> int:
        """Where the staged steps stand: ``undo_to`` it if the proposal checked next is refused after all."""
        return len(self._staged)

    def undo_to(self, mark: int) -> None:
        """Undoes the steps staged since ``mark`` (``Channel`` refused the proposal they were fed by), in the
        book and in the store (the transaction of the proposals before it still commits)."""
        staged, self._staged = self._staged[mark:], self._staged[:mark]
        for step in reversed(staged):
            if step.before is None:
                self.book.tasks.pop(step.payment_id, None)
                continue
            self.book.tasks[step.payment_id] = step.before
            before = step.before
            url = self.urls.get(step.payment_id, self.node.public_url)
            self.node.store.put_transfer(
                step.payment_id, ROLES[type(before)], _hashlock_of(before), url, codec.dump(before), _is_done(before)
            )

    def after_exchange(self) -> None:
        """The transaction of the proposals (the peer's, or the countersignatures of ours) committed: the
        staged steps' actions."""
        staged, self._staged = self._staged, []
        self._retire()
        for step in staged:
            for action in step.actions:
                self._take(action)

    def rollback(self) -> None:
        """The transaction of the peer's proposals did not commit: every staged step is undone."""
        for step in reversed(self._staged):
            if step.before is None:
                self.book.tasks.pop(step.payment_id, None)
            else:
                self.book.tasks[step.payment_id] = step.before
        self._staged = []

    def awaits_secret_request(self, address: str) -> bool:
        """Whether ``address`` is the payee of one of our live payments: its secret request draws on a peer's
        budget, not on a stranger's (a payee is no counterparty of ours; strangers share one IP's budget)."""
        return any(
            isinstance(task, initiator.InitiatorState) and task.target == address for task in self.book.tasks.values()
        )

    def hands_over(self, op: LockOp) -> bool:
        """Whether the peer makes the next move of ``op``'s payment on its channel (the node hands the turn over
        with it): ``op`` is a lock operation of a live payment we forward or receive. Not of a payment of ours:
        the payer also proposes the unlock that follows its lock, and its next payment's lock."""
        payment_id = self.by_hashlock.get(_op_hashlock_or_lock(op))
        task = None if payment_id is None else self.book.tasks.get(payment_id)
        return task is not None and not isinstance(task, initiator.InitiatorState)

    def own_op_countersigned(self, cid: bytes, op: LockOp) -> None:
        """The peer countersigned our lock operation ``op``: the machine of its payment learns it, in the
        caller's transaction (the one that stores the countersignature); its actions wait for
        ``after_exchange``, and ``rollback`` undoes it if that transaction fails."""
        lock_hash = op.lock.hashlock if isinstance(op, AddLock) else _op_hashlock(op)
        payment_id = self.by_hashlock.get(lock_hash)
        if payment_id is None or payment_id not in self.book.tasks:
            return
        channel_id, now = ChannelId(bytes(cid)), self.node.chain_now()
        event: Event
        if isinstance(op, AddLock):
            event = LockAdded(payment_id, channel_id, now)
        elif isinstance(op, SettleLock):
            self._open_ops.discard((cid, "settle", lock_hash))
            event = LockSettled(payment_id, channel_id, now)
        else:
            self._open_ops.discard((cid, "expire", lock_hash))
            event = LockExpired(payment_id, channel_id, now)
        before = self.book.tasks.get(payment_id)
        old = dict(self.book.tasks)
        try:
            actions = self.book.handle(event)
        except Exception:  # a bug: the countersignature is stored all the same, the machine learns nothing
            log.exception("payment %d: %s failed", payment_id, type(event).__name__)
            self.book.tasks = old
            return
        self._persist(old, actions)
        self._staged.append(Staged(payment_id, before, actions))

    def _feed_quietly(self, event: Event) -> None:
        try:
            self.feed(event)
        except Exception:
            log.exception("payment event %s failed", type(event).__name__)

    # --- chain events (the watcher) ----------------------------------------------------------------

    def wants(self, lock_hash: bytes) -> bool:
        """Whether a payment of ours uses ``lock_hash`` and is not done (the watcher reads its reveal)."""
        payment_id = self.by_hashlock.get(lock_hash)
        task = None if payment_id is None else self.book.tasks.get(payment_id)
        return task is not None and not _is_done(task)

    def has_live_payments(self) -> bool:
        """Whether a payment of ours is in progress (its machine runs on the chain's clock)."""
        return any(not _is_done(task) for task in self.book.tasks.values())

    def note_channel_closed(self, cid: bytes) -> None:
        if self.has_live_payments():
            self._feed_quietly(ChannelClosed(ChannelId(bytes(cid)), self.node.chain_now()))

    def note_revealed(self, secret: bytes, revealed_at: int) -> None:
        self._feed_quietly(SecretRevealedOnChain(hashlock(secret), secret, revealed_at, self.node.chain_now()))

    # --- actions -----------------------------------------------------------------------------------

    def _take(self, action: Action) -> None:
        node = self.node
        if isinstance(action, OfferLock):
            self._spawn(self._send_offer(action.transfer))
        elif isinstance(action, AcceptLock):
            hop = action.transfer.hop
            payload = {
                "type": "accept",
                "paymentId": str(action.transfer.payment_id),
                "channelId": _hex(hop.channel_id),
            }
            self._spawn(self._message(hop.channel_id, payload))
        elif isinstance(action, Refuse):
            if action.to != node.address:
                payload = {
                    "type": "refuse",
                    "paymentId": str(action.payment_id),
                    "channelId": _hex(action.channel_id),
                    "reason": action.reason[:MAX_REASON],
                }
                self._spawn(self._message(action.channel_id, payload))
        elif isinstance(action, ProposeLock):
            hop = action.transfer.hop
            runtime = node.runtimes.get(hop.channel_id)
            if runtime is not None:
                lock = Lock(runtime.role, hop.amount, hop.expiry, action.transfer.hashlock)
                self._queue(hop.channel_id, AddLock(lock), None)
        elif isinstance(action, SendSecretRequest):
            self._spawn(self._request_secret(action))
        elif isinstance(action, SendSecretReveal):
            log.warning("payment %d: a secret for %s outside its request is not sent", action.payment_id, action.to)
        elif isinstance(action, ProposeSettleLock | ProposeUnlock):
            self._queue(
                action.channel_id, SettleLock(action.secret), (action.channel_id, "settle", hashlock(action.secret))
            )
        elif isinstance(action, ProposeExpireLock):
            self._expire(action)
        elif isinstance(action, RevealSecretOnChain):
            self._spawn(self._reveal(action.secret))
        elif isinstance(action, CloseChannel):
            self._spawn(self._close(action.channel_id))
        elif isinstance(action, PaymentSucceeded | PaymentFailed):
            self.outcomes[action.payment_id] = action
            self.stats["paymentsSent"] += isinstance(action, PaymentSucceeded)
            waiter = self.waiters.pop(action.payment_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(action)
        elif isinstance(action, PaymentReceived):
            self.stats["paymentsReceived"] += 1
            log.info("payment %d: received %d wei", action.payment_id, action.amount)
        # StoreSecret: in the step's transaction already; AcceptSettle, AcceptExpire: check_peer_op answered

    def _queue(self, cid: bytes, op: LockOp, key: tuple[bytes, str, bytes] | None) -> None:
        runtime = self.node.runtimes.get(cid)
        if runtime is None or runtime.record.status != STATUS_OPEN:
            return  # a closing channel's locks resolve at settlement
        if key is not None:
            signed = any(type(held) is type(op) and _op_hashlock(held) == key[2] for held in runtime.ops.values())
            if key in self._open_ops or signed:
                return  # the one queued (or signed and in flight) goes on: the exchange re-sends it
            self._open_ops.add(key)
        future = self.node.queue_op(cid, op)
        future.add_done_callback(lambda done: self._op_done(done, key))

    def _op_done(self, future: asyncio.Future[Any], key: tuple[bytes, str, bytes] | None) -> None:
        if future.cancelled():
            error: BaseException | None = None
        else:
            error = future.exception()
        if key is not None and error is not None:
            runtime = self.node.runtimes.get(key[0])
            in_flight = runtime is not None and any(_op_hashlock_or_lock(op) == key[2] for op in runtime.ops.values())
            if not in_flight:  # refused before it was signed: the machine's next re-send queues it again
                self._open_ops.discard(key)
        if error is not None:
            log.info("lock operation not countersigned yet: %s", error)
            if self._dirty:  # not signed: the step that asked for it is written on its own
                with self.node.store.transaction():
                    for payment_id in list(self._dirty):
                        self._write(payment_id)

    def _expire(self, action: ProposeExpireLock) -> None:
        runtime = self.node.runtimes.get(action.channel_id)
        if runtime is None:
            return
        if runtime.record.status == STATUS_CLOSED:
            return
        in_channel = any(lock.hashlock == action.hashlock for lock in runtime.channel.locks)
        in_flight = any(_op_hashlock_or_lock(op) == action.hashlock for op in runtime.ops.values())
        queued = any(r.op is not None and _op_hashlock_or_lock(r.op) == action.hashlock for r in runtime.queue)
        if not in_channel and not in_flight and not queued:  # never countersigned: there is nothing to take back
            event = LockExpired(action.payment_id, action.channel_id, self.node.chain_now())
            asyncio.get_running_loop().call_soon(self._feed_quietly, event)
            return
        if in_channel:
            self._queue(action.channel_id, ExpireLock(action.hashlock), (action.channel_id, "expire", action.hashlock))

    def _spawn(self, coroutine: Any) -> None:
        self.node._background(coroutine)

    async def _message(self, cid: bytes, payload: dict[str, Any]) -> dict[str, Any] | None:
        runtime = self.node.runtimes.get(cid)
        if runtime is None:
            return None
        try:
            return await self.node.peer.post(
                runtime.record.peer_url + "/peer/transfer", payload, runtime.channel.peer_address
            )
        except (PeerUnavailable, PeerRefused) as exc:
            log.info("payment %s: %s not delivered: %s", payload.get("paymentId"), payload.get("type"), exc)
            return None

    async def _send_offer(self, transfer: LockedTransfer) -> None:
        hop = transfer.hop
        payment_id, url = transfer.payment_id, self.urls.get(transfer.payment_id, self.node.public_url)
        runtime = self.node.runtimes.get(hop.channel_id)
        if runtime is None:
            return
        payload = {"type": "offer", "transfer": transfer.to_json(), "initiatorUrl": url}
        try:
            answer = await self.node.peer.post(
                runtime.record.peer_url + "/peer/transfer", payload, runtime.channel.peer_address
            )
        except PeerRefused as exc:
            self._feed_quietly(
                ReceiveRefusal(payment_id, hop.channel_id, hop.receiver, str(exc)[:MAX_REASON], self.node.chain_now())
            )
            return
        except PeerUnavailable as exc:  # nothing is signed yet: the offer ends now, not at OFFER_TIMEOUT
            log.info("payment %d: offer to %s not answered: %s", payment_id, hop.receiver, exc)
            reason = f"unreachable: {exc}"[:MAX_REASON]
            self._feed_quietly(ReceiveRefusal(payment_id, hop.channel_id, hop.receiver, reason, self.node.chain_now()))
            return
        now = self.node.chain_now()
        if answer.get("type") == "accepted":
            self._feed_quietly(ReceiveAcceptance(payment_id, hop.channel_id, hop.receiver, now))
        else:
            reason = str(answer.get("reason", "refused"))[:MAX_REASON]
            self._feed_quietly(ReceiveRefusal(payment_id, hop.channel_id, hop.receiver, reason, now))

    async def _request_secret(self, action: SendSecretRequest) -> None:
        url = self.urls.get(action.payment_id, "")
        payload = {
            "type": "secretRequest",
            "paymentId": str(action.payment_id),
            "hashlock": _hex(action.hashlock),
            "amount": str(action.amount),
        }
        delay = 0.05
        while self._still_requesting(action.payment_id):
            try:
                answer = await self.node.peer.post(url + "/peer/transfer", payload, action.to)
            except PeerRefused as exc:
                if exc.type != "RateLimited":
                    log.warning("payment %d: the payer refused our secret request: %s", action.payment_id, exc)
                    return
                await asyncio.sleep(delay)  # the payer's node is busy: ask again
                delay = min(delay * 4, 5.0)
                continue
            except PeerUnavailable as exc:
                log.info("payment %d: the payer did not answer our secret request: %s", action.payment_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 4, 5.0)
                continue
            secret = _secret(answer.get("secret")) if answer.get("type") == "secret" else None
            if secret is None and answer.get("type") == "noSecret":
                # the payer may not have its first lock's countersignature yet (it comes on another path): again
                await asyncio.sleep(delay)
                delay = min(delay * 4, 5.0)
                continue
            if secret is not None and hashlock(secret) == action.hashlock:
                self._feed_quietly(ReceiveSecretReveal(action.payment_id, secret, action.to, self.node.chain_now()))
            return

    def _still_requesting(self, payment_id: int) -> bool:
        """Whether our lock as payee of ``payment_id`` still waits for the secret with time to use it."""
        task = self.book.tasks.get(payment_id)
        if not isinstance(task, target.TargetState) or task.status != target.REQUESTED:
            return False
        return self.node.chain_now() < task.hop.expiry - TARGET_MIN_LOCK_TIME // 2

    async def _reveal(self, secret: bytes) -> None:
        node, lock_hash = self.node, hashlock(secret)
        contract = node.contract
        if contract is None:
            return
        revealed_at = node.store.secret_revealed_at(lock_hash)
        try:
            if not revealed_at:
                await node.chain.run_for_watcher(contract.reveal_secret, node.account, secret)
                revealed_at = await node.chain.run_for_watcher(contract.revealed_at, lock_hash)
                with node.store.transaction():
                    node.store.add_secret(secret)
                    node.store.set_secret_revealed(lock_hash, revealed_at)
                log.warning("revealed the secret of hashlock 0x%s on chain at %d", lock_hash.hex()[:12], revealed_at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the machine asks again (or the watcher reveals it near the expiry)
            log.warning("revealing the secret of hashlock 0x%s failed: %s", lock_hash.hex()[:12], exc)
            return
        if revealed_at:
            self.note_revealed(secret, revealed_at)

    async def _close(self, cid: bytes) -> None:
        runtime = self.node.runtimes.get(cid)
        if runtime is None or runtime.record.status != STATUS_OPEN:
            return
        try:
            await self.node.chain.close_unilaterally(cid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("channel 0x%s: closing for a revealed lock failed: %s", bytes(cid).hex()[:12], exc)

    # --- what the machines see of our channels -----------------------------------------------------

    def views(self) -> dict[ChannelId, ChannelView]:
        """Each of our channels not closed, as the machines see it: balances, our fee, closing or not."""
        node, found = self.node, {}
        for cid, runtime in node.runtimes.items():
            if runtime.record.status == STATUS_CLOSED:
                continue
            channel, params = runtime.channel, runtime.record.params
            policy = node.network.graph.fee_policy(ChannelId(cid), node.address) if cid in node.network.graph else None
            found[ChannelId(cid)] = ChannelView(
                ChannelId(cid),
                channel.peer_address,
                channel.balance(),
                channel.balance(runtime.peer_role),
                policy or FeePolicy(),
                params.challenge_period,
                runtime.record.status != STATUS_OPEN,
            )
        return found

    # --- paying (the control API) ------------------------------------------------------------------

    async def pay(self, to: str, amount: int, k: int = 3, timeout: float = 60.0) -> dict[str, Any]:
        """Pays ``amount`` to ``to`` through the network (``NoRoute`` if there is no route); waits at most
        ``timeout`` s for the outcome and reports it (``pending`` if the payment is not decided yet)."""
        node = self.node
        if node.chain_lost is not None:
            raise ChainLost(node.chain_lost)
        target_address = to_checksum_address(to)
        routes = node.network.routes(target_address, amount, k)
        payment_id = secrets.randbelow(MAX_PAYMENT_ID) + 1
        while payment_id in self.book.tasks:
            payment_id = secrets.randbelow(MAX_PAYMENT_ID) + 1
        secret = secrets.token_bytes(32)
        waiter: asyncio.Future[Action] = asyncio.get_running_loop().create_future()
        self.waiters[payment_id] = waiter
        self.urls[payment_id] = node.public_url
        now = node.chain_now()
        for route in routes:  # the fees as announced now, shown with the outcome even if a channel closes
            self._routes_shown[route] = self.node.network.route_json(route)
        self.feed(InitPayment(payment_id, secret, target_address, amount, tuple(routes), self.views(), now))
        try:
            outcome: Action | None = await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            outcome = None
        return self.describe(payment_id, outcome)

    def describe(self, payment_id: int, outcome: Action | None) -> dict[str, Any]:
        task = self.book.tasks.get(payment_id) or self.done.get(payment_id)
        route: Route | None = None
        if isinstance(outcome, PaymentSucceeded):
            route = outcome.route
        elif isinstance(task, initiator.InitiatorState) and task.current is not None:
            route = task.current.route
        attempts = len(task.attempts) if isinstance(task, initiator.InitiatorState) else 0
        network = self.node.network
        if isinstance(task, initiator.InitiatorState):
            for unused in task.routes:
                if unused != route:
                    self._routes_shown.pop(unused, None)
        return {
            "paymentId": str(payment_id),
            "outcome": (
                "succeeded"
                if isinstance(outcome, PaymentSucceeded)
                else "failed"
                if isinstance(outcome, PaymentFailed)
                else "pending"
            ),
            "route": None if route is None else self._routes_shown.pop(route, None) or network.route_json(route),
            "attempts": attempts,
            "reason": outcome.reason if isinstance(outcome, PaymentFailed) else "",
        }

    def summary(self) -> dict[str, Any]:
        """Every payment the node holds and what it sent, earned and received in all."""
        rows, earned, received, sent = [], 0, 0, 0
        for payment_id, task in [*self.done.items(), *self.book.tasks.items()]:
            row: dict[str, Any] = {"paymentId": str(payment_id), "role": ROLES[type(task)]}
            if isinstance(task, initiator.InitiatorState):
                paid = task.outcome == initiator.SUCCEEDED
                settled = [a for a in task.attempts if a.status == initiator.SETTLED]
                fee = settled[-1].route.total_fee if settled else 0
                sent += (task.amount + fee) if paid else 0
                row.update(status=task.outcome, amount=str(task.amount), fee=str(fee))
            elif isinstance(task, mediator.MediatorState):
                earned += forwarding_gain(task)
                row.update(
                    status=f"{task.incoming}/{task.outgoing}", amount=str(task.incoming_hop.amount), fee=str(task.fee)
                )
            else:
                paid = task.status in (target.PAID, target.ONCHAIN)
                received += task.hop.amount if paid else 0
                row.update(status=task.status, amount=str(task.hop.amount), fee="0")
            rows.append(row)
        return {"transfers": rows, "feesEarned": str(earned), "received": str(received), "sent": str(sent)}

    # --- receiving (``POST /peer/transfer``, ``paychan.node.peer_api``) -------------------------------

    async def receive(self, signer: str, data: dict[str, Any]) -> dict[str, Any]:
        """One transfer message from ``signer`` (authenticated); the answer."""
        kind, now = data.get("type"), self.node.chain_now()
        if kind == "offer":
            return self._receive_offer(signer, data, now)
        payment_id = _uint(data.get("paymentId"), "paymentId", MAX_PAYMENT_ID)
        held = payment_id in self.book.tasks  # anything else is ignored by the book: no transaction for it
        if kind == "secretRequest":
            lock_hash = _bytes32(data.get("hashlock"), "hashlock")
            amount = _uint(data.get("amount"), "amount", 2**256 - 1)
            if not held:
                return {"type": "noSecret"}
            replies = self.feed(ReceiveSecretRequest(payment_id, lock_hash, amount, signer, now), reply_to=signer)
            reveal = next((a for a in replies if isinstance(a, SendSecretReveal)), None)
            if reveal is None:
                return {"type": "noSecret"}
            await self._until_durable(payment_id)  # that we told it: written before it leaves (``_defer``)
            return {"type": "secret", "secret": _hex(reveal.secret)}
        cid = ChannelId(_bytes32(data.get("channelId"), "channelId"))
        runtime = self.node.runtimes.get(cid)
        if runtime is None or runtime.channel.peer_address != signer:
            raise MalformedMessage("a transfer message names a channel of ours with its sender")
        if kind == "accept":
            if held:
                self.feed(ReceiveAcceptance(payment_id, cid, signer, now))
        elif kind == "refuse":
            reason = data.get("reason")
            if not isinstance(reason, str):
                raise MalformedMessage("a refusal has a reason")
            if held:
                self.feed(ReceiveRefusal(payment_id, cid, signer, reason[:MAX_REASON], now))
        else:
            raise MalformedMessage("a transfer message's type is offer, accept, refuse or secretRequest")
        return {"type": "ok"}

    def _receive_offer(self, signer: str, data: dict[str, Any], now: int) -> dict[str, Any]:
        transfer = LockedTransfer.from_json(data.get("transfer"))
        url = data.get("initiatorUrl")
        if not isinstance(url, str) or len(url) > MAX_URL or not _URL.fullmatch(url):
            raise MalformedMessage(f"an offer's initiatorUrl is an http(s) URL of at most {MAX_URL} characters")
        self.stats["offersReceived"] += 1
        cid = transfer.hop.channel_id
        try:
            self._admit_offer(signer, transfer)
        except StateRejected as refused:
            self.stats["offersRefused"] += 1
            return {"type": "refused", "reason": str(refused)}
        known = transfer.payment_id in self.book.tasks
        if not known:
            self.urls[transfer.payment_id] = url
        replies = self.feed(ReceiveLockedTransfer(transfer, signer, self.views(), now), reply_to=signer)
        if any(isinstance(a, AcceptLock) for a in replies):
            return {"type": "accepted"}
        if not known and transfer.payment_id not in self.book.tasks:
            self.urls.pop(transfer.payment_id, None)
        refusal = next((a for a in replies if isinstance(a, Refuse) and a.channel_id == cid), None)
        self.stats["offersRefused"] += 1
        return {"type": "refused", "reason": refusal.reason if refusal is not None else "not taken"}

    def _admit_offer(self, signer: str, transfer: LockedTransfer) -> None:
        held = self.by_hashlock.get(transfer.hashlock)
        if held is not None and held != transfer.payment_id:
            raise HashlockInUse(transfer.payment_id, held)
        finished = self.done.get(transfer.payment_id)
        if finished is not None:
            if isinstance(finished, initiator.InitiatorState) or finished.is_live:
                raise ReplayedPayment(transfer.payment_id)
            del self.done[transfer.payment_id]  # its lock expired: the payer's next route may come through us
        live = [t for t in self.book.tasks.values() if not _is_done(t)]
        if len(live) >= MAX_LIVE:
            raise TooManyTransfers("*", len(live) + 1, MAX_LIVE)
        from_peer = sum(
            1 for t in live if not isinstance(t, initiator.InitiatorState) and t.transfer.hop.sender == signer
        )
        if from_peer >= MAX_LIVE_PER_PEER:
            raise TooManyTransfers(signer, from_peer + 1, MAX_LIVE_PER_PEER)


# --- helpers --------------------------------------------------------------------------------------------


def forwarding_gain(task: mediator.MediatorState) -> int:
    """What forwarding ``task`` gained us, to the wei: the incoming lock if it was paid to us (off chain, or
    on chain at settlement), less the outgoing one if it was paid (off chain, or on chain: its secret was
    revealed in time). The fee when both were paid, nothing when neither was."""
    incoming, outgoing = task.incoming_hop, task.outgoing_hop
    gained = incoming.amount if task.incoming in (mediator.SETTLED, mediator.ONCHAIN) else 0
    signed = task.outgoing in (mediator.PROPOSED, mediator.LOCKED, mediator.EXPIRING)
    if task.outgoing == mediator.SETTLED or (signed and 0 < task.revealed_on_chain_at <= outgoing.expiry):
        gained -= outgoing.amount
    return gained


def _hashlock_of(task: Task) -> bytes:
    return task.hashlock if isinstance(task, initiator.InitiatorState) else task.transfer.hashlock


def _is_done(task: Task) -> bool:
    """Nothing of the payment can move any more (the ticks skip it)."""
    if isinstance(task, initiator.InitiatorState):
        if task.outcome == initiator.PENDING:
            return False
        return all(a.status in (initiator.DEAD, initiator.SETTLED) for a in task.attempts)
    if isinstance(task, mediator.MediatorState):
        return task.is_done
    return task.status in (target.PAID, target.EXPIRED, target.ABANDONED, target.ONCHAIN)


def _outcome_of(task: Task) -> Action | None:
    if isinstance(task, initiator.InitiatorState):
        if task.outcome == initiator.SUCCEEDED:
            settled = [a for a in task.attempts if a.status == initiator.SETTLED] or list(task.attempts)
            return PaymentSucceeded(task.payment_id, settled[-1].route, len(task.attempts))
        if task.outcome == initiator.FAILED:
            reason = task.attempts[-1].reason if task.attempts else "no route"
            return PaymentFailed(task.payment_id, reason, len(task.attempts))
    return None


def _is_reply(action: Action, to: str) -> bool:
    if isinstance(action, AcceptLock):
        return action.transfer.hop.sender == to
    if isinstance(action, Refuse | SendSecretReveal):
        return action.to == to
    return False


def _is_answer(action: Action, cid: bytes) -> bool:
    """The countersignature check_peer_op gives by letting Channel countersign."""
    return isinstance(action, AcceptSettle | AcceptExpire) and action.channel_id == cid


def _op_hashlock(op: LockOp) -> bytes:
    if isinstance(op, SettleLock):
        return hashlock(op.secret)
    assert isinstance(op, ExpireLock)
    return op.hashlock


def _op_hashlock_or_lock(op: LockOp) -> bytes:
    return op.lock.hashlock if isinstance(op, AddLock) else _op_hashlock(op)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _secret(value: object) -> bytes | None:
    if isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value[2:])
    return None


__all__ = [
    "MAX_LIVE",
    "MAX_LIVE_PER_PEER",
    "HashlockInUse",
    "LockNotOffered",
    "NodeTransfers",
    "SettleNotAccepted",
    "TooManyTransfers",
]
