"""The channel graph and routing (no chain): channels from their opening data and deposits, fee announcements
(newest wins, forged or stale ones refused, nothing changed), routes by Yen's algorithm ranked by exact total
fee, capacity per direction, k alternatives, a closed channel leaving the graph, and the expiry rule."""

from __future__ import annotations

from itertools import count

import pytest
from eth_account import Account

from paychan.channel import LOCK_EXPIRY_MARGIN, MIN_LOCK_TIME
from paychan.exceptions import InvalidSignature, NotParticipant, UnknownChannel
from paychan.fees import FeeAnnouncement, FeePolicy, FeeUpdate, check_forward, hop_amounts, sign_fee_update
from paychan.node.watcher import REVEAL_MARGIN
from paychan.routing import (
    EXPIRY_DELTA,
    PAYEE_LOCK_TIME,
    ChannelGraph,
    ExpiryDeltaTooSmall,
    StaleFeeUpdate,
    check_forward_expiry,
    lock_expiries,
)
from paychan.signing import Domain
from paychan.state import ETH, ChannelId, ChannelParams

DOMAIN = Domain(31337, "0x" + "ab" * 20)
ALICE, BOB, CAROL, DAVE, ERIN, MALLORY = (Account.from_key(bytes([n]) * 32) for n in range(0x11, 0x17))
A, B, C, D, E = (x.address for x in (ALICE, BOB, CAROL, DAVE, ERIN))
KEYS = {x.address: x.key for x in (ALICE, BOB, CAROL, DAVE, ERIN, MALLORY)}
TOKEN = "0x" + "77" * 20
_numbers = count(1)


def channel(
    graph: ChannelGraph,
    a: str,
    b: str,
    deposit_a: int = 10**6,
    deposit_b: int = 10**6,
    *,
    challenge_period: int = 3600,
    asset: str = ETH,
) -> ChannelId:
    return graph.open_channel(ChannelParams(a, b, asset, challenge_period, next(_numbers)), deposit_a, deposit_b)


def announce(graph: ChannelGraph, cid: ChannelId, node: str, base: int, ppm: int, timestamp: int = 1) -> None:
    graph.apply_fee_announcement(sign_fee_update(DOMAIN, FeeUpdate(cid, node, timestamp, base, ppm), KEYS[node]))


def two_routes() -> tuple[ChannelGraph, dict[str, ChannelId]]:
    """alice to dave through bob (fee 100 + 1%) or through carol (fee 10 + 0.1%)."""
    graph = ChannelGraph(DOMAIN)
    cids = {
        "ab": channel(graph, A, B),
        "bd": channel(graph, B, D),
        "ac": channel(graph, A, C),
        "cd": channel(graph, C, D),
    }
    announce(graph, cids["bd"], B, 100, 10_000)
    announce(graph, cids["cd"], C, 10, 1_000)
    return graph, cids


def test_a_direct_channel_is_a_one_hop_route_with_no_fee_even_if_the_payer_announced_one() -> None:
    graph = ChannelGraph(DOMAIN)
    cid = channel(graph, A, B)
    announce(graph, cid, A, 5_000, 5_000)
    (route,) = graph.routes(A, B, 1_000)
    assert route.nodes == (A, B)
    assert (route.sent, route.total_fee, route.fees) == (1_000, 0, {})
    assert route.hops[0].channel_id == cid


def test_routes_are_ranked_by_total_fee_cheapest_first() -> None:
    graph, cids = two_routes()
    first, second = graph.routes(A, D, 100_000, k=2)
    assert first.nodes == (A, C, D)
    assert [hop.channel_id for hop in first.hops] == [cids["ac"], cids["cd"]]
    assert (first.sent, first.total_fee, first.fees) == (100_110, 110, {C: 110})  # 10 + 100,000 * 0.1%
    assert second.nodes == (A, B, D)
    assert (second.sent, second.total_fee, second.fees) == (101_100, 1_100, {B: 1_100})  # 100 + 1%


def test_through_two_intermediaries_the_payee_gets_the_amount_and_each_intermediary_its_fee() -> None:
    graph = ChannelGraph(DOMAIN)
    ab, bc, cd = channel(graph, A, B), channel(graph, B, C), channel(graph, C, D)
    announce(graph, bc, B, 1_000, 100)
    announce(graph, cd, C, 500, 2_000)
    (route,) = graph.routes(A, D, 100_000)
    assert route.nodes == (A, B, C, D)
    # carol forwards 100,000: 500 + 200 = 700; bob forwards 100,700: 1,000 + 10 (10.07) = 1,010
    assert [hop.amount for hop in route.hops] == [101_710, 100_700, 100_000]
    assert [hop.amount for hop in route.hops] == hop_amounts([FeePolicy(1_000, 100), FeePolicy(500, 2_000)], 100_000)
    assert [hop.channel_id for hop in route.hops] == [ab, bc, cd]
    assert route.fees == {B: 1_010, C: 700}
    assert route.total_fee == 1_710
    assert check_forward(101_710, 100_700, FeePolicy(1_000, 100)) == 1_010
    assert check_forward(100_700, 100_000, FeePolicy(500, 2_000)) == 700


def test_through_three_intermediaries_each_hop_carries_the_downstream_fees() -> None:
    graph = ChannelGraph(DOMAIN)
    channel(graph, A, B)
    announce(graph, channel(graph, B, C), B, 1, 1)
    announce(graph, channel(graph, C, D), C, 10, 10_000)
    announce(graph, channel(graph, D, E), D, 100, 500_000)
    (route,) = graph.routes(A, E, 200_000)
    assert route.nodes == (A, B, C, D, E)
    # dave: 100 + 100,000 = 100,100; carol on 300,100: 10 + 3,001 = 3,011; bob on 303,111: 1 + 0 = 1
    assert [hop.amount for hop in route.hops] == [303_112, 303_111, 300_100, 200_000]
    assert route.fees == {B: 1, C: 3_011, D: 100_100}
    assert route.hops[-1].amount == 200_000 and route.total_fee == 103_112


def test_a_newer_announcement_replaces_the_fee_and_the_ranking_follows() -> None:
    graph, cids = two_routes()
    announce(graph, cids["cd"], C, 5_000, 0, timestamp=2)
    assert graph.fee_policy(cids["cd"], C) == FeePolicy(5_000, 0)
    first, second = graph.routes(A, D, 100_000, k=2)
    assert (first.nodes, first.total_fee) == ((A, B, D), 1_100)
    assert (second.nodes, second.total_fee) == ((A, C, D), 5_000)


def test_an_older_or_equal_announcement_is_refused_and_the_newest_stays() -> None:
    graph, cids = two_routes()
    announce(graph, cids["cd"], C, 20, 2_000, timestamp=7)
    newest = graph.fee_announcement(cids["cd"], C)
    for timestamp in (6, 7, 1):
        with pytest.raises(StaleFeeUpdate) as refused:
            announce(graph, cids["cd"], C, 0, 0, timestamp=timestamp)
        assert (refused.value.channel_id, refused.value.node, refused.value.timestamp, refused.value.latest) == (
            cids["cd"],
            C,
            timestamp,
            7,
        )
    assert graph.fee_announcement(cids["cd"], C) == newest
    assert graph.fee_policy(cids["cd"], C) == FeePolicy(20, 2_000)


def test_a_replayed_old_announcement_is_refused() -> None:
    graph, cids = two_routes()
    old = graph.fee_announcement(cids["cd"], C)
    assert old is not None
    announce(graph, cids["cd"], C, 900, 9_000, timestamp=2)
    with pytest.raises(StaleFeeUpdate) as refused:
        graph.apply_fee_announcement(old)
    assert (refused.value.timestamp, refused.value.latest) == (1, 2)
    assert graph.fee_policy(cids["cd"], C) == FeePolicy(900, 9_000)


def test_an_announcement_forged_by_a_relay_is_refused_and_changes_nothing() -> None:
    graph, cids = two_routes()
    held = graph.fee_announcement(cids["cd"], C)
    forged = sign_fee_update(DOMAIN, FeeUpdate(cids["cd"], C, 99, 0, 0), MALLORY.key)
    with pytest.raises(InvalidSignature) as refused:
        graph.apply_fee_announcement(forged)
    assert refused.value == InvalidSignature(expected=C, recovered=MALLORY.address)
    by_dave = sign_fee_update(DOMAIN, FeeUpdate(cids["cd"], C, 99, 0, 0), DAVE.key)  # the other participant
    with pytest.raises(InvalidSignature) as refused:
        graph.apply_fee_announcement(by_dave)
    assert refused.value == InvalidSignature(expected=C, recovered=D)
    assert held is not None
    tampered = FeeAnnouncement(FeeUpdate(cids["cd"], C, 99, 0, 0), held.signature)
    with pytest.raises(InvalidSignature):
        graph.apply_fee_announcement(tampered)
    assert graph.fee_announcement(cids["cd"], C) == held
    assert graph.routes(A, D, 100_000)[0].total_fee == 110


def test_an_announcement_by_a_stranger_for_someone_elses_channel_is_refused() -> None:
    graph, cids = two_routes()
    with pytest.raises(NotParticipant) as refused:
        announce(graph, cids["cd"], MALLORY.address, 0, 0, timestamp=5)
    assert refused.value == NotParticipant(cids["cd"], MALLORY.address)
    assert graph.fee_policy(cids["cd"], MALLORY.address) is None


def test_an_intermediary_that_announced_no_fee_is_not_routed_through() -> None:
    graph = ChannelGraph(DOMAIN)
    channel(graph, A, B)
    bd = channel(graph, B, D)
    assert graph.routes(A, D, 1_000) == []
    announce(graph, bd, D, 0, 0)  # dave's fee towards bob: the other direction
    assert graph.routes(A, D, 1_000) == []
    announce(graph, bd, B, 0, 0)
    assert [route.nodes for route in graph.routes(A, D, 1_000)] == [(A, B, D)]


def test_a_channel_whose_capacity_in_that_direction_is_below_the_amount_is_not_used() -> None:
    graph = ChannelGraph(DOMAIN)
    ac = channel(graph, A, C, deposit_a=50_000, deposit_b=10**9)  # carol could send alice much, alice little
    announce(graph, channel(graph, C, D), C, 0, 0)
    ab = channel(graph, A, B)
    announce(graph, channel(graph, B, D), B, 1_000, 0)
    assert [route.nodes for route in graph.routes(A, D, 50_000, k=3)] == [(A, C, D), (A, B, D)]
    assert [route.nodes for route in graph.routes(A, D, 50_001, k=3)] == [(A, B, D)]
    assert [route.nodes for route in graph.routes(D, A, 500_000, k=3)] == []  # no fees announced towards alice
    graph.set_capacity(ab, A, 50_000)
    assert graph.routes(A, D, 50_001) == []
    assert graph.capacity(ab, A) == 50_000 and graph.capacity(ac, C) == 10**9


def test_a_hop_that_covers_the_amount_but_not_the_downstream_fees_is_not_used() -> None:
    graph = ChannelGraph(DOMAIN)
    ab = channel(graph, A, B, deposit_a=100_999)
    announce(graph, channel(graph, B, D), B, 1_000, 0)
    assert graph.routes(A, D, 100_000) == []  # alice must lock 101,000
    graph.record_deposits(ab, 101_000, 0)
    (route,) = graph.routes(A, D, 100_000)
    assert (route.sent, route.fees) == (101_000, {B: 1_000})


def test_of_two_channels_between_the_same_pair_the_cheapest_with_the_capacity_is_used() -> None:
    graph = ChannelGraph(DOMAIN)
    channel(graph, A, B)
    cheap, dear = channel(graph, B, D, deposit_a=10_000), channel(graph, B, D)
    announce(graph, cheap, B, 1, 0)
    announce(graph, dear, B, 50, 0)
    (route,) = graph.routes(A, D, 10_000)
    assert (route.hops[1].channel_id, route.total_fee) == (cheap, 1)
    (route,) = graph.routes(A, D, 10_001)
    assert (route.hops[1].channel_id, route.total_fee) == (dear, 50)


def test_k_alternatives_are_distinct_routes_cheapest_first() -> None:
    graph = ChannelGraph(DOMAIN)
    for middle, base in ((B, 300), (C, 100), (E, 200)):
        channel(graph, A, middle)
        announce(graph, channel(graph, middle, D), middle, base, 0)
    assert [route.total_fee for route in graph.routes(A, D, 1_000, k=2)] == [100, 200]
    routes = graph.routes(A, D, 1_000, k=10)
    assert [route.nodes for route in routes] == [(A, C, D), (A, E, D), (A, B, D)]
    assert [route.total_fee for route in graph.routes(A, D, 1_000, k=1)] == [100]


def test_the_cheapest_route_is_found_even_when_the_fees_on_downstream_fees_reverse_the_search_order() -> None:
    graph = ChannelGraph(DOMAIN)
    channel(graph, A, B)
    announce(graph, channel(graph, B, C), B, 0, 1_000_000)  # 100%: bob doubles what he forwards
    announce(graph, channel(graph, C, D), C, 1_000, 0)
    channel(graph, A, E)
    announce(graph, channel(graph, E, D), E, 2_500, 0)
    # weighed on the amount, bob + carol cost 1,000 + 1,000 < erin's 2,500; exactly, bob charges on carol's fee
    # too: 1,000 + 2,000 = 3,000
    (cheapest,) = graph.routes(A, D, 1_000, k=1)
    assert (cheapest.nodes, cheapest.total_fee) == ((A, E, D), 2_500)
    assert [(route.nodes, route.total_fee) for route in graph.routes(A, D, 1_000, k=2)] == [
        ((A, E, D), 2_500),
        ((A, B, C, D), 3_000),
    ]


def test_of_two_equally_cheap_routes_the_shorter_comes_first() -> None:
    graph = ChannelGraph(DOMAIN)
    channel(graph, A, B)
    announce(graph, channel(graph, B, C), B, 0, 0)
    announce(graph, channel(graph, C, D), C, 0, 0)
    channel(graph, A, E)
    announce(graph, channel(graph, E, D), E, 0, 0)
    assert [route.nodes for route in graph.routes(A, D, 1_000, k=2)] == [(A, E, D), (A, B, C, D)]
    assert [route.nodes for route in graph.routes(A, D, 1_000, k=2, max_hops=2)] == [(A, E, D)]


def test_a_closed_channel_leaves_the_graph_and_its_route() -> None:
    graph, cids = two_routes()
    assert [a.update.channel_id for a in graph.fee_announcements()] == [cids["bd"], cids["cd"]]
    assert graph.close_channel(cids["cd"]) is True
    assert [a.update.channel_id for a in graph.fee_announcements()] == [cids["bd"]]  # nothing relayed for it
    assert cids["cd"] not in graph and len(graph) == 3
    assert [route.nodes for route in graph.routes(A, D, 100_000, k=3)] == [(A, B, D)]
    assert graph.close_channel(cids["cd"]) is False  # the settlement after the close: nothing more
    with pytest.raises(UnknownChannel):
        announce(graph, cids["cd"], C, 0, 0, timestamp=9)
    graph.close_channel(cids["ab"])
    assert graph.routes(A, D, 100_000, k=3) == []


def test_channels_in_another_asset_do_not_carry_the_payment() -> None:
    graph = ChannelGraph(DOMAIN)
    channel(graph, A, B, asset=TOKEN)
    announce(graph, channel(graph, B, D, asset=TOKEN), B, 0, 0)
    assert graph.routes(A, D, 1_000) == []
    assert [route.nodes for route in graph.routes(A, D, 1_000, asset=TOKEN)] == [(A, B, D)]


def test_unknown_parties_and_bad_requests() -> None:
    graph, _ = two_routes()
    assert graph.routes(A, ERIN.address, 1_000) == []
    assert graph.routes(MALLORY.address, D, 1_000) == []
    with pytest.raises(ValueError):
        graph.routes(A, A, 1_000)
    with pytest.raises(ValueError):
        graph.routes(A, D, 0)
    with pytest.raises(ValueError):
        graph.routes(A, D, 1_000, k=0)


def test_each_hop_upstream_expires_one_delta_after_the_next_and_the_payees_first() -> None:
    assert EXPIRY_DELTA == 2 * REVEAL_MARGIN == 240
    assert lock_expiries(10_000, 1) == [10_000]
    assert lock_expiries(10_000, 3) == [10_480, 10_240, 10_000]
    graph, _ = two_routes()
    route = graph.routes(A, D, 1_000)[0]
    assert route.expiries(10_000) == [10_240, 10_000]
    check_forward_expiry(10_240, 10_000)


def test_a_forward_whose_outgoing_lock_expires_less_than_the_delta_before_the_incoming_is_refused() -> None:
    with pytest.raises(ExpiryDeltaTooSmall) as refused:
        check_forward_expiry(10_239, 10_000)
    assert (refused.value.incoming_expiry, refused.value.outgoing_expiry, refused.value.delta) == (10_239, 10_000, 240)
    with pytest.raises(ExpiryDeltaTooSmall):
        check_forward_expiry(10_000, 10_001)


def test_a_route_too_long_for_its_channels_lock_windows_is_dropped() -> None:
    graph = ChannelGraph(DOMAIN)
    period = LOCK_EXPIRY_MARGIN + PAYEE_LOCK_TIME + EXPIRY_DELTA  # room for exactly two hops
    channel(graph, A, B, challenge_period=period)
    announce(graph, channel(graph, B, C, challenge_period=period), B, 0, 0)
    announce(graph, channel(graph, C, D, challenge_period=period), C, 0, 0)
    now = 1_000_000
    (two_hops,) = graph.routes(A, C, 1_000, now=now)
    assert two_hops.latest_payee_expiry(now) == now + PAYEE_LOCK_TIME
    assert two_hops.expiries(now + PAYEE_LOCK_TIME) == [now + period - LOCK_EXPIRY_MARGIN, now + PAYEE_LOCK_TIME]
    (three_hops,) = graph.routes(A, D, 1_000)
    assert three_hops.latest_payee_expiry(now) == now + PAYEE_LOCK_TIME - EXPIRY_DELTA
    assert graph.routes(A, D, 1_000, now=now) == []
    assert PAYEE_LOCK_TIME >= MIN_LOCK_TIME


def test_capacity_and_deposits_of_unknown_channels_or_strangers_are_refused() -> None:
    graph, cids = two_routes()
    with pytest.raises(UnknownChannel):
        graph.record_deposits(ChannelId(b"\x01" * 32), 1, 1)
    with pytest.raises(ValueError):
        graph.set_capacity(cids["ab"], MALLORY.address, 5)
    with pytest.raises(ValueError):
        graph.set_capacity(cids["ab"], A, -1)
    assert graph.capacity(cids["ab"], A) == 10**6
