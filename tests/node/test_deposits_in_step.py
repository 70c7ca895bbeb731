"""Deposits stay in step: a deposit by anyone, at any time, never blocks a channel between two nodes.

The landed nodes learnt deposits only from the announce: a 1-wei deposit made by a third party right after
``open``, before the counterparty's node read the channel, left the two nodes with different deposits, every
state was refused from then on (cooperative close included) and the funds stayed locked. Now each node
follows the ``Deposited`` events of its channels for as long as they are open and the next state splits them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract

from .conftest import ADDRESS_A, ADDRESS_B, KEY_A, KEY_B, KEY_C, NodeProcess, wait_for

DEPOSIT = 10**18


def test_deposits_by_a_third_party_right_after_open_and_later_never_block_payments_or_the_cooperative_close(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    carol_chain = rpc_chain(devnet.url, ["0x" + KEY_C.hex()])
    carol = carol_chain.accounts[0]
    contract = PaychanContract(carol_chain, devnet_contract.address)

    opened = alice.control("POST", "/open", {"peer": bob.peer_url, "deposit": str(DEPOSIT)})
    cid = bytes.fromhex(opened["channelId"][2:])
    params = contract.find_params(cid)
    contract.deposit(carol, params, ADDRESS_B, 1)  # at once, by a stranger: bob's side now holds 1 wei

    alice.control("POST", "/pay", {"amount": "1000", "count": 5})  # whether or not the nodes saw it yet
    for node in (alice, bob):
        wait_for(lambda node=node: node.status()["depositB"] == "1", f"{node.name}'s node to see carol's deposit")
    paid = bob.control("POST", "/pay", {"amount": "5001"})  # everything bob has: alice's 5,000 and carol's wei
    assert paid["nonce"] == 6 and paid["myBalance"] == "0"
    latest = paid["state"]["state"]
    assert (latest["depositA"], latest["depositB"]) == (str(DEPOSIT), "1")  # the state splits both deposits

    # a later top-up for alice, by carol again, while the channel runs: alice can spend it
    contract.deposit(carol, params, ADDRESS_A, 5 * 10**17)
    wait_for(lambda: alice.status()["depositA"] == str(DEPOSIT + 5 * 10**17), "alice's node to see the top-up")
    big = DEPOSIT + 10**17  # more than alice's first deposit
    paid = alice.control("POST", "/pay", {"amount": str(big)})
    assert paid["nonce"] == 7
    wait_for(lambda: bob.status()["nonce"] == 7, "bob's node to countersign")
    assert alice.status()["latest"] == bob.status()["latest"]

    w3 = carol_chain.w3
    before_a, before_b = w3.eth.get_balance(ADDRESS_A), w3.eth.get_balance(ADDRESS_B)
    closed = alice.control("POST", "/close", {})
    receipt = w3.eth.get_transaction_receipt(closed["transaction"])
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    expected_a = DEPOSIT + 5 * 10**17 - 5000 + 5001 - big
    expected_b = 1 + 5000 - 5001 + big
    assert (int(closed["payoutA"]), int(closed["payoutB"])) == (expected_a, expected_b)
    assert w3.eth.get_balance(ADDRESS_A) - before_a == expected_a - fee
    assert w3.eth.get_balance(ADDRESS_B) - before_b == expected_b
    assert contract.get_channel(cid).status == 0
    assert w3.eth.get_balance(contract.address) == 0  # a fresh contract: everything deposited was paid out
