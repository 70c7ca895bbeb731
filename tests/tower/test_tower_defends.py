"""A tower process on anvil defends an offline client: penalty, challenge, reveal, settle, after a SIGKILL too.

The client (B, paid by A over the channel) pushes its newest state to the tower and goes away: it sends no
transaction at all, so its balance on chain changes by exactly what the channel pays it. The counterparty
(A) closes with a stale state through the SDK. The tower acts from its own key (anvil's dev account 3).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account

from paychan.contract import STATUS_CLOSING, PaychanContract
from paychan.node.watcher import REVEAL_MARGIN
from paychan.signing import Domain
from paychan.state import ChannelParams, Lock, hashlock
from paychan.tower.process import TowerProcess
from paychan.tower.protocol import Push
from tests.node.conftest import wait_for
from tests.tower.conftest import KEY_A, KEY_B, KEY_TOWER, both_signed, push_by, state_of

DEPOSIT = 10**18
PERIOD = 3600
PAID = 10**17  # A pays B this much per state


@dataclass
class Scene:
    """A tower process and a channel from alice (A) to bob (B, the tower's client), open on the devnet."""

    contract: PaychanContract
    tower: TowerProcess
    params: ChannelParams
    cid: bytes
    alice: Any
    bob_before: int

    @property
    def chain(self) -> Any:
        return self.contract.chain

    def push(self, nonce: int, paid: int | None = None, **kwargs: Any) -> Push:
        """Bob's push of state ``nonce`` (A has paid ``paid``, by default ``nonce * PAID``), once the tower
        has seen the channel opened (``UnknownTowerChannel`` before)."""
        push = push_by(KEY_B, nonce, nonce * PAID if paid is None else paid, domain=self.contract.domain,
                       cid=self.cid, **kwargs)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            (result,) = self.tower.push([push.to_json()])
            if result["accepted"]:
                return push
            assert result["error"]["type"] == "UnknownTowerChannel", result
            assert time.monotonic() < deadline, "the tower never saw the channel opened"
            time.sleep(0.1)

    def close_stale(self, nonce: int) -> None:
        """Alice closes with the doubly-signed state ``nonce``."""
        self.contract.close(self.alice, self.params, both_signed(state_of(nonce, nonce * PAID, cid=self.cid),
                                                                 self.contract.domain))  # fmt: skip

    def payouts_once_settled(self, what: str) -> tuple[int, int]:
        """The channel's payouts (A, B), once its ``ChannelSettled`` event is there."""
        events = self.contract.contract.events.ChannelSettled()

        def logs() -> list[Any]:
            return list(events.get_logs(from_block=self.contract.from_block, argument_filters={"channelId": self.cid}))

        wait_for(lambda: bool(logs()), what, timeout=20)
        (event,) = logs()
        return int(event["args"]["payoutA"]), int(event["args"]["payoutB"])

    def bob_gained(self) -> int:
        return self.chain.balance(self.params.participant_b) - self.bob_before


def post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture
def scene(devnet_contract: PaychanContract, tower_process: Callable[..., TowerProcess]) -> Scene:
    tower = tower_process()
    tower.start()
    alice = Account.from_key(KEY_A)
    params, _ = devnet_contract.open_channel(alice, Account.from_key(KEY_B).address, DEPOSIT, challenge_period=PERIOD)
    bob_before = devnet_contract.chain.balance(params.participant_b)
    return Scene(devnet_contract, tower, params, devnet_contract.channel_id(params), alice, bob_before)


def test_a_stale_close_against_an_offline_client_is_penalized_and_the_client_gets_the_whole_channel(
    scene: Scene,
) -> None:
    tower_before = scene.chain.balance(Account.from_key(KEY_TOWER).address)
    scene.push(3, revoked_below=3, settle=True)
    scene.close_stale(1)  # bob is offline from here on; alice closes with state 1, which she revoked
    wait_for(lambda: scene.contract.get_channel(scene.cid).penalized, "the tower's proof of revocation", timeout=20)
    scene.chain.time_travel(PERIOD + 1)
    assert scene.payouts_once_settled("the tower's settlement") == (0, DEPOSIT)
    assert scene.bob_gained() == DEPOSIT  # to the wei: bob paid no gas
    expected = {"proofs": 1, "challenges": 0, "settlements": 1, "reveals": 0}  # counted once each receipt is in
    wait_for(lambda: scene.tower.status()["sent"] == expected, "the tower to count its transactions")
    assert scene.tower.status()["recordsFromChain"] == 0  # the record the tower built from the events was right
    assert scene.chain.balance(Account.from_key(KEY_TOWER).address) < tower_before  # the tower paid its own gas


def test_a_tower_killed_during_the_challenge_period_challenges_when_back_and_settles_after_a_second_kill(
    scene: Scene,
) -> None:
    scene.push(3, settle=True)
    scene.tower.kill()  # no revocation held: the tower can only challenge
    scene.close_stale(1)
    scene.chain.time_travel(PERIOD // 2)
    scene.tower.start()  # resumes from its cursor: sees the close, challenges with nonce 3
    wait_for(lambda: scene.contract.get_channel(scene.cid).nonce == 3, "the tower's challenge", timeout=20)
    scene.tower.kill()  # restarted with the channel closing in its store: it re-reads the record
    scene.chain.time_travel(PERIOD // 2 + 1)
    assert scene.contract.get_channel(scene.cid).status == STATUS_CLOSING
    scene.tower.start()
    assert scene.payouts_once_settled("the restarted tower's settlement") == (DEPOSIT - 3 * PAID, 3 * PAID)
    assert scene.tower.status()["recordsFromChain"] == 0
    assert scene.bob_gained() == 3 * PAID


def test_a_lock_whose_secret_only_the_tower_holds_is_revealed_before_expiry_and_paid_at_settle(scene: Scene) -> None:
    secret = os.urandom(32)
    expiry = scene.chain.now() + 1200
    lock = Lock("A", PAID, expiry, hashlock(secret))
    newest = scene.push(4, 3 * PAID, locks=(lock,), secrets=(secret,), settle=True)
    # the channel stays open and bob is gone: the tower reveals the secret once the expiry is near
    scene.chain.time_travel(expiry - REVEAL_MARGIN + 5 - scene.chain.now())
    wait_for(lambda: scene.contract.revealed_at(hashlock(secret)) != 0, "the tower's reveal", timeout=20)
    assert scene.contract.revealed_at(hashlock(secret)) <= expiry
    scene.contract.close(scene.alice, scene.params, newest.signed)  # alice closes with the state holding the lock
    scene.chain.time_travel(PERIOD + 1)
    paid = scene.payouts_once_settled("the tower's settlement with the lock list")
    assert paid == (DEPOSIT - 4 * PAID, 4 * PAID)  # the lock paid bob
    assert scene.tower.status()["sent"]["reveals"] == 1 and scene.tower.status()["recordsFromChain"] == 0
    assert scene.bob_gained() == 4 * PAID


def test_the_tower_process_keeps_the_newer_state_and_refuses_older_and_forged_pushes(scene: Scene) -> None:
    domain, cid = scene.contract.domain, scene.cid
    scene.push(5)
    older = push_by(KEY_B, 4, 4 * PAID, domain=domain, cid=cid)
    forged = push_by(KEY_A, 9, 9 * PAID, domain=domain, cid=cid).to_json() | {"client": scene.params.participant_b}
    elsewhere = Domain(domain.chain_id, "0x" + "11" * 20)
    other_domain = push_by(KEY_B, 6, 6 * PAID, cid=cid, domain=elsewhere)  # signed for another contract
    results = scene.tower.push([older.to_json(), forged, other_domain.to_json()])
    assert [r["error"]["type"] for r in results] == ["StalePush", "WrongPushSigner", "WrongPushSigner"]
    assert results[0]["error"]["fields"] == {"channel_id": "0x" + cid.hex(), "pushed_nonce": 4, "held_nonce": 5}
    newer = push_by(KEY_B, 6, 6 * PAID, domain=domain, cid=cid)
    assert scene.tower.push([newer.to_json()])[0] == {"accepted": True, "channelId": "0x" + cid.hex(), "nonce": 6}
    for body in (b"{not json", json.dumps({"pushes": [newer.to_json()] * 257}).encode(), b"[]"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(scene.tower.url + "/pushes", body)
        assert refused.value.code == 400  # bounded and refused whole, before any signature is checked
    with pytest.raises(urllib.error.HTTPError) as too_big:
        post(scene.tower.url + "/pushes", b" " * (2 << 20))
    assert too_big.value.code == 413
    scene.tower.kill()
    scene.tower.start()  # what it answered accepted survived the SIGKILL
    (result,) = scene.tower.push([newer.to_json()])
    assert result["error"]["fields"]["held_nonce"] == 6
    assert scene.tower.status()["watched"] == 1
