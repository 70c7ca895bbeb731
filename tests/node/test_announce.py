"""Only a channel's participant chooses where its node is reached (finding F7), end to end on anvil.

A third party races the opener's announce with its own (signed by itself, and one claiming to be the
opener): bob's node keeps the URL alice's node announced, so payments from bob to alice and the cooperative
close go where they should, and every wei is paid out.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from paychan.contract import PaychanContract
from paychan.node.auth import SIGNER_HEADER, sign_request
from paychan.node.messages import Announce

from .conftest import ADDRESS_A, ADDRESS_B, KEY_A, KEY_B, KEY_C, NodeProcess

DEPOSIT = 10**18


def announce_as(url: str, announce: Announce, key: bytes, claimed: str | None = None) -> tuple[int, dict[str, Any]]:
    """Posts ``announce`` signed with ``key`` (and, with ``claimed``, a forged signer header)."""
    body = json.dumps(announce.to_json()).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(sign_request(_domain(announce), key, ADDRESS_B, "POST", "/peer/channels", body))
    if claimed is not None:
        headers[SIGNER_HEADER] = claimed
    request = urllib.request.Request(url + "/peer/channels", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _domain(announce: Announce) -> Any:
    from paychan.signing import Domain

    return Domain(announce.chain_id, announce.contract)


@pytest.mark.anvil
def test_a_third_partys_announce_cannot_redirect_a_channel_and_every_wei_is_paid_out(
    node_processes: Callable[..., NodeProcess], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    opened = alice.control("POST", "/open", {"peer": bob.peer_url, "deposit": str(DEPOSIT)})
    cid = bytes.fromhex(opened["channelId"][2:])
    assert bob.status()["peerUrl"] == alice.peer_url  # alice's announce, accepted once bob saw the channel

    params = devnet_contract.find_params(cid)
    hijack = Announce(params, "http://10.66.66.66:1", devnet_contract.domain.chain_id, devnet_contract.address)
    assert announce_as(bob.peer_url, hijack, KEY_C)[0] == 403  # carol signs as herself: not the counterparty
    status, answer = announce_as(bob.peer_url, hijack, KEY_C, claimed=ADDRESS_A)  # carol claims to be alice
    assert (status, answer["error"]["type"]) == (401, "Unauthenticated")
    assert bob.status()["peerUrl"] == alice.peer_url

    alice.control("POST", "/pay", {"amount": "1000", "count": 3})
    assert bob.control("POST", "/pay", {"amount": "400"})["nonce"] == 4  # bob reaches alice at her URL

    w3 = devnet_contract.chain.w3
    before_a, before_b = w3.eth.get_balance(ADDRESS_A), w3.eth.get_balance(ADDRESS_B)
    closed = bob.control("POST", "/close", {})  # bob's node asks alice's node, at the URL alice announced
    receipt = w3.eth.get_transaction_receipt(closed["transaction"])
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert (int(closed["payoutA"]), int(closed["payoutB"])) == (DEPOSIT - 2600, 2600)
    assert w3.eth.get_balance(ADDRESS_A) - before_a == DEPOSIT - 2600
    assert w3.eth.get_balance(ADDRESS_B) - before_b == 2600 - fee
    assert w3.eth.get_balance(devnet_contract.address) == 0  # a fresh contract: everything paid out
