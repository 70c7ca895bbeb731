"""The offer on the wire (paychan.transfer.state.LockedTransfer.to_json/from_json): a round trip, and every
malformed or oversized offer refused with MalformedMessage before it is read."""

from __future__ import annotations

import json

import pytest

from paychan.exceptions import MalformedMessage
from paychan.transfer.events import InitPayment
from paychan.transfer.initiator import handle
from paychan.transfer.state import LockedTransfer
from tests.transfer_helpers import ALICE, AMOUNT, BOB, CAROL, ERIN, NOW, PAYMENT_ID, SECRET, route, views


def offer() -> LockedTransfer:
    _, actions = handle(
        None, InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, (route(ALICE, BOB, CAROL, ERIN),), views(ALICE, BOB), NOW)
    )
    return actions[0].transfer


def test_an_offer_survives_the_wire_with_every_field():
    transfer = offer()
    assert LockedTransfer.from_json(json.loads(json.dumps(transfer.to_json()))) == transfer
    lowered = transfer.to_json()
    lowered["target"] = ERIN.lower()
    assert LockedTransfer.from_json(lowered).target == ERIN  # checksummed on the way in


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("paymentId", str(2**64), "paymentId must be an unsigned integer"),
        ("paymentId", -1, "paymentId must be an unsigned integer"),
        ("hashlock", "0x" + "ab" * 31, "hashlock must be 0x and 64 hex digits"),
        ("initiator", "alice", "initiator must be a 0x-prefixed address"),
        ("targetAmount", "1e18", "targetAmount must be an unsigned integer"),
        ("index", 3, "an offer's index names one of its hops"),
        ("index", True, "an offer's index names one of its hops"),
        ("hops", [], "an offer's hops are a list of 1 to 20"),
        ("hops", "x", "an offer's hops are a list of 1 to 20"),
    ],
)
def test_a_malformed_offer_is_refused_with_the_field_it_gets_wrong(field, value, message):
    data = offer().to_json()
    data[field] = value
    with pytest.raises(MalformedMessage, match=message):
        LockedTransfer.from_json(data)


def test_an_offer_with_more_hops_than_the_limit_or_a_bad_hop_is_refused_before_its_hops_are_read():
    data = offer().to_json()
    data["hops"] = data["hops"] * 7  # 21 hops
    with pytest.raises(MalformedMessage, match="1 to 20"):
        LockedTransfer.from_json(data)
    data = offer().to_json()
    data["hops"][1] = {**data["hops"][1], "expiry": str(2**40)}
    with pytest.raises(MalformedMessage, match="expiry must be an unsigned integer at most 1099511627775"):
        LockedTransfer.from_json(data)
    data["hops"][1] = {"amount": "1"}
    with pytest.raises(MalformedMessage, match="a hop is an object"):
        LockedTransfer.from_json(data)
    with pytest.raises(MalformedMessage, match="an offer is an object"):
        LockedTransfer.from_json([])
