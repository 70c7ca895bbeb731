"""Model-based fuzzing: random sequences of channel actions against the real contract (v2) and a reference model.

A hypothesis ``RuleBasedStateMachine`` drives, by random actors on the embedded chain: open, deposit,
off-chain signing (payments, conditional payments with SHA-256 hashlocks and expiries in both directions,
locks settled or taken back off chain, forged, non-conserving, lock-carrying final states), revocations,
withdrawals while open (and their replays, expired, wrong-counter, too large, half-signed forms),
cooperative close, unilateral close with a stale, revoked, pre-withdrawal or current state, challenge
(a final state pays out at once only when the participant who did not close submits it), proofs of
revocation (from the right and the wrong party, covering and not), secret reveals (one or a batch, before,
at and after a lock's expiry), settle with the right, a reordered, a shortened, a lengthened or an empty
lock list, claim, a blocked token recipient, time travel, and calls on channels in the wrong state. The
machine's own fields are a small Python reference of what the contract should do, written from
``docs/design-v2.md``, and every step predicts its outcome first:

- a call the model rejects must revert with exactly the custom error and values the model predicts (for
  ``RecordMismatch``: the fingerprints of the model's record and of the one passed, by
  ``RecordedState.fingerprint``), and change nothing but the sender's gas;
- after every step, every actor's ETH balance (gas included, to the wei), the token balance of every actor
  the step paid or charged, the contract's
  balances, ``owed``, the touched channels' slots (status, closer, penalty, deadline, nonce, deposits,
  withdrawal counter) and records (the model's own ``RecordedState``, its salt taken from the recording
  receipt, must match the slot's fingerprint: passed as calldata to a ``proveRevoked`` call that revokes
  nothing, it gets past the record check; the first few are also compared with the SDK's
  ``recorded_state``, which reads the events, too slow on eth-tester for every step), the touched
  hashlocks' ``revealedAt`` and ``nextChannelNumber`` equal the model's. So the
  contract's balance always equals what open and closing channels hold plus what is owed, and for each
  channel what was deposited equals what it holds (balances plus locked amounts once closing) plus what
  its withdrawals and payouts paid;
- "the latest state wins unless revoked": a settled channel paid exactly the highest-nonce doubly-signed
  state submitted up to its deadline, with each lock resolved by the secret registry (revealed at or before
  its expiry: to the receiver; else back to the sender), unless the closer was proven to have revoked the
  state it closed with, in which case the other participant got the whole channel.

Examples: ``PAYCHAN_FUZZ_EXAMPLES`` (default 50, the CI number) of up to ``PAYCHAN_FUZZ_STEPS`` (default
16) steps each; the chain is snapshotted before and reverted after each example. Without the variable the
examples are derandomized (the same in every CI run); with it, hypothesis explores new ones. Transactions
pass ``gas`` explicitly (no estimation). The outcome counts are printed at the end (``pytest -s``), and a
default run must reach every outcome that matters (successful and refused closes, challenges, settlements,
lock payouts both ways, penalties and withdrawals). A few rules are stories of several transactions (a
dispute with its proofs and settlement, locks from close to settle, a withdrawal and its bad twins) so that
these outcomes are reached in few steps; the derandomized examples follow the machine's code, so an edit
can move what the default run reaches, and the check then names what is missing. They follow nothing else:
hypothesis would also draw literals from the source of every module loaded in the process (so importing
``paychan.cli`` first changed them), and ``module_constants_left_out`` keeps those out; the second test
compares the first examples' histories in fresh interpreters with and without every ``paychan`` module
imported, and in the session's own process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode
from hexbytes import HexBytes
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from paychan.chain import Chain, embedded_chain
from paychan.contract import STATUS_CLOSING, STATUS_NONE, STATUS_OPEN, RecordedState, onchain_channel
from paychan.exceptions import (
    BalancesNotConserved,
    ChallengePeriodActive,
    ChallengePeriodOver,
    ChannelNotClosing,
    ChannelNotOpen,
    ChannelPenalized,
    ContractCustomError,
    FinalStateHasLocks,
    InvalidChallengePeriod,
    InvalidCounterparty,
    InvalidSignature,
    LocksMismatch,
    NothingToClaim,
    NotParticipant,
    NotRevoked,
    PayoutFailed,
    RecordMismatch,
    StaleState,
    StaleWithdrawal,
    StateNotFinal,
    TokenTransferFailed,
    UnknownDeposit,
    WithdrawalCountMismatch,
    WithdrawalExpired,
    WithdrawalTooLarge,
    ZeroDeposit,
)
from paychan.signing import sign_message, sign_state
from paychan.state import (
    EMPTY_SIGNATURE,
    ETH,
    ZERO_ROOT,
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
    locks_root,
)

from .conftest import deploy_test_contract, record_salt
from .model_v2_helpers import (
    ModelContract,
    computed_root,
    module_constants_left_out,
    packed,
    resolve_locks,
    withdrawal_leaves,
)

EXAMPLES = int(os.environ.get("PAYCHAN_FUZZ_EXAMPLES", "50"))
# Plain `pytest` (CI) replays the same examples every run; a chosen number explores new ones.
DERANDOMIZE = "PAYCHAN_FUZZ_EXAMPLES" not in os.environ
STEPS = int(os.environ.get("PAYCHAN_FUZZ_STEPS", "16"))
GAS = 600_000
ZERO = "0x0000000000000000000000000000000000000000"
MIN_PERIOD, MAX_PERIOD = 3600, 30 * 24 * 3600
TOKEN_MINT = 5 * 10**18  # small enough that deposits run out and `TokenTransferFailed` is reachable
UNIT = 10**17
LIVE_CHANNELS = 2  # open or closing channels at once: more steps go to what happens to a channel
MAX_MODEL_LOCKS = 4  # pending locks per channel the model adds (the contract has no bound; settle cost grows)

OUTCOMES: Counter[str] = Counter()  # how often each call ended how, over the whole run
SDK_RECORD_CHECKS = 3  # records compared with `recorded_state` (about a second each on eth-tester)

amounts = st.one_of(st.integers(0, 30).map(lambda n: n * UNIT), st.integers(0, 3 * 10**18))
indexes = st.integers(0, 10**6)
# Channel picks: mostly (>= 0) a channel in the state the rule needs, sometimes (< 0) any channel.
picks = st.tuples(st.integers(0, 7), st.integers(0, 10**6)).map(lambda t: -t[1] - 1 if t[0] == 7 else t[1])
rarely = st.sampled_from([False] * 7 + [True])
roles = st.sampled_from(["A", "B"] * 3 + ["other"])
sides = st.sampled_from(["A", "B"])
percents = st.integers(0, 100)


@dataclass
class ModelState:
    """A doubly-signed (or forged) state the model knows about, with who really signed it and its locks."""

    signed: SignedState
    signer_a: str
    signer_b: str
    locks: tuple[Lock, ...] = ()

    @property
    def state(self) -> ChannelState:
        return self.signed.state


@dataclass
class ModelRevocation:
    """A signed ``Revocation(channelId, belowNonce)`` and who really signed it."""

    signer: str
    below: int
    signature: Signature


@dataclass
class ModelWithdrawal:
    withdrawal: Withdrawal
    sig_a: Signature
    sig_b: Signature


@dataclass
class ModelChannel:
    """The model of one channel: status, deposits, counter, off-chain view and states, and once closing
    the record (with the recorded state's lock list), the closer and whether it was proven a cheater."""

    params: ChannelParams
    cid: bytes
    status: int = STATUS_OPEN
    deposit_a: int = 0
    deposit_b: int = 0
    withdrawals: int = 0
    # The participants' agreed view of the current deposits: free balances and pending locks.
    view_a: int = 0
    view_b: int = 0
    view_locks: tuple[Lock, ...] = ()
    states: list[ModelState] = field(default_factory=list)
    revocations: list[ModelRevocation] = field(default_factory=list)
    done_withdrawals: list[ModelWithdrawal] = field(default_factory=list)
    record: RecordedState | None = None
    record_locks: tuple[Lock, ...] = ()
    closer: str = ""  # "A" or "B" once closing
    penalized: bool = False
    submitted: list[tuple[int, int, tuple[int, int, int, int, bytes], tuple[Lock, ...]]] = field(default_factory=list)
    # Money ledger: what went in, what left by withdrawals and by payouts (pushed or owed).
    deposited: int = 0
    withdrawn: int = 0
    paid: int = 0

    @property
    def total(self) -> int:
        return self.deposit_a + self.deposit_b

    def held(self) -> int:
        if self.status == STATUS_OPEN:
            return self.total
        if self.status == STATUS_CLOSING:
            r = self.record
            assert r is not None
            return r.balance_a + r.balance_b + r.locked_a + r.locked_b
        return 0

    def role_address(self, role: str) -> str:
        return self.params.participant_a if role == "A" else self.params.participant_b

    @property
    def next_nonce(self) -> int:
        return len(self.states) + 1


class World:
    """What stays the same across examples: the chain, the contract, the token and the actors."""

    def __init__(self, chain: Chain, contract: ModelContract, token: Any) -> None:
        self.chain = chain
        self.contract = contract
        self.token = token
        self.actors = chain.accounts[1:5]  # alice, bob, carol: participants; dave: a third party
        self.keys = {a.address: a.key for a in self.actors}
        self._calldata: dict[tuple[Any, ...], str] = {}

    def calldata(self, target: Any, name: str, *args: Any) -> str:
        """The (cached) calldata of a view the model calls after every step."""
        key = (target.address, name, *args)
        if key not in self._calldata:
            self._calldata[key] = target.encode_abi(name, args=list(args))
        return self._calldata[key]


class ChannelMachine(RuleBasedStateMachine):
    world: World
    history: Any  # a sha256 of every example's draws and outcomes, in order (``run_the_model`` sets both)

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.chain, self.k, self.token = w.chain, w.contract, w.token
        self.snapshot = self.chain.snapshot()
        self.assets = (ETH, self.token.address)
        self.channels: list[ModelChannel] = []
        self.balances = {
            (a.address, asset): self._chain_balance(a.address, asset) for a in w.actors for asset in self.assets
        }
        self.owed: dict[tuple[str, str], int] = {}
        self.blocked: set[str] = set()
        self.next_number = int(self.k.contract.functions.nextChannelNumber().call())
        self.secrets: dict[bytes, bytes] = {}  # hashlock -> secret, of every lock the model made
        self.revealed: dict[bytes, int] = {}  # the secret registry: hashlock -> first reveal's timestamp
        self.touched: list[ModelChannel] = []
        self.involved: set[str] = set()
        self.touched_hashlocks: set[bytes] = set()
        self.touched_assets: set[str] = set()

    def teardown(self) -> None:
        self.chain.revert(self.snapshot)
        # The example's history: every choice hypothesis made for it (rules and their arguments), and the
        # outcomes reached so far (both the same in every run of the same examples; the chain's block
        # hashes and the records' salts are not: the genesis block carries the wall clock).
        choices = current_build_context().data.choices
        self.history.update(repr((choices, sorted(OUTCOMES.items()))).encode())

    # --- chain access --------------------------------------------------------------------------

    def _pending_timestamp(self) -> int:
        return int(self.chain.tester.get_block_by_number("pending")["timestamp"])

    def _view(self, to: str, data: str) -> bytes:
        """A view call straight to eth-tester (a web3 call costs several times more; the model makes many)."""
        tx = {"from": self.chain.accounts[0].address, "to": to, "data": data, "gas": 1_000_000}
        return bytes(HexBytes(self.chain.tester.call(tx)))

    def _chain_balance(self, address: str, asset: str) -> int:
        if asset == ETH:
            return int(self.chain.tester.get_balance(address))
        data = self.world.calldata(self.token, "balanceOf", address)
        return int(decode(["uint256"], self._view(asset, data))[0])

    def _chain_owed(self, address: str, asset: str) -> int:
        """``owed(address, asset)``, the contract's public getter."""
        data = self.world.calldata(self.k.contract, "owed", address, asset)
        return int(decode(["uint256"], self._view(self.k.address, data))[0])

    def _send(self, sender: Any, name: str, expect: ContractCustomError | None, call: Callable[[], Any]) -> Any:
        """Runs the SDK ``call`` (one transaction from ``sender``); it must revert with exactly ``expect``
        (or succeed when None). Charges the gas to the sender; returns the SDK's result on success."""
        timestamp = self._pending_timestamp()
        got: ContractCustomError | None = None
        result = None
        self.k.expect_revert = expect is not None
        try:
            result = call()
        except ContractCustomError as exc:
            got = exc
        finally:
            self.k.expect_revert = False
        receipt = self.k.last_receipt
        assert receipt is not None and receipt["from"] == sender.address, f"{name}: no transaction was sent"
        assert int(self.chain.tester.get_block_by_number(receipt["blockNumber"])["timestamp"]) == timestamp
        self.balances[(sender.address, ETH)] -= int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        self.involved.add(sender.address)
        self.touched_assets.update(c.params.asset for c in self.touched)
        OUTCOMES[f"{name}: {type(expect).__name__ if expect else 'ok'}"] += 1
        if expect is None:
            assert got is None, f"{name} reverted with {got!r}; the model expected success"
            return result
        assert got is not None, f"{name} succeeded; the model expected {expect!r}"
        assert got == expect, f"{name} reverted with {got!r}; the model expected {expect!r}"
        return None

    def _pay(self, ch: ModelChannel, to: str, amount: int) -> None:
        if amount == 0:
            return
        asset = ch.params.asset
        self.involved.add(to)
        self.touched_assets.add(asset)
        if asset != ETH and to in self.blocked:
            self.owed[(to, asset)] = self.owed.get((to, asset), 0) + amount
        else:
            self.balances[(to, asset)] = self.balances.get((to, asset), 0) + amount

    def _travel(self, to: int) -> int:
        """Makes the next block (at least) ``to``; returns the next block's timestamp."""
        pending = self._pending_timestamp()
        if to > pending:
            self.chain.tester.time_travel(to)
            return to
        return pending

    def _wait(self, ch: ModelChannel, until: str) -> int:
        """Travels to ``ch``'s deadline second (or the one after) when asked; returns the next block's time."""
        if ch.status == STATUS_CLOSING and ch.record is not None and until != "no":
            return self._travel(ch.record.deadline + (1 if until == "deadline+1" else 0))
        return self._pending_timestamp()

    def _pick(self, index: int, status: int | None = None, need_states: bool = False) -> ModelChannel:
        """A channel, mostly one in ``status`` (a negative ``index``, or when there is none: any channel)."""
        pool = [c for c in self.channels if c.states or not need_states]
        preferred = [c for c in pool if c.status == status]
        if preferred and index >= 0:
            pool = preferred
        channel = pool[abs(index) % len(pool)]
        self.touched.append(channel)
        return channel

    @staticmethod
    def _state_of(ch: ModelChannel, which: int) -> ModelState:
        """Mostly the latest state (``which`` even), else any."""
        return ch.states[-1] if which % 2 == 0 else ch.states[(which // 2) % len(ch.states)]

    def _actor(self, index: int) -> Any:
        return self.world.actors[index % len(self.world.actors)]

    def _account(self, address: str) -> Any:
        return next(a for a in self.world.actors if a.address == address)

    def _role(self, ch: ModelChannel, who: str) -> Any:
        """Participant A or B of ``ch``, or ``"other"``: an actor who is neither."""
        params = ch.params
        address = {"A": params.participant_a, "B": params.participant_b}.get(who)
        return next(
            a
            for a in self.world.actors
            if (a.address == address if address else a.address not in (params.participant_a, params.participant_b))
        )

    def _outsider(self, ch: ModelChannel) -> str:
        return str(self._role(ch, "other").address)

    # --- the contract's rules, as the model states them ---------------------------------------

    def _state_error(self, ch: ModelChannel, ms: ModelState) -> ContractCustomError | None:
        """The contract's rule for a signed state: signed under the channel's withdrawal counter, it splits
        at most the channel's deposits per side (final once it is closing), its balances and locked totals
        sum to the deposits it splits, a final state has no locks, and both signed it."""
        s = ms.state
        if s.withdrawals != ch.withdrawals:
            return WithdrawalCountMismatch(s.withdrawals, ch.withdrawals)
        if s.deposit_a > ch.deposit_a or s.deposit_b > ch.deposit_b:
            return UnknownDeposit(s.deposit_a, s.deposit_b, ch.deposit_a, ch.deposit_b)
        total = s.deposit_a + s.deposit_b
        left = total
        conserved = True
        for part in (s.balance_a, s.locked_a, s.locked_b):
            conserved = conserved and part <= left
            left -= part if conserved else 0
        if not conserved or s.balance_b != left:
            return BalancesNotConserved(s.balance_a, s.balance_b, total)
        if s.is_final and (s.locked_a or s.locked_b or s.locks_root != ZERO_ROOT):
            return FinalStateHasLocks(s.locked_a, s.locked_b, s.locks_root)
        if ms.signer_a != ch.params.participant_a:
            return InvalidSignature(ch.params.participant_a, ms.signer_a)
        if ms.signer_b != ch.params.participant_b:
            return InvalidSignature(ch.params.participant_b, ms.signer_b)
        return None

    def _record_of(self, ch: ModelChannel, ms: ModelState | None, deadline: int, closer_nonce: int) -> RecordedState:
        """The record a close or challenge with ``ms`` (None: no state) writes, salt still unknown."""
        if ms is None:
            return RecordedState(
                0, ch.deposit_a, ch.deposit_b, deadline, ch.deposit_a, ch.deposit_b, 0, withdrawals=ch.withdrawals
            )
        s = ms.state
        return RecordedState(
            s.nonce,
            s.balance_a + ch.deposit_a - s.deposit_a,
            s.balance_b + ch.deposit_b - s.deposit_b,
            deadline,
            ch.deposit_a,
            ch.deposit_b,
            0,
            locked_a=s.locked_a,
            locked_b=s.locked_b,
            locks_root=s.locks_root,
            withdrawals=ch.withdrawals,
            closer_nonce=closer_nonce,
        )

    def _recorded_with_salt(self, record: RecordedState, receipt: Any) -> RecordedState:
        """``record`` with the salt its recording block drew (unknowable before it: from the receipt)."""
        return replace(record, salt=record_salt(self.k, receipt))

    def _settle_model(self, ch: ModelChannel, payout_a: int, payout_b: int) -> None:
        ch.status = STATUS_NONE
        self._pay(ch, ch.params.participant_a, payout_a)
        self._pay(ch, ch.params.participant_b, payout_b)
        ch.paid += payout_a + payout_b

    # --- off-chain signing ---------------------------------------------------------------------

    def _sign_state(
        self,
        ch: ModelChannel,
        balances: tuple[int, int],
        locks: tuple[Lock, ...],
        final: bool,
        deposits: tuple[int, int] | None = None,
        withdrawals: int | None = None,
        signers: tuple[str, str] | None = None,
        locked: tuple[int, int] | None = None,
    ) -> ModelState:
        locked_a, locked_b = locked or (
            sum(x.amount for x in locks if x.sender == "A"),
            sum(x.amount for x in locks if x.sender == "B"),
        )
        dep_a, dep_b = deposits or (ch.deposit_a, ch.deposit_b)
        state = ChannelState(
            ch.cid,
            Nonce(ch.next_nonce),
            Wei(balances[0]),
            Wei(balances[1]),
            locks_root(list(locks)),
            final,
            deposit_a=Wei(dep_a),
            deposit_b=Wei(dep_b),
            locked_a=Wei(locked_a),
            locked_b=Wei(locked_b),
            withdrawals=ch.withdrawals if withdrawals is None else withdrawals,
        )
        signer_a, signer_b = signers or (ch.params.participant_a, ch.params.participant_b)
        keys = self.world.keys
        domain = self.k.domain
        signed = SignedState(
            state, sign_state(domain, state, keys[signer_a]), sign_state(domain, state, keys[signer_b])
        )
        ms = ModelState(signed, signer_a, signer_b, locks)
        ch.states.append(ms)
        return ms

    def _resolve_view_lock(self, ch: ModelChannel, pay_receiver: bool) -> None:
        """Off chain, the first pending lock is settled (the receiver showed the secret) or taken back."""
        lock, *rest = ch.view_locks
        to_a = (lock.sender == "B") == pay_receiver
        if to_a:
            ch.view_a += lock.amount
        else:
            ch.view_b += lock.amount
        ch.view_locks = tuple(rest)

    def _sign(self, ch: ModelChannel, share: int, final: bool, forgery: str, locks: str = "keep") -> None:
        """Both sign the next state of the agreed view (a payment: the free balance split by ``share``),
        after settling or taking back a lock off chain when asked; or a forgery is made (the view stays)."""
        assert ch.view_a + ch.view_b + sum(x.amount for x in ch.view_locks) == ch.total
        if forgery == "none":
            if locks in ("pay", "return") and ch.view_locks:
                self._resolve_view_lock(ch, locks == "pay")
            while final and ch.view_locks:  # a final state pays balances only: every lock is resolved first
                self._resolve_view_lock(ch, share % 2 == 0)
            free = ch.view_a + ch.view_b
            ch.view_a = free * share // 100
            ch.view_b = free - ch.view_a
            self._sign_state(ch, (ch.view_a, ch.view_b), ch.view_locks, final)
            return
        free = ch.view_a + ch.view_b
        balance_a = free * share // 100
        balances = (balance_a, free - balance_a)
        a = ch.params.participant_a
        if forgery == "third party":
            self._sign_state(ch, balances, ch.view_locks, final, signers=(a, self._outsider(ch)))
        elif forgery == "one party":
            self._sign_state(ch, balances, ch.view_locks, final, signers=(a, a))
        elif forgery == "not conserved":
            self._sign_state(ch, (balances[0], balances[1] + 1), ch.view_locks, final)
        elif forgery == "unknown deposit":
            self._sign_state(ch, (balances[0] + 1, balances[1]), ch.view_locks, final, (ch.deposit_a + 1, ch.deposit_b))
        elif forgery == "final with locks":  # the view's locks, or one of nothing
            dummy = Lock("A", 0, self._pending_timestamp() + 60, hashlib.sha256(b"final").digest())
            self._sign_state(ch, balances, ch.view_locks or (dummy,), True)
        elif forgery == "locked totals off":  # the root commits to the locks, the totals say one more
            locked_a = sum(x.amount for x in ch.view_locks if x.sender == "A")
            locked_b = sum(x.amount for x in ch.view_locks if x.sender == "B")
            self._sign_state(ch, balances, ch.view_locks, final, locked=(locked_a + 1, locked_b))
        elif forgery == "future counter":
            self._sign_state(ch, balances, ch.view_locks, final, withdrawals=ch.withdrawals + 1)
        else:
            raise AssertionError(forgery)

    # --- rules: open, deposit, sign ------------------------------------------------------------

    @precondition(lambda self: sum(c.status != STATUS_NONE for c in self.channels) < LIVE_CHANNELS)
    @rule(
        opener=indexes,
        counterparty=st.sampled_from([1, 2, 3] * 4 + ["self", "zero"]),
        asset=st.sampled_from([0, 1]),
        period=st.sampled_from([MIN_PERIOD] * 6 + [2 * MIN_PERIOD] * 6 + [MIN_PERIOD - 1, MAX_PERIOD + 1]),
        amount=amounts,
    )
    def open(self, opener: int, counterparty: int | str, asset: int, period: int, amount: int) -> None:
        sender = self.world.actors[opener % 3]  # alice, bob or carol; the counterparty may be dave
        if isinstance(counterparty, int):
            other = self.world.actors[(opener % 3 + counterparty) % 4].address
        else:
            other = sender.address if counterparty == "self" else ZERO
        token = self.assets[asset]
        self.touched_assets.add(token)
        expect: ContractCustomError | None = None
        if other in (ZERO, sender.address):
            expect = InvalidCounterparty(other)
        elif not MIN_PERIOD <= period <= MAX_PERIOD:
            expect = InvalidChallengePeriod(period, MIN_PERIOD, MAX_PERIOD)
        elif token != ETH and amount > self.balances[(sender.address, token)]:
            expect = TokenTransferFailed(token, sender.address, amount)
        result = self._send(
            sender,
            "open",
            expect,
            lambda: self.k.open_channel(sender, other, amount, asset=token, challenge_period=period, gas=GAS),
        )
        if result is None:
            return
        params = ChannelParams(sender.address, other, token, period, self.next_number)
        assert result[0] == params
        self.next_number += 1
        ch = ModelChannel(params, channel_id(params, self.chain.chain_id, self.k.address), deposit_a=amount)
        ch.view_a = ch.deposited = amount
        self.balances[(sender.address, token)] -= amount
        self.channels.append(ch)
        self.touched.append(ch)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(index=picks, depositor=indexes, who=st.sampled_from(["A", "B"] * 3 + ["other"]), amount=amounts, bogus=rarely)
    def deposit(self, index: int, depositor: int, who: str, amount: int, bogus: bool) -> None:
        ch = self._pick(index, STATUS_OPEN)
        sender = self._actor(depositor)
        params = ch.params
        if bogus:  # parameters of a channel that was never opened
            params = replace(params, number=params.number + 10**6)
        cid = channel_id(params, self.chain.chain_id, self.k.address)
        participant = {"A": params.participant_a, "B": params.participant_b, "other": self._outsider(ch)}[who]
        token = params.asset
        expect: ContractCustomError | None = None
        if bogus or ch.status != STATUS_OPEN:
            expect = ChannelNotOpen(cid)
        elif who == "other":
            expect = NotParticipant(cid, participant)
        elif amount == 0:
            expect = ZeroDeposit()
        elif token != ETH and amount > self.balances[(sender.address, token)]:
            expect = TokenTransferFailed(token, sender.address, amount)
        if self._send(sender, "deposit", expect, lambda: self.k.deposit(sender, params, participant, amount, gas=GAS)):
            self.balances[(sender.address, token)] -= amount
            ch.deposited += amount
            if who == "A":
                ch.deposit_a += amount
                ch.view_a += amount
            else:
                ch.deposit_b += amount
                ch.view_b += amount

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=indexes,
        share=percents,
        final=rarely,
        forgery=st.sampled_from(
            ["none"] * 10
            + ["third party", "one party", "not conserved", "unknown deposit"]
            + ["final with locks", "locked totals off", "future counter"]
        ),
        locks=st.sampled_from(["keep"] * 4 + ["pay", "return"]),
    )
    def sign(self, index: int, share: int, final: bool, forgery: str, locks: str) -> None:
        """Off chain: both participants sign the next state (or a forgery is made); no transaction."""
        open_channels = [c for c in self.channels if c.status == STATUS_OPEN]
        self._sign(open_channels[index % len(open_channels)], share, final, forgery, locks)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=indexes,
        sender=sides,
        share=percents,
        expiry=st.sampled_from(["minute", "half period", "period-1", "period+1", "past"]),
        secret=st.one_of(st.binary(min_size=32, max_size=32), st.none()),
    )
    def add_lock(self, index: int, sender: str, share: int, expiry: str, secret: bytes | None) -> None:
        """Off chain: ``sender`` locks part of its balance towards the other side under a SHA-256 hashlock
        (a fresh secret, or with None one another lock already uses: the registry is contract-wide)."""
        open_channels = [c for c in self.channels if c.status == STATUS_OPEN]
        ch = open_channels[index % len(open_channels)]
        if len(ch.view_locks) >= MAX_MODEL_LOCKS:
            return
        if secret is None:
            if not self.secrets:
                return
            secret = sorted(self.secrets.values())[share % len(self.secrets)]
        self._add_lock(ch, sender, share, expiry, secret)

    def _add_lock(self, ch: ModelChannel, sender: str, share: int, expiry: str, secret: bytes) -> Lock:
        hashlock = hashlib.sha256(secret).digest()
        self.secrets[hashlock] = secret
        now = self._pending_timestamp()
        period = ch.params.challenge_period
        at = {
            "minute": now + 60,
            "half period": now + period // 2,
            "period-1": now + period - 1,
            "period+1": now + period + 1,
            "past": now - 1,
        }[expiry]
        balance = ch.view_a if sender == "A" else ch.view_b
        amount = balance * share // 100
        if sender == "A":
            ch.view_a -= amount
        else:
            ch.view_b -= amount
        lock = Lock(sender, amount, at, hashlock)
        ch.view_locks = (*ch.view_locks, lock)
        self._sign_state(ch, (ch.view_a, ch.view_b), ch.view_locks, False)
        return lock

    @precondition(lambda self: any(c.status != STATUS_NONE for c in self.channels))
    @rule(index=indexes, role=sides, below=st.one_of(st.none(), st.integers(0, 12)))
    def revoke(self, index: int, role: str, below: int | None) -> None:
        """Off chain: a participant revokes every nonce below its latest state's (or below any number)."""
        live = [c for c in self.channels if c.status != STATUS_NONE]
        ch = live[index % len(live)]
        below_nonce = len(ch.states) if below is None else below
        signer = ch.role_address(role)
        signature = sign_message(self.k.domain, Revocation(ch.cid, below_nonce), self.world.keys[signer])
        ch.revocations.append(ModelRevocation(signer, below_nonce, signature))

    # --- rules: withdraw while open ------------------------------------------------------------

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=picks,
        share_a=percents,
        share_b=percents,
        submitter=indexes,
        variant=st.sampled_from(
            ["honest"] * 6
            + ["at expiry", "expired", "wrong counter", "too large", "unknown deposit", "one party"]
            + ["replay"] * 2
        ),
    )
    def withdraw(self, index: int, share_a: int, share_b: int, submitter: int, variant: str) -> None:
        """Both sign a withdrawal of part of their balances with the next state (lowered deposits, next
        counter, the locks kept); anyone submits it. Or an old one is replayed, or a bad one is made."""
        self._withdraw(self._pick(index, STATUS_OPEN), self._actor(submitter), variant, share_a, share_b)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=indexes,
        share_a=percents,
        share_b=percents,
        submitter=indexes,
        then=st.lists(
            st.sampled_from(["replay", "expired", "wrong counter", "one party"]), min_size=1, max_size=4, unique=True
        ),
        stale=indexes,
        closer=sides,
        end=st.sampled_from(["cooperative close", "stay open"]),
    )
    def withdraw_story(
        self,
        index: int,
        share_a: int,
        share_b: int,
        submitter: int,
        then: list[str],
        stale: int,
        closer: str,
        end: str,
    ) -> None:
        """A withdrawal is made (after a payment, if no state was signed under the current counter); then a
        few bad ones are submitted (the same again, an expired one, one for another counter, one signed by
        one party), one side tries to close with a state from before it (refused), and maybe both then close
        cooperatively with a final state signed under the new counter."""
        open_channels = [c for c in self.channels if c.status == STATUS_OPEN]
        ch = open_channels[index % len(open_channels)]
        self.touched.append(ch)
        sender = self._actor(submitter)
        before = [ms for ms in ch.states if ms.state.withdrawals == ch.withdrawals]
        if not before:  # a payment first, so that there is a state from before the withdrawal
            self._sign(ch, share_a, False, "none")
            before = [ch.states[-1]]
        self._withdraw(ch, sender, "honest", share_a, share_b)
        for variant in then:
            self._withdraw(ch, sender, variant, share_b, share_a)
        self._close(ch, self._role(ch, closer), before[stale % len(before)])
        if end == "cooperative close" and ch.status == STATUS_OPEN:
            self._sign(ch, share_a, True, "none")
            self._cooperative_close(ch, ch.states[-1], sender)

    def _withdraw(self, ch: ModelChannel, sender: Any, variant: str, share_a: int, share_b: int) -> None:
        now = self._pending_timestamp()
        if variant == "replay":
            if not ch.done_withdrawals:
                return
            mw = ch.done_withdrawals[-1 - share_a % len(ch.done_withdrawals)]
        else:
            amount_a, amount_b = ch.view_a * share_a // 100, ch.view_b * share_b // 100
            named = (ch.deposit_a + (variant == "unknown deposit"), ch.deposit_b)
            if variant == "too large":
                amount_a = named[0] + named[1] - amount_b + 1
            w = Withdrawal(
                ch.cid,
                amount_a,
                amount_b,
                *named,
                ch.withdrawals + (variant == "wrong counter"),
                now + {"expired": -1, "at expiry": 0}.get(variant, 600),
            )
            keys = self.world.keys
            key_b = keys[ch.params.participant_a if variant == "one party" else ch.params.participant_b]
            mw = ModelWithdrawal(
                w,
                sign_message(self.k.domain, w, keys[ch.params.participant_a]),
                sign_message(self.k.domain, w, key_b),
            )
            if ch.status == STATUS_OPEN and variant != "too large":
                # the state signed with it: the view less the amounts, the deposits it leaves, the next counter
                left = withdrawal_leaves(*named, amount_a, amount_b)
                balances = (ch.view_a - amount_a, ch.view_b - amount_b)
                self._sign_state(ch, balances, ch.view_locks, False, deposits=left, withdrawals=w.withdrawals + 1)
        w = mw.withdrawal
        expect: ContractCustomError | None = None
        if ch.status != STATUS_OPEN:
            expect = ChannelNotOpen(ch.cid)
        elif w.withdrawals != ch.withdrawals:
            expect = StaleWithdrawal(w.withdrawals, ch.withdrawals)
        elif now > w.expiry:
            expect = WithdrawalExpired(w.expiry, now)
        elif w.deposit_a > ch.deposit_a or w.deposit_b > ch.deposit_b:
            expect = UnknownDeposit(w.deposit_a, w.deposit_b, ch.deposit_a, ch.deposit_b)
        elif w.amount_a + w.amount_b > w.deposit_a + w.deposit_b:
            expect = WithdrawalTooLarge(w.amount_a, w.amount_b, w.deposit_a + w.deposit_b)
        elif variant == "one party":
            expect = InvalidSignature(ch.params.participant_b, ch.params.participant_a)
        receipt = self._send(
            sender, "withdraw", expect, lambda: self.k.withdraw(sender, ch.params, w, mw.sig_a, mw.sig_b, gas=GAS)
        )
        if receipt is None:
            return
        left_a, left_b = withdrawal_leaves(w.deposit_a, w.deposit_b, w.amount_a, w.amount_b)
        ch.deposit_a -= w.deposit_a - left_a
        ch.deposit_b -= w.deposit_b - left_b
        ch.withdrawals += 1
        ch.view_a -= w.amount_a
        ch.view_b -= w.amount_b
        ch.withdrawn += w.amount_a + w.amount_b
        ch.done_withdrawals.append(mw)
        self._pay(ch, ch.params.participant_a, w.amount_a)
        self._pay(ch, ch.params.participant_b, w.amount_b)

    # --- rules: cooperative and unilateral close -----------------------------------------------

    @precondition(lambda self: any(c.states and c.status == STATUS_OPEN for c in self.channels))
    @rule(index=picks, which=indexes, submitter=indexes, fresh=st.sampled_from([True, True, False]), share=percents)
    def cooperative_close(self, index: int, which: int, submitter: int, fresh: bool, share: int) -> None:
        """Submits a state (mostly the latest); with ``fresh``, both first sign a final one, as when closing."""
        ch = self._pick(index, STATUS_OPEN, need_states=True)
        if fresh and ch.status == STATUS_OPEN:
            self._sign(ch, share, True, "none")
        self._cooperative_close(ch, self._state_of(ch, which), self._actor(submitter))

    def _cooperative_close(self, ch: ModelChannel, ms: ModelState, sender: Any) -> None:
        expect: ContractCustomError | None = None
        if ch.status != STATUS_OPEN:
            expect = ChannelNotOpen(ch.cid)
        elif not ms.state.is_final:
            expect = StateNotFinal(ms.state.nonce)
        else:
            expect = self._state_error(ch, ms)
        if self._send(
            sender, "cooperativeClose", expect, lambda: self.k.cooperative_close(sender, ch.params, ms.signed, gas=GAS)
        ):
            self._settle_model(ch, *ms.state.payouts(ch.deposit_a, ch.deposit_b))

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(index=picks, closer=roles, which=st.one_of(indexes, indexes, indexes, st.none()))
    def close(self, index: int, closer: str, which: int | None) -> None:
        ch = self._pick(index, STATUS_OPEN)
        self._close(ch, self._role(ch, closer), self._state_of(ch, which) if which is not None and ch.states else None)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=picks,
        closer=roles,
        forgeries=st.lists(
            st.sampled_from(["not conserved", "unknown deposit", "final with locks", "future counter"]),
            min_size=2,
            max_size=4,
            unique=True,
        ),
        share=percents,
    )
    def close_with_a_bad_state(self, index: int, closer: str, forgeries: list[str], share: int) -> None:
        """Both sign a state that does not add up, splits a deposit never made, is final with locks or names
        a withdrawal never made; one closes with it (for each of a few such states)."""
        ch = self._pick(index, STATUS_OPEN)
        for forgery in forgeries if ch.status == STATUS_OPEN else forgeries[:1]:
            if ch.status == STATUS_OPEN:
                self._sign(ch, share, False, forgery)
            if ch.states:
                self._close(ch, self._role(ch, closer), ch.states[-1])

    def _close(self, ch: ModelChannel, sender: Any, ms: ModelState | None) -> None:
        timestamp = self._pending_timestamp()
        expect: ContractCustomError | None = None
        if sender.address not in (ch.params.participant_a, ch.params.participant_b):
            expect = NotParticipant(ch.cid, sender.address)
        elif ch.status != STATUS_OPEN:
            expect = ChannelNotOpen(ch.cid)
        elif ms is not None:
            expect = self._state_error(ch, ms)
        name = "close" if ms else "closeWithoutState"
        if isinstance(expect, WithdrawalCountMismatch) and expect.stateWithdrawals < expect.channelWithdrawals:
            OUTCOMES["close: a state from before a withdrawal, refused"] += 1
        signed = ms.signed if ms else None
        receipt = self._send(sender, name, expect, lambda: self.k.close(sender, ch.params, signed, gas=GAS))
        if receipt is None:
            return
        nonce = ms.state.nonce if ms else 0
        record = self._record_of(ch, ms, timestamp + ch.params.challenge_period, nonce)
        ch.record = self._recorded_with_salt(record, receipt)
        ch.record_locks = ms.locks if ms else ()
        ch.status = STATUS_CLOSING
        ch.closer = ch.params.role_of(sender.address)
        ch.submitted.append((timestamp, nonce, self._record_key(ch.record), ch.record_locks))

    @staticmethod
    def _record_key(r: RecordedState) -> tuple[int, int, int, int, bytes]:
        return (r.balance_a, r.balance_b, r.locked_a, r.locked_b, r.locks_root)

    # --- rules: dispute ------------------------------------------------------------------------

    @precondition(lambda self: any(c.states and c.status == STATUS_CLOSING for c in self.channels))
    @rule(
        index=picks,
        which=indexes,
        challenger=indexes,
        wrong_record=rarely,
        wait=st.sampled_from(["no"] * 6 + ["deadline", "deadline+1"]),
    )
    def challenge(self, index: int, which: int, challenger: int, wrong_record: bool, wait: str) -> None:
        ch = self._pick(index, STATUS_CLOSING, need_states=True)
        self._challenge(ch, self._state_of(ch, which), self._actor(challenger), wrong_record, wait)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=picks,
        closer=sides,
        stale=indexes,
        challenger=st.sampled_from(["the other side"] * 3 + ["the closer", "a third party"]),
        share=percents,
        final=st.sampled_from([True, True, False]),
        proof=st.sampled_from([None, "revoked", "not covering", "wrong party"]),
        prover=indexes,
        settle=st.booleans(),
    )
    def dispute(
        self,
        index: int,
        closer: str,
        stale: int,
        challenger: str,
        share: int,
        final: bool,
        proof: str | None,
        prover: int,
        settle: bool,
    ) -> None:
        """Both sign a new state; then one closes with an older valid state (or none), the latest is submitted
        (a final one pays out at once only from the side that did not close), and then the older one again.
        With ``proof``, the closer had revoked every state below the new one, and that is proven (maybe after
        a proof that does not hold). With ``settle``, the channel is then settled after its deadline."""
        ch = self._pick(index, STATUS_OPEN)
        if ch.status == STATUS_OPEN:
            self._sign(ch, share, final, "none")
        if not ch.states:  # any channel was picked, and none was ever signed for it: nothing to dispute
            return
        newest = ch.states[-1]
        revocation = None
        if proof:
            cheater = ch.role_address(closer)
            below = newest.state.nonce
            signature = sign_message(self.k.domain, Revocation(ch.cid, below), self.world.keys[cheater])
            revocation = ModelRevocation(cheater, below, signature)
            ch.revocations.append(revocation)
        valid = [ms for ms in ch.states[:-1] if self._state_error(ch, ms) is None]
        older = valid[(stale // 3) % len(valid)] if stale % 3 and valid else None
        self._close(ch, self._role(ch, closer), older)
        other = "B" if closer == "A" else "A"
        who = self._role(ch, {"the other side": other, "the closer": closer}.get(challenger, "other"))
        self._challenge(ch, ch.states[-1], who, False, "no")
        if ch.status == STATUS_CLOSING:
            self._challenge(ch, older or ch.states[-1], who, False, "no")
        if revocation is not None:
            self._proofs(ch, closer, newest, revocation, None if proof == "revoked" else proof, prover)
        if settle and ch.status == STATUS_CLOSING:
            self._settle(ch, self._actor(prover), "deadline+1", False, "right")

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=indexes,
        closer=sides,
        stale=indexes,
        share=percents,
        challenge_first=st.booleans(),
        prover=indexes,
        bad_proof=st.sampled_from([None, "not covering", "wrong party"]),
        settle=st.booleans(),
    )
    def cheat(
        self,
        index: int,
        closer: str,
        stale: int,
        share: int,
        challenge_first: bool,
        prover: int,
        bad_proof: str | None,
        settle: bool,
    ) -> None:
        """Both sign a new state and the closer revokes every older one; then it closes with an older valid
        state (or none), the other side maybe challenges with the newest first, maybe a proof that does not
        hold is submitted (a revocation not covering the closer's nonce, or the other side's), and anyone
        proves the revocation. With ``settle``, the channel is then settled after its deadline, and the proof
        submitted again is refused."""
        open_channels = [c for c in self.channels if c.status == STATUS_OPEN]
        ch = open_channels[index % len(open_channels)]
        self.touched.append(ch)
        self._sign(ch, share, False, "none")
        newest = ch.states[-1]
        cheater = ch.role_address(closer)
        below = newest.state.nonce
        signature = sign_message(self.k.domain, Revocation(ch.cid, below), self.world.keys[cheater])
        revocation = ModelRevocation(cheater, below, signature)
        ch.revocations.append(revocation)
        valid = [ms for ms in ch.states[:-1] if self._state_error(ch, ms) is None]
        older = valid[(stale // 3) % len(valid)] if stale % 3 and valid else None
        self._close(ch, self._account(cheater), older)
        if challenge_first:
            self._challenge(ch, newest, self._role(ch, "B" if closer == "A" else "A"), False, "no")
        self._proofs(ch, closer, newest, revocation, bad_proof, prover)
        if settle and ch.status == STATUS_CLOSING:
            self._settle(ch, self._actor(prover), "deadline+1", False, "right")
            self._prove(ch, revocation, self._actor(prover), False)

    def _proofs(
        self,
        ch: ModelChannel,
        closer: str,
        newest: ModelState,
        revocation: ModelRevocation,
        bad_proof: str | None,
        prover: int,
    ) -> None:
        """Maybe a proof that does not hold first, then the closer's revocation; once proven, the other side's
        newest state cannot undo it."""
        if bad_proof and ch.record is not None:
            cheater = ch.role_address(closer)
            signer = cheater if bad_proof == "not covering" else ch.role_address("B" if closer == "A" else "A")
            bad_below = ch.record.closer_nonce if bad_proof == "not covering" else revocation.below
            bad_signature = sign_message(self.k.domain, Revocation(ch.cid, bad_below), self.world.keys[signer])
            bad = ModelRevocation(signer, bad_below, bad_signature)
            ch.revocations.append(bad)
            self._prove(ch, bad, self._actor(prover + 1), False)
        self._prove(ch, revocation, self._actor(prover), False)
        if ch.penalized:  # no state, however new, undoes the proof
            self._challenge(ch, newest, self._role(ch, "B" if closer == "A" else "A"), False, "no")

    def _challenge(self, ch: ModelChannel, ms: ModelState, sender: Any, wrong_record: bool, wait: str) -> None:
        timestamp = self._wait(ch, wait)
        record = ch.record or RecordedState(0, 0, 0, 0, 0, 0, 0)
        passed = replace(record, balance_a=record.balance_a + 1) if wrong_record else record
        expect: ContractCustomError | None = None
        if ch.status != STATUS_CLOSING:
            expect = ChannelNotClosing(ch.cid)
        elif wrong_record:
            expect = RecordMismatch(record.fingerprint(), passed.fingerprint())
        elif ch.penalized:
            expect = ChannelPenalized(ch.cid)
        elif timestamp > record.deadline:
            expect = ChallengePeriodOver(record.deadline, timestamp)
        elif ms.state.nonce <= record.nonce:
            expect = StaleState(ms.state.nonce, record.nonce)
        else:
            expect = self._state_error(ch, ms)
        valid_in_time = (
            ch.status == STATUS_CLOSING
            and not wrong_record
            and not ch.penalized
            and timestamp <= record.deadline
            and self._state_error(ch, ms) is None
        )
        new = self._record_of(ch, ms, record.deadline, record.closer_nonce)
        if valid_in_time:  # a doubly-signed state submitted up to the deadline, accepted or stale
            ch.submitted.append((timestamp, ms.state.nonce, self._record_key(new), ms.locks))
        receipt = self._send(
            sender, "challenge", expect, lambda: self.k.challenge(sender, ch.params, ms.signed, passed, gas=GAS)
        )
        if receipt is not None:
            closer_address = ch.role_address(ch.closer)
            non_closer = ch.role_address("B" if ch.closer == "A" else "A")
            if ms.state.is_final and sender.address == non_closer:  # the dispute ends: paid out at once
                assert sender.address != closer_address
                OUTCOMES["challenge: final state paid at once"] += 1
                self._settle_model(ch, new.balance_a, new.balance_b)
            else:
                if ms.state.is_final:
                    OUTCOMES["challenge: final state recorded (not from the non-closer)"] += 1
                ch.record = self._recorded_with_salt(new, receipt)
                ch.record_locks = ms.locks

    @precondition(lambda self: any(c.status == STATUS_CLOSING for c in self.channels))
    @rule(
        index=picks,
        which=st.one_of(st.none(), indexes),
        role=sides,
        below=st.integers(0, 12),
        prover=indexes,
        wrong_record=rarely,
    )
    def prove_revoked(
        self, index: int, which: int | None, role: str, below: int, prover: int, wrong_record: bool
    ) -> None:
        """Anyone submits a revocation: one a participant signed earlier, or one signed now (by either side,
        covering any nonce), against a channel mostly closing (or settled, or open)."""
        ch = self._pick(index, STATUS_CLOSING)
        if which is not None and ch.revocations:
            revocation = ch.revocations[which % len(ch.revocations)]
        else:
            signer = ch.role_address(role)
            signature = sign_message(self.k.domain, Revocation(ch.cid, below), self.world.keys[signer])
            revocation = ModelRevocation(signer, below, signature)
            ch.revocations.append(revocation)
        self._prove(ch, revocation, self._actor(prover), wrong_record)

    def _prove(self, ch: ModelChannel, revocation: ModelRevocation, sender: Any, wrong_record: bool) -> None:
        record = ch.record or RecordedState(0, 0, 0, 0, 0, 0, 0)
        passed = replace(record, balance_b=record.balance_b + 1) if wrong_record else record
        expect: ContractCustomError | None = None
        if ch.status != STATUS_CLOSING:
            expect = ChannelNotClosing(ch.cid)
        elif wrong_record:
            expect = RecordMismatch(record.fingerprint(), passed.fingerprint())
        elif ch.penalized:
            expect = ChannelPenalized(ch.cid)
        elif revocation.below <= record.closer_nonce:
            expect = NotRevoked(record.closer_nonce, revocation.below)
        elif revocation.signer != ch.role_address(ch.closer):
            expect = InvalidSignature(ch.role_address(ch.closer), revocation.signer)
        if self._send(
            sender,
            "proveRevoked",
            expect,
            lambda: self.k.prove_revoked(sender, ch.params, revocation.below, revocation.signature, passed, gas=GAS),
        ):
            ch.penalized = True

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=indexes,
        locks=st.lists(
            st.tuples(
                sides,
                percents,
                st.sampled_from(["minute", "half period", "period-1", "period+1", "past"]),
                st.sampled_from(["now", "at expiry", "expiry+1", "after the deadline"] + ["never"] * 2),
                st.binary(min_size=32, max_size=32),
            ),
            min_size=2,
            max_size=3,
        ),
        closer=sides,
        lock_list=st.sampled_from(["right"] * 3 + ["reordered", "missing", "extra", "empty", "junk byte"]),
        settler=indexes,
        early=st.booleans(),
    )
    def lock_story(
        self,
        index: int,
        locks: list[tuple[str, int, str, str, bytes]],
        closer: str,
        lock_list: str,
        settler: int,
        early: bool,
    ) -> None:
        """Locks are added, one side closes with the state holding them, their secrets are revealed (now, at
        or after the expiry, after the deadline, or never; those due at once together), and after the
        deadline the channel is settled (first with a wrong lock list, when ``lock_list`` names one; with
        ``early``, also once at once)."""
        open_channels = [c for c in self.channels if c.status == STATUS_OPEN]
        ch = open_channels[index % len(open_channels)]
        self.touched.append(ch)
        plans = []
        for sender, share, expiry, reveal, secret in locks:
            if len(ch.view_locks) < MAX_MODEL_LOCKS:
                lock = self._add_lock(ch, sender, share, expiry, secret)
                plans.append((reveal, lock))
        if not ch.states:
            return
        self._close(ch, self._role(ch, closer), ch.states[-1])
        if ch.status != STATUS_CLOSING or ch.record is None:
            return
        if early:
            self._settle(ch, self._actor(settler), "no", False, "right")
        deadline = ch.record.deadline
        when = {"now": 0, "at expiry": None, "expiry+1": None, "never": None, "after the deadline": deadline + 2}
        timed: dict[int, list[bytes]] = {}  # when -> the secrets revealed then
        for reveal, lock in plans:
            if reveal == "never":
                continue
            at = when[reveal] if reveal in ("now", "after the deadline") else lock.expiry + (reveal == "expiry+1")
            timed.setdefault(at or 0, []).append(self.secrets[lock.hashlock])
        sender = self._actor(settler)
        for at, secrets in sorted(timed.items()):
            # secrets due at once in one `revealSecrets`; a single one by either function
            self._travel(at)
            self._reveal(sender, secrets, len(secrets) > 1 or settler % 2 == 1)
        if lock_list != "right":
            self._settle(ch, sender, "deadline+1", False, lock_list)
        self._settle(ch, sender, "deadline+1", False, "right")

    # --- rules: the secret registry ------------------------------------------------------------

    @precondition(lambda self: self.secrets)
    @rule(
        which=indexes,
        batch=st.sampled_from([0] * 3 + [1, 2, 3]),
        when=st.sampled_from(["now"] * 3 + ["at expiry", "expiry+1"]),
        unknown=rarely,
        revealer=indexes,
    )
    def reveal(self, which: int, batch: int, when: str, unknown: bool, revealer: int) -> None:
        """Anyone reveals a lock's secret (``batch`` 0: ``revealSecret``; else ``revealSecrets`` with that
        many, a repeat included), now or at / after the expiry of a lock holding it; or a secret no lock uses."""
        known = sorted(self.secrets)
        hashlock = known[which % len(known)]
        secret = self.secrets[hashlock]
        if unknown:
            secret = hashlib.sha256(b"no lock " + secret).digest()
        if when != "now":
            expiries = sorted(
                x.expiry for c in self.channels for x in (*c.view_locks, *c.record_locks) if x.hashlock == hashlock
            )
            if expiries:
                self._travel(expiries[which % len(expiries)] + (when == "expiry+1"))
        sender = self._actor(revealer)
        secrets = [secret]
        if batch:  # other locks' secrets, then this one twice: a repeat is skipped, never a revert
            secrets = [self.secrets[known[(which + i) % len(known)]] for i in range(1, batch)] + [secret, secret]
        self._reveal(sender, secrets, batch > 0)

    def _reveal(self, sender: Any, secrets: list[bytes], batch: bool = False) -> None:
        timestamp = self._pending_timestamp()
        if batch:
            self._send(sender, "revealSecrets", None, lambda: self.k.reveal_secrets(sender, secrets, gas=GAS))
        else:
            (secret,) = secrets
            self._send(sender, "revealSecret", None, lambda: self.k.reveal_secret(sender, secret, gas=GAS))
        for s in secrets:
            h = hashlib.sha256(s).digest()
            self.touched_hashlocks.add(h)
            self.revealed.setdefault(h, timestamp)

    # --- rules: settle, claim, tokens, time ----------------------------------------------------

    @precondition(lambda self: any(c.status == STATUS_CLOSING for c in self.channels))
    @rule(
        index=picks,
        settler=indexes,
        wait=st.sampled_from(["no", "deadline", "deadline+1", "deadline+1"]),
        wrong_record=rarely,
        lock_list=st.sampled_from(["right"] * 8 + ["reordered", "missing", "extra", "empty", "junk byte"]),
    )
    def settle(self, index: int, settler: int, wait: str, wrong_record: bool, lock_list: str) -> None:
        self._settle(self._pick(index, STATUS_CLOSING), self._actor(settler), wait, wrong_record, lock_list)

    def _settle(self, ch: ModelChannel, sender: Any, wait: str, wrong_record: bool, lock_list: str) -> None:
        timestamp = self._wait(ch, wait)
        record = ch.record or RecordedState(0, 0, 0, 0, 0, 0, 0)
        passed = replace(record, balance_a=record.balance_a + 1) if wrong_record else record
        locks = list(ch.record_locks)
        extra = Lock("A", 1, timestamp, hashlib.sha256(b"never locked").digest())
        listed = packed(
            {
                "right": locks,
                "reordered": locks[::-1],
                "missing": locks[:-1],
                "extra": [*locks, extra],
                "empty": [],
                "junk byte": locks,
            }[lock_list]
        ) + (b"\x00" if lock_list == "junk byte" else b"")
        expect: ContractCustomError | None = None
        if ch.status != STATUS_CLOSING:
            expect = ChannelNotClosing(ch.cid)
        elif wrong_record:
            expect = RecordMismatch(record.fingerprint(), passed.fingerprint())
        elif timestamp <= record.deadline:
            expect = ChallengePeriodActive(record.deadline, timestamp)
        elif not ch.penalized and computed_root(listed) != record.locks_root:
            expect = LocksMismatch(record.locks_root, computed_root(listed))
        if not self._send(
            sender, "settle", expect, lambda: self.k.settle(sender, ch.params, passed, gas=GAS, locks=listed)
        ):
            return
        total = record.deposit_a + record.deposit_b
        if ch.penalized:
            # The closer was proven to have revoked the state it closed with: the other side gets everything.
            assert any(r.signer == ch.role_address(ch.closer) and r.below > record.closer_nonce for r in ch.revocations)
            payout_a, payout_b = (0, total) if ch.closer == "A" else (total, 0)
            OUTCOMES["settle: the cheater's whole channel to the other side"] += 1
        else:
            # The property: what is paid is the highest-nonce valid state submitted up to the deadline,
            # its locks resolved by the registry.
            best = max((s for s in ch.submitted if s[0] <= record.deadline), key=lambda s: s[1])
            assert (best[1], best[2], best[3]) == (record.nonce, self._record_key(record), ch.record_locks)
            payout_a, payout_b, ends = resolve_locks(*best[2][:4], best[3], self.revealed)
            OUTCOMES.update(ends)
        assert payout_a + payout_b == total
        self._settle_model(ch, payout_a, payout_b)

    @precondition(lambda self: self.owed)
    @rule(claimer=indexes, asset=st.sampled_from([0, 1]))
    def claim(self, claimer: int, asset: int) -> None:
        sender = self._actor(claimer)
        token = self.assets[asset]
        amount = self.owed.get((sender.address, token), 0)
        expect: ContractCustomError | None = None
        if amount == 0:
            expect = NothingToClaim(sender.address, token)
        elif token != ETH and sender.address in self.blocked:
            expect = PayoutFailed(sender.address, token, amount)
        self.touched_assets.add(token)
        if self._send(sender, "claim", expect, lambda: self.k.claim(sender, token, gas=GAS)):
            del self.owed[(sender.address, token)]
            self.balances[(sender.address, token)] += amount

    @precondition(lambda self: any(c.params.asset != ETH and c.status != STATUS_NONE for c in self.channels))
    @rule(actor=indexes)
    def toggle_token_block(self, actor: int) -> None:
        """The token starts (or stops) refusing transfers to ``actor`` (returns false): payouts are deferred."""
        address = self._actor(actor).address
        blocked = address not in self.blocked
        data = self.token.encode_abi("setBlocked", args=[address, blocked])
        deployer = self.chain.accounts[0]
        receipt = self.chain.send(deployer, {"to": self.token.address, "data": data, "gas": 100_000})
        assert receipt["status"] == 1
        self.touched_assets.add(self.token.address)
        self.involved.add(address)
        if blocked:
            self.blocked.add(address)
        else:
            self.blocked.discard(address)

    @precondition(lambda self: any(c.status != STATUS_NONE for c in self.channels))
    @rule(
        when=st.sampled_from(["deadline-1", "deadline", "deadline+1", "lock expiry", "minute", "period"]),
        index=indexes,
    )
    def time_travel(self, when: str, index: int) -> None:
        pending = self._pending_timestamp()
        closing = [c for c in self.channels if c.status == STATUS_CLOSING and c.record]
        expiries = sorted({x.expiry for c in self.channels for x in (*c.view_locks, *c.record_locks)})
        if when.startswith("deadline") and closing:
            record = closing[index % len(closing)].record
            assert record is not None
            to = record.deadline + {"deadline-1": -1, "deadline": 0, "deadline+1": 1}[when]
        elif when == "lock expiry" and expiries:
            to = expiries[index % len(expiries)] + index % 2
        else:
            to = pending + (60 if when == "minute" else MIN_PERIOD)
        self._travel(to)

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def chain_matches_model(self) -> None:
        k = self.k
        # The contract holds exactly what open and closing channels hold plus what is owed.
        for asset in self.assets:
            held = sum(c.held() for c in self.channels if c.params.asset == asset)
            held += sum(v for (_, a), v in self.owed.items() if a == asset)
            assert self._chain_balance(k.address, asset) == held, f"contract {asset} balance"
        for ch in self.channels:  # per channel: what went in is held, withdrawn or paid out
            assert ch.deposited == ch.held() + ch.withdrawn + ch.paid
            if ch.status == STATUS_CLOSING:
                assert ch.record is not None and ch.held() == ch.total == ch.record.deposit_a + ch.record.deposit_b
            if ch.status == STATUS_OPEN:
                assert ch.view_a + ch.view_b + sum(x.amount for x in ch.view_locks) == ch.total
        for actor in self.world.actors:  # every ETH balance, to the wei (gas included)
            assert self._chain_balance(actor.address, ETH) == self.balances[(actor.address, ETH)]
        for address in self.involved:  # token balances and deferred payouts of who a step paid or charged
            for asset in self.touched_assets:
                assert self._chain_balance(address, asset) == self.balances[(address, asset)]
                assert self._chain_owed(address, asset) == self.owed.get((address, asset), 0)
        for ch in self.touched:
            onchain = onchain_channel(ch.cid, *k.view(k.contract.functions.getChannel(ch.cid)))
            assert onchain.status == ch.status
            if ch.status == STATUS_OPEN:
                assert (onchain.deposit_a, onchain.deposit_b, onchain.withdrawals) == (
                    ch.deposit_a,
                    ch.deposit_b,
                    ch.withdrawals,
                )
            elif ch.status == STATUS_CLOSING:
                assert ch.record is not None
                assert (onchain.closed_by, onchain.penalized) == (ch.closer, ch.penalized)
                assert (onchain.deadline, onchain.nonce) == (ch.record.deadline, ch.record.nonce)
                # The model's record, passed as calldata, matches the slot's fingerprint: a proof that
                # revokes nothing gets past the record check to the first check after it.
                proof = self._account(ch.params.participant_a)
                got = k.dry_error(
                    lambda: k.prove_revoked(proof, ch.params, 0, EMPTY_SIGNATURE, ch.record, gas=GAS)  # noqa: B023
                )
                assert got == (ChannelPenalized(ch.cid) if ch.penalized else NotRevoked(ch.record.closer_nonce, 0))
                if OUTCOMES["record: compared with recorded_state"] < SDK_RECORD_CHECKS:
                    assert k.recorded_state(ch.cid) == ch.record
                    OUTCOMES["record: compared with recorded_state"] += 1
        for hashlock in self.touched_hashlocks:
            assert k.view(k.contract.functions.revealedAt(hashlock)) == (self.revealed.get(hashlock, 0),)
        if any(c.params.number == self.next_number - 1 for c in self.touched):
            assert k.contract.functions.nextChannelNumber().call() == self.next_number
        self.touched = []
        self.involved = set()
        self.touched_hashlocks = set()
        self.touched_assets = set()


MODEL_EPOCH = 3_000_000_000  # 2065-01-24: the model chain's clock starts here


def make_world(artifacts: dict[str, Any]) -> World:
    """A fresh embedded chain (not the session's: the model needs exact block timestamps), with the
    contract and a TestToken minted to and approved by every actor."""
    chain = embedded_chain()
    # Far ahead of the wall clock, which eth-tester stamps a block with when that is later: from here on
    # every timestamp follows from the blocks and time travels alone, so the derandomized examples run the
    # same histories (and reach the same outcomes) on every machine and under any load.
    assert chain.tester is not None
    chain.tester.time_travel(MODEL_EPOCH)
    deployer = chain.accounts[0]
    contract, _ = ModelContract.deploy(chain, deployer, artifacts["PaymentChannels"])
    token = deploy_test_contract(chain, deployer, artifacts["TestToken"])
    for actor in chain.accounts[1:5]:
        for fn in (
            token.functions.mint(actor.address, TOKEN_MINT),
            token.functions.approve(contract.address, 2**256 - 1),
        ):
            data = fn.build_transaction({"from": actor.address, "gas": 100_000})["data"]
            assert chain.send(actor, {"to": token.address, "data": data, "gas": 100_000})["status"] == 1
    return World(chain, contract, token)


@pytest.fixture(scope="module")
def world(artifacts: dict[str, Any]) -> World:
    return make_world(artifacts)


NEEDED = [
    "open: ok",
    "deposit: ok",
    "closeWithoutState: ok",
    "close: ok",
    "challenge: ok",
    "settle: ok",
    "cooperativeClose: ok",
    "challenge: StaleState",
    "challenge: ChannelPenalized",
    "challenge: final state paid at once",
    "settle: ChallengePeriodActive",
    "settle: LocksMismatch",
    "close: BalancesNotConserved",
    "close: UnknownDeposit",
    "close: FinalStateHasLocks",
    "close: WithdrawalCountMismatch",
    "close: a state from before a withdrawal, refused",
    "withdraw: ok",
    "withdraw: StaleWithdrawal",
    "withdraw: WithdrawalExpired",
    "proveRevoked: ok",
    "proveRevoked: NotRevoked",
    "proveRevoked: InvalidSignature",
    "proveRevoked: ChannelNotClosing",
    "revealSecret: ok",
    "revealSecrets: ok",
    "lock: paid to the receiver",
    "lock: revealed late, back to the sender",
    "lock: never revealed, back to the sender",
    "settle: the cheater's whole channel to the other side",
    "record: compared with recorded_state",
]


def run_the_model(world: World, examples: int = EXAMPLES, derandomize: bool = DERANDOMIZE) -> str:
    """Runs ``examples`` examples of the machine on ``world`` (counting ``OUTCOMES`` afresh); returns the
    digest of their histories. The literals of the loaded modules are left out of the draws, so the
    derandomized examples are the same whatever this process imported before."""
    ChannelMachine.world = world
    ChannelMachine.history = hashlib.sha256()
    OUTCOMES.clear()
    with module_constants_left_out():
        run_state_machine_as_test(
            ChannelMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=derandomize,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    return str(ChannelMachine.history.hexdigest())


def test_random_channel_histories_match_the_reference_model(world: World) -> None:
    digest = run_the_model(world)
    print("\n".join(f"{n:6d}  {what}" for what, n in sorted(OUTCOMES.items())))
    print(f"history digest: {digest}")
    if EXAMPLES >= 50:  # the run reached every outcome that matters (not a degenerate generator)
        missing = [what for what in NEEDED if not OUTCOMES[what]]
        assert not missing, f"the random histories never reached: {missing}"


HISTORY_EXAMPLES = 5  # examples the next test compares (about a second each; unguarded, the third differed)


def start_fresh_history_run(artifacts_dir: Path, *flags: str) -> subprocess.Popen[str]:
    """``tests/model_history.py`` in a fresh interpreter: it prints the digest of the first
    ``HISTORY_EXAMPLES`` derandomized examples (whatever ``PAYCHAN_FUZZ_EXAMPLES`` says)."""
    env = {k: v for k, v in os.environ.items() if k != "PAYCHAN_FUZZ_EXAMPLES"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.model_history", str(artifacts_dir), str(HISTORY_EXAMPLES), *flags],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_model_draws_the_same_histories_whatever_was_imported_before_it(
    artifacts: dict[str, Any], tmp_path: Path
) -> None:
    """The first derandomized examples have the same history digest in a fresh interpreter that imports
    only what the model needs, in one that first imports every module of ``paychan`` (and builds the CLI's
    parser), and in this process, after whatever the session ran before. (Without
    ``module_constants_left_out`` the second drew other histories: hypothesis draws literals of the
    modules loaded.)"""
    for name in ("PaymentChannels", "TestToken"):
        (tmp_path / f"{name}.json").write_text(json.dumps(artifacts[name].to_json()))
    runs = {
        "fresh": start_fresh_history_run(tmp_path),
        "fresh, every paychan module imported first": start_fresh_history_run(tmp_path, "--import-paychan"),
    }
    digests = {"this process": run_the_model(make_world(artifacts), HISTORY_EXAMPLES, derandomize=True)}
    for how, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, f"{how}: exit {run.returncode}\n{out[-3000:]}{err[-3000:]}"
        digests[how] = out.split()[-1]
    assert len(set(digests.values())) == 1, digests
