"""The data the transfer state machines share: what a hop is offered (``LockedTransfer``), what a node knows of
one of its channels (``ChannelView``), and why a forward is refused (the refusal errors, each with its values).

Everything here is plain, immutable data: a driver (the node, the demo) builds it from its channels and the
chain, and the machines (``paychan.transfer.initiator``, ``.mediator``, ``.target``) read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paychan.exceptions import InvalidAmount, MalformedMessage, StateRejected
from paychan.fees import FeePolicy
from paychan.routing import MAX_HOPS, REVEAL_MARGIN
from paychan.state import MAX_UINT40, MAX_UINT256, ChannelId, checksum_address

OFFER_TIMEOUT = 30  # seconds a hop has to answer an offer (accept or refuse) before the sender gives up on it
EXPIRY_SLACK = 60  # seconds added to the payee's lock time, for the offers to travel the route
TARGET_MIN_LOCK_TIME = REVEAL_MARGIN  # seconds a payee's lock must leave it when it arrives, to reveal in time
HASHLOCK_SIZE = 32
MAX_PAYMENT_ID = 2**64 - 1
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class RouteHop:
    """One hop of a payment's route: ``sender`` locks ``amount`` towards ``receiver`` over ``channel_id`` until
    ``expiry`` (a chain timestamp)."""

    channel_id: ChannelId
    sender: str
    receiver: str
    amount: int
    expiry: int


@dataclass(frozen=True)
class LockedTransfer:
    """The offer of hop ``index`` of a payment: the conditions of the lock its sender will propose once the
    receiver accepts (nothing is signed before), and the whole route, so that an intermediary knows what to
    forward (``hops[index + 1]``) and the payee what it is owed (``target_amount``)."""

    payment_id: int
    hashlock: bytes
    initiator: str
    target: str
    target_amount: int
    hops: tuple[RouteHop, ...]
    index: int

    @property
    def hop(self) -> RouteHop:
        return self.hops[self.index]

    @property
    def is_last(self) -> bool:
        return self.index == len(self.hops) - 1

    def to_json(self) -> dict[str, object]:
        """The offer on the wire: integers as decimal strings, bytes as ``0x`` hex."""
        return {
            "paymentId": str(self.payment_id),
            "hashlock": "0x" + self.hashlock.hex(),
            "initiator": self.initiator,
            "target": self.target,
            "targetAmount": str(self.target_amount),
            "index": self.index,
            "hops": [
                {
                    "channelId": "0x" + hop.channel_id.hex(),
                    "sender": hop.sender,
                    "receiver": hop.receiver,
                    "amount": str(hop.amount),
                    "expiry": str(hop.expiry),
                }
                for hop in self.hops
            ],
        }

    @classmethod
    def from_json(cls, data: object) -> LockedTransfer:
        """Parses ``to_json``'s output from a peer, bounded before it is read: at most ``MAX_HOPS`` hops, every
        field of its type and range; anything else raises ``MalformedMessage`` (then ``check_shape`` and the
        machines check what it means)."""
        fields = {"paymentId", "hashlock", "initiator", "target", "targetAmount", "index", "hops"}
        if not isinstance(data, dict) or fields - data.keys():
            raise MalformedMessage("an offer is an object with " + ", ".join(sorted(fields)))
        hops = data["hops"]
        if not isinstance(hops, list) or not 1 <= len(hops) <= MAX_HOPS:
            raise MalformedMessage(f"an offer's hops are a list of 1 to {MAX_HOPS}")
        parsed = []
        for hop in hops:
            if not isinstance(hop, dict) or {"channelId", "sender", "receiver", "amount", "expiry"} - hop.keys():
                raise MalformedMessage("a hop is an object with channelId, sender, receiver, amount and expiry")
            parsed.append(
                RouteHop(
                    ChannelId(_bytes32(hop["channelId"], "channelId")),
                    _address(hop["sender"], "sender"),
                    _address(hop["receiver"], "receiver"),
                    _uint(hop["amount"], "amount", MAX_UINT256),
                    _uint(hop["expiry"], "expiry", MAX_UINT40),
                )
            )
        index = data["index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(parsed):
            raise MalformedMessage("an offer's index names one of its hops")
        return cls(
            _uint(data["paymentId"], "paymentId", MAX_PAYMENT_ID),
            _bytes32(data["hashlock"], "hashlock"),
            _address(data["initiator"], "initiator"),
            _address(data["target"], "target"),
            _uint(data["targetAmount"], "targetAmount", MAX_UINT256),
            tuple(parsed),
            index,
        )

    def next(self) -> LockedTransfer:
        """The offer of the hop after this one (what an intermediary forwards)."""
        return LockedTransfer(
            self.payment_id, self.hashlock, self.initiator, self.target, self.target_amount, self.hops, self.index + 1
        )


@dataclass(frozen=True)
class ChannelView:
    """What a node knows of one of its open channels when an event arrives: its counterparty, the spendable
    balances of both sides (``ours``, ``theirs``), the fee it charges to forward over it, the channel's
    challenge period and whether it is closing (a closing channel takes no new lock)."""

    channel_id: ChannelId
    peer: str
    ours: int
    theirs: int
    fee: FeePolicy = FeePolicy()
    challenge_period: int = 3600
    closing: bool = False


# --- refusals: why a hop does not take a forward (each a StateRejected with its values) -------------------


class ReplayedPayment(StateRejected):
    """Raised when an offer names a payment id this node already holds a live or paid lock for."""

    def __init__(self, payment_id: int) -> None:
        self.payment_id = payment_id
        super().__init__(f"ReplayedPayment(payment_id={payment_id})")


class MalformedHashlock(StateRejected):
    """Raised when an offer's hashlock is not ``HASHLOCK_SIZE`` bytes (``size``, or -1 for no bytes at all)."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"MalformedHashlock(size={size}, expected={HASHLOCK_SIZE})")


class NotOnRoute(StateRejected):
    """Raised when an offer's hop ``index`` is not a lock from ``sender`` to ``receiver`` over a channel of
    theirs (the offer names someone else, or a channel the receiver does not have with the sender)."""

    def __init__(self, index: int, sender: str, receiver: str) -> None:
        self.index, self.sender, self.receiver = index, sender, receiver
        super().__init__(f"NotOnRoute(index={index}, sender={sender}, receiver={receiver})")


class LockExceedsCapacity(StateRejected):
    """Raised when a lock of ``amount`` exceeds what its sender can lock over the channel (``capacity``):
    the incoming lock above the upstream's balance, or the outgoing one above our own."""

    def __init__(self, channel_id: bytes, amount: int, capacity: int) -> None:
        self.channel_id, self.amount, self.capacity = channel_id, amount, capacity
        super().__init__(f"LockExceedsCapacity(channel_id=0x{channel_id.hex()}, amount={amount}, capacity={capacity})")


class ChannelClosing(StateRejected):
    """Raised when an offer would lock over a channel that is closing."""

    def __init__(self, channel_id: bytes) -> None:
        self.channel_id = channel_id
        super().__init__(f"ChannelClosing(channel_id=0x{channel_id.hex()})")


class ExpiryTooSoon(StateRejected):
    """Raised when a lock's ``expiry`` is before ``earliest``: the receiver would not have the time to reveal
    the secret on chain (a payee needs ``TARGET_MIN_LOCK_TIME``, an intermediary's outgoing lock must still
    leave its downstream that much)."""

    def __init__(self, expiry: int, earliest: int) -> None:
        self.expiry, self.earliest = expiry, earliest
        super().__init__(f"ExpiryTooSoon(expiry={expiry}, earliest={earliest})")


class ExpiryTooLate(StateRejected):
    """Raised when a lock's ``expiry`` is after ``latest``: beyond its channel's lock window (the challenge
    period minus ``LOCK_EXPIRY_MARGIN``), it could outlive a close."""

    def __init__(self, expiry: int, latest: int) -> None:
        self.expiry, self.latest = expiry, latest
        super().__init__(f"ExpiryTooLate(expiry={expiry}, latest={latest})")


class WrongAmount(StateRejected):
    """Raised when the payee's lock carries ``amount`` but the payment is of ``expected``."""

    def __init__(self, amount: int, expected: int) -> None:
        self.amount, self.expected = amount, expected
        super().__init__(f"WrongAmount(amount={amount}, expected={expected})")


class NextHopRefused(StateRejected):
    """Raised (passed upstream) when the hop after an intermediary refused the forward: ``hop`` (its index) and
    its ``reason`` (the refusal's name and values)."""

    def __init__(self, hop: int, reason: str) -> None:
        self.hop, self.reason = hop, reason
        super().__init__(f"NextHopRefused(hop={hop}, reason={reason})")


class NextHopTimedOut(StateRejected):
    """Raised (passed upstream) when the hop after an intermediary did not answer its offer within
    ``OFFER_TIMEOUT`` seconds (offered at ``offered_at``, given up at ``now``)."""

    def __init__(self, hop: int, offered_at: int, now: int) -> None:
        self.hop, self.offered_at, self.now = hop, offered_at, now
        super().__init__(f"NextHopTimedOut(hop={hop}, offered_at={offered_at}, now={now})")


class SettleTooLate(StateRejected):
    """Raised when a settle of a lock is proposed after its ``expiry`` (at ``now``): the lock is its sender's."""

    def __init__(self, expiry: int, now: int) -> None:
        self.expiry, self.now = expiry, now
        super().__init__(f"SettleTooLate(expiry={expiry}, now={now})")


class ExpireRefused(StateRejected):
    """Raised when the sender of a lock asks to take it back (``expiry``) at ``now`` but it is not expired, or
    its secret was revealed on chain at ``revealed_at`` (0: never), at or before its expiry: it is payable."""

    def __init__(self, expiry: int, now: int, revealed_at: int) -> None:
        self.expiry, self.now, self.revealed_at = expiry, now, revealed_at
        super().__init__(f"ExpireRefused(expiry={expiry}, now={now}, revealed_at={revealed_at})")


class RouteTooLong(StateRejected):
    """Raised when an offer names ``hops`` hops, more than ``limit`` (``MAX_HOPS``, Lightning's limit): an
    offer from the network is bounded before anything else is checked."""

    def __init__(self, hops: int, limit: int) -> None:
        self.hops, self.limit = hops, limit
        super().__init__(f"RouteTooLong(hops={hops}, limit={limit})")


def check_shape(transfer: LockedTransfer) -> None:
    """The bounds of an offer from the network, checked before its contents: at most ``MAX_HOPS`` hops
    (``RouteTooLong``), a 32-byte hashlock (``MalformedHashlock``), every hop's amount a positive uint256
    (``InvalidAmount``), every expiry a uint40 and the payment's amount positive."""
    if len(transfer.hops) > MAX_HOPS:
        raise RouteTooLong(len(transfer.hops), MAX_HOPS)
    check_hashlock(transfer.hashlock)
    for value in (transfer.target_amount, *(hop.amount for hop in transfer.hops)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_UINT256:
            raise InvalidAmount(value)
    for hop in transfer.hops:
        if isinstance(hop.expiry, bool) or not isinstance(hop.expiry, int) or not 0 <= hop.expiry <= MAX_UINT40:
            raise ExpiryTooLate(hop.expiry if isinstance(hop.expiry, int) else -1, MAX_UINT40)


def _uint(value: object, name: str, maximum: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise MalformedMessage(f"{name} must be an unsigned integer at most {maximum}")
    return value


def _bytes32(value: object, name: str) -> bytes:
    if not (isinstance(value, str) and _BYTES32.fullmatch(value)):
        raise MalformedMessage(f"{name} must be 0x and 64 hex digits")
    return bytes.fromhex(value[2:])


def _address(value: object, name: str) -> str:
    if not (isinstance(value, str) and _ADDRESS.fullmatch(value)):
        raise MalformedMessage(f"{name} must be a 0x-prefixed address")
    return checksum_address(value)


def check_hashlock(hashlock: object) -> None:
    """Raises ``MalformedHashlock`` unless ``hashlock`` is ``HASHLOCK_SIZE`` bytes."""
    if not isinstance(hashlock, bytes):
        raise MalformedHashlock(-1)
    if len(hashlock) != HASHLOCK_SIZE:
        raise MalformedHashlock(len(hashlock))


__all__ = [
    "EXPIRY_SLACK",
    "OFFER_TIMEOUT",
    "TARGET_MIN_LOCK_TIME",
    "ChannelClosing",
    "ChannelView",
    "ExpireRefused",
    "ExpiryTooLate",
    "ExpiryTooSoon",
    "LockExceedsCapacity",
    "LockedTransfer",
    "MalformedHashlock",
    "NextHopRefused",
    "NextHopTimedOut",
    "NotOnRoute",
    "ReplayedPayment",
    "RouteTooLong",
    "RouteHop",
    "SettleTooLate",
    "WrongAmount",
    "check_hashlock",
    "check_shape",
]
