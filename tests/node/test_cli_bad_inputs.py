"""Every bad input to the node commands is one plain line on stderr and a non-zero exit, and changes nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paychan.node.keystore import write_keystore
from paychan.node.process import ROOT

from .conftest import KEY_A, KEY_B, PASSWORD, NodeProcess, paychan


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("paychan: error: "), err
    return err.strip().removeprefix("paychan: error: ")


def test_importing_a_short_key_is_one_line_and_writes_no_keystore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYCHAN_PASSWORD", "pw")
    monkeypatch.setenv("SHORT_KEY", "0x1234")
    code, _, err = paychan(capsys, "keystore", "--out", str(tmp_path / "k.json"), "--import-env", "SHORT_KEY")
    assert code == 1
    assert one_line(err) == (
        "environment variable SHORT_KEY does not hold a private key: expected 32 bytes as 64 hex digits "
        "(with or without 0x), got 4 characters"
    )
    assert not (tmp_path / "k.json").exists()


def test_a_node_without_a_chain_is_one_line_and_creates_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PAYCHAN_RPC_URL", "ETH_RPC_URL"):
        monkeypatch.delenv(name, raising=False)
    write_keystore(tmp_path / "k.json", KEY_A, "pw", iterations=16)
    monkeypatch.setenv("PAYCHAN_PASSWORD", "pw")
    code, _, err = paychan(capsys, "node", "--keystore", str(tmp_path / "k.json"), "--db", str(tmp_path / "n.db"))
    assert code == 1 and one_line(err).startswith("a node needs a chain: pass --rpc-url URL or set ETH_RPC_URL")
    monkeypatch.setenv("ETH_RPC_URL", "http://127.0.0.1:9")  # Foundry's variable is the default of --rpc-url
    code, _, err = paychan(capsys, "node", "--keystore", str(tmp_path / "k.json"), "--db", str(tmp_path / "n.db"))
    assert code == 1 and one_line(err).startswith("no Ethereum JSON-RPC node answers at http://127.0.0.1:9")
    assert not (tmp_path / "n.db").exists()


@pytest.mark.anvil
def test_a_node_on_a_busy_port_is_one_line(tmp_path: Path, devnet: Any, devnet_contract: Any) -> None:
    write_keystore(tmp_path / "k.json", KEY_A, PASSWORD, iterations=16)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-c", "import sys; from paychan.cli import main; sys.exit(main())", "node",
                   "--keystore", str(tmp_path / "k.json"), "--db", str(tmp_path / "n.db"), "--port", str(port),
                   "--rpc-url", devnet.url, "--contract", devnet_contract.address]  # fmt: skip
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PAYCHAN_PASSWORD": PASSWORD,
            "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"port {port} on 127.0.0.1 is already in use (is another node running there?); "
        "choose another with --port (0: any free port)"
    )


@pytest.mark.anvil
def test_bad_amounts_and_unknown_channels_are_one_line_and_pay_nothing(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    assert paychan(capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--deposit", "1ether")[0] == 0
    for amount in ("1.2.3", "1.5", "0", "1e-3", "2 bananas", str(2**256)):  # (negative: tests/test_units.py)
        code, out, err = paychan(capsys, "pay", "--db", str(alice.db), amount)
        assert (code, out) == (1, ""), amount
        assert one_line(err).startswith(f"invalid amount '{amount}'"), err
    code, _, err = paychan(capsys, "pay", "--db", str(alice.db), "1wei", "--channel", "ffffff")
    assert code == 1 and one_line(err) == "no channel of this node starts with ffffff"
    code, _, err = paychan(capsys, "pay", "--db", str(alice.db), "1wei", "--channel", "not-hex")
    assert code == 1 and one_line(err) == "no channel of this node starts with not-hex"
    code, _, err = paychan(capsys, "pay", "--db", str(alice.db), "2ether")
    assert code == 1 and "insufficient balance: 1 ETH available, 2 ETH asked" in err
    assert alice.status()["nonce"] == 0  # nothing was paid
    code, _, err = paychan(capsys, "status", "--db", str(alice.db) + ".missing")
    assert code == 1 and one_line(err).startswith("no node is running on ")
