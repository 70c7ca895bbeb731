"""A node's signer that is not a key in this process (a JSON-RPC wallet or remote signer, an Ape account):
its signatures are made on a thread of their own, so a slow or hung signer never stalls the node's event
loop (the watcher, the peer endpoint, other channels), and never while a store transaction is open.

The node's synchronous code (``Channel``, the store's transactions) asks ``sign_typed`` for a signature it
may not have yet. ``RemoteSigning`` answers from the signatures made ahead (``prepare``); inside
``collecting()`` a missing one is noted and answered with a ``PLACEHOLDER`` that cannot leave the process:
the store refuses to commit while a placeholder was handed out (``check_commit``, a ``Store.before_commit``
hook), and the block ends with ``SignatureNeeded`` naming the messages. ``Node.with_signatures`` then
reloads the channel, has them signed off the loop, and runs the block again, which now finds every
signature made: a dry run, then the real one, each one synchronous and atomic as before.

The signer's health: ``available`` and ``reason``. A signer that cannot be reached marks itself
unavailable; from then on a signature is refused at once with ``SignerUnavailable`` (nothing waits on a
signer known to be down) until ``probe`` finds it back (the node probes every ``probe_interval`` s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from paychan.signers import Signer, SignerError, SignerUnavailable, TypedMessage
from paychan.signing import Domain, message_digest
from paychan.state import Signature

log = logging.getLogger(__name__)

# Never a valid signature (r = s = 1 recovers to a key nobody holds): what a dry run's messages carry.
PLACEHOLDER = Signature.from_vrs(0, 1, 1)
MAX_CACHED = 4096  # signatures made ahead and kept (the largest dry run: two batches of 256 and revocations)
MAX_ROUNDS = 4  # dry runs of one operation before it gives up (its channel kept changing under it)


class SignatureNeeded(Exception):  # noqa: N818 - a control-flow signal of the node, never shown to a user
    """Raised by a dry run that met messages not signed yet (``messages``: their domains and messages)."""

    def __init__(self, messages: Sequence[tuple[Domain, TypedMessage]]) -> None:
        self.messages = list(messages)
        super().__init__(f"{len(self.messages)} messages to sign first")


class RemoteSigning(Signer):
    """``inner`` (any ``Signer`` not local) made safe for a node's event loop; see the module docstring."""

    def __init__(self, inner: Signer, probe_interval: float = 1.0) -> None:
        self.inner = inner
        self.probe_interval = probe_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paychan-signer")
        self._cache: OrderedDict[bytes, Signature] = OrderedDict()
        self._collect: list[tuple[Domain, TypedMessage]] | None = None
        self._placeholders = 0
        self.available = True
        self.reason: str | None = None
        self.unavailable_since: float | None = None

    @property
    def address(self) -> str:
        return self.inner.address

    @property
    def signing_address(self) -> str:
        return self.inner.signing_address

    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> Signature:  # pragma: no cover
        raise NotImplementedError("RemoteSigning.sign_typed answers itself")

    def sign_typed(self, domain: Domain, message: TypedMessage) -> Signature:
        """The signature made ahead; in a dry run a ``PLACEHOLDER``. Outside one, a signature not made ahead
        is asked of the signer right here (a path that cannot wait: the node loading a channel whose
        store predates stored signatures), refused at once if the signer is known to be down."""
        digest = message_digest(domain, message)
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            return cached
        if self._collect is not None:
            self._collect.append((domain, message))
            self._placeholders += 1
            return PLACEHOLDER
        self._refuse_if_down()
        log.warning("signing %s on the event loop (not made ahead)", type(message).__name__)
        return self._remember(digest, self._guarded(domain, message))

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """A dry run: messages without a signature made ahead are noted (answered with placeholders); on
        leaving, ``SignatureNeeded`` is raised if any were (whatever the block did or raised)."""
        assert self._collect is None, "dry runs do not nest"
        self._collect, self._placeholders = [], 0
        try:
            yield
        except SignatureNeeded:
            pass  # raised by check_commit: the messages are those collected
        except Exception:
            if not self._placeholders:
                raise
        finally:
            needed, self._collect = self._collect, None
            self._placeholders = 0
        if needed:
            raise SignatureNeeded(needed)

    def check_commit(self) -> None:
        """A ``Store.before_commit`` hook: no transaction commits once a placeholder was handed out."""
        if self._collect is not None and self._placeholders:
            raise SignatureNeeded(self._collect)

    async def prepare(self, messages: Sequence[tuple[Domain, TypedMessage]]) -> None:
        """Has ``messages`` signed (those not signed yet) on the signer's thread; ``SignerError`` if it
        fails (then none of the rest are asked: the operation is refused)."""
        self._refuse_if_down()
        loop = asyncio.get_running_loop()
        for domain, message in messages:
            digest = message_digest(domain, message)
            if digest in self._cache:
                continue
            signature = await loop.run_in_executor(self._executor, self._guarded, domain, message)
            self._remember(digest, signature)

    async def probe(self) -> bool:
        """Asks the signer whether it is there (``Signer.check_available``, on its thread); updates and
        returns ``available``."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.inner.check_available)
        except SignerError as exc:
            self._mark_down(exc)
        else:
            if not self.available:
                log.warning("the signer is back: %s", self.inner)
            self.available, self.reason, self.unavailable_since = True, None, None
        return self.available

    def status(self) -> dict[str, object]:
        """The signer's part of the node's status."""
        return {
            "signer": repr(self.inner),
            "signerAvailable": self.available,
            "signerProblem": self.reason,
        }

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _guarded(self, domain: Domain, message: TypedMessage) -> Signature:
        try:
            return self.inner.sign_typed(domain, message)
        except SignerUnavailable as exc:
            self._mark_down(exc)
            raise

    def _refuse_if_down(self) -> None:
        if not self.available:
            raise SignerUnavailable(getattr(self.inner, "url", repr(self.inner)), self.reason or "unavailable")

    def _mark_down(self, exc: SignerError) -> None:
        reason = exc.reason if isinstance(exc, SignerUnavailable) else str(exc)
        if self.available:
            log.warning("the signer is unavailable: %s", exc)
            self.unavailable_since = time.time()
        self.available, self.reason = False, reason

    def _remember(self, digest: bytes, signature: Signature) -> Signature:
        self._cache[digest] = signature
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return signature
