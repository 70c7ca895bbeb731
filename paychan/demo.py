"""The lifecycles ``paychan demo`` runs and explains: a cooperative channel, a disputed one, a cheater
punished, a conditional payment settled on chain, and a withdrawal while open.

All drive the real contract through ``PaychanContract`` and record every step in a ``Ledger``: deposits,
each doubly-signed state with the signers recovered from its signatures, every other signed message
(revocations, withdrawals), every transaction with its fee read from the receipt and block, the
withdrawals, penalties, revealed secrets and payouts from the contract's events and the wallet balances read
from the chain. Nothing in the ledger is computed by this module.

Every scenario runs the off-chain protocol through one ``Channel`` object per participant (each holding
only its own key), the SDK a user would use: payments (``propose_payment``/``receive_proposal``/
``receive_countersignature``), conditional payments (``propose_lock``, ``propose_settle_lock``), revocations
(``sign_revocation``/``receive_revocation``, ``check_close``) and withdrawals (``propose_withdrawal``/
``receive_withdrawal``/``receive_withdrawal_countersignature``/``record_withdrawal``). The states and
messages the contract is given are the ones these objects hold.

``scripts/`` and the CLI call these functions; they run on the embedded chain or on any JSON-RPC node.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from paychan.chain import Chain
from paychan.channel import LOCK_EXPIRY_MARGIN, Channel, PendingWithdrawal, agree_final, pay
from paychan.contract import PaychanContract
from paychan.exceptions import RevokedNonce, WithdrawalCountMismatch
from paychan.ledger import Ledger, LedgerRecorder, format_eth
from paychan.state import Lock, SignedState, hashlock

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

    def open(self, deposit_a: int) -> None:
        alice, bob = self.cast.alice, self.cast.bob
        before = int(self.chain.w3.eth.block_number)
        params, receipt = self.contract.open_channel(alice, bob.address, deposit_a, challenge_period=CHALLENGE_PERIOD)
        self.params = params
        self.channel_id = self.contract.channel_id(params)
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
        for channel in self.channels.values():
            channel.record_deposit(role, amount)
        self.recorder.note(f"{name} deposited {format_eth(amount)}: the channel is now funded by both sides")

    def pay(self, payer: str, amount: int) -> SignedState:
        """One off-chain payment: the payer signs the next state, the payee countersigns, the payer checks."""
        payee = "bob" if payer == "alice" else "alice"
        signed = pay(self.channels[payer], self.channels[payee], amount)
        self.recorder.record_state(
            self.contract.domain, signed, f"{payer} pays {payee} {format_eth(amount)}", self.channels[payer].locks
        )
        return signed

    def finalize(self) -> SignedState:
        """Both sign the latest balances as final: the state a cooperative close needs."""
        signed = agree_final(self.channels["alice"], self.channels["bob"])
        self.recorder.record_state(self.contract.domain, signed, "final: both agree to close")
        return signed

    # --- the v2 messages, through both parties' Channel objects ----------------------------------------

    def revoke(self) -> None:
        """Each side, now holding the latest state signed by both, revokes every nonce below it
        (``sign_revocation``) and sends the revocation to the other, which keeps it (``receive_revocation``)."""
        for name, peer in (("alice", "bob"), ("bob", "alice")):
            signed = self.channels[name].sign_revocation()
            if signed is None:
                raise RuntimeError(f"{name} has nothing new to revoke")
            revocation, signature = signed
            self.channels[peer].receive_revocation(revocation, signature)
            nonce = revocation.below_nonce
            self.recorder.record_message(
                self.contract.domain,
                revocation,
                [signature],
                f"{name} promises never to close below nonce {nonce} (both hold nonce {nonce})",
            )

    def lock(self, sender: str, amount: int, lock_hash: bytes, expiry: int) -> Lock:
        """A conditional payment: the sender proposes the lock (``propose_lock``), the receiver checks it
        against the channel's rules at the chain's time and countersigns (``receive_proposal(lock=...)``)."""
        receiver = "bob" if sender == "alice" else "alice"
        now = self.chain.now()
        proposal, lock = self.channels[sender].propose_lock(amount, lock_hash, expiry, now)
        signed = self.channels[receiver].receive_proposal(proposal, lock=lock, now=now)
        self.channels[sender].receive_countersignature(signed)
        self.recorder.record_state(
            self.contract.domain,
            signed,
            f"{sender} locks {format_eth(amount)} for {receiver} until {expiry}",
            self.channels[sender].locks,
        )
        return lock

    def withdraw(self, name: str, amount: int) -> tuple[SignedState, PendingWithdrawal]:
        """``name`` proposes a withdrawal of ``amount`` of its balance with the state it leaves
        (``propose_withdrawal``); the peer checks and countersigns both (``receive_withdrawal``); the proposer
        checks the countersignatures (``receive_withdrawal_countersignature``). Returns the state from before
        it (the one the chain accepts until the withdrawal is made) and the withdrawal signed by both."""
        peer = "bob" if name == "alice" else "alice"
        proposer, other = self.channels[name], self.channels[peer]
        expiry = self.chain.now() + CHALLENGE_PERIOD
        withdrawal, signature, proposal = proposer.propose_withdrawal(amount, expiry)
        peer_signature, signed = other.receive_withdrawal(withdrawal, signature, proposal, self.chain.now())
        proposer.receive_withdrawal_countersignature(peer_signature, signed)
        pending = proposer.pending_withdrawal
        assert pending is not None and pending.sig_a is not None and pending.sig_b is not None
        domain = self.contract.domain
        self.recorder.record_message(
            domain,
            withdrawal,
            [pending.sig_a, pending.sig_b],
            f"withdrawal {withdrawal.withdrawals + 1}: {name} takes {format_eth(amount)} out of the open channel "
            f"(valid until {withdrawal.expiry})",
        )
        self.recorder.record_state(
            domain, signed, f"{name}'s balance after withdrawal {withdrawal.withdrawals + 1}", proposer.locks
        )
        return pending.before, pending

    def record_withdrawal(self) -> None:
        """Both note the withdrawal the chain made: the channel's deposits and counter, read from its slot."""
        onchain = self.contract.get_channel(self.channel_id)
        for channel in self.channels.values():
            channel.record_withdrawal(onchain.deposit_a, onchain.deposit_b, onchain.withdrawals)


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


def _revoked_and_newest(life: _Lifecycle) -> tuple[SignedState, SignedState]:
    """Alice opens with 4 ETH, bob deposits 1, alice pays 1 ETH twice, bob pays 0.5 back, both revoking
    every older nonce after each of the last two: alice's first state (which she revoked) and the newest."""
    life.open(4 * ETHER)
    life.deposit("bob", 1 * ETHER)
    revoked = life.pay("alice", 1 * ETHER)
    life.pay("alice", 1 * ETHER)
    life.revoke()
    newest = life.pay("bob", ETHER // 2)
    life.revoke()
    return revoked, newest


def run_cheater(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Alice closes with a state she revoked; bob proves it with her revocation and gets the whole channel."""
    life = _Lifecycle(chain, contract, TITLES["cheater"])
    revoked, newest = _revoked_and_newest(life)
    alice, bob, contract_, recorder = life.cast.alice, life.cast.bob, life.contract, life.recorder
    held = life.channels["bob"].peer_revocation
    assert held is not None
    revocation, signature = held
    recorder.note(
        f"after each newer state both signed a revocation of every older nonce (Channel.sign_revocation) and "
        f"sent it to the other (receive_revocation): alice's latest promises never to close below nonce "
        f"{revocation.below_nonce}, and bob holds it"
    )
    try:
        life.channels["alice"].check_close(revoked)
    except RevokedNonce as refused:
        recorder.note(
            f"alice's own Channel refuses to close with nonce {revoked.state.nonce}: check_close raises "
            f"{refused}; she bypasses it and sends the close to the contract herself"
        )
    else:
        raise RuntimeError("alice's channel would close below her own revocation")
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
    life.pay("alice", ETHER // 2)
    alice_pays, never_revealed = secrets.token_bytes(32), secrets.token_bytes(32)
    # the channel's rule: a lock expires before a close started now could settle, by LOCK_EXPIRY_MARGIN
    expiry = life.channels["alice"].latest_expiry(chain.now())
    paid = life.lock("alice", ETHER, hashlock(alice_pays), expiry)
    life.lock("alice", ETHER // 4, hashlock(never_revealed), expiry)
    bob, contract_, recorder = life.cast.bob, life.contract, life.recorder
    bobs = life.channels["bob"]
    latest = bobs.latest
    recorder.note(
        f"alice locked 1 ETH and 0.25 ETH for bob (Channel.propose_lock; bob checked each with receive_proposal), "
        f"each payable against the secret of its hashlock (sha256) until {expiry} (at most now + the "
        f"{CHALLENGE_PERIOD} s period - {LOCK_EXPIRY_MARGIN} s, the channel's rule); nonce {latest.state.nonce} "
        "commits to both locks (locksRoot) and their total (lockedA)"
    )
    settle_offchain = bobs.propose_settle_lock(alice_pays)
    recorder.note(
        f"bob learned the secret of the 1 ETH lock (from the payment's recipient) and proposed the state that pays "
        f"it to him (propose_settle_lock, nonce {settle_offchain.state.nonce}, his signature only); alice "
        "disappeared without countersigning it; the secret of the 0.25 ETH lock never came"
    )
    recorder.send("reveal secret (bob)", bob, lambda: contract_.reveal_secret(bob, alice_pays))
    revealed_at = contract_.revealed_at(paid.hashlock)
    recorder.note(
        f"bob revealed the secret on chain at {revealed_at} (<= expiry {expiry}): the registry keeps the time, "
        "for every channel holding that hashlock"
    )
    bobs.check_close(latest)
    recorder.send("close with latest state (bob)", bob, lambda: contract_.close(bob, life.params, latest))
    deadline = contract_.get_channel(life.channel_id).deadline
    recorder.note(
        f"bob closed with nonce {latest.state.nonce}, the latest state both signed: the close records the locked "
        f"totals and the root, not the list; the period runs until {deadline}, after both locks' expiry {expiry}"
    )
    chain.time_travel(CHALLENGE_PERIOD + 1)
    settled = recorder.send(
        "settle with 2 locks (bob)", bob, lambda: contract_.settle(bob, life.params, locks=bobs.locks)
    )
    recorder.note(
        f"bob settled after the period (block time {_block_time(chain, settled)} > deadline {deadline}) with "
        "the lock list his Channel holds (its keccak256 is the recorded root): the revealed lock paid bob; the "
        f"0.25 ETH one, expired at {expiry} unrevealed, went back to alice"
    )
    return recorder.finish()


def run_withdraw(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Bob takes part of his balance out while the channel stays open; they go on paying, then close."""
    life = _Lifecycle(chain, contract, TITLES["withdraw"])
    life.open(3 * ETHER)
    life.deposit("bob", 1 * ETHER)
    life.pay("alice", 1 * ETHER)
    amount = 3 * ETHER // 2
    before, pending = life.withdraw("bob", amount)
    withdrawal = pending.withdrawal
    alice, bob, contract_, recorder = life.cast.alice, life.cast.bob, life.contract, life.recorder
    after_a, after_b = withdrawal.deposits_after()
    recorder.note(
        f"bob proposed withdrawal {withdrawal.withdrawals + 1} (Channel.propose_withdrawal: "
        f"{format_eth(amount)} out of his {format_eth(before.state.balance_b)} balance) with the state that goes "
        f"with it, and alice checked and countersigned both (receive_withdrawal); the withdrawal names the "
        f"deposits it is taken from (A {format_eth(withdrawal.deposit_a)}, B {format_eth(withdrawal.deposit_b)}) "
        f"and the state splits what is left: A {format_eth(after_a)}, B {format_eth(after_b)} "
        f"({format_eth(withdrawal.deposit_b - after_b)} from bob's deposit, "
        f"{format_eth(withdrawal.deposit_a - after_a)} from alice's), withdrawal counter "
        f"{withdrawal.withdrawals + 1}"
    )
    assert pending.sig_a is not None and pending.sig_b is not None
    sig_a, sig_b = pending.sig_a, pending.sig_b
    recorder.send(
        "withdraw while open (bob)", bob, lambda: contract_.withdraw(bob, life.params, withdrawal, sig_a, sig_b)
    )
    life.record_withdrawal()
    counter = contract_.get_channel(life.channel_id).withdrawals
    recorder.note(
        f"bob withdrew {format_eth(amount)}; the channel stays open and the withdrawal is single-use: the "
        f"counter moved to {counter}; both Channels noted it (record_withdrawal)"
    )
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
    life.pay("alice", ETHER // 2)
    final = life.finalize()
    recorder.send("cooperative close (alice)", alice, lambda: contract_.cooperative_close(alice, life.params, final))
    recorder.note(
        f"alice submitted the final state (nonce {final.state.nonce}): it split the deposits left after the "
        "withdrawal, and the contract paid both at once"
    )
    return recorder.finish()


def _block_time(chain: Chain, receipt: TxReceipt) -> int:
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


WATCHTOWER_TITLE = "A watchtower defends an offline party"


def run_watchtower(chain: Chain, contract: PaychanContract | None = None) -> Ledger:
    """Bob pushes his newest state and alice's revocation to a watchtower (``paychan.tower``) and goes
    offline; alice closes with a state she revoked; the tower, from its own account (the chain's fourth),
    proves it and settles: bob gets the whole channel and sends no transaction, the tower pays the gas."""
    from paychan.node.messages import SignedRevocation
    from paychan.signers import LocalKeySigner
    from paychan.tower.protocol import sign_push, verify_push
    from paychan.tower.watcher import Closing, TowerSendProveRevoked, TowerSendSettle, decide

    if len(chain.accounts) < 4:
        raise ValueError(f"the watchtower demo needs 4 funded accounts with keys, the chain has {len(chain.accounts)}")
    tower = chain.accounts[3]
    life = _Lifecycle(chain, contract, WATCHTOWER_TITLE)
    life.recorder.names[tower.address.lower()] = "tower"
    revoked, newest = _revoked_and_newest(life)
    alice, bob, contract_, recorder = life.cast.alice, life.cast.bob, life.contract, life.recorder
    bobs = life.channels["bob"]
    held = bobs.peer_revocation
    assert held is not None
    push = sign_push(
        LocalKeySigner(bob.key), contract_.domain, newest, (), SignedRevocation(held[0].below_nonce, held[1]), (), True
    )
    role = verify_push(push, contract_.domain, life.params)
    recorder.note(
        f"bob pushed nonce {push.nonce} and alice's revocation below {push.revoked_below} to the tower, signed "
        f"(EIP-712 TowerPush); the tower checked both signatures on the state and alice's on the revocation "
        f"(bob is {role}), and bob went offline"
    )
    recorder.send("close with revoked state (alice)", alice, lambda: contract_.close(alice, life.params, revoked))

    def tower_acts(label: str) -> None:
        onchain = contract_.get_channel(life.channel_id)
        assert onchain.closed_by is not None
        closing = Closing(contract_.recorded_state(life.channel_id), onchain.closed_by, onchain.penalized)
        action = decide(push, role, closing, chain.now() + 1)
        if isinstance(action, TowerSendProveRevoked):
            below, signature = push.revoked_below, held[1]
            recorder.send(label, tower, lambda: contract_.prove_revoked(tower, life.params, below, signature))
        elif isinstance(action, TowerSendSettle):
            recorder.send(label, tower, lambda: contract_.settle(tower, life.params, closing.recorded))
        else:
            raise RuntimeError(f"the tower decided {action!r}")

    tower_acts("prove revoked state (tower)")
    recorder.note(
        f"the tower saw the close of nonce {revoked.state.nonce} and held alice's revocation below "
        f"{push.revoked_below}: it proved it at once, from its own account"
    )
    chain.time_travel(CHALLENGE_PERIOD + 1)
    tower_acts("settle (tower)")
    recorder.note("bob had asked the tower to settle: the whole channel went to bob; the tower paid both fees")
    return recorder.finish()


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
