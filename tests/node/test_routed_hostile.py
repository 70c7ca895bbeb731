"""Hostile forwards to an intermediary's node process: a counterparty with a real channel to bob (a raw key,
no node) offers him forwards that break the rules. Each is refused with its named error before anything is
signed or stored, and costs no chain call; a lock proposed on other terms than the offer bob accepted is
refused; a counterparty cannot make bob hold more than ``MAX_LIVE_PER_PEER`` live payments.

    mallory (raw key) - bob - carol - dave    (bob charges 1000 wei + 100 ppm, carol 2000 wei + 150 ppm)
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account

from paychan.chain import rpc_chain
from paychan.channel import Channel
from paychan.contract import PaychanContract
from paychan.node.messages import AddLock, Propose
from paychan.node.transfers import MAX_LIVE_PER_PEER
from paychan.routing import EXPIRY_DELTA
from paychan.signers import LocalKeySigner
from paychan.signing import Domain
from paychan.state import ETH, ChannelId, hashlock
from paychan.transfer.state import LockedTransfer, RouteHop

from .conftest import (
    ADDRESS_B,
    KEY_B,
    KEY_C,
    NodeProcess,
    announce_until_known,
    open_channel_by_cli,
    paychan,
    signed_request,
    wait_for,
)

KEY_D = bytes.fromhex("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")  # anvil account 4
KEY_M = bytes.fromhex("92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e")  # anvil account 6
MALLORY = Account.from_key(KEY_M).address
ETHER = 10**18
AMOUNT = 10**17


def fee(base: int, ppm: int, forwarded: int) -> int:
    return base + forwarded * ppm // 1_000_000


@pytest.fixture
def setting(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any, devnet_contract: Any
) -> dict[str, Any]:
    bob, carol, dave = (node_processes(n, k) for n, k in (("bob", KEY_B), ("carol", KEY_C), ("dave", KEY_D)))
    for node in (bob, carol, dave):
        node.start()
    bob_carol = open_channel_by_cli(capsys, bob, carol, "1ether")
    carol_dave = open_channel_by_cli(capsys, carol, dave, "1ether")
    chain = rpc_chain(devnet.url)
    contract = PaychanContract(chain, devnet_contract.address)
    params, _ = contract.open_channel(Account.from_key(KEY_M), ADDRESS_B, ETHER, ETH, 3600)
    domain = Domain(31337, devnet_contract.address)
    announce_until_known(bob.peer_url, params, KEY_M, ADDRESS_B, domain)
    for node, base, ppm in ((bob, "1000", "100"), (carol, "2000", "150")):
        wait_for(lambda node=node: len(node.control("GET", "/fees")["channels"]) == 2, f"{node.name}'s peers")
        assert paychan(capsys, "fees", "set", "--db", str(node.db), "--base", base, "--ppm", ppm)[0] == 0
    wait_for(lambda: bob.control("GET", "/fees")["graph"]["announcements"] == 4, "bob to learn carol's fees")
    return {
        "bob": bob,
        "chain": chain,
        "domain": domain,
        "params": params,
        "mallory_bob": contract.channel_id(params),
        "bob_carol": ChannelId(bob_carol),
        "carol_dave": ChannelId(carol_dave),
        "carol": Account.from_key(KEY_C).address,
        "dave": Account.from_key(KEY_D).address,
    }


def offer(s: dict[str, Any], payment_id: int, secret: bytes, **changes: int) -> LockedTransfer:
    """A forward mallory -> bob -> carol -> dave of ``AMOUNT`` that pays every fee and follows the expiry
    rule, with ``changes`` (incoming, outgoing, incoming_expiry, outgoing_expiry) applied."""
    now = int(s["chain"].now())
    carol_fee = fee(2000, 150, AMOUNT)
    outgoing = changes.get("outgoing", AMOUNT + carol_fee)
    incoming = changes.get("incoming", outgoing + fee(1000, 100, outgoing))
    payee_expiry = now + 600
    outgoing_expiry = changes.get("outgoing_expiry", payee_expiry + EXPIRY_DELTA)
    incoming_expiry = changes.get("incoming_expiry", outgoing_expiry + EXPIRY_DELTA)
    hops = (
        RouteHop(s["mallory_bob"], MALLORY, ADDRESS_B, incoming, incoming_expiry),
        RouteHop(s["bob_carol"], ADDRESS_B, s["carol"], outgoing, outgoing_expiry),
        RouteHop(s["carol_dave"], s["carol"], s["dave"], AMOUNT, payee_expiry),
    )
    return LockedTransfer(payment_id, hashlock(secret), MALLORY, s["dave"], AMOUNT, hops, 0)


def send(s: dict[str, Any], transfer: LockedTransfer | dict[str, Any]) -> dict[str, Any]:
    body = transfer.to_json() if isinstance(transfer, LockedTransfer) else transfer
    payload = {"type": "offer", "transfer": body, "initiatorUrl": "http://127.0.0.1:9"}
    return dict(signed_request(s["bob"].peer_url + "/peer/transfer", payload, KEY_M, ADDRESS_B, s["domain"]))


def refusal_name(answer: dict[str, Any]) -> str:
    assert answer["type"] == "refused", answer
    return str(answer["reason"]).split("(")[0]


def test_hostile_forwards_are_refused_with_their_named_errors_before_anything_is_signed(
    setting: dict[str, Any],
) -> None:
    s, bob = setting, setting["bob"]
    secret = b"\x11" * 32
    assert send(s, offer(s, 1, secret)) == {"type": "accepted"}

    def stored() -> list[tuple[str, str, str]]:
        return [(t["paymentId"], t["role"], t["status"]) for t in bob.control("GET", "/transfers")["transfers"]]

    # bob forwards the offer at once (it signs nothing) and carol accepts it; nothing is signed on either side
    wait_for(lambda: stored() == [("1", "mediator", "accepted/ready")], "carol to accept bob's forwarded offer")

    forwarded = AMOUNT + fee(2000, 150, AMOUNT)
    now = int(s["chain"].now())
    cases = {
        "ReplayedPayment": offer(s, 1, secret),
        "HashlockInUse": offer(s, 2, secret),
        "FeeTooLow": offer(s, 3, b"\x03" * 32, incoming=forwarded + fee(1000, 100, forwarded) - 1),
        "ExpiryDeltaTooSmall": offer(s, 4, b"\x04" * 32, incoming_expiry=now + 600 + 2 * EXPIRY_DELTA - 1),
        "ExpiryTooLate": offer(s, 5, b"\x05" * 32, outgoing_expiry=now + 2900),
        "LockExceedsCapacity": offer(s, 6, b"\x06" * 32, outgoing=2 * ETHER),
    }
    for name, transfer in cases.items():
        assert refusal_name(send(s, transfer)) == name
    # more than mallory has towards bob
    too_much = offer(s, 7, b"\x07" * 32, incoming=ETHER + 1)
    assert refusal_name(send(s, too_much)).startswith("LockExceedsCapacity")
    # malformed: refused before it is read into an offer
    bad = offer(s, 8, b"\x08" * 32).to_json()
    bad["hashlock"] = "0x1234"
    with pytest.raises(urllib.error.HTTPError) as refused:
        send(s, bad)
    assert (refused.value.code, json.loads(refused.value.read())["error"]["type"]) == (400, "MalformedMessage")
    assert len(bob.control("GET", "/transfers")["transfers"]) == 1  # nothing kept of the refused ones

    # the lock of the accepted offer, proposed on other terms (half the amount): refused, nothing signed
    channel = Channel(s["params"], s["domain"], LocalKeySigner(KEY_M), deposits=(ETHER, 0))
    accepted = offer(s, 1, secret)
    proposal, lock = channel.propose_lock(accepted.hop.amount // 2, accepted.hashlock, accepted.hop.expiry, now)
    message = Propose(s["mallory_bob"], 0, [proposal], None, (AddLock(lock),))
    with pytest.raises(urllib.error.HTTPError) as refused:
        signed_request(bob.peer_url + "/peer/propose", message.to_json(), KEY_M, ADDRESS_B, s["domain"])
    assert json.loads(refused.value.read())["error"]["type"] == "LockNotOffered"
    mine = next(c for c in bob.control("GET", "/status")["channels"] if c["counterparty"] == MALLORY)
    assert (mine["nonce"], mine["pendingLocks"], mine["balanceA"]) == (0, 0, str(ETHER))
    assert [c["nonce"] for c in bob.control("GET", "/status")["channels"]] == [0, 0]


def test_a_counterparty_cannot_make_an_intermediary_hold_more_than_its_bound_of_live_payments(
    setting: dict[str, Any],
) -> None:
    s, bob = setting, setting["bob"]
    for payment_id in range(1, MAX_LIVE_PER_PEER + 1):
        assert send(s, offer(s, payment_id, payment_id.to_bytes(32, "big"))) == {"type": "accepted"}
    one_more = offer(s, 999, (999).to_bytes(32, "big"))
    assert send(s, one_more) == {
        "type": "refused",
        "reason": f"TooManyTransfers(peer={MALLORY}, count={MAX_LIVE_PER_PEER + 1}, limit={MAX_LIVE_PER_PEER})",
    }
    assert len(bob.control("GET", "/transfers")["transfers"]) == MAX_LIVE_PER_PEER
