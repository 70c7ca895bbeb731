"""The node's SQLite store: durability settings, migrations, the double-sign guard, crash consistency, backup."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from paychan.node import trace
from paychan.node.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ClosedBy,
    DoubleSignRefused,
    Store,
    StoreError,
    backup_to,
    integrity_check,
)
from paychan.signing import state_struct_hash
from paychan.state import Signature, SignedState

from .conftest import CID, DEPOSIT_A, KEY_A, KEY_B, channel_record, make_state, sign_both


def test_store_uses_wal_and_full_synchronous(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migrations_are_recorded_once_in_order(tmp_path: Path) -> None:
    Store(tmp_path / "a.db").close()
    again = Store(tmp_path / "a.db")
    assert again.applied_migrations() == [(v, n) for v, n, _ in MIGRATIONS]
    assert again.schema_version == SCHEMA_VERSION == 9


def test_an_older_store_is_migrated_and_keeps_its_states(tmp_path: Path) -> None:
    old = Store(tmp_path / "old.db", migrations=MIGRATIONS[:1])
    assert old.schema_version == 1
    old.conn.execute(
        "INSERT INTO channels (channel_id, params, role, peer_url, deposit_a, deposit_b, created_at)"
        " VALUES (?, ?, 'B', 'http://127.0.0.1:1', '1', '0', 0)",
        (
            CID,
            '{"participantA": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "participantB":'
            ' "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "asset": "0x0000000000000000000000000000000000000000",'
            ' "challengePeriod": 3600, "number": 1}',
        ),
    )
    # A state as paychan wrote it before migration 3 (no deposit columns).
    old.conn.execute(
        "INSERT INTO states (channel_id, nonce, state_hash, balance_a, balance_b, locks_root, is_final, proposer,"
        " sig_a, sig_b, recorded_at) VALUES (?, 1, ?, '0', '1', ?, 0, 'A', NULL, NULL, 0)",
        (CID, b"\x11" * 32, b"\x00" * 32),
    )
    old.conn.commit()
    old.close()
    new = Store(tmp_path / "old.db")
    assert new.schema_version == SCHEMA_VERSION == 9
    record = new.channel(CID)
    assert record is not None and record.close_nonce is None and record.challenged_nonce is None
    # migration 4: the URL was not set by a signed announce (any signed one replaces it); no close record
    assert record.peer_url_at == 0 and not record.has_close_record
    (kept,) = new.states(CID)
    assert (kept.state.nonce, kept.state.balance_b, kept.state.deposit_a, kept.state.deposit_b) == (1, 1, 0, 0)
    new.record_intent(sign_both(make_state(2, 0, 1)), "A")  # new states keep their deposits
    assert new.states(CID, 1)[0].state.deposit_a == make_state(2, 0, 1).deposit_a


def test_a_store_written_by_a_newer_paychan_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "new.db").close()
    conn = sqlite3.connect(tmp_path / "new.db")
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path / "new.db")


def test_recording_the_same_intent_twice_is_idempotent(store: Store) -> None:
    proposal = SignedState(make_state(1, DEPOSIT_A - 5, 5))
    first = store.record_intent(proposal, "A")
    second = store.record_intent(proposal, "A")
    assert first == second == state_struct_hash(proposal.state)
    assert [s.state for s in store.states(CID)] == [proposal.state]


def test_a_different_state_at_a_recorded_nonce_is_refused_even_after_reopening(tmp_path: Path) -> None:
    db = Store(tmp_path / "n.db")
    db.add_channel(channel_record())
    db.record_intent(SignedState(make_state(1, DEPOSIT_A - 5, 5)), "A")
    db.close()
    db = Store(tmp_path / "n.db")
    with pytest.raises(DoubleSignRefused) as e:
        db.record_intent(SignedState(make_state(1, DEPOSIT_A - 6, 6)), "A")
    assert (e.value.channel_id, e.value.nonce) == (CID, 1)
    assert [s.state.balance_b for s in db.states(CID)] == [5]


def test_a_refused_intent_rolls_back_its_whole_transaction(store: Store) -> None:
    store.record_intent(SignedState(make_state(2, DEPOSIT_A - 5, 5)), "A")
    with pytest.raises(DoubleSignRefused), store.transaction():
        store.record_intent(SignedState(make_state(1, DEPOSIT_A - 1, 1)), "A")
        store.record_intent(SignedState(make_state(2, DEPOSIT_A - 9, 9)), "A")
    assert [s.state.nonce for s in store.states(CID)] == [2]


def test_signatures_are_added_only_to_the_identical_state(store: Store) -> None:
    state = make_state(1, DEPOSIT_A - 5, 5)
    store.record_intent(SignedState(state), "A")
    assert store.latest_complete(CID, "A") is None
    both = sign_both(state)
    store.add_signatures(both)
    latest = store.latest_complete(CID, "A")
    assert latest is not None and latest.signed == both
    with pytest.raises(DoubleSignRefused):
        store.add_signatures(sign_both(make_state(1, DEPOSIT_A - 6, 6)))


def test_latest_complete_skips_states_without_the_peer_signature(store: Store) -> None:
    store.record_intent(sign_both(make_state(1, DEPOSIT_A - 1, 1)), "A")
    store.record_intent(SignedState(make_state(2, DEPOSIT_A - 2, 2)), "B")  # our proposal, not countersigned
    latest = store.latest_complete(CID, "B")
    assert latest is not None and latest.state.nonce == 1


WRITER = """
import sys
from paychan.node.store import Store
from paychan.state import Signature, SignedState
from tests.node.conftest import DEPOSIT_A, channel_record, make_state
db = Store(sys.argv[1])
if db.channel(channel_record().channel_id) is None:
    db.add_channel(channel_record())
start = len(db.states(channel_record().channel_id))
print("ready", start, flush=True)
for nonce in range(start + 1, 100000):
    state = make_state(nonce, DEPOSIT_A - nonce, nonce)
    with db.transaction():
        db.record_intent(SignedState(state), "A")
    print(nonce, flush=True)
"""


def test_killing_the_writer_at_random_points_loses_no_committed_state(tmp_path: Path) -> None:
    db_path = tmp_path / "crash.db"
    rng = random.Random(6)
    committed: list[int] = []
    root = Path(__file__).resolve().parents[2]
    for _round in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline().split()
            assert ready[0] == "ready" and int(ready[1]) == len(committed)
            for _ in range(rng.randint(1, 25)):
                committed.append(int(proc.stdout.readline()))
            time.sleep(rng.random() * 0.02)  # die somewhere inside the next commits
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            committed.extend(int(line) for line in proc.stdout.read().split())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert integrity_check(db_path) == "ok"
        db = Store(db_path)
        nonces = [s.state.nonce for s in db.states(CID)]
        db.close()
        # every commit the writer reported is there; at most the one in flight got in beyond them
        assert nonces[: len(committed)] == committed
        assert nonces == list(range(1, len(nonces) + 1))
        committed = nonces


def test_a_backup_taken_while_the_node_writes_is_consistent(tmp_path: Path) -> None:
    db_path = tmp_path / "live.db"
    Store(db_path).close()
    stop = threading.Event()

    def write() -> None:
        db = Store(db_path)
        db.add_channel(channel_record())
        nonce = 0
        while not stop.is_set():
            nonce += 1
            db.record_intent(sign_both(make_state(nonce, DEPOSIT_A - nonce, nonce), KEY_A, KEY_B), "A")
        db.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.3)
        backups = []
        for i in range(3):
            backup_to(db_path, tmp_path / f"backup{i}.db")
            backups.append(tmp_path / f"backup{i}.db")
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    counts = []
    for path in backups:
        assert integrity_check(path) == "ok"
        copy = Store(path)
        states = copy.states(CID)
        assert [s.state.nonce for s in states] == list(range(1, len(states) + 1))
        assert all(s.sig_a is not None and s.sig_b is not None for s in states)
        counts.append(len(states))
        copy.close()
    assert counts == sorted(counts) and counts[-1] > 0


def test_a_peer_url_changes_only_for_a_newer_announce(store: Store) -> None:
    assert store.set_peer_url(CID, "http://10.0.0.1:9735", 1_000)
    assert not store.set_peer_url(CID, "http://attacker:1", 999)  # older
    assert not store.set_peer_url(CID, "http://attacker:1", 1_000)  # the same announce again
    assert store.channel(CID).peer_url == "http://10.0.0.1:9735"  # type: ignore[union-attr]
    assert store.set_peer_url(CID, "http://10.0.0.2:9735", 1_001)
    assert store.channel(CID).peer_url == "http://10.0.0.2:9735"  # type: ignore[union-attr]


def test_a_close_record_is_stored_and_a_challenge_keeps_the_deadline(store: Store) -> None:
    store.set_close_record(CID, 1, 7, 3, 2**64 - 1, deadline=5_000, closed=ClosedBy("A", 1, 0))
    record = store.channel(CID)
    assert record is not None and record.status == "closing" and record.has_close_record
    assert (record.close_nonce, record.close_balance_a, record.close_balance_b, record.close_salt) == (
        1,
        7,
        3,
        2**64 - 1,
    )
    store.set_close_record(CID, 4, 2, 8, 12345)  # a ChallengeAccepted event: no new deadline
    record = store.channel(CID)
    assert record is not None and (record.close_nonce, record.close_deadline, record.close_salt) == (4, 5_000, 12345)
    assert (record.closer_nonce, record.closed_by) == (1, "A")  # a challenge keeps who closed and with what


def test_a_close_record_without_the_closers_nonce_is_incomplete(store: Store) -> None:
    store.set_close_record(CID, 1, 7, 3, 99, deadline=5_000)  # a ChallengeAccepted seen without its close
    record = store.channel(CID)
    assert record is not None and record.closer_nonce is None and not record.has_close_record


def test_the_v2_record_and_withdrawal_counter_are_stored(store: Store) -> None:
    root = bytes(range(32))
    store.set_close_record(
        CID, 3, 5, 1, 77, deadline=9_000, locked_a=2, locked_b=4, locks_root=root, closed=ClosedBy("B", 3, 2)
    )
    record = store.channel(CID)
    assert record is not None
    assert (record.close_locked_a, record.close_locked_b, record.close_locks_root) == (2, 4, root)
    assert (record.closer_nonce, record.closed_by, record.close_withdrawals, record.penalized) == (3, "B", 2, False)
    store.set_penalized(CID)
    assert store.channel(CID).penalized  # type: ignore[union-attr]


def test_a_withdrawal_sets_the_deposits_and_counter_only_forwards(store: Store) -> None:
    store.set_withdrawn(CID, 1, 40, 50)
    store.set_withdrawn(CID, 1, 1, 1)  # the same event again changes nothing
    record = store.channel(CID)
    assert record is not None and (record.withdrawals, record.deposit_a, record.deposit_b) == (1, 40, 50)


def test_revocations_are_stored_and_only_ever_go_up(store: Store) -> None:
    signature = Signature.from_bytes(bytes(range(64)))
    store.set_own_revocation(CID, 5)
    store.set_own_revocation(CID, 3)
    store.set_peer_revocation(CID, 7, signature)
    store.set_peer_revocation(CID, 6, Signature.from_bytes(bytes(64)))
    record = store.channel(CID)
    assert record is not None
    assert (record.own_revocation, record.peer_revocation, record.peer_revocation_sig) == (5, 7, signature)


def test_a_store_of_schema_5_gains_lock_lists_and_secrets_kept_across_a_reopen(tmp_path: Path) -> None:
    from paychan.state import Lock, hashlock, locks_root

    old = Store(tmp_path / "v5.db", migrations=MIGRATIONS[:5])
    old.add_channel(channel_record())
    assert old.schema_version == 5
    old.close()
    new = Store(tmp_path / "v5.db")
    assert new.applied_migrations()[5] == (6, MIGRATIONS[5][1])
    secret = bytes(range(32))
    locks = (Lock("A", 5, 10_000, hashlock(secret)), Lock("B", 7, 20_000, b"\x22" * 32))
    with new.transaction():
        root = new.put_lock_list(CID, locks)
        assert new.add_secret(secret) == hashlock(secret)
    new.put_lock_list(CID, locks)  # idempotent
    new.close()
    again = Store(tmp_path / "v5.db")
    assert root == locks_root(locks)
    assert again.lock_list(CID, root) == locks
    assert again.lock_list(CID, b"\x00" * 32) == ()
    assert again.lock_list(CID, b"\x33" * 32) is None  # a root the store never saw
    assert again.secret(hashlock(secret)) == secret and again.secret(b"\x22" * 32) is None
    assert again.secret_revealed_at(hashlock(secret)) is None
    again.set_secret_revealed(hashlock(secret), 1_234)
    assert again.secret_revealed_at(hashlock(secret)) == 1_234
    again.close()


def test_a_payments_machine_state_is_kept_by_payment_id_and_replaced_by_its_next_step(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    lock_hash = b"\x01" * 32
    big = 2**64 - 1  # payment ids are uint64: stored as text, not as SQLite's signed integer
    with store.transaction():
        store.put_transfer(big, "mediator", lock_hash, "http://127.0.0.1:1", '{"step": 1}', False)
    store.put_transfer(big, "mediator", lock_hash, "http://127.0.0.1:1", '{"step": 2}', True)
    store.close()
    again = Store(tmp_path / "t.db")
    assert again.transfers() == [(big, "http://127.0.0.1:1", '{"step": 2}')]
    with pytest.raises(sqlite3.IntegrityError):
        again.put_transfer(1, "thief", lock_hash, "", "{}", False)  # a role outside the three
    again.close()


def test_what_waits_for_a_write_learns_it_once_its_transaction_commits_or_that_it_rolled_back(store: Store) -> None:
    heard: list[str] = []
    with pytest.raises(StoreError):  # only inside a transaction
        store.after_transaction(lambda: heard.append("committed"))
    with store.transaction():
        store.after_transaction(lambda: heard.append("committed"), lambda: heard.append("rolled back"))
        with store.transaction():  # a nested one joins the outer: its hook waits for the outer commit
            store.after_transaction(lambda: heard.append("nested committed"))
        assert heard == []
    assert heard == ["committed", "nested committed"]
    with pytest.raises(RuntimeError), store.transaction():
        store.after_transaction(lambda: heard.append("never"), lambda: heard.append("rolled back"))
        raise RuntimeError("the block fails")
    assert heard == ["committed", "nested committed", "rolled back"]
    with store.transaction():  # hooks of an earlier transaction are not called again
        pass
    assert heard == ["committed", "nested committed", "rolled back"]


def test_a_savepoint_that_fails_undoes_its_own_writes_and_the_transaction_around_it_still_commits(
    store: Store,
) -> None:
    with pytest.raises(StoreError):  # only inside a transaction
        with store.savepoint():
            pass
    with store.transaction():
        store.set_meta("kept", "1")
        with pytest.raises(RuntimeError), store.savepoint():
            store.set_meta("undone", "1")
            store.set_meta("kept", "2")
            raise RuntimeError("the part fails")
        with store.savepoint():
            store.set_meta("also kept", "3")
    assert (store.get_meta("kept"), store.get_meta("undone"), store.get_meta("also kept")) == ("1", None, "3")


def test_with_a_trace_directory_every_commit_is_a_line_naming_who_opened_its_transaction(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace, "DIRECTORY", str(tmp_path))

    def record_something() -> None:
        with store.transaction():
            pass

    record_something()
    (line,) = (tmp_path / f"{os.getpid()}.trace").read_text().splitlines()
    kind, start, end, opened_by = line.split()
    assert kind == "COMMIT" and int(start) <= int(end) and opened_by.startswith("record_something>")
    monkeypatch.setattr(trace, "DIRECTORY", None)
    record_something()
    assert len((tmp_path / f"{os.getpid()}.trace").read_text().splitlines()) == 1  # off: nothing more
