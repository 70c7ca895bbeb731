"""Routed payments between five node processes on the devnet, through intermediaries who earn their fees.

The network (each channel opened, and funded, by its first party)::

    alice - bob - carol - dave - erin
             \\___________/
                bob - dave (bob's fee on it is high: the route through carol is cheaper while carol is up)

alice pays dave through bob and carol (2 intermediaries), erin through bob, carol and dave (3); intermediaries
killed (SIGKILL) before and after they learned the secret restart from their stores; one that vanishes after
forwarding lets the next hop reveal on chain, close and be paid, and claims its own lock when back; a payee
that never gets the secret lets every lock expire. After every test, for every party, to the wei: what it
holds (off-chain balances of open channels + on-chain payouts of settled ones) = its deposits + what it
gained forwarding (its fees) + what it received - what it sent (amounts and fees).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account

from .conftest import (
    KEY_A,
    KEY_B,
    KEY_C,
    NodeProcess,
    free_port,
    open_channel_by_cli,
    paychan,
    peer_delay_proxy,
    rpc_calls,
    wait_for,
)

KEY_D = bytes.fromhex("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")  # anvil account 4
KEY_E = bytes.fromhex("8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba")  # anvil account 5
KEYS = {"alice": KEY_A, "bob": KEY_B, "carol": KEY_C, "dave": KEY_D, "erin": KEY_E}
ETHER = 10**18
AMOUNT = 10**17
FEES = {"bob": (1000, 100), "carol": (2000, 150), "dave": (3000, 200)}  # base wei, ppm, on every channel
BOB_DAVE_FEE = (50_000, 1000)  # bob's fee on bob-dave: the second route to dave costs more


def fee(base: int, ppm: int, forwarded: int) -> int:
    return base + forwarded * ppm // 1_000_000


@dataclass
class Network:
    """Node processes, the channels between them and what each party deposited."""

    nodes: dict[str, NodeProcess]
    capsys: pytest.CaptureFixture[str]
    devnet: Any
    deposits: dict[str, int] = field(default_factory=dict)
    channels: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return str(Account.from_key(self.nodes[name].key).address)

    def open(self, payer: str, payee: str, deposit: int) -> bytes:
        cid = open_channel_by_cli(self.capsys, self.nodes[payer], self.nodes[payee], f"{deposit}wei")
        self.deposits[payer] = self.deposits.get(payer, 0) + deposit
        self.channels[(payer, payee)] = cid
        return cid

    def status(self, name: str) -> list[dict[str, Any]]:
        return list(self.nodes[name].control("GET", "/status")["channels"])

    def holds(self, name: str) -> int:
        """Off-chain balances of open channels + what the settlement paid out of the settled ones."""
        held = 0
        for channel in self.status(name):
            if channel["status"] == "open":
                held += int(channel["myBalance"])
            else:
                payout = channel["payoutA"] if channel["role"] == "A" else channel["payoutB"]
                assert payout is not None, f"{name}'s channel {channel['channelId']} is not settled"
                held += int(payout)
        return held

    def transfers(self, name: str) -> dict[str, Any]:
        return dict(self.nodes[name].control("GET", "/transfers"))

    def pay(self, payer: str, payee: str, amount: int) -> dict[str, Any]:
        db = str(self.nodes[payer].db)
        code, out, err = paychan(self.capsys, "pay", "--db", db, "--to", self.address(payee), f"{amount}wei", "--json")
        data = json.loads(out)
        assert (code, data["outcome"]) == (0, "succeeded"), (code, out, err)
        return dict(data)

    def no_locks(self) -> bool:
        """No lock pending in an open channel, and every closed channel's payouts seen."""
        return all(
            (c["pendingLocks"] == 0 and c["inflight"] == 0) if c["status"] == "open" else c["payoutA"] is not None
            for name in self.nodes
            for c in self.status(name)
            if c["status"] != "closing"
        )

    def check_conservation(self) -> None:
        """For every party: what it holds = deposits + gained forwarding + received - sent, to the wei."""
        wait_for(self.no_locks, "every lock resolved")
        for name in self.nodes:
            summary = self.transfers(name)
            gained, received, sent = (int(summary[k]) for k in ("feesEarned", "received", "sent"))
            assert self.holds(name) == self.deposits.get(name, 0) + gained + received - sent, (name, summary)

    def travel(self, seconds: int) -> None:
        """The devnet's clock moves ``seconds`` on, and a block is mined with the new time."""
        from paychan.chain import rpc_chain

        chain = rpc_chain(self.devnet.url)
        chain.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def block_number(self) -> int:
        from paychan.chain import rpc_chain

        return int(rpc_chain(self.devnet.url).w3.eth.block_number)

    def stored_transfers(self, name: str) -> list[dict[str, Any]]:
        """The machine states in ``name``'s store, read directly (the node may be about to be killed)."""
        with sqlite3.connect(f"file:{self.nodes[name].db}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT state FROM transfers").fetchall()
        return [json.loads(row[0])["state"] for row in rows]

    def stored_secrets(self, name: str) -> int:
        with sqlite3.connect(f"file:{self.nodes[name].db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM secrets").fetchone()[0])


def build(
    node_processes: Callable[..., NodeProcess],
    capsys: pytest.CaptureFixture[str],
    devnet: Any,
    alice_port: int | None = None,
    alice_url: str | None = None,
    proxied: str = "alice",
    rpc_url: str | None = None,
) -> Network:
    """The five nodes and six channels of the module docstring, fees announced, routes known to alice.
    ``alice_port``, ``alice_url``: where alice's node (or ``proxied``'s) listens, and where her peers and payees
    reach her (a proxy in front of it); ``rpc_url``: every node's JSON-RPC endpoint (the devnet's by default)."""
    nodes = {}
    for name, key in KEYS.items():
        if name == proxied and alice_url:
            nodes[name] = node_processes(name, key, rpc_url, extra=("--public-url", alice_url), port=alice_port)
        else:
            nodes[name] = node_processes(name, key, rpc_url)
    for node in nodes.values():
        node.start()
    net = Network(nodes, capsys, devnet)
    for payer, payee in (("alice", "bob"), ("bob", "carol"), ("carol", "dave"), ("dave", "erin"), ("bob", "dave")):
        net.open(payer, payee, ETHER)
    for name, node in nodes.items():  # a node refuses (and drops) an announcement of a channel it has not seen yet
        wait_for(lambda node=node: node.control("GET", "/fees")["graph"]["channels"] == 5, f"{name}'s graph of 5")
    peers = {"bob": 3, "carol": 2, "dave": 3}
    for name, count in peers.items():
        wait_for(lambda n=name, c=count: len(nodes[n].control("GET", "/fees")["channels"]) == c, f"{name}'s peers")
        base, ppm = FEES[name]
        code, _, err = paychan(
            capsys, "fees", "set", "--db", str(nodes[name].db), "--base", str(base), "--ppm", str(ppm)
        )
        assert code == 0, err
    bob_dave = net.channels[("bob", "dave")].hex()
    base, ppm = BOB_DAVE_FEE
    args = ("fees", "set", "--db", str(nodes["bob"].db), "--base", str(base), "--ppm", str(ppm), "--channel", bob_dave)
    assert paychan(capsys, *args)[0] == 0
    wait_for(lambda: nodes["alice"].control("GET", "/fees")["graph"]["announcements"] == 8, "alice to learn every fee")
    return net


def route_fees(route: dict[str, Any]) -> list[int]:
    return [int(hop["fee"]) for hop in route["hops"][1:]]


def start_payment(net: Network, payer: str, payee: str, amount: int, timeout: int = 120) -> dict[str, Any]:
    """``POST /transfers`` on a thread (the test acts meanwhile); the dict gets the answer, or the error."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            payload = {"to": net.address(payee), "amount": str(amount), "timeout": timeout}
            result.update(net.nodes[payer].control("POST", "/transfers", payload, timeout=timeout + 30))
        except Exception as exc:
            result["error"] = repr(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def finished(result: dict[str, Any], timeout: float = 150) -> dict[str, Any]:
    result["thread"].join(timeout)
    assert "outcome" in result, result
    return result


# --- the tests -----------------------------------------------------------------------------------------------


def test_payments_through_two_and_three_intermediaries_pay_each_exactly_its_advertised_fee_with_no_transaction(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any
) -> None:
    net = build(node_processes, capsys, devnet)
    before = net.block_number()

    to_dave = [net.pay("alice", "dave", AMOUNT)]
    carol_fee = fee(*FEES["carol"], AMOUNT)
    bob_fee = fee(*FEES["bob"], AMOUNT + carol_fee)
    code, out, err = paychan(capsys, "pay", "--db", str(net.nodes["alice"].db), "--to", net.address("dave"), "0.1ether")
    lines = out.splitlines()
    assert code == 0, err
    assert lines[0].startswith(f"paid 0.1 ETH ({AMOUNT} wei) as payment ") and lines[0].endswith(
        ", 1 attempt, no transaction"
    )
    alice, bob, carol, dave = (net.address(n) for n in ("alice", "bob", "carol", "dave"))
    assert lines[1] == f"route: {alice} -> {bob} -> {carol} -> {dave}"
    assert lines[-3:] == [
        f"  fee {bob}: 1000 wei + {AMOUNT + carol_fee} wei * 100 / 1000000 = 1000 + {bob_fee - 1000} = {bob_fee} wei",
        f"  fee {carol}: 2000 wei + {AMOUNT} wei * 150 / 1000000 = 2000 + {carol_fee - 2000} = {carol_fee} wei",
        f"  total fee {bob_fee + carol_fee} wei (0.000025001500003 ETH); the payer locks "
        f"{AMOUNT + bob_fee + carol_fee} wei and the payee receives {AMOUNT} wei",
    ]
    for paid in to_dave:
        assert [h["sender"] for h in paid["route"]["hops"]] == [net.address(n) for n in ("alice", "bob", "carol")]
        assert (route_fees(paid["route"]), paid["attempts"]) == ([bob_fee, carol_fee], 1)

    to_erin = net.pay("alice", "erin", AMOUNT)
    dave_fee = fee(*FEES["dave"], AMOUNT)
    carol_fee_3 = fee(*FEES["carol"], AMOUNT + dave_fee)
    bob_fee_3 = fee(*FEES["bob"], AMOUNT + dave_fee + carol_fee_3)
    assert route_fees(to_erin["route"]) == [bob_fee_3, carol_fee_3, dave_fee]
    assert int(to_erin["route"]["sent"]) == AMOUNT + bob_fee_3 + carol_fee_3 + dave_fee

    wait_for(net.no_locks, "every lock settled off chain")
    assert net.block_number() == before  # not one transaction
    earned = {name: int(net.transfers(name)["feesEarned"]) for name in ("bob", "carol", "dave")}
    assert earned == {"bob": 2 * bob_fee + bob_fee_3, "carol": 2 * carol_fee + carol_fee_3, "dave": dave_fee}
    assert net.transfers("dave")["received"] == str(2 * AMOUNT)
    assert net.transfers("erin")["received"] == str(AMOUNT)
    code, out, _ = paychan(capsys, "transfers", "--db", str(net.nodes["bob"].db))
    assert code == 0 and out.startswith(f"3 payment(s); sent 0 wei, earned {earned['bob']} wei in fees")
    # bob's first forward (bob-carol idle, its turn bob's) was signed in the transaction of alice's lock
    assert net.nodes["bob"].control("GET", "/status")["stats"]["locksSignedWithIncoming"] >= 1
    net.check_conservation()


def test_an_intermediary_killed_before_it_learned_the_secret_restarts_and_the_payment_succeeds_on_the_second_route(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any
) -> None:
    net = build(node_processes, capsys, devnet)
    carol = net.nodes["carol"].process
    assert carol is not None
    os.kill(carol.pid, signal.SIGSTOP)  # bob's offer to carol goes unanswered while we kill bob
    try:
        result = start_payment(net, "alice", "dave", AMOUNT)
        wait_for(
            lambda: any(s["incoming"] == "locked" and s["outgoing"] == "offered" for s in net.stored_transfers("bob")),
            "bob to hold alice's lock and offer carol his",
        )
        net.nodes["bob"].kill()
        assert net.stored_secrets("bob") == 0  # killed before it learned the secret
        net.nodes["bob"].start()
    finally:
        os.kill(carol.pid, signal.SIGCONT)
    net.travel(40)  # bob's offer to carol times out: bob passes the refusal to alice
    wait_for(
        lambda: (
            net.nodes["alice"].control("GET", "/transfers")["transfers"][0]["status"] == "pending"
            and any(s["outgoing"] == "refused" for s in net.stored_transfers("bob"))
        ),
        "bob to refuse upstream",
    )
    net.travel(800)  # alice's lock through bob expires: she takes it back and tries the route through bob-dave
    paid = finished(result)
    assert (paid["outcome"], paid["attempts"]) == ("succeeded", 2), paid
    bob_fee = fee(*BOB_DAVE_FEE, AMOUNT)
    assert route_fees(paid["route"]) == [bob_fee]
    wait_for(lambda: net.transfers("bob")["feesEarned"] == str(bob_fee), "bob's fee on the second route")
    assert net.transfers("carol")["feesEarned"] == "0"
    net.check_conservation()


def test_an_intermediary_killed_after_it_learned_the_secret_restarts_from_its_store_and_claims_its_lock(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any
) -> None:
    bob_port = free_port()
    with peer_delay_proxy(f"http://127.0.0.1:{bob_port}", 1.0) as bob_url:
        net = build(node_processes, capsys, devnet, bob_port, bob_url, proxied="bob")
        result = start_payment(net, "alice", "dave", AMOUNT)
        # carol learns the secret from dave's settle; her own settle with bob waits for bob's (slow) answer (bob
        # learns it from alice's unlock: the payer pays its first hop once the payee has the secret)
        wait_for(lambda: net.stored_secrets("carol") == 1, "carol to learn the secret", timeout=60)
        net.nodes["carol"].kill()
        assert [s["incoming"] for s in net.stored_transfers("carol")] == ["settling"]
        net.nodes["carol"].start()
        paid = finished(result)
        assert paid["outcome"] == "succeeded", paid
        carol_fee = fee(*FEES["carol"], AMOUNT)
        bob_fee = fee(*FEES["bob"], AMOUNT + carol_fee)
        wait_for(lambda: net.transfers("carol")["feesEarned"] == str(carol_fee), "carol's settle after restart")
        wait_for(lambda: net.transfers("bob")["feesEarned"] == str(bob_fee), "bob's fee")
        net.check_conservation()


def test_an_intermediary_gone_after_forwarding_lets_the_next_hop_reveal_on_chain_and_claims_its_own_when_back(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any
) -> None:
    alice_port = free_port()
    with peer_delay_proxy(f"http://127.0.0.1:{alice_port}", 1.0) as alice_url:
        net = build(node_processes, capsys, devnet, alice_port, alice_url)
        result = start_payment(net, "alice", "dave", AMOUNT, timeout=300)
        wait_for(
            lambda: any(s["outgoing"] == "locked" for s in net.stored_transfers("bob")),
            "bob's lock to carol signed",
            timeout=60,
        )
        net.nodes["bob"].kill()  # before dave's secret request reaches alice (1 s away)
        assert net.stored_secrets("bob") == 0
        wait_for(lambda: net.transfers("dave")["received"] == str(AMOUNT), "dave paid by carol off chain")
        carol_state = [s for s in net.stored_transfers("carol")]
        assert [s["incoming"] for s in carol_state] == ["settling"]  # bob does not answer

        net.travel(430)  # carol's incoming lock is within REVEAL_MARGIN of its expiry: she reveals and closes
        bob_carol = "0x" + net.channels[("bob", "carol")].hex()
        wait_for(
            lambda: next(c for c in net.status("carol") if c["channelId"] == bob_carol)["status"] == "closing",
            "carol to reveal the secret on chain and close bob-carol",
            timeout=60,
        )
        net.nodes["bob"].start()  # bob is back before his own incoming lock expires: he reads the secret on chain
        paid = finished(result, timeout=300)
        assert paid["outcome"] == "succeeded", paid
        carol_fee = fee(*FEES["carol"], AMOUNT)
        bob_fee = fee(*FEES["bob"], AMOUNT + carol_fee)
        wait_for(lambda: net.transfers("bob")["feesEarned"] == str(bob_fee), "bob's settle with alice once back")
        net.travel(3601)  # the challenge period of bob-carol ends: it settles, the revealed lock pays carol
        wait_for(
            lambda: all(
                c["status"] == "closed" for n in ("bob", "carol") for c in net.status(n) if c["channelId"] == bob_carol
            ),
            "bob-carol settled",
            timeout=60,
        )
        assert net.transfers("carol")["feesEarned"] == str(carol_fee)
        net.check_conservation()


def test_a_payee_that_never_gets_the_secret_lets_every_lock_expire_and_every_balance_returns(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any
) -> None:
    alice_port = free_port()
    with peer_delay_proxy(f"http://127.0.0.1:{alice_port}", 0.0, drop="secretRequest") as alice_url:
        net = build(node_processes, capsys, devnet, alice_port, alice_url)  # dave's secret requests are lost
        payee_never_gets_the_secret(net)


def payee_never_gets_the_secret(net: Network) -> None:
    result = start_payment(net, "alice", "dave", AMOUNT, timeout=5)
    assert finished(result)["outcome"] == "pending"
    wait_for(lambda: any(s["status"] == "requested" for s in net.stored_transfers("dave")), "dave's lock")
    net.travel(800)  # every lock of the payment expires: each sender takes its own back
    wait_for(lambda: net.transfers("alice")["transfers"][0]["status"] == "failed", "alice's payment failed")
    net.check_conservation()
    for name in KEYS:
        assert net.holds(name) == net.deposits.get(name, 0)
        summary = net.transfers(name)
        assert (summary["feesEarned"], summary["received"], summary["sent"]) == ("0", "0", "0")


def test_payments_in_flight_with_every_nodes_rpc_50_ms_away_succeed_with_exact_fees_and_no_transaction(
    node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str], devnet: Any, latency_proxy: str
) -> None:
    """Six routed payments at once through two intermediaries, every node's chain 50 ms away (where races
    show): their locks, unlocks and settles go in batches; each pays each intermediary its fee, to the wei."""
    net = build(node_processes, capsys, devnet, rpc_url=latency_proxy)
    before = rpc_calls(latency_proxy).get("eth_sendRawTransaction", 0)
    results = [start_payment(net, "alice", "dave", AMOUNT) for _ in range(6)]
    carol_fee = fee(*FEES["carol"], AMOUNT)
    bob_fee = fee(*FEES["bob"], AMOUNT + carol_fee)
    for result in results:
        paid = finished(result)
        assert paid["outcome"] == "succeeded", paid
        assert (route_fees(paid["route"]), paid["attempts"]) == ([bob_fee, carol_fee], 1)
    wait_for(net.no_locks, "every lock settled off chain")
    assert rpc_calls(latency_proxy).get("eth_sendRawTransaction", 0) == before  # not one transaction
    assert net.transfers("bob")["feesEarned"] == str(6 * bob_fee)
    assert net.transfers("carol")["feesEarned"] == str(6 * carol_fee)
    assert net.transfers("dave")["received"] == str(6 * AMOUNT)
    net.check_conservation()
