"""The node's command line: ``paychan node`` plus ``open``/``pay``/``status``/``close`` against it, and
``backup``/``restore`` of a store while and after the node runs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paychan.node.keystore import write_keystore
from paychan.node.store import Store, integrity_check

from .conftest import ADDRESS_B, KEY_A, KEY_B, NodeProcess, paychan

DEPOSIT = 10**18


def test_open_pay_status_and_close_drive_two_running_nodes(
    node_processes: Callable[[str, bytes], NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: Any
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    code, out, _ = paychan(
        capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--deposit", str(DEPOSIT), "--json"
    )
    assert code == 0
    channel = json.loads(out)["channelId"]
    assert paychan(capsys, "pay", "--db", str(alice.db), "1000", "--count", "5")[0] == 0
    code, out, _ = paychan(capsys, "pay", "--db", str(bob.db), "300")
    assert (code, out.strip()) == (
        0,
        f"paid 1 of 1 x 0.0000000000000003 ETH: channel {channel} nonce 6, my balance 0.0000000000000047 ETH",
    )

    code, out, _ = paychan(capsys, "status", "--db", str(bob.db), "--json")
    status = json.loads(out)["channels"][0]
    assert (status["nonce"], status["balanceB"], status["role"], status["status"]) == (6, "4700", "B", "open")
    code, out, _ = paychan(capsys, "status", "--db", str(alice.db))
    assert "nonce 6" in out and "balances: A 0.9999999999999953 ETH  B 0.0000000000000047 ETH" in out

    code, out, err = paychan(capsys, "pay", "--db", str(bob.db), "10000")  # more than bob has
    assert (code, out.split(":")[0]) == (1, "paid 0 of 1 x 0.00000000000001 ETH")
    assert (
        err.strip() == "1 refused: insufficient balance: 0.0000000000000047 ETH available, 0.00000000000001 ETH asked"
    )

    code, out, _ = paychan(capsys, "close", "--db", str(alice.db), "--json")
    closed = json.loads(out)
    assert (closed["nonce"], closed["payoutA"], closed["payoutB"]) == (7, str(DEPOSIT - 4700), "4700")
    assert devnet_contract.get_channel(bytes.fromhex(channel[2:])).status == 0


def backed_up_after_20_payments_then_paid_30_more(
    node_processes: Callable[[str, bytes], NodeProcess], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[NodeProcess, NodeProcess, Path]:
    """Two running nodes; alice pays bob 20 times, bob's store is backed up while he runs, alice pays 30
    more. Returns alice, bob and the backup (which holds nonce 20 as its latest)."""
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    channel = alice.control("POST", "/open", {"peer": bob.peer_url, "deposit": str(DEPOSIT)})["channelId"]
    alice.control("POST", "/pay", {"channelId": channel, "amount": "10", "count": 20})
    backup = tmp_path / "bob.backup.db"
    assert paychan(capsys, "backup", "--db", str(bob.db), "--out", str(backup))[0] == 0  # while bob runs
    assert integrity_check(backup) == "ok"
    alice.control("POST", "/pay", {"channelId": channel, "amount": "10", "count": 30})
    return alice, bob, backup


def test_a_node_restored_from_an_old_backup_catches_up_with_its_peer(
    node_processes: Callable[[str, bytes], NodeProcess],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    devnet_contract: Any,
) -> None:
    alice, bob, backup = backed_up_after_20_payments_then_paid_30_more(node_processes, capsys, tmp_path)

    code, _, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(bob.db), "--force")
    assert (code, err.strip()) == (1, f"paychan: error: another node is running on {bob.db}")
    bob.stop()
    code, _, err = paychan(capsys, "restore", "--backup", str(backup), "--db", str(bob.db))
    assert code == 1 and "exists; pass --force" in err
    assert paychan(capsys, "restore", "--backup", str(backup), "--db", str(bob.db), "--force")[0] == 0
    restored = Store(bob.db)
    assert restored.states(bytes.fromhex(alice.status()["channelId"][2:]))[-1].state.nonce == 20
    restored.close()

    bob.start()  # fetches alice's latest state (signed by both) and carries on from there
    deadline = time.monotonic() + 10
    while bob.status()["nonce"] != 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bob.status()["latest"] == alice.status()["latest"]
    alice.control("POST", "/pay", {"channelId": alice.status()["channelId"], "amount": "10"})
    assert bob.status()["nonce"] == 51

    # and the restored bob still gets his money out: a cooperative close pays exactly the newest state
    w3 = devnet_contract.chain.w3
    before_b = w3.eth.get_balance(ADDRESS_B)
    closed = alice.control("POST", "/close", {"channelId": alice.status()["channelId"]})
    assert (closed["nonce"], int(closed["payoutB"])) == (52, 510)
    assert w3.eth.get_balance(ADDRESS_B) - before_b == 510
    assert w3.eth.get_balance(devnet_contract.address) == 0


def test_a_node_restored_from_an_old_backup_signs_nothing_new_until_its_peer_answers(
    node_processes: Callable[[str, bytes], NodeProcess], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The backup holds nonce 20, but bob had signed up to 50: a payment asked of the restored bob while
    alice is down waits, and once alice answers it goes out as nonce 51, never as a second nonce 21."""
    alice, bob, backup = backed_up_after_20_payments_then_paid_30_more(node_processes, capsys, tmp_path)
    cid = bytes.fromhex(alice.status()["channelId"][2:])
    bob.stop()
    alice.stop()
    assert paychan(capsys, "restore", "--backup", str(backup), "--db", str(bob.db), "--force")[0] == 0

    # the payment waits for alice's restart below: on a loaded machine that can take longer than the 5 s the
    # fixture's nodes give a pay request
    bob.extra_args = (*bob.extra_args, "--payment-timeout", "45")
    bob.start()
    paid: dict[str, Any] = {}
    request = {"channelId": "0x" + cid.hex(), "amount": "1"}
    payer = threading.Thread(target=lambda: paid.update(bob.control("POST", "/pay", request, timeout=60)))
    payer.start()
    time.sleep(1.5)  # bob's sender keeps asking the absent alice for her latest state
    assert payer.is_alive()
    during = Store(bob.db)
    assert during.states(cid)[-1].state.nonce == 20  # nothing signed meanwhile
    during.close()
    alice.start()
    payer.join(timeout=60)
    assert paid["nonce"] == 51
    assert bob.status()["latest"] == alice.status()["latest"]
    bob.stop()
    alice.stop()
    mine, theirs = Store(bob.db), Store(alice.db)
    at_21 = [[s for s in store.states(cid) if s.state.nonce == 21] for store in (mine, theirs)]
    assert all(len(states) <= 1 for states in at_21)
    assert [s.state for s in at_21[0]] in ([], [s.state for s in at_21[1]])  # no second state at nonce 21
    mine.close()
    theirs.close()


def test_a_wrong_keystore_password_stops_the_node_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_keystore(tmp_path / "k.json", KEY_A, "right", iterations=16)
    monkeypatch.setenv("PAYCHAN_PASSWORD", "wrong")
    code, _, err = paychan(
        capsys, "node", "--keystore", str(tmp_path / "k.json"), "--db", str(tmp_path / "n.db"),
        "--rpc-url", "http://127.0.0.1:9", "--contract", "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )  # fmt: skip
    assert code == 1
    assert err == (
        f"paychan: error: cannot decrypt keystore {tmp_path / 'k.json'}: wrong password (from $PAYCHAN_PASSWORD or "
        "the prompt)\n"
    )
    assert not (tmp_path / "n.db").exists()


def test_keystore_imports_a_key_that_the_node_can_decrypt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eth_account import Account

    from paychan.node.keystore import load_key

    monkeypatch.setenv("PAYCHAN_PASSWORD", "s3cret")
    monkeypatch.setenv("NODE_KEY", "0x" + KEY_B.hex())
    out_file = tmp_path / "bob.json"
    code, out, _ = paychan(capsys, "keystore", "--out", str(out_file), "--import-env", "NODE_KEY")
    assert (code, out.strip()) == (0, f"{Account.from_key(KEY_B).address} -> {out_file}")
    assert load_key(out_file, "s3cret") == KEY_B
    assert out_file.stat().st_mode & 0o777 == 0o600
    code, _, err = paychan(capsys, "keystore", "--out", str(out_file))
    assert (code, err.strip()) == (1, f"paychan: error: {out_file} exists; choose a new file")
