"""The exceptions paychan raises.

``PaychanError`` is the base of all of them. ``ContractCustomError`` subclasses mirror the contract's
custom errors one for one (same name, same fields, in the same order), so a revert decodes into the Python
exception of the same name. ``StateRejected`` subclasses are raised when an off-chain state is refused;
where the contract has the same check, both sides raise the same class.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PaychanError(Exception):
    """Base of every exception paychan raises."""


class ContractCustomError(PaychanError):
    """Raised when a call or transaction reverts with one of the contract's custom errors.

    Subclasses list the error's fields in ``fields``; the values are attributes of the same names.
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self.fields):
            raise TypeError(f"{type(self).__name__} takes {len(self.fields)} values, got {len(args)}")
        values = dict(zip(self.fields, args, strict=False))
        values.update(kwargs)
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise TypeError(f"{type(self).__name__} needs {', '.join(missing)}")
        for name in self.fields:
            setattr(self, name, values[name])
        self.values = {name: values[name] for name in self.fields}
        super().__init__(self._message())

    def _message(self) -> str:
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.values.items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContractCustomError) and type(self) is type(other) and self.values == other.values

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.values.items())))


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class StateRejected(PaychanError):
    """Raised when an off-chain state is refused; the channel is left unchanged."""


class TransactionFailed(PaychanError):
    """Raised when a transaction reverts without a custom error the contract declares."""


class OutOfGas(TransactionFailed):
    """Raised when a transaction failed by running out of gas: it used all ``gas_limit`` it was given
    (``gas_used == gas_limit``), which a revert never does (it returns the gas it did not use). Nothing it
    did took effect; sent again with more gas (or an estimate), it may succeed."""

    def __init__(self, gas_limit: int, gas_used: int) -> None:
        self.gas_limit, self.gas_used = gas_limit, gas_used
        super().__init__(f"OutOfGas(gas_limit={gas_limit}, gas_used={gas_used})")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


class ChainUnavailable(PaychanError):
    """Raised when the chain (an RPC URL) does not answer."""


class InvalidPrivateKey(PaychanError):
    """Raised when a private key to send from (``PAYCHAN_PRIVATE_KEYS``, say) is not 32 bytes of hex."""


class UnknownChannel(PaychanError):
    """Raised when no channel with the given id or parameters exists on the contract."""


# --- off-chain only -----------------------------------------------------------------------------


class WrongChannel(StateRejected):
    """Raised when a state names another channel than the one it was sent for."""

    def __init__(self, expected: bytes, received: bytes) -> None:
        self.expected, self.received = expected, received
        super().__init__(f"WrongChannel(expected=0x{expected.hex()}, received=0x{received.hex()})")


class UnexpectedNonce(StateRejected):
    """Raised when a proposed state's nonce is not exactly one more than the latest signed state's."""

    def __init__(self, received: int, expected: int) -> None:
        self.received, self.expected = received, expected
        super().__init__(f"UnexpectedNonce(received={received}, expected={expected})")


class NegativeBalance(StateRejected):
    """Raised when a state gives a participant a balance below zero (or above 2**256 - 1)."""

    def __init__(self, balance: int) -> None:
        self.balance = balance
        super().__init__(f"NegativeBalance(balance={balance})")


class UnfavourableState(StateRejected):
    """Raised when a counterparty's proposal lowers our own balance (only the payer proposes)."""

    def __init__(self, current: int, proposed: int) -> None:
        self.current, self.proposed = current, proposed
        super().__init__(f"UnfavourableState(current={current}, proposed={proposed})")


class ChannelFinalized(StateRejected):
    """Raised when a payment is attempted after both signed a final state."""

    def __init__(self, nonce: int) -> None:
        self.nonce = nonce
        super().__init__(f"ChannelFinalized(nonce={nonce})")


class NoPendingProposal(StateRejected):
    """Raised when a countersignature arrives for a state we did not propose."""

    def __init__(self, nonce: int) -> None:
        self.nonce = nonce
        super().__init__(f"NoPendingProposal(nonce={nonce})")


class ProposalPending(StateRejected):
    """Raised when proposing while our previous proposal still waits for its countersignature."""

    def __init__(self, nonce: int) -> None:
        self.nonce = nonce
        super().__init__(f"ProposalPending(nonce={nonce})")


class InvalidAmount(StateRejected):
    """Raised when a payment amount is not a positive integer number of base units."""

    def __init__(self, amount: object) -> None:
        self.amount = amount
        super().__init__(f"InvalidAmount(amount={amount!r})")


class MissingDeposit(StateRejected):
    """Raised when a proposal splits fewer deposits on a side than our latest signed state already splits
    (``signed_a``, ``signed_b``): deposits only grow."""

    def __init__(self, deposit_a: int, deposit_b: int, signed_a: int, signed_b: int) -> None:
        self.deposit_a, self.deposit_b, self.signed_a, self.signed_b = deposit_a, deposit_b, signed_a, signed_b
        super().__init__(
            f"MissingDeposit(depositA={deposit_a}, depositB={deposit_b}, signedA={signed_a}, signedB={signed_b})"
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


class TooManyLocks(StateRejected):
    """Raised when a state would hold more than ``maximum`` pending locks (the bound that keeps settling a
    full channel cheap)."""

    def __init__(self, count: int, maximum: int) -> None:
        self.count, self.maximum = count, maximum
        super().__init__(f"TooManyLocks(count={count}, maximum={maximum})")


class LockExpiryOutOfRange(StateRejected):
    """Raised when a lock's expiry is outside ``[earliest, latest]``: it must leave the receiver time to
    reveal (``earliest``: now plus the minimum lock time) and expire before a settlement could leave it
    unresolved (``latest``: now plus the challenge period minus the safety margin)."""

    def __init__(self, expiry: int, earliest: int, latest: int) -> None:
        self.expiry, self.earliest, self.latest = expiry, earliest, latest
        super().__init__(f"LockExpiryOutOfRange(expiry={expiry}, earliest={earliest}, latest={latest})")


class LockedTotalsMismatch(StateRejected):
    """Raised when a proposal's locked totals are not those of its lock list (``expected_a``,
    ``expected_b``)."""

    def __init__(self, locked_a: int, locked_b: int, expected_a: int, expected_b: int) -> None:
        self.locked_a, self.locked_b, self.expected_a, self.expected_b = locked_a, locked_b, expected_a, expected_b
        super().__init__(
            f"LockedTotalsMismatch(lockedA={locked_a}, lockedB={locked_b}, expectedA={expected_a}, "
            f"expectedB={expected_b})"
        )


class DuplicateHashlock(StateRejected):
    """Raised when a lock's hashlock is already pending in the channel."""

    def __init__(self, hashlock: bytes) -> None:
        self.hashlock = hashlock
        super().__init__(f"DuplicateHashlock(hashlock=0x{hashlock.hex()})")


class UnknownLock(StateRejected):
    """Raised when a proposal settles or removes a lock the channel does not hold."""

    def __init__(self, hashlock: bytes) -> None:
        self.hashlock = hashlock
        super().__init__(f"UnknownLock(hashlock=0x{hashlock.hex()})")


class LockNotExpired(StateRejected):
    """Raised when removing a lock before its expiry has passed (``now`` is the time used)."""

    def __init__(self, expiry: int, now: int) -> None:
        self.expiry, self.now = expiry, now
        super().__init__(f"LockNotExpired(expiry={expiry}, now={now})")


class RevokedNonce(StateRejected):
    """Raised when closing with (or accepting) a state whose nonce we revoked: ``nonce`` is below
    ``below_nonce`` of our own revocation."""

    def __init__(self, nonce: int, below_nonce: int) -> None:
        self.nonce, self.below_nonce = nonce, below_nonce
        super().__init__(f"RevokedNonce(nonce={nonce}, belowNonce={below_nonce})")


class InvalidRevocation(StateRejected):
    """Raised when a revocation received is for another channel, covers a nonce we do not hold a newer
    state for, goes backwards, or is not signed by the counterparty."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"InvalidRevocation({reason})")


class WithdrawalRejected(StateRejected):
    """Raised when a proposed withdrawal (or the state that comes with it) is refused: ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"WithdrawalRejected({reason})")


class MalformedMessage(StateRejected, ValueError):
    """Raised when a received message is not a well-formed signed state (or channel parameters, or a
    signature); also a ``ValueError``, what these parsers raised before."""


# --- mirrors of the contract's custom errors ------------------------------------------------------


class InvalidCounterparty(ContractCustomError):
    """Raised when the counterparty is the zero address or the opener itself."""

    fields = ("counterparty",)


class InvalidChallengePeriod(ContractCustomError):
    """Raised when the challenge period is outside the contract's bounds."""

    fields = ("challengePeriod", "minimum", "maximum")


class ValueMismatch(ContractCustomError):
    """Raised when the ETH sent differs from what the call needs."""

    fields = ("sent", "expected")


class ZeroDeposit(ContractCustomError):
    """Raised when depositing nothing."""


class DepositTooLarge(ContractCustomError):
    """Raised when a deposit would take a participant's total above the contract's maximum."""

    fields = ("current", "added", "maximum")


class TokenTransferFailed(ContractCustomError):
    """Raised when pulling a token deposit fails (no allowance, no balance, a failing token)."""

    fields = ("token", "from_", "amount")


class NotParticipant(ContractCustomError):
    """Raised when an account that is not a participant does what only participants may."""

    fields = ("channelId", "account")


class ChannelNotOpen(ContractCustomError):
    """Raised when the channel does not exist or is not open."""

    fields = ("channelId",)


class ChannelNotClosing(ContractCustomError):
    """Raised when the channel does not exist or is not closing."""

    fields = ("channelId",)


class MalleableSignature(ContractCustomError, StateRejected):
    """Raised when a signature's s is in the upper half of the curve order."""

    fields = ("s",)


class InvalidSignature(ContractCustomError, StateRejected):
    """Raised when a signature is missing or recovers to someone other than the participant."""

    fields = ("expected", "recovered")


class BalancesNotConserved(ContractCustomError, StateRejected):
    """Raised when a state's balances and locked totals do not add up to the deposits it splits
    (``total`` = ``depositA + depositB`` of the state)."""

    fields = ("balanceA", "balanceB", "total")


class UnknownDeposit(ContractCustomError, StateRejected):
    """Raised when a state splits more deposits on a side than the channel holds (on chain), or than we
    know of (off chain)."""

    fields = ("depositA", "depositB", "channelDepositA", "channelDepositB")


class FinalStateHasLocks(ContractCustomError, StateRejected):
    """Raised when a state signed as final still has pending locks (a final state pays balances only)."""

    fields = ("lockedA", "lockedB", "locksRoot")


class WithdrawalCountMismatch(ContractCustomError, StateRejected):
    """Raised when a state was signed under another withdrawal counter than the channel's (a state from
    before a withdrawal, or one whose withdrawal was never made)."""

    fields = ("stateWithdrawals", "channelWithdrawals")


class LocksMismatch(ContractCustomError, StateRejected):
    """Raised when the lock list passed to ``settle`` (or received off chain) does not hash to the state's
    ``locksRoot``; ``computed`` is what it hashes to."""

    fields = ("locksRoot", "computed")


class ChannelPenalized(ContractCustomError):
    """Raised when challenging, or proving a revocation, after the closer was proven to have cheated."""

    fields = ("channelId",)


class NotRevoked(ContractCustomError):
    """Raised when a revocation does not cover the nonce the closer closed with (``belowNonce`` must be
    above ``closerNonce``)."""

    fields = ("closerNonce", "belowNonce")


class StaleWithdrawal(ContractCustomError, StateRejected):
    """Raised when a withdrawal names another withdrawal counter than the channel's (replayed or
    superseded)."""

    fields = ("submitted", "current")


class WithdrawalExpired(ContractCustomError, StateRejected):
    """Raised when a withdrawal is submitted after its expiry."""

    fields = ("expiry", "timestamp")


class WithdrawalTooLarge(ContractCustomError, StateRejected):
    """Raised when a withdrawal takes more than the deposits it names (``total``)."""

    fields = ("amountA", "amountB", "total")


class WithdrawalLimitReached(ContractCustomError):
    """Raised when a channel already made its 65,535th withdrawal."""

    fields = ("channelId",)


class StateNotFinal(ContractCustomError):
    """Raised when a cooperative close is attempted with a state not signed as final."""

    fields = ("nonce",)


class StaleState(ContractCustomError):
    """Raised when a submitted state is not newer than the recorded one."""

    fields = ("submittedNonce", "recordedNonce")


class RecordMismatch(ContractCustomError):
    """Raised when the record passed to ``challenge``/``proveRevoked``/``settle`` does not match
    the fingerprint of the closing channel; carries the slot's fingerprint and that of the record passed."""

    fields = ("recorded", "passed")


class ChallengePeriodOver(ContractCustomError):
    """Raised when challenging after the deadline."""

    fields = ("deadline", "timestamp")


class ChallengePeriodActive(ContractCustomError):
    """Raised when settling before the deadline has passed."""

    fields = ("deadline", "timestamp")


class NothingToClaim(ContractCustomError):
    """Raised when claiming with no deferred payout."""

    fields = ("account", "asset")


class PayoutFailed(ContractCustomError):
    """Raised when sending a claimed payout fails."""

    fields = ("to", "asset", "amount")


class Reentrancy(ContractCustomError):
    """Raised when a call re-enters the contract during a payout."""


def contract_error_classes() -> dict[str, type[ContractCustomError]]:
    """Every ``ContractCustomError`` subclass by name."""
    found: dict[str, type[ContractCustomError]] = {}
    pending: list[type[ContractCustomError]] = [ContractCustomError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found[sub.__name__] = sub
            pending.append(sub)
    return found


class UnsupportedChain(PaychanError):
    """Raised when the node lacks an EVM feature ``PaymentChannels`` needs (transient storage, EIP-1153)."""


class InvalidAmountText(PaychanError, ValueError):
    """Raised when the text of an amount (``0.5ether``, ``2500``) cannot be read as an exact, non-negative
    number of base units; ``text`` is what was given, ``reason`` says why in plain words."""

    def __init__(self, text: str, reason: str) -> None:
        self.text, self.reason = text, reason
        super().__init__(f"invalid amount '{text}': {reason}")
