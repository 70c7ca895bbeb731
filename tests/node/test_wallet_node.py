"""``paychan node --wallet W``: a node whose channel participant is a contract wallet (``OwnedWallet1271``, owned
by KEY_A), next to an ordinary node (bob, KEY_B), both real processes on anvil.

Alice's node is the wallet: the wallet is participant A on chain and pays the deposit; KEY_A signs the
wallet's states (the contract accepts them through the wallet's ``isValidSignature``), sends every
transaction as ``wallet.execute(...)`` and pays the gas. Bob's node learns from the first request of
alice's node, once, on chain, that KEY_A speaks for the wallet; a stranger claiming the wallet is refused
without a chain call.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.compile import Artifact, compile_contracts
from paychan.contract import PaychanContract
from paychan.node.messages import Announce
from paychan.node.store import Store
from paychan.node.wallet_peers import BINDING_KEY
from paychan.signing import check_signer
from paychan.wallets import EXECUTE_SELECTOR, IS_VALID_SIGNATURE_SELECTOR

from ..conftest import deploy_test_contract
from ..fake_wallet import running_wallet
from .conftest import (
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    KEY_A,
    KEY_B,
    KEY_C,
    PASSWORD,
    NodeProcess,
    eth_calls,
    free_port,
    open_channel_by_cli,
    paychan,
    signed_request,
    wait_for,
)

ETHER = 10**18
WALLET_FUNDS = 5 * ETHER


@pytest.fixture(scope="session")
def wallet_artifact() -> Artifact:
    """``contracts/test/OwnedWallet1271.sol`` compiled alone (the whole tree takes four times as long)."""
    return compile_contracts(only=["contracts/test/OwnedWallet1271.sol"])["OwnedWallet1271"]


@pytest.fixture
def wallet(devnet: Any, wallet_artifact: Artifact) -> str:
    """A fresh ``OwnedWallet1271`` owned by KEY_A (alice's keystore), holding 5 ether; its address."""
    chain = rpc_chain(devnet.url)
    deployed = deploy_test_contract(chain, chain.accounts[0], wallet_artifact, ADDRESS_A)
    chain.send(chain.accounts[0], {"to": deployed.address, "value": WALLET_FUNDS, "gas": 50_000})
    return str(deployed.address)


def pay(capsys: pytest.CaptureFixture[str], node: NodeProcess, amount: str, *more: str) -> int:
    code, _, err = paychan(capsys, "pay", "--db", str(node.db), amount, *more)
    assert code == 0, err
    return code


def stored(node: NodeProcess, cid: bytes) -> tuple[list[Any], Any, str | None]:
    """The node's stored state rows, its channel record and the key it holds for its counterparty A."""
    store = Store(node.db)
    try:
        record = store.channel(cid)
        peer = None if record is None else record.params.participant_a
        return store.states(cid), record, store.get_meta(BINDING_KEY + str(peer))
    finally:
        store.close()


def bound_key(node: NodeProcess, wallet: str) -> str | None:
    """The key the node holds as the one speaking for ``wallet`` (None: none yet)."""
    store = Store(node.db)
    try:
        return store.get_meta(BINDING_KEY + wallet)
    finally:
        store.close()


def refusal(url: str, payload: dict[str, Any], key: bytes, recipient: str, domain: Any, participant: str) -> Any:
    """The error status and type of a peer request the node must refuse."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        signed_request(url, payload, key, recipient, domain, participant=participant)
    return refused.value.code, json.loads(refused.value.read())["error"]["type"]


@pytest.mark.anvil
def test_a_wallet_node_opens_pays_both_ways_withdraws_and_closes_cooperatively_with_exact_payouts_its_signer_checked_on_chain_once(  # noqa: E501
    node_processes: Callable[..., NodeProcess],
    devnet_contract: PaychanContract,
    wallet: str,
    rpc_counter: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = node_processes("alice", KEY_A, extra=("--wallet", wallet))
    bob = node_processes("bob", KEY_B, rpc_url=rpc_counter)  # bob's RPC calls are counted
    alice.start()
    bob.start()
    assert alice.control_info()["address"] == wallet
    w3, domain = devnet_contract.chain.w3, devnet_contract.domain
    bob_before = w3.eth.get_balance(ADDRESS_B)

    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    # the wallet is A and paid the deposit; its owner's key sent the wallet's execute and paid the gas
    (opened,) = devnet_contract.contract.events.ChannelOpened().get_logs(
        from_block=0, argument_filters={"channelId": cid}
    )
    assert (opened["args"]["participantA"], opened["args"]["participantB"]) == (wallet, ADDRESS_B)
    sent = w3.eth.get_transaction(opened["transactionHash"])
    assert (sent["from"], sent["to"], bytes(sent["input"])[:4]) == (ADDRESS_A, wallet, EXECUTE_SELECTOR)
    assert w3.eth.get_balance(wallet) == WALLET_FUNDS - ETHER
    wait_for(lambda: bob.status()["peerUrl"] == alice.peer_url, "bob to take alice's announce")

    # a stranger claiming the wallet (KEY_C), or any wallet bob has no channel with, is refused: no chain call
    params = stored(bob, cid)[1].params  # right after the binding: its check's minute is not over
    announce = Announce(params, "http://127.0.0.1:9", domain.chain_id, domain.verifying_contract).to_json()
    url = bob.peer_url + "/peer/channels"
    assert refusal(url, announce, KEY_C, ADDRESS_B, domain, wallet) == (403, "WalletSignerRefused")
    assert refusal(url, announce, KEY_C, ADDRESS_B, domain, ADDRESS_C[:-4] + "beef") == (403, "UnknownParticipant")
    assert refusal(url, announce, KEY_A, ADDRESS_B, domain, devnet_contract.address) == (403, "UnknownParticipant")
    assert eth_calls(rpc_counter, wallet, IS_VALID_SIGNATURE_SELECTOR) == 1  # the check of alice's announce
    assert bob.status()["peerUrl"] == alice.peer_url

    pay(capsys, alice, "0.1ether", "--count", "3")
    pay(capsys, bob, "0.05ether")  # the wallet node countersigns and hands over the turn with KEY_A
    code, out, err = paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether", "--json")
    assert code == 0, err
    assert json.loads(out)["myBalance"] == str(55 * 10**16)
    assert w3.eth.get_balance(wallet) == WALLET_FUNDS - ETHER + 2 * 10**17  # withdrawn to the wallet
    pay(capsys, alice, "0.05ether")
    wait_for(lambda: bob.status()["nonce"] == 6, "bob's node to hold nonce 6")
    status = bob.status()
    assert (status["counterparty"], status["balanceA"], status["balanceB"]) == (
        wallet,
        str(5 * 10**17),
        str(3 * 10**17),
    )

    # bob holds KEY_A's signatures as the wallet's: learnt once, on chain, from alice's announce
    rows, _, bound = stored(bob, cid)
    assert [r.state.nonce for r in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        check_signer(domain, row.state, row.signed.sig_a, ADDRESS_A)
        check_signer(domain, row.state, row.signed.sig_b, ADDRESS_B)
    assert bound == ADDRESS_A
    assert eth_calls(rpc_counter, wallet, IS_VALID_SIGNATURE_SELECTOR) == 1

    # the chain takes the wallet's states: the cooperative close (through the wallet) pays both exactly
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--json")
    assert code == 0, err
    closed = json.loads(out)
    assert (closed["payoutA"], closed["payoutB"]) == (str(5 * 10**17), str(3 * 10**17))
    assert w3.eth.get_balance(wallet) == WALLET_FUNDS - 3 * 10**17
    assert w3.eth.get_balance(ADDRESS_B) - bob_before == 3 * 10**17  # bob sent no transaction
    assert w3.eth.get_balance(devnet_contract.address) == 0
    assert eth_calls(rpc_counter, wallet, IS_VALID_SIGNATURE_SELECTOR) == 1


@pytest.mark.anvil
def test_a_stale_close_by_the_peer_is_challenged_by_the_wallet_nodes_watcher_through_the_wallet_and_the_newest_state_pays_it(  # noqa: E501
    node_processes: Callable[..., NodeProcess],
    devnet: Any,
    devnet_contract: PaychanContract,
    wallet: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = node_processes("alice", KEY_A, extra=("--wallet", wallet))
    bob = node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    wait_for(lambda: bob.status()["peerUrl"] == alice.peer_url, "bob to take alice's announce")
    pay(capsys, alice, "0.1ether", "--count", "3")
    pay(capsys, bob, "0.05ether")  # nonce 4: the newest, and the best for the wallet
    wait_for(lambda: alice.status()["nonce"] == 4, "alice's node to hold nonce 4")

    # bob stops his node and closes with nonce 3 (signed by both, not revoked by him yet)
    bob.stop()
    rows, record, _ = stored(bob, cid)
    (stale,) = [r.signed for r in rows if r.state.nonce == 3]
    chain = rpc_chain(devnet.url, ["0x" + KEY_B.hex()])
    contract = PaychanContract(chain, devnet_contract.address)
    contract.close(chain.accounts[0], record.params, stale)

    # alice's watcher challenges with nonce 4, sent by KEY_A as the wallet's execute
    wait_for(lambda: contract.recorded_state(cid).nonce == 4, "alice's challenge")
    (accepted,) = contract.contract.events.ChallengeAccepted().get_logs(
        from_block=0, argument_filters={"channelId": cid}
    )
    sent = chain.w3.eth.get_transaction(accepted["transactionHash"])
    assert (sent["from"], sent["to"], bytes(sent["input"])[:4]) == (ADDRESS_A, wallet, EXECUTE_SELECTOR)

    # after the challenge period alice's watcher settles (through the wallet): nonce 4 pays out exactly
    chain.time_travel(3601)
    wait_for(lambda: contract.get_channel(cid).status == 0, "alice's settlement")
    (settled,) = contract.contract.events.ChannelSettled().get_logs(from_block=0, argument_filters={"channelId": cid})
    assert (settled["args"]["nonce"], settled["args"]["payoutA"], settled["args"]["payoutB"]) == (
        4,
        75 * 10**16,
        25 * 10**16,
    )
    assert chain.w3.eth.get_balance(wallet) == WALLET_FUNDS - 25 * 10**16
    assert chain.w3.eth.get_balance(contract.address) == 0
    wait_for(lambda: alice.status()["status"] == "closed", "alice to see the channel closed")


@pytest.mark.anvil
def test_a_wallet_node_whose_keystore_does_not_own_the_wallet_or_whose_wallet_is_a_key_stops_with_one_sentence_and_creates_nothing(  # noqa: E501
    tmp_path: Path,
    devnet: Any,
    devnet_contract: PaychanContract,
    wallet: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from paychan.node.keystore import write_keystore

    monkeypatch.setenv("PAYCHAN_PASSWORD", PASSWORD)
    keystore = tmp_path / "b.keystore.json"
    write_keystore(keystore, KEY_B, PASSWORD, iterations=1024)
    db = tmp_path / "n.db"

    def start(address: str) -> tuple[int, str, str]:
        return paychan(
            capsys, "node", "--keystore", str(keystore), "--db", str(db), "--port", str(free_port()),
            "--rpc-url", devnet.url, "--contract", devnet_contract.address, "--wallet", address,
        )  # fmt: skip

    assert start(wallet) == (
        1,
        "",
        f"paychan: error: the wallet {wallet} does not accept signatures of the keystore's key {ADDRESS_B} "
        "(isValidSignature): start the node with the keystore of its owner\n",
    )
    assert start(ADDRESS_C) == (
        1,
        "",
        f"paychan: error: --wallet {ADDRESS_C} has no code on chain 31337: it is not a contract wallet (a key runs "
        "a node with its keystore alone)\n",
    )
    code, out, err = paychan(
        capsys, "node", "--keystore", str(keystore), "--db", str(db), "--port", str(free_port()),
        "--rpc-url", devnet.url, "--contract", devnet_contract.address, "--wallet", wallet, "--tower", devnet.url,
    )  # fmt: skip
    assert (code, out) == (1, "") and err.startswith("paychan: error: --wallet and --tower cannot be combined yet")
    with pytest.raises(SystemExit) as usage:
        start("0x1234")
    assert usage.value.code == 2
    assert capsys.readouterr().err.endswith(
        "paychan node: error: argument --wallet: invalid address '0x1234': expected 0x and 40 hex digits\n"
    )
    assert not db.exists()


@pytest.mark.anvil
def test_a_wallet_node_whose_owner_key_signs_through_a_json_rpc_signer_pays_is_paid_and_closes_with_exact_payouts(
    node_processes: Callable[..., NodeProcess],
    devnet: Any,
    devnet_contract: PaychanContract,
    wallet: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with contextlib.contextmanager(running_wallet)(devnet.url) as signer:  # anvil's unlocked account of KEY_A
        alice = node_processes("alice", KEY_A, extra=("--wallet", wallet, "--signer-url", signer.url))
        bob = node_processes("bob", KEY_B)
        alice.start()
        bob.start()
        cid = open_channel_by_cli(capsys, alice, bob, "1ether")
        wait_for(lambda: bob.status()["peerUrl"] == alice.peer_url, "bob to take alice's announce")
        pay(capsys, alice, "0.1ether", "--count", "2")
        pay(capsys, bob, "0.05ether")
        wait_for(lambda: alice.status()["nonce"] == 3, "alice's node to hold nonce 3")
        assert alice.control("GET", "/status")["signer"] == f"Erc1271Signer({wallet})"
        assert len(signer.signed) >= 3 and set(signer.signed) == {ADDRESS_A}  # the key's signer, for the key
        rows, _, bound = stored(bob, cid)
        for row in rows:
            check_signer(devnet_contract.domain, row.state, row.signed.sig_a, ADDRESS_A)
        assert bound == ADDRESS_A
        code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--json")
        assert code == 0, err
        closed = json.loads(out)
        assert (closed["payoutA"], closed["payoutB"]) == (str(85 * 10**16), str(15 * 10**16))
        assert devnet_contract.chain.w3.eth.get_balance(wallet) == WALLET_FUNDS - 15 * 10**16


def test_a_wallet_node_refuses_a_signer_for_another_address_or_signing_with_another_key_than_its_own(
    tmp_path: Path,
) -> None:
    from paychan.node.server import Node, SignerMismatch
    from paychan.signers import Erc1271Signer, LocalKeySigner

    from .conftest import DOMAIN

    store = Store(tmp_path / "n.db")
    try:
        wallet = "0xC0C0c0c0C0C0c0c0c0C0c0C0C0C0C0C0C0C0c0c0"  # a wallet of KEY_A (not checked: no chain)
        node = Node(store, KEY_A, DOMAIN, wallet=wallet.lower())
        assert (node.address, node.account.address, node.signer.signing_address) == (wallet, ADDRESS_A, ADDRESS_A)
        with pytest.raises(SignerMismatch) as other_address:
            Node(store, KEY_A, DOMAIN, wallet=wallet, signer=LocalKeySigner(KEY_A))
        assert (other_address.value.signer, other_address.value.node) == (ADDRESS_A, node.address)
        with pytest.raises(SignerMismatch) as other_key:
            Node(store, KEY_A, DOMAIN, wallet=wallet, signer=Erc1271Signer(wallet, LocalKeySigner(KEY_B)))
        assert (other_key.value.signer, other_key.value.node) == (ADDRESS_B, ADDRESS_A)
    finally:
        store.close()


@pytest.mark.anvil
def test_a_channel_an_ordinary_node_opens_to_a_wallet_node_runs_both_ways_once_the_wallet_node_announces_back(
    node_processes: Callable[..., NodeProcess],
    devnet_contract: PaychanContract,
    wallet: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = node_processes("alice", KEY_A, extra=("--wallet", wallet))
    bob = node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, bob, alice, "1ether")  # bob is A, the wallet B
    # bob's own announce tells alice's node where bob is; hers back tells bob which key speaks for the wallet
    wait_for(lambda: bound_key(bob, wallet) == ADDRESS_A, "bob to learn alice's key")
    pay(capsys, bob, "0.2ether")  # the wallet node countersigns with KEY_A, and bob takes it as the wallet's
    pay(capsys, alice, "0.05ether")
    wait_for(lambda: bob.status()["nonce"] == 2, "bob's node to hold nonce 2")
    for row in stored(bob, cid)[0]:  # the wallet's side of each state: KEY_A's signature
        check_signer(devnet_contract.domain, row.state, row.signed.sig_b, ADDRESS_A)
    code, out, err = paychan(capsys, "close", "--db", str(bob.db), "--json")
    assert code == 0, err
    closed = json.loads(out)
    assert (closed["payoutA"], closed["payoutB"]) == (str(85 * 10**16), str(15 * 10**16))
    assert devnet_contract.chain.w3.eth.get_balance(wallet) == WALLET_FUNDS + 15 * 10**16
