"""Two in-process nodes over loopback HTTP: payments both ways, turn passing, batching, re-delivery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from paychan.channel import MAX_LOCKS
from paychan.exceptions import TooManyLocks
from paychan.node.messages import AddLock, Propose
from paychan.signing import check_signer
from paychan.state import Lock, hashlock

from .conftest import ADDRESS_A, ADDRESS_B, CID, DEPOSIT_A, DOMAIN, KEY_A, KEY_B, LiveNode, free_port, start_live_node


async def _pair(tmp_path: Path) -> tuple[LiveNode, LiveNode]:
    port_a, port_b = free_port(), free_port()
    a = await start_live_node(tmp_path / "a.db", KEY_A, "A", port_a, port_b)
    b = await start_live_node(tmp_path / "b.db", KEY_B, "B", port_b, port_a)
    return a, b


def _assert_agree(a: LiveNode, b: LiveNode) -> None:
    assert a.channel.latest == b.channel.latest
    latest = a.channel.latest
    check_signer(DOMAIN, latest.state, latest.sig_a, ADDRESS_A)
    check_signer(DOMAIN, latest.state, latest.sig_b, ADDRESS_B)
    for node in (a, b):
        rows = node.node.store.states(CID)
        assert [r.state.nonce for r in rows] == list(range(1, latest.state.nonce + 1))


def test_payments_both_ways_end_with_both_nodes_holding_the_same_latest_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = await _pair(tmp_path)
        try:
            await a.node.pay(CID, 100, count=5)
            await b.node.pay(CID, 30)
            await a.node.pay(CID, 1)
            assert a.channel.balances() == (DEPOSIT_A - 471, 471)
            _assert_agree(a, b)
            assert a.channel.nonce == 7
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_concurrent_payments_from_both_sides_never_collide_on_a_nonce(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = await _pair(tmp_path)
        try:
            await a.node.pay(CID, 1000)  # gives B something to pay back
            tasks = [a.node.pay(CID, 3) for _ in range(40)] + [b.node.pay(CID, 2) for _ in range(40)]
            await asyncio.gather(*tasks)
            assert a.channel.balances() == (DEPOSIT_A - 1000 - 120 + 80, 1000 + 120 - 80)
            assert a.channel.nonce == 81
            _assert_agree(a, b)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_a_proposal_sent_again_after_a_lost_answer_gets_the_same_countersignature(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = await _pair(tmp_path)
        try:
            signed = await a.node.pay(CID, 10, count=3)
            before = b.snapshot()
            first = a.node.runtimes[CID]
            resend = Propose(CID, first.epoch, [first.channel.latest])
            answer = await a.node.peer.post(b.peer_url + "/peer/propose", resend.to_json(), ADDRESS_B)
            assert answer["states"] == [signed.to_json()]
            assert b.snapshot() == before
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_one_payment_at_a_time_costs_three_commits_and_each_revocation_is_stored_before_it_is_sent(
    tmp_path: Path,
) -> None:
    """Two on the payer's side (its intent with its revocation; the countersignature with the payee's
    revocation), one on the payee's (its countersignature with its revocation)."""

    async def scenario() -> None:
        a, b = await _pair(tmp_path)
        try:
            await a.node.pay(CID, 10, count=2)
            commits: dict[str, int] = {"A": 0, "B": 0}
            for name, live in (("A", a), ("B", b)):
                live.node.store.conn.set_trace_callback(
                    lambda sql, name=name: commits.__setitem__(name, commits[name] + (sql == "COMMIT"))
                )
            for _ in range(5):
                await a.node.pay(CID, 1)
            for live in (a, b):
                live.node.store.conn.set_trace_callback(None)
            assert commits == {"A": 10, "B": 5}
            nonce = a.channel.nonce
            assert nonce == 7
            # what each sent with its last message is what the other holds, and is stored by its sender
            assert b.channel.own_revocation == nonce == b.node.store.channel(CID).own_revocation  # type: ignore[union-attr]
            assert a.channel.own_revocation == nonce - 1 == a.node.store.channel(CID).own_revocation  # type: ignore[union-attr]
            assert a.node.store.channel(CID).peer_revocation == nonce  # type: ignore[union-attr]
            assert b.node.store.channel(CID).peer_revocation == nonce - 1  # type: ignore[union-attr]
            _assert_agree(a, b)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_a_mediated_lock_waits_for_room_in_a_full_channel_and_goes_once_the_peers_settle_frees_a_place(
    tmp_path: Path,
) -> None:
    """A payer that completes with its own unlock may start payments faster than the hops after it settle: a
    lock of a mediated transfer (``queue_op``) waits in a channel holding ``MAX_LOCKS`` locks instead of being
    refused, and goes once the peer's settle of one makes room; ``paychan lock add`` is refused at once."""

    async def scenario() -> None:
        a, b = await _pair(tmp_path)
        now = 1_900_000_000
        for node in (a, b):
            node.node.chain_now = lambda: now  # type: ignore[method-assign]
        secrets = [bytes([n + 1]) * 32 for n in range(MAX_LOCKS + 1)]
        locks = [Lock("A", 1000, now + 1800, hashlock(secret)) for secret in secrets]
        try:
            for lock in locks[:MAX_LOCKS]:
                await asyncio.wait_for(a.node.queue_op(CID, AddLock(lock)), 10)
            assert len(a.channel.locks) == MAX_LOCKS
            with pytest.raises(TooManyLocks):  # the CLI's lock: refused, nothing signed
                await a.node.lock_op(CID, AddLock(locks[MAX_LOCKS]))
            nonce = a.channel.nonce
            waiting = a.node.queue_op(CID, AddLock(locks[MAX_LOCKS]))
            await asyncio.sleep(0.3)
            assert not waiting.done() and a.channel.nonce == nonce  # it waits: no refusal, nothing signed
            await b.node.settle_lock(CID, secrets[0])  # bob claims the first lock: a place is free
            signed = await asyncio.wait_for(waiting, 10)
            assert signed.state.nonce == nonce + 2 and len(a.channel.locks) == MAX_LOCKS
            assert a.channel.latest == b.channel.latest and locks[MAX_LOCKS] in b.channel.locks
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())
