"""``paychan backup`` and ``paychan restore`` never lose a signed state: mistyped paths, files that are not
stores, stores from a newer paychan, old backups over newer stores, a store still held by a node.

Every test counts the states of every store involved before and after."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from paychan.cli import main
from paychan.cli.node import lock_store
from paychan.node.restored import RESTORED_KEY, mark_synced, needs_sync, synced_key
from paychan.node.store import MIGRATIONS, ChannelRecord, Store

from .conftest import CID, PARAMS, channel_record, make_state, sign_both

OTHER_CID = b"\x01" * 32


def paychan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def make_store(path: Path, nonces: int, other_nonces: int = 0) -> Path:
    """A store with the test channel holding states 0..``nonces``-1 signed by both (and, if
    ``other_nonces``, a second channel with that many)."""
    store = Store(path)
    store.add_channel(channel_record())
    for nonce in range(nonces):
        store.record_intent(sign_both(make_state(nonce, 10**18 - nonce, nonce)), "A")
    if other_nonces:
        store.add_channel(ChannelRecord(OTHER_CID, PARAMS, "B", "http://127.0.0.1:1", 10**18, 0))  # type: ignore[arg-type]
        for nonce in range(other_nonces):
            store.record_intent(sign_both(make_state(nonce, 10**18, 0, cid=OTHER_CID)), "A")
    store.close()
    return path


def state_counts(path: Path) -> dict[bytes, int]:
    store = Store(path)
    try:
        return {record.channel_id: len(store.states(record.channel_id)) for record in store.channels()}
    finally:
        store.close()


def files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def one_error_line(err: str) -> str:
    (line,) = err.splitlines()
    assert line.startswith("paychan: error: ") and "Traceback" not in err
    return line.removeprefix("paychan: error: ")


# --- restore refuses what is not a backup --------------------------------------------------------------------


def test_restore_from_a_mistyped_path_creates_nothing_and_leaves_the_store_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_store(tmp_path / "node.db", 11)
    before = files(tmp_path)
    code, out, err = paychan(capsys, "restore", "--backup", str(tmp_path / "nod.backup"), "--db", str(db), "--force")
    assert (code, out) == (1, "")
    assert one_error_line(err) == f"no backup at {tmp_path / 'nod.backup'} (no such file); nothing was changed"
    assert files(tmp_path) == before
    assert state_counts(db) == {CID: 11}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a store\n" * 20, "is not a SQLite database"),
        (b"", "is not a SQLite database (it is empty)"),
        (None, "is not a paychan store (tables missing: schema_migrations, channels, states)"),
    ],
    ids=["text file", "empty file", "another SQLite database"],
)
def test_restore_from_a_file_that_is_not_a_store_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, reason: str
) -> None:
    db = make_store(tmp_path / "node.db", 11)
    backup = tmp_path / "backup.db"
    if content is None:
        conn = sqlite3.connect(backup)
        conn.execute("CREATE TABLE photos (name TEXT)")
        conn.commit()
        conn.close()
    else:
        backup.write_bytes(content)
    before, backup_bytes = files(tmp_path), backup.read_bytes()
    code, out, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db), "--force")
    assert (code, out) == (1, "")
    assert one_error_line(err) == f"cannot restore from {backup}: {backup} {reason}; nothing was changed"
    assert files(tmp_path) == before
    assert backup.read_bytes() == backup_bytes
    assert state_counts(db) == {CID: 11}


def test_restore_from_a_store_of_a_newer_paychan_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = make_store(tmp_path / "node.db", 3)
    future = MIGRATIONS[-1][0] + 1
    newer = Store(tmp_path / "newer.db", [*MIGRATIONS, (future, "from the future", ("CREATE TABLE later (x)",))])
    newer.add_channel(channel_record())
    newer.close()
    code, _, err = paychan(capsys, "restore", "--backup", str(tmp_path / "newer.db"), "--db", str(db), "--force")
    assert code == 1
    assert one_error_line(err) == (
        f"cannot restore from {tmp_path / 'newer.db'}: {tmp_path / 'newer.db'} has schema version {future}, newer "
        f"than this paychan knows ({MIGRATIONS[-1][0]}); upgrade paychan; nothing was changed"
    )
    assert state_counts(db) == {CID: 3}


# --- restore never loses newer states ------------------------------------------------------------------------


def older_backup_and_newer_store(tmp_path: Path) -> tuple[Path, Path]:
    """A backup with 11 states, and the store it came from, which has since signed 20 more."""
    db = make_store(tmp_path / "node.db", 11)
    backup = tmp_path / "node.backup"
    assert main(["backup", "--db", str(db), "--out", str(backup)]) == 0
    store = Store(db)
    for nonce in range(11, 31):
        store.record_intent(sign_both(make_state(nonce, 10**18 - nonce, nonce)), "A")
    store.close()
    return backup, db


def test_an_older_backup_over_a_newer_store_is_refused_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, db = older_backup_and_newer_store(tmp_path)
    capsys.readouterr()
    before = files(tmp_path)
    code, out, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db))
    assert (code, out) == (1, "")
    assert one_error_line(err) == (
        f"{db} exists; pass --force to replace it: it holds signed states the backup lacks (channel 0x{CID.hex()} "
        f"is at nonce 30, the backup at 10); with --force it is kept as {db}.replaced-<UTC time>"
    )
    assert files(tmp_path) == [*before, "node.db.lock"] or files(tmp_path) == before
    assert state_counts(db) == {CID: 31}
    assert state_counts(backup) == {CID: 11}


def test_an_older_backup_over_a_newer_store_with_force_replaces_it_and_keeps_every_state_of_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, db = older_backup_and_newer_store(tmp_path)
    capsys.readouterr()
    code, out, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db), "--force")
    assert (code, err) == (0, "")
    (kept,) = tmp_path.glob("node.db.replaced-*")
    assert out.splitlines() == [
        f"restored {db} from {backup} (11 states, schema version {MIGRATIONS[-1][0]})",
        f"  channel 0x{CID.hex()}: before 31 states (nonce 30), after 11 states (nonce 10)",
        f"the replaced store (31 states) is kept as {kept}",
        "states signed after the backup are not in the restored store: the node fetches the peer's latest state "
        "when it starts",
        "the node closes no channel unilaterally before it has synced it with the peer (`paychan close --unilateral "
        "--i-lost-data` overrides that if the peer is gone for good)",
    ]
    assert state_counts(db) == {CID: 11}
    assert state_counts(kept) == {CID: 31}


def test_a_channel_missing_from_the_backup_counts_as_newer_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = make_store(tmp_path / "node.backup", 11)
    db = make_store(tmp_path / "node.db", 11, other_nonces=4)
    code, _, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db))
    assert code == 1
    assert f"(channel 0x{OTHER_CID.hex()} with 4 states (nonce 3) is not in the backup)" in one_error_line(err)
    assert state_counts(db) == {CID: 11, OTHER_CID: 4}


def test_a_backup_as_new_as_the_store_replaces_it_without_force_and_keeps_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_store(tmp_path / "node.db", 11)
    backup = tmp_path / "node.backup"
    assert paychan(capsys, "backup", "--db", str(db), "--out", str(backup))[0] == 0
    code, out, _ = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db))
    assert code == 0 and "before 11 states (nonce 10), after 11 states (nonce 10)" in out
    (kept,) = tmp_path.glob("node.db.replaced-*")
    assert state_counts(db) == state_counts(kept) == {CID: 11}


def test_the_kept_store_holds_the_states_only_in_the_write_ahead_log_of_a_crashed_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = make_store(tmp_path / "node.backup", 2)
    live = Store(tmp_path / "live.db")  # a node that crashes: its last states are in live.db-wal only
    live.add_channel(channel_record())
    for nonce in range(9):
        live.record_intent(sign_both(make_state(nonce, 10**18 - nonce, nonce)), "A")
    db = tmp_path / "node.db"
    shutil.copy(tmp_path / "live.db", db)
    shutil.copy(tmp_path / "live.db-wal", tmp_path / "node.db-wal")
    live.close()
    assert (tmp_path / "node.db-wal").stat().st_size > 0
    code, _, _ = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db), "--force")
    assert code == 0
    (kept,) = tmp_path.glob("node.db.replaced-*")
    assert state_counts(kept) == {CID: 9}
    assert state_counts(db) == {CID: 2}


def test_restore_into_a_missing_store_creates_it_from_the_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = make_store(tmp_path / "node.backup", 11)
    db = tmp_path / "fresh.db"
    code, out, _ = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db))
    assert code == 0
    assert out.splitlines()[1:] == [
        f"  channel 0x{CID.hex()}: before no channel, after 11 states (nonce 10)",
        f"there was no store at {db} before",
        "the node closes no channel unilaterally before it has synced it with the peer (`paychan close --unilateral "
        "--i-lost-data` overrides that if the peer is gone for good)",
    ]
    assert not list(tmp_path.glob("fresh.db.replaced-*"))
    assert state_counts(db) == state_counts(backup) == {CID: 11}


def test_restore_while_a_node_holds_the_store_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backup = make_store(tmp_path / "node.backup", 11)
    db = make_store(tmp_path / "node.db", 5)
    lock = lock_store(db)  # what a running node holds
    try:
        code, _, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db), "--force")
    finally:
        lock.close()
    assert code == 1 and one_error_line(err) == f"another node is running on {db}"
    assert not list(tmp_path.glob("node.db.replaced-*"))
    assert state_counts(db) == {CID: 5}


def test_restore_from_a_restored_store_creates_no_file_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store in WAL mode without a -wal file (closed cleanly) is read without creating -wal or -shm."""
    source = make_store(tmp_path / "source.db", 3)
    assert open(source, "rb").read(20)[18] == 2  # WAL mode
    before = files(tmp_path)
    assert paychan(capsys, "restore", "--backup", str(source), "--db", str(tmp_path / "copy.db"))[0] == 0
    assert files(tmp_path) == sorted([*before, "copy.db", "copy.db.lock"])


# --- backup ----------------------------------------------------------------------------------------------


def test_backup_writes_a_checked_copy_holding_every_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = make_store(tmp_path / "node.db", 11, other_nonces=2)
    out = tmp_path / "node.backup"
    code, stdout, _ = paychan(capsys, "backup", "--db", str(db), "--out", str(out))
    assert (code, stdout.strip()) == (0, f"backed up {db} -> {out}: 2 channels, 13 states (integrity ok)")
    assert state_counts(out) == {CID: 11, OTHER_CID: 2}
    assert files(tmp_path) == ["node.backup", "node.db"]  # no temporary file left


def test_backup_refuses_an_existing_out_and_leaves_it_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_store(tmp_path / "node.db", 11)
    older = make_store(tmp_path / "old.backup", 3)
    code, _, err = paychan(capsys, "backup", "--db", str(db), "--out", str(older))
    assert code == 1 and one_error_line(err) == f"{older} exists; choose a new file"
    assert state_counts(older) == {CID: 3}


def test_backup_of_a_missing_store_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = paychan(capsys, "backup", "--db", str(tmp_path / "nod.db"), "--out", str(tmp_path / "b.db"))
    assert code == 1 and one_error_line(err) == f"no store at {tmp_path / 'nod.db'}"
    assert files(tmp_path) == []


def test_backup_of_a_file_that_is_not_a_store_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a store")
    code, _, err = paychan(capsys, "backup", "--db", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "b.db"))
    assert code == 1
    assert (
        one_error_line(err)
        == f"cannot back up {tmp_path / 'notes.txt'}: {tmp_path / 'notes.txt'} is not a SQLite database"
    )
    assert files(tmp_path) == ["notes.txt"]


def test_restore_over_a_file_that_is_not_a_store_needs_force_and_keeps_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = make_store(tmp_path / "node.backup", 4)
    db = tmp_path / "node.db"
    db.write_text("notes I should not have saved here\n")
    code, _, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db))
    assert code == 1 and one_error_line(err).startswith(f"{db} exists; pass --force to replace it: it is not a sound")
    assert db.read_text() == "notes I should not have saved here\n"
    code, out, _ = paychan(capsys, "restore", "--backup", str(backup), "--db", str(db), "--force")
    (kept,) = tmp_path.glob("node.db.replaced-*")
    assert code == 0 and f"the replaced store (not a paychan store) is kept as {kept}" in out
    assert kept.read_text() == "notes I should not have saved here\n"
    assert state_counts(db) == {CID: 4}


def test_a_restored_store_is_marked_restored_with_every_channel_unsynced_and_a_backup_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_store(tmp_path / "node.db", 3)
    store = Store(db)
    store.set_meta(synced_key(CID), "2026-01-01T00:00:00Z")  # synced after an earlier restore
    store.close()
    backup = tmp_path / "node.backup"
    assert paychan(capsys, "backup", "--db", str(db), "--out", str(backup))[0] == 0
    assert paychan(capsys, "restore", "--backup", str(backup), "--db", str(db))[0] == 0
    restored, copy = Store(db), Store(backup)
    try:
        assert restored.get_meta(RESTORED_KEY) is not None and needs_sync(restored, CID)
        assert copy.get_meta(RESTORED_KEY) is None and not needs_sync(copy, CID)
        mark_synced(restored, CID)
        assert not needs_sync(restored, CID)
    finally:
        restored.close()
        copy.close()
