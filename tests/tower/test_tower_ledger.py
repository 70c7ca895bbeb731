"""The watchtower's lifecycle as a ledger (embedded chain): the tower's account sends the proof and the
settlement and pays their gas; bob, offline, sends nothing and gets the whole channel."""

from __future__ import annotations

import pytest

from paychan.chain import embedded_chain
from paychan.demo import ETHER, WATCHTOWER_TITLE, run_watchtower


@pytest.mark.embedded_only
def test_the_ledger_shows_the_tower_proving_and_settling_from_its_own_account_and_paying_their_gas() -> None:
    ledger = run_watchtower(embedded_chain())
    sent = [(tx.label, tx.sender) for tx in ledger.transactions]
    assert sent[-3:] == [
        ("close with revoked state (alice)", "alice"),
        ("prove revoked state (tower)", "tower"),
        ("settle (tower)", "tower"),
    ]
    fees = ledger.fees_by_sender()
    assert fees["tower"] == sum(tx.fee for tx in ledger.transactions if tx.sender == "tower") > 0
    assert "bob" not in {sender for _, sender in sent[-3:]}
    assert ledger.conserved
    text = ledger.to_text()
    assert WATCHTOWER_TITLE in text and "sent by tower" in text
    paid = {payout["name"]: (payout["amount"], payout["penalty"]) for payout in ledger.to_json()["payouts"]}
    assert paid == {"alice": (0, False), "bob": (5 * ETHER, True)}  # both deposits, alice's 4 ETH as the penalty


@pytest.mark.embedded_only
def test_paychan_demo_tower_prints_the_ledger_and_refuses_to_combine_with_network(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from paychan.cli import main

    assert main(["demo", "--tower", "--rpc-url", "embedded"]) == 0
    out = capsys.readouterr().out
    assert WATCHTOWER_TITLE in out
    assert "prove revoked state (tower)        sent by tower" in out and "settle (tower)" in out
    assert "bob got back 5 ETH (pushed; the whole channel, as the penalty)" in out
    assert main(["demo", "--tower", "--network", "--rpc-url", "embedded"]) == 2
    assert capsys.readouterr().err == "paychan: error: --network and --tower are two different demos: choose one\n"
