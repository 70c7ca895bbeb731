"""``paychan backup`` and ``paychan restore``: copy a node's store, and put a copy back (node stopped)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from paychan.cli.node import lock_store
from paychan.exceptions import PaychanError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subparsers.add_parser("backup", help="copy a node's store consistently, even while it runs")
    backup.add_argument("--db", required=True)
    backup.add_argument("--out", required=True, help="backup file to write (must not exist)")
    backup.set_defaults(func=run_backup)

    restore = subparsers.add_parser("restore", help="restore a node's store from a backup (node stopped)")
    restore.add_argument("--backup", required=True)
    restore.add_argument("--db", required=True)
    restore.add_argument("--force", action="store_true", help="replace an existing store")
    restore.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    from paychan.node.store import backup_to, integrity_check

    if not Path(args.db).exists():
        raise PaychanError(f"no store at {args.db}")
    if Path(args.out).exists():
        raise PaychanError(f"{args.out} exists; choose a new file")
    backup_to(args.db, args.out)
    check = integrity_check(args.out)
    if check != "ok":
        raise PaychanError(f"backup {args.out} failed its integrity check: {check}")
    print(f"backed up {args.db} -> {args.out}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from paychan.node.store import Store, backup_to, integrity_check

    if integrity_check(args.backup) != "ok":
        raise PaychanError(f"{args.backup} is not a sound store")
    Store(args.backup).close()  # refuses a store from a newer paychan
    lock = lock_store(args.db)
    try:
        if Path(args.db).exists() and not args.force:
            raise PaychanError(f"{args.db} exists; pass --force to replace it")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
        backup_to(args.backup, args.db)
        conn = sqlite3.connect(args.db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    finally:
        lock.close()
    print(
        f"restored {args.db} from {args.backup}. States signed after the backup are not in it: the node fetches "
        "the peer's latest state when it starts.",
        file=sys.stderr,
    )
    return 0
