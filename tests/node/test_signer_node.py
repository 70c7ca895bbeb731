"""``paychan node --signer-url``: a node process whose off-chain messages (states, revocations, withdrawals)
are signed by an external JSON-RPC signer (``eth_signTypedData_v4``) on anvil, here anvil's own unlocked
account of the node's address, reached through a small proxy in this test that counts (and can corrupt) the
signing requests. A signer that answers with another key's signature, refuses or is down refuses the payment
with one error and stores nothing; the channel pays again once the signer is back."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.node.keystore import write_keystore
from paychan.node.server import Node, SignerMismatch
from paychan.node.store import Store
from paychan.signers import JsonRpcSigner, LocalKeySigner
from paychan.signing import check_message_signer, check_signer
from paychan.state import Revocation

from ..fake_wallet import SIGN, FakeWallet, running_wallet
from .conftest import (
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    KEY_A,
    KEY_B,
    KEY_C,
    PASSWORD,
    NodeProcess,
    free_port,
    one_error,
    open_channel_by_cli,
    paychan,
    wait_for,
)

ETHER = 10**18
ADDRESS_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's (and Ape's) test account 0


@pytest.fixture
def signer_proxy(devnet: Any) -> Iterator[FakeWallet]:
    """A JSON-RPC signer forwarding to anvil (whose unlocked account of the node's address signs)."""
    yield from running_wallet(devnet.url, ADDRESS_C)


@pytest.fixture
def nodes(tmp_path: Path, devnet: Any, devnet_contract: PaychanContract) -> Iterator[Callable[..., NodeProcess]]:
    """Factory of node processes (``signer_url``: the node's ``--signer-url``); each stopped by PID after."""
    started: list[NodeProcess] = []

    def make(name: str, key: bytes, signer_url: str | None = None, payment_timeout: int = 5, *more: str) -> NodeProcess:
        extra = ("--poll-interval", "0.2", "--payment-timeout", str(payment_timeout), "--log-level", "WARNING", *more)
        if signer_url is not None:
            extra += ("--signer-url", signer_url, "--signer-timeout", "5")
        process = NodeProcess(tmp_path, name, key, devnet.url, devnet_contract.address, free_port(), PASSWORD, extra)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


def pay(capsys: pytest.CaptureFixture[str], node: NodeProcess, amount: str) -> tuple[int, str, str]:
    return paychan(capsys, "pay", "--db", str(node.db), amount)


def stored(node: NodeProcess, cid: bytes) -> tuple[list[Any], Any]:
    """The node's stored state rows and its channel record."""
    store = Store(node.db)
    try:
        return store.states(cid), store.channel(cid)
    finally:
        store.close()


@pytest.mark.anvil
def test_a_node_whose_states_are_signed_by_anvils_unlocked_account_pays_is_paid_withdraws_and_closes_and_its_peer_holds_valid_signatures(  # noqa: E501
    nodes: Callable[..., NodeProcess],
    signer_proxy: FakeWallet,
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = nodes("alice", KEY_A, signer_proxy.url), nodes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    for _ in range(3):
        assert pay(capsys, alice, "0.1ether")[0] == 0
    assert pay(capsys, bob, "0.05ether")[0] == 0  # alice countersigns through her signer
    code, out, err = paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether", "--json")
    assert code == 0, err
    assert json.loads(out)["myBalance"] == str(55 * 10**16)
    assert pay(capsys, alice, "0.05ether")[0] == 0
    wait_for(lambda: bob.status()["nonce"] == 6, "bob's node to hold nonce 6")

    # every signature of alice's was asked of the signer, for alice's address
    assert len(signer_proxy.signed) >= 7 and set(signer_proxy.signed) == {ADDRESS_A}
    domain = devnet_contract.domain
    rows, record = stored(bob, cid)
    assert [r.state.nonce for r in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        check_signer(domain, row.state, row.signed.sig_a, ADDRESS_A)
        check_signer(domain, row.state, row.signed.sig_b, ADDRESS_B)
    assert record is not None and record.peer_revocation >= 4 and record.peer_revocation_sig is not None
    check_message_signer(domain, Revocation(cid, record.peer_revocation), record.peer_revocation_sig, ADDRESS_A)
    status = bob.status()
    assert (status["balanceA"], status["balanceB"], status["depositA"]) == (
        str(50 * 10**16),
        str(30 * 10**16),
        str(80 * 10**16),
    )

    # the chain accepts the signer's signatures: a cooperative close pays both exactly
    w3 = devnet_contract.chain.w3
    before_b = w3.eth.get_balance(ADDRESS_B)
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--json")
    assert code == 0, err
    closed = json.loads(out)
    assert (closed["payoutA"], closed["payoutB"]) == (str(50 * 10**16), str(30 * 10**16))
    assert w3.eth.get_balance(ADDRESS_B) - before_b == 30 * 10**16
    assert w3.eth.get_balance(devnet_contract.address) == 0
    assert "on the event loop" not in alice.log.read_text()  # every signature was made ahead, off the loop


@pytest.mark.anvil
def test_a_signer_answering_with_another_keys_signature_refusing_or_down_fails_the_payment_with_one_error_and_stores_nothing(  # noqa: E501
    nodes: Callable[..., NodeProcess],
    signer_proxy: FakeWallet,
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = nodes("alice", KEY_A, signer_proxy.url), nodes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert pay(capsys, alice, "0.1ether")[0] == 0
    before = (stored(alice, cid), stored(bob, cid), alice.status(), bob.status())
    assert [r.state.nonce for r in before[0][0]] == [1]

    expected = {
        "other-key": f"WrongSigner(expected={ADDRESS_A}, recovered={ADDRESS_C}, digest=0x",
        "refuse": "SignerRefused(code=4001, message='User rejected the request.')",
        "down": f"SignerUnavailable(url={signer_proxy.url}, reason=HTTP 503)",
    }
    for mode, message in expected.items():
        signer_proxy.mode = mode
        asked = len(signer_proxy.signed)
        code, out, err = pay(capsys, alice, "0.1ether")
        assert (code, out) == (1, f"paid 0 of 1 x 0.1 ETH: channel 0x{cid.hex()} nonce 1, my balance 0.9 ETH\n")
        (line,) = err.splitlines()  # the one reason, the CLI's form of a refused payment
        assert line.startswith("  1 refused: " + message), (mode, line)
        assert len(signer_proxy.signed) == asked + 1  # the one state, asked once, signed by nobody
        # nothing stored as signed, or at all, on either side; both nodes' channels as before
        assert (stored(alice, cid), stored(bob, cid), alice.status(), bob.status()) == before

    # a signer found down is probed until it is back
    signer_proxy.mode = "refuse"
    wait_for(lambda: alice.control("GET", "/status")["signerAvailable"], "alice's node to find its signer back")

    # a withdrawal the signer refuses: one error, nothing withdrawn, nothing stored
    signer_proxy.mode = "refuse"
    error = one_error(*paychan(capsys, "withdraw", "--db", str(alice.db), "0.1ether"))
    assert error == (
        "the signer did not sign the withdrawal (SignerRefused(code=4001, message='User rejected the request.')): "
        "nothing was withdrawn"
    )
    assert devnet_contract.get_channel(cid).deposit_a == ETHER  # type: ignore[arg-type]
    assert (stored(alice, cid), stored(bob, cid), alice.status(), bob.status()) == before

    # bob pays alice, whose signer answers with another key's signature: alice refuses to countersign and
    # stores nothing; bob's proposal (his signature alone) stays in flight, as for any peer that refuses
    signer_proxy.mode = "other-key"
    asked = len(signer_proxy.signed)
    code, out, err = pay(capsys, bob, "0.05ether")
    assert (code, out) == (4, f"paid 0 of 1 x 0.05 ETH: channel 0x{cid.hex()} nonce 1, my balance 0.1 ETH\n")
    assert "1 signed and sent, not countersigned yet" in err
    assert len(signer_proxy.signed) > asked
    rows, record = stored(alice, cid)  # the turn passed to bob (its epoch is stored); nothing else changed
    assert (rows, record.own_revocation, record.peer_revocation, alice.status()["nonce"]) == (  # type: ignore[union-attr]
        before[0][0],
        before[0][1].own_revocation,
        before[0][1].peer_revocation,
        1,
    )
    rows, _ = stored(bob, cid)
    assert [(r.state.nonce, r.signed.sig_a) for r in rows[1:]] == [(2, None)]

    # the signer back: alice countersigns bob's payment when he sends it again, and pays on from nonce 3
    signer_proxy.mode = "honest"
    wait_for(lambda: alice.status()["nonce"] == 2, "alice's node to countersign bob's payment")
    assert pay(capsys, alice, "0.1ether")[0] == 0
    wait_for(lambda: bob.status()["nonce"] == 3, "bob's node to hold nonce 3")
    rows, _ = stored(bob, cid)
    assert [r.state.nonce for r in rows] == [1, 2, 3]
    for row in rows:
        check_signer(devnet_contract.domain, row.state, row.signed.sig_a, ADDRESS_A)
        check_signer(devnet_contract.domain, row.state, row.signed.sig_b, ADDRESS_B)
    assert bob.status()["balanceB"] == str(15 * 10**16)


@pytest.mark.parametrize("signer", [LocalKeySigner(KEY_C), JsonRpcSigner("http://127.0.0.1:9", ADDRESS_B)])
def test_a_node_given_a_signer_for_another_address_than_its_key_refuses_to_start_and_stores_nothing(
    tmp_path: Path, signer: LocalKeySigner | JsonRpcSigner
) -> None:
    from .conftest import DOMAIN

    store = Store(tmp_path / "node.db")
    try:
        with pytest.raises(SignerMismatch) as raised:
            Node(store, KEY_A, DOMAIN, signer=signer)
        assert (raised.value.signer, raised.value.node) == (signer.address, ADDRESS_A)
        assert str(raised.value) == (
            f"SignerMismatch(signer={signer.address}, node={ADDRESS_A}): the signer signs for another address"
        )
        assert (store.channels(), store.states(b"\x00" * 32)) == ([], [])
    finally:
        store.close()


@pytest.mark.anvil
def test_a_lock_the_signer_refuses_is_not_added_and_one_it_signs_is_settled_by_the_peers_secret(
    nodes: Callable[..., NodeProcess],
    signer_proxy: FakeWallet,
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = nodes("alice", KEY_A, signer_proxy.url), nodes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    code, out, _ = paychan(capsys, "lock", "secret", "--db", str(bob.db), "--json")
    assert code == 0
    made = json.loads(out)

    def view() -> tuple[Any, ...]:
        # a channel at nonce 0 shows the unsigned opening state, which a reload rebuilds from the deposits
        statuses = [{k: v for k, v in node.status().items() if k != "latest"} for node in (alice, bob)]
        return stored(alice, cid), stored(bob, cid), *statuses

    before = view()
    signer_proxy.mode = "refuse"
    error = one_error(*paychan(capsys, "lock", "add", "0.3ether", made["hashlock"], "--db", str(alice.db)))
    assert error.startswith("SignerRefused(code=4001, message='User rejected the request.')"), error
    assert view() == before

    signer_proxy.mode = "honest"
    code, out, err = paychan(capsys, "lock", "add", "0.3ether", made["hashlock"], "--db", str(alice.db), "--json")
    assert code == 0, err
    assert (json.loads(out)["nonce"], alice.status()["pendingLocks"]) == (1, 1)
    wait_for(lambda: bob.status()["pendingLocks"] == 1, "bob to hold the lock")
    code, out, err = paychan(capsys, "lock", "settle", made["secret"], "--db", str(bob.db))
    assert code == 0, err  # alice countersigns the settlement through her signer
    wait_for(lambda: alice.status()["nonce"] == 2, "alice to hold the settled state")
    rows, _ = stored(bob, cid)
    assert [r.state.nonce for r in rows] == [1, 2]
    for row in rows:
        check_signer(devnet_contract.domain, row.state, row.signed.sig_a, ADDRESS_A)
        check_signer(devnet_contract.domain, row.state, row.signed.sig_b, ADDRESS_B)
    status = bob.status()
    assert (status["balanceA"], status["balanceB"], status["pendingLocks"]) == (str(7 * 10**17), str(3 * 10**17), 0)
    assert "on the event loop" not in alice.log.read_text()


@pytest.mark.anvil
def test_a_node_waiting_for_a_slow_signer_keeps_answering_and_its_watcher_keeps_reading_the_chain_meanwhile(
    nodes: Callable[..., NodeProcess],
    signer_proxy: FakeWallet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = nodes("alice", KEY_A, signer_proxy.url, payment_timeout=60), nodes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    signer_proxy.hold()  # the signer takes as long as this test wants
    outcome: list[Any] = []
    payer = threading.Thread(target=lambda: outcome.append(alice.control("POST", "/pay", {"amount": str(ETHER // 10)})))
    payer.start()
    try:
        assert signer_proxy.signing.wait(30), "the node never asked its signer"
        # while the signature is outstanding: alice's control API answers, and her watcher sees bob's deposit
        # (a chain event it has to poll for), so neither waits behind the signer
        assert alice.status()["inflight"] == 0
        bob.control("POST", "/deposit", {"amount": str(ETHER // 5)})
        wait_for(lambda: alice.status()["depositB"] == str(ETHER // 5), "alice's watcher to see bob's deposit")
        assert payer.is_alive() and not outcome  # the payment is still waiting for its signature
        assert len(signer_proxy.signed) == 1
    finally:
        signer_proxy.release()
        payer.join(60)
    assert outcome and outcome[0]["paid"] == 1, outcome
    wait_for(lambda: bob.status()["nonce"] == 1, "bob to hold the payment")
    rows, _ = stored(alice, cid)
    assert [(r.state.nonce, r.state.balance_b, r.state.deposit_b) for r in rows] == [(1, ETHER // 10, 0)]


@pytest.mark.anvil
def test_a_node_whose_signer_is_down_starts_refuses_to_sign_with_one_sentence_still_protects_its_channel_and_recovers(  # noqa: E501
    nodes: Callable[..., NodeProcess],
    signer_proxy: FakeWallet,
    devnet: Any,
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signer_proxy.mode = "down"
    alice, bob = nodes("alice", KEY_A, signer_proxy.url), nodes("bob", KEY_B)
    alice.start()  # starts although its signer does not answer
    bob.start()
    wait_for(lambda: alice.control("GET", "/status")["signerProblem"] == "HTTP 503", "alice to probe her signer")
    status = alice.control("GET", "/status")
    assert (status["signerAvailable"], status["signer"]) == (False, f"JsonRpcSigner({ADDRESS_A})")
    code, out, _ = paychan(capsys, "status", "--db", str(alice.db))
    assert code == 0
    assert (
        f"  SIGNER UNAVAILABLE: JsonRpcSigner({ADDRESS_A}): HTTP 503; payments, locks and withdrawals are refused "
        "until it is back (the watcher still protects the channels)"
    ) in out.splitlines()

    # opening needs no off-chain signature; paying is refused at once, without asking the signer
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    code, out, err = pay(capsys, alice, "0.1ether")
    assert (code, out) == (1, f"paid 0 of 1 x 0.1 ETH: channel 0x{cid.hex()} nonce 0, my balance 1 ETH\n")
    assert err.splitlines() == [
        f"  1 refused: SignerUnavailable(url={signer_proxy.url}, reason=HTTP 503): the signer does not answer, "
        "nothing was signed"
    ]
    assert (
        f"paychan node: the signer at {signer_proxy.url} does not answer (HTTP 503): the node starts and signs "
        "nothing until the signer is back (`paychan status` shows it)"
    ) in alice.log.read_text().splitlines()
    down = f"SignerUnavailable(url={signer_proxy.url}, reason=HTTP 503): the signer does not answer, nothing was signed"
    assert one_error(*paychan(capsys, "withdraw", "--db", str(alice.db), "0.1ether")) == (
        f"the signer did not sign the withdrawal ({down}): nothing was withdrawn"
    )
    code, out, _ = paychan(capsys, "lock", "secret", "--db", str(bob.db), "--json")
    assert code == 0
    hashlock = json.loads(out)["hashlock"]
    assert one_error(*paychan(capsys, "lock", "add", "0.1ether", hashlock, "--db", str(alice.db))) == down
    assert signer_proxy.signed == []
    rows, record = stored(alice, cid)
    assert rows == [] and record is not None and record.own_revocation == 0
    assert (alice.status()["pendingLocks"], devnet_contract.get_channel(cid).deposit_a) == (0, ETHER)  # type: ignore[arg-type]

    # back by itself once the signer answers again
    signer_proxy.mode = "honest"
    wait_for(lambda: alice.control("GET", "/status")["signerAvailable"], "alice to find her signer back")
    assert alice.control("GET", "/status")["signerProblem"] is None
    assert pay(capsys, alice, "0.1ether")[0] == 0
    assert pay(capsys, alice, "0.1ether")[0] == 0
    wait_for(lambda: bob.status()["nonce"] == 2, "bob to hold nonce 2")
    wait_for(lambda: alice.status()["peerRevocation"] >= 1, "alice to hold bob's revocation")

    # the signer down again; bob's key closes with the opening state (nonce 0), which he revoked: alice's
    # watcher proves it with the states and revocation she holds, signing nothing new
    signer_proxy.mode = "down"
    assert pay(capsys, alice, "0.1ether")[0] == 1
    asked = len(signer_proxy.signed)
    bob.stop()
    chain = rpc_chain(devnet.url, ["0x" + KEY_B.hex()])
    contract = PaychanContract(chain, devnet_contract.address, from_block=devnet_contract.from_block)
    contract.close(chain.accounts[0], contract.find_params(cid), None)  # type: ignore[arg-type]
    wait_for(lambda: contract.get_channel(cid).penalized, "alice's proof of bob's revoked close")  # type: ignore[arg-type]
    (proven,) = contract.contract.events.RevokedStateProven().get_logs(
        from_block=contract.from_block, argument_filters={"channelId": cid}
    )
    assert (proven["args"]["cheater"], proven["args"]["closerNonce"]) == (ADDRESS_B, 0)
    wait_for(lambda: alice.status()["penalized"], "alice to record the proof")
    assert len(signer_proxy.signed) == asked and not alice.control("GET", "/status")["signerAvailable"]


def start_node_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, *signer_args: str) -> tuple[int, str, str]:
    """``paychan node`` with alice's keystore and ``signer_args``, on a chain nobody listens on (the signer
    is checked before the chain)."""
    if not (tmp_path / "k.json").exists():
        write_keystore(tmp_path / "k.json", KEY_A, PASSWORD, iterations=16)
    return paychan(
        capsys, "node", "--keystore", str(tmp_path / "k.json"), "--db", str(tmp_path / "n.db"),
        "--rpc-url", "http://127.0.0.1:9", "--contract", "0x5FbDB2315678afecb367f032d93F642f64180aa3", *signer_args,
    )  # fmt: skip


def test_a_signer_url_holding_another_account_stops_the_node_with_one_sentence_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYCHAN_PASSWORD", PASSWORD)
    wallet = FakeWallet()
    wallet.reply = lambda request: {"result": [ADDRESS_B.lower()]}
    try:
        code, out, err = start_node_cli(capsys, tmp_path, "--signer-url", wallet.url)
    finally:
        wallet.stop()
    assert (code, out) == (1, "")
    assert err == (
        f"paychan: error: the signer at {wallet.url} does not hold {ADDRESS_A} (it holds {ADDRESS_B}), and "
        "--signer-url must sign for the keystore's address\n"
    )
    assert [r["method"] for r in wallet.requests] == ["eth_accounts"]
    assert not (tmp_path / "n.db").exists()


def test_an_ape_account_of_another_address_or_an_unknown_alias_stops_the_node_with_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYCHAN_PASSWORD", PASSWORD)
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    code, out, err = start_node_cli(capsys, tmp_path, "--ape-account", "TEST::0")  # anvil's account 0, not A
    assert (code, out) == (1, "")
    assert err == (
        f"paychan: error: the signer signs for {ADDRESS_0}, not for the keystore's address {ADDRESS_A}: give the "
        "keystore of the signer's account\n"
    )
    code, out, err = start_node_cli(capsys, tmp_path, "--ape-account", "nobody")
    assert (code, out) == (1, "")
    assert err == "paychan: error: no Ape account 'nobody' (known: none; TEST::N names Ape's test account N)\n"
    assert not (tmp_path / "n.db").exists()


@pytest.mark.anvil
def test_a_node_whose_states_are_signed_by_an_ape_test_account_pays_and_its_peer_holds_valid_signatures(
    nodes: Callable[..., NodeProcess],
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))  # the node process's Ape: a throwaway folder
    alice = nodes("alice", KEY_A, None, 5, "--ape-account", "TEST::1")  # Ape's test account 1 is anvil's, A
    bob = nodes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert pay(capsys, alice, "0.1ether")[0] == 0
    assert pay(capsys, bob, "0.05ether")[0] == 0  # alice countersigns through her Ape account
    assert pay(capsys, alice, "0.1ether")[0] == 0
    wait_for(lambda: bob.status()["nonce"] == 3, "bob to hold nonce 3")
    status = alice.control("GET", "/status")
    assert (status["signer"], status["signerAvailable"]) == (f"ApeSigner({ADDRESS_A})", True)
    rows, record = stored(bob, cid)
    assert [r.state.nonce for r in rows] == [1, 2, 3]
    for row in rows:
        check_signer(devnet_contract.domain, row.state, row.signed.sig_a, ADDRESS_A)
        check_signer(devnet_contract.domain, row.state, row.signed.sig_b, ADDRESS_B)
    assert record is not None and record.peer_revocation_sig is not None
    assert bob.status()["balanceB"] == str(15 * 10**16)


@pytest.mark.anvil
def test_a_node_restarted_with_its_signer_down_starts_and_delivers_the_state_its_keystore_signed_before(
    nodes: Callable[..., NodeProcess],
    signer_proxy: FakeWallet,
    devnet: Any,
    devnet_contract: PaychanContract,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = nodes("alice", KEY_A, None, 1), nodes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert pay(capsys, alice, "0.1ether")[0] == 0
    bob.stop()
    assert pay(capsys, alice, "0.1ether")[0] == 4  # signed and sent, not countersigned: bob is gone
    alice.stop()
    rows, _ = stored(alice, cid)
    assert [(r.state.nonce, r.proposer, r.signed.sig_a, r.signed.sig_b) for r in rows[1:]] == [(2, "A", None, None)]

    # alice's node again, now with a signer that is down: it starts, and its state in flight (signed with
    # the keystore's key before, re-signed with it on loading) reaches bob without asking the signer
    signer_proxy.mode = "down"
    extra = ("--poll-interval", "0.2", "--log-level", "WARNING", "--signer-url", signer_proxy.url)
    again = NodeProcess(tmp_path, "alice", KEY_A, devnet.url, devnet_contract.address, alice.port, PASSWORD, extra)
    again.start()
    try:
        assert again.status()["inflight"] == 1
        bob.start()
        wait_for(lambda: bob.status()["nonce"] == 2, "bob to countersign alice's state in flight")
        wait_for(lambda: again.status()["nonce"] == 2, "alice to hold it countersigned")
        # the signer was asked for nothing but, perhaps, a new revocation (it did not answer: none was sent)
        asked = [json.loads(r["params"][1])["primaryType"] for r in signer_proxy.requests if r["method"] == SIGN]
        assert set(asked) <= {"Revocation"} and not again.control("GET", "/status")["signerAvailable"]
        rows, _ = stored(bob, cid)
        check_signer(devnet_contract.domain, rows[-1].state, rows[-1].signed.sig_a, ADDRESS_A)
    finally:
        again.stop()
