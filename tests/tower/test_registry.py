"""The tower's store and registry, and what its watcher decides (no sockets, no chain)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from paychan.contract import RecordedState
from paychan.node.watcher import REVEAL_MARGIN
from paychan.state import Lock, hashlock
from paychan.tower.protocol import Push
from paychan.tower.registry import Registry
from paychan.tower.store import SCHEMA_VERSION, TowerStore, TowerStoreError
from paychan.tower.watcher import (
    Closing,
    TowerSendChallenge,
    TowerSendProveRevoked,
    TowerSendSettle,
    decide,
    reveals,
)
from tests.tower.conftest import CID, DOMAIN, KEY_A, KEY_B, KEY_C, PARAMS, push_by

SECRET = os.urandom(32)
EXPIRY = 1_900_000_000
LOCK_TO_B = Lock("A", 10**15, EXPIRY, hashlock(SECRET))


def submit(registry: Registry, *pushes: Push | dict[str, Any]) -> list[dict[str, Any]]:
    raw = [p.to_json() if isinstance(p, Push) else p for p in pushes]
    return asyncio.run(registry.submit(raw))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    store = TowerStore(tmp_path / "tower.db")
    store.add_opened([(CID, PARAMS)])
    store.set_meta("nextBlock", "100")
    return Registry(store, DOMAIN)


def test_the_store_runs_in_wal_with_full_sync_and_refuses_another_schema_or_contract(tmp_path: Path) -> None:
    store = TowerStore(tmp_path / "tower.db")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.bind(31337, DOMAIN.verifying_contract)
    with pytest.raises(TowerStoreError, match="belongs to contract"):
        store.bind(31337, "0x" + "11" * 20)
    store.set_meta("schemaVersion", str(SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(TowerStoreError, match="schema"):
        TowerStore(tmp_path / "tower.db")


def test_a_push_for_a_channel_never_opened_on_chain_is_refused_naming_the_block_scanned(registry: Registry) -> None:
    registry.store.conn.execute("DELETE FROM opened")
    (result,) = submit(registry, push_by(KEY_B, 3, 3 * 10**17))
    assert result["accepted"] is False
    assert result["error"]["type"] == "UnknownTowerChannel" and result["error"]["fields"]["scanned_to"] == 99


def test_an_accepted_push_is_committed_before_the_answer_and_one_row_per_client_is_kept(
    registry: Registry, tmp_path: Path
) -> None:
    results = submit(registry, *(push_by(KEY_B, n, n * 10**16) for n in (1, 2, 3)))
    assert [r["accepted"] for r in results] == [True, True, True]
    submit(registry, push_by(KEY_A, 2, 2 * 10**16, revoked_below=2))
    other = sqlite3.connect(tmp_path / "tower.db")  # what another process (or a restart) reads
    assert other.execute("SELECT client, nonce FROM watched ORDER BY nonce").fetchall() == [
        (push_by(KEY_A, 1, 0).client, 2),
        (push_by(KEY_B, 1, 0).client, 3),
    ]
    reopened = Registry(TowerStore(tmp_path / "tower.db"), DOMAIN)
    held = reopened.held(CID, push_by(KEY_B, 1, 0).client)
    assert held is not None and held.nonce == 3


def test_an_older_push_is_refused_and_the_newer_one_kept(registry: Registry) -> None:
    submit(registry, push_by(KEY_B, 5, 5 * 10**16))
    (refused,) = submit(registry, push_by(KEY_B, 4, 4 * 10**16))
    assert refused["error"]["type"] == "StalePush"
    assert (refused["error"]["fields"]["pushed_nonce"], refused["error"]["fields"]["held_nonce"]) == (4, 5)
    held = registry.held(CID, push_by(KEY_B, 1, 0).client)
    assert held is not None and held.nonce == 5


def test_a_forged_push_is_refused_and_changes_nothing(registry: Registry) -> None:
    submit(registry, push_by(KEY_B, 5, 5 * 10**16))
    before = registry.store.conn.execute("SELECT * FROM watched").fetchall()
    forged = push_by(KEY_C, 9, 9 * 10**16).to_json() | {"client": push_by(KEY_B, 1, 0).client}
    (result,) = submit(registry, forged)
    assert result["error"]["type"] == "WrongPushSigner"
    assert registry.store.conn.execute("SELECT * FROM watched").fetchall() == before


def test_a_full_tower_refuses_a_new_channel_but_still_takes_newer_states_of_held_ones(tmp_path: Path) -> None:
    store = TowerStore(tmp_path / "tower.db")
    store.add_opened([(CID, PARAMS)])
    registry = Registry(store, DOMAIN, capacity=1)
    assert submit(registry, push_by(KEY_B, 1, 10**16))[0]["accepted"]
    assert submit(registry, push_by(KEY_A, 1, 10**16))[0]["error"]["type"] == "TowerFull"
    assert submit(registry, push_by(KEY_B, 2, 2 * 10**16))[0]["accepted"]


def record(nonce: int, closer_nonce: int, deadline: int = 5000, locks_root: bytes = b"\x00" * 32) -> RecordedState:
    return RecordedState(nonce, 10**18, 0, deadline, 10**18, 0, 7, locks_root=locks_root, closer_nonce=closer_nonce)


def test_a_stale_close_by_the_counterparty_is_proven_revoked_when_the_revocation_covers_it() -> None:
    push = push_by(KEY_B, 5, 5 * 10**16, revoked_below=5)
    action = decide(push, "B", Closing(record(2, 2), "A", False), now=1000)
    assert isinstance(action, TowerSendProveRevoked)
    assert decide(push, "B", Closing(record(5, 5), "A", False), now=1000) is None  # the newest: nothing to do


def test_a_stale_close_not_covered_by_a_revocation_is_challenged_until_the_deadline_only() -> None:
    push = push_by(KEY_B, 5, 5 * 10**16, revoked_below=3)
    assert isinstance(decide(push, "B", Closing(record(3, 3), "A", False), now=5000), TowerSendChallenge)
    assert decide(push, "B", Closing(record(3, 3), "A", False), now=5001) is None  # not asked to settle


def test_after_the_deadline_the_tower_settles_only_when_asked_with_the_held_lock_list() -> None:
    push = push_by(KEY_B, 5, 10**16, locks=(LOCK_TO_B,), settle=True)
    from paychan.state import locks_root

    action = decide(push, "B", Closing(record(5, 5, locks_root=locks_root([LOCK_TO_B])), "A", False), now=5001)
    assert isinstance(action, TowerSendSettle) and action.locks == (LOCK_TO_B,)
    unknown = record(5, 5, locks_root=b"\x01" * 32)
    assert decide(push, "B", Closing(unknown, "A", False), now=5001) is None


def test_a_proven_cheater_gets_nothing_from_its_own_tower_and_the_victim_is_settled_when_asked() -> None:
    cheater = push_by(KEY_A, 5, 5 * 10**16, settle=True)
    victim = push_by(KEY_B, 5, 5 * 10**16, settle=True)
    proven = Closing(record(5, 2), "A", True)
    assert decide(cheater, "A", proven, now=5001) is None
    assert isinstance(decide(victim, "B", proven, now=5001), TowerSendSettle)


def test_a_held_secret_is_revealed_at_once_when_closing_else_within_the_margin_of_its_expiry() -> None:
    push = push_by(KEY_B, 5, 10**16, locks=(LOCK_TO_B,), secrets=(SECRET,))
    assert reveals(push, "B", EXPIRY - REVEAL_MARGIN - 1, closing=False, revealed=set()) == []
    assert reveals(push, "B", EXPIRY - REVEAL_MARGIN, closing=False, revealed=set()) == [SECRET]
    assert reveals(push, "B", EXPIRY - 3600, closing=True, revealed=set()) == [SECRET]
    assert reveals(push, "B", EXPIRY + 1, closing=True, revealed=set()) == []  # too late pays nothing
    assert reveals(push, "B", EXPIRY, closing=True, revealed={hashlock(SECRET)}) == []


def test_the_record_built_from_close_and_challenge_events_is_what_the_contract_fingerprints(tmp_path: Path) -> None:
    store = TowerStore(tmp_path / "tower.db")
    store.add_opened([(CID, PARAMS)])
    store.note_deposit(CID, PARAMS.participant_a, 10**18)
    store.note_deposit(CID, PARAMS.participant_b, 5)
    outcome = {"balanceA": 9 * 10**17, "balanceB": 10**17 + 5, "lockedA": 0, "lockedB": 0, "locksRoot": bytes(32)}
    store.note_closed(CID, "A", {**outcome, "nonce": 2, "salt": 2**64 - 1, "deadline": 5000})
    recorded, closed_by, penalized = store.record(CID)  # type: ignore[misc]
    assert (closed_by, penalized) == ("A", False)
    assert recorded == RecordedState(2, 9 * 10**17, 10**17 + 5, 5000, 10**18, 5, 2**64 - 1, closer_nonce=2)
    store.note_challenged(CID, {**outcome, "balanceA": 8 * 10**17, "balanceB": 2 * 10**17 + 5, "nonce": 4, "salt": 9})
    store.note_penalized(CID)
    recorded, _, penalized = store.record(CID)  # type: ignore[misc]
    assert (recorded.nonce, recorded.closer_nonce, recorded.deadline, recorded.salt, penalized) == (4, 2, 5000, 9, True)
    store.forget_record(CID)
    assert store.record(CID) is None


def test_a_flood_of_pushes_leaves_the_event_loop_a_turn_every_few_checks(registry: Registry) -> None:
    forged = push_by(KEY_C, 9, 9 * 10**16).to_json() | {"client": push_by(KEY_B, 1, 0).client}

    async def flood_and_tick() -> tuple[int, list[dict[str, Any]]]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:  # what the watcher's coroutine gets while pushes are checked
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        floods = await asyncio.gather(*(registry.submit([forged] * 256) for _ in range(4)))
        done.set()
        await task
        return ticks, [r for flood in floods for r in flood]

    ticks, results = asyncio.run(flood_and_tick())
    assert all(r["error"]["type"] == "WrongPushSigner" for r in results) and len(results) == 1024
    assert ticks >= 1024 // 16  # a turn of the loop at least every 16 checks
