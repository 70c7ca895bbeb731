"""The lifecycles ``paychan demo`` runs and explains: a cooperative channel, a disputed one, a cheater
punished, a conditional payment settled on chain, and a withdrawal while open.

All drive the real contract through ``PaychanContract`` and record every step in a ``Ledger``: deposits,
each doubly-signed state with the signers recovered from its signatures, every other signed message
(revocations, withdrawals), every transaction with its fee read from the receipt and block, the
withdrawals, penalties, revealed secrets and payouts from the contract's events and the wallet balances read
from the chain. Nothing in the ledger is computed by this module.

The first two run the off-chain protocol through one ``Channel`` object per participant (each holding only
its own key). The last three build their states directly (``ChannelState`` signed by both with
``sign_message``, in ``_Lifecycle``'s ``_cosign``): locks, revocations and withdrawals as the contract
sees them, one signed message at a time.

``scripts/`` and the CLI call these functions; they run on the embedded chain or on any JSON-RPC node.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from paychan.chain import Chain
from paychan.channel import LOCK_EXPIRY_MARGIN, Channel, agree_final, pay
from paychan.contract import PaychanContract
from paychan.exceptions import WithdrawalCountMismatch
from paychan.ledger import Ledger, LedgerRecorder, format_eth
from paychan.signing import sign_message
from paychan.state import (
    ChannelState,
    Lock,
    Nonce,
    Revocation,
    Signature,
    SignedState,
    Wei,
    Withdrawal,
    hashlock,
    locked_totals,
    locks_root,
)

ETHER = 10**18
CHALLENGE_PERIOD = 3600  # one hour, the contract's minimum

TITLES = {
    "cooperative": "Cooperative lifecycle",
    "dispute": "Dispute: a stale close beaten by a challenge",
    "cheater": "A cheater punished: a close with a revoked state",
    "conditional": "A conditional payment settled on chain",
    "withdraw": "Withdraw while open",
}


@dataclass(frozen=True)
class Cast:
    """Who plays which part: the deployer and the two channel participants."""

    deployer: LocalAccount
    alice: LocalAccount
    bob: LocalAccount

    @classmethod
    def from_chain(cls, chain: Chain) -> Cast:
        if len(chain.accounts) < 3:
            raise ValueError(f"the demo needs 3 funded accounts with keys, the chain has {len(chain.accounts)}")
        deployer, alice, bob = chain.accounts[:3]
        return cls(deployer, alice, bob)

    def names(self) -> dict[str, str]:
        return {self.deployer.address: "deployer", self.alice.address: "alice", self.bob.address: "bob"}


def deploy(chain: Chain, deployer: LocalAccount | None = None) -> PaychanContract:
    """Deploys ``PaymentChannels`` from ``deployer`` (the chain's first account by default)."""
    contract, _ = PaychanContract.deploy(chain, deployer or chain.accounts[0])
    return contract


class _Lifecycle:
    """One channel between alice (A) and bob (B), both parties' off-chain views, and its ledger."""

    def __init__(self, chain: Chain, contract: PaychanContract | None, title: str) -> None:
        self.chain = chain
        self.cast = Cast.from_chain(chain)
        deploy_receipt = None
        if contract is None:
            contract, deploy_receipt = PaychanContract.deploy(chain, self.cast.deployer)
        self.contract = contract
        self.recorder = LedgerRecorder(chain, contract, title, self.cast.names())
        if deploy_receipt is not None:
            self.recorder.record("deploy PaymentChannels", self.cast.deployer.address, deploy_receipt)
            self.recorder.note(
                f"deployer deployed the PaymentChannels contract at {contract.address} "
                "(one contract hosts every channel; opening a channel deploys nothing)"
            )
        self.channels: dict[str, Channel] = {}
        self.deposits = {"A": 0, "B": 0}
        # the states built directly (the cheater, conditional and withdraw runs)
        self.latest: SignedState | None = None
        self.locks: tuple[Lock, ...] = ()
        self.withdrawals = 0
        self.revocations: dict[str, tuple[Revocation, Signature]] = {}

    def open(self, deposit_a: int) -> None:
        alice, bob = self.cast.alice, self.cast.bob
        before = int(self.chain.w3.eth.block_number)
        params, receipt = self.contract.open_channel(alice, bob.address, deposit_a, challenge_period=CHALLENGE_PERIOD)
        self.params = params
        self.channel_id = self.contract.channel_id(params)
        self.deposits["A"] = deposit_a
        self.recorder.begin(params, before)
        self.recorder.record("open channel + deposit (alice)", alice.address, receipt)
        self.recorder.note(
            f"alice opened channel #{params.number} with bob and locked {format_eth(deposit_a)} in the contract; "
            "no signature is needed to open, only alice's transaction"
        )
        for name, account in (("alice", alice), ("bob", bob)):
            self.channels[name] = Channel(params, self.contract.domain, account.key, deposits=(deposit_a, 0))

    def deposit(self, name: str, amount: int) -> None:
        account = getattr(self.cast, name)
        role = self.params.role_of(account.address)
        self.recorder.send(
            f"deposit ({name})", account, lambda: self.contract.deposit(account, self.params, account.address, amount)
        )
        self.deposits[role] += amount
        for channel in self.channels.values():
            channel.record_deposit(role, amount)
        self.recorder.note(f"{name} deposited {format_eth(amount)}: the channel is now funded by both sides")

    def pay(self, payer: str, amount: int) -> SignedState:
        """One off-chain payment: the payer signs the next state, the payee countersigns, the payer checks."""
        payee = "bob" if payer == "alice" else "alice"
        signed = pay(self.channels[payer], self.channels[payee], amount)
        self.recorder.record_state(self.contract.domain, signed, f"{payer} pays {payee} {format_eth(amount)}")
        return signed

    def finalize(self) -> SignedState:
        """Both sign the latest balances as final: the state a cooperative close needs."""
        signed = agree_final(self.channels["alice"], self.channels["bob"])
        self.recorder.record_state(self.contract.domain, signed, "final: both agree to close")
        return signed

    # --- states built directly: ChannelState + sign_message, both keys ------------------------------

    def _state(self) -> ChannelState:
        if self.latest is not None:
            return self.latest.state
        return ChannelState(
            self.channel_id,
            Nonce(0),
            Wei(self.deposits["A"]),
            Wei(self.deposits["B"]),
            deposit_a=Wei(self.deposits["A"]),
            deposit_b=Wei(self.deposits["B"]),
        )

    def _cosign(self, state: ChannelState, note: str, locks: tuple[Lock, ...] = ()) -> SignedState:
        """Both sign ``state`` (EIP-712, each with its own key); it becomes the latest state both hold."""
        domain = self.contract.domain
        signed = SignedState(
            state, sign_message(domain, state, self.cast.alice.key), sign_message(domain, state, self.cast.bob.key)
        )
        self.recorder.record_state(domain, signed, note, locks)
        self.latest, self.locks = signed, locks
        return signed

    def _next(self, balance_a: int, balance_b: int, locks: tuple[Lock, ...], **changes: object) -> ChannelState:
        locked_a, locked_b = locked_totals(locks)
        state = replace(
            self._state(),
            nonce=Nonce(self._state().nonce + 1),
            balance_a=Wei(balance_a),
            balance_b=Wei(balance_b),
            locked_a=Wei(locked_a),
            locked_b=Wei(locked_b),
            locks_root=locks_root(locks),
            withdrawals=self.withdrawals,
        )
        return replace(state, **changes)  # type: ignore[arg-type]

    def revoke_below(self, nonce: int) -> None:
        """Each side, now holding the state ``nonce`` signed by both, revokes every nonce below it."""
        for name in ("alice", "bob"):
            revocation = Revocation(self.channel_id, nonce)
            signature = sign_message(self.contract.domain, revocation, getattr(self.cast, name).key)
            self.recorder.record_message(
                self.contract.domain,
                revocation,
                [signature],
                f"{name} promises never to close below nonce {nonce} (both hold nonce {nonce})",
            )
            self.revocations[name] = (revocation, signature)

    def transfer(self, payer: str, amount: int, revoke: bool = False) -> SignedState:
        """A payment as a state built directly; with ``revoke``, both then revoke every older nonce."""
        payee = "bob" if payer == "alice" else "alice"
        s = self._state()
        moved = -amount if payer == "alice" else amount
        signed = self._cosign(
            self._next(s.balance_a + moved, s.balance_b - moved, self.locks),
            f"{payer} pays {payee} {format_eth(amount)}",
            self.locks,
        )
        if revoke:
            self.revoke_below(signed.state.nonce)
        return signed

    def add_lock(self, lock: Lock, note: str) -> SignedState:
        """The sender's balance lowered by the lock's amount, the lock added to the list the state commits to."""
        s = self._state()
        a = s.balance_a - (lock.amount if lock.sender == "A" else 0)
        b = s.balance_b - (lock.amount if lock.sender == "B" else 0)
        locks = (*self.locks, lock)
        return self._cosign(self._next(a, b, locks), note, locks)

    def final(self) -> SignedState:
        s = self._state()
        return self._cosign(self._next(s.balance_a, s.balance_b, (), is_final=True), "final: both agree to close")

    def withdraw(self, name: str, amount: int) -> tuple[Withdrawal, Signature, Signature]:
        """Both sign a ``Withdrawal`` of ``amount`` for ``name`` and the next state, which splits the deposits
        the withdrawal leaves (``Withdrawal.deposits_after``) under the next withdrawal counter."""
        role = self.params.role_of(getattr(self.cast, name).address)
        s = self._state()
        withdrawal = Withdrawal(
            self.channel_id,
            amount if role == "A" else 0,
            amount if role == "B" else 0,
            s.deposit_a,
            s.deposit_b,
            self.withdrawals,
            self.chain.now() + CHALLENGE_PERIOD,
        )
        domain = self.contract.domain
        sig_a = sign_message(domain, withdrawal, self.cast.alice.key)
        sig_b = sign_message(domain, withdrawal, self.cast.bob.key)
        self.recorder.record_message(
            domain,
            withdrawal,
            [sig_a, sig_b],
            f"withdrawal {self.withdrawals + 1}: {name} takes {format_eth(amount)} out of the open channel "
            f"(valid until {withdrawal.expiry})",
        )
        deposit_a, deposit_b = withdrawal.deposits_after()
        self.withdrawals += 1
        self._cosign(
            self._next(
                s.balance_a - withdrawal.amount_a,
                s.balance_b - withdrawal.amount_b,
                self.locks,
                deposit_a=Wei(deposit_a),
                deposit_b=Wei(deposit_b),
            ),
            f"{name}'s balance after withdrawal {self.withdrawals}",
            self.locks,
        )
        return withdrawal, sig_a, sig_b


def run_cooperative(chain: Chain, contract: PaychanContract | None = None, payments: int = 20) -> Ledger:
    """Open, both deposit, ``payments`` payments both ways off-chain, then close cooperatively."""
    life = _Lifecycle(chain, contract, TITLES["cooperative"])
    life.open(5 * ETHER)
    life.deposit("bob", 3 * ETHER)
    for i in range(payments):
        payer, amount = ("bob", ETHER // 20) if i % 3 == 2 else ("alice", ETHER // 10 + (i % 100) * 10**15)
        if life.channels[payer].balance() < amount:  # a long run: the side that ran low is paid instead
            payer = "alice" if payer == "bob" else "bob"
        life.pay(payer, amount)
    final = life.finalize()
    alice = life.cast.alice
    life.recorder.send(
        "cooperative close (alice)", alice, lambda: life.contract.cooperative_close(alice, life.params, final)
    )
    life.recorder.note(
        f"alice submitted the final state (nonce {final.state.nonce}, signed by both): "
        "the contract paid both at once, no challenge period"
    )
    return life.recorder.finish()


def run_dispute(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Alice closes with a stale state that favours her; bob challenges with the newest one and is paid."""
    life = _Lifecycle(chain, contract, TITLES["dispute"])
    life.open(4 * ETHER)
    life.deposit("bob", 1 * ETHER)
    stale = life.pay("alice", 1 * ETHER)
    life.pay("alice", 1 * ETHER)
    life.pay("bob", ETHER // 2)
    newest = life.pay("alice", 3 * ETHER // 2)
    alice, bob, contract_ = life.cast.alice, life.cast.bob, life.contract
    recorder = life.recorder

    recorder.send("close with stale state (alice)", alice, lambda: contract_.close(alice, life.params, stale))
    deadline = contract_.get_channel(contract_.channel_id(life.params)).deadline
    recorder.note(
        f"alice closed unilaterally with the stale nonce {stale.state.nonce} "
        f"(alice {format_eth(stale.state.balance_a)}, bob {format_eth(stale.state.balance_b)}), "
        f"though both signed nonce {newest.state.nonce}; the challenge period runs until timestamp {deadline}"
    )
    recorder.send("challenge with newest state (bob)", bob, lambda: contract_.challenge(bob, life.params, newest))
    recorder.note(
        f"bob challenged within the period (block time {chain.now()} <= deadline {deadline}) with nonce "
        f"{newest.state.nonce}: a higher nonce signed by both replaces the recorded state; the deadline is not extended"
    )
    chain.time_travel(CHALLENGE_PERIOD + 1)
    recorder.note(f"the challenge period passed (block time {chain.now()} > deadline {deadline})")
    recorder.send("settle (bob)", bob, lambda: contract_.settle(bob, life.params))
    recorder.note("bob settled: anyone may settle after the deadline; payouts follow the recorded (newest) state")
    return recorder.finish()


def run_cheater(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Alice closes with a state she revoked; bob proves it with her revocation and gets the whole channel."""
    life = _Lifecycle(chain, contract, TITLES["cheater"])
    life.open(4 * ETHER)
    life.deposit("bob", 1 * ETHER)
    revoked = life.transfer("alice", 1 * ETHER)
    life.transfer("alice", 1 * ETHER, revoke=True)
    newest = life.transfer("bob", ETHER // 2, revoke=True)
    alice, bob, contract_, recorder = life.cast.alice, life.cast.bob, life.contract, life.recorder
    revocation, signature = life.revocations["alice"]
    recorder.note(
        f"after each newer state both signed a revocation of every older nonce: alice's latest promises never to "
        f"close below nonce {revocation.below_nonce}, and bob holds it"
    )

    recorder.send("close with revoked state (alice)", alice, lambda: contract_.close(alice, life.params, revoked))
    deadline = contract_.get_channel(life.channel_id).deadline
    recorder.note(
        f"alice closed with nonce {revoked.state.nonce} (alice {format_eth(revoked.state.balance_a)}, "
        f"bob {format_eth(revoked.state.balance_b)}), a state she had revoked; both had signed nonce "
        f"{newest.state.nonce} (alice {format_eth(newest.state.balance_a)}); the period runs until {deadline}"
    )
    recorder.send(
        "prove revoked state (bob)",
        bob,
        lambda: contract_.prove_revoked(bob, life.params, revocation.below_nonce, signature),
    )
    recorder.note(
        f"bob proved it with alice's signed revocation below nonce {revocation.below_nonce} "
        f"(above the nonce {revoked.state.nonce} she closed with): anyone holding it could, a watchtower too; "
        "a later challenge cannot erase it"
    )
    chain.time_travel(CHALLENGE_PERIOD + 1)
    settled = recorder.send("settle (bob)", bob, lambda: contract_.settle(bob, life.params))
    recorder.note(
        f"bob settled after the period (block time {_block_time(chain, settled)} > deadline {deadline}): the "
        "closer cheated, so the whole channel, alice's deposit included, went to bob"
    )
    return recorder.finish()


def run_conditional(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Alice locks two payments to bob; bob learns the first secret, alice disappears, bob reveals it on chain,
    closes and settles with the lock list: the revealed lock pays bob, the expired one goes back to alice."""
    life = _Lifecycle(chain, contract, TITLES["conditional"])
    life.open(3 * ETHER)
    life.deposit("bob", 1 * ETHER)
    life.transfer("alice", ETHER // 2)
    alice_pays, never_revealed = secrets.token_bytes(32), secrets.token_bytes(32)
    # the channel's rule: a lock expires before a close started now could settle, by LOCK_EXPIRY_MARGIN
    expiry = chain.now() + CHALLENGE_PERIOD - LOCK_EXPIRY_MARGIN
    paid = Lock("A", ETHER, expiry, hashlock(alice_pays))
    expired = Lock("A", ETHER // 4, expiry, hashlock(never_revealed))
    life.add_lock(paid, f"alice locks 1 ETH for bob until {expiry}")
    life.add_lock(expired, f"alice locks 0.25 ETH for bob until {expiry}")
    bob, contract_, recorder = life.cast.bob, life.contract, life.recorder
    latest = life.latest
    assert latest is not None
    recorder.note(
        f"alice locked 1 ETH and 0.25 ETH for bob, each payable against the secret of its hashlock (sha256) "
        f"until {expiry} (at most now + the {CHALLENGE_PERIOD} s period - {LOCK_EXPIRY_MARGIN} s, the channel's rule); "
        f"nonce {latest.state.nonce} commits to both locks (locksRoot) and their total (lockedA)"
    )
    recorder.note(
        "bob learned the secret of the 1 ETH lock (from the payment's recipient); alice disappeared before "
        "signing the state that pays it to him off-chain; the secret of the 0.25 ETH lock never came"
    )
    recorder.send("reveal secret (bob)", bob, lambda: contract_.reveal_secret(bob, alice_pays))
    revealed_at = contract_.revealed_at(paid.hashlock)
    recorder.note(
        f"bob revealed the secret on chain at {revealed_at} (<= expiry {expiry}): the registry keeps the time, "
        "for every channel holding that hashlock"
    )
    recorder.send("close with latest state (bob)", bob, lambda: contract_.close(bob, life.params, latest))
    deadline = contract_.get_channel(life.channel_id).deadline
    recorder.note(
        f"bob closed with nonce {latest.state.nonce}: the close records the locked totals and the root, not "
        f"the list; the period runs until {deadline}, after both locks' expiry {expiry}"
    )
    chain.time_travel(CHALLENGE_PERIOD + 1)
    settled = recorder.send(
        "settle with 2 locks (bob)", bob, lambda: contract_.settle(bob, life.params, locks=life.locks)
    )
    recorder.note(
        f"bob settled after the period (block time {_block_time(chain, settled)} > deadline {deadline}) with "
        "the lock list (its keccak256 is the recorded root): the revealed lock paid bob; the 0.25 ETH one, "
        f"expired at {expiry} unrevealed, went back to alice"
    )
    return recorder.finish()


def run_withdraw(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Bob takes part of his balance out while the channel stays open; they go on paying, then close."""
    life = _Lifecycle(chain, contract, TITLES["withdraw"])
    life.open(3 * ETHER)
    life.deposit("bob", 1 * ETHER)
    before = life.transfer("alice", 1 * ETHER)
    amount = 3 * ETHER // 2
    withdrawal, sig_a, sig_b = life.withdraw("bob", amount)
    alice, bob, contract_, recorder = life.cast.alice, life.cast.bob, life.contract, life.recorder
    after_a, after_b = withdrawal.deposits_after()
    recorder.note(
        f"both signed withdrawal {life.withdrawals} ({format_eth(amount)} to bob, out of his "
        f"{format_eth(before.state.balance_b)} balance) and the state that goes with it, which splits what is "
        f"left: A {format_eth(after_a)}, B {format_eth(after_b)} ({format_eth(withdrawal.deposit_b - after_b)} "
        f"from bob's deposit, {format_eth(withdrawal.deposit_a - after_a)} from alice's), withdrawal counter 1"
    )
    recorder.send(
        "withdraw while open (bob)", bob, lambda: contract_.withdraw(bob, life.params, withdrawal, sig_a, sig_b)
    )
    recorder.note(f"bob withdrew {format_eth(amount)}; the channel stays open and single-use: the counter moved to 1")
    try:
        contract_.close(alice, life.params, before)
    except WithdrawalCountMismatch as refused:
        recorder.note(
            f"the state nonce {before.state.nonce} from before the withdrawal (bob "
            f"{format_eth(before.state.balance_b)}) is void now: a close with it reverts with {refused} "
            "(found by the gas estimate; no transaction sent)"
        )
    else:
        raise RuntimeError("the contract accepted a state signed before the withdrawal")
    life.transfer("alice", ETHER // 2)
    final = life.final()
    recorder.send("cooperative close (alice)", alice, lambda: contract_.cooperative_close(alice, life.params, final))
    recorder.note(
        f"alice submitted the final state (nonce {final.state.nonce}): it split the deposits left after the "
        "withdrawal, and the contract paid both at once"
    )
    return recorder.finish()


def _block_time(chain: Chain, receipt: TxReceipt) -> int:
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def run_all(chain: Chain, payments: int = 20) -> list[Ledger]:
    """Every scenario in order on one contract (deployed by the first, recorded in its ledger)."""
    cooperative = run_cooperative(chain, payments=payments)
    contract = PaychanContract(chain, cooperative.contract)
    return [
        cooperative,
        run_dispute(chain, contract),
        run_cheater(chain, contract),
        run_conditional(chain, contract),
        run_withdraw(chain, contract),
    ]
