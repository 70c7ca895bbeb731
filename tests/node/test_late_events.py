"""A node whose own settle got there before its watcher read the channel's close: the close event read late
does not reopen the paid-out channel (a second ``paychan settle`` then answers what the chain paid, instead of
sending a settle the contract refuses, ``ChannelNotClosing``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from paychan.node.store import STATUS_CLOSED
from paychan.node.watcher import recorded_state

from .conftest import ADDRESS_A, CID, KEY_A, free_port, start_live_node


def test_a_close_event_read_after_the_channel_was_paid_out_leaves_it_closed_with_its_payouts(tmp_path: Path) -> None:
    async def scenario() -> None:
        alice = await start_live_node(tmp_path / "a.db", KEY_A, "A", free_port(), free_port())
        node = alice.node
        closed = {
            "closer": ADDRESS_A,
            "nonce": 2,
            "balanceA": 5,
            "balanceB": 6,
            "salt": 0,
            "deadline": 1_900_003_600,
            "lockedA": 0,
            "lockedB": 0,
            "locksRoot": b"\x00" * 32,
        }
        try:
            node.mark_closing(node.runtimes[CID], 2, 1_900_003_600)  # we closed; the watcher has not read it yet
            node.note_settled(CID, 5, 6)  # our settle, after the challenge period: paid out
            node.note_close_event(CID, "ChannelClosed", closed)  # the watcher reads the close only now
            record = node.runtimes[CID].record
            assert (record.status, record.payout_a, record.payout_b) == (STATUS_CLOSED, 5, 6)
            assert recorded_state(record) is None and node.store.channel(CID).status == STATUS_CLOSED
            node.note_settled(CID, 5, 6)  # and then its ChannelSettled: nothing changes
            assert node.runtimes[CID].record.status == STATUS_CLOSED
        finally:
            await alice.stop()

    asyncio.run(scenario())
