"""A real client node (``paychan node --tower URL``) pushes, is stopped, and its counterparty closes with a
stale state: the tower defends it, and the node, back later, finds the channel settled as it should be.

Alice's node pays bob's node 0.1 ETH four times over a 1 ETH channel (nonce 4; bob holds alice's revocation
below nonce 3) and bob's node pushes its newest state and that revocation to the tower. Bob's process is
stopped, and alice closes through the SDK with an older doubly-signed state read from her own store (her
node refuses to close below its own revocation). Bob's account sends no transaction at all: its balance on
chain changes by exactly what the channel pays it. The tower pays its own gas (anvil's dev account 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account

from paychan.contract import STATUS_OPEN, PaychanContract
from paychan.node.process import NodeProcess
from paychan.node.store import Store
from paychan.state import SignedState
from paychan.tower.process import TowerProcess
from paychan.tower.protocol import Push
from paychan.tower.store import TowerStore
from tests.node.conftest import (  # noqa: F401 - node_processes: a fixture
    KEY_A,
    KEY_B,
    node_processes,
    open_channel_by_cli,
    paychan,
    wait_for,
)
from tests.tower.conftest import KEY_TOWER

DEPOSIT = 10**18
PAID = 10**17  # alice pays bob this much per payment
PAYMENTS = 4
PERIOD = 3600  # the CLI's default challenge period


def held_push(tower: TowerProcess, client: str) -> Push | None:
    """The push the tower holds for ``client`` (one channel per test), read from its store."""
    store = TowerStore(tower.db)
    try:
        held = [w.push for w in store.all_watched() if w.push.client == client]
    finally:
        store.close()
    return held[0] if held else None


def doubly_signed_state(node: NodeProcess, cid: bytes, nonce: int) -> SignedState:
    """State ``nonce`` of channel ``cid`` with both signatures, read from ``node``'s store."""
    store = Store(node.db)
    try:
        row = store.state_at(cid, nonce)
    finally:
        store.close()
    assert row is not None and row.signed.is_complete, (nonce, row)
    return row.signed


@dataclass
class Scene:
    """Alice's node paid bob's node ``PAYMENTS`` times; the tower holds bob's newest state and alice's
    revocation; bob's node is stopped."""

    contract: PaychanContract
    tower: TowerProcess
    alice: NodeProcess
    bob: NodeProcess
    cid: bytes
    revoked_below: int
    bob_before: int
    tower_before: int

    @property
    def chain(self) -> Any:
        return self.contract.chain

    def close_stale(self, nonce: int) -> None:
        """Alice closes from her key with her store's doubly-signed state ``nonce``, through the SDK."""
        assert self.contract.get_channel(self.cid).status == STATUS_OPEN  # type: ignore[arg-type]
        store = Store(self.alice.db)
        try:
            params = store.channel(self.cid).params  # type: ignore[union-attr]
        finally:
            store.close()
        self.contract.close(Account.from_key(KEY_A), params, doubly_signed_state(self.alice, self.cid, nonce))

    def payouts(self) -> tuple[int, int]:
        """The channel's payouts (A, B), once its ``ChannelSettled`` event is there."""
        events = self.contract.contract.events.ChannelSettled()

        def logs() -> list[Any]:
            return list(events.get_logs(from_block=self.contract.from_block, argument_filters={"channelId": self.cid}))

        wait_for(lambda: bool(logs()), "the tower's settlement", timeout=20)
        (event,) = logs()
        return int(event["args"]["payoutA"]), int(event["args"]["payoutB"])

    def bob_gained(self) -> int:
        return int(self.chain.balance(Account.from_key(KEY_B).address)) - self.bob_before

    def tower_spent(self) -> int:
        return self.tower_before - int(self.chain.balance(Account.from_key(KEY_TOWER).address))

    def bob_back(self) -> dict[str, Any]:
        """Restarts bob's node; its status of the channel once its watcher has seen it closed."""
        self.bob.start()
        wait_for(lambda: self.bob.status()["status"] == "closed", "bob's node to see the channel settled")
        return dict(self.bob.status())


@pytest.fixture
def scene(
    node_processes: Callable[..., NodeProcess],  # noqa: F811
    tower_process: Callable[..., TowerProcess],
    capsys: pytest.CaptureFixture[str],
    devnet_contract: PaychanContract,
) -> Scene:
    tower = tower_process()
    tower.start()
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    bob.extra_args = (*bob.extra_args, "--tower", tower.url)
    alice.start()
    bob.start()
    bob_address = Account.from_key(KEY_B).address
    chain = devnet_contract.chain
    bob_before, tower_before = chain.balance(bob_address), chain.balance(Account.from_key(KEY_TOWER).address)
    cid = open_channel_by_cli(capsys, alice, bob, "1ether")
    for _ in range(PAYMENTS):
        code, _out, err = paychan(capsys, "pay", "--db", str(alice.db), "0.1ether")
        assert code == 0, err
    wait_for(lambda: bob.status()["peerRevocation"] >= PAYMENTS - 1, "bob to hold alice's revocation")
    revoked_below = int(bob.status()["peerRevocation"])

    def tower_holds_the_newest() -> bool:
        push = held_push(tower, bob_address)
        return push is not None and (push.nonce, push.revoked_below) == (PAYMENTS, revoked_below)

    wait_for(tower_holds_the_newest, "the tower to hold bob's newest state and alice's revocation", timeout=20)
    assert held_push(tower, bob_address).settle  # type: ignore[union-attr] # bob asked the tower to settle
    bob.stop()  # bob is offline from here on, until bob_back
    return Scene(devnet_contract, tower, alice, bob, cid, revoked_below, bob_before, tower_before)


def test_a_stale_close_against_a_stopped_client_node_is_penalized_and_the_node_back_later_got_the_whole_channel(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scene.revoked_below > 1
    scene.close_stale(1)  # a state alice revoked: bob's tower holds the proof
    wait_for(lambda: scene.contract.get_channel(scene.cid).penalized, "the tower's proof of revocation", timeout=20)  # type: ignore[arg-type]
    # alice's node, still running, sees its own close proven: it leaves settling to the other side
    wait_for(lambda: scene.alice.status()["penalized"], "alice's node to see the penalty")
    scene.chain.time_travel(PERIOD + 1)
    assert scene.payouts() == (0, DEPOSIT)
    expected = {"proofs": 1, "challenges": 0, "settlements": 1, "reveals": 0}  # counted once each receipt is in
    wait_for(lambda: scene.tower.status()["sent"] == expected, "the tower to count its transactions")
    assert scene.bob_gained() == DEPOSIT  # to the wei: bob's account paid no gas
    assert scene.tower_spent() > 0  # the tower paid its own gas
    status = scene.bob_back()
    assert (status["status"], status["penalized"], status["closedBy"], status["closerNonce"]) == (
        "closed",
        True,
        "A",
        1,
    )
    assert status["nonce"] == PAYMENTS  # nothing lost off chain either
    # its status tells what the chain paid (the penalty), not the last off-chain state's balances
    assert (status["payoutA"], status["payoutB"]) == ("0", str(DEPOSIT))
    code, out, _ = paychan(capsys, "status", "--db", str(scene.bob.db))
    assert code == 0 and "paid out on chain: A 0 ETH  B 1 ETH  (mine 1 ETH)" in out
    assert scene.bob_gained() == DEPOSIT  # back, bob's node sent nothing either


def test_a_stale_close_above_the_revocation_is_challenged_and_the_node_back_later_got_its_newest_balance(
    scene: Scene,
) -> None:
    stale = scene.revoked_below  # the oldest state alice has not revoked: the tower can only challenge
    assert stale < PAYMENTS
    scene.alice.stop()  # else alice's node settles after the deadline itself, racing the tower
    scene.close_stale(stale)
    wait_for(lambda: scene.contract.get_channel(scene.cid).nonce == PAYMENTS, "the tower's challenge", timeout=20)  # type: ignore[arg-type]
    assert not scene.contract.get_channel(scene.cid).penalized  # type: ignore[arg-type]
    scene.chain.time_travel(PERIOD + 1)
    assert scene.payouts() == (DEPOSIT - PAYMENTS * PAID, PAYMENTS * PAID)
    expected = {"proofs": 0, "challenges": 1, "settlements": 1, "reveals": 0}  # counted once each receipt is in
    wait_for(lambda: scene.tower.status()["sent"] == expected, "the tower to count its transactions")
    assert scene.bob_gained() == PAYMENTS * PAID  # to the wei: bob's account paid no gas
    assert scene.tower_spent() > 0
    status = scene.bob_back()
    assert (status["status"], status["penalized"], status["closedBy"], status["closeNonce"]) == (
        "closed",
        False,
        "A",
        PAYMENTS,
    )
    assert (status["balanceB"], status["myBalance"]) == (str(PAYMENTS * PAID), str(PAYMENTS * PAID))
    assert (status["payoutA"], status["payoutB"]) == (str(DEPOSIT - PAYMENTS * PAID), str(PAYMENTS * PAID))
    assert scene.bob_gained() == PAYMENTS * PAID
