"""The node: one party's channels and the channel exchange with each counterparty's node.

``Node`` holds the channels and runs the protocol below; the HTTP apps that carry it only translate requests
into calls of the node and its answers into JSON (``peer_api``: the peer endpoint other nodes talk to;
``control_api``: the local control API; ``serve`` starts both), and every transaction and chain read goes
through ``Node.chain`` (``chain_actions``).

Protocol between two nodes (``messages`` has the wire format):

- **Turn.** Only one side proposes at a time, so two different states are never proposed for one nonce. The
  turn is an epoch counter stored with the channel: A may propose while it is even, B while it is odd. To
  propose, a node without the turn asks the holder (``POST /peer/turn``); the holder waits until its own
  proposals are countersigned, stores ``epoch + 1`` durably and answers. Stale answers are harmless: both
  sides keep the highest epoch they have seen. Every decision about the turn comes from the pure machine of
  ``paychan.node.turn`` (``Runtime.turn``); the node feeds it events and carries out its actions.
- **Propose.** The turn holder takes the queued payments (up to ``max_batch``), records each next state as
  a signed intent in one transaction (one fsync), signs them, and sends them in one ``POST /peer/propose``.
  The peer checks each with ``Channel.receive_proposal`` (the core channel object: nonce, channel,
  balances, conservation, signature), records each as an intent *before* signing (``Channel.before_sign``),
  countersigns, commits (one fsync) and only then answers. The proposer checks each countersignature with
  ``Channel.receive_countersignature`` and stores them (one fsync). Each side's revocation below its latest
  doubly-signed state rides along, stored in the commit of the step it goes with (the proposer's with its
  intents, or with the countersignatures before the next message; the peer's with its countersignatures
  on both sides): three fsyncs a message. While the peer works on one message, the proposer
  records and signs the next batch (at most two batches are open). A state re-sent after a crash is
  answered with the state already countersigned (idempotent); any other state at a used nonce is refused.
  While the peer waits for the turn, the holder signs no new batch, so neither side starves the other.
- **Locks.** Adding, settling or expiring a lock (control ``/locks/add``, ``/locks/settle``,
  ``/locks/expire``) is queued behind the payments before it and proposed on its own, once nothing is in
  flight: ``Channel.propose_lock`` / ``propose_settle_lock`` / ``propose_expire_lock`` check and sign it,
  and the proposal carries what it does (``ops``: the lock, the secret or the hashlock). The peer checks it
  with ``Channel.receive_proposal(lock=/settle=/expire=)`` against its own chain time (``chain_now``) before
  anything is written, so a bad one is refused with its reason and changes nothing. Both store the state's
  lock list under its root (and a secret used to settle) in the transaction of the signature; payments keep
  the locks of the state they follow. After a crash, what a proposal in flight does is read back from the
  lock lists. The watcher reveals the secret of an incoming lock on chain if the peer does not settle it
  off chain in time (``watcher.REVEAL_MARGIN``), and settles a closed channel with its lock list.
- **Withdraw.** The turn holder withdraws part of its balance while the channel stays open (control
  ``/withdraw``, ``POST /peer/withdraw``; ``withdraw`` has the exchange): both sign the ``Withdrawal`` and the
  state it leaves, the proposer submits it; until the chain makes it neither side signs on top of it, and
  both keep it with the state before it, the one they close with meanwhile.
- **Announce.** Each side tells the other where its node listens (``POST /peer/channels``). A node learns of
  its channels from the chain (``ChannelOpened`` events naming its address, see ``watcher``), never from a
  peer: an announce only sets the URL of a channel the node already knows, and only when signed by that
  channel's other participant and newer than the announce that set the current URL.

**Authentication and admission.** Every peer request but ``GET /peer/info`` is signed by its sender
(``auth``: method, path, timestamp, body, the recipient's address, under the contract's EIP-712 domain); the
node checks the claim, the sender's budget and the signature before it parses the body, touches the store or
does anything else (``peer_api``), and answers each request from the channel's counterparty only. No peer
request causes a chain call, with one bounded exception: the first request of a counterparty that is a
contract wallet, whose node signs with the wallet's owner key, is checked once by the wallet itself
(``wallet_peers``: one gas-capped ``eth_call`` per wallet and minute at most, on the control chain thread);
the watcher reads the chain alone, on its own thread.

**A contract-wallet participant** (``Node(..., wallet=W)``, ``paychan node --wallet W``): the node's address
is the wallet, its key the wallet's owner. It signs states for the wallet with that key
(``Erc1271Signer``), sends its transactions through the wallet (``sender``, a ``WalletAccount``: the owner
calls ``W.execute``, the key pays the gas), and names the wallet in its peer requests (``Paychan-Participant``).

The control API (``control_api``: ``/status``, ``/open``, ``/pay``, ``/close``, ``/locks/...``, ...) listens on
127.0.0.1 only and needs the bearer token the node writes to ``<db>.control.json`` (mode 0600), which its
client (``paychan.node.control``, under the ``paychan`` CLI) reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from paychan.channel import LOCK_EXPIRY_MARGIN, MAX_LOCKS, Channel
from paychan.contract import PaychanContract
from paychan.exceptions import (
    ChannelFinalized,
    FinalStateHasLocks,
    InvalidAmount,
    InvalidSignature,
    MalformedMessage,
    PaychanError,
    ProposalPending,
    StateRejected,
    UnexpectedNonce,
    UnknownChannel,
)
from paychan.node import turn, withdraw
from paychan.node.auth import (
    Limits,
    PeerGate,
    ReplayGuard,
)
from paychan.node.chain_actions import ChainActions
from paychan.node.control_api import control_app
from paychan.node.exceptions import (
    ChainLost,
    ChannelNotOpen,
    CloseTimeout,
    InsufficientBalance,
    NotCounterparty,
    NotSynced,
    NotYourTurn,
    PaymentTimeout,
    SignerMismatch,
)
from paychan.node.messages import (
    AddLock,
    Announce,
    ExpireLock,
    LockOp,
    Propose,
    SettleLock,
    SignedRevocation,
    TurnMessage,
    encode_signed,
    error_body,
    parse_revocation,
    parse_signed,
    parse_turn,
)
from paychan.node.network import NodeNetwork
from paychan.node.peer import PeerClient, PeerRefused, PeerUnavailable
from paychan.node.peer_api import peer_app
from paychan.node.remote_signer import MAX_ROUNDS, RemoteSigning, SignatureNeeded
from paychan.node.restored import (
    SyncDeferred,
    is_restored,
    mark_synced,
    needs_sync,
    splits_known_funds,
)
from paychan.node.store import (
    STATUS_CLOSED,
    STATUS_CLOSING,
    STATUS_OPEN,
    ChannelRecord,
    ClosedBy,
    DoubleSignRefused,
    Store,
    StoreError,
)
from paychan.node.transfers import NodeTransfers
from paychan.node.turn import TurnState
from paychan.node.wallet_peers import WalletPeers
from paychan.signers import Erc1271Signer, LocalKeySigner, Signer, SignerError, SignerUnavailable, TypedMessage
from paychan.signing import Domain, check_signer, state_struct_hash
from paychan.state import (
    MAX_NONCE,
    ChannelId,
    ChannelParams,
    ChannelState,
    Lock,
    Nonce,
    Revocation,
    Signature,
    SignedState,
    Wei,
    channel_id,
    hashlock,
    locks_root,
)
from paychan.wallets import Sender, WalletAccount

log = logging.getLogger("paychan.node")
T = TypeVar("T")
# What a peer answers while its node has not seen our channel on chain yet (a wallet: its participant).
UNKNOWN_TO_PEER = ("UnknownChannel", "UnknownParticipant")
# What an announce is retried after: the above, and a wallet's signer not checked yet (``wallet_peers``).
ANNOUNCE_AGAIN = (*UNKNOWN_TO_PEER, "RateLimited", "WalletCheckFailed")


class AheadKeySigner(LocalKeySigner):
    """The node's own key (a ``LocalKeySigner`` without the recovery check) that may sign a revocation ahead
    (``sign_ahead``), while the node waits for its next message. The signature waits here, in memory, until
    the node signs that revocation (``Channel.sign_revocation``), which records it in the store before it
    leaves the process, as any other: signing ahead takes the signature (about 100 µs) off the path of the
    next payment, and is the same signature (RFC 6979) made earlier."""

    def __init__(self, private_key: bytes) -> None:
        super().__init__(private_key, check=False)
        self._ahead: dict[tuple[Domain, Revocation], Signature] = {}

    def sign_ahead(self, domain: Domain, revocation: Revocation) -> None:
        if (domain, revocation) in self._ahead:
            return
        if len(self._ahead) >= 64:  # a few channels' guesses at most: the older ones were wrong
            self._ahead.clear()
        self._ahead[(domain, revocation)] = super().sign_typed(domain, revocation)

    def sign_typed(self, domain: Domain, message: TypedMessage) -> Signature:
        if isinstance(message, Revocation):
            made = self._ahead.pop((domain, message), None)
            if made is not None:
                return made
        return super().sign_typed(domain, message)


class _NothingSigned(Exception):
    """Rolls back the transaction of a batch of lock operations its states all refused."""


@dataclass
class Request:
    """A queued payment (or, with ``final``, the closing state; with ``op``, a lock added, settled or
    expired) and the future its caller waits on. ``patient``: a lock of a mediated transfer, which waits for
    room in a full channel (``Node._waits_for_room``); one of ``paychan lock add`` is refused at once."""

    amount: int
    final: bool
    future: asyncio.Future[SignedState]
    op: LockOp | None = None
    patient: bool = False


@dataclass
class PayOutcome:
    """What became of a ``pay`` request of ``requested`` payments of ``amount``, exactly.

    ``paid``: countersigned by the peer (final). ``refused``: refused before signing, with the first
    ``reason`` (e.g. not enough balance). ``cancelled``: never signed (the request was interrupted or timed
    out first): they will not happen. ``in_flight``: signed by us and sent, not yet countersigned: they
    complete when the peer answers (or never, if it does not).
    """

    channel_id: bytes
    requested: int
    amount: int
    paid: list[SignedState] = field(default_factory=list)
    refused: int = 0
    reason: str | None = None
    cancelled: int = 0
    in_flight: int = 0
    error: BaseException | None = field(default=None, repr=False)  # the first refusal

    @property
    def outcome(self) -> str:
        """``done`` (all paid), ``partial`` (some paid, the rest will not be), ``pending`` (some may still
        complete) or ``none`` (nothing paid, nothing pending)."""
        if self.in_flight:
            return "pending"
        if len(self.paid) == self.requested:
            return "done"
        return "partial" if self.paid else "none"


@dataclass
class PayBatch:
    """A ``pay`` request in progress: its requests, and the event that interrupts it (``/pay/cancel``)."""

    runtime: Runtime
    requests: list[Request]
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: asyncio.Future[PayOutcome] | None = None
    settled: asyncio.Future[None] | None = None  # done once every payment is, or the batch is interrupted


@dataclass
class Runtime:
    """A channel in memory: the core ``Channel``, our proposals awaiting countersignature, the queue."""

    record: ChannelRecord
    channel: Channel
    turn: TurnState  # who may propose (``paychan.node.turn``): every decision about the turn comes from it
    inflight: list[SignedState] = field(default_factory=list)
    waiters: dict[int, Request] = field(default_factory=dict)
    queue: deque[Request] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    ops: dict[int, LockOp] = field(default_factory=dict)  # what our proposals in flight do to the locks
    op_locks: dict[int, tuple[Lock, ...]] = field(default_factory=dict)  # the lock list each of them leaves

    @property
    def cid(self) -> ChannelId:
        return self.record.channel_id

    @property
    def own_revocation(self) -> int:
        """The highest belowNonce we signed (0: none): the channel keeps it (``Channel.sign_revocation``)."""
        return self.channel.own_revocation

    @property
    def peer_revocation(self) -> SignedRevocation | None:
        """The peer's highest revocation, with its signature (``Channel.receive_revocation`` keeps it)."""
        held = self.channel.peer_revocation
        return None if held is None else SignedRevocation(held[0].below_nonce, held[1])

    @property
    def role(self) -> str:
        return self.record.role

    @property
    def peer_role(self) -> str:
        return "B" if self.record.role == "A" else "A"

    @property
    def epoch(self) -> int:
        """The turn's epoch as we know it (``TurnState.epoch``)."""
        return self.turn.epoch

    def has_turn(self) -> bool:
        return self.turn.holds

    @property
    def signs_at_once(self) -> bool:
        """Whether a lock operation queued now would be signed at once: nothing in flight or queued, the turn
        ours."""
        return not self.inflight and not self.queue and self.turn.holds


class Node:
    """One party's node. Create it, ``await start()``, serve ``peer_app(node)`` and ``control_app(node)``
    (``serve`` does all three)."""

    def __init__(
        self,
        store: Store,
        private_key: bytes,
        domain: Domain,
        contract: PaychanContract | None = None,
        public_url: str = "",
        max_batch: int = 256,
        peer_timeout: float = 10.0,
        body_timeout: float = 5.0,
        payment_timeout: float = 60.0,
        limits: Limits | None = None,
        announce_patience: float = 10.0,
        signer: Signer | None = None,
        signer_probe_interval: float = 1.0,
        wallet: str | None = None,
    ) -> None:
        """``private_key``: the node's key: it signs the node's transactions and authenticates its peer
        requests and turn messages. ``signer``: who signs the node's off-chain messages (states, revocations,
        withdrawals) for the node's address: by default a ``LocalKeySigner`` of ``private_key`` without the
        recovery check (the fastest); e.g. a ``JsonRpcSigner`` for a wallet or remote signer holding the
        same account. A signer failure refuses the operation (``SignerError``) and stores nothing as signed.
        A signer that is not local signs off the event loop (``paychan.node.remote_signer``); one that is
        unreachable is probed every ``signer_probe_interval`` s until it is back.

        ``wallet``: the node's participant is this contract wallet, which ``private_key`` owns (see the
        module docstring); ``signer`` then signs for the wallet with that key (an ``Erc1271Signer``; by
        default one of ``private_key``)."""
        self.store = store
        self._key = bytes(private_key)
        self.account: LocalAccount = Account.from_key(self._key)  # pays the gas, signs peer requests
        self.address = self.account.address if wallet is None else to_checksum_address(wallet)
        self.wallet = None if wallet is None else self.address
        self.sender: Sender = self.account if wallet is None else WalletAccount(self.address, self.account)
        self._local_signer = AheadKeySigner(self._key)
        default = self._local_signer if wallet is None else Erc1271Signer(self.address, self._local_signer)
        given: Signer = signer if signer is not None else default
        if given.address != self.address:
            raise SignerMismatch(given.address, self.address)
        if given.signing_address != self.account.address:  # a wallet's signer signs with the node's key
            raise SignerMismatch(given.signing_address, self.account.address)
        # A signer that is not a key held here signs on a thread of its own, ahead of the synchronous code
        # that needs its signatures (``with_signatures``): the event loop never waits for it.
        self.remote: RemoteSigning | None = None if given.is_local else RemoteSigning(given, signer_probe_interval)
        self.signer: Signer = given if self.remote is None else self.remote
        if self.remote is not None:
            store.before_commit.append(self.remote.check_commit)
        # our signed revocation of the nonces below each channel's stored revocation, signed once
        self._revocations: dict[bytes, SignedRevocation] = {}
        self.domain = domain
        self.contract = contract
        self.public_url = public_url
        self.max_batch = max_batch
        self.body_timeout = body_timeout
        self.payment_timeout = payment_timeout
        self.peer = PeerClient(peer_timeout, domain, self._key, participant=self.wallet)
        # The keys whose signatures count as those of counterparties that are contract wallets.
        self.chain = ChainActions(self)  # every transaction and chain read of the node (paychan.node.chain_actions)
        self.wallet_peers = WalletPeers(store, self.chain.wallet_accepts)
        self.wallet_peers.on_bound.append(self._note_wallet_signer)
        self.control_token = secrets.token_hex(16)
        self.runtimes: dict[bytes, Runtime] = {}
        # The addresses of our channels' counterparties: a request claiming one of them draws on that
        # peer's budget, any other on its IP address's (``PeerGate``).
        self.counterparties: set[str] = set()
        self.gate = PeerGate(limits)
        self.replays = ReplayGuard()
        self._started = False
        self.announce_patience = announce_patience
        self.pay_batches: dict[str, PayBatch] = {}
        # Why the node stopped trusting its chain (``ChainLost``), or None; set by the watcher.
        self.chain_lost: str | None = None
        self.chain_time: int | None = None  # the latest block's timestamp the watcher saw
        self._chain_time_at = 0.0  # time.monotonic() when chain_time was seen
        self._tasks: set[asyncio.Future[Any]] = set()
        # Channels loaded from the store: each first adopts the peer's newer doubly-signed state, if any,
        # before signing anything new (after a restore from an old backup we may have signed a nonce the
        # backup does not hold; the peer's copy tells us, and we never sign another state at it).
        self._unsynced: set[bytes] = set()
        # counters for ``status``: batches we sent, states the peer countersigned, states we countersigned
        self.stats = {
            "batchesSent": 0,
            "statesSent": 0,
            "batchesReceived": 0,
            "statesCountersigned": 0,
            "locksSignedWithIncoming": 0,  # forwarded locks signed in the incoming one's transaction
        }
        for record in store.channels():
            self._load(record)
            if record.status != STATUS_CLOSED:
                self._unsynced.add(record.channel_id)
        self.network = NodeNetwork(self)  # the contract's channel graph and our fees (paychan.node.network)
        self.transfers = NodeTransfers(self)  # payments through intermediaries (paychan.node.transfers)

    # --- loading ---------------------------------------------------------------------------------

    def _own_signature(self, signed: SignedState, role: str) -> SignedState:
        """``signed`` with our signature: a state recorded as ours (an intent, committed to already) whose
        row lacks it is signed again with the node's key, the signer's own key (a node's signer signs for
        the node's address), so loading a channel never waits for, nor fails with, a remote signer."""
        if signed.signature_of(role) is not None:
            return signed
        return signed.with_signature(role, self._local_signer.sign_typed(self.domain, signed.state))

    def _load(self, record: ChannelRecord) -> Runtime:
        """(Re)builds a channel's runtime from the store: latest countersigned state, our open proposals."""
        role, params = record.role, record.params
        peer_role = "B" if role == "A" else "A"
        row = self.store.latest_complete(record.channel_id, role)
        latest = None if row is None else self._own_signature(row.signed, role)
        after = 0 if latest is None else latest.state.nonce
        inflight = [
            self._own_signature(r.signed, role)
            for r in self.store.states(record.channel_id, after)
            if r.proposer == role and r.signed.signature_of(peer_role) is None
        ]
        deposits = (record.deposit_a, record.deposit_b)
        if latest is not None:  # the newest known: the record's, or those a later state already splits
            deposits = (max(deposits[0], latest.state.deposit_a), max(deposits[1], latest.state.deposit_b))
        peer_revocation = None
        if record.peer_revocation_sig is not None:
            peer_revocation = (Revocation(record.channel_id, record.peer_revocation), record.peer_revocation_sig)
        channel = Channel(
            record.params,
            self.domain,
            self.signer,
            deposits=deposits,
            latest=latest,
            locks=() if latest is None else self.lock_list(record.channel_id, latest.state.locks_root),
            own_revocation=record.own_revocation,
            peer_revocation=peer_revocation,
            peer_signing_address=self.wallet_peers.signer_of(
                params.participant_b if role == "A" else params.participant_a
            ),
        )

        def record_before_signing(proposal: SignedState) -> None:
            # the peer's proposal carries its signature; ours (``Channel.propose_*``) none yet
            self.store.record_intent(proposal, peer_role if proposal.signature_of(peer_role) else role)

        channel.before_sign.append(record_before_signing)
        channel.pending = inflight[0] if inflight else None
        withdraw.restore_pending(self.store, record, channel, lambda signed: self._own_signature(signed, role))
        old = self.runtimes.get(record.channel_id)
        # a channel rebuilt in this process keeps what its turn knew in memory (an epoch adopted, a grant
        # waiting); one loaded afresh starts from the stored epoch
        turn_state, _ = turn.handle(
            TurnState(role) if old is None else old.turn, turn.Restored(record.turn_epoch, len(inflight))
        )
        runtime = Runtime(record, channel, turn_state, inflight)
        if inflight:
            self._restore_ops(runtime)
        if old is not None:  # keep callers waiting on the rebuilt channel
            runtime.queue, runtime.waiters, runtime.lock = old.queue, old.waiters, old.lock
            runtime.wakeup, runtime.sender = old.wakeup, old.sender
        self.runtimes[record.channel_id] = runtime
        self.counterparties.add(channel.peer_address)
        if self._started and runtime.sender is None:
            runtime.sender = asyncio.get_running_loop().create_task(self._sender(runtime.cid))
        if inflight:
            runtime.wakeup.set()
        return runtime

    def lock_list(self, cid: bytes, root: bytes) -> tuple[Lock, ...]:
        """The lock list a state of root ``root`` commits to (the store keeps every one we signed)."""
        locks = self.store.lock_list(cid, root)
        if locks is None:
            raise StoreError(f"channel 0x{cid.hex()}: the store lacks the lock list of root 0x{root.hex()}")
        return locks

    def _restore_ops(self, runtime: Runtime) -> None:
        """After a restart: what each of our proposals in flight does to the locks, from the lock lists of
        consecutive states (one lock more: added; one less: settled if its receiver was paid, else expired),
        and the lock list the first one leaves (what the channel adopts once it is countersigned)."""
        channel, previous = runtime.channel, runtime.channel.latest.state
        for index, proposal in enumerate(runtime.inflight):
            state = proposal.state
            if state.locks_root != previous.locks_root:
                before = self.lock_list(runtime.cid, previous.locks_root)
                after = self.lock_list(runtime.cid, state.locks_root)
                runtime.op_locks[state.nonce] = after  # what Channel.propose_* had noted before the restart
                if index == 0:
                    channel.await_countersignature(proposal, after)
                if len(after) == len(before) + 1:
                    runtime.ops[state.nonce] = AddLock(after[-1])
                else:
                    (gone,) = [lock for lock in before if lock not in after]
                    side = 0 if gone.receiver == "A" else 1
                    paid = previous.payouts(state.deposit_a, state.deposit_b)  # before, with these deposits
                    receiver_gained = (state.balance_a, state.balance_b)[side] - paid[side]
                    secret = self.store.secret(gone.hashlock)
                    if receiver_gained >= gone.amount and secret is not None:
                        runtime.ops[state.nonce] = SettleLock(secret)
                    else:
                        runtime.ops[state.nonce] = ExpireLock(gone.hashlock)
            previous = state

    def _reload(self, cid: bytes) -> Runtime:
        record = self.store.channel(cid)
        assert record is not None
        return self._load(record)

    # --- signing through a signer that is not local -----------------------------------------------

    async def with_signatures(self, operation: Callable[[], T], cid: bytes | None = None) -> T:
        """Runs ``operation`` (synchronous: its checks, store transactions and signatures atomic, as with a
        local key) once every signature it needs is made. With a signer that is not local it runs first
        as a dry run (``RemoteSigning.collecting``: nothing commits), the messages it met are signed off
        the event loop, and it runs again; channel ``cid`` is reloaded after each dry run. Raises the
        signer's ``SignerError`` (nothing stored) if it cannot sign."""
        remote = self.remote
        if remote is None:
            return operation()
        for _ in range(MAX_ROUNDS):
            try:
                with remote.collecting():
                    return operation()
            except SignatureNeeded as needed:
                if cid is not None and cid in self.runtimes:
                    self._reload(cid)
                await remote.prepare(needed.messages)
        raise SignerUnavailable(
            getattr(remote.inner, "url", repr(remote.inner)),
            f"the channel changed under {MAX_ROUNDS} signing rounds in a row; try again",
        )

    async def sign_ahead(self, messages: Sequence[tuple[Domain, TypedMessage]]) -> None:
        """Has ``messages`` signed off the event loop first, when the signer is not local (else: nothing)."""
        if self.remote is not None:
            await self.remote.prepare(messages)

    async def own_revocation_signed(self, runtime: Runtime) -> SignedRevocation | None:
        """``own_revocation``, its signature made off the event loop."""
        held = self._revocations.get(runtime.cid)
        if runtime.own_revocation and (held is None or held.below_nonce != runtime.own_revocation):
            await self.sign_ahead([(self.domain, Revocation(runtime.cid, runtime.own_revocation))])
        return self.own_revocation(runtime)

    def signer_status(self) -> dict[str, Any]:
        """Who signs the node's off-chain messages and whether it can now."""
        if self.remote is None:
            return {"signer": repr(self.signer), "signerAvailable": True, "signerProblem": None}
        return self.remote.status()

    async def _watch_signer(self) -> None:
        """Probes a signer that is not local: once at start, then every ``probe_interval`` s while it is
        unavailable (operations needing a signature are refused meanwhile; the watcher needs none)."""
        remote = self.remote
        assert remote is not None
        await remote.probe()
        while True:
            await asyncio.sleep(remote.probe_interval)
            if not remote.available:
                await remote.probe()

    async def start(self) -> None:
        """Starts one sender task per channel: it first syncs with the peer, then re-sends proposals a crash
        left unanswered and sends new payments."""
        self._started = True
        loop = asyncio.get_running_loop()
        self.transfers.start()
        if self.remote is not None:
            self._background(self._watch_signer())
        for runtime in self.runtimes.values():
            if runtime.sender is None:
                runtime.sender = loop.create_task(self._sender(runtime.cid))
            if runtime.inflight:
                runtime.wakeup.set()
            if self.wallet is not None and runtime.record.status == STATUS_OPEN and runtime.record.peer_url:
                self._background(self._announce_quietly(runtime))  # a peer restored from a backup learns our key

    async def sync(self, cid: bytes) -> bool:
        """Adopts the peer's latest state if it is newer and signed by both (after a restore from backup).

        Returns whether anything changed. A state conflicting with one we signed is refused (and logged).
        A newer state splitting other funds than we know of yet raises ``SyncDeferred``: the sender syncs
        again later (a restored store's channel is not synced before).
        """
        runtime = self.runtime(cid)
        answer = await self.peer.get(
            f"{runtime.record.peer_url}/peer/channels/0x{runtime.cid.hex()}/latest", runtime.channel.peer_address
        )
        return self.adopt(runtime, parse_signed(answer.get("state")), answer.get("locks"), "the peer's")

    def adopt(self, runtime: Runtime, theirs: SignedState, lock_list: Any, source: str) -> bool:
        """Adopts ``theirs`` (from ``source``: the peer, or a watchtower after a restore) if it is newer than
        our latest and signed by both; ``lock_list`` (JSON) is its lock list, used if the store lacks it.
        Returns whether anything changed; raises as ``sync`` says."""
        if theirs.state.channel_id != runtime.cid or theirs.state.nonce <= runtime.channel.nonce:
            return False
        ours, peers = self.signer.signing_address, runtime.channel.peer_signing_address
        check_signer(self.domain, theirs.state, theirs.sig_a, ours if runtime.role == "A" else peers)
        check_signer(self.domain, theirs.state, theirs.sig_b, peers if runtime.role == "A" else ours)
        if not splits_known_funds(runtime.record, runtime.channel, theirs.state):
            raise SyncDeferred(runtime.cid, theirs.state.nonce, theirs.state.total, runtime.channel.total)
        locks = self.store.lock_list(runtime.cid, theirs.state.locks_root)
        if locks is None:  # a lock added after our backup: the peer's list, if it is the one the state commits to
            locks = _parse_locks(lock_list)
            if locks_root(locks) != theirs.state.locks_root:
                log.error("channel 0x%s: %s lock list is not its state's", runtime.cid.hex()[:12], source)
                return False
        with self.store.transaction():
            self.store.put_lock_list(runtime.cid, locks)
            self.store.record_intent(theirs, runtime.peer_role)
        self._reload(runtime.cid)
        log.warning("channel 0x%s: adopted %s newer state %d", runtime.cid.hex()[:12], source, theirs.state.nonce)
        return True

    async def _sync_first(self, cid: bytes) -> None:
        """Syncs a channel loaded from the store with the peer, once; raises while the peer cannot answer.

        A peer that does not know the channel holds no state of it, so there is nothing to adopt.
        """
        try:
            await self.sync(cid)
        except PeerRefused as exc:
            if exc.type != "UnknownChannel":
                raise
        except DoubleSignRefused as exc:  # the peer's state conflicts with one we signed: keep ours
            log.error("channel 0x%s: the peer's latest state conflicts with ours: %s", cid.hex()[:12], exc)
        mark_synced(self.store, cid)  # after a restore: the channel may close unilaterally again
        self._unsynced.discard(cid)

    async def stop(self) -> None:
        self.transfers.stop()
        for task in list(self._tasks):
            task.cancel()
        for runtime in self.runtimes.values():
            if runtime.sender is not None:
                runtime.sender.cancel()
        await self.peer.close()
        if self.remote is not None:
            self.remote.close()
        self.chain.stop()

    def note_chain_time(self, timestamp: int) -> None:
        """The latest block's timestamp, just read from the chain (by the watcher or a control action)."""
        self.chain_time, self._chain_time_at = int(timestamp), time.monotonic()

    def chain_now(self) -> int:
        """The chain's time as the node knows it: the latest block timestamp seen plus the time since (the
        wall clock before any was seen). Locks are checked against it, with no chain call: the watcher
        keeps it fresh while locks are pending; the window a lock's expiry must fall in is wide enough
        (``MIN_LOCK_TIME`` to the challenge period minus ``LOCK_EXPIRY_MARGIN``) for a few seconds' skew."""
        if self.chain_time is None:
            return int(time.time())
        return self.chain_time + int(time.monotonic() - self._chain_time_at)

    def resolve(self, name: Any, any_status: bool = False) -> Runtime:
        """The channel a user names: its full id, a unique prefix of it (at least 4 hex digits, with or
        without ``0x``), or nothing for the node's only channel that is not closed (``any_status``: or its
        only channel, if it has just one)."""
        if name is None or name == "":
            if any_status and len(self.runtimes) == 1:
                return next(iter(self.runtimes.values()))
            return self.runtime(None)
        if not isinstance(name, str) or not re.fullmatch(r"(0x)?[0-9a-fA-F]{4,64}", name):
            raise MalformedMessage(f"a channel is named by its id or a prefix of it (hex), not {name!r}")
        prefix = name.lower().removeprefix("0x")
        matches = [r for cid, r in self.runtimes.items() if cid.hex().startswith(prefix)]
        if not matches:
            raise UnknownChannel(f"no channel {name} on this node")
        if len(matches) > 1:
            raise UnknownChannel(f"{len(matches)} channels start with {name}: give more digits")
        return matches[0]

    def runtime(self, cid: bytes | None) -> Runtime:
        if cid is None:  # the one channel that is not closed
            live = [r for r in self.runtimes.values() if r.record.status != STATUS_CLOSED]
            if len(live) != 1:
                raise UnknownChannel(f"the node has {len(live)} channels not closed: name one with --channel")
            return live[0]
        runtime = self.runtimes.get(cid)
        if runtime is None:
            raise UnknownChannel(f"no channel 0x{cid.hex()} on this node")
        return runtime

    # --- receiving proposals (peer side) ---------------------------------------------------------

    def handle_propose(self, message: Propose, signer: str | None = None) -> tuple[list[SignedState], Exception | None]:
        """Countersigns the proposed states in order until the first invalid one; stores before answering.

        ``signer``: who signed the request (the counterparty, or it is refused). Returns the countersigned
        states and the error that stopped it (if any). Runs without awaiting, so no other handler
        interleaves; the transaction commits before anything is returned. A channel loaded from the store
        signs nothing, ours or the peer's, before it has synced with the peer (``NotSynced``): after a
        restore from an old backup we may have countersigned, at a nonce the backup lacks, another state.
        """
        runtime = self.runtime(message.channel_id)
        self.check_counterparty(runtime, signer)
        if runtime.cid in self._unsynced:
            raise NotSynced(runtime.cid)
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        # whether we countersigned them all already: read from the store only when the turn is ours
        again = runtime.turn.holds and self._countersigned_already(runtime, message.states)
        _, verdict = turn.handle(runtime.turn, turn.ReceiveProposal(message.epoch, message.handover, again))
        if isinstance(verdict[0], turn.RefuseNotYourTurn):
            raise NotYourTurn(verdict[0].epoch)
        accepted: list[SignedState] = []
        locks_before = len(runtime.channel.locks)
        taken = runtime.turn  # the turn after these states: taken if the peer hands it over with them
        fresh: list[SignedState] = []  # countersigned now: our signature goes to the store with them
        error: Exception | None = None
        revocation: tuple[Revocation, Signature] | None = None
        try:
            with self.store.transaction():
                if message.revocation is not None:
                    self._take_peer_revocation(runtime, message.revocation)
                for index, proposal in enumerate(message.states):
                    try:
                        accepted.append(self._countersign(runtime, proposal, fresh, message.op(index)))
                    except (StateRejected, DoubleSignRefused) as exc:
                        error = exc
                        break
                if fresh:
                    self.store.add_signatures(*fresh)
                    self.transfers.sign_forwards_now()  # the locks these countersignatures forward, if they can
                all_states = error is None and len(accepted) == len(message.states)
                countersigned = turn.ProposalCountersigned(message.epoch, message.handover, all_states)
                taken = self._turn_stored(runtime, countersigned)  # in this transaction
                revocation = runtime.channel.sign_revocation()  # below the latest we now hold doubly signed
                if revocation is not None:  # committed with the states it follows, before it is sent
                    self.store.set_own_revocation(runtime.cid, revocation[0].below_nonce)
        except Exception:
            self._reload(runtime.cid)  # nothing was committed: forget what the channel object accepted
            self.transfers.rollback()  # nor what the transfer machines decided about its lock operations
            raise
        runtime.turn = taken  # committed
        if len(runtime.channel.locks) < locks_before and runtime.queue:
            runtime.wakeup.set()  # a lock of ours that waited for room may go now (``_waits_for_room``)
        self.transfers.after_exchange()
        if revocation is not None:
            self._revocations[runtime.cid] = SignedRevocation(revocation[0].below_nonce, revocation[1])
        self.stats["batchesReceived"] += 1
        self.stats["statesCountersigned"] += len(accepted)
        return accepted, error

    def _countersigned_already(self, runtime: Runtime, states: Sequence[SignedState]) -> bool:
        """Whether we countersigned every one of ``states`` already (a re-sent message, answered as before even
        when the turn is ours now: the peer handed it over with them and did not get our answer)."""
        for proposal in states:
            state = proposal.state
            if state.channel_id != runtime.cid or state.nonce > runtime.channel.nonce:
                return False
            row = self.store.state_at(runtime.cid, state.nonce)
            if row is None or row.state_hash != state_struct_hash(state):
                return False
        return True

    def _countersign(
        self, runtime: Runtime, proposal: SignedState, fresh: list[SignedState], op: LockOp | None = None
    ) -> SignedState:
        state = proposal.state
        if state.channel_id == runtime.cid and state.nonce <= runtime.channel.nonce:
            row = self.store.state_at(runtime.cid, state.nonce)
            if row is not None and row.state_hash == state_struct_hash(state):
                # a re-sent proposal we already countersigned: answer with the same state, sign nothing new
                check_signer(
                    self.domain, state, proposal.signature_of(runtime.peer_role), runtime.channel.peer_signing_address
                )
                return self._own_signature(row.signed, runtime.role)
            raise UnexpectedNonce(state.nonce, runtime.channel.nonce + 1)
        channel = runtime.channel
        # The machine of the lock's payment (if it is a mediated transfer's) decides first, then Channel
        # validates (the lock window against our chain time, duplicates, totals, root, balances, the
        # signature) before before_sign records the intent: a refused proposal writes nothing
        mark = self.transfers.mark()
        if op is not None:
            self.transfers.check_peer_op(runtime, op)
        try:
            signed = self._receive_op(runtime, proposal, op)
        except Exception:
            self.transfers.undo_to(mark)
            raise
        if op is not None:
            self.store.put_lock_list(runtime.cid, channel.locks)  # in the caller's transaction, before we answer
        fresh.append(signed)
        return signed

    def _receive_op(self, runtime: Runtime, proposal: SignedState, op: LockOp | None) -> SignedState:
        channel = runtime.channel
        if isinstance(op, AddLock):
            signed = channel.receive_proposal(proposal, lock=op.lock, now=self.chain_now())
        elif isinstance(op, SettleLock):
            signed = channel.receive_proposal(proposal, settle=op.secret)
            self.store.add_secret(op.secret)  # learned: it pays whoever locked towards us under this hashlock
        elif isinstance(op, ExpireLock):
            signed = channel.receive_proposal(proposal, expire=op.hashlock, now=self.chain_now())
        else:
            signed = channel.receive_proposal(proposal)
        return signed

    # --- revocations -----------------------------------------------------------------------------

    def own_revocation(self, runtime: Runtime) -> SignedRevocation | None:
        """Our signed revocation of every nonce below our stored revocation (``own_revocation``), or None."""
        if runtime.own_revocation == 0:
            return None
        held = self._revocations.get(runtime.cid)
        if held is not None and held.below_nonce == runtime.own_revocation:
            return held
        revocation = Revocation(runtime.cid, runtime.own_revocation)
        signed = SignedRevocation(runtime.own_revocation, self.signer.sign_typed(self.domain, revocation))
        self._revocations[runtime.cid] = signed
        return signed

    def _revoke_latest(self, runtime: Runtime) -> SignedRevocation | None:
        """Revokes every nonce below our latest doubly-signed state (stored durably already) with
        ``Channel.sign_revocation``; recorded in the store before the signature leaves the process. None if
        there is nothing new to revoke."""
        with self._revocation_kept(runtime):
            signed = self._record_revocation(runtime)
        if signed is not None:
            self._revocations[runtime.cid] = signed
        return signed

    def _record_revocation(self, runtime: Runtime) -> SignedRevocation | None:
        """``_revoke_latest`` inside the caller's transaction (inside ``_revocation_kept``): the caller keeps
        the signed revocation in ``_revocations`` once that transaction has committed, not before."""
        revocation = runtime.channel.sign_revocation()
        if revocation is None:
            return None
        self.store.set_own_revocation(runtime.cid, revocation[0].below_nonce)
        return SignedRevocation(revocation[0].below_nonce, revocation[1])

    @contextmanager
    def _revocation_kept(self, runtime: Runtime) -> Iterator[None]:
        """Restores the channel's own revocation if the block raises: a revocation whose transaction did not
        commit is not stored, so it is never sent (``own_revocation`` would sign and send the one in memory)."""
        channel = runtime.channel
        held = channel.own_revocation
        try:
            yield
        except BaseException:
            channel.own_revocation = held
            raise

    def _sign_revocation_ahead_soon(self, cid: bytes) -> None:
        """Once the answer being written has left (the next turn of the event loop), signs ahead the revocation
        channel ``cid``'s next message will carry (``_sign_revocation_ahead``)."""
        asyncio.get_running_loop().call_soon(self._sign_revocation_ahead, cid)

    def _sign_revocation_ahead(self, cid: bytes) -> None:
        """Signs ahead, in memory (``AheadKeySigner``), the revocation we will sign with the next message of an
        idle channel: below our latest state if we have not revoked below it yet (we proposed it: our next
        proposal revokes below it), else below the next nonce (we countersigned it: our answer to a proposal of
        one state revokes below that). Only with the node's own key, and never stored or sent from here."""
        runtime = self.runtimes.get(cid)
        if runtime is None or self.signer is not self._local_signer or runtime.inflight or runtime.queue:
            return
        channel = runtime.channel
        if channel.pending_withdrawal is not None or not channel.latest.is_complete:
            return
        below = channel.nonce if channel.nonce > channel.own_revocation else channel.nonce + 1
        if below <= MAX_NONCE:
            self._local_signer.sign_ahead(self.domain, Revocation(runtime.cid, below))

    def _take_peer_revocation(self, runtime: Runtime, revocation: SignedRevocation) -> None:
        """Checks the peer's revocation with ``Channel.receive_revocation`` and keeps it if it is the peer's
        highest (stored in the caller's transaction; the caller reloads the channel if that fails).

        One no higher than the one held is ignored: the peer sends its highest with every message, and a
        peer restored from an old backup may send an older one."""
        held = runtime.channel.peer_revocation
        if revocation.below_nonce <= (0 if held is None else held[0].below_nonce):
            return
        runtime.channel.receive_revocation(Revocation(runtime.cid, revocation.below_nonce), revocation.signature)
        self.store.set_peer_revocation(runtime.cid, revocation.below_nonce, revocation.signature)

    def check_counterparty(self, runtime: Runtime, signer: str | None) -> None:
        """Refuses a request not signed by the channel's counterparty (``None``: checked by the caller)."""
        if signer is not None and signer != runtime.channel.peer_address:
            raise NotCounterparty(signer, runtime.channel.peer_address)

    def _note_wallet_signer(self, wallet: str, key: str) -> None:
        """A counterparty wallet's signer, just learnt: its signatures count as the wallet's from now on."""
        for runtime in self.runtimes.values():
            if runtime.channel.peer_address == wallet:
                runtime.channel.peer_signing_address = key

    def handle_turn(self, message: TurnMessage, request_signer: str | None = None) -> Runtime:
        """Checks a turn request is the peer's own (``grant_turn`` answers it)."""
        runtime = self.runtime(message.channel_id)
        self.check_counterparty(runtime, request_signer)
        signer = message.signer(self.domain)
        if signer != runtime.channel.peer_signing_address:
            raise InvalidSignature(expected=runtime.channel.peer_signing_address, recovered=signer)
        return runtime

    async def grant_turn(self, runtime: Runtime, patience: float = 10.0, peer_epoch: int = 0) -> int:
        """Gives the turn to the peer, whose request carries ``peer_epoch``, once our proposals in flight are
        countersigned; returns the epoch to answer (``turn``: ``ReceiveTurnRequest``, ``ActionGrant``).

        While the peer waits we sign no new batch (``TurnState.peer_waiting``), so a stream of our own payments
        cannot starve the peer's. Raises ``ProposalPending`` if our proposals stay unanswered for ``patience``
        s. Each check is of the channel as it is then: one rebuilt meanwhile (``_reload``) gives the turn up.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        cid = runtime.cid
        self._turn_actions(self.runtimes[cid], turn.ReceiveTurnRequest(peer_epoch))
        waiting = True
        try:
            while True:
                async with runtime.lock:  # kept by a rebuilt channel
                    runtime = self.runtimes[cid]
                    for action in self._turn_actions(runtime, turn.ActionGrant()):
                        if isinstance(action, turn.AnswerTurn):
                            waiting = False
                            return action.epoch
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0.002)  # our sender takes the lock and sends what is in flight
            runtime = self.runtimes[cid]
            waiting = False
            (refusal,) = self._turn_actions(runtime, turn.GrantAbandoned())
            assert isinstance(refusal, turn.RefuseProposalPending)
            raise ProposalPending(runtime.inflight[0].state.nonce if runtime.inflight else runtime.channel.nonce + 1)
        finally:
            if waiting:  # cancelled: the peer's request went away
                self._turn_actions(self.runtimes[cid], turn.GrantAbandoned())

    def _turn_step(self, runtime: Runtime, event: turn.Event) -> tuple[TurnState, list[turn.Action]]:
        """The turn's next state after ``event`` and its actions, the epoch stored first if it says so
        (``StoreEpoch``, in the caller's transaction if there is one)."""
        state, actions = turn.handle(runtime.turn, event)
        for action in actions:
            if isinstance(action, turn.StoreEpoch):
                self.store.set_turn_epoch(runtime.cid, action.epoch)
        return state, actions

    def _turn_stored(self, runtime: Runtime, event: turn.Event) -> TurnState:
        """``_turn_step``'s state; the caller keeps it in ``runtime`` once its transaction has committed."""
        return self._turn_step(runtime, event)[0]

    def _turn_actions(self, runtime: Runtime, event: turn.Event) -> list[turn.Action]:
        """Feeds ``event`` to the channel's turn (an epoch it stores is stored first); the actions it calls for."""
        runtime.turn, actions = self._turn_step(runtime, event)
        return actions

    def handle_announce(self, message: Announce, signer: str, announced_at: int) -> ChannelRecord:
        """Takes the peer URL of a known channel from its other participant's announce, if newer.

        ``signer`` signed the request at ``announced_at`` (ms). A channel the node has not seen on chain
        is refused (``UnknownChannel``; the opener announces again): nothing is stored, nothing is asked
        of the chain.
        """
        if (
            message.chain_id != self.domain.chain_id
            or message.contract.lower() != self.domain.verifying_contract.lower()
        ):
            raise MalformedMessage("the channel is on another chain or contract")
        cid = channel_id(message.params, self.domain.chain_id, self.domain.verifying_contract)
        try:
            role = message.params.role_of(self.address)
        except ValueError:
            raise MalformedMessage(f"{self.address} is not a participant of this channel") from None
        other = message.params.participant_b if role == "A" else message.params.participant_a
        if signer != other:
            raise NotCounterparty(signer, other)
        runtime = self.runtimes.get(cid)
        if runtime is None:
            raise UnknownChannel(f"channel 0x{cid.hex()} not seen on chain yet; announce it again once it is mined")
        if self.store.set_peer_url(cid, message.peer_url, announced_at):
            runtime.record = self.store.channel(cid) or runtime.record
            log.info("channel 0x%s: the peer is at %s", cid.hex()[:12], message.peer_url)
            runtime.wakeup.set()
            if self.wallet is not None and runtime.role == "B":
                # the opener learns from our announce which key speaks for the wallet: it takes our
                # signatures as the wallet's only from then on (the opener announces first, never back)
                self._background(self.announce_until_known(runtime, patience=3600.0))
            self.network.greet(runtime)  # the fee announcements we hold
        return runtime.record

    # --- proposing (our side) --------------------------------------------------------------------

    async def pay(self, cid: bytes | None, amount: int, count: int = 1) -> SignedState:
        """Queues ``count`` payments of ``amount``; returns the state countersigned for the last one.

        Raises the first refusal, or ``PaymentTimeout``; ``pay_outcome`` reports partial results instead."""
        outcome = await self.pay_outcome(cid, amount, count)
        if outcome.outcome == "done":
            return outcome.paid[-1]
        if outcome.error is not None and not outcome.paid and not outcome.in_flight:
            raise outcome.error
        raise PaymentTimeout(self.describe_outcome(outcome))

    async def pay_outcome(
        self, cid: bytes | None, amount: int, count: int = 1, batch_id: str | None = None
    ) -> PayOutcome:
        """Queues ``count`` payments of ``amount`` and reports exactly what became of them.

        Waits until each is countersigned or refused, at most ``payment_timeout`` s, or until the batch is
        interrupted (``cancel_pay(batch_id)``). Then the payments not signed yet are taken back (they will
        never happen) and those signed and sent are reported in flight (they complete when the peer answers).
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidAmount(amount)
        if not 1 <= count <= 100_000:
            raise InvalidAmount(count)
        runtime = self.runtime(cid)
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        if self.chain_lost is not None:
            raise ChainLost(self.chain_lost)
        loop = asyncio.get_running_loop()
        requests = [Request(amount, False, loop.create_future()) for _ in range(count)]
        batch = PayBatch(runtime, requests)
        if batch_id is not None:
            if batch_id in self.pay_batches:
                raise MalformedMessage(f"pay request {batch_id!r} exists already")
            self.pay_batches[batch_id] = batch
        runtime.queue.extend(requests)
        runtime.wakeup.set()
        batch.outcome = loop.create_future()
        try:
            # one future, resolved once every payment is done or the batch is interrupted: no task of its own
            # (waiting on it never cancels a payment)
            settled = batch.settled = loop.create_future()
            left = [len(requests)]

            def one_done(_: asyncio.Future[SignedState]) -> None:
                left[0] -= 1
                if not left[0] and not settled.done():
                    settled.set_result(None)

            for request in requests:
                request.future.add_done_callback(one_done)
            try:
                async with asyncio.timeout(self.payment_timeout):
                    await settled
            except TimeoutError:
                pass
            outcome = self._settle_batch(runtime, requests, amount)
            batch.outcome.set_result(outcome)
            return outcome
        finally:
            if batch_id is not None:
                self._forget_batch(batch_id)

    async def pay_request(self, cid: bytes, amount: int, count: int, request_id: str | None) -> PayOutcome:
        """A user's pay request (control ``/pay``): ``pay_outcome``, then our next revocation signed ahead
        (the next request is likely one like it)."""
        outcome = await self.pay_outcome(cid, amount, count, request_id)
        self._sign_revocation_ahead_soon(cid)
        return outcome

    def _forget_batch(self, batch_id: str) -> None:
        # kept a little while, so that a ``/pay/cancel`` arriving after the outcome still gets it
        asyncio.get_running_loop().call_later(60.0, self.pay_batches.pop, batch_id, None)

    def _settle_batch(self, runtime: Runtime, requests: list[Request], amount: int) -> PayOutcome:
        """Takes back the requests not signed yet and counts what became of each."""
        outcome = PayOutcome(runtime.cid, len(requests), amount)
        pending = {id(r) for r in requests if not r.future.done()}
        if pending:
            kept = deque(r for r in runtime.queue if id(r) not in pending)
            for request in runtime.queue:
                if id(request) in pending:
                    request.future.cancel()  # never signed: it will not happen
            runtime.queue = kept
        for request in requests:
            future = request.future
            if future.cancelled():
                if any(w is request for w in runtime.waiters.values()):
                    outcome.in_flight += 1  # signed and sent before it was cancelled
                else:
                    outcome.cancelled += 1
            elif not future.done():
                outcome.in_flight += 1
            elif future.exception() is not None:
                outcome.refused += 1
                if outcome.error is None:
                    outcome.error = future.exception()
                    outcome.reason = str(outcome.error)
            else:
                outcome.paid.append(future.result())
        return outcome

    async def cancel_pay(self, batch_id: str) -> PayOutcome:
        """Interrupts the pay request ``batch_id`` (Ctrl-C on ``paychan pay``); its outcome."""
        batch = self.pay_batches.get(batch_id)
        if batch is None:
            raise UnknownChannel(f"no pay request {batch_id!r} on this node")
        batch.interrupted.set()
        if batch.settled is not None and not batch.settled.done():
            batch.settled.set_result(None)
        assert batch.outcome is not None
        return await asyncio.shield(batch.outcome)

    def describe_outcome(self, outcome: PayOutcome) -> str:
        """One plain sentence saying exactly what happened to a pay request."""
        runtime = self.runtimes[outcome.channel_id]
        head = f"paid {len(outcome.paid)} of {outcome.requested}"
        parts = []
        if outcome.refused:
            parts.append(f"{outcome.refused} refused ({outcome.reason})")
        if outcome.cancelled:
            parts.append(f"{outcome.cancelled} cancelled before we signed them (they will not happen)")
        if outcome.in_flight:
            parts.append(
                f"{outcome.in_flight} signed and sent but not countersigned yet: they complete when the peer "
                "answers; check with `paychan status` before paying again"
            )
        return head + (": " + "; ".join(parts) if parts else "") + f"; nonce {runtime.channel.nonce}"

    async def _sender(self, cid: bytes) -> None:
        """Sends this channel's queued payments in batches, re-sending unanswered proposals first."""
        backoff = 0.02
        while True:
            # Sync once the proposals a crash left in flight are answered (they are states we signed
            # already, so sending them again is safe); nothing new is signed before.
            runtime = self.runtimes[cid]
            if cid in self._unsynced and not runtime.inflight and runtime.record.status != STATUS_CLOSED:
                try:
                    await self._sync_first(cid)
                except asyncio.CancelledError:
                    raise
                except (PaychanError, ValueError) as exc:  # the peer is down or answered garbage: retry
                    log.info("channel 0x%s: no sync with the peer yet: %s", cid.hex()[:12], exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                runtime = self.runtimes[cid]  # an adopted state reloads the channel
            if not runtime.inflight and all(self._waits_for_room(runtime, r) for r in runtime.queue):
                runtime.wakeup.clear()  # nothing queued, or only locks of a full channel: a settle wakes us
                await runtime.wakeup.wait()
                continue
            if not runtime.inflight and runtime.channel.pending_withdrawal is not None:
                runtime.wakeup.clear()  # nothing on top of a withdrawal not made yet: note_withdrawn wakes us
                await runtime.wakeup.wait()
                continue
            try:
                if runtime.turn.in_flight != len(runtime.inflight):  # a bug: the turn would wait for nothing
                    log.error("channel 0x%s: the turn counts %d in flight", cid.hex()[:12], runtime.turn.in_flight)
                    self._turn_actions(runtime, turn.Restored(runtime.epoch, len(runtime.inflight)))
                (action,) = self._turn_actions(runtime, turn.ActionSend())
                if isinstance(action, turn.YieldTurn):
                    await asyncio.sleep(0.002)  # the peer is about to get the turn: let it
                    continue
                if isinstance(action, turn.SendTurnRequest) and cid not in self._unsynced:
                    # Asked without holding the channel's lock: the peer may be asking us for the turn at the
                    # same time, and our grant (``grant_turn``) takes that lock.
                    await self._acquire_turn(runtime)
                async with runtime.lock:
                    runtime = self.runtimes[cid]
                    if not runtime.inflight:
                        if cid in self._unsynced:
                            continue  # not synced with the peer yet: sign nothing new
                        (action,) = self._turn_actions(runtime, turn.ActionSend())
                        if isinstance(action, turn.SendTurnRequest):
                            continue  # the turn went back
                        if isinstance(action, turn.BuildBatch):  # a turn we asked for carries one batch at least
                            await self._build_batch(runtime)
                            runtime = self.runtimes[cid]
                            if runtime.turn.owed:  # nothing was signed after all: the turn is owed no more
                                self._turn_actions(runtime, turn.BatchSigned(0))
                    if runtime.inflight:
                        await self._exchange_and_build(runtime)
                backoff = 0.02
            except (PeerUnavailable, PeerRefused, StateRejected, DoubleSignRefused) as exc:
                log.warning("channel 0x%s: %s", cid.hex()[:12], exc)
                if isinstance(exc, PeerRefused):
                    self._op_refused(self.runtimes[cid], exc)
                if isinstance(exc, PeerRefused) and exc.type in UNKNOWN_TO_PEER and runtime.role == "A":
                    await self._announce_quietly(runtime)  # our announcement after opening was lost
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: log it, keep the node alive, retry later
                log.exception("channel 0x%s: sender failed", cid.hex()[:12])
                await asyncio.sleep(1.0)

    async def _exchange_and_build(self, runtime: Runtime) -> None:
        """Sends our proposals in a pipeline: the peer always has the next message while we work.

        While the peer checks and countersigns message k, we sign the next batch; as soon as k's answer
        arrives we send that batch (k + 1) and only then check k's countersignatures and store them. The two
        nodes so work at the same time instead of waiting for each other. A batch always follows the last
        state in flight and is recorded before it is signed; messages go out one after the other, so the
        peer sees the nonces in order. At most two messages' worth of states are open.
        """
        sent = list(runtime.inflight)
        request: asyncio.Future[dict[str, Any]] | None = asyncio.ensure_future(self._send(runtime, sent))
        try:
            while request is not None:
                for _ in range(3):  # let the request reach the socket first (and payments arriving meanwhile in)
                    await asyncio.sleep(0)
                if self._may_build(runtime):
                    await self._build_batch(runtime)
                answer = await request
                request = None
                following = runtime.inflight[len(sent) :]
                complete = isinstance(answer.get("states"), list) and len(answer["states"]) >= len(sent)
                if following and complete and "error" not in answer:
                    request = asyncio.ensure_future(self._send(runtime, following))
                self._apply(runtime, answer)
                sent = following
        finally:
            if request is not None:  # our proposals stay in flight: they are sent again later
                request.cancel()
                await asyncio.gather(request, return_exceptions=True)

    def _may_build(self, runtime: Runtime) -> bool:
        return bool(
            runtime.queue
            and runtime.cid not in self._unsynced
            and len(runtime.inflight) < 2 * self.max_batch
            and turn.handle(runtime.turn, turn.ActionBuildMore())[1]
        )

    async def _acquire_turn(self, runtime: Runtime) -> None:
        """Asks the peer for the turn until we hold it (``turn``: ``SendTurnRequest``, ``ReceiveTurnAnswer``);
        an epoch adopted from its answer is stored with our next batch's intents."""
        cid = runtime.cid
        while not self.runtimes[cid].turn.holds:
            runtime = self.runtimes[cid]
            request = TurnMessage.create(self.domain, cid, runtime.epoch, self._key)
            answer = parse_turn(
                await self.peer.post(
                    runtime.record.peer_url + "/peer/turn", request.to_json(), runtime.channel.peer_address
                )
            )
            runtime = self.runtimes[cid]
            signer = answer.signer(self.domain)
            if answer.channel_id != runtime.cid or signer != runtime.channel.peer_signing_address:
                raise PeerUnavailable(f"turn answer not signed by the peer (signed by {signer})")
            for action in self._turn_actions(runtime, turn.ReceiveTurnAnswer(answer.epoch)):
                if isinstance(action, turn.SendTurnRequest) and action.delay:
                    await asyncio.sleep(action.delay)

    def _waits_for_room(self, runtime: Runtime, request: Request) -> bool:
        """Whether ``request`` is a lock that waits for room: its channel holds ``MAX_LOCKS`` locks already.
        A payer whose payments complete with its own unlock may start payments faster than the hops after it
        settle theirs; the lock waits (it is not refused) until the peer's settle of a lock frees a place, so
        the settles hold the pace, and the payment completes instead of hanging until its expiry."""
        return request.patient and isinstance(request.op, AddLock) and len(runtime.channel.locks) >= MAX_LOCKS

    async def _build_batch(self, runtime: Runtime) -> None:
        """``_build_queued`` on the queue without the locks that wait for room (put back first after it)."""
        full = len(runtime.channel.locks) >= MAX_LOCKS  # else nothing waits: no scan of a long payment queue
        waiting = [r for r in runtime.queue if self._waits_for_room(runtime, r)] if full else []
        if not waiting:
            await self._build_queued(runtime)
            return
        queue = runtime.queue  # changed in place: a reload of the channel meanwhile keeps this queue
        kept = [r for r in queue if not any(r is w for w in waiting)]
        queue.clear()
        queue.extend(kept)
        try:
            await self._build_queued(runtime)
        finally:
            queue.extendleft(reversed(waiting))

    async def _build_queued(self, runtime: Runtime) -> None:
        """Turns queued requests into the next states, records them as intents (one commit), signs them.

        Payments keep the locks of the state they follow. A lock added, settled or expired (``op``) is
        built by ``Channel`` alone, once nothing is in flight, and goes in a batch of its own."""
        channel = runtime.channel
        while runtime.queue and runtime.queue[0].future.done():
            runtime.queue.popleft()
        if runtime.queue and runtime.queue[0].op is not None:
            await self._build_ops(runtime)
            return
        if runtime.inflight:  # continue after the states already in flight
            last = runtime.inflight[-1].state
            balance_a, balance_b, nonce, final = (
                int(last.balance_a),
                int(last.balance_b),
                int(last.nonce),
                last.is_final,
            )
            deposit_a, deposit_b = int(last.deposit_a), int(last.deposit_b)
        else:
            last = channel.latest.state
            balance_a, balance_b = channel.balances()
            # above every nonce signed: after a dropped withdrawal its state's nonce stays taken
            nonce, final = channel.signed_nonce, channel.is_final
            deposit_a, deposit_b = channel.deposits
        states: list[ChannelState] = []
        owners: list[Request] = []
        while runtime.queue and len(states) < self.max_batch and not final:
            if runtime.queue[0].op is not None:
                break  # a lock operation waits until these are countersigned
            request = runtime.queue.popleft()
            if request.future.done():
                continue
            if runtime.record.status != STATUS_OPEN:
                request.future.set_exception(ChannelNotOpen(runtime.record.status))
                continue
            if nonce + 1 > MAX_NONCE:
                request.future.set_exception(UnexpectedNonce(nonce + 1, MAX_NONCE))
                continue
            if request.final and (last.locked_a or last.locked_b):
                request.future.set_exception(FinalStateHasLocks(last.locked_a, last.locked_b, last.locks_root))
                continue
            if request.final:
                final = True
            else:
                mine = balance_a if runtime.role == "A" else balance_b
                if request.amount > mine:
                    request.future.set_exception(InsufficientBalance(mine, request.amount))
                    continue
                if runtime.role == "A":
                    balance_a, balance_b = balance_a - request.amount, balance_b + request.amount
                else:
                    balance_a, balance_b = balance_a + request.amount, balance_b - request.amount
            nonce += 1
            states.append(
                ChannelState(
                    runtime.cid,
                    Nonce(nonce),
                    Wei(balance_a),
                    Wei(balance_b),
                    last.locks_root,
                    is_final=request.final,
                    deposit_a=Wei(deposit_a),
                    deposit_b=Wei(deposit_b),
                    locked_a=last.locked_a,
                    locked_b=last.locked_b,
                    withdrawals=runtime.record.withdrawals,
                )
            )
            owners.append(request)
        while final and runtime.queue:  # nothing can follow a final state
            request = runtime.queue.popleft()
            if not request.future.done():
                request.future.set_exception(ChannelFinalized(nonce))
        if not states:
            return
        try:
            if self.remote is not None:  # signed first, off the event loop; recorded below before they leave
                basis = self._batch_basis(runtime)
                await self.sign_ahead([(self.domain, s) for s in states])
                moved = self.runtimes.get(runtime.cid) is not runtime or self._batch_basis(runtime) != basis
                if moved or any(r.future.done() for r in owners):  # changed, or a payment cancelled, meanwhile
                    runtime.queue.extendleft(reversed(owners))  # built again from what holds now
                    return
            # signed inside the transaction of their intents (which keep our signatures): a signer that fails
            # (refuses, is unreachable, answers with another key's signature) rolls the intents back, and
            # nothing was signed. With a local key, our revocation below the latest doubly-signed state (what
            # the message carrying them sends) commits with them: no commit of its own before the send.
            revocation = None
            with self._revocation_kept(runtime), self.store.transaction():
                self._turn_stored(runtime, turn.SigningBatch())  # the epoch we sign under, with the intents
                signer, domain = self.signer, self.domain
                signed = [SignedState(s).with_signature(runtime.role, signer.sign_typed(domain, s)) for s in states]
                for one in signed:
                    self.store.record_intent(one if self.remote is not None else SignedState(one.state), runtime.role)
                if self.remote is None:
                    revocation = self._record_revocation(runtime)
            if revocation is not None:
                self._revocations[runtime.cid] = revocation
        except (DoubleSignRefused, SignerError) as exc:
            for request in owners:
                request.future.set_exception(exc)
            if isinstance(exc, SignerError):
                log.warning(
                    "channel 0x%s: the signer failed, %d states not signed: %s",
                    runtime.cid.hex()[:12],
                    len(states),
                    exc,
                )
                return
            raise
        runtime.inflight.extend(signed)
        self._turn_actions(runtime, turn.BatchSigned(len(signed)))
        for state, request in zip(states, owners, strict=True):
            runtime.waiters[state.nonce] = request
        channel.pending = runtime.inflight[0]

    @staticmethod
    def _batch_basis(runtime: Runtime) -> tuple[Any, ...]:
        """What a batch of our payments is built on: while a remote signer signs it, none of it may change."""
        channel = runtime.channel
        last = runtime.inflight[-1] if runtime.inflight else None
        return (last, channel.latest, channel.signed_nonce, runtime.turn, runtime.record.status)

    async def _build_ops(self, runtime: Runtime) -> None:
        """Signs the states of the lock operations at the head of the queue (adding, settling or expiring a
        lock: ``Channel.propose_lock`` / ``propose_settle_lock`` / ``propose_expire_lock``, each on the state
        the one before it leaves, ``Channel.following``), to go in one message: a channel carrying several
        routed payments moves their locks in one exchange instead of one each. Their intents, lock lists
        (and the secrets we settle with) commit in one transaction before they are sent. One that its state
        refuses (a lock of the peer's settled meanwhile, an expiry not reached) gets its refusal and signs
        nothing; the others go. With a remote signer one at a time (its dry run signs nothing ahead). Each
        request's future gets the countersigned state, or the refusal."""
        limit = 1 if self.remote is not None else self.max_batch
        requests: list[Request] = []
        while runtime.queue and runtime.queue[0].op is not None and len(requests) < limit:
            request = runtime.queue.popleft()
            if not request.future.done():
                requests.append(request)
        if not requests:
            return
        cid = runtime.cid
        # Locks of payments we forward or receive, with nothing queued behind them: the peer will answer them
        # with the next states (the settles, or locks of its own), so the turn goes with them, saving a turn
        # request (``turn``: ``SigningBatch``); the peer takes it when it countersigns (``handle_propose``).
        # A payer keeps it: it proposes the unlock after its lock, and its next payment's lock.
        routed = all(self.transfers.hands_over(r.op) for r in requests if r.op is not None)
        signing = turn.SigningBatch(routed_op=routed, queued=bool(runtime.queue))
        try:
            built, handover, left = await self.with_signatures(
                lambda: self._ops_states(self.runtimes[cid], requests, signing), cid
            )
        except Exception as exc:
            if self.runtimes[cid].channel.pending is not None:  # signed, but the transaction rolled back
                self._reload(cid)
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            if not isinstance(exc, (PaychanError, ValueError)):
                raise
            return
        runtime = self.runtimes[cid]
        runtime.queue.extendleft(reversed(left))  # locks that wait for room, and what came after them
        if built:
            self._put_in_flight(runtime, built, handover)

    def _put_in_flight(
        self, runtime: Runtime, built: list[tuple[SignedState, tuple[Lock, ...], Request]], handover: bool
    ) -> None:
        """Our lock operations just signed (``_ops_states``) go in flight: what each does to the locks, who
        waits for its countersignature; the turn counts them (the peer's once it countersigns, on a handover)."""
        runtime.inflight.extend(signed for signed, _, _ in built)
        self._turn_actions(runtime, turn.BatchSigned(len(built), handover))
        for signed, locks, request in built:
            assert request.op is not None
            runtime.ops[signed.state.nonce] = request.op
            runtime.op_locks[signed.state.nonce] = locks
            runtime.waiters[signed.state.nonce] = request

    def _ops_states(
        self, runtime: Runtime, requests: list[Request], signing: turn.SigningBatch
    ) -> tuple[list[tuple[SignedState, tuple[Lock, ...], Request]], bool, list[Request]]:
        """The signed states of ``requests``' lock operations, committed with their intents, their lock lists
        and the epoch the turn signs them under (see ``_build_ops``); whether they hand the turn over; and
        the requests left for later (a lock that waits for room, and everything after it). A request its
        state refuses gets its refusal here; if none is signed, nothing commits."""
        channel = runtime.channel
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        if self.chain_lost is not None:
            raise ChainLost(self.chain_lost)
        built: list[tuple[SignedState, tuple[Lock, ...], Request]] = []
        refused: list[tuple[Request, StateRejected]] = []
        left: list[Request] = []
        handover = False
        revocation: SignedRevocation | None = None
        try:
            with self._revocation_kept(runtime), self.store.transaction():
                _, actions = turn.handle(runtime.turn, signing)
                sign = next(a for a in actions if isinstance(a, turn.SignBatch))
                self.store.set_turn_epoch(runtime.cid, sign.epoch)
                basis = channel
                if runtime.inflight:  # after the states in flight: on the one they end with
                    last = runtime.inflight[-1]
                    basis = channel.following(last, self._locks_after(runtime))
                for index, request in enumerate(requests):
                    op = request.op
                    assert op is not None
                    if request.patient and isinstance(op, AddLock) and len(basis.locks) >= MAX_LOCKS:
                        left = requests[index:]  # the channel is full: these wait for a settle to free a place
                        break
                    try:
                        signed, locks = self._op_state(basis, op)
                    except StateRejected as exc:  # checked before signing: nothing of it signed or stored
                        refused.append((request, exc))
                        continue
                    built.append((signed, locks, request))
                    basis = channel.following(signed, locks)
                if not built:
                    raise _NothingSigned  # the epoch is not stored either
                handover = sign.handover and not left
                if self.remote is None:  # our revocation below the latest state, which their message carries
                    revocation = self._record_revocation(runtime)
        except _NothingSigned:
            pass
        if revocation is not None:  # committed: no commit of its own before the send
            self._revocations[runtime.cid] = revocation
        for request, refusal in refused:
            request.future.set_exception(refusal)
        if built:  # the first in flight is answered first; the nonces up to the last are taken
            first = runtime.inflight[0] if runtime.inflight else built[0][0]
            first_locks = runtime.op_locks.get(first.state.nonce) if runtime.inflight else built[0][1]
            channel.await_countersignature(first, first_locks, through=built[-1][0].state.nonce)
        return built, handover, left

    @staticmethod
    def _locks_after(runtime: Runtime) -> tuple[Lock, ...]:
        """The lock list our proposals in flight end with (a payment keeps the one before it)."""
        for proposal in reversed(runtime.inflight):
            locks = runtime.op_locks.get(proposal.state.nonce)
            if locks is not None:
                return locks
        return runtime.channel.locks

    def _op_state(self, basis: Channel, op: LockOp) -> tuple[SignedState, tuple[Lock, ...]]:
        """Signs lock operation ``op`` on ``basis`` (our channel, or the state our previous proposal leaves),
        inside the caller's transaction, with its lock list, the deferred step of its payment and the secret
        it settles with: its state and the lock list it commits to. A refusal stores nothing."""
        locks: tuple[Lock, ...]
        if isinstance(op, AddLock):
            lock = op.lock
            signed, _ = basis.propose_lock(lock.amount, lock.hashlock, lock.expiry, self.chain_now())
            locks, lock_hash = (*basis.locks, lock), lock.hashlock
        else:
            if isinstance(op, SettleLock):
                signed, lock_hash = basis.propose_settle_lock(op.secret), hashlock(op.secret)
                self.store.add_secret(op.secret)
            else:
                signed, lock_hash = basis.propose_expire_lock(op.hashlock, self.chain_now()), op.hashlock
            locks = tuple(x for x in basis.locks if x.hashlock != lock_hash)
        self.transfers.flush(lock_hash)
        if self.store.put_lock_list(basis.channel_id, locks) != signed.state.locks_root:
            raise StoreError("the lock list noted is not the one the proposal commits to")
        if self.remote is not None:  # our signature kept: a reload need not ask the signer again
            self.store.add_signatures(signed)
        return signed, locks

    async def _send(self, runtime: Runtime, states: list[SignedState]) -> dict[str, Any]:
        try:  # our highest, every time
            revocation = await self.with_signatures(lambda: self._revoke_latest(runtime))
            revocation = revocation or await self.own_revocation_signed(runtime)
        except SignerError as exc:  # the states are signed already: send them with the revocation we hold
            log.warning("channel 0x%s: the signer did not sign our revocation: %s", runtime.cid.hex()[:12], exc)
            revocation = self._revocations.get(runtime.cid)
        ops = tuple(runtime.ops.get(s.state.nonce) for s in states) if runtime.ops else ()
        # In flight without the turn: we handed it over with these states (``_build_ops``), also after a restart
        (header,) = turn.handle(runtime.turn, turn.ActionPropose())[1]
        assert isinstance(header, turn.SendPropose)
        message = Propose(runtime.cid, header.epoch, states, revocation, ops, header.handover)
        return await self.peer.post(
            runtime.record.peer_url + "/peer/propose", message.to_json(), runtime.channel.peer_address
        )

    async def _exchange(self, runtime: Runtime) -> None:
        """Sends our unanswered proposals; stores and applies each valid countersignature in the answer."""
        self._apply(runtime, await self._send(runtime, list(runtime.inflight)))

    def _apply(self, runtime: Runtime, answer: dict[str, Any]) -> None:
        """Checks the countersignatures in ``answer`` against our proposals in flight, in order; stores them."""
        returned = answer.get("states")
        if not isinstance(returned, list):
            raise PeerUnavailable("answer without states")
        channel = runtime.channel
        done: list[SignedState] = []
        problem: Exception | None = None
        for item in returned[: len(runtime.inflight)]:
            try:
                countersigned = parse_signed(item)
                first = runtime.inflight[0]
                channel.await_countersignature(first, runtime.op_locks.get(first.state.nonce))
                done.append(channel.receive_countersignature(countersigned))
            except StateRejected as exc:
                problem = exc
                break
            runtime.inflight.pop(0)
        if done:
            self._turn_actions(runtime, turn.ReceiveCountersignatures(len(done)))
        if runtime.inflight:
            channel.await_countersignature(runtime.inflight[0], runtime.op_locks.get(runtime.inflight[0].state.nonce))
        else:
            channel.pending = None
        self.stats["batchesSent"] += 1
        self.stats["statesSent"] += len(done)
        # One commit for what the answer brings: the countersignatures, the machine steps of the lock
        # operations they complete, the peer's revocation and, when more of our proposals are in flight (the
        # message after this one is about to be sent), our revocation below the new latest state, which that
        # message carries. A bad revocation of the peer is refused before anything of it is written; the
        # countersignatures are kept all the same.
        revocation_problem: Exception | None = None
        try:
            revocation = parse_revocation(answer.get("revocation"))
        except (PaychanError, ValueError) as exc:
            revocation, revocation_problem = None, exc
        own: SignedRevocation | None = None
        finished = [runtime.ops[s.state.nonce] for s in done if s.state.nonce in runtime.ops]
        if done or revocation is not None:
            try:
                with self._revocation_kept(runtime), self.store.transaction():
                    if done:
                        self.store.add_signatures(*done)
                        for op in finished:  # a lock operation of a mediated transfer: its machine learns it
                            self.transfers.own_op_countersigned(runtime.cid, op)
                    if revocation is not None:
                        try:
                            self._take_peer_revocation(runtime, revocation)
                        except PaychanError as exc:  # checked before it is stored: nothing of it written
                            revocation_problem = exc
                    if done and runtime.inflight and self.remote is None:
                        own = self._record_revocation(runtime)
            except Exception:
                self.transfers.rollback()
                self._reload(runtime.cid)  # not stored: the channel forgets it too
                raise
        if own is not None:
            self._revocations[runtime.cid] = own
        if done:
            for signed in done:
                runtime.ops.pop(signed.state.nonce, None)
                runtime.op_locks.pop(signed.state.nonce, None)
                request = runtime.waiters.pop(signed.state.nonce, None)
                if request is not None and not request.future.done():
                    request.future.set_result(signed)
            if done[-1].state.is_final:
                log.info("channel 0x%s: final state countersigned", runtime.cid.hex()[:12])
            self.transfers.after_exchange()
        if revocation_problem is not None:
            raise revocation_problem
        if problem is not None:
            raise problem
        error = answer.get("error")
        if runtime.inflight and isinstance(error, dict):
            raise PeerRefused(200, error)

    def _op_refused(self, runtime: Runtime, refusal: PeerRefused) -> None:
        """The peer refused our lock operation in flight: its caller learns why at once. The state stays
        signed and is sent again (we never sign another at its nonce): it completes if the peer accepts it
        later (e.g. an expiry its clock had not reached yet)."""
        if runtime.inflight and runtime.inflight[0].state.nonce in runtime.ops:
            request = runtime.waiters.get(runtime.inflight[0].state.nonce)
            if request is not None and not request.future.done():
                request.future.set_exception(refusal)

    # --- chain actions ---------------------------------------------------------------------------

    def _background(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, runtime: Runtime) -> None:
        announce = Announce(
            runtime.record.params, self.public_url, self.domain.chain_id, self.domain.verifying_contract
        )
        await self.peer.post(
            runtime.record.peer_url + "/peer/channels", announce.to_json(), runtime.channel.peer_address
        )

    async def announce_until_known(self, runtime: Runtime, patience: float) -> bool:
        """Announces our URL until the peer's node has seen the channel on chain; False after ``patience`` s."""
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + patience, 0.1
        while True:
            try:
                await self._announce(runtime)
                return True
            except PeerRefused as exc:
                if exc.type not in ANNOUNCE_AGAIN:
                    log.warning("channel 0x%s: the peer refused our announce: %s", runtime.cid.hex()[:12], exc)
                    return False
            except PeerUnavailable as exc:
                log.info("channel 0x%s: announce not delivered: %s", runtime.cid.hex()[:12], exc)
            if loop.time() + backoff > deadline:
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _announce_quietly(self, runtime: Runtime) -> None:
        try:
            await self._announce(runtime)
        except PaychanError as exc:
            log.warning("channel 0x%s: announcing again failed: %s", runtime.cid.hex()[:12], exc)

    # --- chain events (fed by the watcher) -------------------------------------------------------

    def add_discovered(self, params: ChannelParams) -> Runtime:
        """A channel naming our address, seen on chain (``ChannelOpened``): known from now on. Idempotent."""
        cid = channel_id(params, self.domain.chain_id, self.domain.verifying_contract)
        runtime = self.runtimes.get(cid)
        if runtime is not None:
            return runtime
        record = self.store.channel(cid)
        if record is None:
            record = ChannelRecord(cid, params, params.role_of(self.address), "", 0, 0)
            self.store.add_channel(record)
            log.info("channel 0x%s: opened on chain with %s", cid.hex()[:12], record.params.participant_a)
        if is_restored(self.store):  # the backup may predate states we signed in it: sync first
            self._unsynced.add(cid)
        return self._load(record)

    def note_deposits(self, cid: bytes, deposit_a: int, deposit_b: int) -> None:
        """The channel's deposits are at least these (from ``Deposited`` totals): the next state splits them."""
        runtime = self.runtimes.get(cid)
        if runtime is None:
            return
        known_a, known_b = runtime.channel.deposits
        new = (max(known_a, deposit_a, runtime.record.deposit_a), max(known_b, deposit_b, runtime.record.deposit_b))
        if new != (runtime.record.deposit_a, runtime.record.deposit_b):
            self.store.set_deposits(cid, *new)
            runtime.record = self.store.channel(cid) or runtime.record
        if new != runtime.channel.deposits:
            runtime.channel.deposits = new
            log.info("channel 0x%s: deposits now A %d, B %d", cid.hex()[:12], *new)

    def note_close_event(self, cid: bytes, name: str, args: Any) -> None:
        """The channel is closing with the record of this ``ChannelClosed`` or later ``ChallengeAccepted``."""
        runtime = self.runtimes.get(cid)
        if runtime is None:
            return
        if runtime.record.status == STATUS_CLOSED and runtime.record.payout_a is not None:
            return  # paid out already (our own settle got there before the watcher read this event): stale
        closed = None
        if name == "ChannelClosed":
            role = runtime.record.params.role_of(to_checksum_address(args["closer"]))
            # The counter the channel closed under: the last ``Withdrawn`` event the watcher applied (a channel
            # cannot withdraw while closing, and events are applied in order).
            closed = ClosedBy(role, int(args["nonce"]), runtime.record.withdrawals)
        self.store.set_close_record(
            cid,
            int(args["nonce"]),
            int(args["balanceA"]),
            int(args["balanceB"]),
            int(args["salt"]),
            int(args["deadline"]) if name == "ChannelClosed" else None,
            locked_a=int(args["lockedA"]),
            locked_b=int(args["lockedB"]),
            locks_root=bytes(args["locksRoot"]),
            closed=closed,
        )
        runtime.record = self.store.channel(cid) or runtime.record
        log.warning(
            "channel 0x%s: %s on chain with nonce %d (ours %d), deadline %s",
            cid.hex()[:12],
            f"closed by {closed.role}" if closed else "challenged",
            int(args["nonce"]),
            runtime.channel.nonce,
            runtime.record.close_deadline,
        )

    def note_penalized(self, cid: bytes, cheater: str, closer_nonce: int, below_nonce: int) -> None:
        """The closer was proven to have closed with a nonce it revoked (``RevokedStateProven``)."""
        runtime = self.runtimes.get(cid)
        if runtime is None:
            return
        self.store.set_penalized(cid)
        runtime.record = self.store.channel(cid) or runtime.record
        log.warning(
            "channel 0x%s: %s was proven to have closed with nonce %d, revoked below %d",
            cid.hex()[:12],
            cheater,
            closer_nonce,
            below_nonce,
        )

    def note_withdrawn(self, cid: bytes, withdrawals: int, deposit_a: int, deposit_b: int) -> None:
        """A withdrawal left the channel with these deposits and counter (``Withdrawn``)."""
        runtime = self.runtimes.get(cid)
        if runtime is None:
            return
        known = runtime.record.withdrawals
        self.store.set_withdrawn(cid, withdrawals, deposit_a, deposit_b)
        runtime.record = self.store.channel(cid) or runtime.record
        if withdrawals > known:
            withdraw.apply_withdrawn(runtime, withdrawals, deposit_a, deposit_b)
        log.info(
            "channel 0x%s: withdrawal %d: deposits now A %d, B %d", cid.hex()[:12], withdrawals, deposit_a, deposit_b
        )

    def note_settled(self, cid: bytes, payout_a: int, payout_b: int) -> None:
        """The chain paid the channel out (``ChannelSettled``): closed, with what each side was paid."""
        runtime = self.runtimes.get(cid)
        if runtime is None:
            return
        record = runtime.record
        if record.status == STATUS_CLOSED and (record.payout_a, record.payout_b) == (payout_a, payout_b):
            return
        self.store.set_settled(cid, payout_a, payout_b)
        runtime.record = self.store.channel(cid) or runtime.record
        log.info("channel 0x%s: settled on chain: A %d, B %d", cid.hex()[:12], payout_a, payout_b)

    # --- closing (the transactions: ``ChainActions``) -------------------------------------------

    async def sign_final(self, runtime: Runtime) -> SignedState:
        """The final state of an open channel, countersigned by the peer (our latest if it is final already),
        for a cooperative close (``ChainActions.close`` submits it).

        If the peer does not countersign in time, ``CloseTimeout`` says so; if our final state is already
        signed and sent, the node submits the close itself once the peer answers."""
        if runtime.channel.is_final:
            return runtime.channel.latest
        request = Request(0, True, asyncio.get_running_loop().create_future())
        runtime.queue.append(request)
        runtime.wakeup.set()
        done, _ = await asyncio.wait([request.future], timeout=self.payment_timeout)
        if not done:
            signed = any(w is request for w in runtime.waiters.values())
            if signed:
                self._background(self.chain.close_when_countersigned(runtime, request.future))
            else:
                runtime.queue = deque(r for r in runtime.queue if r is not request)
                request.future.cancel()
            raise CloseTimeout(self.payment_timeout, signed, runtime.record.params.challenge_period)
        return request.future.result()

    def mark_closed(self, runtime: Runtime) -> None:
        self.store.set_status(runtime.cid, STATUS_CLOSED)
        runtime.record = self.store.channel(runtime.cid) or runtime.record

    def mark_closing(self, runtime: Runtime, nonce: int, deadline: int) -> None:
        self.store.set_status(runtime.cid, STATUS_CLOSING, nonce, deadline)
        runtime.record = self.store.channel(runtime.cid) or runtime.record

    # --- conditional payments (locks) ------------------------------------------------------------

    def new_secret(self, secret: bytes | None = None) -> tuple[bytes, bytes]:
        """Keeps ``secret`` (by default a fresh random one) durably, for a lock the peer adds towards us;
        returns it with its hashlock (``sha256(secret)``), which the payer locks under."""
        secret = secrets.token_bytes(32) if secret is None else secret
        return secret, self.store.add_secret(secret)

    async def add_lock(
        self, cid: bytes | None, amount: int, lock_hash: bytes, expiry: int | None = None
    ) -> SignedState:
        """Locks ``amount`` of our balance towards the peer under ``lock_hash`` until ``expiry`` (chain time;
        by default halfway through the window a lock may expire in); returns the countersigned state."""
        runtime = self.runtime(cid)
        now = await self.chain.refresh_chain_time()
        if expiry is None:
            expiry = now + (runtime.record.params.challenge_period - LOCK_EXPIRY_MARGIN) // 2
        return await self.lock_op(runtime.cid, AddLock(Lock(runtime.role, amount, expiry, lock_hash)))

    async def settle_lock(self, cid: bytes | None, secret: bytes) -> SignedState:
        """Moves the pending lock of ``sha256(secret)`` to its receiver (either side may propose it)."""
        return await self.lock_op(cid, SettleLock(secret))

    async def expire_lock(self, cid: bytes | None, lock_hash: bytes) -> SignedState:
        """Gives our expired lock of ``lock_hash`` back to us (once the chain's time is past its expiry)."""
        await self.chain.refresh_chain_time()
        return await self.lock_op(cid, ExpireLock(lock_hash))

    def sign_lock_now(self, cid: bytes, op: AddLock, more: bool = False) -> asyncio.Future[SignedState] | None:
        """Signs our lock ``op`` on channel ``cid`` inside the caller's transaction if the channel signs it at
        once: a local signer, nothing in flight or queued, the turn ours, the channel's lock free, room for
        the lock. An intermediary's outgoing lock then commits with its countersignature of the incoming one
        (one fsync less on the payment's path, and no wait for the channel's sender to wake and build it);
        the sender sends it once that transaction committed. If it rolls back, the channel is reloaded from
        the store (the lock was never signed, as far as anyone can tell). None if it does not sign at once,
        or its state refuses it (nothing of it is kept): the caller queues it as usual (``queue_op``). ``more``:
        more operations for this channel are queued right after it (it keeps the turn for them)."""
        runtime = self.runtimes.get(cid)
        if (
            runtime is None
            or self.remote is not None
            or not runtime.signs_at_once
            or runtime.lock.locked()
            or runtime.turn.peer_waiting
            or cid in self._unsynced
            or runtime.record.status != STATUS_OPEN
            or self.chain_lost is not None
            or runtime.channel.pending is not None
            or runtime.channel.pending_withdrawal is not None
            or len(runtime.channel.locks) >= MAX_LOCKS
        ):
            return None
        request = Request(0, False, asyncio.get_running_loop().create_future(), op, patient=True)
        signing = turn.SigningBatch(routed_op=self.transfers.hands_over(op), queued=more)
        try:
            with self.store.savepoint():
                built, handover, left = self._ops_states(runtime, [request], signing)
                if not built or left:
                    raise _NothingSigned  # refused before it was signed: nothing in memory changed
        except _NothingSigned:
            if request.future.done() and not request.future.cancelled():
                request.future.exception()  # a refusal: the queued request meets it again, and reports it
            return None
        except Exception as exc:  # failed while signing: the channel object may hold it, the store does not
            log.warning("channel 0x%s: the forwarded lock is queued: %s", cid.hex()[:12], exc)
            self._reload(cid)
            return None
        nonce, turn_before = built[0][0].state.nonce, runtime.turn
        self._put_in_flight(runtime, built, handover)

        def committed() -> None:
            self.stats["locksSignedWithIncoming"] += 1
            self.runtimes[cid].wakeup.set()  # its sender sends it

        def rolled_back() -> None:
            rebuilt = self.runtimes[cid]
            rebuilt.waiters.pop(nonce, None)
            rebuilt.turn = turn_before  # a reload keeps an epoch in memory above the stored one: not this one
            request.future.cancel()
            self._revocations.pop(cid, None)
            self._reload(cid)

        self.store.after_transaction(committed, rolled_back)
        return request.future

    def queue_op(self, cid: bytes, op: LockOp) -> asyncio.Future[SignedState]:
        """Queues a lock operation of a mediated transfer behind the payments before it, without waiting;
        the future gets the countersigned state or the refusal (``NodeTransfers`` learns the
        countersignature from ``_apply`` also after a restart)."""
        runtime = self.runtime(cid)
        request = Request(0, False, asyncio.get_running_loop().create_future(), op, patient=True)
        runtime.queue.append(request)
        runtime.wakeup.set()
        return request.future

    async def lock_op(self, cid: bytes | None, op: LockOp) -> SignedState:
        """Queues a lock operation behind the payments before it and waits for the peer's countersignature
        (at most ``payment_timeout`` s). ``Channel`` refuses an invalid one before anything is signed."""
        runtime = self.runtime(cid)
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        if self.chain_lost is not None:
            raise ChainLost(self.chain_lost)
        request = Request(0, False, asyncio.get_running_loop().create_future(), op)
        runtime.queue.append(request)
        runtime.wakeup.set()
        done, _ = await asyncio.wait([request.future], timeout=self.payment_timeout)
        if done:
            return request.future.result()
        if any(w is request for w in runtime.waiters.values()):
            raise PaymentTimeout(
                f"the lock operation is signed and sent, not countersigned within {self.payment_timeout:g} s: it "
                "completes when the peer answers; check with `paychan status`"
            )
        runtime.queue = deque(r for r in runtime.queue if r is not request)
        request.future.cancel()
        raise PaymentTimeout(f"the lock operation was not signed within {self.payment_timeout:g} s: it will not happen")

    def lock_json(self, runtime: Runtime, lock: Lock) -> dict[str, Any]:
        return {
            **lock.to_json(),
            "direction": "outgoing" if lock.sender == runtime.role else "incoming",
            "secretKnown": self.store.secret(lock.hashlock) is not None,
            "revealedAt": self.store.secret_revealed_at(lock.hashlock),
        }

    # --- reporting -------------------------------------------------------------------------------

    def phase(self, runtime: Runtime) -> tuple[str, str]:
        """A channel's phase and what its user can do next, in words."""
        record = runtime.record
        if record.status == STATUS_OPEN:
            if self.chain_lost is not None:
                return "chain lost", f"nothing on this chain: {self.chain_lost}"
            if not record.peer_url:
                return "open", "wait for the counterparty's node to announce itself (or close --unilateral)"
            return "open", "pay, deposit, close (cooperative), or close --unilateral if the peer is gone"
        if record.status == STATUS_CLOSING:
            deadline = record.close_deadline
            now = self.chain_time or int(time.time())
            if deadline is not None and now <= deadline:
                return (
                    "challenge period",
                    f"wait until {deadline} (in {deadline - now} s): the node challenges a stale close by itself; "
                    "then settle (the node settles by itself unless started with --no-auto-settle)",
                )
            return "settleable", "settle (the node settles by itself unless started with --no-auto-settle)"
        return "closed", "nothing; if a payout could not be pushed to you, claim it (paychan claim)"

    def status(self) -> dict[str, Any]:
        channels = []
        for runtime in self.runtimes.values():
            record, channel = runtime.record, runtime.channel
            balance_a, balance_b = channel.balances()
            phase, next_step = self.phase(runtime)
            channels.append(
                {
                    "channelId": "0x" + runtime.cid.hex(),
                    "asset": record.params.asset,
                    "phase": phase,
                    "next": next_step,
                    "role": runtime.role,
                    "counterparty": channel.peer_address,
                    "peerUrl": record.peer_url,
                    "status": record.status,
                    "nonce": channel.nonce,
                    "isFinal": channel.is_final,
                    "balanceA": str(balance_a),
                    "balanceB": str(balance_b),
                    "myBalance": str(channel.balance()),
                    "depositA": str(record.deposit_a),
                    "depositB": str(record.deposit_b),
                    "challengePeriod": record.params.challenge_period,
                    "haveTurn": runtime.has_turn(),
                    "inflight": len(runtime.inflight),
                    "queued": len(runtime.queue),
                    "closeNonce": record.close_nonce,
                    "closeDeadline": record.close_deadline,
                    "challengedNonce": record.challenged_nonce,
                    "closedBy": record.closed_by,
                    "closerNonce": record.closer_nonce,
                    "penalized": record.penalized,
                    "payoutA": None if record.payout_a is None else str(record.payout_a),
                    "payoutB": None if record.payout_b is None else str(record.payout_b),
                    "withdrawals": record.withdrawals,
                    "pendingWithdrawal": withdraw.pending_status(channel),
                    "restoredUnsynced": needs_sync(self.store, runtime.cid),
                    "ownRevocation": runtime.own_revocation,
                    "peerRevocation": 0 if runtime.peer_revocation is None else runtime.peer_revocation.below_nonce,
                    "pendingLocks": len(channel.locks),
                    "locks": [self.lock_json(runtime, lock) for lock in channel.locks],
                    "latest": encode_signed(channel.latest),
                }
            )
        return {
            "address": self.address,
            "chainId": self.domain.chain_id,
            "contract": self.domain.verifying_contract,
            "stats": dict(self.stats),
            "chainLost": self.chain_lost,
            "chainTime": self.chain_now(),
            **self.signer_status(),
            "channels": channels,
        }

    # --- answering the peer (the handlers of ``peer_api``) ---------------------------------------

    async def answer_proposal(self, message: Propose, signer: str) -> dict[str, Any]:
        """Countersigns the peer's proposal (``handle_propose``, its signatures made first); the answer: the
        states countersigned, our revocation below the latest doubly signed, and the refusal of the first
        state not accepted, if any. Raises that refusal if none was accepted."""
        accepted, error = await self.with_signatures(lambda: self.handle_propose(message, signer), message.channel_id)
        if not accepted:
            assert error is not None
            raise error
        runtime = self.runtimes[message.channel_id]
        body: dict[str, Any] = {"type": "countersigned", "states": [encode_signed(s) for s in accepted]}
        try:
            revocation = await self.own_revocation_signed(runtime)  # below the latest doubly signed (committed)
        except SignerError as exc:  # the states are committed countersigned: answer them without it
            log.warning("channel 0x%s: the signer did not sign our revocation: %s", runtime.cid.hex()[:12], exc)
            revocation = None
        if revocation is not None:
            body["revocation"] = revocation.to_json()
        if error is not None:
            body["error"] = error_body(error)["error"]
        if len(message.states) == 1:  # one payment at a time: the next message is likely one state too
            self._sign_revocation_ahead_soon(runtime.cid)
        return body

    async def give_turn(self, message: TurnMessage, signer: str) -> dict[str, Any]:
        """Hands the turn to the peer that asks for it (``handle_turn``, ``grant_turn``); the signed answer."""
        runtime = self.handle_turn(message, signer)
        epoch = await self.grant_turn(runtime, patience=self.body_timeout, peer_epoch=message.epoch)
        return TurnMessage.create(self.domain, runtime.cid, epoch, self._key).to_json()

    async def countersign_withdrawal(self, message: withdraw.WithdrawMessage, signer: str) -> dict[str, Any]:
        """Countersigns the peer's withdrawal (``withdraw.countersign``, its signatures made first)."""
        return await self.with_signatures(lambda: withdraw.countersign(self, message, signer), message.channel_id)

    def latest_state(self, cid: bytes, signer: str) -> dict[str, Any]:
        """Our latest state of channel ``cid`` and its lock list, for its counterparty ``signer`` (a sync)."""
        runtime = self.runtime(cid)
        self.check_counterparty(runtime, signer)
        channel = runtime.channel
        locks = [lock.to_json() for lock in channel.locks]  # what the state's root commits to
        return {"type": "latest", "state": encode_signed(channel.latest), "locks": locks}


def _op_hashlock(op: LockOp) -> bytes:
    return hashlock(op.secret) if isinstance(op, SettleLock) else op.hashlock  # type: ignore[union-attr]


def _parse_locks(value: Any) -> tuple[Lock, ...]:
    """A peer's lock list (``GET /peer/channels/{cid}/latest``): at most ``MAX_LOCKS`` locks."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LOCKS:
        raise MalformedMessage(f"locks must be a list of at most {MAX_LOCKS} locks")
    try:
        return tuple(Lock.from_json(item) for item in value)
    except ValueError as exc:
        raise MalformedMessage(f"a lock is malformed: {exc}") from None


def write_control_file(db_path: str | Path, data: dict[str, Any]) -> Path:
    """Writes ``<db>.control.json`` (mode 0600 from its creation): where the control API listens and its token.

    The token first goes to a new temporary file of a random name beside it, created exclusively and never
    through a symbolic link (``O_EXCL | O_NOFOLLOW``), then renamed over the control file.
    """
    path = Path(f"{db_path}.control.json")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


async def serve(
    node: Node, host: str, port: int, control_port: int = 0, keepalive_timeout: float = 5.0
) -> tuple[web.AppRunner, web.AppRunner, str, str]:
    """Starts the peer endpoint on ``host:port`` and the control API on 127.0.0.1; returns runners and URLs.

    ``keepalive_timeout`` also bounds how long a connection may take to send its request headers (aiohttp
    arms it when the connection opens): a slow-loris client is dropped after it.
    """
    await node.start()
    peer_runner = web.AppRunner(peer_app(node), keepalive_timeout=keepalive_timeout, lingering_time=0, access_log=None)
    await peer_runner.setup()
    peer_site = web.TCPSite(peer_runner, host, port, backlog=128)
    await peer_site.start()
    control_runner = web.AppRunner(
        control_app(node), keepalive_timeout=keepalive_timeout, lingering_time=0, access_log=None
    )
    await control_runner.setup()
    control_site = web.TCPSite(control_runner, "127.0.0.1", control_port)
    await control_site.start()
    peer_port = peer_runner.addresses[0][1]
    control_port = control_runner.addresses[0][1]
    peer_url = f"http://{host}:{peer_port}"
    if not node.public_url:
        node.public_url = peer_url
    return peer_runner, control_runner, peer_url, f"http://127.0.0.1:{control_port}"
