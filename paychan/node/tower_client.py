"""A node's watchtower client (``paychan node --tower URL``): pushes each channel's newest state, off the
hot path, and reads it back after a restore.

``run`` looks at the node's channels every ``interval`` seconds (0.5 by default: pushes are batched by
time) and pushes those whose newest doubly-signed state, peer revocation or known incoming secrets changed
since the last push, at most ``MAX_PUSHES_PER_REQUEST`` per request (batched by count). It only reads the
node's memory and signs with the node's signer on a thread of its own, so a payment or the node's watcher
never waits for it; a tower that is down or slow only delays the next push (retried each interval).

``restore`` runs once before a node whose store was restored from a backup (``paychan restore``) starts
serving: for each of its channels it fetches what the tower holds (a ``TowerFetch`` signed by the node) and
adopts the newer state (``Node.adopt``, the checks of a sync with the peer) and the peer's revocation. A
state signed after the backup is then not lost, and the node never closes below its own revocation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp

from paychan.exceptions import PaychanError
from paychan.node.messages import SignedRevocation, parse_revocation, parse_signed
from paychan.node.restored import is_restored, needs_sync
from paychan.node.server import Node, Runtime
from paychan.node.store import STATUS_CLOSED
from paychan.state import Lock, SignedState, hashlock
from paychan.tower.protocol import MAX_PUSHES_PER_REQUEST, Push, sign_fetch, sign_push

log = logging.getLogger("paychan.node.tower")


@dataclass(frozen=True)
class Snapshot:
    """A channel's newest doubly-signed state, its lock list, the peer's revocation and our secrets."""

    channel_id: bytes
    latest: SignedState
    locks: tuple[Lock, ...]
    revocation: SignedRevocation | None
    secrets: tuple[bytes, ...]

    @property
    def mark(self) -> tuple[int, int, int]:
        """What tells a newer snapshot: the nonce, the revocation, the number of secrets."""
        below = 0 if self.revocation is None else self.revocation.below_nonce
        return (int(self.latest.state.nonce), below, len(self.secrets))


class TowerClient:
    """Pushes ``node``'s channels to the tower at ``url`` and reads them back (see the module docstring)."""

    def __init__(self, node: Node, url: str, interval: float = 0.5, settle: bool = True, timeout: float = 10.0) -> None:
        self.node, self.url, self.interval, self.settle = node, url.rstrip("/"), interval, settle
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._pushed: dict[bytes, tuple[int, int, int]] = {}  # channel -> (nonce, revoked below, secrets) pushed
        self._signing = ThreadPoolExecutor(1, thread_name_prefix="paychan-tower")
        self._session: aiohttp.ClientSession | None = None
        self._failing: str | None = None
        self.pushed = 0

    async def _post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._session.post(self.url + path, json=payload) as response:
            return response.status, await response.json(content_type=None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._signing.shutdown(wait=False, cancel_futures=True)

    # --- pushing ---------------------------------------------------------------------------------

    def _secrets(self, runtime: Runtime) -> tuple[bytes, ...]:
        incoming = [lock.hashlock for lock in runtime.channel.locks if lock.receiver == runtime.role]
        held = (self.node.store.secret(lock_hash) for lock_hash in incoming)
        return tuple(secret for secret in held if secret is not None)

    def due(self) -> list[Snapshot]:
        """What to push: each channel whose newest state, peer revocation or secrets were not pushed yet,
        as it stands now (read on the event loop: consistent, whatever the channel does next)."""
        changed = []
        for cid, runtime in self.node.runtimes.items():
            latest = runtime.channel.latest
            if runtime.record.status == STATUS_CLOSED or latest.state.nonce == 0 or not latest.is_complete:
                continue
            snapshot = Snapshot(
                cid, latest, tuple(runtime.channel.locks), runtime.peer_revocation, self._secrets(runtime)
            )
            if self._pushed.get(cid) != snapshot.mark:
                changed.append(snapshot)
        return changed

    def _sign_all(self, chunk: list[Snapshot]) -> list[Push]:
        node = self.node
        return [
            sign_push(node.signer, node.domain, s.latest, s.locks, s.revocation, s.secrets, self.settle) for s in chunk
        ]

    async def push_changed(self) -> int:
        """Pushes every channel ``due`` says, in requests of at most ``MAX_PUSHES_PER_REQUEST``; the number
        the tower accepted (or already held at least as new)."""
        due = self.due()
        loop = asyncio.get_running_loop()
        done = 0
        for start in range(0, len(due), MAX_PUSHES_PER_REQUEST):
            chunk = due[start : start + MAX_PUSHES_PER_REQUEST]
            pushes = await loop.run_in_executor(self._signing, self._sign_all, chunk)
            status, answer = await self._post("/pushes", {"pushes": [p.to_json() for p in pushes]})
            if status != 200:
                raise RuntimeError(f"the tower answered {status}: {answer}")
            for snapshot, result in zip(chunk, answer["results"], strict=True):
                if result["accepted"] or result["error"]["type"] == "StalePush":
                    self._pushed[snapshot.channel_id] = snapshot.mark
                    done += 1
                else:
                    log.warning("channel 0x%s: the tower refused the push: %s", snapshot.channel_id.hex()[:12], result)
        self.pushed += done
        return done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.push_changed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a tower down or slow: retried next interval, logged once per outage
                what = f"{type(exc).__name__}: {exc}"[:300]
                if self._failing is None:
                    log.warning("pushing to the tower at %s failed (%s); retrying", self.url, what)
                self._failing = what
                continue
            if self._failing is not None:
                log.warning("pushing to the tower at %s again", self.url)
                self._failing = None

    # --- reading back after a restore ----------------------------------------------------------------

    async def restore(self) -> int:
        """For a store restored from a backup: adopts what the tower holds of each channel not synced yet
        (newer states and the peer's revocation). Returns the number of channels that changed."""
        changed = 0
        for cid in list(self.node.runtimes):
            runtime = self.node.runtimes[cid]
            if runtime.record.status == STATUS_CLOSED or not needs_sync(self.node.store, cid):
                continue
            request = sign_fetch(self.node.signer, self.node.domain, cid, int(time.time()))
            status, answer = await self._post("/fetch", request)
            if status == 404:
                continue
            if status != 200:
                raise RuntimeError(f"the tower answered {status}: {answer}")
            held = answer["push"]
            adopted = self.node.adopt(runtime, parse_signed(held["signed"]), held["locks"], "the tower's")
            revocation: SignedRevocation | None = parse_revocation(held["revocation"])
            runtime = self.node.runtimes[cid]
            if revocation is not None:
                with self.node.store.transaction():
                    self.node._take_peer_revocation(runtime, revocation)  # noqa: SLF001 - the node's own check
            for secret in (bytes.fromhex(s[2:]) for s in held["secrets"]):
                if self.node.store.secret(hashlock(secret)) is None:
                    self.node.store.add_secret(secret)
            changed += int(adopted)
        return changed


class TowerUnavailable(PaychanError):
    """Raised when a restored node cannot read its channels back from its tower before serving."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"this node's store was restored from a backup and the tower at {url} cannot be read ({reason}): "
            "start the tower, or start the node without --tower"
        )


async def restore_from_tower(tower: TowerClient) -> int:
    """``tower.restore()`` for a restored store (nothing otherwise); ``TowerUnavailable`` if it fails."""
    if not is_restored(tower.node.store):
        return 0
    try:
        changed = await tower.restore()
    except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError, KeyError) as exc:
        await tower.close()
        raise TowerUnavailable(tower.url, f"{type(exc).__name__}: {exc}"[:200]) from None
    log.warning("read %d newer channel state(s) back from the tower at %s", changed, tower.url)
    return changed
