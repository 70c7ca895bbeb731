"""The node's view of the payment network: the channel graph of the whole contract and the fees it advertises.

- **The graph** (``paychan.routing.ChannelGraph``) holds every channel open on the contract, not only the
  node's: the watcher feeds each event it already reads (``note_event``: ``ChannelOpened``, ``Deposited``,
  ``Withdrawn``, ``ChannelClosed``, ``ChannelSettled``) in the transaction of its page, so the graph costs no
  chain call of its own, and it is kept in the store (``graph_channels``) to be rebuilt at start, since the
  watcher resumes after the blocks it processed. A closing channel leaves the graph with its fees. The node's
  own channels get their spendable balances (``set_capacity``) before each route search.
- **Fees.** ``set_fees`` signs a ``FeeAnnouncement`` per channel with the node's signer (a signer that is not
  local signs off the event loop first: ``Node.sign_ahead``), keeps it (``fee_announcements``) and sends it to
  every counterparty's node (``POST /peer/fees``).
- **Relaying.** ``POST /peer/fees`` takes at most ``MAX_ANNOUNCEMENTS`` announcements from a counterparty's
  node only (an authenticated peer request whose signer is one of the node's counterparties), each checked
  against the graph with no chain call: its channel must be in the graph (else ``UnknownChannel``), its
  signer the participant it names (``verify_fee_announcement``), its timestamp newer than the held one's (else
  ``StaleFeeUpdate``) and at most ``MAX_CLOCK_AHEAD`` s ahead of the node's clock (else ``FeeFromTheFuture``).
  Only the new ones are kept and relayed, to every other counterparty: an announcement that comes back is no
  longer newer, so it stops there and relays cannot loop. One for a channel the watcher has not seen yet (a
  relay can outrun it) is refused as ``UnknownChannel`` but held, unchecked, in memory (``MAX_HELD``, the
  newest per channel and node, for ``HELD_FOR`` s), and checked, kept and relayed once the channel opens in
  the graph, so the fee is not lost until it is announced again. A counterparty's node whose URL becomes known gets
  every announcement the graph holds (``greet``), so a node that joins later learns the fees set before.
- **Routes** (``routes``): the ``k`` cheapest routes from the node with the capacity, by
  ``ChannelGraph.routes`` at the chain's time (routes whose lock expiries would not fit are left out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eth_utils.address import to_checksum_address

from paychan.exceptions import MalformedMessage, PaychanError, UnknownChannel
from paychan.fees import FeeAnnouncement, FeePolicy, FeeUpdate, next_timestamp
from paychan.node.auth import Unauthenticated
from paychan.node.messages import decode_json, error_body
from paychan.node.peer import PeerRefused, PeerUnavailable
from paychan.node.store import STATUS_OPEN
from paychan.routing import ChannelGraph, Route
from paychan.state import ChannelId, ChannelParams, channel_id

if TYPE_CHECKING:
    from paychan.node.server import Node, Runtime
    from paychan.node.watcher import ChainEvent, Watcher

log = logging.getLogger("paychan.node.network")

MAX_ANNOUNCEMENTS = 64  # announcements per /peer/fees request (a relay sends more in several)
MAX_ROUTES = 10  # k at most for a route query
# Seconds an announcement's timestamp may lie ahead of this node's clock: one far ahead would let no later
# announcement of its node replace it (newest wins) until the clock got there.
MAX_CLOCK_AHEAD = 600
# Announcements held for channels not in the graph yet: at most this many, each for at most this many seconds
MAX_HELD = 256
HELD_FOR = 600.0
BACKFILL_KEY = "graph.backfillTo"  # node_meta: the watcher's cursor when the store gained the graph (schema 8)
BACKFILL_DONE = "done"


class NotAPeer(Unauthenticated):
    """Raised when a fee announcement comes from a node that is not a counterparty of this node (``signer``)."""

    def __init__(self, signer: str) -> None:
        self.signer = signer
        super().__init__(f"NotAPeer(signer={signer}): only the node of a counterparty may send fee announcements")


class NoRoute(PaychanError):
    """Raised when the graph has no route from ``source`` to ``target`` for ``amount`` wei (of ``channels``
    open channels it knows, ``announced`` with a fee announcement)."""

    def __init__(self, source: str, target: str, amount: int, channels: int, announced: int) -> None:
        self.source, self.target, self.amount = source, target, amount
        self.channels, self.announced = channels, announced
        super().__init__(
            f"NoRoute(source={source}, target={target}, amount={amount}): no route of channels with the capacity "
            f"and announced fees ({channels} open channels known, {announced} fee announcements)"
        )


class FeeFromTheFuture(PaychanError):
    """Raised when an announcement's ``timestamp`` is more than ``MAX_CLOCK_AHEAD`` s after this node's clock
    (``now``)."""

    def __init__(self, timestamp: int, now: int) -> None:
        self.timestamp, self.now = timestamp, now
        super().__init__(f"FeeFromTheFuture(timestamp={timestamp}, now={now}): more than {MAX_CLOCK_AHEAD} s ahead")


class NoChannelForFees(PaychanError):
    """Raised when ``paychan fees set`` finds no open channel of the node in the graph to set fees on."""


class NodeNetwork:
    """The channel graph and fees of ``node`` (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.graph = ChannelGraph(node.domain)
        self._known: dict[ChannelId, tuple[ChannelParams, int, int]] = {}  # params and deposits, as stored
        self._backfilled = False
        # (channel, announcing node) -> an announcement for a channel not in the graph yet, and when it came
        self._held: OrderedDict[tuple[ChannelId, str], tuple[FeeAnnouncement, float]] = OrderedDict()
        self.stats = {
            "announcementsAccepted": 0,
            "announcementsRefused": 0,
            "announcementsRelayed": 0,
            "announcementsHeld": 0,
        }
        store = node.store
        for cid, params, deposit_a, deposit_b in store.graph_channels():
            self.graph.open_channel(params, deposit_a, deposit_b)
            self._known[cid] = (params, deposit_a, deposit_b)
        for data in store.fee_announcements():
            try:
                self.graph.apply_fee_announcement(FeeAnnouncement.from_json(data))
            except PaychanError as exc:  # checked before it was stored: only a store edited by hand
                log.warning("a stored fee announcement is not valid any more: %s", exc)

    # --- chain events (the watcher, inside the transaction of its page) ----------------------------

    def note_event(self, event: ChainEvent) -> None:
        """Applies one contract event to the graph and its store (no chain call)."""
        args, cid = event.args, ChannelId(event.channel_id)
        if event.name == "ChannelOpened":
            params = ChannelParams(
                args["participantA"], args["participantB"], args["asset"], args["challengePeriod"], args["number"]
            )
            cid = channel_id(params, self.graph.domain.chain_id, self.graph.domain.verifying_contract)
            if cid in self.graph:
                return
            self.graph.open_channel(params)
            self._known[cid] = (params, 0, 0)
            self.node.store.put_graph_channel(cid, params, 0, 0)
            self._release_soon(cid)
        elif cid not in self.graph:
            return  # a channel that closed already (or opened before the watcher's first block)
        elif event.name == "Deposited":
            params, deposit_a, deposit_b = self._known[cid]
            is_a = to_checksum_address(args["participant"]) == params.participant_a
            total = int(args["total"])
            self._set_deposits(cid, (total, deposit_b) if is_a else (deposit_a, total))
        elif event.name == "Withdrawn":
            self._set_deposits(cid, (int(args["depositA"]), int(args["depositB"])))
        elif event.name in ("ChannelClosed", "ChannelSettled"):
            self.graph.close_channel(cid)
            self._known.pop(cid, None)
            self.node.store.delete_graph_channel(cid)

    async def backfill(self, watcher: Watcher) -> None:
        """Once, in a store upgraded from one without the graph: the channel events of the blocks the watcher
        had processed before the upgrade (``BACKFILL_KEY``), read in the watcher's pages and applied to the
        graph only. Interrupted, it starts again from the first block at the next poll: applying the events
        again in order gives the same graph."""
        store = self.node.store
        if self._backfilled:
            return
        stored = store.get_meta(BACKFILL_KEY)
        if stored is None or stored == BACKFILL_DONE:
            self._backfilled = True
            return
        start, last = watcher.from_block, int(stored) - 1
        while start <= last:
            end = min(last, start + watcher.page_blocks - 1)
            raw_logs = await watcher._chain(watcher._get_logs, start, end)
            events = [e for e in (watcher.decode(raw) for raw in raw_logs) if e is not None]
            with store.transaction():
                for item in sorted(events, key=lambda e: (e.name != "ChannelOpened", e.block, e.index)):
                    self.note_event(item)
            start = end + 1
        store.set_meta(BACKFILL_KEY, BACKFILL_DONE)
        self._backfilled = True
        log.info("channel graph: %d open channels found in blocks %d to %d", len(self.graph), watcher.from_block, last)

    def _set_deposits(self, cid: ChannelId, deposits: tuple[int, int]) -> None:
        params = self._known[cid][0]
        self._known[cid] = (params, *deposits)
        self.graph.record_deposits(cid, *deposits)
        self.node.store.put_graph_channel(cid, params, *deposits)

    # --- our fees ----------------------------------------------------------------------------------

    def _own_open(self) -> list[ChannelId]:
        """The node's open channels that the graph knows (seen on chain by the watcher)."""
        return [
            ChannelId(cid)
            for cid, runtime in self.node.runtimes.items()
            if runtime.record.status == STATUS_OPEN and cid in self.graph
        ]

    def own_fees(self) -> dict[str, Any]:
        """The node's current announcement on each of its open channels (``None``: none yet)."""
        channels = []
        for cid in self._own_open():
            runtime = self.node.runtimes[cid]
            held = self.graph.fee_announcement(cid, self.node.address)
            channels.append(
                {
                    "channelId": "0x" + cid.hex(),
                    "peer": runtime.channel.peer_address,
                    "fees": None if held is None else held.update.to_json(),
                }
            )
        announcements = self.graph.fee_announcements()
        return {
            "address": self.node.address,
            "channels": channels,
            "graph": {"channels": len(self.graph), "announcements": len(announcements)},
            **self.stats,
        }

    async def set_fees(self, base_fee: int, ppm: int, cid: ChannelId | None = None) -> list[FeeAnnouncement]:
        """Announces ``base_fee`` + ``ppm`` on channel ``cid`` (default: every open channel of the node): signed,
        kept, and sent to every counterparty's node. ``UnknownChannel`` for a channel that is not ours or not
        seen on chain yet; ``NoChannelForFees`` if the node has none; ``MalformedMessage`` for a bad fee."""
        FeePolicy(base_fee, ppm)  # checks both ranges before anything is signed
        node = self.node
        if cid is not None:
            runtime = node.runtime(cid)
            if runtime.record.status != STATUS_OPEN or cid not in self.graph:
                raise UnknownChannel(f"channel 0x{cid.hex()} is not open in the channel graph (seen on chain?)")
            targets = [cid]
        else:
            targets = self._own_open()
            if not targets:
                raise NoChannelForFees("the node has no open channel seen on chain to set fees on")
        now = int(time.time())
        updates = []
        for target in targets:
            held = self.graph.fee_announcement(target, node.address)
            previous = None if held is None else held.update.timestamp
            updates.append(FeeUpdate(target, node.address, next_timestamp(now, previous), base_fee, ppm))
        await node.sign_ahead([(node.domain, update) for update in updates])
        announcements = [FeeAnnouncement(update, node.signer.sign_typed(node.domain, update)) for update in updates]
        with node.store.transaction():
            for announcement in announcements:
                self._keep(announcement)
        log.info("announcing fees %d wei + %d ppm on %d channel(s)", base_fee, ppm, len(announcements))
        self._relay(announcements, exclude=None)
        return announcements

    def _keep(self, announcement: FeeAnnouncement) -> None:
        """Checks ``announcement`` against the graph and keeps it (store and graph; the store's row rolls back
        if the graph refuses it)."""
        update = announcement.update
        if update.channel_id not in self.graph:  # before the store: its row would name an unknown channel
            raise UnknownChannel(f"no open channel 0x{update.channel_id.hex()} in the channel graph")
        now = int(time.time())
        if update.timestamp > now + MAX_CLOCK_AHEAD:
            raise FeeFromTheFuture(update.timestamp, now)
        with self.node.store.transaction():
            self.node.store.put_fee_announcement(
                update.channel_id, update.node, update.timestamp, announcement.to_json()
            )
            self.graph.apply_fee_announcement(announcement)

    # --- from peers --------------------------------------------------------------------------------

    def receive(self, signer: str, body: bytes) -> dict[str, Any]:
        """``POST /peer/fees`` from ``signer`` (authenticated): keeps and relays the new announcements.

        Raises ``NotAPeer`` for a signer that is not a counterparty, ``MalformedMessage`` for a body that is not
        ``{"announcements": [1 to MAX_ANNOUNCEMENTS announcements]}`` (nothing kept), and, when not one of them
        is kept, the refusal of the first (``UnknownChannel``, ``NotParticipant``, ``InvalidSignature``,
        ``StaleFeeUpdate``, ``FeeFromTheFuture``). Otherwise answers how many were kept and why the others were
        refused."""
        node = self.node
        if signer not in node.counterparties:
            raise NotAPeer(signer)
        data = decode_json(body)
        if set(data) != {"announcements"} or not isinstance(data["announcements"], list):
            raise MalformedMessage('a fee message is {"announcements": [...]}')
        items = data["announcements"]
        if not 1 <= len(items) <= MAX_ANNOUNCEMENTS:
            raise MalformedMessage(f"a fee message carries 1 to {MAX_ANNOUNCEMENTS} announcements, not {len(items)}")
        parsed = [FeeAnnouncement.from_json(item) for item in items]
        node.gate.charge_peer(signer, len(parsed) - 1)  # one share per announcement, as per state
        kept: list[FeeAnnouncement] = []
        refused: list[tuple[int, PaychanError]] = []
        for index, announcement in enumerate(parsed):
            try:
                self._keep(announcement)
            except PaychanError as exc:  # UnknownChannel, NotParticipant, InvalidSignature, StaleFeeUpdate
                refused.append((index, exc))
                if isinstance(exc, UnknownChannel):
                    self._hold(announcement)
            else:
                kept.append(announcement)
        self.stats["announcementsAccepted"] += len(kept)
        self.stats["announcementsRefused"] += len(refused)
        if not kept:
            raise refused[0][1]
        self._relay(kept, exclude=signer)
        return {
            "type": "fees",
            "accepted": len(kept),
            "refused": [{"index": index, **error_body(exc)} for index, exc in refused],
        }

    def _hold(self, announcement: FeeAnnouncement) -> None:
        """Keeps ``announcement`` of a channel not in the graph yet until it opens there (``_release``): the
        newest per channel and node, the oldest dropped beyond ``MAX_HELD``."""
        update = announcement.update
        key = (update.channel_id, update.node)
        held = self._held.get(key)
        if held is not None and held[0].update.timestamp >= update.timestamp:
            return
        self._held[key] = (announcement, time.monotonic())
        self._held.move_to_end(key)
        while len(self._held) > MAX_HELD:
            self._held.popitem(last=False)
        self.stats["announcementsHeld"] = len(self._held)

    def _release_soon(self, cid: ChannelId) -> None:
        """Channel ``cid`` opened in the graph: its held announcements are checked once the watcher's page
        is committed (outside its transaction, so a refused one cannot touch the page's)."""
        if not any(key[0] == cid for key in self._held):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called without an event loop (a test feeding events): at once
            self._release(cid)
            return
        loop.call_soon(self._release, cid)

    def _release(self, cid: ChannelId) -> None:
        """Checks and keeps the announcements held for ``cid`` (those held longer than ``HELD_FOR`` are
        dropped), and relays the kept ones."""
        now, kept = time.monotonic(), []
        for key in [key for key in self._held if key[0] == cid]:
            announcement, since = self._held.pop(key)
            if now - since > HELD_FOR:
                continue
            try:
                self._keep(announcement)
            except PaychanError as exc:  # NotParticipant, InvalidSignature, StaleFeeUpdate, ...
                self.stats["announcementsRefused"] += 1
                log.info("a held fee announcement of channel 0x%s is refused: %s", cid.hex()[:12], exc)
                continue
            kept.append(announcement)
        self.stats["announcementsHeld"] = len(self._held)
        if kept:
            self.stats["announcementsAccepted"] += len(kept)
            self._relay(kept, exclude=None)

    def greet(self, runtime: Runtime) -> None:
        """A counterparty's node became reachable (its URL is newly known): it gets every announcement the
        graph holds, in the background (``MAX_ANNOUNCEMENTS`` a request), so a node that joins later learns the
        fees announced before."""
        held = self.graph.fee_announcements()
        if held and runtime.record.peer_url and runtime.record.status == STATUS_OPEN:
            self.node._background(self._send(runtime.channel.peer_address, runtime.record.peer_url, held))

    def _relay(self, announcements: Sequence[FeeAnnouncement], exclude: str | None) -> None:
        """Sends ``announcements`` to the node of every counterparty but ``exclude``, in the background."""
        peers: dict[str, str] = {}
        for runtime in self.node.runtimes.values():
            peer = runtime.channel.peer_address
            if runtime.record.status == STATUS_OPEN and runtime.record.peer_url and peer != exclude:
                peers.setdefault(peer, runtime.record.peer_url)
        for peer, url in peers.items():
            self.node._background(self._send(peer, url, list(announcements)))

    async def _send(self, peer: str, url: str, announcements: list[FeeAnnouncement]) -> None:
        for start in range(0, len(announcements), MAX_ANNOUNCEMENTS):
            chunk = announcements[start : start + MAX_ANNOUNCEMENTS]
            try:
                await self.node.peer.post(url + "/peer/fees", {"announcements": [a.to_json() for a in chunk]}, peer)
                self.stats["announcementsRelayed"] += len(chunk)
            except PeerRefused as exc:  # it knew them already, or has not seen the channel yet
                log.info("%s did not take %d fee announcement(s): %s", peer, len(chunk), exc)
            except (PeerUnavailable, TimeoutError) as exc:
                log.info("fee announcements not delivered to %s: %s", peer, exc)

    # --- routes ------------------------------------------------------------------------------------

    def refresh_own_capacities(self) -> None:
        """Each open channel of the node: both sides' spendable balances from its latest state."""
        for cid in self._own_open():
            runtime = self.node.runtimes[cid]
            balance_a, balance_b = runtime.channel.balances()
            params = runtime.record.params
            self.graph.set_capacity(cid, params.participant_a, max(0, balance_a))
            self.graph.set_capacity(cid, params.participant_b, max(0, balance_b))

    def routes(self, target: str, amount: int, k: int = 3) -> list[Route]:
        """The ``k`` cheapest routes from the node to ``target`` for ``amount``; ``NoRoute`` if none."""
        if not 1 <= k <= MAX_ROUTES:
            raise MalformedMessage(f"k is 1 to {MAX_ROUTES}, not {k}")
        target = to_checksum_address(target)
        if target == self.node.address:
            raise MalformedMessage("a route goes to another node than this one")
        self.refresh_own_capacities()
        found = self.graph.routes(self.node.address, target, amount, k, now=self.node.chain_now())
        if not found:
            raise NoRoute(self.node.address, target, amount, len(self.graph), len(self.graph.fee_announcements()))
        return found

    def route_json(self, route: Route) -> dict[str, Any]:
        """A route for the control API: each hop with what it carries, and each intermediary's fee as computed
        from its announced base fee and ppm."""
        hops = []
        for i, hop in enumerate(route.hops):
            entry: dict[str, Any] = {
                "channelId": "0x" + hop.channel_id.hex(),
                "sender": hop.sender,
                "receiver": hop.receiver,
                "amount": str(hop.amount),
                "fee": str(hop.fee),
            }
            policy = self.graph.fee_policy(hop.channel_id, hop.sender) if hop.channel_id in self.graph else None
            if i > 0 and policy is not None:  # a route uses announced intermediaries (gone: the channel closed)
                entry["baseFee"], entry["ppm"] = str(policy.base_fee), str(policy.ppm)
            hops.append(entry)
        return {"hops": hops, "amount": str(route.amount), "sent": str(route.sent), "totalFee": str(route.total_fee)}


__all__ = [
    "MAX_ANNOUNCEMENTS",
    "MAX_CLOCK_AHEAD",
    "FeeFromTheFuture",
    "NoChannelForFees",
    "NoRoute",
    "NodeNetwork",
    "NotAPeer",
]
