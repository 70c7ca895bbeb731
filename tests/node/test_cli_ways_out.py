"""A person running two nodes with the CLI only: truthful pay results, and every way the money gets out.

Each test drives ``paychan`` exactly as a user would (the CLI in a subprocess or ``main``), against two
node processes on anvil, and checks what the CLI printed against the nodes' stores and the chain: no funds
and no signed state may be lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paychan.contract import PaychanContract
from paychan.node.process import ROOT

from .conftest import ADDRESS_A, ADDRESS_B, KEY_A, KEY_B, NodeProcess, open_channel_by_cli, paychan, states_in, wait_for

ETHER = 10**18


@pytest.mark.anvil
def test_pay_reports_a_partial_payment_and_exits_3(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "3000wei")
    code, out, err = paychan(capsys, "pay", "--db", str(alice.db), "1000", "--count", "5")
    assert code == 3
    assert out.startswith("paid 3 of 5 x 0.000000000000001 ETH: channel 0x")
    assert "nonce 3, my balance 0 ETH" in out
    assert "2 refused: insufficient balance: 0 ETH available, 0.000000000000001 ETH asked" in err
    assert states_in(alice, cid) == states_in(bob, cid) == 3  # exactly what was reported
    code, out, err = paychan(capsys, "pay", "--db", str(alice.db), "1wei")
    assert code == 1 and out.startswith("paid 0 of 1") and "refused: insufficient balance" in err


@pytest.mark.anvil
def test_pay_with_the_peer_down_reports_in_flight_or_cancelled_payments_with_distinct_exit_codes(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    bob.stop()
    # alice holds the turn: her payment is signed and sent, and waits for bob (the node's timeout is 5 s)
    code, out, err = paychan(capsys, "pay", "--db", str(alice.db), "0.2ether")
    assert code == 4, (out, err)
    assert out.startswith("paid 0 of 1 x 0.2 ETH")
    assert "1 signed and sent, not countersigned yet: they complete when the peer answers" in err
    bob.start()
    wait_for(lambda: alice.status()["nonce"] == 2, "the payment in flight to complete when bob is back")
    assert bob.status()["balanceB"] == str(3 * 10**17)
    # bob needs the turn from alice to pay; with alice down nothing is signed: nothing happened, exit 1
    alice.stop()
    code, out, err = paychan(capsys, "pay", "--db", str(bob.db), "0.05ether")
    assert code == 1, (out, err)
    assert "1 cancelled before they were signed: they will not happen" in err
    alice.start()
    time.sleep(1.0)
    assert alice.status()["nonce"] == bob.status()["nonce"] == 2  # the cancelled payment never happens
    assert states_in(alice, cid) == states_in(bob, cid) == 2


@pytest.mark.anvil
def test_ctrl_c_on_pay_cancels_what_is_not_signed_and_reports_what_was(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    command = [sys.executable, "-c", "import sys; from paychan.cli import main; sys.exit(main())", "pay",
               "--db", str(alice.db), "1wei", "--count", "20000", "--json"]  # fmt: skip
    payer = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: alice.status()["nonce"] > 600, "payments to be countersigned")
    payer.send_signal(signal.SIGINT)
    out, err = payer.communicate(timeout=60)
    report = json.loads(out)
    assert payer.returncode in (3, 4), err  # partly done (or some still in flight)
    assert report["outcome"] in ("partial", "pending") and 0 < report["paid"] < 20000
    assert report["paid"] + report["cancelled"] + report["inFlight"] + report["refused"] == 20000
    wait_for(lambda: alice.status()["inflight"] == 0, "alice's states in flight to be answered")
    # everything reported paid or in flight happened, nothing else: the stores and the status agree
    assert alice.status()["nonce"] == bob.status()["nonce"] == report["paid"] + report["inFlight"]
    assert states_in(alice, cid) == report["paid"] + report["inFlight"]
    assert int(bob.status()["balanceB"]) == report["paid"] + report["inFlight"]


@pytest.mark.anvil
def test_unilateral_close_and_settle_through_the_cli_with_the_peers_node_stopped(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    tmp_path: Path,
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.25ether", "--count", "2")[0] == 0
    assert paychan(capsys, "deposit", "--db", str(bob.db), "0.1ether")[0] == 0  # a top-up on bob's side
    wait_for(lambda: alice.status()["depositB"] == str(10**17), "alice's node to see bob's top-up")
    bob.stop()

    code, out, err = paychan(capsys, "close", "--db", str(alice.db))  # the peer is gone: nothing is closed
    assert code == 4  # pending: alice's final state is sent and closes the channel if bob answers
    assert "nothing was closed" in err and "paychan close --unilateral" in err
    assert devnet_contract.get_channel(cid).status == 1

    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--unilateral")
    assert code == 0, err
    assert "unilaterally with nonce 2 (A 0.5 ETH, B 0.6 ETH)" in out
    code, out, err = paychan(capsys, "settle", "--db", str(alice.db))  # too early: one plain sentence
    assert code == 1 and err.startswith("paychan: error: the challenge period runs until ")
    status = alice.status()
    assert status["phase"] == "challenge period" and "wait until" in status["next"]

    w3 = devnet_contract.chain.w3
    before_a, before_b = w3.eth.get_balance(ADDRESS_A), w3.eth.get_balance(ADDRESS_B)
    devnet_contract.chain.time_travel(3601)
    # alice's node may settle by itself first (auto-settle): either way `settle` reaches its goal, exit 0
    code, out, err = paychan(capsys, "settle", "--db", str(alice.db), "--channel", "0x" + cid.hex(), "--json")
    assert code == 0, err
    assert (json.loads(out)["payoutA"], json.loads(out)["payoutB"]) == (str(5 * 10**17), str(6 * 10**17))
    wait_for(lambda: alice.status()["status"] == "closed", "alice's node to see the settlement")
    code, out, err = paychan(capsys, "settle", "--db", str(alice.db), "--channel", "0x" + cid.hex())
    assert code == 0, err  # settled already: what it paid, not an error
    assert out.strip() == (
        f"channel 0x{cid.hex()} was settled already (by the node itself, or when it closed): "
        "A got 0.5 ETH, B got 0.6 ETH; nothing more to do"
    )
    assert devnet_contract.get_channel(cid).status == 0
    (settled,) = devnet_contract.contract.events.ChannelSettled().get_logs(
        from_block=0, argument_filters={"channelId": cid}
    )
    assert (settled["args"]["payoutA"], settled["args"]["payoutB"]) == (5 * 10**17, 6 * 10**17)
    receipt = w3.eth.get_transaction_receipt(settled["transactionHash"])
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(ADDRESS_A) - before_a == 5 * 10**17 - fee  # alice (her node) settled
    assert w3.eth.get_balance(ADDRESS_B) - before_b == 6 * 10**17  # bob is paid without his node
    assert w3.eth.get_balance(devnet_contract.address) == 0
    code, _, err = paychan(capsys, "claim", "--db", str(alice.db))
    assert (code, err.strip()) == (1, f"paychan: error: nothing to claim: no payout in ETH was deferred to {ADDRESS_A}")
    assert os.path.exists(alice.db)


@pytest.mark.anvil
def test_a_cooperative_close_that_timed_out_is_submitted_by_the_node_once_the_peer_is_back(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.4ether")[0] == 0
    bob.stop()
    code, _, err = paychan(capsys, "close", "--db", str(alice.db))
    assert code == 4 and "our final state is signed and sent" in err and "submits the cooperative close" in err
    assert devnet_contract.get_channel(cid).status == 1  # nothing closed yet
    w3 = devnet_contract.chain.w3
    before_b = w3.eth.get_balance(ADDRESS_B)
    bob.start()  # bob countersigns the final state; alice's node closes by itself
    wait_for(lambda: devnet_contract.get_channel(cid).status == 0, "alice's node to submit the cooperative close")
    (settled,) = devnet_contract.contract.events.ChannelSettled().get_logs(
        from_block=0, argument_filters={"channelId": cid}
    )
    assert settled["args"]["cooperative"] and settled["args"]["nonce"] == 2
    assert (settled["args"]["payoutA"], settled["args"]["payoutB"]) == (6 * 10**17, 4 * 10**17)
    assert w3.eth.get_balance(ADDRESS_B) - before_b == 4 * 10**17
    assert w3.eth.get_balance(devnet_contract.address) == 0
    wait_for(lambda: alice.status()["status"] == "closed", "alice's node to record the close")
