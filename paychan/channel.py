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

Conditional payments (locks). ``propose_lock`` locks an amount of our balance towards the peer under a
hashlock, until an expiry; the peer checks it with ``receive_proposal(proposal, lock=...)``. Once the
receiver knows the secret, either side proposes the state that moves the lock to the receiver
(``propose_settle_lock``; the peer checks it with ``receive_proposal(proposal, settle=secret)``); after the
expiry the sender proposes the state that gives it back (``propose_expire_lock``; ``expire=hashlock``). At
most ``MAX_LOCKS`` locks are pending, each expiring within ``[now + MIN_LOCK_TIME, now + challenge period -
LOCK_EXPIRY_MARGIN]``, so that a lock is always expired or revealed by the time a close can settle.

Revocations (the penalty). Once a party durably holds the doubly-signed state ``n`` it may sign a
``Revocation`` of every nonce below ``n`` (``sign_revocation``) and send it to the peer, which keeps the
highest (``receive_revocation``): closing below it lets the peer take the whole channel. ``check_close``
refuses to close below our own revocation.

Withdrawals. ``propose_withdrawal`` signs a ``Withdrawal`` of our own balance together with the next state,
which names the deposits the withdrawal leaves and the next withdrawal counter; the peer checks and
countersigns both (``receive_withdrawal``). Until the withdrawal is made on chain the state before it is kept
(``pre_withdrawal``: the state the chain still accepts) and never revoked; ``record_withdrawal`` notes the
``Withdrawn`` event, ``abandon_withdrawal`` drops an expired one.

Anything invalid raises a ``StateRejected`` subclass and leaves the channel exactly as it was. A party never
signs two different states with the same nonce: while its own proposal awaits a countersignature it neither
proposes again nor signs the peer's proposal.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from paychan.exceptions import (
    BalancesNotConserved,
    ChannelFinalized,
    DuplicateHashlock,
    FinalStateHasLocks,
    InvalidAmount,
    InvalidRevocation,
    LockedTotalsMismatch,
    LockExpiryOutOfRange,
    LockNotExpired,
    LocksMismatch,
    MalformedMessage,
    MissingDeposit,
    NegativeBalance,
    NoPendingProposal,
    ProposalPending,
    RevokedNonce,
    TooManyLocks,
    UnexpectedNonce,
    UnfavourableState,
    UnknownChannel,
    UnknownDeposit,
    UnknownLock,
    WithdrawalCountMismatch,
    WithdrawalRejected,
    WrongChannel,
)
from paychan.signers import LocalKeySigner, Signer, as_signer
from paychan.signing import Domain, check_message_signer, check_signer
from paychan.state import (
    MAX_NONCE,
    MAX_UINT40,
    MAX_UINT256,
    MAX_WITHDRAWALS,
    ChannelId,
    ChannelParams,
    ChannelState,
    Lock,
    Nonce,
    Revocation,
    Signature,
    SignedState,
    Wei,
    Withdrawal,
    channel_id,
    hashlock,
    locked_totals,
    locks_root,
)

if TYPE_CHECKING:
    from paychan.contract import PaychanContract

SignedListener = Callable[[SignedState], None]
BeforeSign = Callable[[SignedState], None]

MAX_LOCKS = 16  # pending locks per state: settling a full channel stays far below a block (docs/gas.md)
LOCK_EXPIRY_MARGIN = 600  # seconds between a lock's latest expiry and the end of a close's challenge period
MIN_LOCK_TIME = 60  # seconds a new lock leaves its receiver at least, to reveal the secret


@dataclass(frozen=True)
class PendingWithdrawal:
    """A withdrawal both signed (``sig_a``, ``sig_b``; ours alone while our proposal waits) that the chain has
    not made yet, with ``before``: the latest state before it, the one the chain accepts until it is made."""

    withdrawal: Withdrawal
    before: SignedState
    sig_a: Signature | None = None
    sig_b: Signature | None = None

    @property
    def is_complete(self) -> bool:
        return self.sig_a is not None and self.sig_b is not None


class Channel:
    """One participant's off-chain channel: the latest doubly-signed state and its own pending proposal."""

    def __init__(
        self,
        params: ChannelParams,
        domain: Domain,
        private_key: bytes | LocalAccount | Signer,
        deposits: tuple[int, int] | None = None,
        latest: SignedState | None = None,
        pending: SignedState | None = None,
        locks: Sequence[Lock] = (),
        own_revocation: int = 0,
        peer_revocation: tuple[Revocation, Signature] | None = None,
        pending_withdrawal: PendingWithdrawal | None = None,
        *,
        peer_signing_address: str | None = None,
    ) -> None:
        """``private_key``: who signs for this party: a ``paychan.signers.Signer`` (a keystore, a wallet over
        JSON-RPC, an Ape account, an ERC-1271 wallet's owner, ...), or a raw key or ``LocalAccount`` (a
        ``LocalKeySigner``, as fast as before signers). ``deposits``: the on-chain deposits
        (A, B) this party knows of; by default those ``latest`` splits (nothing deposited since), or (0, 0)
        for a new channel. ``latest``: the newest doubly-signed state; by default the nonce-0 state
        splitting ``deposits`` as they stand. ``locks``: the pending locks of ``latest`` (checked against
        its root). ``own_revocation``/``peer_revocation``: the highest revocations signed so far (a store
        restores them); ``pending_withdrawal``: a withdrawal signed but not yet made on chain.
        ``peer_signing_address``: the key whose signatures count as the peer's: by default the peer's
        address; for a peer that is an owner-signed ERC-1271 wallet, its owner (known out of band; the
        contract checks the same signatures with the wallet's ``isValidSignature``)."""
        self.params = params
        self.domain = domain
        self.signer: Signer = as_signer(private_key, check=False)
        self.address: str = self.signer.address
        self.role = params.role_of(self.address)
        self.peer_role = "B" if self.role == "A" else "A"
        self.peer_address = params.participant_b if self.role == "A" else params.participant_a
        self.peer_signing_address: str = to_checksum_address(peer_signing_address or self.peer_address)
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
        self.locks: tuple[Lock, ...] = tuple(locks)
        if locks_root(self.locks) != self.latest.state.locks_root:
            raise ValueError("the locks given are not those the latest state commits to")
        # The lock list of our pending proposal (what `locks` becomes once it is countersigned).
        self._pending_locks: tuple[Lock, ...] | None = None
        self.own_revocation = own_revocation
        self.peer_revocation = peer_revocation
        self.pending_withdrawal = pending_withdrawal
        # The highest nonce ever signed, also by an abandoned withdrawal: the next state is above it.
        self._nonce_floor = self.latest.state.nonce
        self.on_signed: list[SignedListener] = []
        # Called with the state about to be signed (and the peer's signature, when countersigning) before
        # our signature exists: a durable store records it here. A hook that raises refuses the signature.
        self.before_sign: list[BeforeSign] = []

    @classmethod
    def from_chain(cls, contract: PaychanContract, params: ChannelParams, account: LocalAccount | Signer) -> Channel:
        """``account``'s side of the open channel ``params`` on ``contract``, with the deposits read from chain."""
        onchain = contract.get_channel(contract.channel_id(params))
        if onchain.status != 1:
            raise UnknownChannel(f"channel 0x{onchain.channel_id.hex()} is not open on {contract.address}")
        return cls(params, contract.domain, account, deposits=(onchain.deposit_a, onchain.deposit_b))

    # --- reading ---------------------------------------------------------------------------------

    @property
    def _key(self) -> bytes:
        """The raw private key, for callers of the attribute Channel had before signers; only a
        ``LocalKeySigner`` (or keystore) has one."""
        if not isinstance(self.signer, LocalKeySigner):
            raise AttributeError(f"{self.signer!r} holds no raw key")
        return self.signer.key

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
        """What the channel holds as we know it: balances plus pending locks."""
        return sum(self.balances()) + self.latest.state.locked_total

    @property
    def withdrawals(self) -> int:
        """The withdrawal counter our latest state was signed under."""
        return self.latest.state.withdrawals

    def lock(self, lock_hash: bytes) -> Lock:
        """The pending lock of ``lock_hash``; ``UnknownLock`` if there is none."""
        for lock in self.locks:
            if lock.hashlock == lock_hash:
                return lock
        raise UnknownLock(lock_hash)

    def latest_expiry(self, now: int) -> int:
        """The latest expiry a lock added at ``now`` may have."""
        return now + self.params.challenge_period - LOCK_EXPIRY_MARGIN

    # --- revocations -----------------------------------------------------------------------------

    def sign_revocation(self) -> tuple[Revocation, Signature] | None:
        """Revokes every nonce below our latest doubly-signed state (below the state before a pending
        withdrawal, which the chain still accepts); None when there is nothing new to revoke. Call it only
        once that state is stored durably: after it, closing with an older state loses the channel."""
        below = self.nonce if self.pending_withdrawal is None else self.pending_withdrawal.before.state.nonce
        if below <= self.own_revocation or not self.latest.is_complete:
            return None
        revocation = Revocation(self.channel_id, below)
        signature = self.signer.sign_typed(self.domain, revocation)
        self.own_revocation = below
        return revocation, signature

    def receive_revocation(self, revocation: Revocation, signature: Signature) -> None:
        """Keeps the peer's revocation if it is valid and higher than the one held; an equal one is a
        no-op. Raises ``InvalidRevocation`` (or ``InvalidSignature``) otherwise."""
        if not isinstance(revocation, Revocation) or not isinstance(signature, Signature):
            raise MalformedMessage("a revocation and its signature expected")
        if revocation.channel_id != self.channel_id:
            raise InvalidRevocation(f"for channel 0x{revocation.channel_id.hex()}, not this one")
        below = revocation.below_nonce
        if isinstance(below, bool) or not isinstance(below, int) or not 0 < below <= MAX_NONCE:
            raise InvalidRevocation(f"belowNonce {below!r} is not a nonce")
        if below > self.nonce:
            raise InvalidRevocation(f"revokes below {below}, above our latest state {self.nonce}")
        held = self.peer_revocation[0].below_nonce if self.peer_revocation else 0
        if below < held:
            raise InvalidRevocation(f"revokes below {below}, under the {held} already held")
        check_message_signer(self.domain, revocation, signature, self.peer_signing_address)
        if below > held:
            self.peer_revocation = (revocation, signature)

    def check_close(self, signed: SignedState | None) -> None:
        """Raises ``RevokedNonce`` if closing with ``signed`` (None: ``closeWithoutState``, nonce 0) would
        close below our own revocation, which would let the peer take the whole channel."""
        nonce = 0 if signed is None else signed.state.nonce
        if nonce < self.own_revocation:
            raise RevokedNonce(nonce, self.own_revocation)

    def state_for_chain(self, withdrawals: int) -> SignedState:
        """The latest state the chain accepts while its withdrawal counter is ``withdrawals``: the latest,
        or the one before a withdrawal not yet made."""
        if self.latest.state.withdrawals == withdrawals:
            return self.latest
        if self.pending_withdrawal is not None and self.pending_withdrawal.before.state.withdrawals == withdrawals:
            return self.pending_withdrawal.before
        raise WithdrawalCountMismatch(self.latest.state.withdrawals, withdrawals)

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
        self._check_amount(amount)
        self._check_can_propose()
        mine = self.balance()
        if amount > mine:
            raise NegativeBalance(mine - amount)
        a, b = self.balances()
        a, b = (a - amount, b + amount) if self.role == "A" else (a + amount, b - amount)
        return self._propose(self._next_state(a, b, is_final=False))

    def propose_final(self) -> SignedState:
        """Builds and signs a final state with the current balances, for a cooperative close. Pending locks
        must be settled or expired first (a final state has none)."""
        self._check_can_propose()
        if self.locks:
            state = self.latest.state
            raise FinalStateHasLocks(state.locked_a, state.locked_b, state.locks_root)
        a, b = self.balances()
        return self._propose(self._next_state(a, b, is_final=True))

    # --- conditional payments --------------------------------------------------------------------

    def propose_lock(self, amount: int, lock_hash: bytes, expiry: int, now: int) -> tuple[SignedState, Lock]:
        """Locks ``amount`` of our balance towards the peer under ``lock_hash`` until ``expiry``; send the
        proposal with the lock. ``now``: the current (chain) time."""
        self._check_amount(amount)
        self._check_can_propose()
        lock = Lock(self.role, amount, expiry, lock_hash)
        self._check_new_lock(lock, now)
        mine = self.balance()
        if amount > mine:
            raise NegativeBalance(mine - amount)
        a, b = self.balances()
        a, b = (a - amount, b) if self.role == "A" else (a, b - amount)
        locks = (*self.locks, lock)
        return self._propose(self._next_state(a, b, is_final=False, locks=locks), locks), lock

    def propose_settle_lock(self, secret: bytes) -> SignedState:
        """Moves the pending lock of ``hashlock(secret)`` to its receiver (either side may propose it: the
        receiver shows the secret it is owed for, the sender pays what it learned is due)."""
        self._check_can_propose()
        lock = self.lock(_hashlock_of(secret))
        a, b = self.balances()
        a, b = (a + lock.amount, b) if lock.receiver == "A" else (a, b + lock.amount)
        locks = tuple(x for x in self.locks if x != lock)
        return self._propose(self._next_state(a, b, is_final=False, locks=locks), locks)

    def propose_expire_lock(self, lock_hash: bytes, now: int) -> SignedState:
        """Gives an expired lock of ours back to us (``now`` past its expiry)."""
        self._check_can_propose()
        lock = self.lock(lock_hash)
        if lock.sender != self.role:
            raise UnknownLock(lock_hash)  # not ours to take back
        if now <= lock.expiry:
            raise LockNotExpired(lock.expiry, now)
        a, b = self.balances()
        a, b = (a + lock.amount, b) if lock.sender == "A" else (a, b + lock.amount)
        locks = tuple(x for x in self.locks if x != lock)
        return self._propose(self._next_state(a, b, is_final=False, locks=locks), locks)

    # --- withdrawing -----------------------------------------------------------------------------

    def propose_withdrawal(self, amount: int, expiry: int) -> tuple[Withdrawal, Signature, SignedState]:
        """Withdraws ``amount`` of our balance while the channel stays open, until ``expiry``: signs the
        withdrawal and the next state (our balance lowered, the deposits it leaves, the next counter)."""
        self._check_amount(amount)
        self._check_can_propose()
        if self.pending_withdrawal is not None:
            raise WithdrawalRejected("a withdrawal is pending already")
        if self.withdrawals >= MAX_WITHDRAWALS:
            raise WithdrawalRejected("the channel made its last withdrawal (65,535)")
        mine = self.balance()
        if amount > mine:
            raise NegativeBalance(mine - amount)
        withdrawal = self._withdrawal(amount if self.role == "A" else 0, amount if self.role == "B" else 0, expiry)
        state = self._withdrawal_state(withdrawal)
        signature = self.signer.sign_typed(self.domain, withdrawal)
        proposal = self._propose(state, self.locks)
        sigs = (signature, None) if self.role == "A" else (None, signature)
        self.pending_withdrawal = PendingWithdrawal(withdrawal, self.latest, *sigs)
        return withdrawal, signature, proposal

    def receive_withdrawal(
        self, withdrawal: Withdrawal, signature: Signature, proposal: SignedState, now: int
    ) -> tuple[Signature, SignedState]:
        """Checks the peer's withdrawal (of the peer's own balance, against the deposits we know, unexpired
        at ``now``) and the state that comes with it; countersigns both."""
        if not isinstance(withdrawal, Withdrawal) or not isinstance(signature, Signature):
            raise MalformedMessage("a withdrawal and its signature expected")
        if withdrawal.channel_id != self.channel_id:
            raise WrongChannel(self.channel_id, withdrawal.channel_id)
        if self.pending_withdrawal is not None:
            raise WithdrawalRejected("a withdrawal is pending already")
        if withdrawal.withdrawals != self.withdrawals:
            raise WithdrawalCountMismatch(withdrawal.withdrawals, self.withdrawals)
        if not now < withdrawal.expiry <= MAX_UINT40:
            raise WithdrawalRejected(f"expiry {withdrawal.expiry} is not after now ({now})")
        own = withdrawal.amount_a if self.role == "A" else withdrawal.amount_b
        theirs = withdrawal.amount_b if self.role == "A" else withdrawal.amount_a
        if own != 0:
            raise WithdrawalRejected("it withdraws from our side: only we propose that")
        self._check_amount(theirs)
        if (withdrawal.deposit_a, withdrawal.deposit_b) != self.deposits:
            raise WithdrawalRejected(
                f"it names deposits {(withdrawal.deposit_a, withdrawal.deposit_b)}, we know {self.deposits}"
            )
        if theirs > self.balance(self.peer_role):
            raise NegativeBalance(self.balance(self.peer_role) - theirs)
        expected = self._withdrawal_state(withdrawal)
        if not isinstance(proposal, SignedState) or proposal.state != expected:
            raise WithdrawalRejected("the state sent with it is not the one the withdrawal leaves")
        self._check_can_sign(proposal.state)
        check_message_signer(self.domain, withdrawal, signature, self.peer_signing_address)
        check_signer(self.domain, proposal.state, proposal.signature_of(self.peer_role), self.peer_signing_address)
        for hook in self.before_sign:
            hook(proposal)
        own_signature = self.signer.sign_typed(self.domain, withdrawal)
        signed = proposal.with_signature(self.role, self.signer.sign_typed(self.domain, expected))
        sigs = (own_signature, signature) if self.role == "A" else (signature, own_signature)
        self.pending_withdrawal = PendingWithdrawal(withdrawal, self.latest, *sigs)
        self._accept(signed, self.locks)
        return own_signature, signed

    def receive_withdrawal_countersignature(self, signature: Signature, signed: SignedState) -> SignedState:
        """Checks the peer's signatures of our pending withdrawal and its state; both are then complete."""
        pending = self.pending_withdrawal
        if pending is None or pending.is_complete:
            raise NoPendingProposal(signed.state.nonce if isinstance(signed, SignedState) else -1)
        check_message_signer(self.domain, pending.withdrawal, signature, self.peer_signing_address)
        self.receive_countersignature(signed)
        if self.peer_role == "A":
            self.pending_withdrawal = replace(pending, sig_a=signature)
        else:
            self.pending_withdrawal = replace(pending, sig_b=signature)
        return self.latest

    def record_withdrawal(self, deposit_a: int, deposit_b: int, withdrawals: int) -> None:
        """Notes a ``Withdrawn`` event: the channel's deposits and counter after it."""
        if withdrawals != self.withdrawals:
            raise WithdrawalCountMismatch(self.withdrawals, withdrawals)
        self.deposits = (deposit_a, deposit_b)
        self.pending_withdrawal = None

    def abandon_withdrawal(self, now: int) -> None:
        """Drops a pending withdrawal that expired unmade (``now`` past its expiry): the state before it is
        the latest again; the next state's nonce stays above every nonce signed."""
        pending = self.pending_withdrawal
        if pending is None:
            return
        if now <= pending.withdrawal.expiry:
            raise WithdrawalRejected(f"the withdrawal can still be made until {pending.withdrawal.expiry}")
        # no later state may reuse the nonce of the withdrawal's state (both signed it) or of a proposal
        self._nonce_floor = max(self._nonce_floor, self.latest.state.nonce)
        if self.pending is not None:
            self._nonce_floor = max(self._nonce_floor, self.pending.state.nonce)
            if self.pending.state.withdrawals != pending.before.state.withdrawals:
                self.pending = None
        self.latest = pending.before
        self.pending_withdrawal = None

    # --- receiving -------------------------------------------------------------------------------

    def receive_proposal(
        self,
        proposal: SignedState,
        *,
        lock: Lock | None = None,
        settle: bytes | None = None,
        expire: bytes | None = None,
        now: int | None = None,
    ) -> SignedState:
        """Checks the peer's signed proposal, countersigns it and returns the doubly-signed state.

        A plain payment keeps the locks; ``lock`` adds the peer's new lock (``now`` needed); ``settle`` (a
        secret) moves the pending lock of its hashlock to its receiver; ``expire`` (a hashlock) gives an
        expired lock of the peer's back to it (``now`` needed)."""
        locks, minimum = self._expected_locks(lock, settle, expire, now)
        state = self._check_proposal(proposal, locks, minimum)
        for hook in self.before_sign:
            hook(proposal)
        signed = proposal.with_signature(self.role, self.signer.sign_typed(self.domain, state))
        self._accept(signed, locks)
        return signed

    def following(self, proposal: SignedState, locks: tuple[Lock, ...]) -> Channel:
        """This channel as it will be once our ``proposal`` (with its lock list ``locks``) is countersigned: the
        proposal after it in one message (a batch of lock operations) is built and checked on it with
        ``propose_lock`` and the others. Signing on it records intents through the same ``before_sign`` hooks;
        its state is its own, and the proposals it makes are noted here with ``await_countersignature``."""
        view = copy.copy(self)
        view.latest, view.locks = proposal, tuple(locks)
        view.pending, view._pending_locks = None, None
        view.on_signed = []
        return view

    def await_countersignature(
        self, proposal: SignedState, locks: tuple[Lock, ...] | None = None, through: int = 0
    ) -> None:
        """Notes ``proposal``, which we signed (here or on a ``following`` view), as the one the next
        countersignature must be for; ``locks``: the lock list it commits to, if it changes them;
        ``through``: the highest nonce we signed after it (on views), taken as well."""
        self.pending, self._pending_locks = proposal, None if locks is None else tuple(locks)
        self._nonce_floor = max(self._nonce_floor, proposal.state.nonce, Nonce(through))

    def receive_countersignature(self, signed: SignedState) -> SignedState:
        """Checks the peer's countersignature on our pending proposal; it becomes the latest state."""
        if not isinstance(signed, SignedState) or not isinstance(signed.state, ChannelState):
            raise MalformedMessage(f"expected a SignedState, got {type(signed).__name__}")
        if self.pending is None or signed.state != self.pending.state:
            raise NoPendingProposal(signed.state.nonce if isinstance(signed.state.nonce, int) else -1)
        check_signer(self.domain, signed.state, signed.signature_of(self.peer_role), self.peer_signing_address)
        own = self.pending.signature_of(self.role)
        assert own is not None
        locks = self._pending_locks if self._pending_locks is not None else self.locks
        self._accept(signed.with_signature(self.role, own), locks)
        return self.latest

    # --- internal --------------------------------------------------------------------------------

    @staticmethod
    def _check_amount(amount: object) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or amount > MAX_UINT256:
            raise InvalidAmount(amount)

    def _check_can_propose(self) -> None:
        if self.is_final:
            raise ChannelFinalized(self.nonce)
        if self.pending is not None:
            raise ProposalPending(self.pending.state.nonce)
        self._check_no_withdrawal_pending()
        if self._next_nonce > MAX_NONCE:
            raise UnexpectedNonce(self._next_nonce, self.nonce)

    @property
    def signed_nonce(self) -> int:
        """The highest nonce this channel signed or countersigned, the latest state's or above it (a state
        a dropped withdrawal named, a proposal not answered): the next state takes a higher one."""
        return max(self.nonce, self._nonce_floor)

    @property
    def _next_nonce(self) -> int:
        return max(self.nonce, self._nonce_floor) + 1

    def _check_new_lock(self, lock: Lock, now: int | None) -> None:
        if now is None:
            raise TypeError("checking a new lock needs the current time (now)")
        if len(self.locks) >= MAX_LOCKS:
            raise TooManyLocks(len(self.locks) + 1, MAX_LOCKS)
        if any(x.hashlock == lock.hashlock for x in self.locks):
            raise DuplicateHashlock(lock.hashlock)
        earliest, latest = now + MIN_LOCK_TIME, self.latest_expiry(now)
        if not earliest <= lock.expiry <= latest:
            raise LockExpiryOutOfRange(lock.expiry, earliest, latest)

    def _expected_locks(
        self, lock: Lock | None, settle: bytes | None, expire: bytes | None, now: int | None
    ) -> tuple[tuple[Lock, ...], int]:
        """The lock list a proposal must commit to, and the least our payout may be after it."""
        if sum(x is not None for x in (lock, settle, expire)) > 1:
            raise MalformedMessage("a proposal does one thing: pay, add a lock, settle one or expire one")
        minimum = self.balance()
        if lock is not None:
            if not isinstance(lock, Lock):
                raise MalformedMessage(f"expected a Lock, got {type(lock).__name__}")
            if lock.sender != self.peer_role:
                raise UnfavourableState(minimum, minimum - lock.amount)  # a lock from our balance
            if lock.amount <= 0:
                raise InvalidAmount(lock.amount)
            self._check_new_lock(lock, now)
            return (*self.locks, lock), minimum
        if settle is not None:
            found = self.lock(_hashlock_of(settle))
            if found.receiver == self.role:
                minimum += found.amount  # we are paid the lock
            return tuple(x for x in self.locks if x != found), minimum
        if expire is not None:
            found = self.lock(expire)
            if found.sender != self.peer_role:
                raise UnknownLock(expire)  # ours: only we take it back
            if now is None:
                raise TypeError("expiring a lock needs the current time (now)")
            if now <= found.expiry:
                raise LockNotExpired(found.expiry, now)
            return tuple(x for x in self.locks if x != found), minimum
        return self.locks, minimum

    def _next_state(
        self, balance_a: int, balance_b: int, is_final: bool, locks: tuple[Lock, ...] | None = None
    ) -> ChannelState:
        deposit_a, deposit_b = self.deposits
        locks = self.locks if locks is None else locks
        locked_a, locked_b = locked_totals(locks)
        return ChannelState(
            self.channel_id,
            Nonce(self._next_nonce),
            Wei(balance_a),
            Wei(balance_b),
            locks_root(locks),
            is_final=is_final,
            deposit_a=Wei(deposit_a),
            deposit_b=Wei(deposit_b),
            locked_a=Wei(locked_a),
            locked_b=Wei(locked_b),
            withdrawals=self.withdrawals,
        )

    def _withdrawal(self, amount_a: int, amount_b: int, expiry: int) -> Withdrawal:
        deposit_a, deposit_b = self.deposits
        return Withdrawal(self.channel_id, amount_a, amount_b, deposit_a, deposit_b, self.withdrawals, expiry)

    def _withdrawal_state(self, withdrawal: Withdrawal) -> ChannelState:
        """The state a withdrawal leaves: the withdrawn amounts off their owners' balances, the deposits it
        leaves, the next withdrawal counter, the locks unchanged."""
        try:
            deposit_a, deposit_b = withdrawal.deposits_after()
        except ValueError as exc:
            raise WithdrawalRejected(str(exc)) from None
        a, b = self.balances()
        state = self._next_state(a - withdrawal.amount_a, b - withdrawal.amount_b, is_final=False)
        return replace(
            state,
            deposit_a=Wei(deposit_a),
            deposit_b=Wei(deposit_b),
            withdrawals=withdrawal.withdrawals + 1,
        )

    def _propose(self, state: ChannelState, locks: tuple[Lock, ...] | None = None) -> SignedState:
        for hook in self.before_sign:
            hook(SignedState(state))
        signed = SignedState(state).with_signature(self.role, self.signer.sign_typed(self.domain, state))
        self.pending = signed
        self._pending_locks = locks
        self._nonce_floor = max(self._nonce_floor, state.nonce)
        return signed

    def _check_no_withdrawal_pending(self) -> None:
        """A state on top of a withdrawal the chain has not made would be lost if it is never made: the
        channel waits for ``record_withdrawal`` or ``abandon_withdrawal``."""
        if self.pending_withdrawal is not None:
            raise WithdrawalRejected(
                f"withdrawal {self.pending_withdrawal.withdrawal.withdrawals + 1} is not made on chain yet"
            )

    def _check_can_sign(self, state: ChannelState) -> None:
        if self.is_final:
            raise ChannelFinalized(self.nonce)
        if self.pending is not None:
            raise ProposalPending(self.pending.state.nonce)
        self._check_no_withdrawal_pending()
        if state.nonce != self._next_nonce:
            raise UnexpectedNonce(state.nonce, self._next_nonce)

    def _check_proposal(self, proposal: SignedState, locks: tuple[Lock, ...], minimum: int) -> ChannelState:
        if not isinstance(proposal, SignedState) or not isinstance(proposal.state, ChannelState):
            raise MalformedMessage(f"expected a SignedState, got {type(proposal).__name__}")
        state = proposal.state
        _check_types(state)
        if state.channel_id != self.channel_id:
            raise WrongChannel(self.channel_id, state.channel_id)
        self._check_can_sign(state)
        for balance in (state.balance_a, state.balance_b, state.locked_a, state.locked_b):
            if balance < 0 or balance > MAX_UINT256:
                raise NegativeBalance(balance)
        if state.withdrawals != self.withdrawals:
            raise WithdrawalCountMismatch(state.withdrawals, self.withdrawals)
        known_a, known_b = self.deposits
        if state.deposit_a > known_a or state.deposit_b > known_b:
            raise UnknownDeposit(state.deposit_a, state.deposit_b, known_a, known_b)
        signed = self.latest.state
        if state.deposit_a < signed.deposit_a or state.deposit_b < signed.deposit_b:
            raise MissingDeposit(state.deposit_a, state.deposit_b, signed.deposit_a, signed.deposit_b)
        if state.total != state.deposit_total:
            raise BalancesNotConserved(state.balance_a, state.balance_b, state.deposit_total)
        if state.is_final and (state.locked_a or state.locked_b or any(state.locks_root)):
            raise FinalStateHasLocks(state.locked_a, state.locked_b, state.locks_root)
        expected_a, expected_b = locked_totals(locks)
        if (state.locked_a, state.locked_b) != (expected_a, expected_b):
            raise LockedTotalsMismatch(state.locked_a, state.locked_b, expected_a, expected_b)
        if state.locks_root != locks_root(locks):
            raise LocksMismatch(locks_root(locks), state.locks_root)  # bytes32, as the contract reports it
        payout_a, payout_b = state.payouts(known_a, known_b)  # what the contract would pay for it
        proposed = payout_a if self.role == "A" else payout_b
        if proposed < minimum:
            raise UnfavourableState(minimum, proposed)
        check_signer(self.domain, state, proposal.signature_of(self.peer_role), self.peer_signing_address)
        return state

    def _accept(self, signed: SignedState, locks: tuple[Lock, ...]) -> None:
        self.latest = signed
        self.locks = tuple(locks)
        self.pending = None
        self._pending_locks = None
        self._nonce_floor = max(self._nonce_floor, signed.state.nonce)
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


def _hashlock_of(secret: bytes) -> bytes:
    if not isinstance(secret, bytes) or len(secret) != 32:
        raise MalformedMessage("a secret is 32 bytes")
    return hashlock(secret)


def _check_types(state: ChannelState) -> None:
    if not isinstance(state.channel_id, bytes) or len(state.channel_id) != 32:
        raise MalformedMessage("channel id must be 32 bytes")
    for name in ("nonce", "balance_a", "balance_b", "locked_a", "locked_b", "deposit_a", "deposit_b", "withdrawals"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedMessage(f"{name} must be an integer, not {type(value).__name__}")
    if not isinstance(state.locks_root, bytes) or len(state.locks_root) != 32:
        raise MalformedMessage("locks root must be 32 bytes")
    if not isinstance(state.is_final, bool):
        raise MalformedMessage("is_final must be a boolean")
    if state.nonce < 0 or state.nonce > MAX_NONCE:
        raise UnexpectedNonce(state.nonce, -1)
    if not 0 <= state.withdrawals <= MAX_WITHDRAWALS:
        raise MalformedMessage("withdrawals must be a uint16")


__all__ = [
    "LOCK_EXPIRY_MARGIN",
    "MAX_LOCKS",
    "MIN_LOCK_TIME",
    "BeforeSign",
    "Channel",
    "PendingWithdrawal",
    "SignedListener",
    "agree_final",
    "pay",
    "replace",
]
