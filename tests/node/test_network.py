"""Four node processes on the devnet learn the channel graph from the chain and fees from each other:
alice-bob, bob-carol and carol-dave are opened, bob and carol announce fees, carol's reach alice through bob,
and ``paychan route`` on alice's node prices alice -> bob -> carol -> dave to the wei. Forged, stale and
unknown-channel announcements are refused over HTTP and change nothing; a closed channel leaves the graph."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account

from paychan.fees import FeeAnnouncement, FeeUpdate, sign_fee_update
from paychan.node.store import Store
from paychan.signing import Domain
from paychan.state import ChannelId

from .conftest import (
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    KEY_A,
    KEY_B,
    KEY_C,
    NodeProcess,
    one_error,
    open_channel_by_cli,
    paychan,
    signed_request,
    wait_for,
)

KEY_D = bytes.fromhex("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")  # anvil account 4
ADDRESS_D = Account.from_key(KEY_D).address
KEY_E = bytes.fromhex("8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba")  # anvil account 5
AMOUNT = 10**17


def fees_of(node: NodeProcess) -> dict[str, Any]:
    return dict(node.control("GET", "/fees"))


def stored_announcements(node: NodeProcess) -> list[dict[str, Any]]:
    store = Store(node.db)
    try:
        return store.fee_announcements()
    finally:
        store.close()


def fee(base: int, ppm: int, forwarded: int) -> int:
    return base + forwarded * ppm // 1_000_000


def refusal(url: str, payload: dict[str, Any], key: bytes, recipient: str, domain: Domain) -> tuple[int, Any]:
    with pytest.raises(urllib.error.HTTPError) as refused:
        signed_request(url + "/peer/fees", payload, key, recipient, domain)
    return refused.value.code, json.loads(refused.value.read())["error"]


def test_fees_announced_by_intermediaries_reach_the_payer_through_a_relay_and_price_its_routes_exactly(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: Any
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    carol, dave = node_processes("carol", KEY_C), node_processes("dave", KEY_D)
    for node in (alice, bob, carol, dave):
        node.start()
    open_channel_by_cli(capsys, alice, bob, "1ether")
    bob_carol = open_channel_by_cli(capsys, bob, carol, "1ether")
    carol_dave = open_channel_by_cli(capsys, carol, dave, "1ether")
    for node in (alice, bob, carol, dave):
        wait_for(lambda node=node: fees_of(node)["graph"]["channels"] == 3, f"{node.name}'s graph of 3 channels")
    wait_for(lambda: len(fees_of(carol)["channels"]) == 2, "carol's node to know both its peers")

    code, out, err = paychan(capsys, "fees", "set", "--db", str(bob.db), "--base", "1000wei", "--ppm", "100")
    assert code == 0, err
    assert out.count("announced 1000 wei + 100 ppm on channel") == 2  # alice-bob and bob-carol
    code, out, err = paychan(
        capsys, "fees", "set", "--db", str(carol.db), "--base", "2000", "--ppm", "150", "--channel", carol_dave.hex()
    )
    assert (code, out.count("announced 2000 wei + 150 ppm")) == (0, 1), err
    # carol sends hers to bob and dave; bob relays it to alice (its other peer), and alice to nobody new
    wait_for(lambda: fees_of(alice)["graph"]["announcements"] == 3, "alice to learn bob's two and carol's one")
    assert fees_of(alice)["announcementsAccepted"] == 3 and fees_of(bob)["announcementsAccepted"] == 1
    code, out, _ = paychan(capsys, "fees", "--db", str(bob.db))
    lines = out.splitlines()
    assert (code, lines[0], len(lines)) == (0, f"node {ADDRESS_B}", 4)
    assert sorted(line.split(": ")[0].split(" with ")[1] for line in lines[1:3]) == sorted([ADDRESS_A, ADDRESS_C])
    assert all(line.split(": ")[1].startswith("1000 wei + 100 ppm (timestamp ") for line in lines[1:3])
    assert lines[3].startswith("channel graph: 3 open channels, 3 fee announcements (1 received, 0 refused, ")

    code, out, err = paychan(capsys, "route", "--db", str(alice.db), "--to", ADDRESS_D, "0.1ether")
    assert code == 0, err
    carol_fee = fee(2000, 150, AMOUNT)
    bob_fee = fee(1000, 100, AMOUNT + carol_fee)
    assert (carol_fee, bob_fee) == (15_000_000_002_000, 10_001_500_001_000)
    sent = AMOUNT + carol_fee + bob_fee
    assert out.splitlines()[:1] + out.splitlines()[5:] == [
        f"1 route(s) to {ADDRESS_D} for 0.1 ETH ({AMOUNT} wei), cheapest first:",
        f"  fee {ADDRESS_B}: 1000 wei + {AMOUNT + carol_fee} wei * 100 / 1000000 = 1000 + {bob_fee - 1000} = "
        f"{bob_fee} wei",
        f"  fee {ADDRESS_C}: 2000 wei + {AMOUNT} wei * 150 / 1000000 = 2000 + {carol_fee - 2000} = {carol_fee} wei",
        f"  total fee {bob_fee + carol_fee} wei (0.000025001500003 ETH); the payer locks {sent} wei and the payee "
        f"receives {AMOUNT} wei",
    ]
    assert out.splitlines()[1] == f"route 1: {ADDRESS_A} -> {ADDRESS_B} -> {ADDRESS_C} -> {ADDRESS_D}"
    assert out.splitlines()[4] == f"  {ADDRESS_C} locks {AMOUNT} wei for {ADDRESS_D} on 0x{carol_dave.hex()}"
    code, out, _ = paychan(capsys, "route", "--db", str(alice.db), "--to", ADDRESS_D, "0.1ether", "--json")
    (route,) = json.loads(out)["routes"]
    assert [(h["amount"], h["fee"]) for h in route["hops"]] == [
        (str(sent), "0"),
        (str(AMOUNT + carol_fee), str(bob_fee)),
        (str(AMOUNT), str(carol_fee)),
    ]

    # hostile announcements to bob, from alice's node key (an authenticated counterparty of bob's)
    domain = Domain(31337, devnet_contract.address)
    before = stored_announcements(bob)
    held = FeeAnnouncement.from_json(next(a for a in before if a["update"]["node"] == ADDRESS_C))
    forged_sig = sign_fee_update(domain, FeeUpdate(bob_carol, ADDRESS_C, held.update.timestamp + 9, 0, 0), KEY_A)
    not_participant = sign_fee_update(domain, FeeUpdate(bob_carol, ADDRESS_A, held.update.timestamp + 9, 0, 0), KEY_A)
    unknown = sign_fee_update(
        domain, FeeUpdate(ChannelId(b"\x07" * 32), ADDRESS_A, held.update.timestamp + 9, 0, 0), KEY_A
    )
    for announcement, status, error in (
        (forged_sig, 422, "InvalidSignature"),
        (not_participant, 400, "NotParticipant"),
        (unknown, 404, "UnknownChannel"),
        (held, 400, "StaleFeeUpdate"),  # a replay of what bob holds
    ):
        code, body = refusal(bob.peer_url, {"announcements": [announcement.to_json()]}, KEY_A, ADDRESS_B, domain)
        assert (code, body["type"]) == (status, error), body
    code, body = refusal(bob.peer_url, {"announcements": [held.to_json()]}, KEY_D, ADDRESS_B, domain)
    assert (code, body["type"]) == (401, "NotAPeer")  # dave has no channel with bob
    code, body = refusal(bob.peer_url, {"announcements": [held.to_json()] * 65}, KEY_A, ADDRESS_B, domain)
    assert (code, body["type"]) == (400, "MalformedMessage")
    assert stored_announcements(bob) == before

    # carol raises her fee: the newer one replaces the held one everywhere, and the older is refused
    assert paychan(capsys, "fees", "set", "--db", str(carol.db), "--base", "3000", "--ppm", "150")[0] == 0
    wait_for(lambda: fees_of(alice)["graph"]["announcements"] == 4, "alice to learn carol's two newer announcements")
    code, body = refusal(alice.peer_url, {"announcements": [held.to_json()]}, KEY_B, ADDRESS_A, domain)
    assert (code, body["type"], body["fields"]["timestamp"]) == (400, "StaleFeeUpdate", held.update.timestamp)
    code, out, _ = paychan(capsys, "route", "--db", str(alice.db), "--to", ADDRESS_D, "0.1ether", "--json")
    assert json.loads(out)["routes"][0]["hops"][2]["fee"] == str(fee(3000, 150, AMOUNT))

    # erin joins later, with a channel to alice: alice's node hands her the four announcements it holds
    erin = node_processes("erin", KEY_E)
    erin.start()
    wait_for(lambda: fees_of(erin)["graph"]["channels"] == 3, "erin's graph of 3 channels")
    open_channel_by_cli(capsys, erin, alice, "0.1ether")
    wait_for(lambda: fees_of(erin)["graph"]["announcements"] == 4, "erin to get the announcements alice holds")
    assert fees_of(erin)["announcementsRefused"] == 0

    # bad input to the commands: one sentence each, nothing announced
    before = stored_announcements(bob)
    assert one_error(*paychan(capsys, "fees", "--db", str(bob.db), "--ppm", "5")) == (
        "--base, --ppm and --channel go with `paychan fees set`"
    )
    refused_ppm = one_error(*paychan(capsys, "fees", "set", "--db", str(bob.db), "--base", "1", "--ppm", str(2**32)))
    assert refused_ppm == f"a proportional fee is a uint32 in parts per million, not {2**32}"
    assert "to is a 0x-prefixed address" in one_error(
        *paychan(capsys, "route", "--db", str(alice.db), "--to", "0x12", "1")
    )
    assert stored_announcements(bob) == before

    # carol and dave close their channel: it leaves every graph, and with it the only route to dave
    code, _, err = paychan(capsys, "close", "--db", str(carol.db), "--channel", carol_dave.hex())
    assert code == 0, err
    wait_for(lambda: fees_of(alice)["graph"]["channels"] == 3, "alice's graph to drop the closed channel")
    assert fees_of(alice)["graph"]["announcements"] == 3
    code, out, err = paychan(capsys, "route", "--db", str(alice.db), "--to", ADDRESS_D, "0.1ether")
    assert (code, out) == (1, "")
    assert err.startswith(f"paychan: error: NoRoute(source={ADDRESS_A}, target={ADDRESS_D}, amount={AMOUNT}): ")


def test_a_node_upgraded_from_a_store_without_the_graph_reads_the_channels_it_had_watched_past_once(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: Any
) -> None:
    from paychan.chain import rpc_chain
    from paychan.contract import PaychanContract
    from paychan.node.store import MIGRATIONS, SCHEMA_VERSION

    chain = rpc_chain(devnet.url, ["0x" + KEY_C.hex()])
    contract = PaychanContract(chain, devnet_contract.address)
    params, _ = contract.open_channel(chain.accounts[0], ADDRESS_B, 3 * 10**17, challenge_period=3600)
    dave = node_processes("dave", KEY_D)
    old = Store(dave.db, migrations=MIGRATIONS[:6])  # a node of schema 6 that watched past the open
    old.set_meta("watcher.nextBlock", str(chain.w3.eth.block_number + 1))
    old.close()
    dave.start()
    wait_for(lambda: fees_of(dave)["graph"]["channels"] == 1, "dave's graph to learn the channel opened before")
    store = Store(dave.db)
    try:
        assert store.graph_channels() == [(contract.channel_id(params), params, 3 * 10**17, 0)]
        assert (store.schema_version, store.get_meta("graph.backfillTo")) == (SCHEMA_VERSION, "done")
    finally:
        store.close()
