"""The node and the chain, through the CLI: ERC-20 channels, channels opened with other tools, a restarted devnet."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.devnet import start_devnet

from .conftest import ADDRESS_A, ADDRESS_B, KEY_A, KEY_B, KEY_C, PASSWORD, NodeProcess, free_port, paychan, wait_for

TOKEN = 10**18  # TestToken has 18 decimals


@pytest.mark.anvil
def test_an_erc20_channel_opens_funds_pays_and_closes_through_the_cli_in_token_units(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet: Any,
    devnet_contract: PaychanContract,
    artifacts: Any,
) -> None:
    from tests.conftest import deploy_test_contract

    chain = devnet_contract.chain
    token = deploy_test_contract(chain, chain.accounts[0], artifacts["TestToken"])
    for holder in (ADDRESS_A, ADDRESS_B):
        data = token.encode_abi("mint", args=[holder, 1000 * TOKEN])
        chain.send(chain.accounts[0], {"to": token.address, "data": data, "gas": 100_000})
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()

    code, out, err = paychan(
        capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--asset", token.address, "--deposit", "100"
    )
    assert code == 0, err
    assert "with a deposit of 100 TEST" in out  # approve included: alice never approved by hand
    assert paychan(capsys, "deposit", "--db", str(bob.db), "5.5")[0] == 0
    wait_for(lambda: alice.status()["depositB"] == str(55 * TOKEN // 10), "alice's node to see bob's deposit")
    code, out, err = paychan(capsys, "pay", "--db", str(alice.db), "2.5", "--count", "2")
    assert (code, out.split(":")[0]) == (0, "paid 2 of 2 x 2.5 TEST"), err
    assert paychan(capsys, "pay", "--db", str(bob.db), "1 TEST")[0] == 0
    code, out, err = paychan(capsys, "status", "--db", str(bob.db))
    assert "balances: A 96 TEST  B 9.5 TEST  (mine 9.5 TEST); deposits A 100 TEST  B 5.5 TEST" in out

    def balance(who: str) -> int:
        return int(token.functions.balanceOf(who).call())

    before_a, before_b = balance(ADDRESS_A), balance(ADDRESS_B)
    code, out, err = paychan(capsys, "close", "--db", str(bob.db))
    assert code == 0, err
    assert "A gets 96 TEST, B gets 9.5 TEST" in out
    assert (balance(ADDRESS_A) - before_a, balance(ADDRESS_B) - before_b) == (96 * TOKEN, 95 * TOKEN // 10)
    assert balance(devnet_contract.address) == 0  # a fresh contract: every token paid out


@pytest.mark.anvil
def test_a_channel_opened_directly_through_the_contract_is_found_and_watched_without_an_announce(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any, devnet_contract: Any
) -> None:
    bob = node_processes("bob", KEY_B)
    bob.start()
    carol_chain = rpc_chain(devnet.url, ["0x" + KEY_C.hex()])
    contract = PaychanContract(carol_chain, devnet_contract.address)
    params, _ = contract.open_channel(carol_chain.accounts[0], ADDRESS_B, 10**18)  # another tool: no node, no announce
    cid = contract.channel_id(params)

    def found() -> bool:
        status = json.loads(paychan(capsys, "status", "--db", str(bob.db), "--json")[1])
        return any(c["channelId"] == "0x" + cid.hex() for c in status["channels"])

    wait_for(found, "bob's node to find the channel")
    code, out, _ = paychan(capsys, "status", "--db", str(bob.db))
    assert f"channel 0x{cid.hex()}  role B  open  nonce 0" in out
    assert "at (not announced yet)" in out and "deposits A 1 ETH  B 0 ETH" in out
    # watched: carol's close (without a state) is seen, and bob's node shows the challenge period
    contract.close(carol_chain.accounts[0], params)
    wait_for(lambda: bob.status()["phase"] == "challenge period", "bob's node to see the close")


@pytest.mark.anvil
def test_a_node_on_a_restarted_devnet_stops_paying_and_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    net = start_devnet(port=port)
    node = None
    try:
        chain = rpc_chain(net.url)
        contract, _ = PaychanContract.deploy(chain, chain.accounts[0])
        carol_chain = rpc_chain(net.url, ["0x" + KEY_C.hex()])
        carol = PaychanContract(carol_chain, contract.address)
        params, _ = carol.open_channel(carol_chain.accounts[0], ADDRESS_B, 10**18)
        carol.deposit(carol_chain.accounts[0], params, ADDRESS_B, 10**17)  # bob has something to pay with
        node = NodeProcess(
            tmp_path, "bob", KEY_B, net.url, contract.address, free_port(), PASSWORD,
            ("--poll-interval", "0.2", "--log-level", "WARNING"),
        )  # fmt: skip
        node.start()

        def found() -> bool:  # the node finds the channel (opened before it started) on its first polls
            channels = node.control("GET", "/status")["channels"] if node is not None else []
            return bool(channels) and channels[-1]["depositB"] == str(10**17)

        wait_for(found, "bob's node to find it")

        net.stop()  # the devnet restarts: a new chain on the same port, without the contract
        net = start_devnet(port=port)
        wait_for(lambda: bool(node and node.control("GET", "/status")["chainLost"]), "bob's node to notice")
        code, out, err = paychan(capsys, "pay", "--db", str(node.db), "1000")
        assert code == 1 and out == ""
        assert err.startswith("paychan: error: the chain at ") and "payments stopped" in err
        assert err.count("\n") == 1
        code, out, _ = paychan(capsys, "status", "--db", str(node.db))
        assert "CHAIN LOST" in out and "chain lost" in out
        time.sleep(1.0)  # several polls later it is still said only once
        log = node.log.read_text()
        assert log.count("payments stopped") == 1
        assert "Traceback" not in log and log.count("retrying with back-off") <= 1  # the outage: one line
    finally:
        if node is not None:
            node.stop()
        net.stop()


@pytest.mark.anvil
def test_a_payout_the_token_refused_to_push_is_claimed_through_the_cli_after_a_unilateral_close(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
    artifacts: Any,
) -> None:
    from tests.conftest import deploy_test_contract

    chain = devnet_contract.chain
    token = deploy_test_contract(chain, chain.accounts[0], artifacts["TestToken"])

    def call(name: str, *args: Any) -> None:
        data = token.encode_abi(name, args=list(args))
        assert chain.send(chain.accounts[0], {"to": token.address, "data": data, "gas": 100_000})["status"] == 1

    def balance(who: str) -> int:
        return int(token.functions.balanceOf(who).call())

    call("mint", ADDRESS_A, 1000 * TOKEN)
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    code, _, err = paychan(
        capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--asset", token.address, "--deposit", "100"
    )
    assert code == 0, err
    assert paychan(capsys, "pay", "--db", str(alice.db), "10")[0] == 0
    bob.stop()
    call("setBlocked", ADDRESS_B, True)  # the token now refuses transfers to bob: his payout cannot be pushed

    assert paychan(capsys, "close", "--db", str(alice.db), "--unilateral")[0] == 0
    chain.time_travel(3601)
    code, out, err = paychan(capsys, "settle", "--db", str(alice.db))
    if code == 0:
        assert f"10 TEST to {ADDRESS_B} could not be pushed: `paychan claim` collects it" in out
    else:  # alice's node settled by itself first
        wait_for(lambda: alice.status()["status"] == "closed", "alice's node to settle")
    assert devnet_contract.owed(ADDRESS_B, token.address) == 10 * TOKEN
    assert balance(ADDRESS_A) == 990 * TOKEN and balance(devnet_contract.address) == 10 * TOKEN

    call("setBlocked", ADDRESS_B, False)
    bob.start()
    code, out, err = paychan(capsys, "claim", "--db", str(bob.db), "--asset", token.address)
    assert code == 0, err
    assert out.startswith("claimed 10 TEST (tx 0x")
    assert balance(ADDRESS_B) == 10 * TOKEN and balance(devnet_contract.address) == 0
    assert devnet_contract.owed(ADDRESS_B, token.address) == 0
