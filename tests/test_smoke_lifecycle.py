"""A first end-to-end lifecycle on the embedded chain (cooperative and disputed)."""

from paychan.contract import STATUS_NONE

from .conftest import ETHER, PERIOD


def test_cooperative_lifecycle_pays_both_their_final_balances(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER, 3 * ETHER)
    for _ in range(5):
        pair.pay("A", ETHER // 10)
        pair.pay("B", ETHER // 100)
    final = pair.finalize()
    before_a, before_b = chain.balance(alice.address), chain.balance(bob.address)
    receipt = contract.cooperative_close(alice, pair.params, final)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(alice.address) == before_a + final.state.balance_a - fee
    assert chain.balance(bob.address) == before_b + final.state.balance_b
    assert contract.get_channel(contract.channel_id(pair.params)).status == STATUS_NONE


def test_stale_close_is_beaten_by_a_challenge(chain, contract, open_channel, alice, bob):
    pair = open_channel(5 * ETHER)
    stale = pair.pay("A", ETHER)
    latest = pair.pay("A", 2 * ETHER)
    contract.close(alice, pair.params, stale)
    contract.challenge(bob, pair.params, latest)
    chain.time_travel(PERIOD + 1)
    before_b = chain.balance(bob.address)
    receipt = contract.settle(bob, pair.params)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(bob.address) == before_b + 3 * ETHER - fee
