"""A node restored from an old backup closes no channel unilaterally before it has synced with its peer.

Alice backs up her store at nonce 1 and pays three times more (nonce 4; her revocation below 3 travels to bob).
Restored from the backup, her node knows nonce 1 only: closing with it would close below her own revocation.
It refuses, until bob's node is back and the two have exchanged latest states; with bob gone for good the
user may override it (``--i-lost-data``) and close with nonce 1, at the risk the README explains.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from paychan.cli import main
from paychan.contract import PaychanContract
from paychan.node.restored import needs_sync

from .conftest import (
    CID,
    DEPOSIT_A,
    KEY_A,
    KEY_B,
    NodeProcess,
    free_port,
    one_error,
    paychan,
    start_live_node,
    wait_for,
)


def restored_alice(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[NodeProcess, NodeProcess, bytes]:
    """Alice and bob with a channel at nonce 4, both nodes stopped, alice's store restored at nonce 1."""
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    code, out, err = paychan(
        capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--deposit", "1ether", "--json"
    )
    assert code == 0, err
    cid = bytes.fromhex(json.loads(out)["channelId"][2:])
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    backup = tmp_path / "alice.backup"
    assert paychan(capsys, "backup", "--db", str(alice.db), "--out", str(backup))[0] == 0
    for _ in range(3):  # each proposal carries alice's revocation below the nonce she completed before
        assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    wait_for(lambda: bob.status()["peerRevocation"] >= 3, "bob to hold alice's revocation below nonce 3")
    alice.stop()
    bob.stop()
    code, out, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(alice.db), "--force")
    assert code == 0, err
    assert "closes no channel unilaterally before it has synced it with the peer" in out
    alice.start()
    assert alice.status()["nonce"] == 1
    return alice, bob, cid


@pytest.mark.anvil
def test_a_restored_node_refuses_to_close_unilaterally_until_it_has_synced_then_closes_with_the_peers_latest_state(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    tmp_path: Path,
) -> None:
    alice, bob, cid = restored_alice(node_processes, capsys, tmp_path)
    refusal = one_error(*paychan(capsys, "close", "--db", str(alice.db), "--unilateral"))
    assert refusal.startswith("this node's store was restored from a backup (")
    assert refusal.endswith(
        f"and channel 0x{cid.hex()} has not synced with the peer since: its latest state may be one you revoked "
        "after the backup, and closing with it would let the peer take the whole channel. Start the peer's node "
        "(this node syncs by itself), or, if the peer is gone for good, run `paychan close --unilateral "
        "--i-lost-data` to close with the latest state this node has (see README: I lost data and my peer is gone)"
    )
    assert one_error(*paychan(capsys, "close", "--db", str(alice.db), "--i-lost-data")) == (
        "--i-lost-data only goes with --unilateral (a cooperative close needs the peer anyway)"
    )
    assert devnet_contract.get_channel(cid).status == 1  # type: ignore[arg-type]
    assert (alice.status()["nonce"], alice.status()["restoredUnsynced"]) == (1, True)
    code, out, _ = paychan(capsys, "status", "--db", str(alice.db))
    assert "  restored from a backup and not synced with the peer yet: no unilateral close until it is" in out

    bob.start()
    wait_for(lambda: alice.status()["nonce"] == 4, "alice's node to adopt bob's latest state")
    wait_for(lambda: not alice.status()["restoredUnsynced"], "alice's node to note the sync")
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--unilateral")
    assert code == 0, err
    assert "unilaterally with nonce 4 (A 0.6 ETH, B 0.4 ETH)" in out
    recorded = devnet_contract.recorded_state(cid)  # type: ignore[arg-type]
    assert (recorded.nonce, recorded.balance_a, recorded.balance_b) == (4, 6 * 10**17, 4 * 10**17)


@pytest.mark.anvil
def test_with_the_peer_gone_the_lost_data_override_closes_with_the_backups_state_and_the_peer_can_punish_it(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    tmp_path: Path,
) -> None:
    alice, bob, cid = restored_alice(node_processes, capsys, tmp_path)
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--unilateral", "--i-lost-data")
    assert code == 0, err
    assert "unilaterally with nonce 1 (A 0.9 ETH, B 0.1 ETH)" in out
    recorded = devnet_contract.recorded_state(cid)  # type: ignore[arg-type]
    assert (recorded.nonce, recorded.closer_nonce) == (1, 1)
    # the risk the override takes: alice had revoked nonce 1; bob's node, back within the challenge period,
    # proves it and the whole channel goes to bob
    bob.start()
    wait_for(lambda: bob.status()["penalized"], "bob's node to prove alice's revoked close")
    onchain = devnet_contract.get_channel(cid)  # type: ignore[arg-type]
    assert (onchain.status, onchain.penalized) == (2, True)  # closing, settled later: the whole channel to bob


@pytest.mark.anvil
def test_a_node_restored_from_before_a_withdrawal_adopts_the_peers_state_after_it_and_closes_with_that(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    tmp_path: Path,
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    code, out, err = paychan(
        capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--deposit", "1ether", "--json"
    )
    assert code == 0, err
    cid = bytes.fromhex(json.loads(out)["channelId"][2:])
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    backup = tmp_path / "alice.backup"
    assert paychan(capsys, "backup", "--db", str(alice.db), "--out", str(backup))[0] == 0
    assert paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether")[0] == 0  # nonce 2, deposits 0.8
    alice.stop()
    assert paychan(capsys, "restore", "--backup", str(backup), "--db", str(alice.db), "--force")[0] == 0
    alice.start()
    wait_for(
        lambda: (alice.status()["nonce"], alice.status()["restoredUnsynced"]) == (2, False),
        "alice's node to adopt bob's state after the withdrawal once its watcher has seen the withdrawal",
    )
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--unilateral")
    assert code == 0, err
    assert "unilaterally with nonce 2 (A 0.7 ETH, B 0.1 ETH)" in out
    recorded = devnet_contract.recorded_state(cid)  # type: ignore[arg-type]
    assert (recorded.nonce, recorded.withdrawals, recorded.deposit_a) == (2, 1, 8 * 10**17)


def test_a_restored_node_whose_peer_splits_a_deposit_it_has_not_seen_yet_stays_unsynced_until_its_watcher_sees_it(
    tmp_path: Path,
) -> None:
    """In process, no chain: what the watcher would report is noted by hand."""

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(200):
            if condition():
                return
            await asyncio.sleep(0.025)
        raise AssertionError("timed out")

    async def scenario() -> None:
        port_a, port_b = free_port(), free_port()
        alice = await start_live_node(tmp_path / "a.db", KEY_A, "A", port_a, port_b)
        bob = await start_live_node(tmp_path / "b.db", KEY_B, "B", port_b, port_a)
        try:
            await alice.node.pay(CID, 100)
            alice.node.store.backup(tmp_path / "a.backup")
            for node in (alice, bob):
                node.node.note_deposits(CID, DEPOSIT_A, 500)  # bob's top-up, seen by both watchers
            await alice.node.pay(CID, 100)  # nonce 2 splits it
            await alice.stop()
            backup, db = str(tmp_path / "a.backup"), str(tmp_path / "a.db")
            assert main(["restore", "--backup", backup, "--db", db, "--force"]) == 0
            alice = await start_live_node(tmp_path / "a.db", KEY_A, "A", port_a, port_b)
            await asyncio.sleep(0.5)  # alice asked bob: his state 2 splits 500 more than she knows of
            assert (alice.channel.nonce, needs_sync(alice.node.store, CID)) == (1, True)
            assert CID in alice.node._unsynced
            alice.node.note_deposits(CID, DEPOSIT_A, 500)  # her watcher catches up with the chain
            await until(lambda: alice.channel.nonce == 2 and not needs_sync(alice.node.store, CID))
            assert alice.channel.latest == bob.channel.latest and CID not in alice.node._unsynced
        finally:
            await alice.stop()
            await bob.stop()

    asyncio.run(scenario())
