"""A node's transfer state survives its store (paychan.transfer.codec): every machine's state is written as
JSON after every step and read back equal, and a payment whose nodes restart from their stores after every
single event ends exactly as one whose nodes never stopped."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from paychan.exceptions import MalformedMessage
from paychan.transfer import codec
from paychan.transfer.state import OFFER_TIMEOUT
from tests.test_transfer_book import VIA_BOB, VIA_DAVE, Bus
from tests.transfer_helpers import ALICE, CAROL, NOW, PAYMENT_ID


class RestartingBus(Bus):
    """After every event, each node is 'killed' and rebuilt from what it stored: its tasks as JSON text."""

    def __init__(self) -> None:
        super().__init__()
        self.restarts = 0

    def run(self) -> None:
        while self.queue:
            node, event = self.queue.popleft()
            for action in self.books[node].handle(event):
                self.log.append((node, action))
                self.apply(node, action)
            stored = {payment_id: codec.dump(task) for payment_id, task in self.books[node].tasks.items()}
            restored = {payment_id: codec.load(text) for payment_id, text in stored.items()}
            assert restored == self.books[node].tasks
            self.books[node].tasks = restored
            self.restarts += 1


def test_a_payment_whose_nodes_restart_from_their_stores_after_every_event_ends_as_one_that_never_stopped():
    steady, restarting = Bus(), RestartingBus()
    for bus in (steady, restarting):
        bus.pay(VIA_BOB, VIA_DAVE)
    assert restarting.log == steady.log and restarting.restarts > 20
    assert restarting.books[CAROL].tasks == steady.books[CAROL].tasks


def test_a_retried_payment_survives_restarts_through_the_wait_for_its_first_lock_to_expire():
    steady, restarting = Bus(), RestartingBus()
    for bus in (steady, restarting):
        bus.offline.add(CAROL)
        bus.pay(VIA_BOB, VIA_DAVE)
        bus.tick(NOW + OFFER_TIMEOUT)
        expiry = bus.books[ALICE].tasks[PAYMENT_ID].current.hop.expiry
        bus.tick(expiry + 1)
    assert restarting.log == steady.log
    assert sorted(type(a).__name__ for _, a in restarting.outcomes()) == ["PaymentReceived", "PaymentSucceeded"]


def test_stored_text_that_is_not_a_transfer_state_is_refused():
    bus = Bus()
    bus.pay(VIA_BOB)
    text = codec.dump(bus.books[CAROL].tasks[PAYMENT_ID])
    data = json.loads(text)
    for broken in (
        "{",
        json.dumps({"kind": "courier", "state": {}}),
        json.dumps({**data, "state": {**data["state"], "fee": "1102"}}),
        json.dumps({**data, "state": {**data["state"], "secret": "0xzz"}}),
        json.dumps({**data, "state": {k: v for k, v in data["state"].items() if k != "fee"}}),
    ):
        with pytest.raises(MalformedMessage):
            codec.load(broken)
    with pytest.raises(MalformedMessage):  # a field this version does not know
        codec.load(json.dumps({**data, "state": {**data["state"], "courier": "1"}}))


def test_a_state_stored_before_a_field_with_a_default_was_added_loads_with_that_default():
    bus = Bus()
    bus.pay(VIA_BOB)
    payer = bus.books[ALICE].tasks[PAYMENT_ID]
    data = json.loads(codec.dump(payer))
    for attempt in data["state"]["attempts"]:
        del attempt["unlock_sent_at"]  # the payer's unlock came after this store's version
    loaded = codec.load(json.dumps(data))
    assert payer.current.unlock_sent_at > 0 and loaded.current.unlock_sent_at == 0
    assert replace(loaded.current, unlock_sent_at=payer.current.unlock_sent_at) == payer.current
