"""Accepting pushes: each is checked, compared with what is held and written durably, in batches.

``Registry.submit`` takes the raw pushes of one request and answers, for each, ``accepted`` or the named
refusal. Checks cost no chain call: the participants come from the ``opened`` table the watcher fills from
``ChannelOpened`` events, and the held nonce from an in-memory index of every held push. Accepted pushes of
all requests in flight are written in one transaction (``flush``: at most ``batch_size`` pushes, at most
``batch_delay`` seconds after the first waits), and a request is answered only once its pushes are
committed (``synchronous=FULL``): an ``accepted`` answer survives a crash of the tower a moment later.
Checking is CPU work on the event loop the watcher shares: one request is checked at a time, with a turn
of the loop every ``YIELD_EVERY`` pushes, so a flood of pushes cannot hold the watcher back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from paychan.exceptions import PaychanError
from paychan.node.messages import error_body
from paychan.signing import Domain
from paychan.state import ChannelId
from paychan.tower.protocol import (
    ChannelNotWatchable,
    Push,
    StalePush,
    TowerFull,
    UnknownTowerChannel,
    accept,
    parse_push,
    verify_push,
)
from paychan.tower.store import CURSOR_KEY, PHASE_CLOSING, PHASE_OPEN, PHASE_SETTLED, Held, TowerStore

log = logging.getLogger("paychan.tower.registry")

# Pushes checked between two turns of the event loop: checking one costs up to four signature recoveries
# (about 0.5 ms), so the watcher, on the same loop, never waits more than ~10 ms behind a request; requests
# are checked one at a time (the others wait without using the CPU), however many arrive at once.
YIELD_EVERY = 16
DEFAULT_CAPACITY = 1_000_000  # channel-client pairs one tower holds at most (about 1.5 kB of disk each)


class Registry:
    """The pushes a tower holds (see the module docstring)."""

    def __init__(
        self,
        store: TowerStore,
        domain: Domain,
        capacity: int = DEFAULT_CAPACITY,
        batch_size: int = 1024,
        batch_delay: float = 0.005,
    ) -> None:
        self.store, self.domain, self.capacity = store, domain, capacity
        self.batch_size, self.batch_delay = batch_size, batch_delay
        self.index: dict[tuple[bytes, str], Held] = store.held_keys()
        self.clients: dict[bytes, set[str]] = {}  # channel -> its clients (what the watcher follows)
        for cid, client in self.index:
            self.clients.setdefault(cid, set()).add(client)
        # held pushes with secrets (the watcher checks their locks' expiries), and channels registered while
        # closing already (the watcher reads their record)
        self.with_secrets: set[tuple[bytes, str]] = {key for key, held in self.index.items() if held.secrets}
        self.fresh: set[bytes] = set()
        self._pending: dict[tuple[bytes, str], Push] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._checking: asyncio.Semaphore | None = None  # one request's pushes checked at a time
        self.accepted = 0

    @property
    def scanned_to(self) -> int:
        """The last block whose ``ChannelOpened`` events the watcher has stored."""
        cursor = self.store.get_meta(CURSOR_KEY)
        return -1 if cursor is None else int(cursor) - 1

    def held(self, cid: bytes, client: str) -> Push | None:
        """The push held (or about to be written) for ``cid`` and ``client``."""
        pending = self._pending.get((bytes(cid), client))
        if pending is not None:
            return pending
        if (bytes(cid), client) not in self.index:
            return None
        for watched in self.store.watched(cid):
            if watched.push.client == client:
                return watched.push
        return None

    def check(self, push: Push) -> Push:
        """What the tower would hold after ``push`` (see ``protocol.accept``); raises its refusal."""
        params = self.store.params(push.channel_id)
        if params is None:
            raise UnknownTowerChannel(push.channel_id, self.scanned_to)
        key = (bytes(push.channel_id), push.client)
        known = self.index.get(key)
        if key in self._pending:
            known = None  # compared with the pending push itself below
        elif known is None and len(self.index) + len(self._pending) >= self.capacity:
            raise TowerFull(self.capacity)
        elif known is not None and push.nonce < known.nonce:  # refused before any signature is checked
            raise StalePush(push.channel_id, push.nonce, known.nonce)
        if (known.phase if known is not None else self.store.opened_phase(push.channel_id)) == PHASE_SETTLED:
            raise ChannelNotWatchable(push.channel_id)
        verify_push(push, self.domain, params)
        if known is not None and push.nonce > known.nonce and not known.secrets:
            if push.revoked_below >= known.revoked_below:
                return push  # newer, and nothing of the held push to keep: no need to read it back
        return accept(self.held(push.channel_id, push.client), push)

    async def submit(self, raw_pushes: list[Any]) -> list[dict[str, Any]]:
        """Checks each raw push, queues the accepted ones for the next batch and waits until that batch
        is committed; one result per push, in order."""
        results: list[dict[str, Any]] = []
        queued = False
        if self._checking is None:
            self._checking = asyncio.Semaphore(1)
        async with self._checking:
            for i, raw in enumerate(raw_pushes):
                if i and i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the watcher's next step waits for at most YIELD_EVERY checks
                try:
                    push = parse_push(raw)
                    merged = self.check(push)
                except PaychanError as exc:
                    results.append({"accepted": False, **error_body(exc)})
                    continue
                self._pending[(bytes(merged.channel_id), merged.client)] = merged
                results.append({"accepted": True, "channelId": "0x" + merged.channel_id.hex(), "nonce": merged.nonce})
                queued = True
        if queued:
            await self._wait_for_flush()
        return results

    async def _wait_for_flush(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if len(self._pending) >= self.batch_size:
            self.flush()
        elif self._flusher is None:
            self._flusher = loop.call_later(self.batch_delay, self.flush)
        await waiter

    def _phase_of_new(self, key: tuple[bytes, str]) -> str:
        known = self.index.get(key)
        if known is not None:
            return known.phase
        return self.store.opened_phase(key[0]) or PHASE_OPEN

    def flush(self) -> None:
        """Writes every pending push in one transaction and answers their requests."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        pending, waiters = self._pending, self._waiters
        self._pending, self._waiters = {}, []
        phases = {key: self._phase_of_new(key) for key in pending}
        try:
            if pending:
                self.store.put_pushes((push, phases[key]) for key, push in pending.items())
        except Exception as exc:  # nothing of the batch is held: every waiting request hears why
            log.error("writing %d pushes failed: %s", len(pending), exc)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for key, push in pending.items():
            if key not in self.index and phases[key] == PHASE_CLOSING:
                self.fresh.add(key[0])  # registered while closing: the watcher reads its record at once
            if push.secrets:
                self.with_secrets.add(key)
            else:
                self.with_secrets.discard(key)
            self.index[key] = Held(push.nonce, push.revoked_below, len(push.secrets), phases[key])
            self.clients.setdefault(key[0], set()).add(key[1])
        self.accepted += len(pending)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def phase(self, cid: bytes) -> str | None:
        """The phase of a held channel, None for one not held."""
        for client in self.clients.get(bytes(cid), ()):
            return self.index[(bytes(cid), client)].phase
        return None

    def set_phase(self, cid: ChannelId | bytes, phase: str) -> None:
        """Records the channel's phase (in the caller's transaction) in the store and the index."""
        self.store.set_phase(cid, phase)
        for client in self.clients.get(bytes(cid), ()):
            held = self.index[(bytes(cid), client)]
            self.index[(bytes(cid), client)] = Held(held.nonce, held.revoked_below, held.secrets, phase)
