"""``paychan backup`` and ``paychan restore``: copy a node's store, and put a copy back, never losing a state.

``backup`` copies the store with SQLite's online backup API (consistent while the node runs) into a temporary
file beside ``--out``, checks the copy, and only then gives it its name; it refuses an existing ``--out`` and a
missing ``--db`` (creating neither).

``restore`` reads the backup read-only and refuses anything that is not a sound paychan store this paychan
can read. It refuses while a node holds the store, and refuses to replace a store holding signed states the
backup lacks (a channel with a higher nonce, or a channel missing from the backup) unless ``--force``. The
store it replaces is always kept, consistently copied with its write-ahead log, as
``<db>.replaced-<UTC time>``. It creates no file but the restored store and that copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from paychan.cli.node import lock_store
from paychan.exceptions import PaychanError
from paychan.node.restored import mark_restored
from paychan.node.store import (
    SQLITE_HEADER,
    ChannelStates,
    StoreError,
    backup_to,
    read_channel_states,
    read_integrity,
    read_only,
    read_schema_version,
)


class RestoreRefused(PaychanError):
    """Raised when a backup or restore is refused because it could lose data or read the wrong file; nothing
    was changed."""


@dataclass(frozen=True)
class StoreSummary:
    """What a paychan store holds: its schema version and, by channel, its count of states and top nonce."""

    path: Path
    schema_version: int
    channels: dict[bytes, ChannelStates]

    @property
    def state_count(self) -> int:
        return sum(states.count for states in self.channels.values())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subparsers.add_parser("backup", help="copy a node's store consistently, even while it runs")
    backup.add_argument("--db", required=True, help="the node's store (must exist)")
    backup.add_argument("--out", required=True, help="backup file to write (must not exist)")
    backup.add_argument("--json", action="store_true", help="print the result as JSON")
    backup.set_defaults(func=run_backup)

    restore = subparsers.add_parser("restore", help="restore a node's store from a backup (node stopped)")
    restore.add_argument("--backup", required=True, help="a backup written by `paychan backup`")
    restore.add_argument("--db", required=True, help="the node's store to restore (created if missing)")
    restore.add_argument("--json", action="store_true", help="print the result as JSON")
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace a store holding signed states the backup lacks (it is kept as <db>.replaced-<UTC time>)",
    )
    restore.set_defaults(func=run_restore)


# --- reading stores ---------------------------------------------------------------------------------------


def summarize_store(path: Path) -> StoreSummary:
    """Reads the store at ``path`` read-only; raises ``StoreError`` unless it is a sound paychan store this
    paychan can read."""
    with read_only(path) as conn:
        schema_version = read_schema_version(conn, path)
        check = read_integrity(conn)
        if check != "ok":
            raise StoreError(f"{path} failed its integrity check: {check}")
        try:
            channels = read_channel_states(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a sound paychan store ({exc})") from None
    return StoreSummary(path, schema_version, channels)


def is_sqlite_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def newer_in(current: StoreSummary, backup: StoreSummary) -> list[str]:
    """Each channel for which ``current`` holds signed states that ``backup`` lacks, as a phrase."""
    found = []
    for cid, states in sorted(current.channels.items()):
        theirs = backup.channels.get(cid)
        if theirs is None and states.count:
            found.append(f"channel 0x{cid.hex()} with {_states(states)} is not in the backup")
        elif theirs is not None and states.max_nonce > theirs.max_nonce:
            found.append(f"channel 0x{cid.hex()} is at nonce {states.max_nonce}, the backup at {theirs.max_nonce}")
    return found


def _states(states: ChannelStates | None) -> str:
    if states is None:
        return "no channel"
    plural = "state" if states.count == 1 else "states"
    return f"{states.count} {plural}" + (f" (nonce {states.max_nonce})" if states.count else "")


# --- writing files ----------------------------------------------------------------------------------------


def copy_read_only(source: Path, destination: Path, journal_mode: str) -> None:
    """Copies the SQLite file ``source``, opened read-only, into the new file ``destination``."""
    with read_only(source) as src:
        dst = sqlite3.connect(str(destination))
        try:
            src.backup(dst)
            dst.execute(f"PRAGMA journal_mode={journal_mode}")
        finally:
            dst.close()


def checkpoint(db: Path) -> None:
    """Moves what the write-ahead log of ``db`` holds into ``db`` itself (no node may hold it)."""
    conn = sqlite3.connect(str(db))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = Path(f"{db}-wal")
    if wal.exists() and wal.stat().st_size:
        raise RestoreRefused(f"could not move the write-ahead log {wal} into {db}; nothing was changed")


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replaced_name(db: Path) -> Path:
    """``<db>.replaced-<UTC time>``, with ``-2``, ``-3``... if that name is taken."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = Path(f"{db}.replaced-{stamp}")
    n = 1
    while name.exists():
        n += 1
        name = Path(f"{db}.replaced-{stamp}-{n}")
    return name


def keep_replaced(db: Path, current: StoreSummary | None) -> Path:
    """Copies the store about to be replaced to ``<db>.replaced-<UTC time>`` (its WAL included) and checks the
    copy holds every state it held; returns the copy's path."""
    kept = replaced_name(db)
    if current is None or not is_sqlite_file(db):
        shutil.copy2(db, kept)  # not a paychan store: kept byte for byte
        return kept
    checkpoint(db)
    backup_to(db, kept)
    try:
        if summarize_store(kept).channels != current.channels:
            raise RestoreRefused(f"the copy {kept} of {db} does not hold all its states; nothing was changed")
    except StoreError as exc:
        raise RestoreRefused(f"the copy {kept} of {db} is unsound ({exc}); nothing was changed") from None
    return kept


# --- backup -----------------------------------------------------------------------------------------------


def run_backup(args: argparse.Namespace) -> int:
    db, out = Path(args.db), Path(args.out)
    if out.exists():
        raise RestoreRefused(f"{out} exists; choose a new file")
    if not out.parent.is_dir():
        raise RestoreRefused(f"no folder {out.parent} to write {out.name} in")
    if not db.is_file():
        raise RestoreRefused(f"no store at {db}")
    try:
        summarize_store(db)
    except StoreError as exc:
        raise RestoreRefused(f"cannot back up {db}: {exc}") from None
    staged = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        backup_to(db, staged)
        try:
            copy = summarize_store(staged)
        except StoreError as exc:
            raise RestoreRefused(f"the copy of {db} failed its checks ({exc}); {out} was not written") from None
        try:
            os.link(staged, out)  # unlike a rename, never replaces a file created meanwhile
        except FileExistsError:
            raise RestoreRefused(f"{out} exists; choose a new file") from None
        sync_folder(out.parent)
    finally:
        staged.unlink(missing_ok=True)
    channels = "channel" if len(copy.channels) == 1 else "channels"
    if getattr(args, "json", False):
        print(json.dumps({"db": str(db), "out": str(out), "channels": len(copy.channels), "states": copy.state_count}))
    else:
        print(f"backed up {db} -> {out}: {len(copy.channels)} {channels}, {copy.state_count} states (integrity ok)")
    return 0


# --- restore ----------------------------------------------------------------------------------------------


def read_backup(backup: Path) -> StoreSummary:
    if not backup.exists():
        raise RestoreRefused(f"no backup at {backup} (no such file); nothing was changed")
    try:
        return summarize_store(backup)
    except StoreError as exc:
        raise RestoreRefused(f"cannot restore from {backup}: {exc}; nothing was changed") from None


def read_current(db: Path, force: bool) -> StoreSummary | None:
    """The store about to be replaced, or ``None`` if there is none or (with ``force``) it is not a store."""
    if not db.exists():
        return None
    try:
        return summarize_store(db)
    except StoreError as exc:
        if force:
            return None
        raise RestoreRefused(
            f"{db} exists; pass --force to replace it: it is not a sound paychan store ({exc}); with --force "
            f"it is kept as {db}.replaced-<UTC time>"
        ) from None


def run_restore(args: argparse.Namespace) -> int:
    backup, db = Path(args.backup), Path(args.db)
    source = read_backup(backup)
    if not db.parent.is_dir():
        raise RestoreRefused(f"no folder {db.parent} for {db}; nothing was changed")
    if db.is_dir():
        raise RestoreRefused(f"{db} is a folder, not a store; nothing was changed")
    if db.exists() and db.resolve() == backup.resolve():
        raise RestoreRefused(f"{backup} is the store {db} itself; nothing was changed")
    lock = lock_store(db)
    try:
        existed = db.exists()
        current = read_current(db, args.force)
        newer = [] if current is None else newer_in(current, source)
        if newer and not args.force:
            more = f" and {len(newer) - 1} more channels" if len(newer) > 1 else ""
            raise RestoreRefused(
                f"{db} exists; pass --force to replace it: it holds signed states the backup lacks ({newer[0]}"
                f"{more}); with --force it is kept as {db}.replaced-<UTC time>"
            )
        kept = restore_over(backup, db, source, current, existed)
    finally:
        lock.close()
    report = restore_report(backup, db, source, current, kept, existed, bool(newer))
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "db": str(db),
                    "backup": str(backup),
                    "states": source.state_count,
                    "replacedStates": None if current is None else current.state_count,
                    "keptAs": None if kept is None else str(kept),
                    "report": report,
                }
            )
        )
    else:
        print("\n".join(report))
    return 0


def restore_over(
    backup: Path, db: Path, source: StoreSummary, current: StoreSummary | None, existed: bool
) -> Path | None:
    """Copies ``backup`` beside ``db``, checks the copy, keeps the store it replaces, and renames the copy
    into place; returns where the replaced store was kept (``None`` if there was none)."""
    staged = db.parent / f".{db.name}.restoring-{os.getpid()}"
    try:
        copy_read_only(backup, staged, "WAL")
        mark_staged_restored(staged)
        if summarize_store(staged).channels != source.channels:
            raise RestoreRefused(f"the copy of {backup} does not hold all its states; nothing was changed")
        kept = keep_replaced(db, current) if existed else None
        for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            side.unlink(missing_ok=True)  # empty after the checkpoint; stale beside the restored store
        os.replace(staged, db)
        sync_folder(db.parent)
        return kept
    finally:
        staged.unlink(missing_ok=True)


def mark_staged_restored(staged: Path) -> None:
    """Marks the restored copy (``paychan.node.restored``): the node closes none of its channels unilaterally
    before it has synced with the peer."""
    conn = sqlite3.connect(str(staged))
    try:
        mark_restored(conn)
    finally:
        conn.close()


def restore_report(
    backup: Path,
    db: Path,
    source: StoreSummary,
    current: StoreSummary | None,
    kept: Path | None,
    existed: bool,
    lost_newer: bool,
) -> list[str]:
    lines = [f"restored {db} from {backup} ({source.state_count} states, schema version {source.schema_version})"]
    before = {} if current is None else current.channels
    for cid in sorted(set(before) | set(source.channels)):
        lines.append(
            f"  channel 0x{cid.hex()}: before {_states(before.get(cid))}, after {_states(source.channels.get(cid))}"
        )
    if kept is not None:
        held = "not a paychan store" if current is None else f"{current.state_count} states"
        lines.append(f"the replaced store ({held}) is kept as {kept}")
    elif not existed:
        lines.append(f"there was no store at {db} before")
    if lost_newer:
        lines.append(
            "states signed after the backup are not in the restored store: the node fetches the peer's latest "
            "state when it starts"
        )
    lines.append(
        "the node closes no channel unilaterally before it has synced it with the peer (`paychan close "
        "--unilateral --i-lost-data` overrides that if the peer is gone for good)"
    )
    return lines
