"""``paychan node --tower URL``: the node pushes its newest states to a tower process and, restored from an
old backup, reads them back before serving, so it closes with its newest state and is never penalized.

Alice backs up her store at nonce 1 and pays three times more (nonce 4; she has revoked below 3, which bob
holds). Restored from the backup with bob gone, her node reads nonce 4 back from the tower; her
``close --unilateral --i-lost-data`` then closes with nonce 4, which bob's node, back later, cannot punish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paychan.contract import PaychanContract
from paychan.node.process import NodeProcess
from paychan.tower.process import TowerProcess
from paychan.tower.store import TowerStore
from tests.node.conftest import (  # noqa: F401 - node_processes: a fixture
    KEY_A,
    KEY_B,
    free_port,
    node_processes,
    open_channel_by_cli,
    paychan,
    wait_for,
)


def held_nonce(tower: TowerProcess, client: str) -> int:
    store = TowerStore(tower.db)
    try:
        return max((w.push.nonce for w in store.all_watched() if w.push.client == client), default=-1)
    finally:
        store.close()


def test_a_node_restored_from_an_old_backup_reads_its_newest_state_back_from_the_tower_and_is_never_penalized(
    node_processes: Callable[..., NodeProcess],  # noqa: F811
    tower_process: Callable[..., TowerProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    tmp_path: Path,
) -> None:
    tower = tower_process()
    tower.start()
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.extra_args = (*alice.extra_args, "--tower", tower.url)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    backup = tmp_path / "alice.backup"
    assert paychan(capsys, "backup", "--db", str(alice.db), "--out", str(backup))[0] == 0
    for _ in range(3):
        assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    address = alice.control_info()["address"]
    wait_for(lambda: held_nonce(tower, address) == 4, "the tower to hold alice's nonce 4", timeout=20)
    wait_for(lambda: bob.status()["peerRevocation"] >= 3, "bob to hold alice's revocation below nonce 3")
    alice.stop()
    bob.stop()  # bob is gone while alice restores
    assert paychan(capsys, "restore", "--backup", str(backup), "--db", str(alice.db), "--force")[0] == 0
    alice.start()  # reads nonce 4 back from the tower before serving
    assert alice.status()["nonce"] == 4
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--unilateral", "--i-lost-data")
    assert code == 0, err
    assert "unilaterally with nonce 4 (A 0.6 ETH, B 0.4 ETH)" in out
    recorded = devnet_contract.recorded_state(cid)  # type: ignore[arg-type]
    assert (recorded.nonce, recorded.closer_nonce, recorded.balance_a, recorded.balance_b) == (
        4,
        4,
        6 * 10**17,
        4 * 10**17,
    )
    bob.start()  # bob's node, back: alice's close is her newest state, above her revocation: nothing to prove
    wait_for(lambda: bob.status()["status"] != "open", "bob's node to see the close")
    assert not bob.status()["penalized"]
    assert not devnet_contract.get_channel(cid).penalized  # type: ignore[arg-type]


def test_a_restored_node_whose_tower_is_down_refuses_to_start_in_one_sentence(
    node_processes: Callable[..., NodeProcess],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    tmp_path: Path,
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    open_channel_by_cli(capsys, alice, bob, "1ether")
    backup = tmp_path / "alice.backup"
    assert paychan(capsys, "backup", "--db", str(alice.db), "--out", str(backup))[0] == 0
    alice.stop()
    bob.stop()
    assert paychan(capsys, "restore", "--backup", str(backup), "--db", str(alice.db), "--force")[0] == 0
    alice.extra_args = (*alice.extra_args, "--tower", "http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="exited") as failed:
        alice.start(timeout=30)
    assert "paychan: error: this node's store was restored from a backup and the tower at http://127.0.0.1:9" in (
        str(failed.value)
    )


@pytest.mark.serial  # 20 payments are timed
def test_a_node_whose_tower_is_down_pays_as_usual_and_pushes_once_the_tower_is_up(
    node_processes: Callable[..., NodeProcess],  # noqa: F811
    tower_process: Callable[..., TowerProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
) -> None:
    tower = tower_process(port=free_port())
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.extra_args = (*alice.extra_args, "--tower", f"http://127.0.0.1:{tower.port}")
    alice.start()  # the tower is not running: pushes fail, off the payment path
    bob.start()
    open_channel_by_cli(capsys, alice, bob, "1ether")
    started = time.monotonic()
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.01ether", "--count", "20")[0] == 0
    assert time.monotonic() - started < 15  # not one 10-second tower timeout per payment
    assert alice.status()["nonce"] == 20
    tower.start()
    address = alice.control_info()["address"]
    wait_for(lambda: held_nonce(tower, address) == 20, "alice's node to push once the tower is up", timeout=30)
