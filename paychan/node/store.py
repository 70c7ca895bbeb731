"""The node's durable store: channels and every state the node signs, in SQLite.

Durability rules (what the node relies on):

- WAL journal with ``synchronous=FULL``: a committed transaction survives a crash of the process or the
  machine. Each write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction.
- Before the node signs a state it records a *signed intent*: the row ``(channel, nonce)`` with the state's
  hash (and the peer's signature when countersigning). The primary key ``(channel_id, nonce)`` plus the hash
  check in ``record_intent`` make it impossible to sign two different states with one nonce, across crashes
  and restarts: a second, different state at a recorded nonce raises ``DoubleSignRefused``.
- The transaction holding an intent commits before the signature leaves the process (the node answers the
  peer or sends its proposal only after ``commit``).

Our own signature is deterministic (RFC 6979), so a row whose own signature is not yet written still
determines it; the node recomputes it from the key when it loads the row.

The schema is versioned: ``schema_migrations`` lists the migrations applied, in order; a database written by a
newer paychan (a version this code does not know) is refused rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paychan.exceptions import PaychanError
from paychan.node import trace
from paychan.signing import state_struct_hash
from paychan.state import (
    ZERO_ROOT,
    ChannelId,
    ChannelParams,
    ChannelState,
    Lock,
    Nonce,
    Signature,
    SignedState,
    Wei,
    hashlock,
    locks_root,
)

STATUS_OPEN = "open"
STATUS_CLOSING = "closing"
STATUS_CLOSED = "closed"


class StoreError(PaychanError):
    """Raised when the store cannot be opened or its schema is unknown."""


class DoubleSignRefused(PaychanError):
    """Raised when asked to sign a state at a nonce where a different state was already signed."""

    def __init__(self, channel_id: bytes, nonce: int) -> None:
        self.channel_id, self.nonce = channel_id, nonce
        super().__init__(f"DoubleSignRefused(channelId=0x{channel_id.hex()}, nonce={nonce})")


# Each migration is (version, name, statements). Append only: never edit an applied migration.
MIGRATIONS: list[tuple[int, str, Sequence[str]]] = [
    (
        1,
        "channels and signed states",
        (
            """CREATE TABLE node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
            """CREATE TABLE channels (
                channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 32),
                params TEXT NOT NULL,
                role TEXT NOT NULL CHECK (role IN ('A', 'B')),
                peer_url TEXT NOT NULL,
                deposit_a TEXT NOT NULL,
                deposit_b TEXT NOT NULL,
                turn_epoch INTEGER NOT NULL DEFAULT 0,
                status TEXT NOT NULL DEFAULT 'open',
                created_at REAL NOT NULL
            )""",
            """CREATE TABLE states (
                channel_id BLOB NOT NULL REFERENCES channels (channel_id),
                nonce INTEGER NOT NULL CHECK (nonce >= 0),
                state_hash BLOB NOT NULL CHECK (length(state_hash) = 32),
                balance_a TEXT NOT NULL,
                balance_b TEXT NOT NULL,
                locks_root BLOB NOT NULL,
                is_final INTEGER NOT NULL,
                proposer TEXT NOT NULL CHECK (proposer IN ('A', 'B')),
                sig_a BLOB,
                sig_b BLOB,
                recorded_at REAL NOT NULL,
                PRIMARY KEY (channel_id, nonce)
            ) WITHOUT ROWID""",
        ),
    ),
    (
        2,
        "on-chain close and challenge tracking",
        (
            "ALTER TABLE channels ADD COLUMN close_nonce INTEGER",
            "ALTER TABLE channels ADD COLUMN close_deadline INTEGER",
            "ALTER TABLE channels ADD COLUMN challenged_nonce INTEGER",
        ),
    ),
    (
        3,
        "states commit to the deposits they split (SECURITY.md F1)",
        (
            # States stored before this were signed for the old EIP-712 State (no deposits), which the
            # contract no longer accepts: they keep '0' and their old hash, and only serve as history.
            "ALTER TABLE states ADD COLUMN deposit_a TEXT NOT NULL DEFAULT '0'",
            "ALTER TABLE states ADD COLUMN deposit_b TEXT NOT NULL DEFAULT '0'",
        ),
    ),
    (
        4,
        "signed announces (newest wins) and closing records from chain events",
        (
            # The peer URL is set only by the counterparty's signed announce; peer_url_at is the
            # millisecond timestamp of the announce that set it (a later one replaces it, an older one not).
            "ALTER TABLE channels ADD COLUMN peer_url_at INTEGER NOT NULL DEFAULT 0",
            # The record of a closing channel as its last ChannelClosed/ChallengeAccepted event states it
            # (with close_nonce and close_deadline): what challenge and settle pass back to the contract.
            "ALTER TABLE channels ADD COLUMN close_balance_a TEXT",
            "ALTER TABLE channels ADD COLUMN close_balance_b TEXT",
            "ALTER TABLE channels ADD COLUMN close_salt TEXT",
        ),
    ),
    (
        5,
        "contract v2: locked totals and withdrawal counter in states, the full v2 record, revocations",
        (
            "ALTER TABLE states ADD COLUMN locked_a TEXT NOT NULL DEFAULT '0'",
            "ALTER TABLE states ADD COLUMN locked_b TEXT NOT NULL DEFAULT '0'",
            "ALTER TABLE states ADD COLUMN withdrawals INTEGER NOT NULL DEFAULT 0",
            # The rest of the v2 record (ChannelClosed/ChallengeAccepted): locked totals and root of the
            # recorded state, the withdrawal counter and the closer's nonce (ChannelClosed only: a challenge
            # keeps them), who closed ('A'/'B') and whether the closer was proven to have cheated.
            "ALTER TABLE channels ADD COLUMN close_locked_a TEXT",
            "ALTER TABLE channels ADD COLUMN close_locked_b TEXT",
            "ALTER TABLE channels ADD COLUMN close_locks_root BLOB",
            "ALTER TABLE channels ADD COLUMN close_withdrawals INTEGER",
            "ALTER TABLE channels ADD COLUMN closer_nonce INTEGER",
            "ALTER TABLE channels ADD COLUMN closed_by TEXT CHECK (closed_by IN ('A', 'B'))",
            "ALTER TABLE channels ADD COLUMN penalized INTEGER NOT NULL DEFAULT 0",
            # The open channel's withdrawal counter (Withdrawn events).
            "ALTER TABLE channels ADD COLUMN withdrawals INTEGER NOT NULL DEFAULT 0",
            # Revocations: the highest belowNonce we signed (0: none), and the peer's highest with its
            # signature (the evidence proveRevoked needs if the peer closes with a state it revoked).
            "ALTER TABLE channels ADD COLUMN own_revocation INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE channels ADD COLUMN peer_revocation INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE channels ADD COLUMN peer_revocation_sig BLOB",
        ),
    ),
    (
        6,
        "conditional payments: the lock list of every state signed, and the secrets the node knows",
        (
            # A state commits to its lock list by its root (keccak of the packed list): each list is kept
            # under its root, written in the transaction of the first state signed with it, before the
            # signature leaves. Settling a closed channel needs the list of the recorded state's root.
            """CREATE TABLE lock_lists (
                channel_id BLOB NOT NULL REFERENCES channels (channel_id),
                locks_root BLOB NOT NULL CHECK (length(locks_root) = 32),
                locks TEXT NOT NULL,
                PRIMARY KEY (channel_id, locks_root)
            ) WITHOUT ROWID""",
            # Secrets (preimages of SHA-256 hashlocks) the node knows: its own, or learned from the peer's
            # settlement. The contract's registry is shared by all channels, so they are kept by hashlock
            # only; revealed_at is the timestamp the chain recorded once the watcher revealed it.
            """CREATE TABLE secrets (
                hashlock BLOB PRIMARY KEY CHECK (length(hashlock) = 32),
                secret BLOB NOT NULL CHECK (length(secret) = 32),
                learned_at REAL NOT NULL,
                revealed_at INTEGER
            ) WITHOUT ROWID""",
        ),
    ),
    (
        7,
        "what the settlement paid each side (ChannelSettled), which a penalty makes differ from the last state",
        (
            "ALTER TABLE channels ADD COLUMN payout_a TEXT",
            "ALTER TABLE channels ADD COLUMN payout_b TEXT",
        ),
    ),
    (
        8,
        "the channel graph: every channel open on the contract, and the newest fee announcement per channel and node",
        (
            # Every open channel of the contract (not only ours), as the watcher read it from the events, in the
            # transaction of the page that carried them: the graph is rebuilt from here at start, and the
            # watcher's cursor (node_meta) resumes after it. A channel that closes is deleted with its fees.
            """CREATE TABLE graph_channels (
                channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 32),
                params TEXT NOT NULL,
                deposit_a TEXT NOT NULL,
                deposit_b TEXT NOT NULL
            ) WITHOUT ROWID""",
            # The newest signed announcement of each node for each channel (ours, and what peers sent), as JSON.
            """CREATE TABLE fee_announcements (
                channel_id BLOB NOT NULL REFERENCES graph_channels (channel_id) ON DELETE CASCADE,
                node TEXT NOT NULL,
                timestamp INTEGER NOT NULL,
                announcement TEXT NOT NULL,
                PRIMARY KEY (channel_id, node)
            ) WITHOUT ROWID""",
            # A store that watched the chain before it kept the graph: the watcher reads the channel events of
            # the blocks it had processed once more, for the graph only (paychan.node.network.backfill).
            "INSERT INTO node_meta (key, value) SELECT 'graph.backfillTo', value FROM node_meta"
            " WHERE key = 'watcher.nextBlock'",
        ),
    ),
    (
        9,
        "mediated transfers: the state of every payment the node makes, forwards or receives",
        (
            # One row per payment id: the transfer machine's state as JSON (paychan.transfer.codec), written
            # in the transaction of the step that produced it (with the channel state it signs, when there is
            # one) and before any of the step's actions leaves the process; the hashlock and the payer's URL
            # (where the payee asks for the secret) beside it. done: nothing of the payment can move any more.
            """CREATE TABLE transfers (
                payment_id TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('initiator', 'mediator', 'target')),
                hashlock BLOB NOT NULL CHECK (length(hashlock) = 32),
                initiator_url TEXT NOT NULL,
                state TEXT NOT NULL,
                done INTEGER NOT NULL DEFAULT 0,
                updated_at REAL NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX transfers_by_hashlock ON transfers (hashlock)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class ChannelRecord:
    """A channel the node takes part in: parameters, our role, the peer's endpoint, deposits and turn."""

    channel_id: ChannelId
    params: ChannelParams
    role: str
    peer_url: str
    deposit_a: int
    deposit_b: int
    turn_epoch: int = 0
    status: str = STATUS_OPEN
    close_nonce: int | None = None
    close_deadline: int | None = None
    challenged_nonce: int | None = None
    peer_url_at: int = 0
    close_balance_a: int | None = None
    close_balance_b: int | None = None
    close_salt: int | None = None
    close_locked_a: int = 0
    close_locked_b: int = 0
    close_locks_root: bytes = ZERO_ROOT
    close_withdrawals: int = 0
    closer_nonce: int | None = None
    closed_by: str | None = None
    penalized: bool = False
    withdrawals: int = 0
    own_revocation: int = 0
    peer_revocation: int = 0
    peer_revocation_sig: Signature | None = None
    payout_a: int | None = None  # what the settlement paid A and B (``ChannelSettled``), once the node saw it
    payout_b: int | None = None

    @property
    def has_close_record(self) -> bool:
        """Whether the record of a closing channel is known in full (nonce, balances, deadline, salt and
        the closer's nonce)."""
        return None not in (
            self.close_nonce,
            self.close_deadline,
            self.close_balance_a,
            self.close_salt,
            self.closer_nonce,
        )


@dataclass(frozen=True)
class ClosedBy:
    """Who closed a channel (``role``), with which nonce and under which withdrawal counter (``ChannelClosed``)."""

    role: str
    nonce: int
    withdrawals: int


@dataclass(frozen=True)
class StoredState:
    """One row of ``states``: a state the node signed or is about to sign, with the signatures known."""

    state: ChannelState
    proposer: str
    sig_a: Signature | None
    sig_b: Signature | None
    state_hash: bytes

    @property
    def signed(self) -> SignedState:
        return SignedState(self.state, self.sig_a, self.sig_b)


def _sig(blob: bytes | None) -> Signature | None:
    return None if blob is None else Signature.from_bytes(bytes(blob))


def _blob(sig: Signature | None) -> bytes | None:
    return None if sig is None else sig.to_bytes()


class Store:
    """The SQLite store of one node. Use from one thread; ``backup`` may run while the node writes."""

    def __init__(self, path: str | Path, migrations: Sequence[tuple[int, str, Sequence[str]]] = MIGRATIONS) -> None:
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._depth = 0
        # called before each outermost transaction commits; one that raises rolls the transaction back
        # (the node's remote signer refuses a commit of a dry run's placeholder signatures)
        self.before_commit: list[Callable[[], None]] = []
        self._after: list[tuple[Callable[[], None], Callable[[], None] | None]] = []
        self._migrate(migrations)

    # --- schema ----------------------------------------------------------------------------------

    def _migrate(self, migrations: Sequence[tuple[int, str, Sequence[str]]]) -> None:
        with self.transaction():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            applied = {row[0] for row in self.conn.execute("SELECT version FROM schema_migrations")}
            known = {version for version, _, _ in migrations}
            unknown = sorted(applied - known)
            if unknown:
                raise StoreError(
                    f"store {self.path} has schema version {max(unknown)}, newer than this paychan knows "
                    f"({max(known)}); upgrade paychan"
                )
            for version, name, statements in sorted(migrations, key=lambda m: m[0]):
                if version in applied:
                    continue
                for statement in statements:
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )

    @property
    def schema_version(self) -> int:
        row = self.conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def applied_migrations(self) -> list[tuple[int, str]]:
        return [
            (int(v), str(n))
            for v, n in self.conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        ]

    # --- transactions ----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable transaction (nested uses join the outer one); rolled back if the block raises."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        self._after = []
        opened_by = trace.caller(3)
        try:
            yield
            for hook in self.before_commit:
                hook()
        except BaseException:
            self._depth = 0
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._run_after(committed=False)
            raise
        self._depth = 0
        started = trace.now()
        try:
            self.conn.execute("COMMIT")
            trace.note("COMMIT", started, opened_by)
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._run_after(committed=False)
            raise
        self._run_after(committed=True)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the current transaction undone alone if the block raises (the transaction goes on). What
        ``after_transaction`` registered inside it stays registered: a caller whose part may be undone
        registers nothing inside it."""
        if not self._depth:
            raise StoreError("savepoint outside a transaction")
        self.conn.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO part")
            self.conn.execute("RELEASE part")
            raise
        self.conn.execute("RELEASE part")

    def after_transaction(self, committed: Callable[[], None], rolled_back: Callable[[], None] | None = None) -> None:
        """Calls ``committed`` once the current (outermost) transaction has committed, or ``rolled_back`` if it
        does not: what waits for a write to be durable learns it then, not when it is written."""
        if not self._depth:
            raise StoreError("after_transaction outside a transaction")
        self._after.append((committed, rolled_back))

    def _run_after(self, committed: bool) -> None:
        hooks, self._after = self._after, []
        for on_commit, on_rollback in hooks:
            hook = on_commit if committed else on_rollback
            if hook is not None:
                hook()

    def close(self) -> None:
        self.conn.close()

    # --- node metadata ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM node_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO node_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- channels --------------------------------------------------------------------------------

    def add_channel(self, record: ChannelRecord) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO channels (channel_id, params, role, peer_url, deposit_a, deposit_b, turn_epoch, status,"
                " created_at, peer_url_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.channel_id,
                    json.dumps(record.params.to_json()),
                    record.role,
                    record.peer_url,
                    str(record.deposit_a),
                    str(record.deposit_b),
                    record.turn_epoch,
                    record.status,
                    time.time(),
                    record.peer_url_at,
                ),
            )

    _CHANNEL_COLUMNS = (
        "channel_id, params, role, peer_url, deposit_a, deposit_b, turn_epoch, status, close_nonce, close_deadline,"
        " challenged_nonce, peer_url_at, close_balance_a, close_balance_b, close_salt, close_locked_a, close_locked_b,"
        " close_locks_root, close_withdrawals, closer_nonce, closed_by, penalized, withdrawals, own_revocation,"
        " peer_revocation, peer_revocation_sig, payout_a, payout_b"
    )

    @staticmethod
    def _channel_from_row(row: Any) -> ChannelRecord:
        cid, params, role, peer_url, dep_a, dep_b, epoch, status, close_nonce, close_deadline, challenged = row[:11]
        peer_url_at, close_a, close_b, salt = row[11:15]
        locked_a, locked_b, root, close_withdrawals, closer_nonce, closed_by, penalized, withdrawals = row[15:23]
        own_revocation, peer_revocation, peer_revocation_sig, payout_a, payout_b = row[23:]
        return ChannelRecord(
            ChannelId(bytes(cid)),
            ChannelParams.from_json(json.loads(str(params))),
            str(role),
            str(peer_url),
            int(str(dep_a)),
            int(str(dep_b)),
            int(epoch),
            str(status),
            None if close_nonce is None else int(close_nonce),
            None if close_deadline is None else int(close_deadline),
            None if challenged is None else int(challenged),
            int(peer_url_at),
            None if close_a is None else int(str(close_a)),
            None if close_b is None else int(str(close_b)),
            None if salt is None else int(str(salt)),
            0 if locked_a is None else int(str(locked_a)),
            0 if locked_b is None else int(str(locked_b)),
            ZERO_ROOT if root is None else bytes(root),
            int(close_withdrawals or 0),
            None if closer_nonce is None else int(closer_nonce),
            None if closed_by is None else str(closed_by),
            bool(penalized),
            int(withdrawals),
            int(own_revocation),
            int(peer_revocation),
            _sig(peer_revocation_sig),
            None if payout_a is None else int(str(payout_a)),
            None if payout_b is None else int(str(payout_b)),
        )

    def channels(self) -> list[ChannelRecord]:
        rows = self.conn.execute(f"SELECT {self._CHANNEL_COLUMNS} FROM channels ORDER BY created_at")
        return [self._channel_from_row(tuple(r)) for r in rows]

    def channel(self, cid: bytes) -> ChannelRecord | None:
        row = self.conn.execute(f"SELECT {self._CHANNEL_COLUMNS} FROM channels WHERE channel_id = ?", (cid,)).fetchone()
        return None if row is None else self._channel_from_row(tuple(row))

    def set_turn_epoch(self, cid: bytes, epoch: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE channels SET turn_epoch = max(turn_epoch, ?) WHERE channel_id = ?", (epoch, cid))

    def set_deposits(self, cid: bytes, deposit_a: int, deposit_b: int) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET deposit_a = ?, deposit_b = ? WHERE channel_id = ?",
                (str(deposit_a), str(deposit_b), cid),
            )

    def set_status(
        self, cid: bytes, status: str, close_nonce: int | None = None, close_deadline: int | None = None
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET status = ?, close_nonce = coalesce(?, close_nonce),"
                " close_deadline = coalesce(?, close_deadline) WHERE channel_id = ?",
                (status, close_nonce, close_deadline, cid),
            )

    def set_peer_url(self, cid: bytes, peer_url: str, announced_at: int) -> bool:
        """Sets the peer's URL if ``announced_at`` is newer than the announce that set the current one."""
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE channels SET peer_url = ?, peer_url_at = ? WHERE channel_id = ? AND peer_url_at < ?",
                (peer_url, announced_at, cid, announced_at),
            )
        return cursor.rowcount == 1

    def set_close_record(
        self,
        cid: bytes,
        nonce: int,
        balance_a: int,
        balance_b: int,
        salt: int,
        deadline: int | None = None,
        *,
        locked_a: int = 0,
        locked_b: int = 0,
        locks_root: bytes = ZERO_ROOT,
        closed: ClosedBy | None = None,
    ) -> None:
        """Marks the channel closing with the record of its last ``ChannelClosed``/``ChallengeAccepted``.

        ``closed`` (from ``ChannelClosed`` only) is who closed, with which nonce and withdrawal counter; a
        challenge keeps them. A new close (a channel reopened under the same id cannot happen: the number
        differs) also clears the penalty flag."""
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET status = ?, close_nonce = ?, close_balance_a = ?, close_balance_b = ?,"
                " close_salt = ?, close_deadline = coalesce(?, close_deadline), close_locked_a = ?,"
                " close_locked_b = ?, close_locks_root = ? WHERE channel_id = ?",
                (
                    STATUS_CLOSING,
                    nonce,
                    str(balance_a),
                    str(balance_b),
                    str(salt),
                    deadline,
                    str(locked_a),
                    str(locked_b),
                    locks_root,
                    cid,
                ),
            )
            if closed is not None:
                self.conn.execute(
                    "UPDATE channels SET closer_nonce = ?, closed_by = ?, close_withdrawals = ?, penalized = 0"
                    " WHERE channel_id = ?",
                    (closed.nonce, closed.role, closed.withdrawals, cid),
                )

    def set_settled(self, cid: bytes, payout_a: int, payout_b: int) -> None:
        """The channel is closed and its settlement paid A ``payout_a`` and B ``payout_b`` (``ChannelSettled``)."""
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET status = ?, payout_a = ?, payout_b = ? WHERE channel_id = ?",
                (STATUS_CLOSED, str(payout_a), str(payout_b), cid),
            )

    def set_penalized(self, cid: bytes) -> None:
        """The closer of the channel was proven to have closed with a state it revoked (RevokedStateProven)."""
        with self.transaction():
            self.conn.execute("UPDATE channels SET penalized = 1 WHERE channel_id = ?", (cid,))

    def set_withdrawn(self, cid: bytes, withdrawals: int, deposit_a: int, deposit_b: int) -> None:
        """A withdrawal left the channel with these deposits and this counter (``Withdrawn``)."""
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET withdrawals = max(withdrawals, ?), deposit_a = ?, deposit_b = ?"
                " WHERE channel_id = ? AND withdrawals < ?",
                (withdrawals, str(deposit_a), str(deposit_b), cid, withdrawals),
            )

    def set_own_revocation(self, cid: bytes, below_nonce: int) -> None:
        """We signed a revocation of every nonce below ``below_nonce`` (kept if higher than the stored one).
        Stored before the revocation leaves the process."""
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET own_revocation = max(own_revocation, ?) WHERE channel_id = ?", (below_nonce, cid)
            )

    def set_peer_revocation(self, cid: bytes, below_nonce: int, signature: Signature) -> None:
        """The peer's revocation of every nonce below ``below_nonce``, with its signature (if higher)."""
        with self.transaction():
            self.conn.execute(
                "UPDATE channels SET peer_revocation = ?, peer_revocation_sig = ?"
                " WHERE channel_id = ? AND peer_revocation < ?",
                (below_nonce, signature.to_bytes(), cid, below_nonce),
            )

    def set_challenged(self, cid: bytes, nonce: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE channels SET challenged_nonce = ? WHERE channel_id = ?", (nonce, cid))

    # --- locks and secrets -----------------------------------------------------------------------

    def put_lock_list(self, cid: bytes, locks: Sequence[Lock]) -> bytes:
        """Keeps the lock list ``locks`` under its root (idempotent; nothing for the empty list); joins the
        caller's transaction. Returns the root."""
        root = locks_root(tuple(locks))
        if locks:
            with self.transaction():
                self.conn.execute(
                    "INSERT INTO lock_lists (channel_id, locks_root, locks) VALUES (?, ?, ?)"
                    " ON CONFLICT (channel_id, locks_root) DO NOTHING",
                    (cid, root, json.dumps([lock.to_json() for lock in locks])),
                )
        return root

    def lock_list(self, cid: bytes, root: bytes) -> tuple[Lock, ...] | None:
        """The lock list of root ``root`` (empty for the zero root), None if the store does not hold it."""
        if root == ZERO_ROOT:
            return ()
        row = self.conn.execute(
            "SELECT locks FROM lock_lists WHERE channel_id = ? AND locks_root = ?", (cid, root)
        ).fetchone()
        if row is None:
            return None
        locks = tuple(Lock.from_json(item) for item in json.loads(str(row[0])))
        if locks_root(locks) != root:
            raise StoreError(f"the lock list stored under root 0x{root.hex()} does not hash to it")
        return locks

    def add_secret(self, secret: bytes) -> bytes:
        """Keeps a 32-byte secret (idempotent; joins the caller's transaction); returns its hashlock."""
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise ValueError("a secret is 32 bytes")
        lock_hash = hashlock(secret)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO secrets (hashlock, secret, learned_at) VALUES (?, ?, ?) ON CONFLICT (hashlock) DO NOTHING",
                (lock_hash, secret, time.time()),
            )
        return lock_hash

    # --- mediated transfers (paychan.node.transfers) -----------------------------------------------

    def put_transfer(
        self, payment_id: int, role: str, lock_hash: bytes, initiator_url: str, state: str, done: bool
    ) -> None:
        """Keeps the machine state of payment ``payment_id`` (joins the caller's transaction)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO transfers (payment_id, role, hashlock, initiator_url, state, done, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payment_id) DO UPDATE SET role = excluded.role,"
                " hashlock = excluded.hashlock, initiator_url = excluded.initiator_url, state = excluded.state,"
                " done = excluded.done, updated_at = excluded.updated_at",
                (str(payment_id), role, lock_hash, initiator_url, state, int(done), time.time()),
            )

    def transfers(self) -> list[tuple[int, str, str]]:
        """Every kept payment: its id, the payer's URL and the machine state (JSON), oldest first."""
        return [
            (int(pid), str(url), str(state))
            for pid, url, state in self.conn.execute(
                "SELECT payment_id, initiator_url, state FROM transfers ORDER BY updated_at"
            )
        ]

    # --- the channel graph (paychan.node.network) -------------------------------------------------

    def put_graph_channel(self, cid: bytes, params: ChannelParams, deposit_a: int, deposit_b: int) -> None:
        """Keeps (or updates the deposits of) an open channel of the contract (joins the caller's transaction)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO graph_channels (channel_id, params, deposit_a, deposit_b) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (channel_id) DO UPDATE SET deposit_a = excluded.deposit_a,"
                " deposit_b = excluded.deposit_b",
                (cid, json.dumps(params.to_json()), str(deposit_a), str(deposit_b)),
            )

    def delete_graph_channel(self, cid: bytes) -> None:
        """Forgets a channel that closed, with its fee announcements."""
        with self.transaction():
            self.conn.execute("DELETE FROM fee_announcements WHERE channel_id = ?", (cid,))
            self.conn.execute("DELETE FROM graph_channels WHERE channel_id = ?", (cid,))

    def graph_channels(self) -> list[tuple[ChannelId, ChannelParams, int, int]]:
        """Every channel kept by ``put_graph_channel``: id, parameters, deposits."""
        return [
            (ChannelId(bytes(cid)), ChannelParams.from_json(json.loads(params)), int(a), int(b))
            for cid, params, a, b in self.conn.execute(
                "SELECT channel_id, params, deposit_a, deposit_b FROM graph_channels"
            )
        ]

    def put_fee_announcement(self, cid: bytes, node: str, timestamp: int, announcement: dict[str, Any]) -> None:
        """Keeps ``node``'s newest announcement for ``cid`` (the caller checked it is newer)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO fee_announcements (channel_id, node, timestamp, announcement) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (channel_id, node) DO UPDATE SET timestamp = excluded.timestamp,"
                " announcement = excluded.announcement",
                (cid, node, timestamp, json.dumps(announcement, separators=(",", ":"))),
            )

    def fee_announcements(self) -> list[dict[str, Any]]:
        """Every kept announcement, as JSON (``FeeAnnouncement.to_json``)."""
        return [json.loads(row[0]) for row in self.conn.execute("SELECT announcement FROM fee_announcements")]

    def secret(self, lock_hash: bytes) -> bytes | None:
        """The secret of ``lock_hash``, if the node knows it."""
        row = self.conn.execute("SELECT secret FROM secrets WHERE hashlock = ?", (lock_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def secret_revealed_at(self, lock_hash: bytes) -> int | None:
        """When the chain recorded our reveal of the secret of ``lock_hash`` (None: not revealed by us)."""
        row = self.conn.execute("SELECT revealed_at FROM secrets WHERE hashlock = ?", (lock_hash,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_secret_revealed(self, lock_hash: bytes, revealed_at: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE secrets SET revealed_at = ? WHERE hashlock = ?", (revealed_at, lock_hash))

    # --- states ----------------------------------------------------------------------------------

    def record_intent(self, signed: SignedState, proposer: str) -> bytes:
        """Records that we are about to sign ``signed.state`` (with the signatures it already carries).

        Idempotent for the same state; raises ``DoubleSignRefused`` if a different state is recorded at its
        nonce. Joins the caller's transaction, if any: the caller commits before the signature leaves.
        """
        state = signed.state
        state_hash = state_struct_hash(state)
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO states (channel_id, nonce, state_hash, balance_a, balance_b, deposit_a, deposit_b,"
                " locks_root, is_final, proposer, sig_a, sig_b, recorded_at, locked_a, locked_b, withdrawals)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel_id, nonce) DO NOTHING",
                (
                    state.channel_id,
                    state.nonce,
                    state_hash,
                    str(state.balance_a),
                    str(state.balance_b),
                    str(state.deposit_a),
                    str(state.deposit_b),
                    state.locks_root,
                    int(state.is_final),
                    proposer,
                    _blob(signed.sig_a),
                    _blob(signed.sig_b),
                    time.time(),
                    str(state.locked_a),
                    str(state.locked_b),
                    state.withdrawals,
                ),
            )
            if cursor.rowcount == 0:
                row = self.conn.execute(
                    "SELECT state_hash FROM states WHERE channel_id = ? AND nonce = ?", (state.channel_id, state.nonce)
                ).fetchone()
                if bytes(row[0]) != state_hash:
                    raise DoubleSignRefused(state.channel_id, state.nonce)
                self.add_signatures(signed)
        return state_hash

    def forget_intent(self, state: ChannelState, proposer: str) -> bool:
        """Deletes the intent recorded for our own ``state`` (``proposer``: our role) while it still lacks the
        peer's signature: it never reached the peer (or the peer refused it), so its nonce is free again.
        A countersigned state is never deleted. Whether a row went."""
        peer_column = "sig_b" if proposer == "A" else "sig_a"
        with self.transaction():
            cursor = self.conn.execute(
                f"DELETE FROM states WHERE channel_id = ? AND nonce = ? AND state_hash = ? AND proposer = ?"
                f" AND {peer_column} IS NULL",
                (state.channel_id, state.nonce, state_struct_hash(state), proposer),
            )
        return cursor.rowcount > 0

    def add_signatures(self, *signed_states: SignedState) -> None:
        """Adds the signatures each state carries to its (already recorded, identical) state's row.

        Raises ``DoubleSignRefused`` (and writes nothing) if any of them differs from the recorded state.
        """
        rows = [
            (_blob(s.sig_a), _blob(s.sig_b), s.state.channel_id, s.state.nonce, state_struct_hash(s.state))
            for s in signed_states
        ]
        with self.transaction():
            cursor = self.conn.executemany(
                "UPDATE states SET sig_a = coalesce(sig_a, ?), sig_b = coalesce(sig_b, ?)"
                " WHERE channel_id = ? AND nonce = ? AND state_hash = ?",
                rows,
            )
            if cursor.rowcount != len(rows):
                for s in signed_states:  # name the first that differs; the transaction rolls back
                    row = self.state_at(s.state.channel_id, s.state.nonce)
                    if row is None or row.state_hash != state_struct_hash(s.state):
                        raise DoubleSignRefused(s.state.channel_id, s.state.nonce)
                raise DoubleSignRefused(signed_states[0].state.channel_id, signed_states[0].state.nonce)

    _STATE_COLUMNS = (
        "channel_id, nonce, balance_a, balance_b, deposit_a, deposit_b, locks_root, is_final, proposer, sig_a, sig_b,"
        " state_hash, locked_a, locked_b, withdrawals"
    )

    @staticmethod
    def _state_from_row(row: Any) -> StoredState:
        cid, nonce, bal_a, bal_b, dep_a, dep_b, root, final, proposer, sig_a, sig_b, state_hash = row[:12]
        locked_a, locked_b, withdrawals = row[12:]
        state = ChannelState(
            ChannelId(bytes(cid)),
            Nonce(int(nonce)),
            Wei(int(str(bal_a))),
            Wei(int(str(bal_b))),
            bytes(root),
            bool(final),
            deposit_a=Wei(int(str(dep_a))),
            deposit_b=Wei(int(str(dep_b))),
            locked_a=Wei(int(str(locked_a))),
            locked_b=Wei(int(str(locked_b))),
            withdrawals=int(withdrawals),
        )
        return StoredState(state, str(proposer), _sig(sig_a), _sig(sig_b), bytes(state_hash))

    def states(self, cid: bytes, after: int = -1) -> list[StoredState]:
        """The channel's recorded states with nonce greater than ``after``, in nonce order."""
        rows = self.conn.execute(
            f"SELECT {self._STATE_COLUMNS} FROM states WHERE channel_id = ? AND nonce > ? ORDER BY nonce", (cid, after)
        )
        return [self._state_from_row(tuple(r)) for r in rows]

    def state_at(self, cid: bytes, nonce: int) -> StoredState | None:
        row = self.conn.execute(
            f"SELECT {self._STATE_COLUMNS} FROM states WHERE channel_id = ? AND nonce = ?", (cid, nonce)
        ).fetchone()
        return None if row is None else self._state_from_row(tuple(row))

    def latest_complete(self, cid: bytes, own_role: str) -> StoredState | None:
        """The highest-nonce state carrying the peer's signature (ours is ours to compute, if missing)."""
        peer_column = "sig_b" if own_role == "A" else "sig_a"
        row = self.conn.execute(
            f"SELECT {self._STATE_COLUMNS} FROM states WHERE channel_id = ? AND {peer_column} IS NOT NULL"
            " ORDER BY nonce DESC LIMIT 1",
            (cid,),
        ).fetchone()
        return None if row is None else self._state_from_row(tuple(row))

    # --- backup ----------------------------------------------------------------------------------

    def backup(self, destination: str | Path) -> None:
        """Writes a consistent copy of the store to ``destination`` (SQLite's online backup API)."""
        backup_to(self.path, destination)


def backup_to(source: str | Path, destination: str | Path) -> None:
    """Copies the store at ``source`` to ``destination`` consistently, even while a node writes to it."""
    src = sqlite3.connect(str(source), timeout=30.0)
    try:
        dst = sqlite3.connect(str(destination))
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def integrity_check(path: str | Path) -> str:
    conn = sqlite3.connect(str(path))
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# --- read-only inspection (restore checks): opens an existing file and never creates or changes one ------

SQLITE_HEADER = b"SQLite format 3\x00"
_STORE_TABLES = ("schema_migrations", "channels", "states")


@dataclass(frozen=True)
class ChannelStates:
    """How many states a store holds for one channel, and the highest nonce among them (-1 if none)."""

    count: int
    max_nonce: int


@contextmanager
def read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the existing SQLite file ``path``; raises ``StoreError`` if it is missing or
    not SQLite. Never creates a file: a WAL-mode file without a ``-wal`` beside it is opened immutable (there
    is no log to read), and a ``-shm`` or ``-wal`` SQLite creates beside a live log is removed again."""
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"no file at {file}")
    with file.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise StoreError(f"{file} is not a SQLite database" + (" (it is empty)" if not header else ""))
    sidecars = [Path(f"{file}-wal"), Path(f"{file}-shm")]
    existing = {side for side in sidecars if side.exists()}
    immutable = header[18] == 2 and Path(f"{file}-wal") not in existing
    uri = file.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(uri, uri=True)
    try:
        yield conn
    finally:
        conn.close()
        for side in sidecars:
            if side not in existing:
                side.unlink(missing_ok=True)


def read_schema_version(conn: sqlite3.Connection, name: str | Path) -> int:
    """The schema version of the paychan store open on ``conn`` (``name`` for messages); raises
    ``StoreError`` if it is not a paychan store or was written by a newer paychan than this one."""
    try:
        tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [table for table in _STORE_TABLES if table not in tables]
        if missing:
            raise StoreError(f"{name} is not a paychan store (tables missing: {', '.join(missing)})")
        versions = {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{name} is not a sound SQLite database ({exc})") from None
    known = {version for version, _, _ in MIGRATIONS}
    if versions - known:
        raise StoreError(
            f"{name} has schema version {max(versions - known)}, newer than this paychan knows "
            f"({SCHEMA_VERSION}); upgrade paychan"
        )
    return max(versions, default=0)


def read_integrity(conn: sqlite3.Connection) -> str:
    """SQLite's ``integrity_check`` of the database open on ``conn``: ``"ok"`` or the first problem."""
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        return str(exc)


def read_channel_states(conn: sqlite3.Connection) -> dict[bytes, ChannelStates]:
    """Every channel of the store open on ``conn`` with its count of states and highest nonce."""
    found = {bytes(row[0]): ChannelStates(0, -1) for row in conn.execute("SELECT channel_id FROM channels")}
    for cid, count, max_nonce in conn.execute("SELECT channel_id, count(*), max(nonce) FROM states GROUP BY 1"):
        found[bytes(cid)] = ChannelStates(int(count), int(max_nonce))
    return found
