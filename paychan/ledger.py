"""A readable account of one channel's lifecycle, built from receipts, blocks, events and balances.

``LedgerRecorder`` sends the lifecycle's transactions and writes down, for each, who sent it, the gas it
used and its fee split into the base fee (burned) and the priority tip (paid to the block producer), all
read from the receipt and its block. Deposits, withdrawals while open, penalties, revealed secrets and
payouts come from the contract's events; the locks a settle resolved from its calldata, each checked
against the secret registry at the settle's block; wallet balances from the chain. ``Ledger.to_text()``
prints it for people, ``Ledger.to_json()`` for machines.

Conservation, to the wei: what was deposited equals what was paid out, plus what was withdrawn while the
channel was open, plus what the channel's slot still holds on chain (``Ledger.conserved``).
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
from paychan.contract import PaychanContract, RecordedState
from paychan.signing import Domain, message_digest, recover_digest_signer, recover_signer
from paychan.state import (
    DIRECTION_A_PAYS_B,
    DIRECTION_B_PAYS_A,
    ETH,
    LOCK_SIZE,
    ChannelId,
    ChannelParams,
    Lock,
    Revocation,
    Signature,
    SignedState,
    Withdrawal,
)

WEI_PER_ETH = 10**18


def format_eth(wei: int) -> str:
    """``wei`` as ETH with every significant digit (exact to the wei)."""
    value = Decimal(wei) / WEI_PER_ETH
    text = format(value.normalize(), "f") if value else "0"
    return f"{text} ETH"


def short_hex(data: bytes) -> str:
    return "0x" + data.hex()[:8] + "…"


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
    """One doubly-signed off-chain state: its balances, what each side has locked in pending conditional
    payments (``locks``), the withdrawal counter it was signed under, and who signed it (recovered from the
    signatures)."""

    nonce: int
    balance_a: int
    balance_b: int
    is_final: bool
    signed_by: tuple[str, ...]
    note: str
    locked_a: int = 0
    locked_b: int = 0
    withdrawals: int = 0
    deposit_a: int = 0
    deposit_b: int = 0
    locks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class MessageRecord:
    """Another signed off-chain message: a ``Revocation`` or a ``Withdrawal``, with its signers recovered."""

    kind: str
    signed_by: tuple[str, ...]
    summary: str
    message: dict[str, object]
    signatures: tuple[str, ...] = ()


@dataclass(frozen=True)
class TimelinePoint:
    """Each participant's channel balance (and locked amount) after one step (for plots)."""

    step: str
    balance_a: int
    balance_b: int
    onchain: bool
    locked_a: int = 0
    locked_b: int = 0


@dataclass
class PartyRecord:
    """What one participant put in, took out while open, got back, and paid in fees; wallet balances read
    from the chain."""

    name: str
    role: str
    address: str
    deposited: int = 0
    withdrawn: int = 0
    paid_out: int = 0
    fees: int = 0
    fees_burned: int = 0
    fees_tip: int = 0
    wallet_before: int = 0
    wallet_after: int = 0

    @property
    def channel_result(self) -> int:
        """Payout plus withdrawals minus deposit: what the channel moved to (+) or from (-) this party."""
        return self.paid_out + self.withdrawn - self.deposited

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
    messages: list[MessageRecord] = field(default_factory=list)
    transactions: list[TxRecord] = field(default_factory=list)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)
    penalties: list[dict[str, Any]] = field(default_factory=list)
    settled_locks: list[dict[str, Any]] = field(default_factory=list)
    lock_check: dict[str, Any] | None = None
    payouts: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    channel_holds: int = 0

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

    def total_deposited(self) -> int:
        return sum(p.deposited for p in self.parties.values())

    def total_paid_out(self) -> int:
        return sum(p.paid_out for p in self.parties.values())

    def total_withdrawn(self) -> int:
        return sum(p.withdrawn for p in self.parties.values())

    @property
    def conserved(self) -> bool:
        """Deposits = payouts + withdrawals while open + what the channel's slot holds, to the wei."""
        return self.total_deposited() == self.total_paid_out() + self.total_withdrawn() + self.channel_holds

    def party_by_role(self, role: str) -> PartyRecord:
        return next(p for p in self.parties.values() if p.role == role)

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
            "messages": [asdict(m) for m in self.messages],
            "transactions": [asdict(t) for t in self.transactions],
            "withdrawals": self.withdrawals,
            "secrets": self.secrets,
            "penalties": self.penalties,
            "settled_locks": self.settled_locks,
            "lock_check": self.lock_check,
            "payouts": self.payouts,
            "fees": {
                "base_fee_burned": self.total_burned(),
                "priority_tips_to_block_producer": self.total_tips(),
            },
            "conservation": {
                "deposited": self.total_deposited(),
                "paid_out": self.total_paid_out(),
                "withdrawn": self.total_withdrawn(),
                "channel_holds": self.channel_holds,
                "holds": self.conserved,
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
            extra = ""
            if s.locked_a or s.locked_b:
                locked = ", ".join(
                    f"{role} {format_eth(amount)}" for role, amount in (("A", s.locked_a), ("B", s.locked_b)) if amount
                )
                count = len(s.locks)
                extra += f"  locked {locked} in {count} lock{'s' if count != 1 else ''}"
            if s.withdrawals:
                extra += f"  after withdrawal {s.withdrawals}"
            out(
                f"  nonce {s.nonce:>3} {final:<5} A {format_eth(s.balance_a):>26}  B {format_eth(s.balance_b):>26}"
                f"{extra}  signed by {' + '.join(s.signed_by)}  ({s.note})"
            )
        if self.messages:
            out("")
            out(f"Other signed messages ({len(self.messages)}, off-chain; no gas, no transaction):")
            for m in self.messages:
                out(f"  {m.kind:<10} signed by {' + '.join(m.signed_by):<11} {m.summary}")
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
        if self.withdrawals:
            out("")
            out("Withdrawals while open (from Withdrawn events; the channel stays open):")
            for w in self.withdrawals:
                taken = ", ".join(
                    f"{name} {format_eth(amount)}"
                    for name, amount in ((w["name_a"], w["amount_a"]), (w["name_b"], w["amount_b"]))
                    if amount
                )
                out(
                    f"  withdrawal {w['withdrawals']}: paid {taken}; the channel's deposits are now "
                    f"A {format_eth(w['deposit_a'])}, B {format_eth(w['deposit_b'])} "
                    f"(were A {format_eth(w['deposit_a_before'])}, B {format_eth(w['deposit_b_before'])}; "
                    f"tx {w['tx_hash'][:12]}…, block {w['block']})"
                )
        if self.secrets:
            out("")
            out("Secrets revealed on chain (SecretRevealed events; a reveal counts for every channel with it):")
            for r in self.secrets:
                out(
                    f"  {r['revealed_by']} revealed the secret of hashlock {r['hashlock'][:10]}… at block time "
                    f"{r['timestamp']} (tx {r['tx_hash'][:12]}…, block {r['block']})"
                )
        if self.penalties:
            out("")
            out("Penalty (from RevokedStateProven):")
            for pen in self.penalties:
                out(
                    f"  {pen['cheater']} closed with nonce {pen['closer_nonce']} after revoking every nonce below "
                    f"{pen['below_nonce']}; {pen['proven_by']} proved it with {pen['cheater']}'s signed revocation "
                    f"(tx {pen['tx_hash'][:12]}…, block {pen['block']}): settle pays the whole channel to "
                    f"{pen['honest']}"
                )
        if self.settled_locks:
            out("")
            out("Locks resolved by settle (the list from its calldata, each checked against the secret registry):")
            for i, lock in enumerate(self.settled_locks, 1):
                if lock["revealed_at"]:
                    when = f"revealed at {lock['revealed_at']}"
                    when += " (at or before its expiry)" if lock["paid"] else " (after its expiry)"
                else:
                    when = "never revealed"
                to = lock["receiver"] if lock["paid"] else f"back to {lock['sender']}"
                out(
                    f"  lock {i}: {lock['sender']} -> {lock['receiver']} {format_eth(lock['amount'])}, hashlock "
                    f"{lock['hashlock'][:10]}…, expiry {lock['expiry']}: {when} -> {to}"
                )
            check = self.lock_check
            if check is not None:
                ok = "✓" if check["matches"] else "✗ MISMATCH"
                out(
                    f"  recorded payouts before locks A {format_eth(check['recorded_a'])}, "
                    f"B {format_eth(check['recorded_b'])}, plus the locks as resolved = "
                    f"A {format_eth(check['expected_a'])}, B {format_eth(check['expected_b'])}: "
                    f"what settle paid {ok}"
                )
        out("")
        out("Payouts (from the contract's events):")
        for payout in self.payouts:
            how = "pushed" if not payout.get("deferred") else "deferred to claim"
            if payout.get("penalty"):
                how += "; the whole channel, as the penalty"
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
            withdrew = f"withdrew {format_eth(p.withdrawn)} while open, " if p.withdrawn else ""
            out(
                f"  {p.name}: deposited {format_eth(p.deposited)}, {withdrew}got back {format_eth(p.paid_out)}: "
                f"{direction} {other} {format_eth(abs(p.channel_result))} through the channel; "
                f"fees {format_eth(p.fees)}"
            )
            for pen in self.penalties:
                if pen["cheater"] == p.name and pen.get("forfeited") is not None:
                    out(
                        f"      penalty: {p.name}'s deposit of {format_eth(p.deposited)} went to {pen['honest']}; "
                        f"the newest state both signed (nonce {pen['newest_nonce']}) would have paid {p.name} "
                        f"{format_eth(pen['forfeited'])}, which the penalty gave to {pen['honest']} as well"
                    )
            out(
                f"      fees: {format_eth(p.fees_burned)} base fee burned + "
                f"{format_eth(p.fees_tip)} tip to the block producer"
            )
            out(
                f"      wallet {format_eth(p.wallet_before)} -> {format_eth(p.wallet_after)} "
                f"(change {format_eth(p.wallet_change)} = channel result - fees {ok})"
            )
        deposited, paid_out, withdrawn = self.total_deposited(), self.total_paid_out(), self.total_withdrawn()
        kept = deposited - paid_out - withdrawn
        taken = f", {format_eth(withdrawn)} withdrawn while open" if withdrawn else ""
        ok = "✓" if self.conserved else "✗ MISMATCH"
        out(
            f"  channel: {format_eth(deposited)} deposited, {format_eth(paid_out)} paid out{taken}; "
            f"the contract keeps {format_eth(kept)} (its slot holds {format_eth(self.channel_holds)}: "
            f"deposits = payouts + withdrawn + kept, to the wei {ok})"
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
        self._channel_id = b""
        self._deposits = {"A": 0, "B": 0}  # the channel's deposits, from Deposited and Withdrawn events
        self._recorded: RecordedState | None = None  # what the last close or challenge recorded

    def name(self, address: str) -> str:
        return self.names.get(address.lower(), address)

    def begin(self, params: ChannelParams, wallets_before_block: int) -> None:
        """Starts the ledger for channel ``params``; wallet balances are read at ``wallets_before_block``."""
        ledger = self.ledger
        ledger.asset = params.asset
        ledger.challenge_period = params.challenge_period
        self._channel_id = bytes(self.contract.channel_id(params))
        ledger.channel_id = "0x" + self._channel_id.hex()
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
        self._record_events(receipt, record, int(block["timestamp"]))
        return record

    def record_state(
        self, domain: Domain, signed: SignedState, note: str, locks: tuple[Lock, ...] | list[Lock] = ()
    ) -> None:
        """A doubly-signed state (``locks``: the pending conditional payments its ``locks_root`` commits to)."""
        signers = []
        for sig in (signed.sig_a, signed.sig_b):
            if sig is not None:
                signers.append(self.name(recover_signer(domain, signed.state, sig)))
        s = signed.state
        self.ledger.states.append(
            StateRecord(
                s.nonce,
                s.balance_a,
                s.balance_b,
                s.is_final,
                tuple(signers),
                note,
                locked_a=s.locked_a,
                locked_b=s.locked_b,
                withdrawals=s.withdrawals,
                deposit_a=s.deposit_a,
                deposit_b=s.deposit_b,
                locks=tuple(lock.to_json() for lock in locks),
            )
        )
        self.ledger.timeline.append(
            TimelinePoint(f"nonce {s.nonce}", s.balance_a, s.balance_b, False, s.locked_a, s.locked_b)
        )

    def record_message(
        self, domain: Domain, message: Revocation | Withdrawal, signatures: list[Signature], summary: str
    ) -> None:
        """A signed ``Revocation`` or ``Withdrawal``; its signers are recovered from ``signatures``."""
        digest = message_digest(domain, message)
        signers = tuple(self.name(recover_digest_signer(digest, sig)) for sig in signatures)
        kind = "revocation" if isinstance(message, Revocation) else "withdrawal"
        hexes = tuple("0x" + sig.to_bytes().hex() for sig in signatures)
        self.ledger.messages.append(MessageRecord(kind, signers, summary, message.to_json(), hexes))

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
        if self._channel_id:
            onchain = self.contract.get_channel(self._channel_id)  # type: ignore[arg-type]
            ledger.channel_holds = onchain.total_deposit if onchain.status else 0
        return ledger

    # --- events -----------------------------------------------------------------------------------

    def _record_events(self, receipt: TxReceipt, tx: TxRecord, timestamp: int) -> None:
        ledger = self.ledger
        block, tx_hash = tx.block, tx.tx_hash
        for a in self._emitted(receipt, "Deposited"):
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
                party = ledger.parties[name]
                party.deposited += a["amount"]
                self._deposits[party.role] = a["total"]
            self._timeline_onchain(f"{name} deposits")
        for a in self._emitted(receipt, "Withdrawn"):
            party_a, party_b = ledger.party_by_role("A"), ledger.party_by_role("B")
            party_a.withdrawn += a["amountA"]
            party_b.withdrawn += a["amountB"]
            ledger.withdrawals.append(
                {
                    "withdrawals": a["withdrawals"],
                    "name_a": party_a.name,
                    "name_b": party_b.name,
                    "amount_a": a["amountA"],
                    "amount_b": a["amountB"],
                    "deposit_a": a["depositA"],
                    "deposit_b": a["depositB"],
                    "deposit_a_before": self._deposits["A"],
                    "deposit_b_before": self._deposits["B"],
                    "sent_by": tx.sender,
                    "tx_hash": tx_hash,
                    "block": block,
                }
            )
            self._deposits = {"A": a["depositA"], "B": a["depositB"]}
            self._timeline_repeat(f"withdrawal {a['withdrawals']}")
        for kind, step in (("ChannelClosed", "close"), ("ChallengeAccepted", "challenge")):
            if self._emitted(receipt, kind) and self._channel_id:
                # what the close or challenge recorded, as the SDK reads it (the latest record: ``record`` is
                # called right after each transaction)
                recorded = self.contract.recorded_state(ChannelId(self._channel_id))
                if recorded.deadline:  # still closing (a final state's challenge settles at once)
                    self._recorded = recorded
                    ledger.timeline.append(
                        TimelinePoint(
                            f"{step} (nonce {recorded.nonce})",
                            recorded.balance_a,
                            recorded.balance_b,
                            True,
                            recorded.locked_a,
                            recorded.locked_b,
                        )
                    )
        for a in self._emitted(receipt, "SecretRevealed"):
            ledger.secrets.append(
                {
                    "hashlock": "0x" + bytes(a["hashlock"]).hex(),
                    "secret": "0x" + bytes(a["secret"]).hex(),
                    "revealed_by": tx.sender,
                    "timestamp": timestamp,
                    "tx_hash": tx_hash,
                    "block": block,
                }
            )
            self._timeline_repeat("secret revealed")
        for a in self._emitted(receipt, "RevokedStateProven"):
            cheater = ledger.parties[self.name(a["cheater"])]
            honest = next(p for p in ledger.parties.values() if p is not cheater)
            newest = max(ledger.states, key=lambda s: s.nonce, default=None)
            ledger.penalties.append(
                {
                    "cheater": cheater.name,
                    "honest": honest.name,
                    "closer_nonce": a["closerNonce"],
                    "below_nonce": a["belowNonce"],
                    "proven_by": tx.sender,
                    "newest_nonce": newest.nonce if newest else None,
                    "forfeited": (newest.balance_a if cheater.role == "A" else newest.balance_b) if newest else None,
                    "tx_hash": tx_hash,
                    "block": block,
                }
            )
            total = self._deposits["A"] + self._deposits["B"]
            to_a = total if honest.role == "A" else 0
            ledger.timeline.append(TimelinePoint("revoked state proven", to_a, total - to_a, True))
        for a in self._emitted(receipt, "ChannelSettled"):
            deferred = {d["recipient"]: d["amount"] for d in self._emitted(receipt, "PayoutDeferred")}
            honest_names = {pen["honest"] for pen in ledger.penalties}
            for role, amount in (("A", a["payoutA"]), ("B", a["payoutB"])):
                party = ledger.party_by_role(role)
                party.paid_out += amount
                ledger.payouts.append(
                    {
                        "name": party.name,
                        "role": party.role,
                        "amount": amount,
                        "deferred": party.address in deferred,
                        "penalty": party.name in honest_names,
                        "tx_hash": tx_hash,
                        "block": block,
                    }
                )
            if not a["cooperative"] and not ledger.penalties:
                self._resolve_locks(tx, a["payoutA"], a["payoutB"])
            ledger.timeline.append(TimelinePoint("settled" if not a["cooperative"] else "closed", 0, 0, True))
            self._deposits = {"A": 0, "B": 0}

    def _emitted(self, receipt: TxReceipt, event: str) -> list[Any]:
        """The arguments of each ``event`` the contract emitted in ``receipt`` (other logs are skipped)."""
        return [
            ev["args"]
            for ev in getattr(self.contract.contract.events, event)().process_receipt(receipt, errors=DISCARD)
        ]

    def _resolve_locks(self, tx: TxRecord, payout_a: int, payout_b: int) -> None:
        """The lock list the settle sent (decoded from its calldata), each lock checked against the secret
        registry at the settle's block, and the recorded payouts plus the locks compared to what it paid."""
        sent = self.chain.w3.eth.get_transaction(tx.tx_hash)  # type: ignore[arg-type]
        _, arguments = self.contract.contract.decode_function_input(sent["input"])
        packed = bytes(arguments["locks"])
        recorded = self._recorded
        if recorded is None or (not packed and not recorded.locked_a and not recorded.locked_b):
            return
        registry = self.contract.contract.functions.revealedAt
        to_b = to_a = 0  # what the locks pay each receiver, per direction
        for offset in range(0, len(packed) - LOCK_SIZE + 1, LOCK_SIZE):
            chunk = packed[offset : offset + LOCK_SIZE]
            direction, expiry = chunk[0], int.from_bytes(chunk[1:6], "big")
            amount, lock_hash = int.from_bytes(chunk[6:38], "big"), chunk[38:70]
            revealed_at = int(registry(lock_hash).call(block_identifier=tx.block))
            paid = direction in (DIRECTION_A_PAYS_B, DIRECTION_B_PAYS_A) and 0 < revealed_at <= expiry
            if direction == DIRECTION_A_PAYS_B:
                sender, receiver = self.ledger.party_by_role("A").name, self.ledger.party_by_role("B").name
                to_b += amount if paid else 0
            elif direction == DIRECTION_B_PAYS_A:
                sender, receiver = self.ledger.party_by_role("B").name, self.ledger.party_by_role("A").name
                to_a += amount if paid else 0
            else:
                sender = receiver = "void"
            self.ledger.settled_locks.append(
                {
                    "sender": sender,
                    "receiver": receiver,
                    "amount": amount,
                    "expiry": expiry,
                    "hashlock": "0x" + lock_hash.hex(),
                    "revealed_at": revealed_at,
                    "paid": paid,
                }
            )
        # the contract's rule: what one direction's locks pay is capped at that side's locked total
        to_b, to_a = min(to_b, recorded.locked_a), min(to_a, recorded.locked_b)
        expected_a = recorded.balance_a + recorded.locked_a - to_b + to_a
        expected_b = recorded.balance_b + recorded.locked_b - to_a + to_b
        self.ledger.lock_check = {
            "recorded_a": recorded.balance_a,
            "recorded_b": recorded.balance_b,
            "locked_a": recorded.locked_a,
            "locked_b": recorded.locked_b,
            "expected_a": expected_a,
            "expected_b": expected_b,
            "paid_a": payout_a,
            "paid_b": payout_b,
            "matches": (expected_a, expected_b) == (payout_a, payout_b),
        }

    def _timeline_repeat(self, step: str) -> None:
        """An on-chain step that moves no balance inside the channel: the last balances again."""
        last = self.ledger.timeline[-1] if self.ledger.timeline else TimelinePoint("", 0, 0, True)
        self.ledger.timeline.append(
            TimelinePoint(step, last.balance_a, last.balance_b, True, last.locked_a, last.locked_b)
        )

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
        self.ledger.timeline.append(
            TimelinePoint(step, a, b, True, last.locked_a if last else 0, last.locked_b if last else 0)
        )
