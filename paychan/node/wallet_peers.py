"""Counterparties that are contract wallets: which key speaks for each, learnt once and kept.

A participant that is a contract wallet ``W`` (an ERC-1271 smart account) runs its node with the wallet's
owner key ``K`` (``paychan node --wallet W``): its peer requests are signed by ``K`` and name ``W`` in
``Paychan-Participant`` (``auth``); its states, revocations, withdrawals and turn messages carry ``K``'s
signatures, which the contract accepts through ``W.isValidSignature``. This node takes ``K``'s signatures
as ``W``'s once it holds the *binding* ``W -> K`` (``WalletPeers.signer_of``): the channels with ``W`` are
loaded with ``Channel(peer_signing_address=K)``; before it exists, every state of ``W``'s is refused (the
signatures do not recover to ``W``), so nothing is ever countersigned on an unchecked claim.

A binding is learnt from the first request of ``W``'s node (the announce that follows the open) and kept in
``node_meta`` (``walletSigner.<W>``). ``WalletPeers.admit`` runs after the request's signature by ``K`` has
been verified, locally, by the authentication middleware, which has already refused (403, before reading
the body, no chain call) a request naming a ``W`` that is not the counterparty of a channel the node
knows. Then:

- the binding ``W -> K`` is known: admitted at once, nothing else is done;
- the pair ``(W, K)`` was refused by the chain less than ``REFUSED_FOR`` s ago: refused at once (403);
- the wallet's last check started less than ``interval`` s ago: refused at once, with 403 if another key is
  bound to it (a forgery, most likely), else 429 (its node retries);
- otherwise one chain check: an ``eth_call`` of ``W.isValidSignature(request digest, request signature)``
  with the contract's ERC-1271 gas (``paychan.wallets.accepts_signature``), on the node's control chain
  thread, never the watcher's. At most one check per wallet is in flight (a request of the same key waits
  for its answer, another key's is refused with 429). Accepted: the binding is stored (a key bound before
  is replaced: the wallet says the new one speaks for it) and the request goes on as ``W``'s. Refused: 403.

So a stranger makes the node do no chain call by naming a wallet that is not a counterparty, and all
strangers together at most one per counterparty wallet and ``interval``; a wallet once bound is never
delayed by them. A stranger racing the first request of a wallet's node can delay its binding by an
``interval`` per check it wins, never make a wrong one: the wallet's node retries, and its funds do not
depend on it (it can always close on chain).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from paychan.exceptions import PaychanError
from paychan.node.auth import RateLimited, Unauthenticated
from paychan.node.store import Store
from paychan.state import Signature

log = logging.getLogger("paychan.node.wallet_peers")

BINDING_KEY = "walletSigner."  # node_meta: walletSigner.<wallet> = the key whose signatures count as its own
CHECK_INTERVAL = 60.0  # seconds between two chain checks of one wallet's signer
REFUSED_FOR = 600.0  # seconds a (wallet, key) pair the wallet refused is refused again without a chain call
REFUSED_KEPT = 1024  # refused pairs remembered (the oldest forgotten first)

Checker = Callable[[str, bytes, Signature], Awaitable[bool]]


class UnknownParticipant(Unauthenticated):
    """Raised when a request speaks for ``wallet``, which is not the counterparty of any channel the node
    knows (yet: the opener's node announces again once the node has seen the channel on chain)."""

    def __init__(self, wallet: str) -> None:
        self.wallet = wallet
        super().__init__(
            f"the request speaks for {wallet}, which is not the counterparty of a channel this node has seen on chain"
        )


class WalletSignerRefused(Unauthenticated):
    """Raised when the wallet ``wallet`` does not accept ``signer``'s signature (ERC-1271): the request's
    signer does not speak for it."""

    def __init__(self, wallet: str, signer: str) -> None:
        self.wallet, self.signer = wallet, signer
        super().__init__(f"the wallet {wallet} does not accept the signature of {signer}: it does not speak for it")


class WalletCheckFailed(PaychanError):
    """Raised when a wallet's signer could not be checked on chain (``reason``: the RPC failed, or the node
    has no chain); nothing was admitted."""

    def __init__(self, wallet: str, reason: str) -> None:
        self.wallet, self.reason = wallet, reason
        super().__init__(f"the signer of the wallet {wallet} could not be checked on chain: {reason}")


class WalletPeers:
    """The bindings wallet -> key of the node's counterparties that are contract wallets (module docstring).

    ``check(wallet, digest, signature)`` asks the chain whether ``wallet`` accepts ``signature`` for
    ``digest``; ``on_bound(wallet, key)`` hooks run when a binding is learnt."""

    def __init__(
        self,
        store: Store,
        check: Checker,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self._check, self.interval, self._clock = store, check, interval, clock
        self._known: dict[str, str | None] = {}  # wallet (or any counterparty looked up) -> its bound key
        self._last_check: dict[str, float] = {}  # wallet -> when its last chain check started
        self._pending: dict[str, tuple[str, asyncio.Future[bool]]] = {}  # wallet -> (key, check in flight)
        self._refused: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.on_bound: list[Callable[[str, str], None]] = []
        self.checks = 0  # chain checks started

    def signer_of(self, participant: str) -> str | None:
        """The key whose signatures count as ``participant``'s, if a binding is known (else None: a key)."""
        if participant in self._known:
            return self._known[participant]
        key = self.store.get_meta(BINDING_KEY + participant)
        self._known[participant] = key
        return key

    async def admit(self, wallet: str, key: str, digest: bytes, signature: Signature) -> None:
        """Admits a request of ``key`` speaking for the counterparty ``wallet``, whose signature (of
        ``digest``) was verified; raises ``WalletSignerRefused`` (403), ``RateLimited`` (429) or
        ``WalletCheckFailed``. See the module docstring."""
        bound = self.signer_of(wallet)
        if bound == key:
            return
        now = self._clock()
        refused_at = self._refused.get((wallet, key))
        if refused_at is not None and now - refused_at < REFUSED_FOR:
            raise WalletSignerRefused(wallet, key)
        pending = self._pending.get(wallet)
        if pending is None:
            last = self._last_check.get(wallet)
            if last is not None and now - last < self.interval:
                if bound is not None:  # the wallet's signer is another key: refused, no chain call
                    raise WalletSignerRefused(wallet, key)
                raise RateLimited(f"the checks of wallet {wallet}'s signer", self.interval - (now - last))
            self._last_check[wallet] = now
            self.checks += 1
            future = asyncio.ensure_future(self._check(wallet, digest, signature))
            pending = self._pending[wallet] = (key, future)
            future.add_done_callback(lambda done: self._checked(wallet, key, done))
        elif pending[0] != key:
            raise RateLimited(f"the checks of wallet {wallet}'s signer", 1.0)
        if not await asyncio.shield(pending[1]):
            raise WalletSignerRefused(wallet, key)

    def _checked(self, wallet: str, key: str, done: asyncio.Future[bool]) -> None:
        """A chain check's end, whoever still waits for it: the binding stored, or the pair refused."""
        self._pending.pop(wallet, None)
        if done.cancelled() or done.exception() is not None:
            return
        if done.result():
            self.bind(wallet, key)
            return
        self._refused[(wallet, key)] = self._clock()
        self._refused.move_to_end((wallet, key))
        while len(self._refused) > REFUSED_KEPT:
            self._refused.popitem(last=False)
        log.warning("wallet %s does not accept the signature of %s", wallet, key)

    def bind(self, wallet: str, key: str) -> None:
        """Keeps ``key`` as the signer of ``wallet`` (durably) and tells the ``on_bound`` hooks."""
        previous = self.signer_of(wallet)
        self.store.set_meta(BINDING_KEY + wallet, key)
        self._known[wallet] = key
        self._refused.pop((wallet, key), None)
        if previous is not None and previous != key:
            log.warning("wallet %s: its signer is now %s (was %s)", wallet, key, previous)
        else:
            log.info("wallet %s: its signer is %s (checked on chain)", wallet, key)
        for hook in self.on_bound:
            hook(wallet, key)
