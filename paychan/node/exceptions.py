"""The node's exceptions: what its channel exchange, its chain actions and its HTTP layer raise besides those
of ``paychan.exceptions`` (``paychan.node.api`` maps each to the status of its JSON answer)."""

from __future__ import annotations

from paychan.exceptions import NegativeBalance, PaychanError, StateRejected
from paychan.node.auth import Unauthenticated


class NotYourTurn(StateRejected):
    """Raised when the peer proposes while the turn to propose is ours."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"NotYourTurn(epoch={epoch})")


class ChannelNotOpen(StateRejected):
    """Raised when paying on a channel that is closing or closed on chain."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"ChannelNotOpen(status={status})")


class NotSynced(StateRejected):
    """Raised when the peer proposes on a channel this node has not yet synced with it (after a restore)."""

    def __init__(self, channel_id: bytes) -> None:
        self.channel_id = channel_id
        super().__init__(f"NotSynced(channelId=0x{channel_id.hex()}): retry once this node has synced")


class NotCounterparty(Unauthenticated):
    """Raised when a correctly signed peer request comes from someone who is not the channel's counterparty."""

    def __init__(self, signer: str, expected: str) -> None:
        self.signer, self.expected = signer, expected
        super().__init__(f"the request is signed by {signer}, not by the counterparty {expected}")


class InsufficientBalance(NegativeBalance):
    """Raised when a payment asks for more than our balance in the channel."""

    def __init__(self, available: int, asked: int) -> None:
        from paychan.units import format_amount

        super().__init__(available - asked)
        self.available, self.asked = available, asked
        self.args = (f"insufficient balance: {format_amount(available)} available, {format_amount(asked)} asked",)


class SignerMismatch(PaychanError):
    """Raised when a node is given a signer (``signer``: the address it signs for) of another address than
    the node's own (``node``)."""

    def __init__(self, signer: str, node: str) -> None:
        self.signer, self.node = signer, node
        super().__init__(f"SignerMismatch(signer={signer}, node={node}): the signer signs for another address")


class CloseTimeout(PaychanError):
    """Raised when the peer does not countersign the final state in time: nothing was closed."""

    def __init__(self, timeout: float, signed: bool, challenge_period: int) -> None:
        self.timeout, self.signed = timeout, signed
        after = (
            "our final state is signed and sent: if the peer answers later, this node submits the cooperative "
            "close itself"
            if signed
            else "nothing was signed"
        )
        super().__init__(
            f"the peer did not countersign the final state within {timeout:g} s, so nothing was closed ({after}); "
            f"to close without the peer, run `paychan close --unilateral` (paid out after the challenge period "
            f"of {challenge_period} s)"
        )


class NothingToSettle(PaychanError):
    """Raised when settling a channel that is not closing (or whose close record the node has not seen)."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"the channel is {status}, not closing: there is nothing to settle")


class ChainLost(PaychanError):
    """Raised when paying on a chain the node no longer trusts (the contract has no code, or the chain's
    genesis block changed: a devnet restarted): signed states there are worth nothing."""


class BodyTimeout(PaychanError):
    """Raised when a request body does not arrive within the body timeout (a slow-loris client)."""


class PaymentTimeout(PaychanError):
    """Raised when a payment was not countersigned in time (it stays queued and may still complete)."""


__all__ = [
    "BodyTimeout",
    "ChainLost",
    "ChannelNotOpen",
    "CloseTimeout",
    "InsufficientBalance",
    "NotCounterparty",
    "NotSynced",
    "NotYourTurn",
    "NothingToSettle",
    "PaymentTimeout",
    "SignerMismatch",
]
