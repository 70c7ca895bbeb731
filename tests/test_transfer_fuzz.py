"""The transfer machines under random failures (2,000 seeded histories, no chain): nodes going offline and
coming back at random moments, the clock jumping ahead by random steps, hops that refuse (no capacity, a fee
raised), payees that withhold the secret or reveal it on chain only. Whatever happens: the payer tells the
secret at most once, the payee is paid at most once, the payer reports at most one outcome, an intermediary
paid downstream is paid upstream, and once every lock's expiry has passed with everyone online, every lock
of every hop is resolved (settled or given back)."""

from __future__ import annotations

import random
from dataclasses import replace

from paychan.fees import FeePolicy
from paychan.transfer import initiator, mediator, target
from paychan.transfer.events import (
    PaymentFailed,
    PaymentReceived,
    PaymentSucceeded,
    ProposeSettleLock,
    SendSecretRequest,
    SendSecretReveal,
)
from tests.test_transfer_book import VIA_BOB, VIA_DAVE, Bus
from tests.transfer_helpers import ALICE, BOB, CAROL, DAVE, ERIN, NOW, PAYMENT_ID, view

INTERMEDIARIES_AND_PAYEE = (BOB, CAROL, DAVE, ERIN)


def unresolved(bus: Bus) -> list[str]:
    """The locks some machine still holds as signed and unresolved."""
    found = []
    for node, book in bus.books.items():
        task = book.tasks.get(PAYMENT_ID)
        if isinstance(task, initiator.InitiatorState):
            if task.current is not None and task.current.status in initiator.SIGNED + (initiator.EXPIRING,):
                if task.outcome != initiator.SUCCEEDED:
                    found.append(f"{node} initiator {task.current.status}")
        elif isinstance(task, mediator.MediatorState):
            if task.incoming in (mediator.ACCEPTED, mediator.LOCKED, mediator.SETTLING):
                found.append(f"{node} incoming {task.incoming}")
        elif isinstance(task, target.TargetState):
            if task.status in (target.ACCEPTED, target.REQUESTED, target.SETTLING):
                found.append(f"{node} target {task.status}")
    return found


def intermediaries_paid_whenever_they_paid(bus: Bus) -> list[str]:
    """The intermediaries whose outgoing lock was paid (settled, or its secret on chain in time) but whose
    incoming lock was not: what the expiry rule must make impossible."""
    unpaid = []
    for node, book in bus.books.items():
        task = book.tasks.get(PAYMENT_ID)
        if not isinstance(task, mediator.MediatorState):
            continue
        revealed = bus.revealed_at.get(task.transfer.hashlock, 0)
        signed = task.outgoing in (mediator.PROPOSED, mediator.LOCKED, mediator.EXPIRING, mediator.SETTLED)
        paid_out = task.outgoing == mediator.SETTLED or (signed and 0 < revealed <= task.outgoing_hop.expiry)
        if paid_out and task.incoming not in (mediator.SETTLED, mediator.ONCHAIN):
            unpaid.append(f"{node}: paid downstream, incoming {task.incoming}")
    return unpaid


SEEDS = 2000  # about a millisecond each


def test_random_outages_never_pay_twice_and_every_lock_resolves():
    failed = []
    for seed in range(SEEDS):
        try:
            one_history(seed)
        except AssertionError as exc:
            failed.append(f"seed {seed}: {str(exc)[:300]}")
    assert failed == []


def one_history(seed: int) -> None:
    rng = random.Random(seed)
    bus = Bus()
    if rng.random() < 0.2:  # bob spent his side towards carol: he refuses the forward, nothing is signed
        bus.view_changes[BOB] = [view(BOB, CAROL, ours=rng.randrange(0, 1_002_050))]
    if rng.random() < 0.1:  # carol raised her fee since alice's graph learned it
        bus.view_changes[CAROL] = [replace(view(CAROL, ERIN), fee=FeePolicy(51, 2_000))]
    behaviour = rng.choice(("honest", "honest", "withholds", "reveals on chain only"))
    if behaviour == "withholds":
        bus.drop.add((ERIN, SendSecretRequest))
    elif behaviour == "reveals on chain only":
        bus.drop.add((ERIN, ProposeSettleLock))
    for node in INTERMEDIARIES_AND_PAYEE:
        if rng.random() < 0.25:
            bus.offline.add(node)
    bus.pay(VIA_BOB, VIA_DAVE)
    now = NOW
    for _ in range(rng.randrange(3, 12)):
        now += rng.choice((1, 10, 29, 30, 60, 120, 240, 300))
        node = rng.choice(INTERMEDIARIES_AND_PAYEE)
        if rng.random() < 0.3:
            bus.offline ^= {node}
        bus.tick(now)
    bus.offline.clear()  # everyone comes back and stays; time runs past every expiry
    for _ in range(8):
        now += 300
        bus.tick(now)
    reveals = [a for node, a in bus.log if node == ALICE and isinstance(a, SendSecretReveal)]
    received = [a for node, a in bus.log if isinstance(a, PaymentReceived)]
    outcomes = [a for node, a in bus.log if node == ALICE and isinstance(a, PaymentSucceeded | PaymentFailed)]
    assert len(reveals) <= 1 and len(received) <= 1 and len(outcomes) <= 1
    if received:
        assert reveals and isinstance(outcomes[-1], PaymentSucceeded)
    assert unresolved(bus) == []
    assert intermediaries_paid_whenever_they_paid(bus) == []
    if behaviour == "withholds":
        assert not received
