"""Ape accounts as channel signers: ``paychan.signers.ApeSigner`` signs each side's states with the Ape
account's ``sign_message`` (the EIP-712 ``SignableMessage``), and the contract pays by those signatures."""

from __future__ import annotations

from paychan.channel import Channel, agree_final, pay
from paychan.signers import ApeSigner
from paychan.signing import sign_state
from paychan.state import ETH, ChannelParams

from .conftest import ETHER, PERIOD, key_of, signatures


def test_a_channel_signed_by_ape_accounts_closes_cooperatively_with_their_signatures(paychan, domain, alice, bob):
    receipt = paychan.open(bob, ETH, PERIOD, 5 * ETHER, sender=alice, value=5 * ETHER)
    (event,) = receipt.decode_logs(paychan.ChannelOpened)
    params = ChannelParams(event.participantA, event.participantB, event.asset, event.challengePeriod, event.number)
    a = Channel(params, domain, ApeSigner(alice), deposits=(5 * ETHER, 0))
    b = Channel(params, domain, ApeSigner(bob), deposits=(5 * ETHER, 0))
    for _ in range(3):
        pay(a, b, ETHER // 10 + 2**53)  # amounts above 2**53 wei
    final = agree_final(a, b)
    assert final.sig_a == sign_state(domain, final.state, key_of(alice))
    assert final.sig_b == sign_state(domain, final.state, key_of(bob))
    alice_before, bob_before = alice.balance, bob.balance
    close = paychan.cooperativeClose(params.as_tuple(), final.state.as_tuple(), *signatures(final), sender=alice)
    assert alice.balance == alice_before + 5 * ETHER - 3 * (ETHER // 10 + 2**53) - close.total_fees_paid
    assert bob.balance == bob_before + 3 * (ETHER // 10 + 2**53)
    assert paychan.balance == 0
