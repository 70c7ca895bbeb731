"""A node restored from a backup does not close a channel unilaterally before it has synced with its peer.

After ``paychan restore`` the store may lack states signed after the backup, and with them the revocations
we signed: closing with the latest state the backup holds may close below our own revocation, which lets
the peer take the whole channel (``proveRevoked``). ``paychan restore`` therefore marks the store
(``RESTORED_KEY``); a channel of a marked store counts as synced once the node has exchanged latest states
with the peer (``Node._sync_first``: the peer's newer state adopted, or none newer), noted per channel
(``synced_key``). Until then ``close --unilateral`` is refused (``RestoredNotSynced``) unless the user, whose
peer is gone for good, overrides it (``--i-lost-data``): the node then closes with the latest state it has.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from paychan.channel import Channel
from paychan.exceptions import PaychanError
from paychan.node.store import ChannelRecord, Store
from paychan.state import ChannelState

RESTORED_KEY = "restoredAt"  # node_meta: when ``paychan restore`` wrote this store (UTC, ISO 8601)


def synced_key(cid: bytes) -> str:
    return f"syncedAfterRestore:0x{cid.hex()}"


class RestoredNotSynced(PaychanError):
    """Raised when closing unilaterally a channel of a restored store that has not synced with its peer."""

    def __init__(self, channel_id: bytes, restored_at: str) -> None:
        self.channel_id, self.restored_at = channel_id, restored_at
        super().__init__(
            f"this node's store was restored from a backup ({restored_at}) and channel 0x{channel_id.hex()} has "
            "not synced with the peer since: its latest state may be one you revoked after the backup, and "
            "closing with it would let the peer take the whole channel. Start the peer's node (this node syncs "
            "by itself), or, if the peer is gone for good, run `paychan close --unilateral --i-lost-data` to "
            "close with the latest state this node has (see README: I lost data and my peer is gone)"
        )


class SyncDeferred(PaychanError):
    """Raised when the peer's newer state splits other funds than this node knows of yet (a deposit or
    withdrawal its watcher has not seen): the node syncs again later and signs nothing new meanwhile."""

    def __init__(self, channel_id: bytes, nonce: int, theirs: int, ours: int) -> None:
        self.channel_id, self.nonce, self.theirs, self.ours = channel_id, nonce, theirs, ours
        super().__init__(
            f"channel 0x{channel_id.hex()}: the peer's newer state {nonce} splits {theirs}, this node knows of "
            f"{ours}: syncing again once the chain's deposits are seen"
        )


def splits_known_funds(record: ChannelRecord, channel: Channel, state: ChannelState) -> bool:
    """Whether a newer state the peer holds splits the funds this node knows the channel holds: the same
    total as our latest state, or, after withdrawals our latest predates, the chain's withdrawal counter and
    no more than its deposits (as the watcher reported them)."""
    if state.total == channel.total:
        return True
    return (
        state.withdrawals == record.withdrawals > channel.withdrawals
        and state.deposit_a <= record.deposit_a
        and state.deposit_b <= record.deposit_b
    )


def mark_restored(conn: sqlite3.Connection) -> str:
    """Marks the store open on ``conn`` as restored now (every channel unsynced again); returns the time."""
    restored_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with conn:
        conn.execute("DELETE FROM node_meta WHERE key LIKE 'syncedAfterRestore:%'")
        conn.execute(
            "INSERT INTO node_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (RESTORED_KEY, restored_at),
        )
    return restored_at


def is_restored(store: Store) -> bool:
    return store.get_meta(RESTORED_KEY) is not None


def needs_sync(store: Store, cid: bytes) -> bool:
    """Whether the channel belongs to a restored store and has not synced with its peer since the restore."""
    return is_restored(store) and store.get_meta(synced_key(cid)) is None


def mark_synced(store: Store, cid: bytes) -> None:
    """The channel exchanged latest states with its peer (after a restore: it may close again)."""
    if needs_sync(store, cid):
        store.set_meta(synced_key(cid), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def check_may_close(store: Store, cid: bytes, lost_data: bool) -> None:
    """Raises ``RestoredNotSynced`` unless the channel may close unilaterally (or ``lost_data`` overrides)."""
    restored_at = store.get_meta(RESTORED_KEY)
    if restored_at is not None and not lost_data and store.get_meta(synced_key(cid)) is None:
        raise RestoredNotSynced(cid, restored_at)
