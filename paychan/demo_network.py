"""``paychan demo --network``: five parties, five channels, two routes from alice to erin, payments routed
through intermediaries who earn their advertised fees, on the real contract.

Each party is an in-process driver: it holds its own key, one ``paychan.channel.Channel`` per channel of
its (both sides sign every state), its fee announcements (``paychan.fees.sign_fee_update``) and a
``paychan.transfer.book.TransferBook`` whose state machines decide everything; the driver only delivers
their messages to the other parties (or drops them while the receiver is offline), runs the channel
exchanges their actions ask for (``propose_lock``/``receive_proposal``/``receive_countersignature``, the
settle and expire of a lock) and sends their chain actions (``revealSecret``, ``close``) to the contract.
The payer's routes come from a ``paychan.routing.ChannelGraph`` built from the ``ChannelOpened`` events and
the signed fee announcements.

The runs: alice pays erin several times (no transaction; each intermediary earns its fee); a payment too
large for bob's side of his channel with carol (he refuses the offer, nothing is signed, alice pays through
dave at once); a payment whose first route has an offline intermediary (carol) and succeeds on the second,
after the first attempt's lock expired (the payer never pays twice); a payee that never reveals (every lock
expires, every balance returns); an intermediary (carol) whose downstream revealed while its upstream (bob)
vanished: it reveals on chain, closes and is paid at settlement. At the end, for every party: on-chain
payouts + off-chain balances = deposits + payments received - payments sent + fees earned - fees paid, to
the wei (``NetworkLedger`` checks it from the channels and the chain, against the fees the routes computed).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD
from web3.types import TxReceipt

from paychan.chain import Chain
from paychan.channel import Channel
from paychan.contract import PaychanContract
from paychan.fees import PPM, FeePolicy, FeeUpdate, sign_fee_update
from paychan.ledger import format_eth
from paychan.routing import REVEAL_MARGIN, ChannelGraph, Route
from paychan.state import ChannelId, ChannelParams, SignedState, hashlock
from paychan.transfer.book import TransferBook
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    AcceptSettle,
    Action,
    ChannelClosed,
    CloseChannel,
    Event,
    LockAdded,
    LockExpired,
    LockSettled,
    OfferLock,
    PaymentFailed,
    PaymentReceived,
    PaymentSucceeded,
    ProposeExpireLock,
    ProposeLock,
    ProposeSettleLock,
    ProposeUnlock,
    ReceiveAcceptance,
    ReceiveExpireProposal,
    ReceiveLockedTransfer,
    ReceiveRefusal,
    ReceiveSecretRequest,
    ReceiveSecretReveal,
    ReceiveSettleProposal,
    ReceiveUnlock,
    Refuse,
    RevealSecretOnChain,
    SecretRevealedOnChain,
    SendSecretRequest,
    SendSecretReveal,
    StoreSecret,
    Tick,
)
from paychan.transfer.initiator import InitiatorState, plan_payment
from paychan.transfer.mediator import MediatorState
from paychan.transfer.state import OFFER_TIMEOUT, ChannelView

ETHER = 10**18
GWEI = 10**9
CHALLENGE_PERIOD = 3600
NAMES = ("alice", "bob", "carol", "dave", "erin")
# (sender, receiver, what the sender deposits): two routes from alice to erin, via bob and carol, via dave
CHANNELS = (
    ("alice", "bob", 2 * ETHER),
    ("bob", "carol", ETHER),
    ("carol", "erin", ETHER),
    ("alice", "dave", ETHER),
    ("dave", "erin", ETHER),
)
# what each intermediary charges to forward over its channel towards erin
FEES = {"bob": FeePolicy(1 * GWEI, 100), "carol": FeePolicy(2 * GWEI, 150), "dave": FeePolicy(5 * GWEI, 1_000)}
PAYMENTS = (ETHER // 10, ETHER // 4, ETHER // 20)
BIG_PAYMENT = 13 * ETHER // 20  # more than bob has left towards carol after PAYMENTS
TITLE = "A payment network: alice pays erin through intermediaries"


class NetworkError(RuntimeError):
    """Raised when a scenario ends otherwise than the demo says (a bug: the ledger would be wrong)."""


@dataclass
class Party:
    """One participant: its key, its side of each of its channels, its transfer machines, what it stored."""

    name: str
    account: LocalAccount
    book: TransferBook
    channels: dict[ChannelId, Channel] = field(default_factory=dict)
    online: bool = True
    withholds_secret: bool = False  # a payee that never asks for (so never reveals) the secret
    vanishes_after_forwarding: bool = False  # goes offline once its outgoing lock is signed
    secrets: dict[int, bytes] = field(default_factory=dict)  # the store: secrets learned, by payment id
    missed: list[Event] = field(default_factory=list)  # chain events while offline, seen when back
    # the newest signed proposal of each channel a peer sent while we were offline: a node's exchange sends a
    # signed state again until it is answered, so we get it when back
    unanswered: dict[ChannelId, Event] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.account.address


@dataclass(frozen=True)
class FeeLine:
    """One intermediary's fee on one payment: its policy and what it forwarded, computed."""

    name: str
    base_fee: int
    ppm: int
    forwarded: int
    fee: int

    def to_text(self) -> str:
        proportional = self.forwarded * self.ppm // PPM
        return (
            f"{self.name}: {self.base_fee} wei + {self.forwarded} wei * {self.ppm} / {PPM} = "
            f"{self.base_fee} + {proportional} = {self.fee} wei"
        )


@dataclass
class PaymentRecord:
    """One payment of a run: who paid whom, the outcome, the route taken, the fees, every attempt."""

    payment_id: int
    amount: int
    outcome: str = "pending"
    route: list[str] = field(default_factory=list)
    fees: list[FeeLine] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def total_fee(self) -> int:
        return sum(line.fee for line in self.fees)


@dataclass
class ScenarioRecord:
    """One run: its payments, its notes, the channels' balances before and after, the transactions sent."""

    title: str
    payments: list[PaymentRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    before: dict[str, tuple[int, int]] = field(default_factory=dict)
    after: dict[str, tuple[int, int]] = field(default_factory=dict)
    transactions: list[str] = field(default_factory=list)


@dataclass
class PartyTotals:
    """What one party put in and ended with: ``conserved`` when both sides agree to the wei."""

    name: str
    deposits: int = 0
    received: int = 0
    sent: int = 0
    fees_earned: int = 0
    fees_paid: int = 0
    onchain_payouts: int = 0
    offchain_balances: int = 0

    @property
    def expected(self) -> int:
        return self.deposits + self.received - self.sent + self.fees_earned - self.fees_paid

    @property
    def holds(self) -> int:
        return self.onchain_payouts + self.offchain_balances

    @property
    def conserved(self) -> bool:
        return self.expected == self.holds


@dataclass
class NetworkLedger:
    """What ``paychan demo --network`` prints: the channels, each run, and every party's totals."""

    title: str
    contract: str
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenarios: list[ScenarioRecord] = field(default_factory=list)
    totals: dict[str, PartyTotals] = field(default_factory=dict)

    @property
    def conserved(self) -> bool:
        return all(t.conserved for t in self.totals.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "contract": self.contract,
            "channels": self.channels,
            "scenarios": [
                {
                    "title": s.title,
                    "payments": [
                        {
                            "payment_id": p.payment_id,
                            "amount": str(p.amount),
                            "outcome": p.outcome,
                            "route": p.route,
                            "fees": [
                                {
                                    "name": f.name,
                                    "base_fee": str(f.base_fee),
                                    "ppm": f.ppm,
                                    "forwarded": str(f.forwarded),
                                    "fee": str(f.fee),
                                }
                                for f in p.fees
                            ],
                            "total_fee": str(p.total_fee),
                            "attempts": p.attempts,
                            "reason": p.reason,
                        }
                        for p in s.payments
                    ],
                    "notes": s.notes,
                    "balances_before": {k: [str(a), str(b)] for k, (a, b) in s.before.items()},
                    "balances_after": {k: [str(a), str(b)] for k, (a, b) in s.after.items()},
                    "transactions": s.transactions,
                }
                for s in self.scenarios
            ],
            "totals": {
                name: {
                    "deposits": str(t.deposits),
                    "received": str(t.received),
                    "sent": str(t.sent),
                    "fees_earned": str(t.fees_earned),
                    "fees_paid": str(t.fees_paid),
                    "onchain_payouts": str(t.onchain_payouts),
                    "offchain_balances": str(t.offchain_balances),
                    "conserved": t.conserved,
                }
                for name, t in self.totals.items()
            },
            "conserved": self.conserved,
        }

    def to_text(self) -> str:
        lines = [
            f"== {self.title} ==",
            f"contract: {self.contract}",
            "",
            "Channels (A -> B, A's deposit; fee A charges to forward to B):",
        ]
        for label, info in self.channels.items():
            fee = info["fee"]
            fee_text = (
                f"{fee['base_fee']} wei + {fee['ppm']} ppm" if fee else "no fee announced (alice forwards for no one)"
            )
            lines.append(f"  {label:<14} deposit {format_eth(int(info['deposit']))}, {fee_text}")
        for scenario in self.scenarios:
            lines += ["", f"-- {scenario.title} --"]
            for payment in scenario.payments:
                route = " -> ".join(payment.route) if payment.route else "(none)"
                lines.append(
                    f"payment #{payment.payment_id}: {format_eth(payment.amount)} alice -> erin: {payment.outcome}"
                )
                for attempt in payment.attempts:
                    lines.append(f"  attempt {attempt}")
                if payment.outcome == "succeeded":
                    lines.append(f"  route {route}")
                    for line in payment.fees:
                        lines.append(f"  fee {line.to_text()}")
                    lines.append(
                        f"  alice paid {format_eth(payment.amount + payment.total_fee)} = "
                        f"{format_eth(payment.amount)} + {payment.total_fee} wei in fees"
                    )
                if payment.reason:
                    lines.append(f"  reason: {payment.reason}")
            for note in scenario.notes:
                lines.append(f"  {note}")
            count = len(scenario.transactions)
            lines.append(f"on-chain transactions: {count}" + ("" if count else " (none needed)"))
            for tx in scenario.transactions:
                lines.append(f"  {tx}")
            lines.append("channel balances (A / B) before -> after:")
            for label in scenario.before:
                (a0, b0), (a1, b1) = scenario.before[label], scenario.after[label]
                lines.append(
                    f"  {label:<14} {format_eth(a0)} / {format_eth(b0)} -> {format_eth(a1)} / {format_eth(b1)}"
                )
        lines += [
            "",
            "Who earned what (wei): deposits + received - sent + fees earned - fees paid"
            " = on-chain payouts + off-chain balances",
        ]
        for name, t in self.totals.items():
            mark = "ok" if t.conserved else "MISMATCH"
            lines.append(
                f"  {name:<6} {t.deposits} + {t.received} - {t.sent} + {t.fees_earned} - {t.fees_paid} = {t.expected}"
                f" | {t.onchain_payouts} + {t.offchain_balances} = {t.holds} {mark}"
            )
        earned = {name: t.fees_earned for name, t in self.totals.items() if t.fees_earned}
        lines.append("fees earned: " + ", ".join(f"{name} {wei} wei" for name, wei in earned.items()))
        lines.append("conserved to the wei for every party: " + ("yes" if self.conserved else "NO"))
        return "\n".join(lines)


class Network:
    """The five parties on one contract, the message bus between them, the chain actions they take."""

    def __init__(self, chain: Chain, contract: PaychanContract | None = None) -> None:
        if len(chain.accounts) < 6:
            raise ValueError(f"the network demo needs 6 funded accounts with keys, the chain has {len(chain.accounts)}")
        self.chain = chain
        self.contract = contract or PaychanContract.deploy(chain, chain.accounts[0])[0]
        self.parties = {
            name: Party(name, account, TransferBook(account.address))
            for name, account in zip(NAMES, chain.accounts[1:6], strict=True)
        }
        self.by_address = {party.address: party for party in self.parties.values()}
        self.params: dict[ChannelId, ChannelParams] = {}
        self.labels: dict[ChannelId, str] = {}
        self.deposits: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.payouts: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.closed: set[ChannelId] = set()
        self.graph = ChannelGraph(self.contract.domain)
        self.queue: deque[tuple[Party, Event]] = deque()
        self.pending: dict[tuple[ChannelId, bytes], tuple[SignedState, bytes]] = {}  # settle/expire proposals
        self.records: dict[int, PaymentRecord] = {}
        self.scenario: ScenarioRecord | None = None
        self.ledger = NetworkLedger(TITLE, self.contract.address)
        self.next_payment_id = 1
        self.routes_by_payment: dict[int, Route] = {}

    # --- setting up -------------------------------------------------------------------------------------

    def open_channels(self) -> None:
        """Each channel opened and funded by its sender; the graph learns them and the signed fees."""
        for sender, receiver, deposit in CHANNELS:
            a, b = self.parties[sender], self.parties[receiver]
            params, _ = self.contract.open_channel(a.account, b.address, deposit, challenge_period=CHALLENGE_PERIOD)
            cid = self.contract.channel_id(params)
            self.params[cid] = params
            self.labels[cid] = f"{sender}-{receiver}"
            self.deposits[sender] += deposit
            for party in (a, b):
                party.channels[cid] = Channel(params, self.contract.domain, party.account.key, deposits=(deposit, 0))
            self.graph.open_channel(params, deposit, 0)
            policy = FEES.get(sender)
            fee: dict[str, Any] = {}
            if policy is not None:
                update = FeeUpdate(cid, a.address, self.chain.now(), policy.base_fee, policy.ppm)
                self.graph.apply_fee_announcement(sign_fee_update(self.contract.domain, update, a.account.key))
                fee = {"base_fee": policy.base_fee, "ppm": policy.ppm}
            self.ledger.channels[f"{sender}->{receiver}"] = {
                "channel_id": "0x" + cid.hex(),
                "deposit": str(deposit),
                "fee": fee,
            }

    # --- the bus ----------------------------------------------------------------------------------------

    def views(self, party: Party) -> dict[ChannelId, ChannelView]:
        found = {}
        for cid, channel in party.channels.items():
            peer = self.by_address[channel.peer_address]
            policy = FEES.get(party.name, FeePolicy()) if self.labels[cid].startswith(party.name + "-") else FeePolicy()
            found[cid] = ChannelView(
                cid,
                peer.address,
                channel.balance(),
                channel.balance(channel.peer_role),
                policy,
                CHALLENGE_PERIOD,
                cid in self.closed,
            )
        return found

    def send(self, to: Party, event: Event) -> None:
        """Delivers a peer's message to ``to``, unless ``to`` is offline (then it is lost)."""
        if to.online:
            self.queue.append((to, event))
        elif isinstance(event, ReceiveSettleProposal | ReceiveUnlock | ReceiveExpireProposal):
            to.unanswered[event.channel_id] = event

    def broadcast_chain(self, event: Event) -> None:
        """A chain event: every online party's watcher sees it now, an offline one when it is back."""
        for party in self.parties.values():
            if party.online:
                self.queue.append((party, event))
            else:
                party.missed.append(event)

    def run(self) -> None:
        while self.queue:
            party, event = self.queue.popleft()
            if not party.online:
                continue  # lost: it went offline while the message travelled
            for action in party.book.handle(event):
                self.apply(party, action)

    def tick(self) -> None:
        now = self.chain.now()
        for party in self.parties.values():
            if party.online:
                self.queue.append((party, Tick(now)))
        self.run()

    def wait_until(self, timestamp: int) -> None:
        """Chain time moves to ``timestamp`` (or a little past it); every online party sees the tick."""
        while self.chain.now() < timestamp:
            self.chain.time_travel(timestamp - self.chain.now() + 1)
        self.tick()

    def go_offline(self, name: str) -> None:
        self.parties[name].online = False

    def come_back(self, name: str) -> None:
        party = self.parties[name]
        party.online = True
        now = self.chain.now()
        for event in party.missed:  # its watcher reads them now: the time it learns them is now
            self.queue.append((party, replace(event, now=now)))
        for proposal in party.unanswered.values():  # and its peers' exchanges send their proposals again
            self.queue.append((party, replace(proposal, now=now)))
        party.missed.clear()
        party.unanswered.clear()
        self.tick()

    # --- actions ----------------------------------------------------------------------------------------

    def apply(self, party: Party, action: Action) -> None:
        now = self.chain.now()
        if isinstance(action, OfferLock):
            receiver = self.by_address[action.transfer.hop.receiver]
            self.send(receiver, ReceiveLockedTransfer(action.transfer, party.address, self.views(receiver), now))
        elif isinstance(action, AcceptLock):
            hop = action.transfer.hop
            acceptance = ReceiveAcceptance(action.transfer.payment_id, hop.channel_id, party.address, now)
            self.send(self.by_address[hop.sender], acceptance)
        elif isinstance(action, ProposeLock):
            self._add_lock(party, action)
        elif isinstance(action, Refuse):
            self.send(
                self.by_address[action.to],
                ReceiveRefusal(action.payment_id, action.channel_id, party.address, action.reason, now),
            )
            record = self.records.get(action.payment_id)
            if record is not None and action.to != party.address:
                record.attempts.append(f"refused by {party.name}: {action.reason}")
        elif isinstance(action, SendSecretRequest):
            if not party.withholds_secret:
                self.send(
                    self.by_address[action.to],
                    ReceiveSecretRequest(action.payment_id, action.hashlock, action.amount, party.address, now),
                )
        elif isinstance(action, SendSecretReveal):
            self.send(
                self.by_address[action.to], ReceiveSecretReveal(action.payment_id, action.secret, party.address, now)
            )
        elif isinstance(action, StoreSecret):
            party.secrets[action.payment_id] = action.secret
        elif isinstance(action, ProposeSettleLock | ProposeUnlock):  # the lock's receiver claims, its sender pays
            key = (action.channel_id, hashlock(action.secret))
            if key not in self.pending:  # a re-sent proposal goes out as it was signed
                proposal = party.channels[action.channel_id].propose_settle_lock(action.secret)
                self.pending[key] = (proposal, action.secret)
            kind = ReceiveSettleProposal if isinstance(action, ProposeSettleLock) else ReceiveUnlock
            self.send(self.by_address[action.to], kind(action.payment_id, action.channel_id, action.secret, now))
        elif isinstance(action, AcceptSettle):
            self._countersign_settle(party, action)
        elif isinstance(action, ProposeExpireLock):
            channel = party.channels[action.channel_id]
            if all(lock.hashlock != action.hashlock for lock in channel.locks):  # never countersigned
                self.queue.append((party, LockExpired(action.payment_id, action.channel_id, now)))
                return
            if (action.channel_id, action.hashlock) not in self.pending:  # else: re-sent as it was signed
                proposal = channel.propose_expire_lock(action.hashlock, now)
                self.pending[(action.channel_id, action.hashlock)] = (proposal, action.hashlock)
            self.send(self.by_address[action.to], ReceiveExpireProposal(action.payment_id, action.channel_id, now))
        elif isinstance(action, AcceptExpire):
            self._countersign_expire(party, action)
        elif isinstance(action, RevealSecretOnChain):
            receipt = self._transact(
                f"revealSecret ({party.name})", lambda: self.contract.reveal_secret(party.account, action.secret)
            )
            revealed_at = self.contract.revealed_at(hashlock(action.secret))
            self.note(
                f"{party.name} revealed the secret of payment #{action.payment_id} on chain at {revealed_at} "
                f"(block {receipt['blockNumber']})"
            )
            self.broadcast_chain(
                SecretRevealedOnChain(hashlock(action.secret), action.secret, revealed_at, self.chain.now())
            )
        elif isinstance(action, CloseChannel):
            self._close(party, action)
        elif isinstance(action, PaymentSucceeded):
            self._succeeded(action)
        elif isinstance(action, PaymentFailed):
            record = self.records[action.payment_id]
            record.outcome, record.reason = "failed", action.reason
        elif isinstance(action, PaymentReceived):
            self.note(f"{party.name} was paid {format_eth(action.amount)} for payment #{action.payment_id}")

    def _lock_parties(self, party: Party, cid: ChannelId) -> Party:
        channel = party.channels[cid]
        return self.by_address[channel.peer_address]

    def _add_lock(self, sender: Party, action: ProposeLock) -> None:
        """The sender still stands by the offer its receiver accepted: it signs exactly that lock, and the
        receiver countersigns it if it still waits for it (online, its acceptance not abandoned)."""
        hop, now = action.transfer.hop, self.chain.now()
        receiver = self.by_address[hop.receiver]
        if not receiver.online or not receiver.book.expects_lock(action.transfer.payment_id, hop.channel_id):
            return  # in process we sign nothing that would go unanswered: the sender waits for the expiry
        proposal, lock = sender.channels[hop.channel_id].propose_lock(
            hop.amount, action.transfer.hashlock, hop.expiry, now
        )
        signed = receiver.channels[hop.channel_id].receive_proposal(proposal, lock=lock, now=now)
        sender.channels[hop.channel_id].receive_countersignature(signed)
        added = LockAdded(action.transfer.payment_id, hop.channel_id, now)
        self.queue.append((receiver, added))
        if sender.vanishes_after_forwarding and hop.sender != action.transfer.initiator:
            for follow_up in sender.book.handle(added):
                self.apply(sender, follow_up)
            self.go_offline(sender.name)
            self.note(f"{sender.name} went offline once its lock to {receiver.name} was signed")
        else:
            self.queue.append((sender, added))
        record = self.records.get(action.transfer.payment_id)
        if record is not None:
            record.attempts.append(
                f"{sender.name} locked {format_eth(hop.amount)} for {receiver.name} until {hop.expiry}"
            )

    def _countersign_settle(self, sender: Party, action: AcceptSettle) -> None:
        receiver = self._lock_parties(sender, action.channel_id)
        key = (action.channel_id, sender.book.hashlock(action.payment_id))
        if key in self.pending:  # else: a re-sent proposal we countersigned already: the answer again
            proposal, secret = self.pending.pop(key)
            signed = sender.channels[action.channel_id].receive_proposal(proposal, settle=secret)
            receiver.channels[action.channel_id].receive_countersignature(signed)
        self.queue.append((receiver, LockSettled(action.payment_id, action.channel_id, self.chain.now())))

    def _countersign_expire(self, receiver: Party, action: AcceptExpire) -> None:
        sender = self._lock_parties(receiver, action.channel_id)
        key = (action.channel_id, receiver.book.hashlock(action.payment_id))
        now = self.chain.now()
        self.queue.append((sender, LockExpired(action.payment_id, action.channel_id, now)))
        if key not in self.pending:  # a re-sent proposal we countersigned already: the answer again
            return
        proposal, lock_hash = self.pending.pop(key)
        signed = receiver.channels[action.channel_id].receive_proposal(proposal, expire=lock_hash, now=now)
        sender.channels[action.channel_id].receive_countersignature(signed)
        record = self.records.get(action.payment_id)
        if record is not None:
            record.attempts.append(
                f"{receiver.name} gave back {sender.name}'s expired lock on {self.labels[action.channel_id]}"
            )

    def _close(self, party: Party, action: CloseChannel) -> None:
        channel = party.channels[action.channel_id]
        params = self.params[action.channel_id]
        channel.check_close(channel.latest)
        self._transact(
            f"close {self.labels[action.channel_id]} ({party.name})",
            lambda: self.contract.close(party.account, params, channel.latest),
        )
        self.closed.add(action.channel_id)
        self.graph.close_channel(action.channel_id)  # a closing channel forwards nothing: it leaves the graph
        self.note(
            f"{party.name} closed {self.labels[action.channel_id]} with nonce {channel.nonce} "
            "(its lock inside): paid at settlement"
        )
        self.broadcast_chain(ChannelClosed(action.channel_id, self.chain.now()))

    def settle_closed(self) -> None:
        """After the challenge period, the closer settles each closed channel with its lock list."""
        for cid in sorted(self.closed):
            params = self.params[cid]
            if self.contract.get_channel(cid).status != 2:
                continue
            deadline = self.contract.get_channel(cid).deadline
            self.wait_until(deadline + 1)
            closer = next(p for p in self.parties.values() if cid in p.channels and p.online)
            locks = closer.channels[cid].locks
            receipt = self._transact(
                f"settle {self.labels[cid]} with {len(locks)} lock(s) ({closer.name})",
                lambda: self.contract.settle(closer.account, params, locks=locks),  # noqa: B023
            )
            (settled,) = self.contract.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD)
            a, b = self.by_address[params.participant_a], self.by_address[params.participant_b]
            self.payouts[a.name] += settled["args"]["payoutA"]
            self.payouts[b.name] += settled["args"]["payoutB"]
            self.note(
                f"settled {self.labels[cid]}: {a.name} {format_eth(settled['args']['payoutA'])}, "
                f"{b.name} {format_eth(settled['args']['payoutB'])} (the revealed lock paid its receiver)"
            )

    def _transact(self, label: str, send: Any) -> TxReceipt:
        receipt: TxReceipt = send()
        if self.scenario is not None:
            self.scenario.transactions.append(f"{label}: gas {receipt['gasUsed']} (block {receipt['blockNumber']})")
        return receipt

    def note(self, text: str) -> None:
        if self.scenario is not None:
            self.scenario.notes.append(text)

    def _succeeded(self, action: PaymentSucceeded) -> None:
        record = self.records[action.payment_id]
        route = action.route
        record.outcome = "succeeded"
        record.route = [self.by_address[node].name for node in route.nodes]
        record.fees = []
        for hop in route.hops[1:]:  # each intermediary's fee, by the policy it announced (signed) to the graph
            policy = self.graph.fee_policy(hop.channel_id, hop.sender)
            assert policy is not None
            record.fees.append(
                FeeLine(self.by_address[hop.sender].name, policy.base_fee, policy.ppm, hop.amount, hop.fee)
            )
        self.routes_by_payment[action.payment_id] = route

    # --- paying -----------------------------------------------------------------------------------------

    def pay(self, amount: int, payer: str = "alice", payee: str = "erin") -> PaymentRecord:
        """Starts a payment (routes from the graph, a fresh secret) and runs the bus until it is quiet."""
        payer_party, payee_party = self.parties[payer], self.parties[payee]
        now = self.chain.now()
        payment_id = self.next_payment_id
        self.next_payment_id += 1
        secret = payment_secret(payment_id)
        record = PaymentRecord(payment_id, amount)
        self.records[payment_id] = record
        if self.scenario is not None:
            self.scenario.payments.append(record)
        views = self.views(payer_party)
        event = plan_payment(
            self.graph, payment_id, secret, payer_party.address, payee_party.address, amount, views, now
        )
        self.queue.append((payer_party, event))
        self.run()
        return record

    # --- scenarios --------------------------------------------------------------------------------------

    def balances(self) -> dict[str, tuple[int, int]]:
        found = {}
        for cid, label in self.labels.items():
            a = self.by_address[self.params[cid].participant_a]
            found[label] = a.channels[cid].balances() if cid not in self.closed else (0, 0)
        return found

    def begin(self, title: str) -> ScenarioRecord:
        self.scenario = ScenarioRecord(title, before=self.balances())
        self.ledger.scenarios.append(self.scenario)
        return self.scenario

    def end(self) -> None:
        assert self.scenario is not None
        for party in self.parties.values():
            for cid, channel in party.channels.items():
                if channel.locks and cid not in self.closed:
                    raise NetworkError(f"{party.name} still holds {len(channel.locks)} lock(s) on {self.labels[cid]}")
        self.scenario.after = self.balances()
        self.scenario = None

    def totals(self) -> dict[str, PartyTotals]:
        totals = {
            name: PartyTotals(name, deposits=self.deposits[name], onchain_payouts=self.payouts[name]) for name in NAMES
        }
        for payment_id, route in self.routes_by_payment.items():
            payer, payee = self.by_address[route.nodes[0]].name, self.by_address[route.nodes[-1]].name
            totals[payer].sent += route.amount
            totals[payer].fees_paid += route.total_fee
            totals[payee].received += route.amount
            for address, fee in route.fees.items():
                totals[self.by_address[address].name].fees_earned += fee
            del payment_id
        for party in self.parties.values():
            for cid, channel in party.channels.items():
                if cid not in self.closed:
                    totals[party.name].offchain_balances += channel.balance()
        return totals


def run_network(chain: Chain, contract: PaychanContract | None = None) -> NetworkLedger:
    """The five runs in order on one contract; the ledger with every party's totals, checked to the wei."""
    net = Network(chain, contract)
    net.open_channels()

    net.begin("alice pays erin three times, through bob and carol (the cheapest route)")
    for amount in PAYMENTS:
        record = net.pay(amount)
        if record.outcome != "succeeded":
            raise NetworkError(f"payment #{record.payment_id} {record.outcome}: {record.reason}")
    net.end()

    net.begin("bob cannot carry a larger payment: he refuses before anything is signed, alice retries at once")
    record = net.pay(BIG_PAYMENT)
    if record.outcome != "succeeded" or record.route[1] != "dave":
        raise NetworkError(f"payment #{record.payment_id} {record.outcome} via {record.route}: {record.reason}")
    net.end()

    net.begin("carol is offline: the first route fails, the payment succeeds on the second (via dave)")
    net.go_offline("carol")
    record = net.pay(ETHER // 10)
    net.wait_until(net.chain.now() + OFFER_TIMEOUT)  # bob gives up on carol and tells alice
    alices = net.parties["alice"].book.tasks[record.payment_id]
    if not isinstance(alices, InitiatorState) or alices.current is None or alices.current.status != "refused":
        raise NetworkError(f"payment #{record.payment_id}: bob did not report carol's silence to alice")
    expiry = alices.current.hop.expiry
    net.note(f"alice's lock to bob stays until it expires at {expiry}: bob could still forward it, so she waits")
    net.wait_until(expiry + 1)  # alice takes her lock back, then offers the route via dave (same hashlock)
    net.come_back("carol")
    if record.outcome != "succeeded" or record.route[1] != "dave":
        raise NetworkError(f"payment #{record.payment_id} {record.outcome} via {record.route}: {record.reason}")
    net.end()

    net.begin("erin never reveals: every lock expires and every balance returns")
    net.parties["erin"].withholds_secret = True
    record = net.pay(ETHER // 5)
    alices = net.parties["alice"].book.tasks[record.payment_id]
    assert isinstance(alices, InitiatorState) and alices.current is not None
    for hop in reversed(alices.current.transfer.hops):  # carol's lock to erin expires first, alice's last
        net.wait_until(hop.expiry + 1)
    net.parties["erin"].withholds_secret = False
    if record.outcome != "failed":
        raise NetworkError(f"payment #{record.payment_id} {record.outcome}")
    net.end()

    net.begin("bob vanishes after forwarding: carol, paid by erin, reveals on chain and is paid at settlement")
    net.parties["bob"].vanishes_after_forwarding = True
    record = net.pay(ETHER // 10)
    net.parties["bob"].vanishes_after_forwarding = False
    carols = net.parties["carol"].book.tasks[record.payment_id]
    assert isinstance(carols, MediatorState)
    expiry = carols.transfer.hop.expiry
    net.note(f"carol's incoming lock from bob expires at {expiry}: unsettled, she reveals at {expiry - REVEAL_MARGIN}")
    net.wait_until(expiry - REVEAL_MARGIN)
    net.settle_closed()
    net.come_back("bob")
    net.note("bob is back: alice's unlock, sent again since he vanished, pays him off chain")
    if record.outcome != "succeeded":
        raise NetworkError(f"payment #{record.payment_id} {record.outcome}: {record.reason}")
    net.end()

    net.ledger.totals = net.totals()
    if not net.ledger.conserved:
        raise NetworkError("a party's on-chain payouts + off-chain balances differ from what it put in and earned")
    return net.ledger


def payment_secret(payment_id: int) -> bytes:
    """The secret of the demo's payment ``payment_id``: reproducible, so that a reader (and the tests) can check
    the registry; never how a real payer makes one (``secrets.token_bytes(32)``)."""
    return hashlib.sha256(b"paychan demo --network secret %d" % payment_id).digest()


__all__ = ["NetworkError", "NetworkLedger", "payment_secret", "run_network"]
