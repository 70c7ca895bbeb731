"""The off-chain channel: one participant's view of the states both sign.

Protocol (who signs what, in which order): the payer builds the next state (nonce + 1, its balance
lowered by the amount), signs it and sends it (``propose_payment``); the payee checks it, countersigns and
sends it back (``receive_proposal``); the payer checks the countersignature (``receive_countersignature``).
Either side then holds the same doubly-signed state, the latest one, which the contract accepts.
Closing cooperatively is the same exchange with ``is_final`` set and balances unchanged.

Every state names the on-chain deposits it splits (``deposit_a``/``deposit_b``): the deposits this party
knows of. A deposit noted with ``record_deposit`` joins the depositor's balance in the next state. A
proposal may name fewer deposits than we know of (the peer has not seen a deposit yet: on chain it goes
back to its side on top of the state's balance, and our balance is judged that way), but never more
(``UnknownDeposit``) nor fewer than our latest state already splits (``MissingDeposit``).

Anything invalid raises a ``StateRejected`` subclass and leaves the channel exactly as it was. A party never
signs two different states with the same nonce: while its own proposal awaits a countersignature it neither
proposes again nor signs the peer's proposal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.signers.local import LocalAccount

from paychan.exceptions import (
    BalancesNotConserved,
    ChannelFinalized,
    InvalidAmount,
    LocksMismatch,
    MalformedMessage,
    MissingDeposit,
    NegativeBalance,
    NoPendingProposal,
    ProposalPending,
    UnexpectedNonce,
    UnfavourableState,
    UnknownChannel,
    UnknownDeposit,
    WrongChannel,
)
from paychan.signing import Domain, check_signer, sign_state
from paychan.state import (
    MAX_NONCE,
    MAX_UINT256,
    ZERO_ROOT,
    ChannelId,
    ChannelParams,
    ChannelState,
    Nonce,
    SignedState,
    Wei,
    channel_id,
)

if TYPE_CHECKING:
    from paychan.contract import PaychanContract

SignedListener = Callable[[SignedState], None]
BeforeSign = Callable[[SignedState], None]


class Channel:
    """One participant's off-chain channel: the latest doubly-signed state and its own pending proposal."""

    def __init__(
        self,
        params: ChannelParams,
        domain: Domain,
        private_key: bytes | LocalAccount,
        deposits: tuple[int, int] | None = None,
        latest: SignedState | None = None,
        pending: SignedState | None = None,
    ) -> None:
        """``private_key``: this party's key (or its ``LocalAccount``). ``deposits``: the on-chain deposits
        (A, B) this party knows of; by default those ``latest`` splits (nothing deposited since), or (0, 0)
        for a new channel. ``latest``: the newest doubly-signed state; by default the nonce-0 state
        splitting ``deposits`` as they stand."""
        self.params = params
        self.domain = domain
        self._key = bytes(private_key.key) if isinstance(private_key, LocalAccount) else bytes(private_key)
        self.address: str = Account.from_key(self._key).address
        self.role = params.role_of(self.address)
        self.peer_role = "B" if self.role == "A" else "A"
        self.peer_address = params.participant_b if self.role == "A" else params.participant_a
        self.channel_id: ChannelId = channel_id(params, domain.chain_id, domain.verifying_contract)
        if deposits is None:
            deposits = (latest.state.deposit_a, latest.state.deposit_b) if latest else (0, 0)
        a, b = deposits
        self.latest = latest or SignedState(
            ChannelState(self.channel_id, Nonce(0), Wei(a), Wei(b), deposit_a=Wei(a), deposit_b=Wei(b))
        )
        if a < self.latest.state.deposit_a or b < self.latest.state.deposit_b:
            raise ValueError(f"deposits {deposits} below those the latest state splits")
        # The on-chain deposits known to this party; the next state splits them.
        self.deposits: tuple[int, int] = (a, b)
        self.pending = pending
        self.on_signed: list[SignedListener] = []
        # Called with the state about to be signed (and the peer's signature, when countersigning) before
        # our signature exists: a durable store records it here. A hook that raises refuses the signature.
        self.before_sign: list[BeforeSign] = []

    @classmethod
    def from_chain(cls, contract: PaychanContract, params: ChannelParams, account: LocalAccount) -> Channel:
        """``account``'s side of the open channel ``params`` on ``contract``, with the deposits read from chain."""
        onchain = contract.get_channel(contract.channel_id(params))
        if onchain.status != 1:
            raise UnknownChannel(f"channel 0x{onchain.channel_id.hex()} is not open on {contract.address}")
        return cls(params, contract.domain, account, deposits=(onchain.deposit_a, onchain.deposit_b))

    # --- reading ---------------------------------------------------------------------------------

    @property
    def nonce(self) -> int:
        return self.latest.state.nonce

    @property
    def is_final(self) -> bool:
        return self.latest.state.is_final

    def balances(self) -> tuple[int, int]:
        """Current balances (A, B): the latest signed state plus deposits made since (what the contract
        would pay for it)."""
        return self.latest.state.payouts(*self.deposits)

    def balance(self, role: str | None = None) -> int:
        a, b = self.balances()
        return a if (role or self.role) == "A" else b

    @property
    def total(self) -> int:
        return sum(self.balances())

    # --- deposits --------------------------------------------------------------------------------

    def record_deposit(self, role: str, amount: int) -> None:
        """Takes note of an on-chain deposit of ``amount`` to participant ``role``'s side."""
        if role not in ("A", "B") or amount <= 0:
            raise ValueError(f"bad deposit: {role} {amount}")
        a, b = self.deposits
        self.deposits = (a + amount, b) if role == "A" else (a, b + amount)

    # --- paying ----------------------------------------------------------------------------------

    def propose_payment(self, amount: int) -> SignedState:
        """Builds and signs the next state paying ``amount`` to the peer; send it to the peer."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidAmount(amount)
        self._check_can_propose()
        mine = self.balance()
        if amount > mine:
            raise NegativeBalance(mine - amount)
        a, b = self.balances()
        a, b = (a - amount, b + amount) if self.role == "A" else (a + amount, b - amount)
        return self._propose(self._next_state(a, b, is_final=False))

    def propose_final(self) -> SignedState:
        """Builds and signs a final state with the current balances, for a cooperative close."""
        self._check_can_propose()
        a, b = self.balances()
        return self._propose(self._next_state(a, b, is_final=True))

    def receive_proposal(self, proposal: SignedState) -> SignedState:
        """Checks the peer's signed proposal, countersigns it and returns the doubly-signed state."""
        state = self._check_proposal(proposal)
        for hook in self.before_sign:
            hook(proposal)
        signed = proposal.with_signature(self.role, sign_state(self.domain, state, self._key))
        self._accept(signed)
        return signed

    def receive_countersignature(self, signed: SignedState) -> SignedState:
        """Checks the peer's countersignature on our pending proposal; it becomes the latest state."""
        if not isinstance(signed, SignedState) or not isinstance(signed.state, ChannelState):
            raise MalformedMessage(f"expected a SignedState, got {type(signed).__name__}")
        if self.pending is None or signed.state != self.pending.state:
            raise NoPendingProposal(signed.state.nonce if isinstance(signed.state.nonce, int) else -1)
        check_signer(self.domain, signed.state, signed.signature_of(self.peer_role), self.peer_address)
        own = self.pending.signature_of(self.role)
        assert own is not None
        self._accept(signed.with_signature(self.role, own))
        return self.latest

    # --- internal --------------------------------------------------------------------------------

    def _check_can_propose(self) -> None:
        if self.is_final:
            raise ChannelFinalized(self.nonce)
        if self.pending is not None:
            raise ProposalPending(self.pending.state.nonce)
        if self.nonce >= MAX_NONCE:
            raise UnexpectedNonce(self.nonce + 1, self.nonce)

    def _next_state(self, balance_a: int, balance_b: int, is_final: bool) -> ChannelState:
        deposit_a, deposit_b = self.deposits
        return ChannelState(
            self.channel_id,
            Nonce(self.nonce + 1),
            Wei(balance_a),
            Wei(balance_b),
            is_final=is_final,
            deposit_a=Wei(deposit_a),
            deposit_b=Wei(deposit_b),
        )

    def _propose(self, state: ChannelState) -> SignedState:
        for hook in self.before_sign:
            hook(SignedState(state))
        signed = SignedState(state).with_signature(self.role, sign_state(self.domain, state, self._key))
        self.pending = signed
        return signed

    def _check_proposal(self, proposal: SignedState) -> ChannelState:
        if not isinstance(proposal, SignedState) or not isinstance(proposal.state, ChannelState):
            raise MalformedMessage(f"expected a SignedState, got {type(proposal).__name__}")
        state = proposal.state
        _check_types(state)
        if state.channel_id != self.channel_id:
            raise WrongChannel(self.channel_id, state.channel_id)
        if self.is_final:
            raise ChannelFinalized(self.nonce)
        if self.pending is not None:
            raise ProposalPending(self.pending.state.nonce)
        if state.nonce != self.nonce + 1:
            raise UnexpectedNonce(state.nonce, self.nonce + 1)
        for balance in (state.balance_a, state.balance_b):
            if balance < 0 or balance > MAX_UINT256:
                raise NegativeBalance(balance)
        known_a, known_b = self.deposits
        if state.deposit_a > known_a or state.deposit_b > known_b:
            raise UnknownDeposit(state.deposit_a, state.deposit_b, known_a, known_b)
        signed = self.latest.state
        if state.deposit_a < signed.deposit_a or state.deposit_b < signed.deposit_b:
            raise MissingDeposit(state.deposit_a, state.deposit_b, signed.deposit_a, signed.deposit_b)
        if state.total != state.deposit_total:
            raise BalancesNotConserved(state.balance_a, state.balance_b, state.deposit_total)
        if state.locks_root != ZERO_ROOT:
            raise LocksMismatch(ZERO_ROOT, state.locks_root)  # bytes32, as the contract reports it
        payout_a, payout_b = state.payouts(known_a, known_b)  # what the contract would pay for it
        proposed = payout_a if self.role == "A" else payout_b
        if proposed < self.balance():
            raise UnfavourableState(self.balance(), proposed)
        check_signer(self.domain, state, proposal.signature_of(self.peer_role), self.peer_address)
        return state

    def _accept(self, signed: SignedState) -> None:
        self.latest = signed
        self.pending = None
        for listener in self.on_signed:
            listener(signed)


def pay(payer: Channel, payee: Channel, amount: int) -> SignedState:
    """One whole payment between two parties held in one process: the payer proposes, the payee
    countersigns, the payer checks the countersignature. Returns the doubly-signed state."""
    signed = payee.receive_proposal(payer.propose_payment(amount))
    payer.receive_countersignature(signed)
    return signed


def agree_final(proposer: Channel, peer: Channel) -> SignedState:
    """Both parties (in one process) sign the latest balances as final: the state a cooperative close needs."""
    signed = peer.receive_proposal(proposer.propose_final())
    proposer.receive_countersignature(signed)
    return signed


def _check_types(state: ChannelState) -> None:
    if not isinstance(state.channel_id, bytes) or len(state.channel_id) != 32:
        raise MalformedMessage("channel id must be 32 bytes")
    for name in ("nonce", "balance_a", "balance_b", "deposit_a", "deposit_b"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedMessage(f"{name} must be an integer, not {type(value).__name__}")
    if not isinstance(state.locks_root, bytes) or len(state.locks_root) != 32:
        raise MalformedMessage("locks root must be 32 bytes")
    if not isinstance(state.is_final, bool):
        raise MalformedMessage("is_final must be a boolean")
    if state.nonce < 0 or state.nonce > MAX_NONCE:
        raise UnexpectedNonce(state.nonce, -1)


__all__ = ["BeforeSign", "Channel", "SignedListener", "agree_final", "pay", "replace"]
