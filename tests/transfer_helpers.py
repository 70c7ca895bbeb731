"""Builders for the transfer state-machine tests: five parties, their channels, routes priced by the fee
rules (``paychan.fees.hop_amounts``), and each node's view of its channels."""

from __future__ import annotations

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.fees import FeePolicy, hop_amounts
from paychan.routing import PAYEE_LOCK_TIME, Hop, Route
from paychan.state import ChannelId, hashlock
from paychan.transfer.state import EXPIRY_SLACK, ChannelView

ALICE, BOB, CAROL, DAVE, ERIN = (to_checksum_address(f"0x{i:040x}") for i in (0xA1, 0xB0, 0xCA, 0xDA, 0xE1))
NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol", DAVE: "dave", ERIN: "erin"}
SECRET = bytes(range(32))
HASHLOCK = hashlock(SECRET)
NOW = 1_000_000
PAYMENT_ID = 7
AMOUNT = 1_000_000
FEES = {BOB: FeePolicy(100, 1_000), CAROL: FeePolicy(50, 2_000), DAVE: FeePolicy(1_000, 10_000)}
DEPOSIT = 10_000_000
CHALLENGE_PERIOD = 3600


def cid(a: str, b: str) -> ChannelId:
    """The (made-up, deterministic) id of the channel between ``a`` and ``b``."""
    first, second = sorted((a, b))
    return ChannelId(keccak(bytes.fromhex(first[2:] + second[2:])))


def route(*nodes: str, amount: int = AMOUNT) -> Route:
    """The route over ``nodes``, each intermediary charging its ``FEES`` on what it forwards."""
    amounts = hop_amounts([FEES[node] for node in nodes[1:-1]], amount)
    hops = []
    for i, (sender, receiver) in enumerate(zip(nodes, nodes[1:], strict=False)):
        fee = 0 if i == 0 else amounts[i - 1] - amounts[i]
        hops.append(Hop(cid(sender, receiver), sender, receiver, amounts[i], fee, CHALLENGE_PERIOD))
    return Route(tuple(hops), amount)


def view(us: str, peer: str, ours: int = DEPOSIT, theirs: int = DEPOSIT, **changes: object) -> ChannelView:
    return ChannelView(cid(us, peer), peer, ours, theirs, FEES.get(us, FeePolicy()), CHALLENGE_PERIOD, **changes)  # type: ignore[arg-type]


def views(us: str, *peers: str, **by_peer: ChannelView) -> dict[ChannelId, ChannelView]:
    """``us``'s views of its channels with ``peers`` (full deposits both sides), some replaced."""
    found = {cid(us, peer): view(us, peer) for peer in peers}
    for channel in by_peer.values():
        found[channel.channel_id] = channel
    return found


PAYEE_EXPIRY = NOW + PAYEE_LOCK_TIME + EXPIRY_SLACK
