"""Model-based fuzzing: random sequences of channel actions against the real contract and a reference model.

A hypothesis ``RuleBasedStateMachine`` drives open, deposit, off-chain signing (honest, forged and
non-conserving states), cooperative close, unilateral close with a stale or current state, challenge,
settle, claim, time travel and invalid calls (wrong channel, wrong caller, wrong recorded balances, a
blocked token recipient), by random actors, on the embedded chain. The machine's own fields (``channels``,
``balances``, ``owed``) are a small Python reference of what the contract should do; every step predicts
the outcome first:

- a call the model rejects must revert with exactly the custom error (and arguments) the model predicts,
  and change nothing but the sender's gas;
- after every step, every actor's ETH and token balance, the contract's balances, the touched channel's
  slot, ``owed`` and ``nextChannelNumber`` equal the model's, so the contract's balance always equals what
  open and closing channels hold plus what is owed;
- a settled channel paid exactly the highest-nonce doubly-signed state submitted before its deadline.

Examples: ``PAYCHAN_FUZZ_EXAMPLES`` (default 50, the CI number) of up to ``PAYCHAN_FUZZ_STEPS`` (default
30) steps each; the chain is snapshotted before and reverted after each example. Without the variable the
examples are derandomized (the same in every CI run); with it, hypothesis explores new ones. Transactions
pass ``gas`` explicitly (no estimation). The outcome counts are printed at the end (``pytest -s``), and a
default run must reach every outcome that matters (successful and refused closes, challenges, settlements).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import keccak
from hexbytes import HexBytes
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from web3.logs import DISCARD

from paychan.chain import Chain, embedded_chain
from paychan.contract import STATUS_CLOSING, STATUS_NONE, STATUS_OPEN, PaychanContract
from paychan.exceptions import (
    BalancesNotConserved,
    ChallengePeriodActive,
    ChallengePeriodOver,
    ChannelNotClosing,
    ChannelNotOpen,
    ContractCustomError,
    InvalidChallengePeriod,
    InvalidCounterparty,
    InvalidSignature,
    NothingToClaim,
    NotParticipant,
    PayoutFailed,
    RecordedBalancesMismatch,
    StaleState,
    StateNotFinal,
    TokenTransferFailed,
    UnknownDeposit,
    ZeroDeposit,
)
from paychan.signing import sign_state
from paychan.state import ETH, ChannelParams, ChannelState, Nonce, SignedState, Wei, channel_id

from .conftest import deploy_test_contract, record_salt

EXAMPLES = int(os.environ.get("PAYCHAN_FUZZ_EXAMPLES", "50"))
STEPS = int(os.environ.get("PAYCHAN_FUZZ_STEPS", "30"))
GAS = 600_000
ZERO = "0x0000000000000000000000000000000000000000"
MIN_PERIOD, MAX_PERIOD = 3600, 30 * 24 * 3600
TOKEN_MINT = 5 * 10**18  # small enough that deposits run out and `TokenTransferFailed` is reachable
UNIT = 10**17
LIVE_CHANNELS = 3  # open or closing channels at once: more steps go to what happens to a channel

OUTCOMES: Counter[str] = Counter()  # how often each call ended how, over the whole run

amounts = st.one_of(st.integers(0, 30).map(lambda n: n * UNIT), st.integers(0, 3 * 10**18))
indexes = st.integers(0, 10**6)
# Channel picks: mostly (>= 0) a channel in the state the rule needs, sometimes (< 0) any channel.
picks = st.tuples(st.integers(0, 7), st.integers(0, 10**6)).map(lambda t: -t[1] - 1 if t[0] == 7 else t[1])
rarely = st.sampled_from([False] * 7 + [True])
roles = st.sampled_from(["A", "B"] * 3 + ["other"])


@dataclass
class ModelState:
    """A doubly-signed (or forged) state the model knows about, with who really signed it."""

    signed: SignedState
    signer_a: str
    signer_b: str

    @property
    def state(self) -> ChannelState:
        return self.signed.state


@dataclass
class ModelChannel:
    """The model of one channel: status, deposits, off-chain states and the recorded (closing) state."""

    params: ChannelParams
    cid: bytes
    status: int = STATUS_OPEN
    deposit_a: int = 0
    deposit_b: int = 0
    states: list[ModelState] = field(default_factory=list)
    recorded: tuple[int, int, int] = (0, 0, 0)  # nonce, balance A, balance B
    salt: int = 0  # the recorded state's salt, predicted from the recording block
    deadline: int = 0
    submitted: list[tuple[int, int, int, int]] = field(default_factory=list)  # (timestamp, nonce, a, b)

    @property
    def total(self) -> int:
        return self.deposit_a + self.deposit_b

    def held(self) -> int:
        if self.status == STATUS_OPEN:
            return self.total
        if self.status == STATUS_CLOSING:
            return self.recorded[1] + self.recorded[2]
        return 0


class World:
    """What stays the same across examples: the chain, the contract, the token and the actors."""

    def __init__(self, chain: Chain, contract: PaychanContract, token: Any) -> None:
        self.chain = chain
        self.contract = contract
        self.token = token
        self.actors = chain.accounts[1:5]  # alice, bob, carol: participants; dave: a third party
        self.keys = {a.address: a.key for a in self.actors}


class ChannelMachine(RuleBasedStateMachine):
    world: World

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
        self.touched: list[ModelChannel] = []
        self.involved: set[str] = set()

    def teardown(self) -> None:
        self.chain.revert(self.snapshot)

    # --- chain access --------------------------------------------------------------------------

    def _pending_timestamp(self) -> int:
        return int(self.chain.tester.get_block_by_number("pending")["timestamp"])

    def _call(self, data: str, to: str | None = None) -> bytes:
        tx = {"from": self.chain.accounts[0].address, "to": to or self.k.address, "data": data, "gas": 1_000_000}
        return bytes(HexBytes(self.chain.tester.call(tx)))

    def _chain_balance(self, address: str, asset: str) -> int:
        if asset == ETH:
            return int(self.chain.tester.get_balance(address))
        data = self.token.encode_abi("balanceOf", args=[address])
        return int(decode(["uint256"], self._call(data, to=asset))[0])

    def _predicted_error(self, sender: Any, name: str, args: list[Any], value: int) -> ContractCustomError | None:
        fn = getattr(self.k.contract.functions, name)(*args)
        try:
            fn.call({"from": sender.address, "value": value}, block_identifier="pending")
        except ContractCustomError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - decode whatever the node raised
            try:
                self.k.errors.reraise(exc)
            except ContractCustomError as decoded:
                return decoded
            raise
        return None

    def _send(
        self, sender: Any, name: str, args: list[Any], value: int = 0, expect: ContractCustomError | None = None
    ) -> Any:
        """Sends ``name(*args)``; a predicted error must be exactly the revert and change nothing."""
        timestamp = self._pending_timestamp()
        if expect is not None:
            assert self._predicted_error(sender, name, args, value) == expect
        data = self.k.contract.encode_abi(name, args=args)
        receipt = self.chain.send(sender, {"to": self.k.address, "data": data, "value": value, "gas": GAS})
        assert self.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == timestamp
        self.balances[(sender.address, ETH)] -= int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        self.involved.add(sender.address)
        OUTCOMES[f"{name}: {type(expect).__name__ if expect else 'ok'}"] += 1
        if expect is not None:
            assert receipt["status"] == 0, f"{name} succeeded; the model expected {expect!r}"
            return None
        if receipt["status"] != 1:
            fn = getattr(self.k.contract.functions, name)(*args)
            try:
                fn.call({"from": sender.address, "value": value}, block_identifier=receipt["blockNumber"] - 1)
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"{name} reverted ({exc!r}); the model expected success")
            pytest.fail(f"{name} reverted; the model expected success")
        self.balances[(sender.address, ETH)] -= value
        return receipt

    def _pay(self, to: str, asset: str, amount: int) -> None:
        if amount == 0:
            return
        self.involved.add(to)
        if asset != ETH and to in self.blocked:
            self.owed[(to, asset)] = self.owed.get((to, asset), 0) + amount
        else:
            self.balances[(to, asset)] = self.balances.get((to, asset), 0) + amount

    def _wait(self, ch: ModelChannel, until: str) -> int:
        """Travels to ``ch``'s deadline second (or the one after) when asked; returns the next block's time."""
        pending = self._pending_timestamp()
        if ch.status == STATUS_CLOSING and until != "no":
            to = ch.deadline + (1 if until == "deadline+1" else 0)
            if to > pending:
                self.chain.tester.time_travel(to)
                return to
        return pending

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

    def _role(self, ch: ModelChannel, who: str) -> Any:
        """Participant A or B of ``ch``, or ``"other"``: an actor who is neither."""
        params = ch.params
        address = {"A": params.participant_a, "B": params.participant_b}.get(who)
        return next(
            a
            for a in self.world.actors
            if (a.address == address if address else a.address not in (params.participant_a, params.participant_b))
        )

    def _state_error(self, ch: ModelChannel, ms: ModelState) -> ContractCustomError | None:
        """The contract's rule: the state splits at most the channel's deposits per side (which are final
        once it is closing), its balances sum to the deposits it splits, both signed it."""
        s = ms.state
        if s.deposit_a > ch.deposit_a or s.deposit_b > ch.deposit_b:
            return UnknownDeposit(s.deposit_a, s.deposit_b, ch.deposit_a, ch.deposit_b)
        total = s.deposit_a + s.deposit_b
        if s.balance_a > total or s.balance_b != total - s.balance_a:
            return BalancesNotConserved(s.balance_a, s.balance_b, total)
        if ms.signer_a != ch.params.participant_a:
            return InvalidSignature(ch.params.participant_a, ms.signer_a)
        if ms.signer_b != ch.params.participant_b:
            return InvalidSignature(ch.params.participant_b, ms.signer_b)
        return None

    def _settle_model(self, ch: ModelChannel, balance_a: int, balance_b: int) -> None:
        ch.status = STATUS_NONE
        self._pay(ch.params.participant_a, ch.params.asset, balance_a)
        self._pay(ch.params.participant_b, ch.params.asset, balance_b)

    def _assert_settled_event(self, receipt: Any, ch: ModelChannel, nonce: int, a: int, b: int, coop: bool) -> None:
        (event,) = self.k.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD)
        args = event["args"]
        assert (args["channelId"], args["nonce"], args["payoutA"], args["payoutB"], args["cooperative"]) == (
            ch.cid,
            nonce,
            a,
            b,
            coop,
        )

    # --- rules ---------------------------------------------------------------------------------

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
        value = amount if token == ETH else 0
        expect: ContractCustomError | None = None
        if other in (ZERO, sender.address):
            expect = InvalidCounterparty(other)
        elif not MIN_PERIOD <= period <= MAX_PERIOD:
            expect = InvalidChallengePeriod(period, MIN_PERIOD, MAX_PERIOD)
        elif token != ETH and amount > self.balances[(sender.address, token)]:
            expect = TokenTransferFailed(token, sender.address, amount)
        receipt = self._send(sender, "open", [other, token, period, amount], value, expect)
        if receipt is None:
            return
        params = ChannelParams(sender.address, other, token, period, self.next_number)
        self.next_number += 1
        ch = ModelChannel(params, channel_id(params, self.chain.chain_id, self.k.address), deposit_a=amount)
        if token != ETH:
            self.balances[(sender.address, token)] -= amount
        self.channels.append(ch)
        self.touched.append(ch)

    @precondition(lambda self: self.channels)
    @rule(index=picks, depositor=indexes, who=st.sampled_from(["A", "B"] * 3 + ["other"]), amount=amounts, bogus=rarely)
    def deposit(self, index: int, depositor: int, who: str, amount: int, bogus: bool) -> None:
        ch = self._pick(index, STATUS_OPEN)
        sender = self._actor(depositor)
        params = ch.params
        if bogus:  # parameters of a channel that was never opened
            params = ChannelParams(
                params.participant_a, params.participant_b, params.asset, params.challenge_period, params.number + 10**6
            )
        cid = channel_id(params, self.chain.chain_id, self.k.address)
        outsider = next(
            a.address for a in self.world.actors if a.address not in (params.participant_a, params.participant_b)
        )
        participant = {"A": params.participant_a, "B": params.participant_b, "other": outsider}[who]
        token = params.asset
        value = amount if token == ETH else 0
        expect: ContractCustomError | None = None
        if bogus or ch.status != STATUS_OPEN:
            expect = ChannelNotOpen(cid)
        elif who == "other":
            expect = NotParticipant(cid, participant)
        elif amount == 0:
            expect = ZeroDeposit()
        elif token != ETH and amount > self.balances[(sender.address, token)]:
            expect = TokenTransferFailed(token, sender.address, amount)
        receipt = self._send(sender, "deposit", [params.as_tuple(), participant, amount], value, expect)
        if receipt is None:
            return
        if token != ETH:
            self.balances[(sender.address, token)] -= amount
        if who == "A":
            ch.deposit_a += amount
        else:
            ch.deposit_b += amount

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=picks,
        share=st.integers(0, 100),
        final=st.booleans(),
        forgery=st.sampled_from(["none"] * 6 + ["third party", "one party", "not conserved", "unknown deposit"]),
    )
    def sign(self, index: int, share: int, final: bool, forgery: str) -> None:
        """Off chain: both participants sign the next state (or a forgery is made); no transaction."""
        open_channels = [c for c in self.channels if c.status == STATUS_OPEN]
        self._sign(open_channels[index % len(open_channels)], share, final, forgery)

    def _sign(self, ch: ModelChannel, share: int, final: bool, forgery: str) -> None:
        # Both sign the deposits as they stand; deposits made later go back to their side (the payout rule).
        deposit_a = ch.deposit_a + (1 if forgery == "unknown deposit" else 0)
        total = deposit_a + ch.deposit_b + (1 if forgery == "not conserved" else 0)
        balance_a = total * share // 100
        state = ChannelState(
            ch.cid,
            Nonce(len(ch.states) + 1),
            Wei(balance_a),
            Wei(total - balance_a),
            is_final=final,
            deposit_a=Wei(deposit_a),
            deposit_b=Wei(ch.deposit_b),
        )
        signer_a, signer_b = ch.params.participant_a, ch.params.participant_b
        if forgery == "third party":
            signer_b = next(a.address for a in self.world.actors if a.address not in (signer_a, signer_b))
        elif forgery == "one party":
            signer_b = signer_a
        domain = self.k.domain
        signed = SignedState(
            state,
            sign_state(domain, state, self.world.keys[signer_a]),
            sign_state(domain, state, self.world.keys[signer_b]),
        )
        ch.states.append(ModelState(signed, signer_a, signer_b))

    @precondition(lambda self: any(c.states and c.status == STATUS_OPEN for c in self.channels))
    @rule(index=picks, which=indexes, submitter=indexes, fresh=st.booleans(), share=st.integers(0, 100))
    def cooperative_close(self, index: int, which: int, submitter: int, fresh: bool, share: int) -> None:
        """Submits a state (mostly the latest); with ``fresh``, both first sign a final one, as when closing."""
        ch = self._pick(index, STATUS_OPEN, need_states=True)
        if fresh and ch.status == STATUS_OPEN:
            self._sign(ch, share, True, "none")
        ms = self._state_of(ch, which)
        sender = self._actor(submitter)
        expect: ContractCustomError | None = None
        if ch.status != STATUS_OPEN:
            expect = ChannelNotOpen(ch.cid)
        elif not ms.state.is_final:
            expect = StateNotFinal(ms.state.nonce)
        else:
            expect = self._state_error(ch, ms)
        sigs = (ms.signed.sig_a.as_tuple(), ms.signed.sig_b.as_tuple())
        receipt = self._send(sender, "cooperativeClose", [ch.params.as_tuple(), ms.state.as_tuple(), *sigs], 0, expect)
        if receipt is None:
            return
        payout_a, payout_b = ms.state.payouts(ch.deposit_a, ch.deposit_b)
        self._assert_settled_event(receipt, ch, ms.state.nonce, payout_a, payout_b, True)
        self._settle_model(ch, payout_a, payout_b)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(index=picks, closer=roles, which=st.one_of(indexes, indexes, indexes, st.none()))
    def close(self, index: int, closer: str, which: int | None) -> None:
        ch = self._pick(index, STATUS_OPEN)
        self._close(ch, self._role(ch, closer), self._state_of(ch, which) if which is not None and ch.states else None)

    @precondition(lambda self: any(c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=picks,
        closer=roles,
        forgery=st.sampled_from(["not conserved", "unknown deposit"]),
        share=st.integers(0, 100),
    )
    def close_with_a_bad_state(self, index: int, closer: str, forgery: str, share: int) -> None:
        """Both sign a state that does not add up, or splits a deposit never made; one closes with it."""
        ch = self._pick(index, STATUS_OPEN)
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
        if ms is None:
            receipt = self._send(sender, "closeWithoutState", [ch.params.as_tuple()], 0, expect)
        else:
            sigs = (ms.signed.sig_a.as_tuple(), ms.signed.sig_b.as_tuple())
            receipt = self._send(sender, "close", [ch.params.as_tuple(), ms.state.as_tuple(), *sigs], 0, expect)
        if receipt is None:
            return
        ch.recorded = (
            (ms.state.nonce, *ms.state.payouts(ch.deposit_a, ch.deposit_b)) if ms else (0, ch.deposit_a, ch.deposit_b)
        )
        ch.salt = record_salt(self.k, receipt)
        ch.status = STATUS_CLOSING
        ch.deadline = timestamp + ch.params.challenge_period
        ch.submitted.append((timestamp, *ch.recorded))

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

    @precondition(lambda self: any(c.states and c.status == STATUS_OPEN for c in self.channels))
    @rule(
        index=picks,
        closer=st.sampled_from(["A", "B"]),
        stale=indexes,
        challenger=indexes,
        share=st.integers(0, 100),
        final=rarely,
    )
    def dispute(self, index: int, closer: str, stale: int, challenger: int, share: int, final: bool) -> None:
        """Both sign a new state; then one closes with an older state (or none) and the latest is submitted."""
        ch = self._pick(index, STATUS_OPEN, need_states=True)
        if ch.status == STATUS_OPEN:
            self._sign(ch, share, final, "none")
        older = ch.states[(stale // 3) % len(ch.states)] if stale % 3 else None
        self._close(ch, self._role(ch, closer), older)
        self._challenge(ch, ch.states[-1], self._actor(challenger), False, "no")

    def _challenge(self, ch: ModelChannel, ms: ModelState, sender: Any, wrong_record: bool, wait: str) -> None:
        timestamp = self._wait(ch, wait)
        _, rec_a, rec_b = ch.recorded
        if wrong_record:  # the caller passes balances that are not the recorded ones
            rec_a, rec_b = rec_a + 1, rec_b
        expect: ContractCustomError | None = None
        if ch.status != STATUS_CLOSING:
            expect = ChannelNotClosing(ch.cid)
        elif wrong_record:
            expect = RecordedBalancesMismatch(rec_a, rec_b)
        elif timestamp > ch.deadline:
            expect = ChallengePeriodOver(ch.deadline, timestamp)
        elif ms.state.nonce <= ch.recorded[0]:
            expect = StaleState(ms.state.nonce, ch.recorded[0])
        else:
            expect = self._state_error(ch, ms)
        valid_in_time = expect is None or (isinstance(expect, StaleState) and self._state_error(ch, ms) is None)
        payout_a, payout_b = ms.state.payouts(ch.deposit_a, ch.deposit_b)
        if valid_in_time:  # a doubly-signed state submitted up to the deadline, accepted or stale
            ch.submitted.append((timestamp, ms.state.nonce, payout_a, payout_b))
        sigs = (ms.signed.sig_a.as_tuple(), ms.signed.sig_b.as_tuple())
        record = (rec_a, rec_b, ch.deposit_a, ch.deposit_b, ch.salt)  # the deposits are final since the close
        receipt = self._send(sender, "challenge", [ch.params.as_tuple(), record, ms.state.as_tuple(), *sigs], 0, expect)
        if receipt is None:
            return
        state = ms.state
        if state.is_final:
            self._assert_settled_event(receipt, ch, state.nonce, payout_a, payout_b, True)
            self._settle_model(ch, payout_a, payout_b)
        else:
            ch.recorded = (state.nonce, payout_a, payout_b)
            ch.salt = record_salt(self.k, receipt)

    @precondition(lambda self: any(c.status == STATUS_CLOSING for c in self.channels))
    @rule(index=picks, settler=indexes, wait=st.sampled_from(["no", "deadline", "deadline+1", "deadline+1"]))
    def settle(self, index: int, settler: int, wait: str) -> None:
        ch = self._pick(index, STATUS_CLOSING)
        sender = self._actor(settler)
        timestamp = self._wait(ch, wait)
        nonce, rec_a, rec_b = ch.recorded
        expect: ContractCustomError | None = None
        if ch.status != STATUS_CLOSING:
            expect = ChannelNotClosing(ch.cid)
        elif timestamp <= ch.deadline:
            expect = ChallengePeriodActive(ch.deadline, timestamp)
        args = [ch.params.as_tuple(), (rec_a, rec_b, ch.deposit_a, ch.deposit_b, ch.salt)]
        receipt = self._send(sender, "settle", args, 0, expect)
        if receipt is None:
            return
        # The property: what is paid is the highest-nonce valid state submitted up to the deadline.
        best = max((s for s in ch.submitted if s[0] <= ch.deadline), key=lambda s: s[1])
        assert best[1:] == ch.recorded
        self._assert_settled_event(receipt, ch, nonce, rec_a, rec_b, False)
        self._settle_model(ch, rec_a, rec_b)

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
        receipt = self._send(sender, "claim", [token, sender.address], 0, expect)
        if receipt is None:
            return
        del self.owed[(sender.address, token)]
        self.balances[(sender.address, token)] += amount

    @precondition(lambda self: any(c.params.asset != ETH for c in self.channels))
    @rule(actor=indexes)
    def toggle_token_block(self, actor: int) -> None:
        """The token starts (or stops) refusing transfers to ``actor`` (returns false): payouts are deferred."""
        address = self._actor(actor).address
        blocked = address not in self.blocked
        data = self.token.encode_abi("setBlocked", args=[address, blocked])
        deployer = self.chain.accounts[0]
        receipt = self.chain.send(deployer, {"to": self.token.address, "data": data, "gas": 100_000})
        assert receipt["status"] == 1
        if blocked:
            self.blocked.add(address)
        else:
            self.blocked.discard(address)

    @precondition(lambda self: any(c.status == STATUS_CLOSING for c in self.channels))
    @rule(when=st.sampled_from(["deadline-1", "deadline", "deadline+1", "minute", "period"]), index=indexes)
    def time_travel(self, when: str, index: int) -> None:
        pending = self._pending_timestamp()
        closing = [c for c in self.channels if c.status == STATUS_CLOSING]
        if when.startswith("deadline") and closing:
            ch = closing[index % len(closing)]
            to = ch.deadline + {"deadline-1": -1, "deadline": 0, "deadline+1": 1}[when]
        else:
            to = pending + (60 if when == "minute" else MIN_PERIOD)
        if to > pending:
            self.chain.tester.time_travel(to)

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def chain_matches_model(self) -> None:
        k = self.k
        # The contract holds exactly what open and closing channels hold plus what is owed.
        for asset in self.assets:
            held = sum(c.held() for c in self.channels if c.params.asset == asset)
            held += sum(v for (_, a), v in self.owed.items() if a == asset)
            assert self._chain_balance(k.address, asset) == held, f"contract {asset} balance"
        for actor in self.world.actors:  # every ETH balance, to the wei (gas included)
            assert self._chain_balance(actor.address, ETH) == self.balances[(actor.address, ETH)]
        for address in self.involved:
            assert self._chain_balance(address, self.token.address) == self.balances[(address, self.token.address)]
            data = k.contract.encode_abi("owed", args=[address, self.token.address])
            assert decode(["uint256"], self._call(data))[0] == self.owed.get((address, self.token.address), 0)
        for ch in self.touched:
            data = k.contract.encode_abi("getChannel", args=[ch.cid])
            status, dep_a, dep_b, deadline, nonce, fingerprint = decode(
                ["uint8", "uint256", "uint256", "uint40", "uint48", "bytes20"], self._call(data)
            )
            assert status == ch.status
            if ch.status == STATUS_OPEN:
                assert (dep_a, dep_b) == (ch.deposit_a, ch.deposit_b)
            elif ch.status == STATUS_CLOSING:
                assert (deadline, nonce) == (ch.deadline, ch.recorded[0])
                record = [ch.recorded[1], ch.recorded[2], ch.deposit_a, ch.deposit_b, ch.salt]
                assert fingerprint == keccak(encode(["uint256"] * 5, record))[-20:]
        if any(c.params.number == self.next_number - 1 for c in self.touched):
            assert k.contract.functions.nextChannelNumber().call() == self.next_number
        self.touched = []
        self.involved = set()


@pytest.fixture(scope="module")
def world(artifacts: dict[str, Any]) -> World:
    """A fresh embedded chain (not the session's: the model needs exact block timestamps), with the
    contract and a TestToken minted to and approved by every actor."""
    chain = embedded_chain()
    deployer = chain.accounts[0]
    contract, _ = PaychanContract.deploy(chain, deployer, artifacts["PaymentChannels"])
    token = deploy_test_contract(chain, deployer, artifacts["TestToken"])
    for actor in chain.accounts[1:5]:
        for fn in (
            token.functions.mint(actor.address, TOKEN_MINT),
            token.functions.approve(contract.address, 2**256 - 1),
        ):
            data = fn.build_transaction({"from": actor.address, "gas": 100_000})["data"]
            assert chain.send(actor, {"to": token.address, "data": data, "gas": 100_000})["status"] == 1
    return World(chain, contract, token)


@pytest.mark.skip(
    reason="issue 13: the reference model predicts contract v1 (a 5-word record; a final challenge paying at "
    "once from anyone), so it would report v2's intended rules as bugs; v2's rules are covered by the "
    "contract, Channel, demo and node tests until the model is extended to locks, penalties and withdrawals"
)
def test_random_channel_histories_match_the_reference_model(world: World) -> None:
    ChannelMachine.world = world
    run_state_machine_as_test(
        ChannelMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            # Plain `pytest` (CI) replays the same examples every run; a chosen number explores new ones.
            derandomize="PAYCHAN_FUZZ_EXAMPLES" not in os.environ,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("\n".join(f"{n:6d}  {what}" for what, n in sorted(OUTCOMES.items())))
    if EXAMPLES >= 50:  # the run reached every outcome that matters (not a degenerate generator)
        needed = [
            "open: ok",
            "deposit: ok",
            "closeWithoutState: ok",
            "close: ok",
            "challenge: ok",
            "settle: ok",
            "cooperativeClose: ok",
            "challenge: StaleState",
            "settle: ChallengePeriodActive",
            "close: BalancesNotConserved",
            "close: UnknownDeposit",
        ]
        missing = [what for what in needed if not OUTCOMES[what]]
        assert not missing, f"the random histories never reached: {missing}"
