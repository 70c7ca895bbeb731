"""`paychan demo`: every lifecycle runs and its ledger agrees with the chain to the wei."""

from __future__ import annotations

import json
from typing import Any

from paychan.chain import Chain
from paychan.cli import main
from paychan.contract import STATUS_NONE, PaychanContract
from paychan.demo import TITLES, run_cooperative, run_dispute
from paychan.ledger import Ledger

from .conftest import ETHER, tx_fee


def channel_logs(contract: PaychanContract, ledger: Ledger, name: str) -> list[Any]:
    """The arguments of every ``name`` event of the ledger's channel, read from the chain."""
    cid = bytes.fromhex(ledger.channel_id[2:])
    event = getattr(contract.contract.events, name)()
    return [e["args"] for e in event.get_logs(from_block=0, argument_filters={"channelId": cid})]


def assert_ledger_matches_the_chain(chain: Chain, contract: PaychanContract, ledger: Ledger) -> None:
    """Each number of a finished (settled or closed) channel's ledger, read again from the chain; deposits =
    payouts + withdrawals, to the wei; each wallet's change = what the channel moved - its own fees."""
    party_a, party_b = ledger.party_by_role("A"), ledger.party_by_role("B")
    for party in (party_a, party_b):
        deposits = [
            d["amount"] for d in channel_logs(contract, ledger, "Deposited") if d["participant"] == party.address
        ]
        assert party.deposited == sum(deposits)
    (settled,) = channel_logs(contract, ledger, "ChannelSettled")
    assert (party_a.paid_out, party_b.paid_out) == (settled["payoutA"], settled["payoutB"])
    withdrawn = channel_logs(contract, ledger, "Withdrawn")
    assert party_a.withdrawn == sum(w["amountA"] for w in withdrawn)
    assert party_b.withdrawn == sum(w["amountB"] for w in withdrawn)
    deposited = party_a.deposited + party_b.deposited
    assert deposited == party_a.paid_out + party_b.paid_out + party_a.withdrawn + party_b.withdrawn
    assert contract.get_channel(bytes.fromhex(ledger.channel_id[2:])).status == STATUS_NONE
    assert ledger.channel_holds == 0 and ledger.conserved
    for tx in ledger.transactions:
        receipt = chain.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
        assert (tx.gas_used, tx.fee) == (receipt["gasUsed"], tx_fee(receipt))
        assert chain.w3.eth.get_transaction(tx.tx_hash)["from"] == tx.sender_address  # type: ignore[arg-type]
    first = min(tx.block for tx in ledger.transactions if tx.sender != "deployer")
    for party in (party_a, party_b):
        assert party.fees == sum(tx.fee for tx in ledger.transactions if tx.sender_address == party.address)
        assert party.wallet_before == chain.balance(party.address, first - 1)
        assert party.wallet_after == chain.balance(party.address)
        assert party.wallet_change == party.channel_result - party.fees


def test_the_cooperative_ledger_reconciles_every_wallet_to_the_wei(chain, contract):
    ledger = run_cooperative(chain, contract, payments=7)
    alice, bob = ledger.parties["alice"], ledger.parties["bob"]
    assert (alice.deposited, bob.deposited) == (5 * ETHER, 3 * ETHER)
    assert alice.paid_out + bob.paid_out == 8 * ETHER
    assert len(ledger.states) == 8 and ledger.states[-1].is_final
    assert all(s.signed_by == ("alice", "bob") for s in ledger.states)
    for party in (alice, bob):
        assert party.wallet_change == party.channel_result - party.fees
        assert party.fees == party.fees_burned + party.fees_tip > 0
    assert ledger.states[-1].balance_a == alice.paid_out
    assert contract.get_channel(bytes.fromhex(ledger.channel_id[2:])).status == STATUS_NONE
    assert_ledger_matches_the_chain(chain, contract, ledger)


def test_the_dispute_pays_bob_the_newest_state_not_the_stale_one(chain, contract):
    ledger = run_dispute(chain, contract)
    labels = [tx.label for tx in ledger.transactions]
    assert labels == [
        "open channel + deposit (alice)",
        "deposit (bob)",
        "close with stale state (alice)",
        "challenge with newest state (bob)",
        "settle (bob)",
    ]
    payouts = {p["name"]: p["amount"] for p in ledger.payouts}
    assert payouts == {"alice": 1 * ETHER, "bob": 4 * ETHER}
    for tx in ledger.transactions:
        receipt = chain.w3.eth.get_transaction_receipt(tx.tx_hash)
        assert tx.gas_used == receipt["gasUsed"]
        assert tx.fee == receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert tx.base_fee_burned + tx.priority_tip == tx.fee
    assert ledger.penalties == [] and ledger.settled_locks == [] and ledger.lock_check is None
    assert_ledger_matches_the_chain(chain, contract, ledger)


def test_paychan_demo_prints_every_ledger_as_json_each_conserved_to_the_wei(capsys):
    assert main(["demo", "--json", "--payments", "3"]) == 0
    ledgers = json.loads(capsys.readouterr().out)
    assert [ledger["title"] for ledger in ledgers] == list(TITLES.values())
    assert ledgers[0]["transactions"][0]["label"] == "deploy PaymentChannels"
    assert all(p["reconciles"] for ledger in ledgers for p in ledger["parties"].values())
    for ledger in ledgers:
        c = ledger["conservation"]
        assert c["holds"] and c["deposited"] == c["paid_out"] + c["withdrawn"] + c["channel_holds"]
    withdraw = ledgers[-1]["conservation"]
    assert (withdraw["deposited"], withdraw["paid_out"], withdraw["withdrawn"]) == (
        4 * ETHER,
        5 * ETHER // 2,
        3 * ETHER // 2,
    )


def test_paychan_demo_text_names_who_signed_and_who_earned_the_fees(capsys):
    assert main(["demo", "--payments", "2"]) == 0
    out = capsys.readouterr().out
    assert "signed by alice + bob" in out
    assert "base fee burned" in out and "tip to the block producer" in out
    assert "bob got back 4 ETH" in out
    assert "bob got back 5 ETH (pushed; the whole channel, as the penalty)" in out
    assert "penalty: alice's deposit of 4 ETH went to bob" in out
    assert "lock 2: alice -> bob 0.25 ETH" in out and "never revealed -> back to alice" in out
    assert "1.5 ETH withdrawn while open; the contract keeps 0 ETH" in out
    assert "✗" not in out


def test_a_long_cooperative_run_never_overdraws_a_side(chain, contract):
    ledger = run_cooperative(chain, contract, payments=120)
    assert len(ledger.states) == 121
    assert all(s.balance_a >= 0 and s.balance_b >= 0 for s in ledger.states)
    assert sum(p.paid_out for p in ledger.parties.values()) == 8 * ETHER
