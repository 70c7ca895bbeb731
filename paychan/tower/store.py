"""The tower's store: SQLite in WAL mode with ``synchronous=FULL`` (a commit survives a power cut).

Tables (schema ``SCHEMA_VERSION``, in ``meta``):

- ``opened``: every channel the contract opened (``ChannelOpened``: its parameters) and its phase (closed,
  settled: from its events), so a push is checked against the participants the chain named with no chain
  call, one for a channel never opened is refused at once, and one of a settled channel too;
- ``records``: the record of every closing channel as its events left it (``ChannelClosed``, then each
  ``ChallengeAccepted``, ``RevokedStateProven``), with the deposits and withdrawal counter the ``opened``
  table follows (``Deposited``, ``Withdrawn``): the tower builds the ``RecordedState`` it passes to the
  contract with no chain call, however many channels close in one block;
- ``watched``: per channel and client, the newest accepted push only (O(1) rows per channel: at most one
  per participant), with the channel's phase as the watcher last saw it (open, closing, settled);
- ``meta``: the schema version, the chain id and contract the store belongs to, the watcher's cursor (the
  first block not processed yet), committed in the same transaction as what that block's events changed.

Pushes are written in batches (``put_pushes``: one transaction, one fsync, for many pushes).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paychan.contract import RecordedState
from paychan.exceptions import PaychanError
from paychan.state import ChannelParams
from paychan.tower.protocol import Push, parse_push

SCHEMA_VERSION = 1
CURSOR_KEY = "nextBlock"
PHASE_OPEN, PHASE_CLOSING, PHASE_SETTLED = "open", "closing", "settled"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS opened (
    channel_id BLOB PRIMARY KEY,
    participant_a TEXT NOT NULL,
    participant_b TEXT NOT NULL,
    asset TEXT NOT NULL,
    challenge_period INTEGER NOT NULL,
    number INTEGER NOT NULL,
    phase TEXT NOT NULL DEFAULT 'open',
    deposit_a TEXT NOT NULL DEFAULT '0',
    deposit_b TEXT NOT NULL DEFAULT '0',
    withdrawals INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    channel_id BLOB PRIMARY KEY,
    closed_by TEXT NOT NULL,
    penalized INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    closer_nonce INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    balance_a TEXT NOT NULL,
    balance_b TEXT NOT NULL,
    locked_a TEXT NOT NULL,
    locked_b TEXT NOT NULL,
    locks_root BLOB NOT NULL,
    salt TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watched (
    channel_id BLOB NOT NULL,
    client TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    revoked_below INTEGER NOT NULL,
    secrets INTEGER NOT NULL,
    push TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'open',
    UNIQUE (channel_id, client)
);
"""


class TowerStoreError(PaychanError):
    """Raised when a tower store is of another schema version, chain or contract than expected."""


@dataclass(frozen=True)
class Watched:
    """One held push and the channel's phase."""

    push: Push
    phase: str


@dataclass(frozen=True)
class Held:
    """What the registry keeps in memory of a held push: enough to refuse an older one and to take a newer
    one without reading the held push back."""

    nonce: int
    revoked_below: int
    secrets: int
    phase: str


class TowerStore:
    """The tower's SQLite store (see the module docstring). Used from one thread at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(_SCHEMA)
        version = self.get_meta("schemaVersion")
        if version is None:
            self.set_meta("schemaVersion", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise TowerStoreError(f"tower store {path} has schema {version}; this paychan reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- meta --------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind(self, chain_id: int, contract: str) -> None:
        """Records the chain and contract on first use; raises ``TowerStoreError`` for another one later."""
        for key, value in (("chainId", str(chain_id)), ("contract", contract)):
            known = self.get_meta(key)
            if known is None:
                self.set_meta(key, value)
            elif known != value:
                raise TowerStoreError(f"tower store {self.path} belongs to {key} {known}, not {value}")

    # --- channels the contract opened --------------------------------------------------------------

    def add_opened(self, opened: Iterable[tuple[bytes, ChannelParams]]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO opened (channel_id, participant_a, participant_b, asset, challenge_period, number) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(bytes(cid), *params.as_tuple()) for cid, params in opened],
        )

    def set_opened_phase(self, cid: bytes, phase: str) -> None:
        self.conn.execute("UPDATE opened SET phase = ? WHERE channel_id = ?", (phase, bytes(cid)))

    def note_deposit(self, cid: bytes, participant: str, total: int) -> None:
        self.conn.execute(
            "UPDATE opened SET deposit_a = CASE WHEN participant_a = ? THEN ? ELSE deposit_a END, "
            "deposit_b = CASE WHEN participant_a = ? THEN deposit_b ELSE ? END WHERE channel_id = ?",
            (participant, str(total), participant, str(total), bytes(cid)),
        )

    def note_withdrawn(self, cid: bytes, deposit_a: int, deposit_b: int, withdrawals: int) -> None:
        self.conn.execute(
            "UPDATE opened SET deposit_a = ?, deposit_b = ?, withdrawals = ? WHERE channel_id = ?",
            (str(deposit_a), str(deposit_b), withdrawals, bytes(cid)),
        )

    def note_closed(self, cid: bytes, closed_by: str, args: dict[str, Any]) -> None:
        """A ``ChannelClosed`` event (its ``args``): the record starts."""
        self.conn.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (bytes(cid), closed_by, int(args["deadline"]), int(args["nonce"]), *_outcome(args)),
        )

    def note_challenged(self, cid: bytes, args: dict[str, Any]) -> None:
        """A ``ChallengeAccepted`` event: the record's outcome changes (deadline, closer's nonce do not)."""
        self.conn.execute(
            "UPDATE records SET nonce = ?, balance_a = ?, balance_b = ?, locked_a = ?, locked_b = ?, locks_root = ?,"
            " salt = ? WHERE channel_id = ?",
            (*_outcome(args), bytes(cid)),
        )

    def note_penalized(self, cid: bytes) -> None:
        self.conn.execute("UPDATE records SET penalized = 1 WHERE channel_id = ?", (bytes(cid),))

    def forget_record(self, cid: bytes) -> None:
        self.conn.execute("DELETE FROM records WHERE channel_id = ?", (bytes(cid),))

    def record(self, cid: bytes) -> tuple[RecordedState, str, bool] | None:
        """The closing channel's ``RecordedState``, who closed (``"A"``/``"B"``) and whether the closer was
        proven to have cheated; None for a channel not closing."""
        row = self.conn.execute(
            "SELECT r.closed_by, r.penalized, r.deadline, r.closer_nonce, r.nonce, r.balance_a, r.balance_b,"
            " r.locked_a, r.locked_b, r.locks_root, r.salt, o.deposit_a, o.deposit_b, o.withdrawals"
            " FROM records r JOIN opened o ON o.channel_id = r.channel_id WHERE r.channel_id = ?",
            (bytes(cid),),
        ).fetchone()
        if row is None:
            return None
        closed_by, penalized, deadline, closer_nonce, nonce, bal_a, bal_b, lock_a, lock_b, root, salt = row[:11]
        recorded = RecordedState(
            int(nonce), int(bal_a), int(bal_b), int(deadline), int(row[11]), int(row[12]), int(salt),
            locked_a=int(lock_a), locked_b=int(lock_b), locks_root=bytes(root), withdrawals=int(row[13]),
            closer_nonce=int(closer_nonce),
        )  # fmt: skip
        return recorded, str(closed_by), bool(penalized)

    def opened_phase(self, cid: bytes) -> str | None:
        """The phase of a channel the contract opened (from its events), None for one never opened."""
        row = self.conn.execute("SELECT phase FROM opened WHERE channel_id = ?", (bytes(cid),)).fetchone()
        return None if row is None else str(row[0])

    def params(self, cid: bytes) -> ChannelParams | None:
        row = self.conn.execute(
            "SELECT participant_a, participant_b, asset, challenge_period, number FROM opened WHERE channel_id = ?",
            (bytes(cid),),
        ).fetchone()
        return None if row is None else ChannelParams(*row)

    def opened_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM opened").fetchone()[0])

    # --- held pushes -------------------------------------------------------------------------------

    def put_pushes(self, pushes: Iterable[tuple[Push, str]]) -> None:
        """Stores each push as the one held for its channel and client (replacing the older; a new one
        with the channel's phase given), in one transaction: committed (and synced) when this returns."""
        rows = [
            (bytes(p.channel_id), p.client, p.nonce, p.revoked_below, len(p.secrets), _compact(p.to_json()), phase)
            for p, phase in pushes
        ]
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO watched (channel_id, client, nonce, revoked_below, secrets, push, phase) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel_id, client) DO UPDATE SET nonce = excluded.nonce, "
                "revoked_below = excluded.revoked_below, secrets = excluded.secrets, push = excluded.push",
                rows,
            )

    def watched(self, cid: bytes) -> list[Watched]:
        """The pushes held for channel ``cid`` (one per client)."""
        rows = self.conn.execute("SELECT push, phase FROM watched WHERE channel_id = ?", (bytes(cid),)).fetchall()
        return [Watched(parse_push(json.loads(push)), phase) for push, phase in rows]

    def all_watched(self, phase: str | None = None) -> list[Watched]:
        query, args = "SELECT push, phase FROM watched", ()
        if phase is not None:
            query, args = query + " WHERE phase = ?", (phase,)  # type: ignore[assignment]
        return [Watched(parse_push(json.loads(push)), ph) for push, ph in self.conn.execute(query, args)]

    def held_keys(self) -> dict[tuple[bytes, str], Held]:
        """``(channel, client) -> Held`` of every held push (the registry's in-memory index)."""
        rows = self.conn.execute("SELECT channel_id, client, nonce, revoked_below, secrets, phase FROM watched")
        return {(bytes(row[0]), row[1]): Held(int(row[2]), int(row[3]), int(row[4]), row[5]) for row in rows}

    def set_phase(self, cid: bytes, phase: str) -> None:
        self.conn.execute("UPDATE watched SET phase = ? WHERE channel_id = ?", (phase, bytes(cid)))

    def counts(self) -> dict[str, int]:
        """Held pushes by phase."""
        rows = self.conn.execute("SELECT phase, COUNT(*) FROM watched GROUP BY phase").fetchall()
        return {str(phase): int(count) for phase, count in rows}


def _outcome(args: dict[str, Any]) -> tuple[int, str, str, str, str, bytes, str]:
    """The record's outcome fields of a ``ChannelClosed`` or ``ChallengeAccepted`` event."""
    return (
        int(args["nonce"]),
        str(args["balanceA"]),
        str(args["balanceB"]),
        str(args["lockedA"]),
        str(args["lockedB"]),
        bytes(args["locksRoot"]),
        str(args["salt"]),  # a uint64: above SQLite's signed 64-bit integers
    )


def _compact(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))
