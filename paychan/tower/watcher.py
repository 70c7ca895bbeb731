"""The tower's chain watcher: follows the contract's events and defends the channels it holds.

Each poll reads the blocks not processed yet (from the contract's deployment block on a fresh store), in
pages of at most ``page_blocks`` blocks, one ``eth_getLogs`` per page for ``EVENTS`` (topic 0 OR-ed), as the
node's watcher (``paychan.node.watcher``) does. Every channel's ``ChannelOpened`` goes into the store's
``opened`` table (what pushes are checked against), with its deposits and withdrawal counter from
``Deposited``/``Withdrawn``; every close, accepted challenge and proof builds the channel's record
(``records``): so the ``RecordedState`` the contract checks is known with no chain call, whichever channel
closes and however many close in one block. The page's changes and the cursor are committed in one
transaction. On start, every held channel that is closing is re-checked (its record, as the committed
events left it): a tower killed in the middle of a challenge period acts when it is back. Should a record
ever disagree with the chain (``RecordMismatch``), the action is retried once with the record read from the
chain (``PaychanContract.recorded_state``).

What to do about a closing channel is ``decide`` (no I/O), per held push:

1. the counterparty closed with a nonce below the revocation held: ``proveRevoked`` (the penalty: settling
   pays the client the whole channel); preferred over anything else, possible until settled;
2. else, while the challenge period runs, a held state newer than the record: ``challenge``;
3. after the deadline, if the client asked (``settle``): ``settle``, with the record's lock list when the
   record is the held state (the penalty ignores locks).

``reveals`` says which held secrets to reveal on chain: those of the client's incoming locks not expired
yet, at once while the channel is closing, else once within ``REVEAL_MARGIN`` (the node's: 120 s) of the
lock's expiry (the client, offline, cannot settle it off chain any more).

Margins. A challenge or proof is sent in the first poll after the close is seen (one poll interval, 1 s by
default), i.e. with almost the whole challenge period (at least 3600 s, the contract's minimum) left; any
failure is retried at every poll (every block) while the deadline is ahead, so a failed or delayed transaction
costs one poll, not the channel. Proofs and challenges go out with a fixed gas limit (``ANSWER_GAS``) instead of
an estimate, so a hundred answers in one block are a hundred quick sends; a retry is estimated first, so an
answer that keeps failing costs no gas. A reveal starts ``REVEAL_MARGIN``
before the expiry and is retried each poll likewise: ten 12-second blocks. Transactions are sent from the
tower's own key, which pays their gas; they run on a pool of threads of their own (``senders``), so one waiting
for its receipt never delays the watch or another channel's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from paychan.contract import PaychanContract, RecordedState
from paychan.exceptions import RecordMismatch
from paychan.node.watcher import REVEAL_MARGIN
from paychan.state import ZERO_ROOT, ChannelId, ChannelParams, hashlock, locks_root
from paychan.tower.protocol import Push
from paychan.tower.registry import Registry
from paychan.tower.store import CURSOR_KEY, PHASE_CLOSING, PHASE_OPEN, PHASE_SETTLED

log = logging.getLogger("paychan.tower.watcher")
T = TypeVar("T")

# Gas limit of a proof or challenge, sent without an estimate (one round trip less per answer, which counts
# when a hundred channels close in one block): about 4x what they use between two EOAs (36,411 and 44,380
# gas), room for an ERC-1271 wallet's signature check; only the gas used is paid.
ANSWER_GAS = 200_000

EVENTS = (
    "ChannelOpened",
    "Deposited",
    "Withdrawn",
    "ChannelClosed",
    "ChallengeAccepted",
    "RevokedStateProven",
    "ChannelSettled",
)


@dataclass(frozen=True)
class Closing:
    """A closing channel as the chain reports it: its record, who closed and whether that one was proven
    to have closed with a revoked state."""

    recorded: RecordedState
    closed_by: str
    penalized: bool


@dataclass(frozen=True)
class TowerSendProveRevoked:
    """Prove that the closer revoked the nonce it closed with (``push.revocation``)."""

    push: Push
    recorded: RecordedState


@dataclass(frozen=True)
class TowerSendChallenge:
    """Replace the record with the held newer state (``push.signed``)."""

    push: Push
    recorded: RecordedState


@dataclass(frozen=True)
class TowerSendSettle:
    """Pay out the record after the deadline, resolving ``locks`` (the record's lock list)."""

    push: Push
    recorded: RecordedState
    locks: tuple[Any, ...] = ()


Action = TowerSendProveRevoked | TowerSendChallenge | TowerSendSettle


def role_of(push: Push, params: ChannelParams) -> str:
    return params.role_of(push.client)


def decide(push: Push, role: str, closing: Closing, now: int) -> Action | None:
    """What to do for ``push`` (the client is ``role``) about a channel closing as ``closing`` says, at
    chain time ``now`` (see the module docstring)."""
    recorded = closing.recorded
    if closing.penalized:
        if closing.closed_by != role and push.settle and now > recorded.deadline:
            return TowerSendSettle(push, recorded)
        return None
    if closing.closed_by != role and push.revocation is not None and recorded.closer_nonce < push.revoked_below:
        return TowerSendProveRevoked(push, recorded)
    if now <= recorded.deadline:
        return TowerSendChallenge(push, recorded) if push.nonce > recorded.nonce else None
    if not push.settle:
        return None
    if recorded.locks_root == locks_root(list(push.locks)):
        return TowerSendSettle(push, recorded, push.locks)
    if recorded.locks_root == ZERO_ROOT:
        return TowerSendSettle(push, recorded)
    return None  # a record with locks the tower does not know: the client's to settle


def reveals(push: Push, role: str, now: int, closing: bool, revealed: set[bytes]) -> list[bytes]:
    """The held secrets of ``push`` to reveal on chain now (see the module docstring)."""
    by_hashlock = {hashlock(secret): secret for secret in push.secrets}
    due = []
    for lock in push.locks:
        secret = by_hashlock.get(lock.hashlock)
        if secret is None or lock.receiver != role or now > lock.expiry or lock.hashlock in revealed:
            continue
        if closing or now >= lock.expiry - REVEAL_MARGIN:
            due.append(secret)
    return due


class TowerWatcher:
    """Follows the chain for ``registry``'s channels and acts for them from ``account`` (its own gas)."""

    def __init__(
        self,
        registry: Registry,
        contract: PaychanContract,
        account: LocalAccount,
        interval: float = 1.0,
        page_blocks: int = 2000,
        max_pages: int = 10,
        senders: int = 128,
    ) -> None:
        self.registry, self.store = registry, registry.store
        self.contract, self.account = contract, account
        self.interval, self.page_blocks, self.max_pages = interval, page_blocks, max_pages
        self._reads = ThreadPoolExecutor(16, thread_name_prefix="tower-read")
        self._sends = ThreadPoolExecutor(senders, thread_name_prefix="tower-send")
        self.closing: dict[bytes, Closing] = {}
        self._stale: set[bytes] = {w.push.channel_id for w in self.store.all_watched(PHASE_CLOSING)}
        self._inflight: set[tuple[bytes, str, str]] = set()
        self._sent: dict[tuple[bytes, str, str], int] = {}  # what was sent, by nonce: not sent again
        self._failed: set[tuple[Any, str, str]] = set()  # actions that failed once: retried with an estimate
        self.revealed: set[bytes] = set()
        self.sent_at: dict[str, float] = {}  # transaction kind and channel -> monotonic time it was sent
        self.actions = {"proofs": 0, "challenges": 0, "settlements": 0, "reveals": 0}
        self.records_from_chain = 0  # records the events got wrong (RecordMismatch): 0 unless a bug
        events = contract.contract.events
        self._events = {bytes(HexBytes(getattr(events, name)().topic)): name for name in EVENTS}
        self._decoders = {name: getattr(events, name)() for name in EVENTS}
        self._tasks: set[asyncio.Future[Any]] = set()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    def stop(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._sends.shutdown(wait=False, cancel_futures=True)

    async def run(self) -> None:
        backoff, outage = self.interval, None
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a flaky RPC must not stop the watch: log once per outage, back off
                what = f"{type(exc).__name__}: {exc}"[:300]
                if outage is None:
                    log.warning("watching the chain failed (%s); retrying with back-off", what)
                outage = what
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if outage is not None:
                log.warning("watching the chain again after: %s", outage)
                outage = None
            backoff = self.interval
            await asyncio.sleep(self.interval)

    # --- following events ------------------------------------------------------------------------

    @property
    def next_block(self) -> int:
        stored = self.store.get_meta(CURSOR_KEY)
        return self.contract.from_block if stored is None else int(stored)

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

    async def poll(self) -> None:
        """Applies the new blocks' events (at most ``max_pages`` pages), then acts once caught up."""
        head = int(await self._read(lambda: self.contract.chain.w3.eth.block_number))
        start = self.next_block
        for _ in range(self.max_pages):
            if start > head:
                break
            end = min(head, start + self.page_blocks - 1)
            raw_logs = await self._read(self._get_logs, start, end)
            with self.store.transaction():
                self.apply([self._decode(raw) for raw in raw_logs])
                self.store.set_meta(CURSOR_KEY, str(end + 1))
            start = end + 1
        if start > head:
            await self.act(head)

    def _decode(self, raw: Any) -> tuple[str, dict[str, Any]]:
        name = self._events[bytes(raw["topics"][0])]
        return name, dict(self._decoders[name].process_log(raw)["args"])

    def apply(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Stores the page's channel openings and moves the phase of held channels."""
        opened = [
            (
                bytes(args["channelId"]),
                ChannelParams(
                    args["participantA"], args["participantB"], args["asset"], args["challengePeriod"], args["number"]
                ),
            )
            for name, args in events
            if name == "ChannelOpened"
        ]
        if opened:
            self.store.add_opened(opened)
        for name, args in events:
            cid = bytes(args["channelId"])
            if name == "ChannelOpened":
                continue
            if name == "Deposited":
                self.store.note_deposit(cid, args["participant"], int(args["total"]))
                continue
            if name == "Withdrawn":
                self.store.note_withdrawn(cid, int(args["depositA"]), int(args["depositB"]), int(args["withdrawals"]))
                continue
            self._note_record(cid, name, args)
            if cid not in self.registry.clients:
                continue
            if name == "ChannelSettled":
                self.registry.set_phase(cid, PHASE_SETTLED)
                self.closing.pop(cid, None)
                self._stale.discard(cid)
            else:  # closed, challenged, proven: the record changed
                if self.registry.phase(cid) != PHASE_CLOSING:
                    self.registry.set_phase(cid, PHASE_CLOSING)
                self._stale.add(cid)
                if name == "ChannelClosed":
                    log.warning("channel 0x%s: closed on chain with nonce %d", cid.hex()[:12], args["nonce"])

    def _note_record(self, cid: bytes, name: str, args: dict[str, Any]) -> None:
        """Follows the record of any channel (a client may register one that is closing already)."""
        if name == "ChannelSettled":
            self.store.set_opened_phase(cid, PHASE_SETTLED)
            self.store.forget_record(cid)
            return
        self.store.set_opened_phase(cid, PHASE_CLOSING)
        if name == "ChannelClosed":
            params = self.store.params(cid)
            assert params is not None, "every channel's ChannelOpened comes first"
            self.store.note_closed(cid, params.role_of(args["closer"]), args)
        elif name == "ChallengeAccepted":
            self.store.note_challenged(cid, args)
        else:
            self.store.note_penalized(cid)

    # --- acting ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Reads the record of each channel whose events changed it (or, on start, of each held channel
        that is closing) from the store: the events built it, no chain call is needed."""
        stale, self._stale = self._stale, set()
        for cid in stale:
            found = self.store.record(cid)
            if found is None:
                self.closing.pop(cid, None)
            else:
                self.closing[cid] = Closing(*found)

    async def act(self, head: int) -> None:
        """Reveals due secrets and sends what ``decide`` says for every held closing channel."""
        if self.registry.fresh:  # registered since the last poll: closing already?
            self._stale |= self.registry.fresh
            self.registry.fresh = set()
        if self._stale:
            self._refresh()
        with_secrets = [
            push
            for cid, client in self.registry.with_secrets
            if self.registry.phase(cid) != PHASE_SETTLED
            for push in self._held(cid, {client})
        ]
        if not self.closing and not with_secrets:
            return
        now = int((await self._read(self.contract.chain.w3.eth.get_block, head))["timestamp"])
        due: list[bytes] = []
        for push in with_secrets:
            params = self.store.params(push.channel_id)
            assert params is not None
            due += reveals(push, role_of(push, params), now, push.channel_id in self.closing, self.revealed)
        if due:
            self._launch(("reveal", "", ""), 0, self._reveal, list(dict.fromkeys(due)))
        for cid, closing in self.closing.items():
            params = self.store.params(cid)
            assert params is not None
            for push in self._held(cid, self.registry.clients.get(cid, set())):
                action = decide(push, role_of(push, params), closing, now)
                if action is not None:
                    key = (cid, push.client, type(action).__name__)
                    gas = None if key in self._failed else ANSWER_GAS  # a retry is estimated: a revert costs nothing
                    self._launch(key, push.nonce, self._execute, params, action, gas)

    def _held(self, cid: bytes, clients: set[str]) -> list[Push]:
        pushes = [self.registry.held(cid, client) for client in clients]
        return [p for p in pushes if p is not None]

    def _launch(self, key: tuple[Any, str, str], nonce: int, fn: Callable[..., None], *args: Any) -> None:
        """Runs ``fn(*args)`` on the sender threads unless the same action (``key``) for ``nonce`` is in
        flight or was sent already; a failure is logged and retried at the next poll."""
        if key in self._inflight or (key[0] != "reveal" and self._sent.get(key, -1) >= nonce):
            return
        self._inflight.add(key)
        future = asyncio.get_running_loop().run_in_executor(self._sends, fn, *args)

        def done(f: asyncio.Future[None]) -> None:
            self._inflight.discard(key)
            self._tasks.discard(f)
            error = f.exception() if not f.cancelled() else None
            if error is not None:
                self._failed.add(key)
                log.warning("%s for channel %s failed: %s", key[2] or key[0], str(key[0])[:14], error)
            elif key[0] != "reveal":
                self._sent[key] = nonce
                self._stale.add(key[0])  # re-read the record before deciding again

        self._tasks.add(future)
        future.add_done_callback(done)

    def _reveal(self, secrets: list[bytes]) -> None:
        unknown = [s for s in secrets if self.contract.revealed_at(hashlock(s)) == 0]
        self.revealed.update(hashlock(s) for s in secrets if s not in unknown)
        if not unknown:
            return
        self.sent_at["reveal"] = time.monotonic()
        if len(unknown) == 1:
            self.contract.reveal_secret(self.account, unknown[0])
        else:
            self.contract.reveal_secrets(self.account, unknown)
        self.revealed.update(hashlock(s) for s in unknown)
        self.actions["reveals"] += len(unknown)
        log.warning("revealed %d secret(s) on chain", len(unknown))

    def _record_from_chain(self, cid: bytes) -> RecordedState:
        self.records_from_chain += 1
        log.error("channel 0x%s: the record the events built is not the chain's; reading it back", cid.hex()[:12])
        return self.contract.recorded_state(ChannelId(cid))

    def _execute(self, params: ChannelParams, action: Action, gas: int | None) -> None:
        push, recorded, cid = action.push, action.recorded, action.push.channel_id
        self.sent_at[f"{type(action).__name__}:0x{cid.hex()}"] = time.monotonic()
        if isinstance(action, TowerSendProveRevoked):
            assert push.revocation is not None
            below, signature = push.revocation.below_nonce, push.revocation.signature
            try:
                self.contract.prove_revoked(self.account, params, below, signature, recorded, gas)
            except RecordMismatch:
                record = self._record_from_chain(cid)
                self.contract.prove_revoked(self.account, params, below, signature, record, gas)
            self.actions["proofs"] += 1
            log.warning(
                "channel 0x%s: proved the closer revoked nonce %d (below %d): the client gets the channel",
                cid.hex()[:12],
                recorded.closer_nonce,
                push.revocation.below_nonce,
            )
        elif isinstance(action, TowerSendChallenge):
            try:
                self.contract.challenge(self.account, params, push.signed, recorded, gas)
            except RecordMismatch:
                self.contract.challenge(self.account, params, push.signed, self._record_from_chain(cid), gas)
            self.actions["challenges"] += 1
            log.warning("channel 0x%s: challenged nonce %d with nonce %d", cid.hex()[:12], recorded.nonce, push.nonce)
        else:
            self.contract.settle(self.account, params, recorded, None, action.locks)
            self.actions["settlements"] += 1
            log.warning("channel 0x%s: settled nonce %d", cid.hex()[:12], recorded.nonce)


__all__ = ["PHASE_OPEN", "TowerWatcher", "decide", "reveals"]
