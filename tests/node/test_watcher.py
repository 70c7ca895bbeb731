"""The node's chain watcher: the counterparty closes with a stale state; the node challenges on its own with
its newer state before the deadline, and settles after it, so the newest state is what pays out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account import Account

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract

from .conftest import (
    ADDRESS_B,
    KEY_B,
    KEY_C,
    NodeProcess,
    announce_until_known,
    carol_pays_bob_three_times,
    wait_for,
)

DEPOSIT = 10**18


def test_a_stale_unilateral_close_is_challenged_by_the_node_and_the_newest_state_pays_out(
    node_processes: Callable[[str, bytes], NodeProcess], devnet: Any, devnet_contract: PaychanContract
) -> None:
    bob = node_processes("bob", KEY_B)
    bob.start()
    chain = rpc_chain(devnet.url, ["0x" + KEY_C.hex()])
    carol = chain.accounts[0]
    contract = PaychanContract(chain, devnet_contract.address)
    params, _ = contract.open_channel(carol, ADDRESS_B, DEPOSIT, challenge_period=3600)
    cid = contract.channel_id(params)
    announce_until_known(bob.peer_url, params, KEY_C, ADDRESS_B, contract.domain)  # bob found it on chain

    # carol pays bob three times through bob's peer endpoint; bob countersigns each
    countersigned = carol_pays_bob_three_times(bob.peer_url, cid, DEPOSIT, contract.domain)
    assert bob.status()["nonce"] == 3

    # carol closes with the state that pays bob least
    contract.close(carol, params, countersigned[0])
    assert contract.recorded_state(cid).nonce == 1

    wait_for(lambda: contract.recorded_state(cid).nonce == 3, "bob's challenge")
    (accepted,) = contract.contract.events.ChallengeAccepted().get_logs(
        from_block=0, argument_filters={"channelId": cid}
    )
    challenger = contract.chain.w3.eth.get_transaction(accepted["transactionHash"])["from"]
    assert (challenger, accepted["args"]["nonce"]) == (ADDRESS_B, 3)
    wait_for(lambda: bob.status()["closeNonce"] == 3, "bob to record the accepted challenge")
    status = bob.status()
    assert (status["status"], status["closeNonce"], status["challengedNonce"]) == ("closing", 3, 3)
    assert status["closeDeadline"] == contract.get_channel(cid).deadline

    # after the deadline bob's watcher settles: the newest state pays out
    chain.time_travel(3601)
    wait_for(lambda: contract.get_channel(cid).status == 0, "bob's settlement")
    (settled,) = contract.contract.events.ChannelSettled().get_logs(from_block=0, argument_filters={"channelId": cid})
    assert (settled["args"]["nonce"], settled["args"]["payoutB"]) == (3, 3 * 10**17)
    assert settled["args"]["payoutA"] == DEPOSIT - 3 * 10**17
    wait_for(lambda: bob.status()["status"] == "closed", "bob to see the channel closed")
    assert Account.from_key(KEY_C).address == carol.address
