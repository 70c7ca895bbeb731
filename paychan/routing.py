"""The channel graph and routing: which channels exist, what each intermediary charges, and the cheapest
routes with the capacity for a payment (Yen's k shortest paths, with ``networkx``); the expiry rule per hop.

The graph (``ChannelGraph``) is what a node learns, with no trust in whoever tells it:

- channels from the chain: ``open_channel`` with a ``ChannelOpened`` event's parameters and the deposits
  (``record_deposits`` with the ``Deposited`` totals, or what a ``Withdrawn`` event left), ``close_channel``
  on ``ChannelClosed`` or ``ChannelSettled``: a closing channel forwards nothing, and leaves the graph;
- fee announcements from its peers (``apply_fee_announcement``): relayed by anyone, each signed by the
  channel's participant that charges the fee (``paychan.fees.verify_fee_announcement``), the newest
  (``timestamp``) per channel and node wins and an older or equal one is refused (``StaleFeeUpdate``);
- what it knows better than the chain (``set_capacity``): its own channels' spendable balances, and a hop
  that reported too little capacity.

The capacity of a channel in one direction is what its sender can lock towards the other side: its deposit
(the graph's estimate for someone else's channel: payments move balance between the sides, and only the two
participants know where it is), or what ``set_capacity`` said.

Routing (``ChannelGraph.routes``). A payment of ``amount`` from ``source`` to ``target`` goes over a path of
channels; the sender of each hop but the payer charges its fee on what it forwards over that hop
(``paychan.fees``), so each hop forwards the payment plus the fees of the hops after it (computed backwards
from the payee, ``paychan.fees.hop_amounts``). The search runs ``networkx.shortest_simple_paths`` (Yen's
algorithm, as Raiden's pathfinding service does) over a directed graph with one edge per ordered pair of
participants: the cheapest channel between them whose capacity in that direction covers ``amount``, weighted
by the fee its sender charges on ``amount`` (nothing for the payer's own first hop; one more unit per hop, so
that of two equally cheap routes the shorter comes first). An edge whose sender announced no fee is not used,
except from the payer. Each candidate path is then priced exactly, backwards from the payee, and dropped if
some hop cannot carry what it must forward (the payment plus the downstream fees); the kept routes are ranked
by their exact total fee. The search weighs each hop's fee on the payment amount, not on the amount plus the
downstream fees (which only the whole path tells), so a path's weight is a lower bound of its exact fee and
Yen's algorithm yields the paths in the order of that bound: the search goes on past ``k`` priced routes until
the next path's bound reaches the ``k``-th cheapest exact fee found, so the ``k`` routes returned are the
``k`` cheapest (among at most ``k + EXTRA_CANDIDATES`` paths examined).

The expiry rule (``lock_expiries``, ``check_forward_expiry``). All the hops of one payment carry the same
hashlock. The payee's lock expires first, at ``payee_expiry``; each hop upstream expires ``EXPIRY_DELTA``
seconds later than the hop after it: of ``n`` hops, hop ``i`` (the payer's is 0) expires at
``payee_expiry + (n - 1 - i) * EXPIRY_DELTA``. An intermediary refuses a forward whose outgoing lock would
expire less than ``EXPIRY_DELTA`` before its incoming one (``ExpiryDeltaTooSmall``).

Why that is safe for an intermediary M, with the incoming lock from U (expiry ``T_in``) and the outgoing lock
to D (expiry ``T_out <= T_in - EXPIRY_DELTA``), with the contract's secret registry: a lock is paid to its
receiver at settlement if and only if its secret was revealed on chain (``revealSecret``, by anyone) at or
before its expiry, and the registry is contract-wide: one reveal counts for every channel holding that
hashlock.

- D reveals the secret on chain at a time ``t <= T_out`` (to be paid without M): then ``revealedAt <= T_out <
  T_in``, so M's incoming lock is paid to M as well, by the same reveal, even if U has vanished; M only has to
  get its channel with U settled (its watcher closes and settles).
- D reveals on chain after ``T_out``: D's lock goes back to M; M loses nothing (and is paid by U as well if the
  reveal came by ``T_in``).
- D tells M the secret off chain to have the outgoing lock settled off chain (both sign the state that pays
  it to D). M signs that only at or before ``T_out`` (after it the lock is M's anyway), so M knows the secret
  at least ``EXPIRY_DELTA`` before ``T_in``. Then M asks U to settle the incoming lock off chain; **if U does
  not, M must reveal the secret on chain so that the reveal is mined by ``T_in``**: M's watcher reveals it once
  the incoming lock is within ``REVEAL_MARGIN`` (``paychan.node.watcher``, 120 s) of its expiry and U has
  still not settled. ``EXPIRY_DELTA = 2 * REVEAL_MARGIN``: U has ``REVEAL_MARGIN`` to settle off chain, and
  the reveal ``REVEAL_MARGIN`` (polls, a slow RPC, about ten 12-second blocks) to be mined. Settlement then
  pays M the incoming lock: every lock expires at most a challenge period (minus ``LOCK_EXPIRY_MARGIN``) after
  it was added (``paychan.channel``), so it is revealed or expired when a close can settle.

So M is paid by U whenever D is paid by M, whatever U and D do, as long as M's watcher runs (or someone
reveals for it) before ``T_in - REVEAL_MARGIN``. The payee, who knows the secret from the start, has its lock
for at least ``PAYEE_LOCK_TIME`` (``EXPIRY_DELTA``): the same time to be settled off chain or reveal on chain.
Every hop's expiry must also fit its channel's lock window (``paychan.channel``: at least ``MIN_LOCK_TIME``
and at most the challenge period minus ``LOCK_EXPIRY_MARGIN`` after the lock is added):
``Route.latest_payee_expiry`` gives the latest payee expiry that keeps every hop's lock in its window, so a
route is too long for its channels' challenge periods when that is before ``now + PAYEE_LOCK_TIME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

import networkx as nx

from paychan.channel import LOCK_EXPIRY_MARGIN
from paychan.exceptions import PaychanError, StateRejected, UnknownChannel
from paychan.fees import FeeAnnouncement, FeePolicy, verify_fee_announcement
from paychan.signing import Domain
from paychan.state import ETH, ChannelId, ChannelParams, channel_id, checksum_address

REVEAL_MARGIN = 120  # paychan.node.watcher.REVEAL_MARGIN (not imported: this module has no I/O and no node)
EXPIRY_DELTA = 2 * REVEAL_MARGIN  # seconds between the expiries of two consecutive hops
PAYEE_LOCK_TIME = EXPIRY_DELTA  # seconds the payee's lock leaves it at least
MAX_HOPS = 20  # channels per route at most (Lightning's limit)
EXTRA_CANDIDATES = 16  # paths examined beyond k before giving up on filling k routes


class StaleFeeUpdate(PaychanError):
    """Raised when a fee announcement is not newer than the one the graph holds for that channel and node:
    its ``timestamp`` is at most ``latest``."""

    def __init__(self, channel_id: bytes, node: str, timestamp: int, latest: int) -> None:
        self.channel_id, self.node, self.timestamp, self.latest = channel_id, node, timestamp, latest
        super().__init__(
            f"StaleFeeUpdate(channel_id=0x{channel_id.hex()}, node={node}, timestamp={timestamp}, latest={latest})"
        )


class ExpiryDeltaTooSmall(StateRejected):
    """Raised when a forward's outgoing lock expires less than ``delta`` seconds before its incoming lock
    (``incoming_expiry``, ``outgoing_expiry``): the intermediary could not be sure to reveal in time."""

    def __init__(self, incoming_expiry: int, outgoing_expiry: int, delta: int) -> None:
        self.incoming_expiry, self.outgoing_expiry, self.delta = incoming_expiry, outgoing_expiry, delta
        super().__init__(
            f"ExpiryDeltaTooSmall(incoming_expiry={incoming_expiry}, outgoing_expiry={outgoing_expiry}, delta={delta})"
        )


def lock_expiries(payee_expiry: int, hop_count: int, delta: int = EXPIRY_DELTA) -> list[int]:
    """The expiry of each hop's lock, the payer's first: the payee's at ``payee_expiry``, each hop upstream
    ``delta`` seconds later than the next."""
    if hop_count < 1:
        raise ValueError(f"a route has at least one hop, not {hop_count}")
    return [payee_expiry + (hop_count - 1 - i) * delta for i in range(hop_count)]


def check_forward_expiry(incoming_expiry: int, outgoing_expiry: int, delta: int = EXPIRY_DELTA) -> None:
    """Raises ``ExpiryDeltaTooSmall`` unless the outgoing lock expires at least ``delta`` seconds before the
    incoming one (what an intermediary checks before forwarding)."""
    if incoming_expiry - outgoing_expiry < delta:
        raise ExpiryDeltaTooSmall(incoming_expiry, outgoing_expiry, delta)


@dataclass(frozen=True)
class Hop:
    """One channel of a route: ``sender`` locks ``amount`` towards ``receiver`` over ``channel_id``, and
    earns ``fee`` for it (what it receives on the hop before minus ``amount``; 0 for the payer)."""

    channel_id: ChannelId
    sender: str
    receiver: str
    amount: int
    fee: int
    challenge_period: int


@dataclass(frozen=True)
class Route:
    """A route of ``hops`` (payer's first) on which the payee receives ``amount``."""

    hops: tuple[Hop, ...]
    amount: int

    @property
    def nodes(self) -> tuple[str, ...]:
        """Payer, intermediaries, payee."""
        return (self.hops[0].sender, *(hop.receiver for hop in self.hops))

    @property
    def sent(self) -> int:
        """What the payer locks on the first hop."""
        return self.hops[0].amount

    @property
    def total_fee(self) -> int:
        """What the payer pays the intermediaries: the sum of their fees."""
        return self.sent - self.amount

    @property
    def fees(self) -> dict[str, int]:
        """Each intermediary's fee, by address."""
        return {hop.sender: hop.fee for hop in self.hops[1:]}

    def expiries(self, payee_expiry: int, delta: int = EXPIRY_DELTA) -> list[int]:
        """Each hop's lock expiry, the payer's first (``lock_expiries``)."""
        return lock_expiries(payee_expiry, len(self.hops), delta)

    def latest_payee_expiry(self, now: int, delta: int = EXPIRY_DELTA) -> int:
        """The latest payee expiry at which every hop's lock, added at ``now``, is within its channel's window
        (at most its challenge period minus ``LOCK_EXPIRY_MARGIN`` after ``now``)."""
        n = len(self.hops)
        return min(
            now + hop.challenge_period - LOCK_EXPIRY_MARGIN - (n - 1 - i) * delta for i, hop in enumerate(self.hops)
        )


@dataclass
class _Channel:
    params: ChannelParams
    capacity: dict[str, int]  # by sender: what it can lock towards the other participant
    fees: dict[str, FeeAnnouncement] = field(default_factory=dict)  # by charging node: the newest

    def other(self, node: str) -> str:
        return self.params.participant_b if node == self.params.participant_a else self.params.participant_a


class ChannelGraph:
    """The open channels of one contract (``domain``), their capacities and their fee announcements."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self._channels: dict[ChannelId, _Channel] = {}

    def __contains__(self, cid: object) -> bool:
        return cid in self._channels

    def __len__(self) -> int:
        return len(self._channels)

    # --- from the chain ------------------------------------------------------------------------------

    def open_channel(self, params: ChannelParams, deposit_a: int = 0, deposit_b: int = 0) -> ChannelId:
        """Adds the channel of a ``ChannelOpened`` event (``params``) with its deposits; its id. A channel
        already in the graph only has its deposits updated."""
        cid = channel_id(params, self.domain.chain_id, self.domain.verifying_contract)
        if cid in self._channels:
            self.record_deposits(cid, deposit_a, deposit_b)
        else:
            self._channels[cid] = _Channel(params, {params.participant_a: deposit_a, params.participant_b: deposit_b})
        return cid

    def record_deposits(self, cid: ChannelId, deposit_a: int, deposit_b: int) -> None:
        """The channel's deposits are now ``deposit_a``/``deposit_b`` (``Deposited`` totals, or what a
        ``Withdrawn`` event left): each side's capacity towards the other. ``UnknownChannel`` if absent."""
        channel = self._channel(cid)
        channel.capacity = {channel.params.participant_a: deposit_a, channel.params.participant_b: deposit_b}

    def set_capacity(self, cid: ChannelId, sender: str, spendable: int) -> None:
        """``sender`` can lock at most ``spendable`` towards the other participant of ``cid`` (a node's own
        balance, or what a failed attempt reported), until the next ``record_deposits``. ``ValueError`` for
        someone who is not a participant, or a negative amount."""
        channel = self._channel(cid)
        sender = checksum_address(sender)
        channel.params.role_of(sender)  # ValueError for anyone else
        if spendable < 0:
            raise ValueError(f"a capacity is not negative: {spendable}")
        channel.capacity[sender] = spendable

    def close_channel(self, cid: ChannelId) -> bool:
        """Removes a channel that closed (``ChannelClosed``, or a cooperative ``ChannelSettled``) with its fee
        announcements; whether it was in the graph (a second close event changes nothing)."""
        return self._channels.pop(cid, None) is not None

    # --- from peers ------------------------------------------------------------------------------------

    def apply_fee_announcement(self, announcement: FeeAnnouncement) -> None:
        """Keeps ``announcement`` as its node's policy on its channel, if it is valid and the newest.

        Raises ``UnknownChannel`` for a channel not in the graph (not opened, or closed),
        ``NotParticipant``/``InvalidSignature`` for an announcement not signed by a participant naming itself
        (``verify_fee_announcement``), ``StaleFeeUpdate`` unless its timestamp is above the held one's. A
        refused announcement changes nothing.
        """
        update = announcement.update
        channel = self._channel(update.channel_id)
        verify_fee_announcement(self.domain, announcement, channel.params)
        held = channel.fees.get(update.node)
        if held is not None and update.timestamp <= held.update.timestamp:
            raise StaleFeeUpdate(update.channel_id, update.node, update.timestamp, held.update.timestamp)
        channel.fees[update.node] = announcement

    def fee_announcement(self, cid: ChannelId, node: str) -> FeeAnnouncement | None:
        """The newest announcement of ``node`` for ``cid`` (to relay it), if any."""
        return self._channel(cid).fees.get(checksum_address(node))

    def fee_announcements(self) -> list[FeeAnnouncement]:
        """The newest announcement of each node for each channel in the graph (what a node relays to a peer
        that connects)."""
        return [announcement for channel in self._channels.values() for announcement in channel.fees.values()]

    def fee_policy(self, cid: ChannelId, node: str) -> FeePolicy | None:
        """What ``node`` charges to forward over ``cid``, if it announced it."""
        announcement = self.fee_announcement(cid, node)
        return None if announcement is None else announcement.update.policy

    def capacity(self, cid: ChannelId, sender: str) -> int:
        """What ``sender`` can lock towards the other participant of ``cid``, as the graph knows it."""
        return self._channel(cid).capacity[checksum_address(sender)]

    def _channel(self, cid: ChannelId) -> _Channel:
        try:
            return self._channels[cid]
        except KeyError:
            raise UnknownChannel(f"no open channel 0x{cid.hex()} in the channel graph") from None

    # --- routing ---------------------------------------------------------------------------------------

    def routes(
        self,
        source: str,
        target: str,
        amount: int,
        k: int = 3,
        *,
        asset: str = ETH,
        now: int | None = None,
        max_hops: int = MAX_HOPS,
    ) -> list[Route]:
        """Up to ``k`` routes from ``source`` to ``target`` for a payment of ``amount`` (in ``asset``), the
        cheapest first (total fee, then fewer hops); each hop carries what it must forward and its sender's
        fee, and every hop's capacity covers its amount. With ``now``, only routes whose expiries fit their
        channels' lock windows (``Route.latest_payee_expiry(now) >= now + PAYEE_LOCK_TIME``). No route: ``[]``.
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"a payment amount is a positive integer, not {amount!r}")
        if k < 1:
            raise ValueError(f"k is at least 1, not {k}")
        source, target, asset = checksum_address(source), checksum_address(target), checksum_address(asset)
        if source == target:
            raise ValueError("a payment goes to someone else than its payer")
        graph = self._search_graph(source, amount, asset)
        if source not in graph or target not in graph:
            return []
        unit = graph.graph["unit"]
        found: list[Route] = []  # sorted by _rank
        for path in islice(self._paths(graph, source, target), k + EXTRA_CANDIDATES):
            weight = sum(graph.edges[u, v]["weight"] for u, v in zip(path, path[1:], strict=False))
            if len(found) >= k and divmod(weight, unit) >= _rank(found[k - 1]):
                break  # no later path can be cheaper than the k found: their lower bounds only grow
            if len(path) - 1 > max_hops:
                continue
            route = self._priced(graph, path, amount)
            if route is None:
                continue
            if now is not None and route.latest_payee_expiry(now) < now + PAYEE_LOCK_TIME:
                continue
            found.append(route)
            found.sort(key=_rank)
        return found[:k]

    @staticmethod
    def _paths(graph: nx.DiGraph, source: str, target: str) -> Iterator[list[str]]:
        try:
            yield from nx.shortest_simple_paths(graph, source, target, weight="weight")
        except nx.NetworkXNoPath:
            return

    def _search_graph(self, source: str, amount: int, asset: str) -> nx.DiGraph:
        """One edge per ordered pair of participants with a channel that can carry ``amount`` from the first
        to the second and whose sender announced its fee (or is the payer); the edge keeps every such channel
        (cheapest first) and weighs the cheapest one's fee on ``amount`` (times a unit above any hop count,
        plus one per hop)."""
        candidates: dict[tuple[str, str], list[tuple[int, ChannelId]]] = {}
        for cid, channel in self._channels.items():
            if channel.params.asset != asset:
                continue
            for sender in (channel.params.participant_a, channel.params.participant_b):
                if channel.capacity[sender] < amount:
                    continue
                announcement = channel.fees.get(sender)
                if sender == source:
                    fee = 0
                elif announcement is None:
                    continue
                else:
                    fee = announcement.update.policy.fee(amount)
                candidates.setdefault((sender, channel.other(sender)), []).append((fee, cid))
        unit = len(self._channels) * 2 + 2  # above any path's hop count
        graph = nx.DiGraph(unit=unit)
        for (sender, receiver), channels in candidates.items():
            channels.sort()
            graph.add_edge(sender, receiver, weight=channels[0][0] * unit + 1, channels=[cid for _, cid in channels])
        return graph

    def _priced(self, graph: nx.DiGraph, path: list[str], amount: int) -> Route | None:
        """``path`` priced backwards from the payee: at each hop the cheapest of the pair's channels that can
        carry what the hop must forward; ``None`` if some hop has none."""
        hops: list[Hop] = []
        forwarded = amount
        for i in range(len(path) - 2, -1, -1):
            sender, receiver = path[i], path[i + 1]
            best: tuple[int, ChannelId] | None = None
            for cid in graph.edges[sender, receiver]["channels"]:
                channel = self._channels[cid]
                if channel.capacity[sender] < forwarded:
                    continue
                fee = 0 if i == 0 else channel.fees[sender].update.policy.fee(forwarded)
                if best is None or fee < best[0]:
                    best = (fee, cid)
            if best is None:
                return None
            fee, cid = best
            hops.append(Hop(cid, sender, receiver, forwarded, fee, self._channels[cid].params.challenge_period))
            forwarded += fee
        hops.reverse()
        return Route(tuple(hops), amount)


def _rank(route: Route) -> tuple[int, int]:
    return route.total_fee, len(route.hops)


__all__ = [
    "EXPIRY_DELTA",
    "MAX_HOPS",
    "PAYEE_LOCK_TIME",
    "ChannelGraph",
    "ExpiryDeltaTooSmall",
    "Hop",
    "Route",
    "StaleFeeUpdate",
    "check_forward_expiry",
    "lock_expiries",
]
