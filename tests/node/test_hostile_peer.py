"""A hostile or buggy peer gets a clear error answer and changes nothing: not the channel in memory, not the
store on disk, not the turn. The victim is B's node; the attacker holds A's key (or not) and talks raw HTTP,
signing its requests with A's key (``paychan.node.auth``) unless a test says otherwise."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paychan.node.auth import sign_request
from paychan.node.messages import MAX_BODY_BYTES, Propose, TurnMessage, parse_turn
from paychan.node.turn import TurnState
from paychan.signing import sign_state
from paychan.state import ChannelState, SignedState

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
    LiveNode,
    free_port,
    make_state,
    start_live_node,
)

TIMEOUT = 1.0  # the victim's body and header timeouts in these tests


def proposal(state: ChannelState, key: bytes = KEY_A) -> SignedState:
    return SignedState(state, sign_state(DOMAIN, state, key), None)


def propose_body(*states: SignedState, cid: bytes = CID, epoch: int = 0) -> bytes:
    return json.dumps(Propose(cid, epoch, list(states)).to_json()).encode()  # type: ignore[arg-type]


def auth_headers(victim: LiveNode, body: bytes, path: str = "/peer/propose", key: bytes = KEY_A) -> dict[str, str]:
    return {"Content-Type": "application/json", **sign_request(DOMAIN, key, ADDRESS_B, "POST", path, body)}


async def post(
    victim: LiveNode, body: bytes, path: str = "/peer/propose", key: bytes | None = KEY_A
) -> tuple[int, dict[str, Any]]:
    """POSTs ``body``, signed with ``key`` (None: unsigned)."""
    headers = {"Content-Type": "application/json"} if key is None else auth_headers(victim, body, path, key)
    async with aiohttp.ClientSession() as session:
        async with session.post(victim.peer_url + path, data=body, headers=headers) as r:
            return r.status, await r.json()


def run_against_victim(tmp_path: Path, attack: Callable[[LiveNode], Awaitable[None]]) -> None:
    """Starts B's node, lets A pay twice (nonce 2), runs ``attack``, then checks B still works."""

    async def scenario() -> None:
        victim = await start_live_node(
            tmp_path / "b.db", KEY_B, "B", free_port(), free_port(), body_timeout=TIMEOUT, keepalive=TIMEOUT
        )
        try:
            for nonce in (1, 2):
                status, answer = await post(
                    victim, propose_body(proposal(make_state(nonce, DEPOSIT_A - 10 * nonce, 10 * nonce)))
                )
                assert status == 200, answer
            await attack(victim)
            # still healthy: the next honest payment is countersigned
            status, answer = await post(victim, propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30))))
            assert status == 200 and answer["states"][0]["state"]["nonce"] == 3
        finally:
            await victim.stop()

    asyncio.run(scenario())


async def expect_refusal(
    victim: LiveNode, body: bytes, status: int, error: str, fields: dict[str, Any] | None = None
) -> None:
    before = victim.snapshot()
    got_status, answer = await post(victim, body)
    assert (got_status, answer["error"]["type"]) == (status, error), answer
    if fields is not None:
        assert answer["error"]["fields"] == fields
    assert "states" not in answer
    assert victim.snapshot() == before


def test_a_state_signed_by_someone_else_is_refused_as_invalid_signature(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        forged = proposal(make_state(3, DEPOSIT_A - 30, 30), KEY_C)
        await expect_refusal(
            victim, propose_body(forged), 422, "InvalidSignature", {"expected": ADDRESS_A, "recovered": ADDRESS_C}
        )
        unsigned = SignedState(make_state(3, DEPOSIT_A - 30, 30))
        await expect_refusal(victim, propose_body(unsigned), 422, "InvalidSignature")

    run_against_victim(tmp_path, attack)


def test_a_replayed_nonce_with_other_balances_is_refused(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        replay = proposal(make_state(1, DEPOSIT_A - 1, 1))
        await expect_refusal(victim, propose_body(replay), 422, "UnexpectedNonce", {"received": 1, "expected": 3})

    run_against_victim(tmp_path, attack)


def test_an_exact_replay_gets_the_stored_countersignature_and_signs_nothing_new(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        before = victim.snapshot()
        status, answer = await post(victim, propose_body(proposal(make_state(2, DEPOSIT_A - 20, 20))))
        assert status == 200
        assert SignedState.to_json(victim.channel.latest) == answer["states"][0]
        assert victim.snapshot() == before

    run_against_victim(tmp_path, attack)


def test_a_skipped_nonce_is_refused(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        skip = proposal(make_state(4, DEPOSIT_A - 40, 40))
        await expect_refusal(victim, propose_body(skip), 422, "UnexpectedNonce", {"received": 4, "expected": 3})

    run_against_victim(tmp_path, attack)


def test_an_inflated_balance_is_refused(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        created = proposal(make_state(3, DEPOSIT_A - 20, 10**30))  # money from nowhere
        total = str(DEPOSIT_A)
        await expect_refusal(
            victim,
            propose_body(created),
            422,
            "BalancesNotConserved",
            {"balanceA": str(DEPOSIT_A - 20), "balanceB": str(10**30), "total": total},
        )
        robbed = proposal(make_state(3, DEPOSIT_A - 5, 5))  # the payer raising its own balance
        await expect_refusal(victim, propose_body(robbed), 422, "UnfavourableState", {"current": 20, "proposed": 5})

    run_against_victim(tmp_path, attack)


def test_a_state_of_another_channel_is_refused(tmp_path: Path) -> None:
    other = bytes(31) + b"\x01"

    async def attack(victim: LiveNode) -> None:
        foreign = proposal(make_state(3, DEPOSIT_A - 30, 30, cid=other))
        await expect_refusal(
            victim,
            propose_body(foreign),
            422,
            "WrongChannel",
            {"expected": "0x" + CID.hex(), "received": "0x" + other.hex()},
        )
        await expect_refusal(victim, propose_body(foreign, cid=other), 404, "UnknownChannel")

    run_against_victim(tmp_path, attack)


def test_garbage_json_is_refused_as_malformed(tmp_path: Path) -> None:
    good = json.loads(propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30))))

    def variant(**changes: Any) -> bytes:
        data = json.loads(json.dumps(good))
        for path, value in changes.items():
            target = data
            keys = path.split("__")
            for key in keys[:-1]:
                target = target[int(key)] if key.isdigit() else target[key]
            target[keys[-1]] = value
        return json.dumps(data).encode()

    bodies = [
        b"{not json",
        b"\xff\xfe garbage",
        b"[1, 2, 3]",
        b'{"type": "propose", "type": "propose"}',
        json.dumps(good).replace('"nonce": 3', '"nonce": 3.0').encode(),
        variant(states__0__state__balanceA="-5"),
        variant(states__0__state__balanceA=str(2**256)),
        variant(states__0__state__channelId="0x1234"),
        variant(states__0__sigA="0x" + "00" * 10),
        variant(states__0__extra=1),
        variant(states=[]),
        variant(version=99),
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ]

    async def attack(victim: LiveNode) -> None:
        for body in bodies:
            await expect_refusal(victim, body, 400, "MalformedMessage")

    run_against_victim(tmp_path, attack)


def test_a_huge_body_is_refused_unread(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        await expect_refusal(victim, b" " * (MAX_BODY_BYTES + 1), 413, "HTTPRequestEntityTooLarge")
        # without a Content-Length (chunked), the limit applies while reading
        before = victim.snapshot()

        async def chunks() -> Any:
            for _ in range(40):
                yield b" " * 65536

        async with aiohttp.ClientSession() as session:
            headers = auth_headers(victim, b" " * (40 * 65536))
            async with session.post(victim.peer_url + "/peer/propose", data=chunks(), headers=headers) as r:
                assert r.status == 413
                assert (await r.json())["error"]["type"] == "HTTPRequestEntityTooLarge"
        assert victim.snapshot() == before

    run_against_victim(tmp_path, attack)


@pytest.mark.serial  # its 1-second timeouts are timed
def test_a_slow_loris_is_cut_off_and_does_not_block_other_peers(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        before = victim.snapshot()
        host, port = "127.0.0.1", int(victim.peer_url.rsplit(":", 1)[1])
        body = propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30)))
        # 1) headers that never finish
        r1, w1 = await asyncio.open_connection(host, port)
        w1.write(b"POST /peer/propose HTTP/1.1\r\nHost: x\r\n")
        # 2) a body trickled one byte at a time
        r2, w2 = await asyncio.open_connection(host, port)
        signed = "".join(f"{k}: {v}\r\n" for k, v in auth_headers(victim, body).items())
        w2.write(
            b"POST /peer/propose HTTP/1.1\r\nHost: x\r\n"
            + signed.encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()

        async def trickle() -> None:
            for byte in body[:-1]:
                w2.write(bytes([byte]))
                await asyncio.sleep(0.2)

        trickler = asyncio.create_task(trickle())
        # meanwhile an honest peer is served at once
        status, _ = await post(victim, b"{}")
        assert status == 400 and time.monotonic() - started < TIMEOUT
        answer = await asyncio.wait_for(r2.read(), 5 * TIMEOUT)  # the answer, then the connection is closed
        trickler.cancel()
        assert answer.startswith(b"HTTP/1.1 408") and b"BodyTimeout" in answer
        assert TIMEOUT <= time.monotonic() - started < 4 * TIMEOUT
        assert await asyncio.wait_for(r1.read(), 5 * TIMEOUT) == b""  # dropped, no answer
        for writer in (w1, w2):
            writer.close()
        assert victim.snapshot() == before

    run_against_victim(tmp_path, attack)


def test_a_proposal_while_it_is_our_turn_is_refused(tmp_path: Path) -> None:
    def turn(epoch: int, key: bytes = KEY_A) -> bytes:
        return json.dumps(TurnMessage.create(DOMAIN, CID, epoch, key).to_json()).encode()  # type: ignore[arg-type]

    async def attack(victim: LiveNode) -> None:
        status, answer = await post(victim, turn(0), "/peer/turn")
        assert (status, answer["epoch"]) == (200, 0)  # B has no turn to give: epoch 0 is A's
        assert parse_turn(answer).signer(DOMAIN) == ADDRESS_B  # the answer is B's own
        victim.node.store.set_turn_epoch(CID, 1)  # as if B had asked A for the turn
        victim.node.runtimes[CID].turn = TurnState("B", 1)
        await expect_refusal(
            victim, propose_body(proposal(make_state(3, DEPOSIT_A - 30, 30))), 409, "NotYourTurn", {"epoch": 1}
        )
        status, answer = await post(victim, turn(1), "/peer/turn")
        assert (status, answer["epoch"]) == (200, 2)  # B hands the turn back, stored
        assert victim.node.store.channel(CID).turn_epoch == 2  # type: ignore[union-attr]

    run_against_victim(tmp_path, attack)


def test_a_turn_request_not_signed_by_the_peer_moves_nothing(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        before = victim.snapshot()
        forged = json.dumps(TurnMessage.create(DOMAIN, CID, 10, KEY_C).to_json()).encode()  # type: ignore[arg-type]
        status, answer = await post(victim, forged, "/peer/turn")
        assert (status, answer["error"]["type"]) == (422, "InvalidSignature")
        assert answer["error"]["fields"] == {"expected": ADDRESS_A, "recovered": ADDRESS_C}
        unsigned = json.dumps(
            {"type": "turn", "version": 1, "channelId": "0x" + CID.hex(), "epoch": 10, "signature": None}
        )
        status, answer = await post(victim, unsigned.encode(), "/peer/turn")
        assert (status, answer["error"]["type"]) == (400, "MalformedMessage")
        assert victim.snapshot() == before and victim.node.store.channel(CID).turn_epoch == 0  # type: ignore[union-attr]

    run_against_victim(tmp_path, attack)


def test_the_control_api_refuses_requests_without_the_node_token(tmp_path: Path) -> None:
    async def attack(victim: LiveNode) -> None:
        before = victim.snapshot()
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer " + "0" * 32}):
                async with session.post(victim.control_url + "/pay", json={"amount": "1"}, headers=headers) as r:
                    assert (r.status, (await r.json())["error"]["type"]) == (401, "Unauthorized")
            token = {"Authorization": f"Bearer {victim.node.control_token}"}
            async with session.get(victim.control_url + "/status", headers=token) as r:
                assert r.status == 200 and (await r.json())["channels"][0]["nonce"] == 2
        assert victim.snapshot() == before

    run_against_victim(tmp_path, attack)
