"""Peer authentication and admission: every peer request is signed by the channel's counterparty, fresh,
for this node, chain and contract, and used once; strangers get nothing and pay for what they try; an
announce sets only a known channel's URL, from its other participant, newest first; a node restored from
its store countersigns nothing before it has synced; budgets answer 429 before a body is read.

The victim is B's in-process node (no chain: any chain call would fail); the other side talks raw HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paychan.node import auth
from paychan.node.auth import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    TIMESTAMP_HEADER,
    Limits,
    PeerGate,
    RateLimited,
    ReplayGuard,
    TokenBucket,
    Unauthenticated,
    now_ms,
    read_claim,
    request_digest,
    sign_request,
)
from paychan.node.messages import Announce, TurnMessage
from paychan.node.server import Node, serve, write_control_file
from paychan.node.store import Store
from paychan.signing import Domain
from paychan.state import ChannelParams, SignedState, channel_id

from .conftest import (
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    CID,
    DEPOSIT_A,
    DOMAIN,
    KEY_A,
    KEY_B,
    KEY_C,
    PARAMS,
    LiveNode,
    free_port,
    make_state,
    start_live_node,
)
from .test_hostile_peer import proposal, propose_body

TIMEOUT = 1.0  # the victim's body and header timeouts in these tests
LATEST = f"/peer/channels/0x{CID.hex()}/latest"
NOT_SIGNED = "the request is not signed (Paychan-Signer/-Timestamp/-Signature headers)"
MALFORMED = "malformed authentication headers"


# --- helpers ----------------------------------------------------------------------------------------------


def signed_headers(
    path: str,
    body: bytes = b"",
    key: bytes = KEY_A,
    method: str = "POST",
    recipient: str = ADDRESS_B,
    domain: Domain = DOMAIN,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    return sign_request(domain, key, recipient, method, path, body, timestamp_ms)


def announce_body(url: str, params: ChannelParams = PARAMS) -> bytes:
    return json.dumps(Announce(params, url, DOMAIN.chain_id, DOMAIN.verifying_contract).to_json()).encode()


def turn_body(epoch: int = 0, key: bytes = KEY_A) -> bytes:
    return json.dumps(TurnMessage.create(DOMAIN, CID, epoch, key).to_json()).encode()


async def send(
    victim: LiveNode, path: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One raw request; ``headers`` are the authentication headers (None: unsigned)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, victim.peer_url + path, data=body, headers=all_headers) as r:
            return r.status, await r.json(), dict(r.headers)


async def send_signed(
    victim: LiveNode, path: str, body: bytes = b"", key: bytes = KEY_A, method: str = "POST", **signing: Any
) -> tuple[int, dict[str, Any]]:
    status, answer, _ = await send(victim, path, body, signed_headers(path, body, key, method, **signing), method)
    return status, answer


async def expect_refused(
    victim: LiveNode,
    path: str,
    body: bytes,
    headers: dict[str, str] | None,
    status: int,
    error: str,
    message: str | None = None,
    method: str = "POST",
) -> dict[str, Any]:
    """Sends the request, checks the exact status and error type (and message), and that nothing changed."""
    before = victim.snapshot()
    peer_url = victim.node.store.channel(CID).peer_url  # type: ignore[union-attr]
    got_status, answer, _ = await send(victim, path, body, headers, method)
    assert (got_status, answer["error"]["type"]) == (status, error), answer
    if message is not None:
        assert answer["error"]["message"] == message
    assert "states" not in answer and "state" not in answer
    assert victim.snapshot() == before
    assert victim.node.store.channel(CID).peer_url == peer_url  # type: ignore[union-attr]
    return answer


async def pay_twice(victim: LiveNode) -> None:
    """A's signed proposals at nonces 1 and 2, countersigned."""
    for nonce in (1, 2):
        body = propose_body(proposal(make_state(nonce, DEPOSIT_A - 10 * nonce, 10 * nonce)))
        status, answer = await send_signed(victim, "/peer/propose", body)
        assert status == 200, answer


async def start_victim(db: Path, limits: Limits | None = None, peer_port: int | None = None) -> LiveNode:
    """B's node as ``start_live_node`` builds it, with admission ``limits`` of the test's choosing."""
    store = Store(db)
    node = Node(store, KEY_B, DOMAIN, body_timeout=TIMEOUT, payment_timeout=5.0, limits=limits)
    node.add_discovered(PARAMS)
    node.note_deposits(CID, DEPOSIT_A, 0)
    store.set_peer_url(CID, f"http://127.0.0.1:{peer_port or free_port()}", 1)
    node.runtimes[CID].record = store.channel(CID)  # type: ignore[assignment]
    peer_runner, control_runner, peer_url, control_url = await serve(
        node, "127.0.0.1", free_port(), keepalive_timeout=TIMEOUT
    )
    return LiveNode(node, (peer_runner, control_runner), peer_url, control_url)


def run_against_victim(
    tmp_path: Path, attack: Callable[[LiveNode], Awaitable[None]], limits: Limits | None = None, then_pay: bool = True
) -> None:
    """Starts B's node, lets A pay twice (nonce 2), runs ``attack``, then (``then_pay``) checks B still
    countersigns A's next payment."""

    async def scenario() -> None:
        victim = await start_victim(tmp_path / "b.db", limits)
        try:
            await pay_twice(victim)
            await attack(victim)
            if not then_pay:
                return
            body = propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30)))
            status, answer = await send_signed(victim, "/peer/propose", body)
            assert status == 200 and answer["states"][0]["state"]["nonce"] == 3, answer
        finally:
            await victim.stop()

    asyncio.run(scenario())


NEXT = propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30)))  # A's next payment, by itself valid


# --- 1. unsigned and malformed requests -------------------------------------------------------------------


def test_unsigned_propose_turn_announce_and_latest_requests_are_refused_as_unauthenticated(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        await expect_refused(victim, "/peer/propose", NEXT, None, 401, "Unauthenticated", NOT_SIGNED)
        await expect_refused(victim, "/peer/turn", turn_body(), None, 401, "Unauthenticated", NOT_SIGNED)
        body = announce_body("http://127.0.0.1:9")
        await expect_refused(victim, "/peer/channels", body, None, 401, "Unauthenticated", NOT_SIGNED)
        await expect_refused(victim, LATEST, b"", None, 401, "Unauthenticated", NOT_SIGNED, method="GET")

    run_against_victim(tmp_path, attack)


def test_malformed_authentication_headers_are_refused_as_unauthenticated(tmp_path: Path) -> None:
    good = signed_headers("/peer/propose", NEXT)
    variants = [
        {**good, SIGNER_HEADER: "0x1234"},  # not an address
        {**good, SIGNER_HEADER: ADDRESS_A[2:]},  # no 0x
        {**good, SIGNATURE_HEADER: good[SIGNATURE_HEADER] + "1b"},  # 65 bytes, not compact
        {**good, SIGNATURE_HEADER: good[SIGNATURE_HEADER][:-2]},  # 63 bytes
        {**good, TIMESTAMP_HEADER: "12a4"},  # not a number
        {**good, TIMESTAMP_HEADER: "-" + good[TIMESTAMP_HEADER]},
        {SIGNER_HEADER: ADDRESS_A},  # the other two missing
    ]

    async def attack(victim: LiveNode) -> None:
        for headers in variants:
            await expect_refused(victim, "/peer/propose", NEXT, headers, 401, "Unauthenticated", MALFORMED)

    run_against_victim(tmp_path, attack)


# --- 2. signatures that do not cover this request ---------------------------------------------------------


def test_a_request_signed_by_c_but_claiming_to_be_a_is_refused(tmp_path: Path) -> None:
    forged = {**signed_headers("/peer/propose", NEXT, KEY_C), SIGNER_HEADER: ADDRESS_A}

    async def attack(victim: LiveNode) -> None:
        message = f"the request is not signed by {ADDRESS_A}"
        await expect_refused(victim, "/peer/propose", NEXT, forged, 401, "Unauthenticated", message)

    run_against_victim(tmp_path, attack)


def test_a_request_whose_body_was_altered_after_signing_is_refused(tmp_path: Path) -> None:
    headers = signed_headers("/peer/propose", NEXT)
    altered = propose_body(proposal(make_state(3, DEPOSIT_A - 31, 31)))
    also_path = signed_headers("/peer/turn", NEXT)  # the same body, signed for another path

    async def attack(victim: LiveNode) -> None:
        message = f"the request is not signed by {ADDRESS_A}"
        await expect_refused(victim, "/peer/propose", altered, headers, 401, "Unauthenticated", message)
        await expect_refused(victim, "/peer/propose", NEXT, also_path, 401, "Unauthenticated", message)

    run_against_victim(tmp_path, attack)


def test_a_request_signed_for_another_recipient_or_domain_is_refused(tmp_path: Path) -> None:
    other_contract = Domain(DOMAIN.chain_id, "0x" + "11" * 20)
    other_chain = Domain(1, DOMAIN.verifying_contract)
    elsewhere = [
        signed_headers("/peer/propose", NEXT, recipient=ADDRESS_C),
        signed_headers("/peer/propose", NEXT, domain=other_contract),
        signed_headers("/peer/propose", NEXT, domain=other_chain),
    ]

    async def attack(victim: LiveNode) -> None:
        message = f"the request is not signed by {ADDRESS_A}"
        for headers in elsewhere:
            await expect_refused(victim, "/peer/propose", NEXT, headers, 401, "Unauthenticated", message)

    run_against_victim(tmp_path, attack)


def test_a_request_signed_more_than_a_minute_ago_or_ahead_is_refused(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        for skew in (-61_000, 61_000):
            timestamp = now_ms() + skew
            headers = signed_headers("/peer/propose", NEXT, timestamp_ms=timestamp)
            answer = await expect_refused(victim, "/peer/propose", NEXT, headers, 401, "Unauthenticated")
            assert answer["error"]["message"].startswith(f"request timestamp {timestamp} is more than 60000 ms from ")
        # within the minute, either way, is fine
        for skew in (-50_000, 50_000):
            body = propose_body(proposal(make_state(2, DEPOSIT_A - 20, 20)))  # a re-sent, answered proposal
            status, answer = await send_signed(victim, "/peer/propose", body, timestamp_ms=now_ms() + skew)
            assert status == 200, answer

    run_against_victim(tmp_path, attack)


# --- 3. replays -------------------------------------------------------------------------------------------


def test_the_same_signed_request_sent_twice_is_refused_the_second_time(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        resent = propose_body(proposal(make_state(2, DEPOSIT_A - 20, 20)))
        headers = signed_headers("/peer/propose", resent)
        before = victim.snapshot()
        status, answer, _ = await send(victim, "/peer/propose", resent, headers)
        assert status == 200, answer
        assert answer["states"] == [SignedState.to_json(victim.channel.latest)]
        await expect_refused(victim, "/peer/propose", resent, headers, 401, "Unauthenticated", "request replayed")
        # the same proposal under a fresh signature still gets the stored countersignature (idempotent)
        status, answer = await send_signed(victim, "/peer/propose", resent)
        assert status == 200 and answer["states"] == [SignedState.to_json(victim.channel.latest)]
        assert victim.snapshot() == before

    run_against_victim(tmp_path, attack)


# --- 4. only the counterparty ---------------------------------------------------------------------------


def test_a_strangers_valid_signature_on_a_proposal_is_refused_as_not_counterparty(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        fields = {"signer": ADDRESS_C, "expected": ADDRESS_A}
        for body in (NEXT, propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30), KEY_C))):
            headers = signed_headers("/peer/propose", body, KEY_C)
            answer = await expect_refused(victim, "/peer/propose", body, headers, 403, "NotCounterparty")
            assert answer["error"]["fields"] == fields
        headers = signed_headers("/peer/turn", turn_body(10, KEY_C), KEY_C)
        answer = await expect_refused(victim, "/peer/turn", turn_body(10, KEY_C), headers, 403, "NotCounterparty")
        assert answer["error"]["fields"] == fields
        assert victim.node.store.channel(CID).turn_epoch == 0  # type: ignore[union-attr]

    run_against_victim(tmp_path, attack)


def test_only_the_counterparty_gets_the_latest_state(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        headers = signed_headers(LATEST, key=KEY_C, method="GET")
        answer = await expect_refused(victim, LATEST, b"", headers, 403, "NotCounterparty", method="GET")
        assert answer["error"]["fields"] == {"signer": ADDRESS_C, "expected": ADDRESS_A}
        latest = SignedState.to_json(victim.channel.latest)
        assert str(latest["sigA"]) not in json.dumps(answer) and str(latest["sigB"]) not in json.dumps(answer)
        await expect_refused(victim, LATEST, b"", None, 401, "Unauthenticated", NOT_SIGNED, method="GET")
        status, answer = await send_signed(victim, LATEST, method="GET")
        assert (status, answer) == (200, {"type": "latest", "state": latest, "locks": []})
        assert answer["state"]["state"]["nonce"] == 2

    run_against_victim(tmp_path, attack)


# --- 5. announce --------------------------------------------------------------------------------------------


def peer_urls(victim: LiveNode) -> tuple[str, str]:
    """The channel's peer URL in the store and in memory."""
    return victim.node.store.channel(CID).peer_url, victim.node.runtimes[CID].record.peer_url  # type: ignore[union-attr]


def test_a_strangers_announce_does_not_choose_the_channels_peer_url(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        before = peer_urls(victim)
        body = announce_body("http://evil.example:1")
        headers = signed_headers("/peer/channels", body, KEY_C)
        answer = await expect_refused(victim, "/peer/channels", body, headers, 403, "NotCounterparty")
        assert answer["error"]["fields"] == {"signer": ADDRESS_C, "expected": ADDRESS_A}
        assert peer_urls(victim) == before

    run_against_victim(tmp_path, attack)


def test_the_counterpartys_newest_announce_sets_the_peer_url(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        t = now_ms()
        status, answer = await send_signed(
            victim, "/peer/channels", announce_body("http://a.example:2"), timestamp_ms=t
        )
        expected = {"type": "announced", "channelId": "0x" + CID.hex(), "peerUrl": "http://a.example:2"}
        assert (status, answer) == (200, expected)
        assert peer_urls(victim) == ("http://a.example:2", "http://a.example:2")
        # older, or as old: answered with the URL kept
        for older in (t - 1000, t):
            body = announce_body("http://a.example:1")
            status, answer = await send_signed(victim, "/peer/channels", body, timestamp_ms=older)
            assert (status, answer["peerUrl"]) == (200, "http://a.example:2")
            assert peer_urls(victim) == ("http://a.example:2", "http://a.example:2")
        status, answer = await send_signed(
            victim, "/peer/channels", announce_body("http://a.example:3"), timestamp_ms=t + 1
        )
        assert (status, answer["peerUrl"]) == (200, "http://a.example:3")
        assert peer_urls(victim) == ("http://a.example:3", "http://a.example:3")
        assert victim.node.store.channel(CID).peer_url_at == t + 1  # type: ignore[union-attr]

    run_against_victim(tmp_path, attack)


def test_an_announce_of_a_channel_the_node_does_not_know_stores_nothing(tmp_path: Path) -> None:
    unknown_ab = ChannelParams(ADDRESS_A, ADDRESS_B, PARAMS.asset, 3600, 99)
    unknown_cb = ChannelParams(ADDRESS_C, ADDRESS_B, PARAMS.asset, 3600, 99)

    async def attack(victim: LiveNode) -> None:
        channels = victim.node.store.channels()
        for params, key in ((unknown_ab, KEY_A), (unknown_cb, KEY_C)):
            cid = channel_id(params, DOMAIN.chain_id, DOMAIN.verifying_contract)
            body = announce_body("http://a.example:2", params)
            headers = signed_headers("/peer/channels", body, key)
            message = f"channel 0x{cid.hex()} not seen on chain yet; announce it again once it is mined"
            await expect_refused(victim, "/peer/channels", body, headers, 404, "UnknownChannel", message)
            assert victim.node.store.channel(cid) is None and cid not in victim.node.runtimes
        assert victim.node.store.channels() == channels and list(victim.node.runtimes) == [CID]

    run_against_victim(tmp_path, attack)


# --- 6. a restored node syncs before it countersigns ------------------------------------------------------


def test_a_node_restored_from_its_store_countersigns_nothing_before_it_has_synced(tmp_path: Path) -> None:
    async def scenario() -> None:
        dead_port = free_port()  # nothing listens there: the restored node cannot sync
        first = await start_live_node(tmp_path / "b.db", KEY_B, "B", free_port(), dead_port, TIMEOUT, TIMEOUT)
        try:
            await pay_twice(first)
        finally:
            await first.stop()
        victim = await start_live_node(tmp_path / "b.db", KEY_B, "B", free_port(), dead_port, TIMEOUT, TIMEOUT)
        try:
            assert CID in victim.node._unsynced
            assert len(victim.node.store.states(CID)) == 2
            message = f"NotSynced(channelId=0x{CID.hex()}): retry once this node has synced"
            for body in (NEXT, NEXT, propose_body(proposal(make_state(3, DEPOSIT_A - 35, 35)))):  # then re-sent
                headers = signed_headers("/peer/propose", body)
                answer = await expect_refused(victim, "/peer/propose", body, headers, 409, "NotSynced", message)
                assert answer["error"]["fields"] == {"channel_id": "0x" + CID.hex()}  # snake_case, unlike the others
                assert len(victim.node.store.states(CID)) == 2
            # The exact re-send of nonce 2 (already countersigned) is refused too: the node checks sync
            # before looking anything up. Safe: refusing signs nothing, and A still holds B's signature of
            # nonce 2 from the first answer (or re-sends it once B has synced, and gets it then).
            resent = propose_body(proposal(make_state(2, DEPOSIT_A - 20, 20)))
            headers = signed_headers("/peer/propose", resent)
            await expect_refused(victim, "/peer/propose", resent, headers, 409, "NotSynced", message)
            assert len(victim.node.store.states(CID)) == 2 and CID in victim.node._unsynced
        finally:
            await victim.stop()

    asyncio.run(scenario())


# --- 7. budgets ---------------------------------------------------------------------------------------------


def test_a_strangers_burst_is_rate_limited_while_the_counterparty_is_still_served(tmp_path: Path) -> None:
    limits = Limits(stranger_requests_per_s=0.5, stranger_burst=3)

    async def attack(victim: LiveNode) -> None:
        for _ in range(3):
            await expect_refused(victim, "/peer/propose", NEXT, None, 401, "Unauthenticated", NOT_SIGNED)
        before = victim.snapshot()
        status, answer, headers = await send(victim, "/peer/propose", NEXT)
        assert (status, answer["error"]["type"]) == (429, "RateLimited"), answer
        assert answer["error"]["message"].startswith("too many requests from 127.0.0.1; retry in ")
        assert headers["Retry-After"] == "2"  # about 2 s for the next token
        # a stranger's valid signature draws on the same budget
        c_headers = signed_headers("/peer/propose", NEXT, KEY_C)
        await expect_refused(victim, "/peer/propose", NEXT, c_headers, 429, "RateLimited")
        assert victim.snapshot() == before and victim.node.gate.refused == 2
        # meanwhile A's own proposal is countersigned (the run's last step: nonce 3)

    run_against_victim(tmp_path, attack, limits)


def test_the_counterpartys_own_burst_is_rate_limited_and_recovers_after_the_refill(tmp_path: Path) -> None:
    limits = Limits(peer_requests_per_s=10, peer_burst=4)

    async def attack(victim: LiveNode) -> None:
        await asyncio.sleep(0.5)  # the two payments of the setup are refilled
        for _ in range(4):
            status, _answer = await send_signed(victim, LATEST, method="GET")
            assert status == 200
        before = victim.snapshot()
        status, answer, headers = await send(victim, LATEST, b"", signed_headers(LATEST, method="GET"), "GET")
        assert (status, answer["error"]["type"]) == (429, "RateLimited"), answer
        assert answer["error"]["message"].startswith(f"too many requests from {ADDRESS_A}; retry in ")
        assert headers["Retry-After"] == "1"
        assert "state" not in answer and victim.snapshot() == before
        await asyncio.sleep(0.15)  # one token back at 10 a second
        status, answer = await send_signed(victim, LATEST, method="GET")
        assert (status, answer["state"]["state"]["nonce"]) == (200, 2)
        await asyncio.sleep(0.5)  # for the run's last payment

    run_against_victim(tmp_path, attack, limits)


# A forger claiming ``Paychan-Signer: A`` draws on its address's budget for forgeries: it cannot make the node
# read bodies of up to MAX_BODY_BYTES and recover signatures without limit. (A's own requests from the
# forger's address are refused with it until the budget refills: no honest payment follows here.)
def test_forged_requests_claiming_to_be_the_counterparty_are_rate_limited(tmp_path: Path) -> None:
    limits = Limits(stranger_requests_per_s=0.5, stranger_burst=3)

    async def attack(victim: LiveNode) -> None:
        statuses = []
        for _ in range(6):
            forged = {**signed_headers("/peer/propose", NEXT, KEY_C), SIGNER_HEADER: ADDRESS_A}
            status, answer, _ = await send(victim, "/peer/propose", NEXT, forged)
            statuses.append((status, answer["error"]["type"]))
        assert statuses == [(401, "Unauthenticated")] * 3 + [(429, "RateLimited")] * 3

    run_against_victim(tmp_path, attack, limits, then_pay=False)


def test_a_token_bucket_spends_refills_up_to_its_burst_and_says_when_to_retry() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=100.0)
    for _ in range(3):
        assert bucket.available(100.0)
        bucket.take(100.0)
    assert not bucket.available(100.0)
    assert bucket.retry_after() == pytest.approx(0.5)
    assert not bucket.available(100.25) and bucket.retry_after() == pytest.approx(0.25)
    assert bucket.available(100.5)
    assert bucket.available(1000.0) and bucket.tokens == 3.0  # never more than the burst
    bucket.take(1000.0, cost=5.0)  # a big request: the balance goes negative, the next ones wait
    assert bucket.tokens == -2.0 and bucket.retry_after() == pytest.approx(1.5)
    assert not bucket.available(1001.0) and bucket.available(1001.5)


def test_the_peer_gate_keeps_separate_budgets_for_counterparties_and_strangers_ip_addresses() -> None:
    clock = [0.0]
    limits = Limits(
        peer_requests_per_s=10, peer_burst=2, peer_states_per_s=100, stranger_requests_per_s=1, stranger_burst=2,
        tracked=2,
    )  # fmt: skip
    gate = PeerGate(limits, clock=lambda: clock[0])
    for _ in range(2):
        gate.admit_stranger("10.0.0.1")
        gate.charge_stranger("10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        gate.admit_stranger("10.0.0.1")
    assert (refused.value.who, refused.value.retry_after) == ("10.0.0.1", 1.0)
    assert str(refused.value) == "too many requests from 10.0.0.1; retry in 1.00s"
    gate.admit_stranger("10.0.0.2")  # another address, its own budget
    gate.admit_peer(ADDRESS_A, "10.0.0.9")  # the counterparty, its own budget
    gate.charge_peer(ADDRESS_A, states=10)  # 1 + 10 states x 10/100
    with pytest.raises(RateLimited) as refused:
        gate.admit_peer(ADDRESS_A, "10.0.0.9")
    assert refused.value.who == ADDRESS_A and refused.value.retry_after == pytest.approx(0.1)
    assert gate.refused == 2
    clock[0] = 0.1
    gate.admit_peer(ADDRESS_A, "10.0.0.9")
    clock[0] = 1.0
    gate.admit_stranger("10.0.0.1")  # refilled
    # only ``tracked`` addresses are remembered: the least recently used is forgotten, with its debt
    for _ in range(2):
        gate.charge_stranger("10.0.0.1")
    with pytest.raises(RateLimited):
        gate.admit_stranger("10.0.0.1")
    gate.admit_stranger("10.0.0.2")
    gate.admit_stranger("10.0.0.3")  # 10.0.0.1 is dropped
    gate.admit_stranger("10.0.0.1")  # a fresh bucket


def test_the_replay_guard_forgets_a_digest_once_it_expires_or_past_its_capacity() -> None:
    guard = ReplayGuard(max_skew_ms=1000, capacity=2)
    guard.check_and_remember(b"1" * 32, 0, now=0)
    with pytest.raises(Unauthenticated, match="^request replayed$"):
        guard.check_and_remember(b"1" * 32, 0, now=1000)  # expires at timestamp + skew, inclusive
    guard.check_and_remember(b"1" * 32, 0, now=1001)  # forgotten: by now the timestamp alone refuses it
    assert len(guard) == 1
    guard.check_and_remember(b"2" * 32, 1001, now=1001)
    guard.check_and_remember(b"3" * 32, 1001, now=1001)  # at capacity: the oldest (1) goes
    assert len(guard) == 2
    with pytest.raises(Unauthenticated, match="^request replayed$"):
        guard.check_and_remember(b"3" * 32, 1001, now=1001)
    guard.check_and_remember(b"1" * 32, 1001, now=1001)  # forgotten past the capacity: accepted again
    assert len(guard) == 2
    # a future timestamp is remembered until it is stale itself
    guard = ReplayGuard(max_skew_ms=1000)
    guard.check_and_remember(b"4" * 32, 5000, now=4500)
    with pytest.raises(Unauthenticated, match="^request replayed$"):
        guard.check_and_remember(b"4" * 32, 5000, now=6000)


def test_read_claim_refuses_what_the_middleware_would_and_returns_the_claim() -> None:
    headers = signed_headers("/peer/propose", NEXT, timestamp_ms=10_000)
    claim = read_claim(headers, now=70_000)
    assert (claim.signer, claim.timestamp_ms) == (ADDRESS_A, 10_000)
    digest = claim.verify(DOMAIN, ADDRESS_B, "post", "/peer/propose", NEXT)
    assert digest == request_digest(DOMAIN, ADDRESS_B, "POST", "/peer/propose", 10_000, NEXT)
    with pytest.raises(Unauthenticated, match="^request timestamp 10000 is more than 60000 ms from 70001$"):
        read_claim(headers, now=70_001)
    lowercase = read_claim({**headers, SIGNER_HEADER: ADDRESS_A.lower()}, now=10_000)
    assert lowercase.signer == ADDRESS_A
    with pytest.raises(Unauthenticated, match=f"^the request is not signed by {ADDRESS_A}$"):
        claim.verify(DOMAIN, ADDRESS_B, "POST", "/peer/turn", NEXT)


# Freshness is checked when the headers arrive (``read_claim``) and the replay guard is consulted after the
# body has been read, with the time of that check (``Claim.checked_at``): a captured request re-sent 59 s
# after it was signed, with its body held back for 2 s (the body timeout allows 5 s), passes the freshness
# check and still finds its digest remembered.
def test_a_replay_whose_body_arrives_late_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = now_ms()
    clock = [t]
    monkeypatch.setattr(auth, "now_ms", lambda: clock[0])

    async def attack(victim: LiveNode) -> None:
        body = announce_body("http://a.example:2")
        headers = signed_headers("/peer/channels", body, timestamp_ms=t)
        status, _answer, _ = await send(victim, "/peer/channels", body, headers)
        assert status == 200
        clock[0] = t + 59_000
        reader, writer = await asyncio.open_connection("127.0.0.1", int(victim.peer_url.rsplit(":", 1)[1]))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST /peer/channels HTTP/1.1\r\nHost: x\r\n{head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the headers are checked: fresh
        clock[0] = t + 61_000  # the body comes 2 s later
        writer.write(body)
        answer = await asyncio.wait_for(reader.read(), 5 * TIMEOUT)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401") and b"request replayed" in answer, answer[:200]
        clock[0] = now_ms()

    run_against_victim(tmp_path, attack)


# --- 8. strangers' bodies ---------------------------------------------------------------------------------


def test_a_strangers_body_over_its_limit_is_refused_before_it_is_parsed_or_verified(tmp_path: Path) -> None:
    limits = Limits(stranger_body_bytes=1024)
    big = b" " * 1025

    async def attack(victim: LiveNode) -> None:
        for headers in (
            signed_headers("/peer/channels", big, KEY_C),  # a valid signature
            signed_headers("/peer/channels", b"{}", KEY_C),  # one that does not match the body
        ):
            await expect_refused(victim, "/peer/channels", big, headers, 413, "HTTPRequestEntityTooLarge")
        # without a Content-Length (chunked), the limit applies while reading
        before = victim.snapshot()

        async def chunks() -> Any:
            for _ in range(4):
                yield b" " * 512

        headers = {"Content-Type": "application/json", **signed_headers("/peer/channels", b" " * 2048, KEY_C)}
        async with aiohttp.ClientSession() as session:
            async with session.post(victim.peer_url + "/peer/channels", data=chunks(), headers=headers) as r:
                assert (r.status, (await r.json())["error"]["type"]) == (413, "HTTPRequestEntityTooLarge")
        assert victim.snapshot() == before
        # the counterparty's body of that size is read (and then refused for what it says)
        status, answer = await send_signed(victim, "/peer/channels", big)
        assert (status, answer["error"]["type"]) == (400, "MalformedMessage")

    run_against_victim(tmp_path, attack, limits)


# --- 9. the control file --------------------------------------------------------------------------------


def test_the_control_file_is_created_with_mode_0600_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    path = write_control_file(tmp_path / "node.db", {"token": "t1", "url": "http://127.0.0.1:1"})
    assert path == tmp_path / "node.db.control.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"token": "t1", "url": "http://127.0.0.1:1"}
    path.chmod(0o644)  # written again: replaced by a new file, 0600 again
    write_control_file(tmp_path / "node.db", {"token": "t2"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and json.loads(path.read_text()) == {"token": "t2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.db.control.json"]


def test_the_control_file_does_not_follow_a_symlink_planted_at_its_path(tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    target.chmod(0o644)
    path = tmp_path / "node.db.control.json"
    path.symlink_to(target)
    write_control_file(tmp_path / "node.db", {"token": "secret"})
    assert not path.is_symlink() and stat.S_ISREG(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"token": "secret"}
    assert target.read_text() == "precious" and stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.db.control.json", "victim.txt"]


def test_a_control_file_that_cannot_be_replaced_leaves_no_temporary_file(tmp_path: Path) -> None:
    blocker = tmp_path / "node.db.control.json"
    blocker.mkdir()
    (blocker / "keep").write_text("x")  # a non-empty directory: the rename fails
    with pytest.raises(OSError):
        write_control_file(tmp_path / "node.db", {"token": "secret"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.db.control.json"]
    assert blocker.is_dir() and (blocker / "keep").read_text() == "x"
