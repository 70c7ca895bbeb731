"""The chain watcher: follows the contract's events for the node's channels and answers a stale close.

Each poll reads the events of the blocks it has not processed yet, in pages of at most ``page_blocks``
blocks, with one ``eth_getLogs`` per page for the eight events it needs (``ChannelOpened``, ``Deposited``,
``Withdrawn``, ``ChannelClosed``, ``ChallengeAccepted``, ``RevokedStateProven``, ``ChannelSettled``,
``SecretRevealed``; topic 0 OR-ed), however many channels the node has. A ``SecretRevealed`` of a payment
the node takes part in (``NodeTransfers.wants``; any other costs nothing) is timestamped with one
``revealedAt`` call and fed to its machine. It starts at the contract's deployment block and resumes from
the last processed block, which is stored in the same transaction as what the page's events changed. So a
poll with nothing new costs two calls (``eth_blockNumber``, ``eth_getLogs``), plus ``eth_getBlockByNumber``
while a channel is closing.

From the events the node learns:

- of a channel naming its address (``ChannelOpened``): it is known and watched from then on, with no
  announce needed; an announce only tells where the counterparty's node listens;
- of every deposit, by anyone, at any time (``Deposited`` totals): the next state splits it, so a deposit
  never blocks the channel;
- of every withdrawal (``Withdrawn``: the deposits it left and the channel's counter);
- of a close and every accepted challenge (the record: nonce, balances, locked totals and root, salt,
  deadline; from the close also who closed, with which nonce and withdrawal counter), of a proof that the
  closer had revoked its state (``RevokedStateProven``), and of the end.

Then ``decide`` (no I/O) says what to do about each closing channel: prove that the peer closed with a
state it revoked (``ContractSendProveRevoked``, preferred over anything else: settling then pays us the
whole channel), challenge with our newer doubly-signed state before the deadline (when it pays us more),
settle after the deadline (when the record pays us something, or holds locks; ``auto_settle``), passing the
recorded state's lock list, which the contract resolves against its secret registry. The watcher's chain
calls run on a thread of their own: nothing a peer or the user does queues before them.

Locks. While a channel has pending locks the watcher also reads the head block's timestamp each new block
(``Node.chain_now``: what the node checks lock expiries against). For an incoming lock whose secret the node
knows (``reveals``, no I/O), it reveals the secret on chain (``revealSecret``) once the lock is within
``REVEAL_MARGIN`` seconds of its expiry and the peer has still not settled it off chain, or at once when the
channel is closing (nothing settles off chain any more). The contract pays a lock to its receiver only if
its secret was revealed at or before its expiry, so the reveal must be mined by then: see ``REVEAL_MARGIN``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hexbytes import HexBytes
from web3.logs import DISCARD

from paychan.chain import genesis_hash
from paychan.contract import RecordedState
from paychan.node import withdraw
from paychan.node.server import Node
from paychan.node.store import STATUS_CLOSED, STATUS_CLOSING, STATUS_OPEN, ChannelRecord, Store
from paychan.state import ChannelParams, Lock, Signature, SignedState

log = logging.getLogger("paychan.node.watcher")
T = TypeVar("T")

EVENTS = (
    "ChannelOpened",
    "Deposited",
    "Withdrawn",
    "ChannelClosed",
    "ChallengeAccepted",
    "RevokedStateProven",
    "ChannelSettled",
    "SecretRevealed",
)
# Seconds before an incoming lock's expiry at which the watcher reveals its secret on chain if the peer has
# not settled the lock off chain by then. The reveal must be mined in a block stamped at or before the expiry;
# 120 s cover a few polls (1 s each by default), a slow RPC, and about ten 12-second blocks for inclusion. A
# lock that arrives nearer its expiry than this (a lock may expire as soon as MIN_LOCK_TIME, 60 s, after it is
# added) is revealed at the first poll that finds it still pending.
REVEAL_MARGIN = 120
CURSOR_KEY = "watcher.nextBlock"  # node_meta: the first block not processed yet
GENESIS_KEY = "genesisHash"  # node_meta: the hash of block 0 of the node's chain


@dataclass(frozen=True)
class ChainEvent:
    """One decoded log of the contract."""

    name: str
    channel_id: bytes
    block: int
    index: int
    args: dict[str, Any]


@dataclass(frozen=True)
class ContractSendChallenge:
    """Challenge the recorded state with our newer doubly-signed ``signed``."""

    channel_id: bytes
    signed: SignedState
    recorded: RecordedState


@dataclass(frozen=True)
class ContractSendSettle:
    """Settle the recorded state after the deadline, with its lock list (``locks``, in order)."""

    channel_id: bytes
    recorded: RecordedState
    locks: tuple[Lock, ...] = ()


@dataclass(frozen=True)
class ContractSendProveRevoked:
    """Prove that the peer closed with a nonce it revoked (its revocation of every nonce below
    ``below_nonce``, with its ``signature``): settling then pays us the whole channel."""

    channel_id: bytes
    below_nonce: int
    signature: Signature
    recorded: RecordedState


Action = ContractSendProveRevoked | ContractSendChallenge | ContractSendSettle


def recorded_state(record: ChannelRecord) -> RecordedState | None:
    """The contract's record of a closing channel, as the node followed it from the events."""
    if record.status != STATUS_CLOSING or not record.has_close_record:
        return None
    assert record.close_nonce is not None and record.close_deadline is not None
    assert record.close_balance_a is not None and record.close_balance_b is not None
    assert record.close_salt is not None and record.closer_nonce is not None
    return RecordedState(
        record.close_nonce,
        record.close_balance_a,
        record.close_balance_b,
        record.close_deadline,
        record.deposit_a,
        record.deposit_b,
        record.close_salt,
        locked_a=record.close_locked_a,
        locked_b=record.close_locked_b,
        locks_root=record.close_locks_root,
        withdrawals=record.close_withdrawals,
        closer_nonce=record.closer_nonce,
    )


def decide(
    record: ChannelRecord, latest: SignedState, now: int, auto_settle: bool = True, locks: Sequence[Lock] = ()
) -> Action | None:
    """What to do about a channel closing on chain, at chain time ``now``: prove, challenge, settle or nothing.

    If the peer closed with a nonce below the revocation of the peer's we hold, prove it (at any time until
    settled, and before anything else). Once the closer is proven to have cheated, settle after the deadline
    if that pays us (the honest side gets the whole channel); nothing can be challenged any more.
    Otherwise challenge while ``now <= deadline`` if we hold a newer doubly-signed state that pays us more
    than the record (and have not sent that one yet); settle once ``now > deadline`` if the record pays us
    anything (a record paying us nothing is the other side's to settle: we spend no gas on it) or holds
    locks (``locks``: the recorded state's list, which settling resolves: each goes to us or to the peer).
    """
    recorded = recorded_state(record)
    if recorded is None:
        return None
    ours = 0 if record.role == "A" else 1
    peer_role = "B" if record.role == "A" else "A"
    if record.penalized:
        if record.closed_by == record.role:
            return None  # we are the proven cheater (a restored old store?): the peer gets everything
        if now > recorded.deadline and auto_settle:
            return ContractSendSettle(record.channel_id, recorded, tuple(locks))
        return None
    if (
        record.closed_by == peer_role
        and record.peer_revocation_sig is not None
        and recorded.closer_nonce < record.peer_revocation
    ):
        return ContractSendProveRevoked(record.channel_id, record.peer_revocation, record.peer_revocation_sig, recorded)
    recorded_payout = (recorded.balance_a, recorded.balance_b)[ours]
    if now <= recorded.deadline:
        if not latest.is_complete or latest.state.nonce <= recorded.nonce:
            return None
        if (record.challenged_nonce or -1) >= latest.state.nonce:
            return None  # sent already; the next ChallengeAccepted event updates the record
        newer_payout = latest.state.payouts(recorded.deposit_a, recorded.deposit_b)[ours]
        if newer_payout <= recorded_payout:
            return None
        return ContractSendChallenge(record.channel_id, latest, recorded)
    if auto_settle and (recorded_payout > 0 or locks):
        return ContractSendSettle(record.channel_id, recorded, tuple(locks))
    return None


def reveals(role: str, locks: Sequence[Lock], store: Store, now: int, closing: bool) -> list[bytes]:
    """The secrets to reveal on chain now, for ``locks`` of a channel where we are ``role``: those of
    incoming locks whose secret we know and have not revealed, not expired yet (a later reveal pays nothing),
    once within ``REVEAL_MARGIN`` of the expiry (at once when the channel is ``closing``)."""
    due = []
    for lock in locks:
        if lock.receiver != role or now > lock.expiry:
            continue
        if not closing and now < lock.expiry - REVEAL_MARGIN:
            continue  # the peer may still settle it off chain
        secret = store.secret(lock.hashlock)
        if secret is not None and store.secret_revealed_at(lock.hashlock) is None:
            due.append(secret)
    return due


class Watcher:
    """Follows the chain for the channels of ``node`` (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        interval: float = 1.0,
        page_blocks: int = 2000,
        max_pages: int = 10,
        auto_settle: bool = True,
        from_block: int | None = None,
    ) -> None:
        assert node.contract is not None, "the watcher needs the node's contract"
        self.node = node
        self.contract = node.contract
        self.interval = interval
        self.page_blocks = page_blocks
        self.max_pages = max_pages
        self.auto_settle = auto_settle
        self.from_block = self.contract.from_block if from_block is None else from_block
        self.challenges = 0
        self.settlements = 0
        self.proofs = 0
        self.reveals = 0
        self._outage: str | None = None  # what failed, while the RPC keeps failing (logged once)
        self._revealed: list[bytes] = []  # secrets of our payments revealed on chain, not yet timestamped
        contract = self.contract.contract
        self._events = {bytes(HexBytes(getattr(contract.events, name)().topic)): name for name in EVENTS}
        self._decoders = {name: getattr(contract.events, name)() for name in EVENTS}

    async def _chain(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.node.chain.run_for_watcher(fn, *args)

    async def run(self) -> None:
        backoff = self.interval
        try:  # the chain's time once, for locks the peer proposes before any is pending (no call per poll)
            self.node.note_chain_time(await self._chain(self.contract.chain.now))
        except Exception as exc:
            log.warning("reading the chain's time failed (%s): locks are checked by the wall clock until then", exc)
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a flaky RPC must not stop the watch: log once per outage, back off
                what = f"{type(exc).__name__}: {exc}"
                if self._outage is None:
                    log.warning("watching the chain failed (%s); retrying with back-off", what[:300])
                self._outage = what
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if self._outage is not None:
                log.warning("watching the chain again after: %s", self._outage[:300])
                self._outage = None
            backoff = self.interval
            await asyncio.sleep(self.interval)

    # --- following events ------------------------------------------------------------------------

    @property
    def next_block(self) -> int:
        stored = self.node.store.get_meta(CURSOR_KEY)
        return self.from_block if stored is None else int(stored)

    def _get_logs(self, start: int, end: int) -> list[Any]:
        return list(
            self.contract.chain.w3.eth.get_logs(
                {
                    "address": self.contract.address,
                    "fromBlock": start,
                    "toBlock": end,
                    "topics": [["0x" + topic.hex() for topic in self._events]],
                }
            )
        )

    def decode(self, raw: Any) -> ChainEvent | None:
        name = self._events.get(bytes(raw["topics"][0])) if raw["topics"] else None
        if name is None:
            return None
        args = dict(self._decoders[name].process_log(raw)["args"])
        cid = bytes(args.get("channelId", b""))  # SecretRevealed names a hashlock, not a channel
        return ChainEvent(name, cid, int(raw["blockNumber"]), int(raw["logIndex"]), args)

    async def poll(self) -> int:
        """Processes the new blocks (at most ``max_pages`` pages), then acts on closing channels once the
        watcher has caught up with the chain head. Returns the number of events applied."""
        head = int(await self._chain(lambda: self.contract.chain.w3.eth.block_number))
        start, applied = self.next_block, 0
        if head < start - 1 and await self._chain_replaced():  # the chain went backwards: restarted?
            return 0
        if self.node.chain_lost is not None:
            return 0
        await self.node.network.backfill(self)  # once, after an upgrade to a store with the channel graph
        for _ in range(self.max_pages):
            if start > head:
                break
            end = min(head, start + self.page_blocks - 1)
            raw_logs = await self._chain(self._get_logs, start, end)
            events = [e for e in (self.decode(raw) for raw in raw_logs) if e is not None]
            with self.node.store.transaction():
                applied += self.apply(events)
                self.node.store.set_meta(CURSOR_KEY, str(end + 1))
            start = end + 1
        await self._learn_revealed()
        if start > head:
            await self.act(head)
        return applied

    async def _learn_revealed(self) -> None:
        """The secrets of the node's payments someone revealed on chain (``SecretRevealed``, picked out by
        ``apply`` with no chain call): when the registry recorded each (one ``revealedAt`` call per secret
        of ours), kept, and told to the payment's machine."""
        node = self.node
        while self._revealed:
            secret = self._revealed[0]
            lock_hash = node.store.add_secret(secret)
            revealed_at = await self._chain(self.contract.revealed_at, lock_hash)
            self._revealed.pop(0)
            if revealed_at:
                node.store.set_secret_revealed(lock_hash, revealed_at)
                node.transfers.note_revealed(secret, revealed_at)

    async def _chain_replaced(self) -> bool:
        """Whether the chain behind the RPC is not the one the node's channels live on any more (the
        contract has no code, or block 0 changed: a devnet restarted). Then the node stops paying and says
        so, once: states signed on a chain that is gone are worth nothing, and new ones would be neither."""
        w3 = self.contract.chain.w3
        code = await self._chain(w3.eth.get_code, self.contract.address)
        genesis = await self._chain(genesis_hash, self.contract.chain)
        known = self.node.store.get_meta(GENESIS_KEY)
        if code and (known is None or known == genesis):
            return False
        reason = (
            f"the chain at {self.contract.chain.url} has no contract at {self.contract.address}"
            if not code
            else f"the chain at {self.contract.chain.url} has another genesis block ({genesis}, was {known})"
        )
        if self.node.chain_lost is None:
            self.node.chain_lost = reason + " (a restarted devnet?): payments stopped; restart the node on its chain"
            log.error("%s", self.node.chain_lost)
        return True

    def apply(self, events: list[ChainEvent]) -> int:
        """Applies one page's events to the node, channel openings first (an open's ``Deposited`` event
        comes in the same transaction). Events of channels the node is not part of are ignored."""
        node, applied = self.node, 0
        events = sorted(events, key=lambda e: (e.name != "ChannelOpened", e.block, e.index))
        for event in events:
            node.network.note_event(event)  # every channel of the contract, for the channel graph
            args = event.args
            if event.name == "SecretRevealed":
                secret = bytes(args["secret"])
                if node.transfers.wants(bytes(args["hashlock"])) and secret not in self._revealed:
                    self._revealed.append(secret)  # when it was recorded: read after the page (_learn_revealed)
                continue
            if event.name == "ChannelOpened":
                if node.address not in (args["participantA"], args["participantB"]):
                    continue
                node.add_discovered(
                    ChannelParams(
                        args["participantA"],
                        args["participantB"],
                        args["asset"],
                        args["challengePeriod"],
                        args["number"],
                    )
                )
            elif event.channel_id not in node.runtimes:
                continue
            elif event.name == "Deposited":
                runtime = node.runtimes[event.channel_id]
                is_a = args["participant"] == runtime.record.params.participant_a
                total = int(args["total"])
                node.note_deposits(event.channel_id, total if is_a else 0, 0 if is_a else total)
            elif event.name == "Withdrawn":
                node.note_withdrawn(event.channel_id, args["withdrawals"], args["depositA"], args["depositB"])
            elif event.name in ("ChannelClosed", "ChallengeAccepted"):
                node.note_close_event(event.channel_id, event.name, args)
                if event.name == "ChannelClosed":
                    node.transfers.note_channel_closed(event.channel_id)
            elif event.name == "RevokedStateProven":
                node.note_penalized(event.channel_id, args["cheater"], args["closerNonce"], args["belowNonce"])
            elif event.name == "ChannelSettled":
                node.note_settled(event.channel_id, int(args["payoutA"]), int(args["payoutB"]))
            applied += 1
        return applied

    # --- acting ----------------------------------------------------------------------------------

    async def act(self, head: int) -> None:
        """Drops withdrawals both signed that expired unmade (``withdraw.abandon_expired``), reveals the
        secrets ``reveals`` says, then challenges or settles what ``decide`` says, for every closing channel
        (and, for reveals, every open one with locks)."""
        node = self.node
        closing = [r for r in node.runtimes.values() if r.record.status == STATUS_CLOSING]
        locked = [r for r in node.runtimes.values() if r.record.status == STATUS_OPEN and r.channel.locks]
        withdrawing = [
            r for r in node.runtimes.values() if r.record.status == STATUS_OPEN and r.channel.pending_withdrawal
        ]
        # a payment of ours in progress (an offer accepted, nothing locked yet) runs on the chain's clock too
        paying = node.transfers.has_live_payments()
        if not closing and not locked and not withdrawing and not paying:
            return
        block = await self._chain(self.contract.chain.w3.eth.get_block, head)
        now = int(block["timestamp"])
        node.note_chain_time(now)
        for runtime in withdrawing:  # the events of every block up to ``head`` are applied
            withdraw.abandon_expired(node, runtime, now)
        recorded_locks: dict[bytes, tuple[Lock, ...]] = {}
        due: list[bytes] = []
        for runtime in locked:
            due += reveals(runtime.role, runtime.channel.locks, node.store, now, closing=False)
        for runtime in closing:
            recorded = recorded_state(runtime.record)
            if recorded is None:
                continue
            locks = node.store.lock_list(runtime.cid, recorded.locks_root)
            if locks is None:
                log.error("channel 0x%s: the lock list of the recorded state is unknown", runtime.cid.hex()[:12])
                continue
            recorded_locks[runtime.cid] = locks
            due += reveals(runtime.role, locks, node.store, now, closing=True)
        if due:
            try:
                await self.reveal(list(dict.fromkeys(due)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried at the next poll
                log.warning("revealing %d secret(s) failed: %s", len(due), exc)
        for runtime in closing:
            if runtime.cid not in recorded_locks:
                continue
            action = decide(runtime.record, runtime.channel.latest, now, self.auto_settle, recorded_locks[runtime.cid])
            if action is None:
                continue
            try:
                if isinstance(action, ContractSendSettle):
                    guard = self.node.chain.settle_guard(action.channel_id)
                    if guard.locked():  # `paychan settle` is sending it: the next poll sees the outcome
                        continue
                    async with guard:  # free: taken at once, so the record is still the one `decide` read
                        await self.execute(action)
                    continue
                await self.execute(action)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the peer challenged too: the next poll's events tell
                log.warning("channel 0x%s: %s failed: %s", action.channel_id.hex()[:12], type(action).__name__, exc)

    async def reveal(self, secrets: list[bytes]) -> None:
        """Reveals ``secrets`` on chain (one transaction) and stores when the chain recorded each. The secret
        registry takes a reveal from anyone: the node's key sends it itself, also for a wallet participant
        (its ``execute`` would only add gas)."""
        node = self.node
        if len(secrets) == 1:
            await self._chain(self.contract.reveal_secret, node.account, secrets[0])
        else:
            await self._chain(self.contract.reveal_secrets, node.account, secrets)
        for secret in secrets:
            lock_hash = node.store.add_secret(secret)
            revealed_at = await self._chain(self.contract.revealed_at, lock_hash)
            if revealed_at == 0:
                raise RuntimeError(f"the reveal of hashlock 0x{lock_hash.hex()} is not recorded on chain")
            node.store.set_secret_revealed(lock_hash, revealed_at)
            self.reveals += 1
            log.warning("revealed the secret of hashlock 0x%s on chain at %d", lock_hash.hex()[:12], revealed_at)

    async def execute(self, action: Action) -> None:
        node = self.node
        runtime = node.runtimes[action.channel_id]
        params = runtime.record.params
        if isinstance(action, ContractSendProveRevoked):
            await self._chain(
                self.contract.prove_revoked, node.sender, params, action.below_nonce, action.signature, action.recorded
            )
            node.store.set_penalized(action.channel_id)
            runtime.record = node.store.channel(action.channel_id) or runtime.record
            self.proofs += 1
            log.warning(
                "channel 0x%s: proved the peer closed with nonce %d, revoked below %d: the channel is ours",
                action.channel_id.hex()[:12],
                action.recorded.closer_nonce,
                action.below_nonce,
            )
        elif isinstance(action, ContractSendChallenge):
            receipt = await self._chain(self.contract.challenge, node.sender, params, action.signed, action.recorded)
            node.store.set_challenged(action.channel_id, action.signed.state.nonce)
            runtime.record = node.store.channel(action.channel_id) or runtime.record
            if self.contract.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD):
                node.mark_closed(runtime)  # a final state from the side that did not close pays out at once
            self.challenges += 1
            log.warning(
                "channel 0x%s: challenged nonce %d with nonce %d",
                action.channel_id.hex()[:12],
                action.recorded.nonce,
                action.signed.state.nonce,
            )
        else:
            await self._chain(self.contract.settle, node.sender, params, action.recorded, None, action.locks)
            if runtime.record.status != STATUS_CLOSED:
                node.mark_closed(runtime)
            self.settlements += 1
            log.info("channel 0x%s: settled nonce %d", action.channel_id.hex()[:12], action.recorded.nonce)
