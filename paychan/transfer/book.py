"""One node's transfers: which machine (initiator, mediator, target) handles each payment, and the replay check.

``TransferBook.handle(event) -> actions`` routes ``event`` to the payments it concerns (by payment id; a chain
reveal by hashlock; a tick or a channel close to every payment) and returns their actions in order. An offer
for a payment id we already hold a live lock of (one not expired: a replay, or a second route through us
while the first may still pay) is refused with ``ReplayedPayment`` before any machine sees it; a payment
whose lock expired may be offered again (the payer's next route), and so may one whose offer we accepted
over another channel at least ``OFFER_TIMEOUT`` ago and whose lock never came (offers run ahead of locks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from eth_utils.address import to_checksum_address

from paychan.transfer import initiator, mediator, target
from paychan.transfer.events import (
    Action,
    ChannelClosed,
    Event,
    InitPayment,
    ReceiveLockedTransfer,
    Refuse,
    SecretRevealedOnChain,
    Tick,
)
from paychan.transfer.state import OFFER_TIMEOUT, ReplayedPayment

Task = initiator.InitiatorState | mediator.MediatorState | target.TargetState
# Offers of one sender we accepted and forward before their lock is signed: beyond these its offers wait for
# their locks, which cost it capital
MAX_EARLY = 4


@dataclass
class TransferBook:
    """The transfer state of the node ``address``: one task per payment id."""

    address: str
    tasks: dict[int, Task] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.address = to_checksum_address(self.address)

    def handle(self, event: Event) -> list[Action]:
        if isinstance(event, InitPayment):
            if event.payment_id in self.tasks:
                raise ReplayedPayment(event.payment_id)
            state, started = initiator.handle(None, event)
            assert state is not None
            self.tasks[event.payment_id] = state
            return started
        if isinstance(event, ReceiveLockedTransfer):
            return self._offer(event)
        if isinstance(event, Tick | ChannelClosed | SecretRevealedOnChain):
            actions: list[Action] = []
            for payment_id in sorted(self.tasks):
                task = self.tasks[payment_id]
                if isinstance(event, SecretRevealedOnChain) and _hashlock(task) != event.hashlock:
                    continue
                actions += self._step(payment_id, task, event)
            return actions
        wanted = getattr(event, "payment_id", None)
        held = self.tasks.get(wanted) if isinstance(wanted, int) else None
        if held is None or not isinstance(wanted, int):
            return []
        return self._step(wanted, held, event)

    def hashlock(self, payment_id: int) -> bytes:
        """The hashlock of our payment ``payment_id`` (``KeyError`` if we hold none)."""
        return _hashlock(self.tasks[payment_id])

    def expects_lock(self, payment_id: int, channel_id: bytes) -> bool:
        """Whether we accepted an offer of ``payment_id`` on ``channel_id`` and still wait for its lock: only
        then does the driver countersign the sender's ``ProposeLock`` (an abandoned acceptance signs nothing)."""
        task = self.tasks.get(payment_id)
        if not isinstance(task, mediator.MediatorState | target.TargetState):
            return False
        return _awaits_lock(task) and task.transfer.hop.channel_id == channel_id

    def unlocked_offers(self, sender: str) -> int:
        """How many offers from ``sender`` we accepted to forward whose lock is not signed yet."""
        return sum(
            isinstance(task, mediator.MediatorState) and _awaits_lock(task) and task.incoming_hop.sender == sender
            for task in self.tasks.values()
        )

    def _offer(self, event: ReceiveLockedTransfer) -> list[Action]:
        transfer = event.transfer
        held = self.tasks.get(transfer.payment_id)
        hops = transfer.hops
        cid = hops[transfer.index].channel_id if 0 <= transfer.index < len(hops) else None  # the incoming one
        superseded = held is not None and cid is not None and _superseded_by(held, cid, event.now)
        if held is not None and (isinstance(held, initiator.InitiatorState) or held.is_live) and not superseded:
            refused = cid if cid is not None else b"\x00" * 32
            return [Refuse(transfer.payment_id, refused, event.sender, ReplayedPayment(transfer.payment_id))]  # type: ignore[arg-type]
        if self.unlocked_offers(event.sender) >= MAX_EARLY:
            event = replace(event, early=False)
        new: mediator.MediatorState | target.TargetState | None
        if transfer.target == self.address:
            new, actions = target.handle(None, event, self.address)
        else:
            new, actions = mediator.handle(None, event, self.address)
        if new is not None:
            self.tasks[transfer.payment_id] = new
        return actions

    def _step(self, payment_id: int, task: Task, event: Event) -> list[Action]:
        new: Task | None
        if isinstance(task, initiator.InitiatorState):
            new, actions = initiator.handle(task, event)
        elif isinstance(task, mediator.MediatorState):
            new, actions = mediator.handle(task, event, self.address)
        else:
            new, actions = target.handle(task, event, self.address)
        assert new is not None
        self.tasks[payment_id] = new
        return actions


def _awaits_lock(task: Task) -> bool:
    """Whether ``task`` is an offer we accepted (as intermediary or payee) whose lock is not signed yet."""
    if isinstance(task, mediator.MediatorState):
        return task.incoming == mediator.ACCEPTED
    if isinstance(task, target.TargetState):
        return task.status == target.ACCEPTED
    return False


def _superseded_by(held: Task, channel: bytes, now: int) -> bool:
    """Whether an offer of ``held``'s payment over ``channel`` takes the place of ``held``:
    an offer we accepted at least ``OFFER_TIMEOUT`` ago whose lock was never signed (the payer's earlier
    route, forwarded ahead of its locks and dead before they came). Nothing of it is signed, no honest sender
    signs its lock that late (``mediator``, ``initiator``: not after ``OFFER_TIMEOUT`` from their offer), and
    its lock is refused if it still comes (we expect the new offer's, on the new channel). An offer over the
    same channel is a replay, and so is one sooner: a hop that saw the payment's id could otherwise make us
    refuse the lock an honest upstream is signing."""
    if isinstance(held, initiator.InitiatorState) or not _awaits_lock(held):
        return False
    return now >= held.accepted_at + OFFER_TIMEOUT and channel != held.transfer.hop.channel_id


def _hashlock(task: Task) -> bytes:
    return task.hashlock if isinstance(task, initiator.InitiatorState) else task.transfer.hashlock


__all__ = ["Task", "TransferBook"]
