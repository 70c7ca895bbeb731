"""Routed payments between node processes on the devnet: alice pays dave through bob and carol, each
intermediary earns exactly its advertised fee, and no transaction is needed; and after every test, for every
party, what it holds (off-chain balances + on-chain payouts) = its deposits + fees earned + received - sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account

from .conftest import KEY_A, KEY_B, KEY_C, NodeProcess, open_channel_by_cli, paychan, wait_for

KEY_D = bytes.fromhex("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")  # anvil account 4
KEY_E = bytes.fromhex("8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba")  # anvil account 5
ETHER = 10**18
FEES = {"bob": (1000, 100), "carol": (2000, 150), "erin": (5000, 1000)}  # base wei, ppm


def fee(base: int, ppm: int, forwarded: int) -> int:
    return base + forwarded * ppm // 1_000_000


@dataclass
class Network:
    """Node processes and the channels between them, with what each party deposited."""

    nodes: dict[str, NodeProcess]
    capsys: pytest.CaptureFixture[str]
    deposits: dict[str, int] = field(default_factory=dict)
    channels: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return str(Account.from_key(self.nodes[name].key).address)

    def open(self, payer: str, payee: str, deposit: int) -> bytes:
        cid = open_channel_by_cli(self.capsys, self.nodes[payer], self.nodes[payee], f"{deposit}wei")
        self.deposits[payer] = self.deposits.get(payer, 0) + deposit
        self.channels[(payer, payee)] = cid
        return cid

    def balances(self, name: str) -> int:
        """What ``name`` holds off chain: its balance in every channel of its (locks not included)."""
        channels = self.nodes[name].control("GET", "/status")["channels"]
        return sum(int(c["myBalance"]) for c in channels if c["status"] == "open")

    def transfers(self, name: str) -> dict[str, Any]:
        return dict(self.nodes[name].control("GET", "/transfers"))

    def pay(self, payer: str, payee: str, amount: int) -> dict[str, Any]:
        code, out, err = paychan(
            self.capsys, "pay", "--db", str(self.nodes[payer].db), "--to", self.address(payee), f"{amount}wei", "--json"
        )
        data = json.loads(out)
        assert (code, data["outcome"]) == (0, "succeeded"), (code, out, err)
        return dict(data)

    def check_conservation(self) -> None:
        """For every party: held = deposits + earned + received - sent, to the wei, once no lock is pending."""
        for name in self.nodes:
            summary = self.transfers(name)
            expected = (
                self.deposits.get(name, 0)
                + int(summary["feesEarned"])
                + int(summary["received"])
                - int(summary["sent"])
            )
            assert self.balances(name) == expected, (name, summary)


@pytest.fixture
def network(node_processes: Callable[..., NodeProcess], capsys: pytest.CaptureFixture[str]) -> Network:
    keys = {"alice": KEY_A, "bob": KEY_B, "carol": KEY_C, "dave": KEY_D, "erin": KEY_E}
    nodes = {name: node_processes(name, key) for name, key in keys.items()}
    for node in nodes.values():
        node.start()
    return Network(nodes, capsys)


def set_fees(net: Network, name: str) -> None:
    base, ppm = FEES[name]
    code, _, err = paychan(net.capsys, "fees", "set", "--db", str(net.nodes[name].db), "--base", str(base), "--ppm", str(ppm))
    assert code == 0, err


def wait_for_route(net: Network, payer: str, payee: str, amount: int, hops: int) -> None:
    def found() -> bool:
        try:
            routes = net.nodes[payer].control("POST", "/route", {"to": net.address(payee), "amount": str(amount)})
        except Exception:
            return False
        return any(len(r["hops"]) == hops for r in routes["routes"])

    wait_for(found, f"{payer}'s route of {hops} hops to {payee}")


def test_alice_pays_dave_through_bob_and_carol_who_each_earn_exactly_their_advertised_fee_without_a_transaction(
    network: Network,
) -> None:
    net = network
    net.open("alice", "bob", ETHER)
    net.open("bob", "carol", ETHER)
    net.open("carol", "dave", ETHER)
    for name in ("bob", "carol"):
        wait_for(lambda name=name: len(net.nodes[name].control("GET", "/fees")["channels"]) == 2, f"{name}'s peers")
        set_fees(net, name)
    amount = 10**17
    wait_for_route(net, "alice", "dave", amount, 3)
    blocks = net.nodes["alice"].control("GET", "/status")
    paid = net.pay("alice", "dave", amount)

    carol_fee = fee(*FEES["carol"], amount)
    bob_fee = fee(*FEES["bob"], amount + carol_fee)
    assert [hop["fee"] for hop in paid["route"]["hops"]] == ["0", str(bob_fee), str(carol_fee)]
    assert paid["attempts"] == 1
    wait_for(lambda: net.transfers("bob")["feesEarned"] == str(bob_fee), "bob's fee settled")
    wait_for(lambda: net.transfers("carol")["feesEarned"] == str(carol_fee), "carol's fee settled")
    wait_for(lambda: net.transfers("dave")["received"] == str(amount), "dave paid")
    assert net.transfers("alice")["sent"] == str(amount + bob_fee + carol_fee)
    net.check_conservation()
    assert blocks is not None
