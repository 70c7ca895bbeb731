"""Load and fault test: a stale close while strangers flood the victim's peer endpoint and its RPC is 50 ms away.

Bob's node talks to the chain through a proxy adding 50 ms to every JSON-RPC call (a hosted provider). Carol
pays bob three times (0.1, 0.2, 0.3 ETH in total), then, while 40 connections at once from five loopback
addresses flood bob's peer endpoint with announces (unsigned, and signed by fresh keys for channels that do not
exist, as an attacker can make at no cost), closes with her stale first state. Bob's watcher must challenge
within 5 s of the close being mined, and bob must be paid his newest state. The landed node (before
issue 11) queued one ``getChannel`` per announce on its single chain thread, so the same flood delayed the
watcher by minutes; now no peer request causes a chain call, and the watcher has a thread of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract

from .conftest import (
    ADDRESS_B,
    KEY_B,
    KEY_C,
    NodeProcess,
    announce_until_known,
    carol_pays_bob_three_times,
    rpc_calls,
)

DEPOSIT = 10**18
CONNECTIONS = 40  # at once, from 5 loopback addresses
FLOOD_SECONDS = 12.0
FLOOD_MAX_REQUESTS = 60_000


def start_flood(peer_url: str, domain: Any) -> subprocess.Popen[str]:
    """``flood.py`` in its own process (the second core), bounded in time and count; waits until it floods."""
    script = Path(__file__).with_name("flood.py")
    process = subprocess.Popen(
        [sys.executable, str(script), peer_url, ADDRESS_B, str(domain.chain_id), domain.verifying_contract,
         str(CONNECTIONS), str(FLOOD_SECONDS), str(FLOOD_MAX_REQUESTS)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "flooding"
    return process


@pytest.mark.serial  # the flood takes the second core, and the challenge is timed
def test_a_stale_close_during_a_flood_over_a_slow_rpc_is_challenged_within_5_s_and_pays_the_newest_state(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: PaychanContract, latency_proxy: str
) -> None:
    bob = node_processes("bob", KEY_B, rpc_url=latency_proxy, poll_interval=1.0)
    bob.start()
    chain = rpc_chain(devnet.url, ["0x" + KEY_C.hex()])
    carol = chain.accounts[0]
    contract = PaychanContract(chain, devnet_contract.address)
    params, _ = contract.open_channel(carol, ADDRESS_B, DEPOSIT, challenge_period=3600)
    cid = contract.channel_id(params)
    announce_until_known(bob.peer_url, params, KEY_C, ADDRESS_B, contract.domain)

    countersigned = carol_pays_bob_three_times(bob.peer_url, cid, DEPOSIT, contract.domain)

    flooder = start_flood(bob.peer_url, contract.domain)
    try:
        time.sleep(3.0)  # the flood is in full swing
        calls_before = sum(rpc_calls(latency_proxy).values())
        receipt = contract.close(carol, params, countersigned[0])  # carol's stale close: bob gets 0.1 ETH
        closed_at = time.monotonic()
        challenged_after = None
        while time.monotonic() - closed_at < 20:
            if contract.get_channel(cid).nonce == 3:
                challenged_after = time.monotonic() - closed_at
                break
            time.sleep(0.05)
        calls_during = sum(rpc_calls(latency_proxy).values()) - calls_before
        still_flooding = flooder.poll() is None
        out, _ = flooder.communicate(timeout=FLOOD_SECONDS + 30)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait(timeout=10)
    answers = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    print(
        f"flood: {sum(answers.values())} requests in {FLOOD_SECONDS} s answered ({answers}); challenge "
        f"{challenged_after if challenged_after is None else round(challenged_after, 2)} s after the close was mined "
        f"(block {receipt['blockNumber']}); bob's RPC calls meanwhile: {calls_during}"
    )
    assert still_flooding, "the flood ended before the challenge"
    assert sum(answers.values()) > 2000, f"the flood did not reach bob: {answers}"
    assert challenged_after is not None and challenged_after < 5.0, f"challenged after {challenged_after} s"
    (accepted,) = contract.contract.events.ChallengeAccepted().get_logs(
        from_block=receipt["blockNumber"], argument_filters={"channelId": cid}
    )
    challenger = contract.chain.w3.eth.get_transaction(accepted["transactionHash"])["from"]
    assert (challenger, accepted["args"]["nonce"]) == (ADDRESS_B, 3)
    # the flood made bob do no chain work: his calls are his own polls (3 each) plus the challenge's
    assert calls_during < 3 * (challenged_after + 2) + 20
    assert 200 not in answers  # no stranger's announce was taken

    # after the deadline bob's watcher settles: bob is paid his newest state, and the contract keeps nothing
    balance_before = chain.balance(ADDRESS_B)
    chain.time_travel(3601)
    deadline = time.monotonic() + 30
    while contract.get_channel(cid).status != 0:
        assert time.monotonic() < deadline, "bob did not settle"
        time.sleep(0.1)
    (settled,) = contract.contract.events.ChannelSettled().get_logs(
        from_block=receipt["blockNumber"], argument_filters={"channelId": cid}
    )
    assert (settled["args"]["payoutA"], settled["args"]["payoutB"]) == (DEPOSIT - 3 * 10**17, 3 * 10**17)
    settle_receipt = chain.w3.eth.get_transaction_receipt(settled["transactionHash"])
    fee = settle_receipt["gasUsed"] * settle_receipt["effectiveGasPrice"]
    assert chain.balance(ADDRESS_B) - balance_before == 3 * 10**17 - fee  # bob sent the settle
    assert chain.balance(contract.address) == 0  # conservation: a fresh contract, everything paid out
