"""A tower process on anvil defends an offline client: penalty, challenge, reveal, settle, after a SIGKILL too.

The client (B, paid by A over the channel) pushes its newest state to the tower and goes away: it sends no
transaction at all, so its balance on chain changes by exactly what the channel pays it. The counterparty
(A) closes with a stale state through the SDK. The tower acts from its own key (anvil's dev account 3).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

from paychan.contract import STATUS_CLOSING, PaychanContract
from paychan.node.watcher import REVEAL_MARGIN
from paychan.state import ChannelParams, Lock, hashlock
from paychan.tower.process import TowerProcess
from paychan.tower.protocol import Push
from tests.node.conftest import wait_for
from tests.tower.conftest import KEY_A, KEY_B, KEY_TOWER, both_signed, push_by, state_of

DEPOSIT = 10**18
PERIOD = 3600
PAID = 10**17  # A pays B this much per state


def open_channel(contract: PaychanContract) -> tuple[ChannelParams, bytes, Any]:
    """A (anvil account 1) opens a channel to B (account 2) with ``DEPOSIT``; its params, id and A's account."""
    alice = Account.from_key(KEY_A)
    params, _ = contract.open_channel(alice, Account.from_key(KEY_B).address, DEPOSIT, challenge_period=PERIOD)
    return params, contract.channel_id(params), alice


def push_until_accepted(tower: TowerProcess, push: Push, timeout: float = 30.0) -> None:
    """Pushes until the tower has seen the channel opened on chain (``UnknownTowerChannel`` before)."""
    deadline = time.monotonic() + timeout
    while True:
        (result,) = tower.push([push.to_json()])
        if result["accepted"]:
            return
        assert result["error"]["type"] == "UnknownTowerChannel", result
        assert time.monotonic() < deadline, "the tower never saw the channel opened"
        time.sleep(0.1)


def settled(contract: PaychanContract, cid: bytes) -> bool:
    return bool(contract.contract.events.ChannelSettled().get_logs(from_block=contract.from_block,
                                                                    argument_filters={"channelId": cid}))  # fmt: skip


def payouts(contract: PaychanContract, cid: bytes) -> tuple[int, int]:
    (event,) = contract.contract.events.ChannelSettled().get_logs(
        from_block=contract.from_block, argument_filters={"channelId": cid}
    )
    return int(event["args"]["payoutA"]), int(event["args"]["payoutB"])


def test_a_stale_close_against_an_offline_client_is_penalized_and_the_client_gets_the_whole_channel(
    devnet_contract: PaychanContract, tower_process: Callable[..., TowerProcess]
) -> None:
    contract, chain = devnet_contract, devnet_contract.chain
    tower = tower_process()
    tower.start()
    params, cid, alice = open_channel(contract)
    bob_before = chain.balance(params.participant_b)
    tower_before = chain.balance(Account.from_key(KEY_TOWER).address)
    push_until_accepted(
        tower, push_by(KEY_B, 3, 3 * PAID, revoked_below=3, settle=True, domain=contract.domain, cid=cid)
    )
    # bob is offline from here on; alice closes with state 1, which she revoked
    contract.close(alice, params, both_signed(state_of(1, PAID, cid=cid), contract.domain))
    wait_for(lambda: contract.get_channel(cid).penalized, "the tower's proof of revocation", timeout=20)
    chain.time_travel(PERIOD + 1)
    wait_for(lambda: settled(contract, cid), "the tower's settlement", timeout=20)
    assert payouts(contract, cid) == (0, DEPOSIT)
    assert chain.balance(params.participant_b) - bob_before == DEPOSIT  # to the wei: bob paid no gas
    assert tower.status()["sent"] == {"proofs": 1, "challenges": 0, "settlements": 1, "reveals": 0}
    assert tower.status()["recordsFromChain"] == 0  # the record the tower built from the events was the chain's
    assert chain.balance(Account.from_key(KEY_TOWER).address) < tower_before  # the tower paid its own gas


def test_a_tower_killed_during_the_challenge_period_challenges_when_back_and_settles_after_a_second_kill(
    devnet_contract: PaychanContract, tower_process: Callable[..., TowerProcess]
) -> None:
    contract, chain = devnet_contract, devnet_contract.chain
    tower = tower_process()
    tower.start()
    params, cid, alice = open_channel(contract)
    bob_before = chain.balance(params.participant_b)
    push_until_accepted(tower, push_by(KEY_B, 3, 3 * PAID, settle=True, domain=contract.domain, cid=cid))
    tower.kill()  # no revocation held: the tower can only challenge
    contract.close(alice, params, both_signed(state_of(1, PAID, cid=cid), contract.domain))
    chain.time_travel(PERIOD // 2)
    tower.start()  # resumes from its cursor: sees the close, challenges with nonce 3
    wait_for(lambda: contract.get_channel(cid).nonce == 3, "the tower's challenge", timeout=20)
    tower.kill()  # restarted with the channel closing in its store: it re-reads the record
    chain.time_travel(PERIOD // 2 + 1)
    assert contract.get_channel(cid).status == STATUS_CLOSING
    tower.start()
    wait_for(lambda: settled(contract, cid), "the restarted tower's settlement", timeout=20)
    assert payouts(contract, cid) == (DEPOSIT - 3 * PAID, 3 * PAID)
    assert tower.status()["recordsFromChain"] == 0
    assert chain.balance(params.participant_b) - bob_before == 3 * PAID


def test_a_lock_whose_secret_only_the_tower_holds_is_revealed_before_expiry_and_paid_at_settle(
    devnet_contract: PaychanContract, tower_process: Callable[..., TowerProcess]
) -> None:
    contract, chain = devnet_contract, devnet_contract.chain
    tower = tower_process()
    tower.start()
    params, cid, alice = open_channel(contract)
    bob_before = chain.balance(params.participant_b)
    secret = os.urandom(32)
    expiry = chain.now() + 1200
    lock = Lock("A", PAID, expiry, hashlock(secret))
    newest = push_by(KEY_B, 4, 3 * PAID, locks=(lock,), secrets=(secret,), settle=True, domain=contract.domain, cid=cid)
    push_until_accepted(tower, newest)
    # the channel stays open and bob is gone: the tower reveals the secret once the expiry is near
    chain.time_travel(expiry - REVEAL_MARGIN + 5 - chain.now())
    wait_for(lambda: contract.revealed_at(hashlock(secret)) != 0, "the tower's reveal", timeout=20)
    assert contract.revealed_at(hashlock(secret)) <= expiry
    contract.close(alice, params, newest.signed)  # alice closes with the state holding the lock
    chain.time_travel(PERIOD + 1)
    wait_for(lambda: settled(contract, cid), "the tower's settlement with the lock list", timeout=20)
    assert payouts(contract, cid) == (DEPOSIT - 4 * PAID, 4 * PAID)  # the lock paid bob
    assert tower.status()["sent"]["reveals"] == 1 and tower.status()["recordsFromChain"] == 0
    assert chain.balance(params.participant_b) - bob_before == 4 * PAID


def test_the_tower_process_keeps_the_newer_state_and_refuses_older_and_forged_pushes(
    devnet_contract: PaychanContract, tower_process: Callable[..., TowerProcess]
) -> None:
    contract = devnet_contract
    tower = tower_process()
    tower.start()
    params, cid, _ = open_channel(contract)
    push_until_accepted(tower, push_by(KEY_B, 5, 5 * PAID, domain=contract.domain, cid=cid))
    older = push_by(KEY_B, 4, 4 * PAID, domain=contract.domain, cid=cid)
    forged = push_by(KEY_A, 9, 9 * PAID, domain=contract.domain, cid=cid).to_json() | {"client": params.participant_b}
    other_domain = push_by(KEY_B, 6, 6 * PAID, cid=cid)  # signed for another contract's domain
    results = tower.push([older.to_json(), forged, other_domain.to_json()])
    assert [r["error"]["type"] for r in results] == ["StalePush", "WrongPushSigner", "WrongPushSigner"]
    assert results[0]["error"]["fields"] == {"channel_id": "0x" + cid.hex(), "pushed_nonce": 4, "held_nonce": 5}
    newer = push_by(KEY_B, 6, 6 * PAID, domain=contract.domain, cid=cid)
    assert tower.push([newer.to_json()])[0] == {"accepted": True, "channelId": "0x" + cid.hex(), "nonce": 6}
    tower.kill()
    tower.start()  # what it answered accepted survived the SIGKILL
    (result,) = tower.push([newer.to_json()])
    assert result["error"]["fields"]["held_nonce"] == 6
    assert tower.status()["watched"] == 1
