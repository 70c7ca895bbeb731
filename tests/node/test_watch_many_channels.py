"""A node watching 1,000 channels: one poll costs a bounded number of RPC calls, whatever the number of channels.

Strangers open 1,000 channels to bob (what anyone can do to a node, at the cost of gas) and close five of
them. Bob's watcher learns of them all from events and follows them with one ``eth_getLogs`` per page of
blocks; the landed watcher called ``getChannel`` once per channel and poll (1,000 calls every second).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.node.server import Node
from paychan.node.store import Store
from paychan.node.watcher import Watcher
from paychan.state import ETH

from .conftest import ADDRESS_B, KEY_B, rpc_calls

CHANNELS = 1_000


def open_channels_to_bob(devnet_url: str, address: str, count: int) -> None:
    """``count`` zero-deposit channels to bob from the other dev accounts, sent without waiting for each."""
    chain = rpc_chain(devnet_url)
    contract = PaychanContract(chain, address)
    openers = [a for a in chain.accounts if a.address != ADDRESS_B]
    data = contract.contract.encode_abi("open", args=[ADDRESS_B, ETH, 3600, 0])
    nonces = {a.address: chain.w3.eth.get_transaction_count(a.address) for a in openers}
    fees = chain.fee_fields()
    last = None
    for i in range(count):
        opener = openers[i % len(openers)]
        tx = {"to": contract.address, "data": data, "value": 0, "gas": 120_000, "chainId": chain.chain_id, "type": 2}
        tx.update(fees, nonce=nonces[opener.address])
        nonces[opener.address] += 1
        last = chain.w3.eth.send_raw_transaction(opener.sign_transaction(tx).raw_transaction)
    assert last is not None
    chain.w3.eth.wait_for_transaction_receipt(last, timeout=60)


@pytest.mark.anvil
def test_one_poll_of_a_node_with_1000_channels_costs_at_most_three_rpc_calls(
    tmp_path: Path, devnet: Any, devnet_contract: PaychanContract, latency_proxy: str
) -> None:
    """Bob's chain calls go through the latency proxy, which counts them by method."""
    open_channels_to_bob(devnet.url, devnet_contract.address, CHANNELS)
    chain = rpc_chain(latency_proxy, ["0x" + KEY_B.hex()])
    contract = PaychanContract(chain, devnet_contract.address, from_block=devnet_contract.from_block)
    store = Store(tmp_path / "bob.db")
    node = Node(store, KEY_B, contract.domain, contract)
    watcher = Watcher(node, page_blocks=2000)
    opener_chain = rpc_chain(devnet.url)

    def poll() -> dict[str, int]:
        """One watcher poll; the RPC calls it made, by method."""
        before = rpc_calls(latency_proxy)
        asyncio.run(watcher.poll())
        after = rpc_calls(latency_proxy)
        return {
            method: after[method] - before.get(method, 0) for method in after if after[method] != before.get(method)
        }

    try:
        first = poll()
        assert len(node.runtimes) == len(store.channels()) == CHANNELS  # each ChannelOpened naming bob
        assert first == {"eth_blockNumber": 1, "eth_getLogs": 1}  # all the blocks fit one page

        opener_chain.mine()
        assert poll() == {"eth_blockNumber": 1, "eth_getLogs": 1}  # nothing new
        assert poll() == {"eth_blockNumber": 1}  # not even a new block

        # five of the strangers close their channels: the watcher reads the records from the same query
        opener_contract = PaychanContract(opener_chain, contract.address)
        closing = list(node.runtimes.values())[:5]
        for runtime in closing:
            opener_contract.close(opener_chain.account(runtime.record.params.participant_a), runtime.record.params)
        # eth_blockNumber, eth_getLogs, and the head block's timestamp (channels are closing); nothing to
        # challenge (no newer state) and nothing to settle (the records pay bob nothing): no transaction
        assert poll() == {"eth_blockNumber": 1, "eth_getLogs": 1, "eth_getBlockByNumber": 1}
        assert {r.record.status for r in closing} == {"closing"}
        assert all(r.record.has_close_record and r.record.close_nonce == 0 for r in closing)
        print(f"{CHANNELS} channels: first poll {first} RPC calls, then 2 per poll, 3 while channels are closing")
    finally:
        asyncio.run(node.stop())
        store.close()
