"""``paychan demo --network`` (paychan.demo_network): the ledger's claims checked from its data and the chain:
the fees are the announced policies applied to what each intermediary forwarded, the routes and outcomes are
the ones it names, no transaction where it says none, every lock resolved, the on-chain payouts are the
contract's, and every party ends with what it put in and earned, to the wei."""

from __future__ import annotations

import json

import pytest

from paychan.chain import embedded_chain
from paychan.cli import main
from paychan.contract import STATUS_NONE, PaychanContract
from paychan.demo_network import (
    BIG_PAYMENT,
    CHANNELS,
    ETHER,
    FEES,
    PAYMENTS,
    NetworkLedger,
    payment_secret,
    run_network,
)
from paychan.fees import PPM
from paychan.state import hashlock


@pytest.fixture(scope="module")
def run():
    chain = embedded_chain()
    ledger = run_network(chain)
    return chain, PaychanContract(chain, ledger.contract), ledger


@pytest.fixture(scope="module")
def ledger(run) -> NetworkLedger:
    return run[2]


def channel_changes(scenario) -> dict[str, tuple[int, int]]:
    return {
        label: (after[0] - scenario.before[label][0], after[1] - scenario.before[label][1])
        for label, after in scenario.after.items()
    }


def test_each_intermediarys_fee_is_its_announced_base_plus_ppm_of_what_it_forwarded_rounded_down(ledger):
    lines = [line for s in ledger.scenarios for p in s.payments for line in p.fees]
    assert {line.name for line in lines} == {"bob", "carol", "dave"}
    for line in lines:
        policy = FEES[line.name]
        assert (line.base_fee, line.ppm) == (policy.base_fee, policy.ppm)
        assert line.fee == policy.base_fee + line.forwarded * policy.ppm // PPM
    first = ledger.scenarios[0].payments[0]
    carol, bob = first.fees[1], first.fees[0]
    assert (carol.forwarded, carol.fee) == (ETHER // 10, 2 * 10**9 + 15_000_000_000_000)
    assert bob.forwarded == ETHER // 10 + carol.fee  # bob forwards what carol must receive: amount + her fee
    assert bob.fee == 10**9 + bob.forwarded * 100 // PPM


def test_alice_pays_erin_three_times_over_the_cheapest_route_without_a_transaction(ledger):
    scenario = ledger.scenarios[0]
    assert scenario.transactions == []
    assert [(p.amount, p.outcome, p.route) for p in scenario.payments] == [
        (amount, "succeeded", ["alice", "bob", "carol", "erin"]) for amount in PAYMENTS
    ]
    changes = channel_changes(scenario)
    sent = sum(p.amount + p.total_fee for p in scenario.payments)
    forwarded_by_bob = sum(p.fees[0].forwarded for p in scenario.payments)
    assert changes["alice-bob"] == (-sent, sent)
    assert changes["bob-carol"] == (-forwarded_by_bob, forwarded_by_bob)
    assert changes["carol-erin"] == (-sum(PAYMENTS), sum(PAYMENTS))
    assert changes["alice-dave"] == changes["dave-erin"] == (0, 0)


def test_a_hop_without_the_capacity_refuses_before_anything_is_signed_and_the_payer_retries_at_once(ledger):
    scenario = ledger.scenarios[1]
    (payment,) = scenario.payments
    assert payment.outcome == "succeeded" and payment.route == ["alice", "dave", "erin"]
    refused, first_lock = payment.attempts[0], payment.attempts[1]
    before = scenario.before["bob-carol"][0]
    forward = BIG_PAYMENT + FEES["carol"].fee(BIG_PAYMENT)
    assert refused.startswith("refused by bob: LockExceedsCapacity(") and refused.endswith(
        f"amount={forward}, capacity={before})"
    )
    assert forward > before
    assert first_lock.startswith("alice locked") and "for dave" in first_lock  # no lock ever went to bob
    assert scenario.before["alice-bob"] == scenario.after["alice-bob"] and scenario.transactions == []


def test_an_offline_intermediary_fails_the_first_route_and_the_second_pays_after_the_first_lock_expired(ledger):
    scenario = ledger.scenarios[2]
    (payment,) = scenario.payments
    assert payment.outcome == "succeeded" and payment.route == ["alice", "dave", "erin"]
    attempts = payment.attempts
    refused = next(i for i, a in enumerate(attempts) if a.startswith("refused by bob: NextHopTimedOut(hop=1"))
    expired = attempts.index("bob gave back alice's expired lock on alice-bob")
    second = next(i for i, a in enumerate(attempts) if a.startswith("alice locked") and "for dave" in a)
    assert attempts[0].startswith("alice locked") and "for bob" in attempts[0]
    assert refused < expired < second  # the hashlock reused only once the first lock was dead
    changes = channel_changes(scenario)
    assert changes["alice-bob"] == changes["bob-carol"] == changes["carol-erin"] == (0, 0)
    assert changes["alice-dave"] == (-(payment.amount + payment.total_fee), payment.amount + payment.total_fee)
    assert changes["dave-erin"] == (-payment.amount, payment.amount)
    assert scenario.transactions == []


def test_a_payee_that_never_reveals_lets_every_lock_expire_and_every_balance_returns(ledger):
    scenario = ledger.scenarios[3]
    (payment,) = scenario.payments
    assert payment.outcome == "failed" and payment.reason.startswith("the payee did not claim")
    gave_back = [a for a in payment.attempts if "gave back" in a]
    assert gave_back == [
        "erin gave back carol's expired lock on carol-erin",
        "carol gave back bob's expired lock on bob-carol",
        "bob gave back alice's expired lock on alice-bob",
    ]
    assert scenario.before == scenario.after and scenario.transactions == []


def test_an_intermediary_whose_upstream_vanished_reveals_on_chain_in_time_and_is_paid_at_settlement(run):
    chain, contract, ledger = run
    scenario = ledger.scenarios[4]
    (payment,) = scenario.payments
    assert payment.outcome == "succeeded" and payment.route == ["alice", "bob", "carol", "erin"]
    assert [tx.split(":")[0] for tx in scenario.transactions] == [
        "revealSecret (carol)",
        "close bob-carol (carol)",
        "settle bob-carol with 1 lock(s) (carol)",
    ]
    lock = next(a for a in payment.attempts if a.startswith("bob locked"))
    expiry = int(lock.rsplit(" ", 1)[1])
    assert 0 < contract.revealed_at(hashlock(payment_secret(payment.payment_id))) <= expiry
    (settled,) = contract.contract.events.ChannelSettled().get_logs(from_block=0)
    bob_carol = bytes.fromhex(ledger.channels["bob->carol"]["channel_id"][2:])
    assert settled["args"]["channelId"] == bob_carol and not settled["args"]["cooperative"]
    assert contract.get_channel(bob_carol).status == STATUS_NONE
    totals = ledger.totals
    assert (totals["bob"].onchain_payouts, totals["carol"].onchain_payouts) == (
        settled["args"]["payoutA"],
        settled["args"]["payoutB"],
    )
    before, after = scenario.before["carol-erin"], scenario.after["carol-erin"]
    assert after[1] - before[1] == payment.amount  # erin was paid off chain by carol
    assert scenario.after["alice-bob"][1] - scenario.before["alice-bob"][1] == payment.amount + payment.total_fee
    assert chain.balance(contract.address) == sum(
        int(info["deposit"]) for label, info in ledger.channels.items() if label != "bob->carol"
    )


def test_every_party_ends_with_its_deposits_plus_received_minus_sent_plus_fees_earned_minus_fees_paid(ledger):
    totals = ledger.totals
    assert ledger.conserved
    for t in totals.values():
        assert t.onchain_payouts + t.offchain_balances == t.deposits + t.received - t.sent + t.fees_earned - t.fees_paid
    paid = [p for s in ledger.scenarios for p in s.payments if p.outcome == "succeeded"]
    assert totals["alice"].fees_paid == sum(p.total_fee for p in paid) == sum(t.fees_earned for t in totals.values())
    assert totals["erin"].received == sum(p.amount for p in paid) == totals["alice"].sent
    for name in ("bob", "carol", "dave"):
        assert totals[name].fees_earned == sum(f.fee for p in paid for f in p.fees if f.name == name) > 0
    assert sum(t.holds for t in totals.values()) == sum(deposit for _, _, deposit in CHANNELS)


def test_paychan_demo_network_prints_the_ledger_as_json_and_refuses_a_plot(capsys):
    assert main(["demo", "--network", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["conserved"] is True and len(data["scenarios"]) == 5
    assert all(party["conserved"] for party in data["totals"].values())
    assert main(["demo", "--network", "--plot", "x.png"]) == 2
    assert "--plot draws the two-party lifecycles" in capsys.readouterr().err


def test_the_network_demo_runs_and_conserves_every_partys_funds_on_each_chain(chain):
    ledger = run_network(chain)
    outcomes = [p.outcome for s in ledger.scenarios for p in s.payments]
    assert outcomes == ["succeeded"] * 5 + ["failed", "succeeded"]
    assert [len(s.transactions) for s in ledger.scenarios] == [0, 0, 0, 0, 3]
    assert ledger.conserved and all(t.conserved for t in ledger.totals.values())
