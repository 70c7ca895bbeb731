"""A readable account of one channel's lifecycle, built from receipts, blocks, events and balances.

``LedgerRecorder`` sends the lifecycle's transactions and writes down, for each, who sent it, the gas it
used and its fee split into the base fee (burned) and the priority tip (paid to the block producer), all
read from the receipt and its block. Deposits and payouts come from the contract's events, wallet balances
from the chain. ``Ledger.to_text()`` prints it for people, ``Ledger.to_json()`` for machines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD
from web3.types import TxReceipt

from paychan.chain import Chain
from paychan.contract import PaychanContract
from paychan.signing import Domain, recover_signer
from paychan.state import ETH, ChannelParams, SignedState

WEI_PER_ETH = 10**18


def format_eth(wei: int) -> str:
    """``wei`` as ETH with every significant digit (exact to the wei)."""
    value = Decimal(wei) / WEI_PER_ETH
    text = format(value.normalize(), "f") if value else "0"
    return f"{text} ETH"


@dataclass(frozen=True)
class TxRecord:
    """One on-chain transaction and what it cost its sender."""

    label: str
    sender: str
    sender_address: str
    tx_hash: str
    block: int
    gas_used: int
    effective_gas_price: int
    base_fee_per_gas: int
    fee: int
    base_fee_burned: int
    priority_tip: int
    block_producer: str


@dataclass(frozen=True)
class StateRecord:
    """One doubly-signed off-chain state: its balances and who signed it (recovered from the signatures)."""

    nonce: int
    balance_a: int
    balance_b: int
    is_final: bool
    signed_by: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class TimelinePoint:
    """Each participant's channel balance after one step (for plots)."""

    step: str
    balance_a: int
    balance_b: int
    onchain: bool


@dataclass
class PartyRecord:
    """What one participant put in, got back, and paid in fees; wallet balances read from the chain."""

    name: str
    role: str
    address: str
    deposited: int = 0
    paid_out: int = 0
    fees: int = 0
    fees_burned: int = 0
    fees_tip: int = 0
    wallet_before: int = 0
    wallet_after: int = 0

    @property
    def channel_result(self) -> int:
        """Payout minus deposit: what the channel moved to (+) or from (-) this party."""
        return self.paid_out - self.deposited

    @property
    def wallet_change(self) -> int:
        return self.wallet_after - self.wallet_before


@dataclass
class Ledger:
    """Everything that happened in one channel's lifecycle."""

    title: str
    chain_kind: str
    chain_id: int
    contract: str
    asset: str
    channel_id: str = ""
    challenge_period: int = 0
    parties: dict[str, PartyRecord] = field(default_factory=dict)
    deposits: list[dict[str, Any]] = field(default_factory=list)
    states: list[StateRecord] = field(default_factory=list)
    transactions: list[TxRecord] = field(default_factory=list)
    payouts: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    # --- derived ----------------------------------------------------------------------------------

    def fees_by_sender(self) -> dict[str, int]:
        fees: dict[str, int] = {}
        for tx in self.transactions:
            fees[tx.sender] = fees.get(tx.sender, 0) + tx.fee
        return fees

    def total_burned(self) -> int:
        return sum(tx.base_fee_burned for tx in self.transactions)

    def total_tips(self) -> int:
        return sum(tx.priority_tip for tx in self.transactions)

    def to_json(self) -> dict[str, Any]:
        parties = {}
        for name, p in self.parties.items():
            parties[name] = {
                **asdict(p),
                "channel_result": p.channel_result,
                "wallet_change": p.wallet_change,
                "reconciles": p.wallet_change == p.channel_result - p.fees,
            }
        return {
            "title": self.title,
            "chain": {"kind": self.chain_kind, "chain_id": self.chain_id},
            "contract": self.contract,
            "asset": self.asset,
            "channel_id": self.channel_id,
            "challenge_period": self.challenge_period,
            "parties": parties,
            "deposits": self.deposits,
            "states": [asdict(s) for s in self.states],
            "transactions": [asdict(t) for t in self.transactions],
            "payouts": self.payouts,
            "fees": {
                "base_fee_burned": self.total_burned(),
                "priority_tips_to_block_producer": self.total_tips(),
            },
            "timeline": [asdict(t) for t in self.timeline],
            "events": self.events,
        }

    def to_text(self) -> str:
        lines: list[str] = []
        out = lines.append
        out(f"== {self.title} ==")
        out(f"chain: {self.chain_kind} (chain id {self.chain_id}); contract {self.contract}")
        out(
            f"channel {self.channel_id}; asset {'ETH' if self.asset == ETH else self.asset}; "
            f"challenge period {self.challenge_period} s"
        )
        for p in self.parties.values():
            out(f"  participant {p.role}: {p.name} {p.address}")
        out("")
        out("Deposits (who locked up funds, from Deposited events):")
        for d in self.deposits:
            out(
                f"  {d['depositor']} deposited {format_eth(d['amount'])} for {d['participant']} "
                f"(tx {d['tx_hash'][:12]}…, block {d['block']})"
            )
        out("")
        out(f"Off-chain states ({len(self.states)}, each signed by both; no gas, no transaction):")
        for s in self.states:
            final = "FINAL" if s.is_final else ""
            out(
                f"  nonce {s.nonce:>3} {final:<5} A {format_eth(s.balance_a):>26}  B {format_eth(s.balance_b):>26}"
                f"  signed by {' + '.join(s.signed_by)}  ({s.note})"
            )
        out("")
        out("On-chain transactions (fee = gas used x effective gas price = base fee burned + tip to block producer):")
        for t in self.transactions:
            out(
                f"  {t.label:<34} sent by {t.sender:<10} gas {t.gas_used:>9,}  fee {t.fee:>17,} wei "
                f"= burned {t.base_fee_burned:>17,} + tip {t.priority_tip:>15,} (block {t.block})"
            )
        out(
            f"  total burned: {format_eth(self.total_burned())}; total tips to block producer "
            f"{self._producers()}: {format_eth(self.total_tips())}"
        )
        out("")
        out("Payouts (from the contract's events):")
        for payout in self.payouts:
            how = "pushed" if not payout.get("deferred") else "deferred to claim"
            out(f"  {payout['name']} got back {format_eth(payout['amount'])} ({how})")
        if self.events:
            out("")
            out("What happened:")
            for e in self.events:
                out(f"  - {e}")
        out("")
        out("Where the money went (wallet balances read from the chain before and after):")
        for p in self.parties.values():
            direction = "received from" if p.channel_result >= 0 else "paid to"
            other = next((q.name for q in self.parties.values() if q is not p), "the counterparty")
            ok = "✓" if p.wallet_change == p.channel_result - p.fees else "✗ MISMATCH"
            out(
                f"  {p.name}: deposited {format_eth(p.deposited)}, got back {format_eth(p.paid_out)}: "
                f"{direction} {other} {format_eth(abs(p.channel_result))} through the channel; "
                f"fees {format_eth(p.fees)}"
            )
            out(
                f"      fees: {format_eth(p.fees_burned)} base fee burned + "
                f"{format_eth(p.fees_tip)} tip to the block producer"
            )
            out(
                f"      wallet {format_eth(p.wallet_before)} -> {format_eth(p.wallet_after)} "
                f"(change {format_eth(p.wallet_change)} = channel result - fees {ok})"
            )
        deposited = sum(p.deposited for p in self.parties.values())
        paid_out = sum(p.paid_out for p in self.parties.values())
        out(
            f"  channel: {format_eth(deposited)} deposited, {format_eth(paid_out)} paid out; "
            f"the contract keeps {format_eth(deposited - paid_out)}"
        )
        out(
            "  what one party lost through the channel the other gained (off-chain payments cost no gas); "
            "fees went to the burn (base fee) and to the block producer (tip); each sender paid its own."
        )
        return "\n".join(lines)

    def _producers(self) -> str:
        producers = sorted({t.block_producer for t in self.transactions})
        return ", ".join(producers)


class LedgerRecorder:
    """Sends a lifecycle's transactions through ``PaychanContract`` and records them in a ``Ledger``."""

    def __init__(self, chain: Chain, contract: PaychanContract, title: str, names: dict[str, str]) -> None:
        self.chain = chain
        self.contract = contract
        self.names = {address.lower(): name for address, name in names.items()}
        self.ledger = Ledger(
            title=title,
            chain_kind=chain.kind,
            chain_id=chain.chain_id,
            contract=contract.address,
            asset=ETH,
        )
        self._start_block = int(chain.w3.eth.block_number)

    def name(self, address: str) -> str:
        return self.names.get(address.lower(), address)

    def begin(self, params: ChannelParams, wallets_before_block: int) -> None:
        """Starts the ledger for channel ``params``; wallet balances are read at ``wallets_before_block``."""
        ledger = self.ledger
        ledger.asset = params.asset
        ledger.challenge_period = params.challenge_period
        ledger.channel_id = "0x" + self.contract.channel_id(params).hex()
        for role, address in (("A", params.participant_a), ("B", params.participant_b)):
            name = self.name(address)
            ledger.parties[name] = PartyRecord(
                name=name,
                role=role,
                address=address,
                wallet_before=self.chain.balance(address, wallets_before_block),
            )

    def send(self, label: str, sender: LocalAccount, action: Callable[[], TxReceipt]) -> TxReceipt:
        """Runs ``action`` (one transaction from ``sender``) and records its receipt."""
        receipt = action()
        self.record(label, sender.address, receipt)
        return receipt

    def record(self, label: str, sender: str, receipt: TxReceipt) -> TxRecord:
        block = self.chain.w3.eth.get_block(receipt["blockNumber"])
        base_fee = int(block["baseFeePerGas"])
        gas_used = int(receipt["gasUsed"])
        price = int(receipt["effectiveGasPrice"])
        record = TxRecord(
            label=label,
            sender=self.name(sender),
            sender_address=sender,
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block=int(receipt["blockNumber"]),
            gas_used=gas_used,
            effective_gas_price=price,
            base_fee_per_gas=base_fee,
            fee=gas_used * price,
            base_fee_burned=gas_used * base_fee,
            priority_tip=gas_used * (price - base_fee),
            block_producer=str(block["miner"]),
        )
        self.ledger.transactions.append(record)
        self._record_events(receipt)
        return record

    def record_state(self, domain: Domain, signed: SignedState, note: str) -> None:
        signers = []
        for sig in (signed.sig_a, signed.sig_b):
            if sig is not None:
                signers.append(self.name(recover_signer(domain, signed.state, sig)))
        s = signed.state
        self.ledger.states.append(StateRecord(s.nonce, s.balance_a, s.balance_b, s.is_final, tuple(signers), note))
        self.ledger.timeline.append(TimelinePoint(f"nonce {s.nonce}", s.balance_a, s.balance_b, False))

    def note(self, text: str) -> None:
        self.ledger.events.append(text)

    def finish(self, wallets_after_block: int | str = "latest") -> Ledger:
        ledger = self.ledger
        for party in ledger.parties.values():
            sent = [tx for tx in ledger.transactions if tx.sender == party.name]
            party.fees = sum(tx.fee for tx in sent)
            party.fees_burned = sum(tx.base_fee_burned for tx in sent)
            party.fees_tip = sum(tx.priority_tip for tx in sent)
            party.wallet_after = self.chain.balance(party.address, wallets_after_block)
        return ledger

    # --- events -----------------------------------------------------------------------------------

    def _record_events(self, receipt: TxReceipt) -> None:
        events = self.contract.contract.events
        ledger = self.ledger
        block = int(receipt["blockNumber"])
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        for ev in events.Deposited().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            name = self.name(a["participant"])
            ledger.deposits.append(
                {
                    "depositor": self.name(a["depositor"]),
                    "participant": name,
                    "amount": a["amount"],
                    "total": a["total"],
                    "tx_hash": tx_hash,
                    "block": block,
                }
            )
            if name in ledger.parties:
                ledger.parties[name].deposited += a["amount"]
            self._timeline_onchain(f"{name} deposits")
        for ev in events.ChannelClosed().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            ledger.timeline.append(TimelinePoint(f"close (nonce {a['nonce']})", a["balanceA"], a["balanceB"], True))
        for ev in events.ChallengeAccepted().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            ledger.timeline.append(TimelinePoint(f"challenge (nonce {a['nonce']})", a["balanceA"], a["balanceB"], True))
        for ev in events.ChannelSettled().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            deferred = {
                d["args"]["recipient"]: d["args"]["amount"]
                for d in events.PayoutDeferred().process_receipt(receipt, errors=DISCARD)
            }
            parties = list(ledger.parties.values())
            for party, amount in zip(parties, (a["payoutA"], a["payoutB"]), strict=True):
                party.paid_out += amount
                ledger.payouts.append(
                    {
                        "name": party.name,
                        "role": party.role,
                        "amount": amount,
                        "deferred": party.address in deferred,
                        "tx_hash": tx_hash,
                        "block": block,
                    }
                )
            ledger.timeline.append(TimelinePoint("settled" if not a["cooperative"] else "closed", 0, 0, True))

    def _timeline_onchain(self, step: str) -> None:
        parties = list(self.ledger.parties.values())
        if len(parties) != 2:
            return
        last = self.ledger.timeline[-1] if self.ledger.timeline else None
        a = last.balance_a if last else 0
        b = last.balance_b if last else 0
        deposit = self.ledger.deposits[-1]
        if deposit["participant"] == parties[0].name:
            a += deposit["amount"]
        else:
            b += deposit["amount"]
        self.ledger.timeline.append(TimelinePoint(step, a, b, True))
