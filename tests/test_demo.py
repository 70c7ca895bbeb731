"""`paychan demo`: both lifecycles run and their ledgers agree with the chain to the wei."""

import json

from paychan.cli import main
from paychan.contract import STATUS_NONE
from paychan.demo import run_cooperative, run_dispute

from .conftest import ETHER


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


def test_paychan_demo_prints_both_ledgers_as_json(capsys):
    assert main(["demo", "--json", "--payments", "3"]) == 0
    ledgers = json.loads(capsys.readouterr().out)
    assert [ledger["title"] for ledger in ledgers] == [
        "Cooperative lifecycle",
        "Dispute: a stale close beaten by a challenge",
    ]
    assert ledgers[0]["transactions"][0]["label"] == "deploy PaymentChannels"
    assert all(p["reconciles"] for ledger in ledgers for p in ledger["parties"].values())


def test_paychan_demo_text_names_who_signed_and_who_earned_the_fees(capsys):
    assert main(["demo", "--payments", "2"]) == 0
    out = capsys.readouterr().out
    assert "signed by alice + bob" in out
    assert "base fee burned" in out and "tip to the block producer" in out
    assert "bob got back 4 ETH" in out


def test_a_long_cooperative_run_never_overdraws_a_side(chain, contract):
    ledger = run_cooperative(chain, contract, payments=120)
    assert len(ledger.states) == 121
    assert all(s.balance_a >= 0 and s.balance_b >= 0 for s in ledger.states)
    assert sum(p.paid_out for p in ledger.parties.values()) == 8 * ETHER
