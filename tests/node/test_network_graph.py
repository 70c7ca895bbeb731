"""``paychan.node.network`` without sockets or a chain: the node's channel graph fed by contract events, kept
across restarts, fee announcements from counterparties (newest wins, refused ones change nothing), our own
fees signed by the node's signer, and routes priced from them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import paychan.node.network as network_module
from paychan.exceptions import InvalidSignature, MalformedMessage, NotParticipant, UnknownChannel
from paychan.fees import FeeAnnouncement, FeeUpdate, fee_update_digest, sign_fee_update
from paychan.node.network import MAX_ANNOUNCEMENTS, MAX_CLOCK_AHEAD, FeeFromTheFuture, NoRoute, NotAPeer
from paychan.node.server import Node
from paychan.node.store import MIGRATIONS, Store
from paychan.node.watcher import ChainEvent
from paychan.routing import StaleFeeUpdate
from paychan.signers import Signer, SignerUnavailable
from paychan.signing import recover_digest_signer
from paychan.state import ChannelId, ChannelParams, channel_id

from .conftest import ADDRESS_A, ADDRESS_B, ADDRESS_C, DOMAIN, KEY_A, KEY_B, KEY_C, PARAMS
from .test_remote_signer import KeyElsewhere

ETH = "0x0000000000000000000000000000000000000000"
BC = ChannelParams(ADDRESS_B, ADDRESS_C, ETH, 3600, 2)
CID_AB = channel_id(PARAMS, DOMAIN.chain_id, DOMAIN.verifying_contract)
CID_BC = channel_id(BC, DOMAIN.chain_id, DOMAIN.verifying_contract)


def opened(params: ChannelParams, block: int = 1) -> ChainEvent:
    cid = channel_id(params, DOMAIN.chain_id, DOMAIN.verifying_contract)
    args = {
        "channelId": cid,
        "participantA": params.participant_a,
        "participantB": params.participant_b,
        "asset": params.asset,
        "challengePeriod": params.challenge_period,
        "number": params.number,
    }
    return ChainEvent("ChannelOpened", cid, block, 0, args)


def event(name: str, cid: bytes, **args: Any) -> ChainEvent:
    return ChainEvent(name, cid, 2, 1, {"channelId": cid, **args})


def alice_node(db: Path, signer: Signer | None = None) -> Node:
    """Alice's node (participant A of ``PARAMS``, with bob) that has seen alice-bob and bob-carol open."""
    store = Store(db)
    node = Node(store, KEY_A, DOMAIN, signer=signer)
    if store.channel(CID_AB) is None:
        with store.transaction():
            node.add_discovered(PARAMS)
            for item in (
                opened(PARAMS),
                event("Deposited", CID_AB, participant=ADDRESS_A, total=10**18),
                opened(BC),
                event("Deposited", CID_BC, participant=ADDRESS_B, total=5 * 10**17),
            ):
                node.network.note_event(item)
            node.note_deposits(CID_AB, 10**18, 0)
    return node


def announcement(cid: bytes, key: bytes, node: str, timestamp: int, base: int, ppm: int) -> dict[str, object]:
    return sign_fee_update(DOMAIN, FeeUpdate(ChannelId(cid), node, timestamp, base, ppm), key).to_json()


def body(*announcements: dict[str, object]) -> bytes:
    return json.dumps({"announcements": list(announcements)}).encode()


def test_the_graph_holds_every_channel_of_the_contract_follows_its_deposits_and_is_kept_across_a_restart(
    tmp_path: Path,
) -> None:
    node = alice_node(tmp_path / "alice.db")
    graph = node.network.graph
    assert len(graph) == 2 and CID_BC in graph  # bob-carol is not alice's, and still in her graph
    assert (graph.capacity(CID_BC, ADDRESS_B), graph.capacity(CID_BC, ADDRESS_C)) == (5 * 10**17, 0)
    node.network.note_event(event("Deposited", CID_BC, participant=ADDRESS_C, total=7))
    node.network.note_event(event("Withdrawn", CID_BC, depositA=4 * 10**17, depositB=7, withdrawals=1))
    node.store.close()

    again = alice_node(tmp_path / "alice.db")
    graph = again.network.graph
    assert len(graph) == 2
    assert (graph.capacity(CID_BC, ADDRESS_B), graph.capacity(CID_BC, ADDRESS_C)) == (4 * 10**17, 7)
    again.network.note_event(event("ChannelClosed", CID_BC))
    again.network.note_event(event("Deposited", CID_BC, participant=ADDRESS_C, total=9))  # after: ignored
    assert CID_BC not in graph and len(graph) == 1
    assert [cid for cid, *_ in again.store.graph_channels()] == [CID_AB]


def test_announcements_from_a_counterparty_are_kept_newest_wins_and_a_refused_one_changes_nothing(
    tmp_path: Path,
) -> None:
    node = alice_node(tmp_path / "alice.db")
    network = node.network
    bobs = announcement(CID_BC, KEY_B, ADDRESS_B, 100, 1000, 100)
    carols = announcement(CID_BC, KEY_C, ADDRESS_C, 50, 5, 5)
    assert network.receive(ADDRESS_B, body(bobs, carols)) == {"type": "fees", "accepted": 2, "refused": []}
    newer = announcement(CID_BC, KEY_B, ADDRESS_B, 101, 2000, 100)
    answer = network.receive(ADDRESS_B, body(bobs, newer))  # one stale (a relay's copy), one new
    assert (answer["accepted"], answer["refused"][0]["index"], answer["refused"][0]["error"]["type"]) == (
        1,
        0,
        "StaleFeeUpdate",
    )
    stored = sorted(node.store.fee_announcements(), key=lambda a: str(a["update"]))
    refused: list[tuple[bytes, type[Exception]]] = [
        (body(bobs), StaleFeeUpdate),
        (body(announcement(CID_BC, KEY_A, ADDRESS_B, 200, 0, 0)), InvalidSignature),  # alice signs as bob
        (body(announcement(CID_BC, KEY_A, ADDRESS_A, 200, 0, 0)), NotParticipant),
        (body(announcement(b"\x05" * 32, KEY_B, ADDRESS_B, 200, 0, 0)), UnknownChannel),
        (body(announcement(CID_BC, KEY_B, ADDRESS_B, int(time.time()) + MAX_CLOCK_AHEAD + 60, 0, 0)), FeeFromTheFuture),
        (body(*[newer] * (MAX_ANNOUNCEMENTS + 1)), MalformedMessage),
        (body(), MalformedMessage),
        (b'{"announcements": [{"update": {}, "signature": "0x00"}]}', MalformedMessage),
    ]
    for raw, error in refused:
        with pytest.raises(error):
            network.receive(ADDRESS_B, raw)
    with pytest.raises(NotAPeer):  # carol has no channel with alice
        network.receive(ADDRESS_C, body(announcement(CID_BC, KEY_C, ADDRESS_C, 60, 0, 0)))
    assert sorted(node.store.fee_announcements(), key=lambda a: str(a["update"])) == stored
    policy = network.graph.fee_policy(CID_BC, ADDRESS_B)
    assert policy is not None and (policy.base_fee, policy.ppm) == (2000, 100)
    node.store.close()
    again = alice_node(tmp_path / "alice.db")
    assert again.network.graph.fee_announcement(CID_BC, ADDRESS_B) == FeeAnnouncement.from_json(newer)
    assert len(again.network.graph.fee_announcements()) == 2


def test_own_fees_are_signed_by_the_node_signer_kept_and_routes_price_each_intermediary(tmp_path: Path) -> None:
    node = alice_node(tmp_path / "alice.db")
    network = node.network
    (ours,) = asyncio.run(network.set_fees(10, 20))
    assert (ours.update.channel_id, ours.update.node, ours.update.base_fee, ours.update.ppm) == (
        CID_AB,
        ADDRESS_A,
        10,
        20,
    )
    assert recover_digest_signer(fee_update_digest(DOMAIN, ours.update), ours.signature) == ADDRESS_A
    (again,) = asyncio.run(network.set_fees(11, 20, CID_AB))
    assert again.update.timestamp > ours.update.timestamp  # newer even within the same second
    assert network.own_fees()["channels"][0]["fees"]["baseFee"] == "11"
    with pytest.raises(UnknownChannel):  # not ours
        asyncio.run(network.set_fees(1, 1, CID_BC))
    with pytest.raises(MalformedMessage):
        asyncio.run(network.set_fees(1, 2**32))

    with pytest.raises(NoRoute) as no_route:  # bob announced nothing on bob-carol yet
        network.routes(ADDRESS_C, 10**15)
    assert (no_route.value.channels, no_route.value.announced) == (2, 1)
    network.receive(ADDRESS_B, body(announcement(CID_BC, KEY_B, ADDRESS_B, 100, 1000, 100)))
    (route,) = network.routes(ADDRESS_C, 10**15)
    bob_fee = 1000 + 10**15 * 100 // 1_000_000
    assert [(h.sender, h.amount, h.fee) for h in route.hops] == [
        (ADDRESS_A, 10**15 + bob_fee, 0),
        (ADDRESS_B, 10**15, bob_fee),
    ]
    shown = network.route_json(route)["hops"][1]
    assert (shown["baseFee"], shown["ppm"], shown["fee"], shown["amount"]) == (
        "1000",
        "100",
        str(bob_fee),
        "10" + "0" * 14,
    )
    with pytest.raises(NoRoute):  # more than bob's side of bob-carol holds
        network.routes(ADDRESS_C, 5 * 10**17 + 1)


def test_a_store_of_schema_6_gains_the_channel_graph_tables(tmp_path: Path) -> None:
    old = Store(tmp_path / "v6.db", migrations=MIGRATIONS[:6])
    assert old.schema_version == 6
    old.close()
    new = Store(tmp_path / "v6.db")
    assert new.applied_migrations()[-2] == (8, MIGRATIONS[7][1])
    new.put_graph_channel(CID_BC, BC, 1, 2)
    signed = announcement(CID_BC, KEY_B, ADDRESS_B, 100, 1000, 100)
    new.put_fee_announcement(CID_BC, ADDRESS_B, 100, signed)
    assert new.graph_channels() == [(CID_BC, BC, 1, 2)] and new.fee_announcements() == [signed]
    new.delete_graph_channel(CID_BC)
    assert new.graph_channels() == [] and new.fee_announcements() == []
    new.close()


def test_a_remote_signer_signs_the_announcement_off_the_event_loop_and_one_that_is_down_changes_nothing(
    tmp_path: Path,
) -> None:
    signer = KeyElsewhere()
    node = alice_node(tmp_path / "alice.db", signer)

    async def scenario() -> None:
        (ours,) = await node.network.set_fees(10, 20)
        assert recover_digest_signer(fee_update_digest(DOMAIN, ours.update), ours.signature) == ADDRESS_A
        assert signer.threads and all(name != threading.main_thread().name for name in signer.threads)
        signer.down = True
        with pytest.raises(SignerUnavailable):
            await node.network.set_fees(99, 99)
        policy = node.network.graph.fee_policy(CID_AB, ADDRESS_A)
        assert policy is not None and (policy.base_fee, policy.ppm) == (10, 20)
        assert [a["update"]["baseFee"] for a in node.store.fee_announcements()] == ["10"]

    asyncio.run(scenario())


def test_an_announcement_that_outruns_its_channel_is_held_and_kept_once_the_channel_opens_a_forged_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = alice_node(tmp_path / "alice.db")
    network = node.network
    cd = ChannelParams(ADDRESS_C, ADDRESS_B, ETH, 3600, 3)  # carol-bob, not seen by alice's watcher yet
    cid_cd = channel_id(cd, DOMAIN.chain_id, DOMAIN.verifying_contract)
    carols = announcement(cid_cd, KEY_C, ADDRESS_C, 100, 7, 70)
    forged = announcement(cid_cd, KEY_A, ADDRESS_A, 100, 0, 0)  # alice is no participant of carol-bob
    for raw in (body(carols), body(forged)):
        with pytest.raises(UnknownChannel):  # refused for now, and held
            network.receive(ADDRESS_B, raw)
    assert network.stats["announcementsHeld"] == 2 and cid_cd not in network.graph
    network.note_event(opened(cd, block=5))  # the watcher sees it open: the held ones are checked now
    policy = network.graph.fee_policy(cid_cd, ADDRESS_C)
    assert policy is not None and (policy.base_fee, policy.ppm) == (7, 70)
    assert network.graph.fee_policy(cid_cd, ADDRESS_A) is None and network.stats["announcementsHeld"] == 0
    assert FeeAnnouncement.from_json(carols) in [FeeAnnouncement.from_json(a) for a in node.store.fee_announcements()]

    monkeypatch.setattr(network_module, "HELD_FOR", -1.0)  # held too long: dropped, not kept
    de = ChannelParams(ADDRESS_C, ADDRESS_B, ETH, 3600, 4)
    cid_de = channel_id(de, DOMAIN.chain_id, DOMAIN.verifying_contract)
    with pytest.raises(UnknownChannel):
        network.receive(ADDRESS_B, body(announcement(cid_de, KEY_C, ADDRESS_C, 100, 1, 1)))
    network.note_event(opened(de, block=6))
    assert network.graph.fee_policy(cid_de, ADDRESS_C) is None
