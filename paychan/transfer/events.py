"""What the transfer state machines are fed (events) and what they return (actions).

Events come from three places: a peer's message (``ReceiveLockedTransfer``, ``ReceiveRefusal``,
``ReceiveAcceptance``, ``ReceiveSecretRequest``, ``ReceiveSecretReveal``, ``ReceiveSettleProposal``,
``ReceiveUnlock``, ``ReceiveExpireProposal``), the
driver's own channel exchange (``LockAdded``, ``LockSettled``, ``LockExpired``: the peer countersigned), the
chain (``SecretRevealedOnChain``, ``ChannelClosed``) and the clock (``Tick``). Each carries ``now``, the chain
time the driver read; the machines never read a clock.

Actions tell the driver what to do, in order: send an offer or a message, countersign (``AcceptLock``,
``AcceptSettle``, ``AcceptExpire``) or refuse (``Refuse``), propose a channel state (``ProposeSettleLock``,
``ProposeUnlock``, ``ProposeExpireLock``; a lock is offered first, ``OfferLock``, and proposed,
``ProposeLock``, only once its receiver accepted the offer and if the sender still stands by it), store the
secret before
anything reveals it (``StoreSecret``), reveal it on chain (``RevealSecretOnChain``), close a channel whose
counterparty does not settle (``CloseChannel``), and report the outcome (``PaymentSucceeded``,
``PaymentFailed``, ``PaymentReceived``).
"""

from __future__ import annotations

from dataclasses import dataclass

from paychan.exceptions import StateRejected
from paychan.routing import Route
from paychan.state import ChannelId
from paychan.transfer.state import ChannelView, LockedTransfer

# --- events ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitPayment:
    """Our user asks to pay ``amount`` to ``target`` under ``payment_id``, with ``secret`` (its hashlock is the
    payment's), over ``routes`` (``ChannelGraph.routes``, cheapest first); ``channels``: our channels."""

    payment_id: int
    secret: bytes
    target: str
    amount: int
    routes: tuple[Route, ...]
    channels: dict[ChannelId, ChannelView]
    now: int


@dataclass(frozen=True)
class ReceiveLockedTransfer:
    """An offer from ``sender``; ``channels``: our channels (the incoming one and, for an intermediary, the
    outgoing one). ``early``: an intermediary may forward it before the incoming lock is signed; the book
    says no for a sender with ``MAX_EARLY`` offers accepted and not locked yet, so that offers that cost
    their sender nothing cannot make us send many."""

    transfer: LockedTransfer
    sender: str
    channels: dict[ChannelId, ChannelView]
    now: int
    early: bool = True


@dataclass(frozen=True)
class ReceiveAcceptance:
    """``sender``, the receiver of our offer on ``channel_id``, accepts it: it will countersign exactly that
    lock. Whether we still propose it is our machine's decision (``ProposeLock``), not the driver's."""

    payment_id: int
    channel_id: ChannelId
    sender: str
    now: int


@dataclass(frozen=True)
class LockAdded:
    """The lock of ``payment_id`` on ``channel_id`` is in a state both signed."""

    payment_id: int
    channel_id: ChannelId
    now: int


@dataclass(frozen=True)
class ReceiveRefusal:
    """``sender`` refused (or passed back a refusal of) our offer on ``channel_id``, for ``reason``."""

    payment_id: int
    channel_id: ChannelId
    sender: str
    reason: str
    now: int


@dataclass(frozen=True)
class ReceiveSecretRequest:
    """The payee ``sender`` holds its lock of ``amount`` under ``hashlock`` and asks for the secret."""

    payment_id: int
    hashlock: bytes
    amount: int
    sender: str
    now: int


@dataclass(frozen=True)
class ReceiveSecretReveal:
    """``sender`` (the payer, to its payee) tells the secret."""

    payment_id: int
    secret: bytes
    sender: str
    now: int


@dataclass(frozen=True)
class ReceiveSettleProposal:
    """The receiver of our lock on ``channel_id`` proposes the state that pays it, showing ``secret``."""

    payment_id: int
    channel_id: ChannelId
    secret: bytes
    now: int


@dataclass(frozen=True)
class ReceiveUnlock:
    """The sender of our incoming lock on ``channel_id`` proposes the state that pays it to us, showing
    ``secret`` (the payer does, once it told the payee the secret: Raiden's ``Unlock``)."""

    payment_id: int
    channel_id: ChannelId
    secret: bytes
    now: int


@dataclass(frozen=True)
class LockSettled:
    """The peer countersigned the settle we proposed of the lock on ``channel_id``: as its receiver, the state
    that pays it to us (``ProposeSettleLock``); as its sender, the state that pays it to the peer
    (``ProposeUnlock``)."""

    payment_id: int
    channel_id: ChannelId
    now: int


@dataclass(frozen=True)
class ReceiveExpireProposal:
    """The sender of our incoming lock on ``channel_id`` proposes the state that gives it back."""

    payment_id: int
    channel_id: ChannelId
    now: int


@dataclass(frozen=True)
class LockExpired:
    """The receiver of our lock on ``channel_id`` countersigned the state that gives it back to us."""

    payment_id: int
    channel_id: ChannelId
    now: int


@dataclass(frozen=True)
class SecretRevealedOnChain:
    """The contract's registry recorded ``secret`` (``SecretRevealed``) at ``revealed_at``."""

    hashlock: bytes
    secret: bytes
    revealed_at: int
    now: int


@dataclass(frozen=True)
class ChannelClosed:
    """``channel_id`` is closing on chain (``ChannelClosed``): its locks resolve at settlement."""

    channel_id: ChannelId
    now: int


@dataclass(frozen=True)
class Tick:
    """The chain time is now ``now``."""

    now: int


Event = (
    InitPayment
    | ReceiveLockedTransfer
    | ReceiveAcceptance
    | LockAdded
    | ReceiveRefusal
    | ReceiveSecretRequest
    | ReceiveSecretReveal
    | ReceiveSettleProposal
    | ReceiveUnlock
    | LockSettled
    | ReceiveExpireProposal
    | LockExpired
    | SecretRevealedOnChain
    | ChannelClosed
    | Tick
)

# --- actions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferLock:
    """Send ``transfer`` to ``transfer.hop.receiver``; once it accepts, propose the lock of ``transfer.hop``."""

    transfer: LockedTransfer


@dataclass(frozen=True)
class AcceptLock:
    """Tell the sender we take ``transfer`` (``ReceiveAcceptance``); countersign its proposal of exactly
    ``transfer.hop``'s lock when it comes."""

    transfer: LockedTransfer


@dataclass(frozen=True)
class ProposeLock:
    """Sign and send the lock of ``transfer.hop`` to its receiver, which accepted the offer and countersigns."""

    transfer: LockedTransfer


@dataclass(frozen=True, eq=False)
class Refuse:
    """Tell ``to`` we refuse (or can no longer forward) ``payment_id`` on ``channel_id``; ``error`` names why
    with its values. Nothing is signed. Two refusals are equal when they say the same to the same hop (the
    error's type and text: exceptions themselves compare by identity)."""

    payment_id: int
    channel_id: ChannelId
    to: str
    error: StateRejected

    @property
    def reason(self) -> str:
        return str(self.error)

    def _key(self) -> tuple[object, ...]:
        return self.payment_id, self.channel_id, self.to, type(self.error), str(self.error)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refuse) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class SendSecretRequest:
    """Ask the payer ``to`` for the secret of ``hashlock``: we hold our lock of ``amount``."""

    to: str
    payment_id: int
    hashlock: bytes
    amount: int


@dataclass(frozen=True)
class SendSecretReveal:
    """Tell the payee ``to`` the secret."""

    to: str
    payment_id: int
    secret: bytes


@dataclass(frozen=True)
class StoreSecret:
    """Write the secret of ``payment_id`` durably before any action after this one (which may reveal it)."""

    payment_id: int
    secret: bytes


@dataclass(frozen=True)
class ProposeSettleLock:
    """Propose to ``to``, the sender of our incoming lock on ``channel_id``, the state that pays it to us."""

    channel_id: ChannelId
    to: str
    payment_id: int
    secret: bytes


@dataclass(frozen=True)
class ProposeUnlock:
    """Propose to ``to``, the receiver of our outgoing lock on ``channel_id``, the state that pays it to it:
    the payer does so as soon as it told the payee the secret, which the payee can claim with from then on,
    so the payer's payment completes without waiting for the secret to come back hop by hop."""

    channel_id: ChannelId
    to: str
    payment_id: int
    secret: bytes


@dataclass(frozen=True)
class AcceptSettle:
    """Countersign the settle of our lock on ``channel_id`` the peer proposed (the receiver of our outgoing
    lock, ``ReceiveSettleProposal``; the sender of our incoming one, ``ReceiveUnlock``)."""

    channel_id: ChannelId
    payment_id: int


@dataclass(frozen=True)
class ProposeExpireLock:
    """Propose to ``to`` the state that gives our expired lock on ``channel_id`` back to us."""

    channel_id: ChannelId
    to: str
    payment_id: int
    hashlock: bytes


@dataclass(frozen=True)
class AcceptExpire:
    """Countersign the expiry of our incoming lock on ``channel_id`` its sender proposed."""

    channel_id: ChannelId
    payment_id: int


@dataclass(frozen=True)
class RevealSecretOnChain:
    """Send ``revealSecret(secret)`` to the contract (the registry pays every lock of its hashlock that has
    not expired)."""

    payment_id: int
    secret: bytes


@dataclass(frozen=True)
class CloseChannel:
    """Close ``channel_id`` on chain with the latest state both signed: its counterparty does not settle our
    lock off chain, and the secret is on chain, so settlement pays it (settle with the lock list)."""

    channel_id: ChannelId
    payment_id: int


@dataclass(frozen=True)
class PaymentSucceeded:
    """The payee was paid: the route taken and what the payer paid the intermediaries."""

    payment_id: int
    route: Route
    attempts: int


@dataclass(frozen=True)
class PaymentFailed:
    """The payment did not happen and every lock of it is expired or was never signed: ``reason``."""

    payment_id: int
    reason: str
    attempts: int


@dataclass(frozen=True)
class PaymentReceived:
    """We (the payee) were paid ``amount`` for ``payment_id``."""

    payment_id: int
    amount: int


Action = (
    OfferLock
    | AcceptLock
    | ProposeLock
    | Refuse
    | SendSecretRequest
    | SendSecretReveal
    | StoreSecret
    | ProposeSettleLock
    | ProposeUnlock
    | AcceptSettle
    | ProposeExpireLock
    | AcceptExpire
    | RevealSecretOnChain
    | CloseChannel
    | PaymentSucceeded
    | PaymentFailed
    | PaymentReceived
)


__all__ = [
    "AcceptExpire",
    "AcceptLock",
    "AcceptSettle",
    "Action",
    "ChannelClosed",
    "CloseChannel",
    "Event",
    "InitPayment",
    "LockAdded",
    "LockExpired",
    "LockSettled",
    "OfferLock",
    "PaymentFailed",
    "PaymentReceived",
    "PaymentSucceeded",
    "ProposeExpireLock",
    "ProposeLock",
    "ProposeSettleLock",
    "ProposeUnlock",
    "ReceiveAcceptance",
    "ReceiveExpireProposal",
    "ReceiveLockedTransfer",
    "ReceiveRefusal",
    "ReceiveSecretRequest",
    "ReceiveSecretReveal",
    "ReceiveSettleProposal",
    "ReceiveUnlock",
    "Refuse",
    "RevealSecretOnChain",
    "SecretRevealedOnChain",
    "SendSecretRequest",
    "SendSecretReveal",
    "StoreSecret",
    "Tick",
]
