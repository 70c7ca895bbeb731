"""The two lifecycles ``paychan demo`` runs and explains: a cooperative channel and a disputed one.

Both drive the real contract through ``PaychanContract`` and the real off-chain protocol through one
``Channel`` object per participant (each holding only its own key), and record every step in a ``Ledger``:
deposits, each doubly-signed state with the signers recovered from its signatures, every transaction with
its fee read from the receipt and block, the payouts from the contract's events and the wallet balances
read from the chain. Nothing in the ledger is computed by this module.

``scripts/`` and the CLI call these functions; they run on the embedded chain or on any JSON-RPC node.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from paychan.chain import Chain
from paychan.channel import Channel, agree_final, pay
from paychan.contract import PaychanContract
from paychan.ledger import Ledger, LedgerRecorder, format_eth
from paychan.state import SignedState

ETHER = 10**18
CHALLENGE_PERIOD = 3600  # one hour, the contract's minimum


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
        self.recorder.record_state(self.contract.domain, signed, f"{payer} pays {payee} {format_eth(amount)}")
        return signed

    def finalize(self) -> SignedState:
        """Both sign the latest balances as final: the state a cooperative close needs."""
        signed = agree_final(self.channels["alice"], self.channels["bob"])
        self.recorder.record_state(self.contract.domain, signed, "final: both agree to close")
        return signed


def run_cooperative(chain: Chain, contract: PaychanContract | None = None, payments: int = 20) -> Ledger:
    """Open, both deposit, ``payments`` payments both ways off-chain, then close cooperatively."""
    life = _Lifecycle(chain, contract, "Cooperative lifecycle")
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
    life = _Lifecycle(chain, contract, "Dispute: a stale close beaten by a challenge")
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
