"""Two node processes on anvil stream payments both ways while one of them is SIGKILLed again and again.

Checks afterwards: every payment a node confirmed is in both stores; both stores hold the same single state
at every nonce, each signed by both; each step is one of the payments sent; both nodes report the same
balances; and the channel still closes cooperatively, paying each side exactly its final balance.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from paychan.exceptions import PaychanError
from paychan.node.messages import parse_signed
from paychan.node.store import Store
from paychan.signing import check_signer

from .conftest import ADDRESS_A, ADDRESS_B, KEY_A, KEY_B, NodeProcess

DEPOSIT = 10**18
A_PAYS, B_PAYS = 1_000, 7  # distinct amounts: every step tells who paid
KILLS = 6


def own_proposals_in_flight(node: NodeProcess, role: str) -> int:
    """Proposals of ``node`` recorded (and maybe sent) whose countersignature it has not stored yet."""
    peer_sig = "sig_b" if role == "A" else "sig_a"
    conn = sqlite3.connect(f"file:{node.db}?mode=ro", uri=True, timeout=5)
    try:
        return int(
            conn.execute(f"SELECT count(*) FROM states WHERE proposer = ? AND {peer_sig} IS NULL", (role,)).fetchone()[
                0
            ]
        )
    finally:
        conn.close()


class Driver(threading.Thread):
    """Keeps paying through one node's control API; records each confirmed payment's state."""

    def __init__(self, node: NodeProcess, amount: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node, self.amount, self.stop = node, amount, stop
        self.confirmed: list[dict[str, Any]] = []
        self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.node.control("POST", "/pay", {"amount": str(self.amount), "count": 3}, timeout=15)
                self.confirmed.append(answer["state"])
            except PaychanError:
                self.failures += 1  # node down, peer down or payment not countersigned in time
                time.sleep(0.05)


def wait_quiet(nodes: list[NodeProcess], timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            statuses = [n.status() for n in nodes]
            if (
                all(s["inflight"] == 0 and s["queued"] == 0 for s in statuses)
                and statuses[0]["nonce"] == statuses[1]["nonce"]
            ):
                return statuses
        except PaychanError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nodes did not settle down: {[n.log.read_text()[-1500:] for n in nodes]}")
        time.sleep(0.1)


def test_sigkilled_nodes_lose_no_signed_state_and_still_close_cooperatively(
    node_processes: Callable[[str, bytes], NodeProcess], devnet_contract: Any
) -> None:
    rng = random.Random(20261125)
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    alice.start()
    bob.start()
    opened = alice.control("POST", "/open", {"peer": bob.peer_url, "deposit": str(DEPOSIT), "challengePeriod": 3600})
    alice.control("POST", "/pay", {"amount": str(10**9)})  # so that bob has something to pay back
    stop = threading.Event()
    drivers = [Driver(alice, A_PAYS, stop), Driver(bob, B_PAYS, stop), Driver(alice, A_PAYS, stop)]
    for driver in drivers:
        driver.start()
    inside_exchange = 0
    try:
        for round_ in range(KILLS):
            victim, role = (alice, "A") if rng.random() < 0.5 else (bob, "B")
            time.sleep(rng.uniform(0.2, 0.8))
            if round_ % 2:  # aim: kill while one of its proposals waits for the countersignature
                deadline = time.monotonic() + 3
                while own_proposals_in_flight(victim, role) == 0 and time.monotonic() < deadline:
                    time.sleep(0.0005)
            victim.kill()
            inside_exchange += own_proposals_in_flight(victim, role) > 0
            time.sleep(rng.uniform(0.0, 0.3))
            victim.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for driver in drivers:
            driver.join(timeout=30)
    assert inside_exchange >= 1, "no kill landed inside an update exchange"
    status_a, status_b = wait_quiet([alice, bob])
    print(
        f"{KILLS} kills ({inside_exchange} inside an exchange), nonce {status_a['nonce']}, "
        f"{sum(len(d.confirmed) for d in drivers)} confirmed pay requests, {sum(d.failures for d in drivers)} failed"
    )

    # both stores: one state per nonce, the same on both sides, each signed by both
    cid = bytes.fromhex(opened["channelId"][2:])
    rows = {}
    for node in (alice, bob):
        store = Store(node.db)
        rows[node.name] = store.states(cid)
        store.close()
    latest = status_a["nonce"]
    assert [r.state.nonce for r in rows["alice"]] == list(range(1, latest + 1))
    assert [(r.state, r.sig_b) for r in rows["alice"]] == [(r.state, r.sig_b) for r in rows["bob"]]
    for row_a, row_b in zip(rows["alice"], rows["bob"], strict=True):
        check_signer(devnet_contract.domain, row_a.state, row_a.sig_b, ADDRESS_B)
        check_signer(devnet_contract.domain, row_b.state, row_b.sig_a, ADDRESS_A)
        assert row_a.sig_a in (None, row_b.sig_a)  # alice's own signature, recomputed if not yet written

    # every step is a payment one of them made
    steps = [r.state for r in rows["alice"]]
    assert steps[0].balance_b == 10**9
    for before, after in zip(steps, steps[1:]):  # noqa: B905
        assert after.balance_b - before.balance_b in (A_PAYS, -B_PAYS)
        assert after.balance_a + after.balance_b == DEPOSIT

    # no confirmed payment lost
    confirmed = [parse_signed(s) for d in drivers for s in d.confirmed]
    assert len(confirmed) > 20
    by_nonce = {r.state.nonce: r for r in rows["bob"]}
    for signed in confirmed:
        row = by_nonce[signed.state.nonce]
        assert (row.state, row.sig_a, row.sig_b) == (signed.state, signed.sig_a, signed.sig_b)

    # neither node ever proposed a state conflicting with one its peer had (it would have been refused)
    for node in (alice, bob):
        log = node.log.read_text()
        assert "DoubleSignRefused" not in log and "UnexpectedNonce" not in log and "Traceback" not in log

    # both report the same balances
    assert (status_a["balanceA"], status_a["balanceB"]) == (status_b["balanceA"], status_b["balanceB"])

    # and the channel still closes cooperatively with the right payouts
    w3 = devnet_contract.chain.w3
    before_a, before_b = w3.eth.get_balance(ADDRESS_A), w3.eth.get_balance(ADDRESS_B)
    closed = alice.control("POST", "/close", {})
    receipt = w3.eth.get_transaction_receipt(closed["transaction"])
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert closed["nonce"] == latest + 1
    assert int(closed["payoutA"]) == int(status_a["balanceA"]) and int(closed["payoutB"]) == int(status_a["balanceB"])
    assert w3.eth.get_balance(ADDRESS_B) - before_b == int(status_a["balanceB"])
    assert w3.eth.get_balance(ADDRESS_A) - before_a == int(status_a["balanceA"]) - gas_cost
    assert devnet_contract.get_channel(cid).status == 0
