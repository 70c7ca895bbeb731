"""Conditional payments (locks) between nodes: a lock added over the node protocol and settled off chain by
its secret, or expired back to its sender; hostile lock proposals refused with nothing changed; and, when the
sender stops, the receiver's watcher reveals the secret on chain before the lock expires, so that settling
the closed channel with the lock list pays the receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.channel import LOCK_EXPIRY_MARGIN, MIN_LOCK_TIME, Channel
from paychan.contract import PaychanContract
from paychan.exceptions import (
    DuplicateHashlock,
    LockedTotalsMismatch,
    LockExpiryOutOfRange,
    UnknownLock,
)
from paychan.node.control import ControlError
from paychan.node.messages import AddLock, Propose, SettleLock, error_body, parse_signed
from paychan.node.peer import PeerClient, PeerRefused
from paychan.node.store import read_only
from paychan.node.watcher import REVEAL_MARGIN, ContractSendSettle, decide, recorded_state, reveals
from paychan.signing import sign_state
from paychan.state import Lock, SignedState, hashlock, locks_root

from .conftest import (
    ADDRESS_B,
    CID,
    DEPOSIT_A,
    DOMAIN,
    KEY_A,
    KEY_B,
    PARAMS,
    LiveNode,
    NodeProcess,
    channel_record,
    free_port,
    make_state,
    paychan,
    sign_both,
    start_live_node,
    wait_for,
)

DEPOSIT = 10**18
LOCKED = 3 * 10**17
SECRET = bytes.fromhex("11" * 32)


def open_channel(alice: NodeProcess, bob: NodeProcess) -> bytes:
    bob.start()
    alice.start()
    opened = alice.control("POST", "/open", {"peer": bob.peer_url, "deposit": str(DEPOSIT), "challengePeriod": 3600})
    return bytes.fromhex(opened["channelId"][2:])


def known_secret(node: NodeProcess, lock_hash: bytes) -> bytes | None:
    with read_only(node.db) as conn:
        row = conn.execute("SELECT secret FROM secrets WHERE hashlock = ?", (lock_hash,)).fetchone()
    return None if row is None else bytes(row[0])


def test_a_lock_added_by_alice_is_settled_off_chain_by_bobs_secret_and_the_close_pays_it_to_bob(
    node_processes: Callable[[str, bytes], NodeProcess],
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    cid = open_channel(alice, bob)
    # bob's invoice: he keeps the secret, alice gets the hashlock
    code, out, _ = paychan(capsys, "lock", "secret", "--db", str(bob.db), "--json")
    made = json.loads(out)
    secret = bytes.fromhex(made["secret"][2:])
    assert code == 0 and made["hashlock"] == "0x" + hashlock(secret).hex()
    assert known_secret(bob, hashlock(secret)) == secret

    code, out, _ = paychan(capsys, "lock", "add", "0.3ether", made["hashlock"], "--db", str(alice.db), "--json")
    added = json.loads(out)
    (lock,) = added["locks"]
    assert code == 0 and (added["nonce"], added["myBalance"]) == (1, str(DEPOSIT - LOCKED))
    assert (lock["sender"], lock["amount"], lock["hashlock"], lock["direction"]) == (
        "A",
        str(LOCKED),
        made["hashlock"],
        "outgoing",
    )
    chain_now = devnet_contract.chain.now()
    assert chain_now < lock["expiry"] <= chain_now + 3600 - LOCK_EXPIRY_MARGIN
    wait_for(lambda: bob.status()["pendingLocks"] == 1, "bob to hold the lock")
    status = bob.status()
    assert status["locks"] == [{**lock, "direction": "incoming", "secretKnown": True, "revealedAt": None}]
    assert (status["balanceA"], status["balanceB"], status["nonce"]) == (str(DEPOSIT - LOCKED), "0", 1)
    code, out, _ = paychan(capsys, "status", "--db", str(bob.db))
    assert code == 0 and "; pending locks 1\n" in out
    code, out, _ = paychan(capsys, "lock", "list", "--db", str(bob.db))
    assert code == 0 and out == (
        f"channel 0x{cid.hex()}: pending locks 1\n"
        f"  incoming 0.3 ETH under {made['hashlock']}, expires at {lock['expiry']} (secret known)\n"
    )

    with pytest.raises(ControlError) as pending:  # a final state cannot hold a lock: nothing is signed
        alice.control("POST", "/close", {})
    assert (pending.value.type, pending.value.fields) == (
        "FinalStateHasLocks",
        {"lockedA": str(LOCKED), "lockedB": 0, "locksRoot": "0x" + locks_root((Lock.from_json(lock),)).hex()},
    )
    assert (alice.status()["nonce"], alice.status()["status"]) == (1, "open")
    code, out, _ = paychan(capsys, "lock", "settle", made["secret"], "--db", str(bob.db))
    assert code == 0 and out == f"settled: channel 0x{cid.hex()} nonce 2, my balance 0.3 ETH\npending locks 0\n"
    wait_for(lambda: alice.status()["nonce"] == 2, "alice to hold the settled state")
    status = alice.status()
    assert (status["balanceA"], status["balanceB"], status["pendingLocks"]) == (str(DEPOSIT - LOCKED), str(LOCKED), 0)
    assert known_secret(alice, hashlock(secret)) == secret  # alice learned it from bob's settlement
    code, out, _ = paychan(capsys, "status", "--db", str(alice.db))
    assert code == 0 and "; pending locks 0\n" in out

    closed = alice.control("POST", "/close", {})
    assert (closed["nonce"], closed["payoutA"], closed["payoutB"]) == (3, str(DEPOSIT - LOCKED), str(LOCKED))
    assert devnet_contract.get_channel(cid).status == 0  # type: ignore[arg-type]
    assert devnet_contract.chain.w3.eth.get_balance(devnet_contract.address) == 0


def test_a_lock_whose_secret_never_comes_is_expired_back_to_alice_once_the_chain_is_past_its_expiry(
    node_processes: Callable[[str, bytes], NodeProcess],
    devnet: Any,
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    open_channel(alice, bob)
    lock_hash = hashlock(SECRET)  # bob does not know this secret
    added = alice.control("POST", "/locks/add", {"amount": str(LOCKED), "hashlock": "0x" + lock_hash.hex()})
    expiry = added["locks"][0]["expiry"]
    wait_for(lambda: bob.status()["pendingLocks"] == 1, "bob to hold the lock")
    assert bob.status()["locks"][0]["secretKnown"] is False

    with pytest.raises(ControlError) as early:  # alice's own Channel refuses: nothing is signed
        alice.control("POST", "/locks/expire", {"hashlock": "0x" + lock_hash.hex()})
    assert early.value.type == "LockNotExpired" and early.value.fields["expiry"] == expiry
    assert early.value.fields["now"] <= expiry
    code, _, err = paychan(capsys, "lock", "expire", "0x" + lock_hash.hex(), "--db", str(alice.db))
    assert code == 1 and err.startswith(f"paychan: error: LockNotExpired(expiry={expiry}, now=")
    assert (alice.status()["nonce"], alice.status()["pendingLocks"]) == (1, 1)
    with pytest.raises(ControlError) as unknown:  # bob cannot expire alice's lock
        bob.control("POST", "/locks/expire", {"hashlock": "0x" + lock_hash.hex()})
    assert (unknown.value.type, unknown.value.fields) == ("UnknownLock", {"hashlock": "0x" + lock_hash.hex()})

    chain = rpc_chain(devnet.url)
    chain.time_travel(expiry - chain.now() + 5)
    for node in (alice, bob):  # each node's watcher reads the new block's time (locks are pending)
        wait_for(lambda n=node: n.control("GET", "/status")["chainTime"] > expiry, f"{node.name} past the expiry")
    expired = alice.control("POST", "/locks/expire", {"hashlock": "0x" + lock_hash.hex()})
    assert (expired["nonce"], expired["myBalance"], expired["locks"]) == (2, str(DEPOSIT), [])
    wait_for(lambda: bob.status()["nonce"] == 2, "bob to countersign the expiry")
    status = bob.status()
    assert (status["balanceA"], status["balanceB"], status["pendingLocks"]) == (str(DEPOSIT), "0", 0)
    closed = alice.control("POST", "/close", {})
    assert (closed["payoutA"], closed["payoutB"]) == (str(DEPOSIT), "0")


def test_when_alice_stops_after_a_lock_bob_reveals_its_secret_before_the_expiry_and_the_settlement_pays_him(
    node_processes: Callable[[str, bytes], NodeProcess], devnet: Any, devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    cid = open_channel(alice, bob)
    made = bob.control("POST", "/locks/secret", {"secret": "0x" + SECRET.hex()})
    added = alice.control("POST", "/locks/add", {"amount": str(LOCKED), "hashlock": made["hashlock"]})
    expiry = added["locks"][0]["expiry"]
    wait_for(lambda: bob.status()["pendingLocks"] == 1, "bob to hold the lock")
    alice.stop()  # she never settles it off chain

    contract = PaychanContract(rpc_chain(devnet.url), devnet_contract.address, from_block=devnet_contract.from_block)
    time.sleep(1.0)  # five polls of bob's watcher: the expiry is far, the peer may still settle off chain
    assert contract.revealed_at(hashlock(SECRET)) == 0
    contract.chain.time_travel(expiry - REVEAL_MARGIN + 10 - contract.chain.now())
    wait_for(lambda: contract.revealed_at(hashlock(SECRET)) != 0, "bob's reveal")
    revealed = contract.revealed_at(hashlock(SECRET))
    assert expiry - REVEAL_MARGIN < revealed < expiry  # inside the margin, before the expiry
    wait_for(lambda: bob.status()["locks"][0]["revealedAt"] == revealed, "bob to record the reveal")

    closed = bob.control("POST", "/close", {"unilateral": True})  # with the state holding the lock
    assert (closed["nonce"], closed["balanceA"], closed["balanceB"]) == (1, str(DEPOSIT - LOCKED), "0")
    contract.chain.time_travel(3601)  # the record pays bob nothing but its lock: bob's watcher settles it
    wait_for(lambda: contract.get_channel(cid).status == 0, "bob's settlement")  # type: ignore[arg-type]
    (settled,) = contract.contract.events.ChannelSettled().get_logs(
        from_block=contract.from_block, argument_filters={"channelId": cid}
    )
    assert (settled["args"]["payoutA"], settled["args"]["payoutB"]) == (DEPOSIT - LOCKED, LOCKED)
    assert contract.chain.w3.eth.get_balance(contract.address) == 0
    wait_for(lambda: bob.status()["status"] == "closed", "bob to see the channel closed")


# --- hostile lock proposals (an in-process bob, a hand-made alice) --------------------------------------------


NOW = 1_900_000_000
EXPIRY = NOW + 1_800


def alice_proposes(state: Any, op: Any) -> Propose:
    return Propose(CID, 0, [SignedState(state, sign_state(DOMAIN, state, KEY_A), None)], None, (op,))


def lock_state(nonce: int, locks: tuple[Lock, ...], locked_a: int | None = None) -> Any:
    total = sum(lock.amount for lock in locks) if locked_a is None else locked_a
    return replace(make_state(nonce, DEPOSIT_A - total, 0), locks_root=locks_root(locks), locked_a=total, locked_b=0)


def everything(bob: LiveNode) -> tuple[Any, ...]:
    store = bob.node.store
    tables = tuple(store.conn.execute(f"SELECT * FROM {t}").fetchall() for t in ("lock_lists", "secrets"))
    return (*bob.snapshot(), bob.channel.locks, tables)


def test_hostile_lock_proposals_are_refused_with_their_reason_and_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        bob = await start_live_node(tmp_path / "b.db", KEY_B, "B", free_port(), free_port())
        bob.node.chain_now = lambda: NOW  # type: ignore[method-assign]
        client = PeerClient(10.0, DOMAIN, KEY_A)
        alice = Channel(PARAMS, DOMAIN, KEY_A, deposits=(DEPOSIT_A, 0))
        try:
            first = Lock("A", 100, EXPIRY, hashlock(SECRET))
            proposal, _ = alice.propose_lock(100, first.hashlock, EXPIRY, NOW)
            answer = await client.post(
                bob.peer_url + "/peer/propose",
                Propose(CID, 0, [proposal], None, (AddLock(first),)).to_json(),
                ADDRESS_B,
            )
            alice.receive_countersignature(parse_signed(answer["states"][0]))
            assert bob.channel.locks == (first,) and bob.channel.latest == alice.latest

            async def refused(message: Propose) -> dict[str, Any]:
                before = everything(bob)
                with pytest.raises(PeerRefused) as caught:
                    await client.post(bob.peer_url + "/peer/propose", message.to_json(), ADDRESS_B)
                assert everything(bob) == before
                return caught.value.error | {"status": caught.value.status}

            # the same hashlock again (another amount)
            twin = Lock("A", 50, EXPIRY, first.hashlock)
            error = await refused(alice_proposes(lock_state(2, (first, twin)), AddLock(twin)))
            assert error == error_body(DuplicateHashlock(first.hashlock))["error"] | {"status": 422}
            # an expiry one second past what the challenge period allows
            late = Lock("A", 50, NOW + 3600 - LOCK_EXPIRY_MARGIN + 1, hashlock(b"\x22" * 32))
            error = await refused(alice_proposes(lock_state(2, (first, late)), AddLock(late)))
            expected = LockExpiryOutOfRange(late.expiry, NOW + MIN_LOCK_TIME, NOW + 3600 - LOCK_EXPIRY_MARGIN)
            assert error == error_body(expected)["error"] | {"status": 422}
            # locked totals one wei above the lock list's (the balances still add up)
            fine = Lock("A", 50, EXPIRY, hashlock(b"\x33" * 32))
            error = await refused(alice_proposes(lock_state(2, (first, fine), locked_a=151), AddLock(fine)))
            assert error == error_body(LockedTotalsMismatch(151, 0, 150, 0))["error"] | {"status": 422}
            # settling with a secret of no pending lock
            wrong = b"\x44" * 32
            error = await refused(alice_proposes(lock_state(2, (first,)), SettleLock(wrong)))
            assert error == error_body(UnknownLock(hashlock(wrong)))["error"] | {"status": 422}
            # ops that do not match the states
            body = alice_proposes(lock_state(2, (first, fine)), AddLock(fine)).to_json()
            body["ops"] = [None, None]
            before = everything(bob)
            with pytest.raises(PeerRefused) as malformed:
                await client.post(bob.peer_url + "/peer/propose", body, ADDRESS_B)
            assert (malformed.value.status, malformed.value.type) == (400, "MalformedMessage")
            assert everything(bob) == before

            # the honest settlement by the sender, who learned the secret: bob is paid the lock
            settle = alice.propose_settle_lock(SECRET)
            answer = await client.post(
                bob.peer_url + "/peer/propose",
                Propose(CID, 0, [settle], None, (SettleLock(SECRET),)).to_json(),
                ADDRESS_B,
            )
            alice.receive_countersignature(parse_signed(answer["states"][0]))
            assert bob.channel.balances() == (DEPOSIT_A - 100, 100) and bob.channel.locks == ()
            assert bob.node.store.secret(hashlock(SECRET)) == SECRET
        finally:
            await client.close()
            await bob.stop()

    asyncio.run(scenario())


# --- the watcher's decisions (no sockets) ---------------------------------------------------------------------


def test_a_closed_channel_holding_a_lock_is_settled_with_its_lock_list_even_when_its_balance_pays_us_nothing(
    tmp_path: Path,
) -> None:
    incoming = Lock("A", 100, 5_000, hashlock(SECRET))
    record = replace(
        channel_record("B"),
        status="closing",
        close_nonce=1,
        close_deadline=1_000,
        close_balance_a=DEPOSIT_A - 100,
        close_balance_b=0,
        close_salt=7,
        closer_nonce=1,
        closed_by="B",
        close_locked_a=100,
        close_locks_root=locks_root((incoming,)),
    )
    latest = sign_both(make_state(0, DEPOSIT_A, 0))
    assert decide(record, latest, now=1_001) is None  # no locks given: the record pays bob nothing
    assert decide(record, latest, now=1_001, locks=(incoming,)) == ContractSendSettle(
        CID,
        recorded_state(record),  # type: ignore[arg-type]
        (incoming,),
    )


def test_the_watcher_reveals_a_known_secret_inside_the_margin_and_at_once_when_closing_but_never_after_expiry(
    tmp_path: Path,
) -> None:
    from paychan.node.store import Store

    store = Store(tmp_path / "b.db")
    store.add_secret(SECRET)
    incoming, outgoing = Lock("A", 100, 5_000, hashlock(SECRET)), Lock("B", 100, 5_000, hashlock(SECRET))
    unknown = Lock("A", 100, 5_000, b"\x55" * 32)
    assert reveals("B", (incoming, unknown), store, now=5_000 - REVEAL_MARGIN - 1, closing=False) == []
    assert reveals("B", (incoming, unknown), store, now=5_000 - REVEAL_MARGIN, closing=False) == [SECRET]
    assert reveals("B", (incoming,), store, now=10, closing=True) == [SECRET]
    assert reveals("B", (incoming,), store, now=5_001, closing=True) == []  # too late: it would pay nothing
    assert reveals("B", (outgoing,), store, now=4_999, closing=True) == []  # our own lock: not ours to reveal
    store.set_secret_revealed(hashlock(SECRET), 4_990)
    assert reveals("B", (incoming,), store, now=4_999, closing=True) == []  # revealed already
    store.close()


def test_a_lock_proposal_left_in_flight_by_a_crash_is_sent_again_with_its_lock_after_the_restart(
    node_processes: Callable[[str, bytes], NodeProcess], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    open_channel(alice, bob)
    bob.stop()
    lock_hash = hashlock(SECRET)
    with pytest.raises(ControlError) as timed_out:  # signed and sent, never answered
        alice.control("POST", "/locks/add", {"amount": str(LOCKED), "hashlock": "0x" + lock_hash.hex()})
    assert timed_out.value.type == "PaymentTimeout" and "signed and sent" in str(timed_out.value)
    assert (alice.status()["inflight"], alice.status()["pendingLocks"]) == (1, 0)
    alice.kill()  # the lock it added lives only in its store: the state's intent and its lock list

    bob.start()
    alice.start()
    wait_for(lambda: bob.status()["pendingLocks"] == 1, "bob to countersign the lock sent again")
    wait_for(lambda: alice.status()["pendingLocks"] == 1, "alice to adopt the lock once countersigned")
    for node in (alice, bob):
        status = node.status()
        assert (status["nonce"], status["inflight"], status["balanceA"]) == (1, 0, str(DEPOSIT - LOCKED))
        assert [(lock["sender"], lock["amount"], lock["hashlock"]) for lock in status["locks"]] == [
            ("A", str(LOCKED), "0x" + lock_hash.hex())
        ]
    assert alice.status()["latest"] == bob.status()["latest"]


def test_a_node_back_on_a_store_from_before_a_lock_adopts_the_peers_state_with_its_lock_list(
    node_processes: Callable[[str, bytes], NodeProcess], devnet_contract: PaychanContract
) -> None:
    import shutil

    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    cid = open_channel(alice, bob)
    alice.stop()
    old = alice.db.with_name("alice-before-the-lock.db")
    shutil.copy(alice.db, old)  # stopped: the WAL is checkpointed into the file
    alice.start()
    lock_hash = hashlock(SECRET)
    alice.control("POST", "/locks/add", {"amount": str(LOCKED), "hashlock": "0x" + lock_hash.hex()})
    wait_for(lambda: bob.status()["pendingLocks"] == 1, "bob to hold the lock")
    alice.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{alice.db}{suffix}").unlink(missing_ok=True)
    shutil.copy(old, alice.db)  # alice's store knows neither the lock's state nor its lock list

    alice.start()
    wait_for(lambda: alice.status()["nonce"] == 1, "alice to adopt bob's state")
    status = alice.status()
    assert status["latest"] == bob.status()["latest"] and status["channelId"] == "0x" + cid.hex()
    assert [(lock["sender"], lock["amount"], lock["hashlock"]) for lock in status["locks"]] == [
        ("A", str(LOCKED), "0x" + lock_hash.hex())
    ]
    kept = Lock.from_json(status["locks"][0])
    assert alice.control("POST", "/pay", {"amount": "1"})["nonce"] == 2  # and the channel goes on, lock kept
    wait_for(lambda: bob.status()["nonce"] == 2, "bob to countersign the payment")
    assert bob.status()["locks"][0]["hashlock"] == "0x" + kept.hashlock.hex()
