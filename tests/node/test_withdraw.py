"""``paychan withdraw`` between two node processes on anvil: money out of an open channel, exact on chain.

Every refusal is one sentence on stderr with exit code 1, and the chain, both nodes' stores and their states
are checked unchanged afterwards (and the channel still pays).
"""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.node.withdraw import WithdrawMessage, parse_countersigned
from paychan.signing import sign_message, sign_state
from paychan.state import ChannelState, Nonce, SignedState, Wei, Withdrawal

from .conftest import (
    ADDRESS_A,
    ADDRESS_B,
    KEY_A,
    KEY_B,
    KEY_C,
    NodeProcess,
    announce_until_known,
    carol_pays_bob_three_times,
    one_error,
    open_channel_by_cli,
    paychan,
    signed_request,
    states_in,
    wait_for,
)

ETHER = 10**18


def fee_of(contract: PaychanContract, tx: str) -> int:
    receipt = contract.chain.w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def withdraw_line(out: str) -> str:
    return re.sub(r"0x[0-9a-f]{64}", "0x…", out.strip())


@pytest.mark.anvil
def test_both_sides_withdraw_while_open_and_get_exactly_their_amounts_then_the_channel_pays_and_closes(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.3ether")[0] == 0
    w3 = devnet_contract.chain.w3

    before = w3.eth.get_balance(ADDRESS_A)
    code, out, err = paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert w3.eth.get_balance(ADDRESS_A) - before == 2 * 10**17 - fee_of(devnet_contract, data["transaction"])
    onchain = devnet_contract.get_channel(cid)  # type: ignore[arg-type]
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b, onchain.withdrawals) == (1, 8 * 10**17, 0, 1)
    assert w3.eth.get_balance(devnet_contract.address) == 8 * 10**17
    assert (data["depositA"], data["depositB"], data["withdrawals"], data["nonce"]) == (str(8 * 10**17), "0", 1, 2)
    assert data["myBalance"] == str(5 * 10**17)

    # bob (who must ask alice for the turn) withdraws once his node has seen alice's withdrawal on chain
    wait_for(lambda: bob.status()["withdrawals"] == 1, "bob's node to see alice's withdrawal")
    before = w3.eth.get_balance(ADDRESS_B)
    code, out, err = paychan(capsys, "withdraw", "--db", str(bob.db), "0.1ether")
    assert code == 0, err
    assert withdraw_line(out) == (
        "withdrew 0.1 ETH from channel 0x… (tx 0x…): deposits now A 0.7 ETH, B 0 ETH; my balance 0.2 ETH, nonce 3"
    )
    tx = re.search(r"tx (0x[0-9a-f]{64})", out)
    assert tx is not None
    assert w3.eth.get_balance(ADDRESS_B) - before == 10**17 - fee_of(devnet_contract, tx.group(1))
    onchain = devnet_contract.get_channel(cid)  # type: ignore[arg-type]
    assert (onchain.deposit_a, onchain.deposit_b, onchain.withdrawals) == (7 * 10**17, 0, 2)

    wait_for(lambda: alice.status()["withdrawals"] == 2, "alice's node to see bob's withdrawal")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    for node in (alice, bob):
        status = node.status()
        assert (status["nonce"], status["balanceA"], status["balanceB"]) == (4, str(4 * 10**17), str(3 * 10**17))
    before_a, before_b = w3.eth.get_balance(ADDRESS_A), w3.eth.get_balance(ADDRESS_B)
    code, out, err = paychan(capsys, "close", "--db", str(alice.db), "--json")
    assert code == 0, err
    closed = json.loads(out)
    assert (closed["nonce"], closed["payoutA"], closed["payoutB"]) == (5, str(4 * 10**17), str(3 * 10**17))
    assert w3.eth.get_balance(ADDRESS_A) - before_a == 4 * 10**17 - fee_of(devnet_contract, closed["transaction"])
    assert w3.eth.get_balance(ADDRESS_B) - before_b == 3 * 10**17
    assert w3.eth.get_balance(devnet_contract.address) == 0


@pytest.mark.anvil
def test_a_payment_the_peer_makes_before_its_watcher_has_seen_our_withdrawal_waits_for_it_and_goes_through(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B, poll_interval=4.0)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.3ether")[0] == 0
    assert paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether")[0] == 0
    # bob's node still holds the withdrawal as not made (its watcher polls every 4 s): it signs nothing on
    # top of it until it sees it made, then pays with the deposits and counter it left
    code, out, err = paychan(capsys, "pay", "--db", str(bob.db), "0.05ether")
    assert code == 0, (out, err)
    assert "nonce 3, my balance 0.25 ETH" in out
    for node in (alice, bob):
        status = node.status()
        assert (status["nonce"], status["balanceA"], status["balanceB"], status["withdrawals"]) == (
            3, str(55 * 10**16), str(25 * 10**16), 1,
        )  # fmt: skip
        assert (status["depositA"], status["depositB"], status["inflight"]) == (str(8 * 10**17), "0", 0)
    assert devnet_contract.get_channel(cid).withdrawals == 1  # type: ignore[arg-type]


@pytest.mark.anvil
def test_a_withdrawal_whose_transaction_failed_blocks_new_states_and_is_submitted_when_asked_again_after_a_restart(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.3ether")[0] == 0
    chain = devnet_contract.chain
    chain.rpc("anvil_setBalance", [ADDRESS_A, "0x0"])  # alice cannot pay for the transaction
    failed = one_error(*paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether"))
    assert failed.startswith("both signed the withdrawal of 0.2 ETH, but its transaction failed (")
    assert re.search(r"\): nothing was withdrawn; run `paychan withdraw` with the same amount to submit it again "
                     r"\(until \d+\)$", failed), failed  # fmt: skip
    onchain = devnet_contract.get_channel(cid)  # type: ignore[arg-type]
    assert (onchain.deposit_a, onchain.withdrawals) == (ETHER, 0)
    pending = alice.status()["pendingWithdrawal"]
    assert (pending["amountA"], pending["amountB"], pending["bothSigned"]) == (str(2 * 10**17), "0", True)
    code, out, _ = paychan(capsys, "status", "--db", str(alice.db))
    assert (
        f"  withdrawal not made on chain yet (signed by both): A 0.2 ETH, B 0 ETH, valid until {pending['expiry']}; "
        "no new state until it is made\n" in out
    )
    code, out, err = paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")  # nothing on top of it
    assert code == 1 and "1 cancelled before they were signed: they will not happen" in err
    assert [states_in(node, cid) for node in (alice, bob)] == [2, 2]

    chain.rpc("anvil_setBalance", [ADDRESS_A, hex(10 * ETHER)])
    alice.stop()
    alice.start()  # the withdrawal both signed is still known after the restart
    assert one_error(*paychan(capsys, "withdraw", "--db", str(alice.db), "0.1ether")).startswith(
        "the withdrawal of 0.2 ETH both signed is not made yet: run `paychan withdraw` with that amount to submit "
        "it (until "
    )
    code, out, err = paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert chain.w3.eth.get_balance(ADDRESS_A) == 10 * ETHER + 2 * 10**17 - fee_of(devnet_contract, data["transaction"])
    onchain = devnet_contract.get_channel(cid)  # type: ignore[arg-type]
    assert (onchain.deposit_a, onchain.deposit_b, onchain.withdrawals) == (8 * 10**17, 0, 1)
    wait_for(lambda: bob.status()["withdrawals"] == 1, "bob's node to see the withdrawal")
    assert alice.status()["pendingWithdrawal"] is None and bob.status()["pendingWithdrawal"] is None
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    assert [node.status()["balanceB"] for node in (alice, bob)] == [str(4 * 10**17)] * 2
    assert [states_in(node, cid) for node in (alice, bob)] == [3, 3]


@pytest.mark.anvil
def test_a_withdrawal_both_signed_that_expires_unmade_is_dropped_by_both_nodes_and_the_channel_pays_again(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.3ether")[0] == 0
    chain = devnet_contract.chain
    chain.rpc("anvil_setBalance", [ADDRESS_A, "0x0"])  # alice cannot pay for the transaction
    failed = one_error(*paychan(capsys, "withdraw", "--db", str(alice.db), "0.2ether", "--expires-in", "60"))
    assert failed.startswith("both signed the withdrawal of 0.2 ETH, but its transaction failed (")
    chain.rpc("anvil_setBalance", [ADDRESS_A, hex(10 * ETHER)])
    expiry = alice.status()["pendingWithdrawal"]["expiry"]
    assert bob.status()["pendingWithdrawal"]["expiry"] == expiry
    chain.time_travel(expiry - chain.now() + 2)  # a block past the expiry: the withdrawal can never be made
    for node in (alice, bob):
        wait_for(lambda node=node: node.status()["pendingWithdrawal"] is None, f"{node.name} to drop the withdrawal")
    assert [node.status()["nonce"] for node in (alice, bob)] == [1, 1]  # the state before it, again
    code, out, err = paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")
    assert code == 0, err
    assert [node.status()["nonce"] for node in (alice, bob)] == [3, 3]  # above the withdrawal's nonce 2
    alice.stop()
    alice.start()  # the dropped withdrawal stays dropped
    assert alice.status()["pendingWithdrawal"] is None
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    assert [node.status()["balanceB"] for node in (alice, bob)] == [str(5 * 10**17)] * 2
    onchain = devnet_contract.get_channel(cid)  # type: ignore[arg-type]
    assert (onchain.deposit_a, onchain.withdrawals) == (ETHER, 0)


def snapshot(contract: PaychanContract, cid: bytes, nodes: list[NodeProcess]) -> tuple[Any, ...]:
    onchain = contract.get_channel(cid)  # type: ignore[arg-type]
    return (
        (onchain.status, onchain.deposit_a, onchain.deposit_b, onchain.withdrawals),
        contract.chain.w3.eth.get_balance(contract.address),
        [states_in(node, cid) for node in nodes],
    )


@pytest.mark.anvil
def test_a_withdrawal_of_nothing_too_much_too_short_refused_by_the_peer_or_with_the_peer_down_changes_nothing(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.3ether")[0] == 0
    wait_for(lambda: bob.status()["nonce"] == 1, "bob's node to hold the payment")
    before = snapshot(devnet_contract, cid, [alice, bob])
    assert before == ((1, ETHER, 0, 0), ETHER, [1, 1])

    def withdraw(node: NodeProcess, *args: str) -> str:
        return one_error(*paychan(capsys, "withdraw", "--db", str(node.db), *args))

    assert withdraw(alice, "0") == "invalid amount '0': the amount must be more than zero"
    assert withdraw(alice, "0.8ether") == "insufficient balance: 0.7 ETH available, 0.8 ETH asked"
    assert withdraw(bob, "0.3ether", "--expires-in", "10") == (
        "a withdrawal valid for 10 s would expire before its transaction is safely mined, or is too long: give "
        "--expires-in from 60 to 2592000 s; nothing was withdrawn"
    )
    refused = withdraw(alice, "0.1ether", "--expires-in", "7200")
    assert re.fullmatch(
        r"the peer refused the withdrawal: WithdrawalRejected\(it expires at (\d+), more than 3600 s after now "
        r"\((\d+)\)\); nothing was withdrawn",
        refused,
    ), refused
    assert snapshot(devnet_contract, cid, [alice, bob]) == before
    bob.stop()
    assert withdraw(alice, "0.1ether").startswith(
        f"the peer's node at {bob.peer_url} does not answer (GET {bob.peer_url}/peer/info: ClientConnectorError"
    )
    assert withdraw(alice, "0.1ether").endswith(": nothing was signed, nothing was withdrawn")
    assert snapshot(devnet_contract, cid, [alice, bob]) == before
    assert alice.status()["nonce"] == 1

    # nothing was left behind: the next payment takes nonce 2, and a withdrawal still goes through
    bob.start()
    assert paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")[0] == 0
    wait_for(lambda: bob.status()["nonce"] == 2, "bob's node to hold the payment")
    code, out, err = paychan(capsys, "withdraw", "--db", str(alice.db), "0.6ether")
    assert code == 0, err
    assert "deposits now A 0.4 ETH, B 0 ETH; my balance 0 ETH, nonce 3" in out
    assert snapshot(devnet_contract, cid, [alice, bob]) == ((1, 4 * 10**17, 0, 1), 4 * 10**17, [3, 3])


def carol_withdrawal(
    contract: PaychanContract,
    cid: bytes,
    deposit: int,
    amount_a: int,
    amount_b: int,
    expiry: int,
    paid: int = 0,
    nonce: int = 1,
) -> WithdrawMessage:
    """KEY_C (A, sole depositor of ``deposit``, who paid bob ``paid``) proposes a withdrawal with the state
    at ``nonce``."""
    withdrawal = Withdrawal(cid, amount_a, amount_b, deposit, 0, 0, expiry)  # type: ignore[arg-type]
    try:
        left_a, left_b = withdrawal.deposits_after()
    except ValueError:  # more than the deposits: the state a forger would send with it
        left_a, left_b = 0, 0
    state = ChannelState(
        cid,  # type: ignore[arg-type]
        Nonce(nonce),
        Wei(max(0, deposit - paid - amount_a)),
        Wei(max(0, paid - amount_b)),
        deposit_a=Wei(left_a),
        deposit_b=Wei(left_b),
        withdrawals=1,
    )
    signed = SignedState(state, sign_state(contract.domain, state, KEY_C), None)
    return WithdrawMessage(cid, 0, withdrawal, sign_message(contract.domain, withdrawal, KEY_C), signed)  # type: ignore[arg-type]


@pytest.mark.anvil
def test_a_node_refuses_an_expired_a_foreign_or_a_malformed_withdrawal_before_signing_and_stores_nothing(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: PaychanContract
) -> None:
    bob = node_processes("bob", KEY_B)
    bob.start()
    carol_chain = rpc_chain(devnet.url, ["0x" + KEY_C.hex()])
    carol = carol_chain.accounts[0]
    deposit = 10**17
    params, _ = devnet_contract.open_channel(carol, ADDRESS_B, deposit, challenge_period=3600)
    cid = devnet_contract.channel_id(params)
    domain = devnet_contract.domain
    announce_until_known(bob.peer_url, params, KEY_C, ADDRESS_B, domain)
    wait_for(lambda: bob.status()["depositA"] == str(deposit), "bob's node to see carol's deposit")
    now = devnet_contract.chain.now()
    url = bob.peer_url + "/peer/withdraw"

    def refused(payload: dict[str, Any], key: bytes = KEY_C) -> tuple[int, dict[str, Any]]:
        with pytest.raises(urllib.error.HTTPError) as info:
            signed_request(url, payload, key, ADDRESS_B, domain)
        return info.value.code, json.loads(info.value.read())["error"]

    expired = carol_withdrawal(devnet_contract, cid, deposit, 10**16, 0, now - 1)
    code, error = refused(expired.to_json())
    assert (code, error["type"]) == (422, "WithdrawalRejected")
    assert re.fullmatch(
        rf"WithdrawalRejected\(it expires at {now - 1}, 30 s or less after now \(\d+\): too soon to be made\)",
        error["message"],
    )
    bobs = carol_withdrawal(devnet_contract, cid, deposit, 0, 10**16, now + 600)  # from bob's side
    code, error = refused(bobs.to_json())
    assert (code, error["message"]) == (422, "WithdrawalRejected(it withdraws from our side: only we propose that)")
    too_much = carol_withdrawal(devnet_contract, cid, deposit, deposit + 1, 0, now + 600)
    assert refused(too_much.to_json()) == (422, {"type": "NegativeBalance", "message": "NegativeBalance(balance=-1)",
                                                 "fields": {"balance": -1}})  # fmt: skip
    fine = carol_withdrawal(devnet_contract, cid, deposit, 10**16, 0, now + 600)
    code, error = refused({**fine.to_json(), "extra": 1})
    assert (code, error["type"], error["message"]) == (400, "MalformedMessage", "withdraw has unknown field(s) extra")
    code, error = refused(fine.to_json(), key=KEY_A)  # signed by someone not in the channel
    assert (code, error["type"]) == (403, "NotCounterparty")
    assert states_in(bob, cid) == 0 and bob.status()["nonce"] == 0
    onchain = devnet_contract.get_channel(cid)
    assert (onchain.deposit_a, onchain.withdrawals) == (deposit, 0)

    # a sound one is countersigned, and carol can make it on chain with both signatures
    answer = signed_request(url, fine.to_json(), KEY_C, ADDRESS_B, domain)
    bob_signature, countersigned = parse_countersigned(answer)
    assert countersigned.state == fine.state.state and states_in(bob, cid) == 1
    devnet_contract.withdraw(carol, params, fine.withdrawal, fine.signature, bob_signature)
    onchain = devnet_contract.get_channel(cid)
    assert (onchain.deposit_a, onchain.withdrawals) == (deposit - 10**16, 1)
    wait_for(lambda: bob.status()["withdrawals"] == 1, "bob's node to see the withdrawal")
    assert bob.status()["depositA"] == str(deposit - 10**16)


@pytest.mark.anvil
def test_a_node_restarted_with_a_countersigned_withdrawal_never_made_closes_with_the_state_before_it(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet: Any,
    devnet_contract: PaychanContract,
) -> None:
    bob = node_processes("bob", KEY_B)
    bob.start()
    carol = rpc_chain(devnet.url, ["0x" + KEY_C.hex()]).accounts[0]
    params, _ = devnet_contract.open_channel(carol, ADDRESS_B, ETHER, challenge_period=3600)
    cid = devnet_contract.channel_id(params)
    domain = devnet_contract.domain
    announce_until_known(bob.peer_url, params, KEY_C, ADDRESS_B, domain)
    wait_for(lambda: bob.status()["depositA"] == str(ETHER), "bob's node to see carol's deposit")
    carol_pays_bob_three_times(bob.peer_url, cid, ETHER, domain)  # bob holds 0.3 ETH at nonce 3
    message = carol_withdrawal(
        devnet_contract, cid, ETHER, 2 * 10**17, 0, devnet_contract.chain.now() + 600, paid=3 * 10**17, nonce=4
    )
    signed_request(bob.peer_url + "/peer/withdraw", message.to_json(), KEY_C, ADDRESS_B, domain)
    assert bob.status()["nonce"] == 4  # countersigned; carol never submits it
    bob.stop()
    bob.start()
    status = bob.status()
    assert (status["nonce"], status["withdrawals"], status["ownRevocation"]) == (4, 0, 3)
    code, out, err = paychan(capsys, "close", "--db", str(bob.db), "--unilateral")
    assert code == 0, err
    assert "unilaterally with nonce 3 (A 0.7 ETH, B 0.3 ETH)" in out  # the state the chain accepts
    recorded = devnet_contract.recorded_state(cid)
    assert (recorded.nonce, recorded.balance_a, recorded.balance_b, recorded.withdrawals) == (
        3, 7 * 10**17, 3 * 10**17, 0,
    )  # fmt: skip
