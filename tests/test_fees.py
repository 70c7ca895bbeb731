"""Forwarding fees (no chain): exact figures and rounding of ``base + amount * ppm // 1e6``, the amount of each
hop computed backwards from the payee, an intermediary's check of a forward, and the signed ``FeeUpdate``
(the digest eth-account computes, a forged or foreign signer refused, JSON a wallet reads exactly)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

from paychan.exceptions import InvalidSignature, MalformedMessage, NotParticipant
from paychan.fees import (
    FeeAnnouncement,
    FeePolicy,
    FeeTooLow,
    FeeUpdate,
    check_forward,
    fee_update_digest,
    fee_update_typed_data,
    hop_amounts,
    next_timestamp,
    sign_fee_update,
    verify_fee_announcement,
)
from paychan.signing import Domain, sign_digest
from paychan.state import ETH, ChannelParams, Signature, channel_id

DOMAIN = Domain(31337, "0x" + "ab" * 20)
ALICE, BOB, MALLORY = (Account.from_key(bytes([n]) * 32) for n in (0x11, 0x22, 0x33))
PARAMS = ChannelParams(ALICE.address, BOB.address, ETH, 3600, 1)
CID = channel_id(PARAMS, DOMAIN.chain_id, DOMAIN.verifying_contract)
UPDATE = FeeUpdate(CID, BOB.address, 1_700_000_000, 1_000, 2_500)


def vrs(signature: Signature) -> tuple[int, int, int]:
    return signature.v, int.from_bytes(signature.r, "big"), signature.s


def test_the_fee_is_the_base_fee_plus_the_proportional_fee_on_the_forwarded_amount() -> None:
    policy = FeePolicy(base_fee=1_000, ppm=2_500)
    assert policy.fee(1_000_000) == 1_000 + 2_500
    assert policy.fee(123_456) == 1_000 + 308  # 123,456 * 2,500 / 1e6 = 308.64
    assert policy.fee(0) == 1_000
    assert FeePolicy(0, 0).fee(10**18) == 0
    assert FeePolicy(0, 1_000_000).fee(10**18) == 10**18  # 100%


def test_the_proportional_fee_rounds_down_to_the_wei() -> None:
    assert FeePolicy(0, 1).fee(999_999) == 0
    assert FeePolicy(0, 1).fee(1_000_000) == 1
    assert FeePolicy(0, 1).fee(1_999_999) == 1
    assert FeePolicy(7, 333).fee(3_003) == 7 + 0  # 0.999999 wei rounds to 0
    assert FeePolicy(7, 333).fee(3_004) == 7 + 1  # 1.000332 wei


def test_a_policy_outside_the_typed_ranges_is_refused() -> None:
    with pytest.raises(MalformedMessage):
        FeePolicy(-1, 0)
    with pytest.raises(MalformedMessage):
        FeePolicy(0, 2**32)
    with pytest.raises(MalformedMessage):
        FeePolicy(2**256, 0)
    with pytest.raises(MalformedMessage):
        FeePolicy(True, 0)


def test_a_direct_payment_forwards_exactly_the_amount_and_pays_no_fee() -> None:
    assert hop_amounts([], 5_000) == [5_000]


def test_through_two_intermediaries_the_payee_gets_the_amount_and_each_intermediary_exactly_its_fee() -> None:
    bob, carol = FeePolicy(1_000, 100), FeePolicy(500, 2_000)
    amounts = hop_amounts([bob, carol], 1_000_000)
    # carol forwards 1,000,000 to dave: 500 + 2,000 = 2,500; bob forwards 1,002,500: 1,000 + 100 (100.25) = 1,100
    assert amounts == [1_003_600, 1_002_500, 1_000_000]
    assert amounts[0] - amounts[1] == bob.fee(amounts[1]) == 1_100
    assert amounts[1] - amounts[2] == carol.fee(amounts[2]) == 2_500
    assert check_forward(amounts[0], amounts[1], bob) == 1_100
    assert check_forward(amounts[1], amounts[2], carol) == 2_500


def test_through_three_intermediaries_each_hop_carries_the_fees_of_the_hops_after_it() -> None:
    bob, carol, dave = FeePolicy(1, 1), FeePolicy(10, 10_000), FeePolicy(100, 500_000)
    amounts = hop_amounts([bob, carol, dave], 10**18)
    last = 10**18
    dave_fee = 100 + last * 500_000 // 10**6  # 5e17 + 100
    carol_fee = 10 + (last + dave_fee) * 10_000 // 10**6
    bob_fee = 1 + (last + dave_fee + carol_fee) // 10**6
    assert amounts == [last + dave_fee + carol_fee + bob_fee, last + dave_fee + carol_fee, last + dave_fee, last]
    assert amounts[3] == 10**18
    assert [amounts[i] - amounts[i + 1] for i in range(3)] == [bob_fee, carol_fee, dave_fee]
    assert [check_forward(amounts[i], amounts[i + 1], p) for i, p in enumerate((bob, carol, dave))] == [
        bob_fee,
        carol_fee,
        dave_fee,
    ]


def test_a_payment_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        hop_amounts([FeePolicy(1, 1)], 0)


def test_a_forward_paying_one_wei_less_than_the_fee_is_refused_with_the_amounts_and_the_fee() -> None:
    policy = FeePolicy(1_000, 2_500)
    with pytest.raises(FeeTooLow) as refused:
        check_forward(1_003_499, 1_000_000, policy)
    assert (refused.value.incoming, refused.value.outgoing, refused.value.fee) == (1_003_499, 1_000_000, 3_500)
    assert str(refused.value) == "FeeTooLow(incoming=1003499, outgoing=1000000, fee=3500)"


def test_a_forward_of_more_than_it_receives_is_refused() -> None:
    with pytest.raises(FeeTooLow) as refused:
        check_forward(1_000, 1_001, FeePolicy(0, 0))
    assert (refused.value.incoming, refused.value.outgoing, refused.value.fee) == (1_000, 1_001, 0)


def test_a_forward_paying_more_than_the_fee_is_accepted_and_earns_the_whole_margin() -> None:
    assert check_forward(1_010_000, 1_000_000, FeePolicy(1_000, 2_500)) == 10_000


def test_the_fee_update_digest_is_the_eip712_digest_eth_account_computes() -> None:
    signable = encode_typed_data(full_message=fee_update_typed_data(DOMAIN, UPDATE))
    assert _hash_eip191_message(signable) == fee_update_digest(DOMAIN, UPDATE)
    signed = Account.sign_typed_data(BOB.key, full_message=fee_update_typed_data(DOMAIN, UPDATE))
    announcement = sign_fee_update(DOMAIN, UPDATE, BOB.key)
    assert Signature.from_vrs(signed.v, signed.r, signed.s) == announcement.signature


def test_the_wallet_safe_form_carries_integers_as_decimal_strings_and_hashes_to_the_same_digest() -> None:
    update = FeeUpdate(CID, BOB.address, 2**64 - 1, 2**200 + 1, 2**32 - 1)
    text = json.dumps(fee_update_typed_data(DOMAIN, update, wallet_safe=True))
    message = json.loads(text)
    assert message["message"] == {
        "channelId": "0x" + CID.hex(),
        "node": BOB.address,
        "timestamp": str(2**64 - 1),
        "baseFee": str(2**200 + 1),
        "ppm": str(2**32 - 1),
    }
    assert message["domain"]["chainId"] == "31337"
    assert _hash_eip191_message(encode_typed_data(full_message=message)) == fee_update_digest(DOMAIN, update)


def test_an_announcement_signed_by_its_node_is_verified() -> None:
    verify_fee_announcement(DOMAIN, sign_fee_update(DOMAIN, UPDATE, BOB.key), PARAMS)
    alice_update = FeeUpdate(CID, ALICE.address, 5, 0, 0)
    verify_fee_announcement(DOMAIN, sign_fee_update(DOMAIN, alice_update, ALICE.key), PARAMS)


def test_an_announcement_of_bobs_fee_signed_by_alice_is_refused() -> None:
    forged = sign_fee_update(DOMAIN, UPDATE, ALICE.key)
    with pytest.raises(InvalidSignature) as refused:
        verify_fee_announcement(DOMAIN, forged, PARAMS)
    assert refused.value == InvalidSignature(expected=BOB.address, recovered=ALICE.address)


def test_a_relay_that_lowers_a_signed_fee_is_refused() -> None:
    signed = sign_fee_update(DOMAIN, UPDATE, BOB.key)
    lowered = FeeUpdate(CID, BOB.address, UPDATE.timestamp, 0, 0)
    tampered = FeeAnnouncement(lowered, signed.signature)
    recovered = Account._recover_hash(fee_update_digest(DOMAIN, lowered), vrs=vrs(signed.signature))
    assert recovered != BOB.address
    with pytest.raises(InvalidSignature) as refused:
        verify_fee_announcement(DOMAIN, tampered, PARAMS)
    assert refused.value == InvalidSignature(expected=BOB.address, recovered=recovered)


def test_an_announcement_signed_for_another_deployment_is_refused() -> None:
    other = Domain(31337, "0x" + "cd" * 20)
    moved = FeeAnnouncement(UPDATE, sign_digest(fee_update_digest(other, UPDATE), BOB.key))
    recovered = Account._recover_hash(fee_update_digest(DOMAIN, UPDATE), vrs=vrs(moved.signature))
    with pytest.raises(InvalidSignature) as refused:
        verify_fee_announcement(DOMAIN, moved, PARAMS)
    assert refused.value == InvalidSignature(expected=BOB.address, recovered=recovered)


def test_an_announcement_by_someone_outside_the_channel_is_refused_even_if_self_signed() -> None:
    foreign = sign_fee_update(DOMAIN, FeeUpdate(CID, MALLORY.address, 9, 0, 0), MALLORY.key)
    with pytest.raises(NotParticipant) as refused:
        verify_fee_announcement(DOMAIN, foreign, PARAMS)
    assert refused.value == NotParticipant(CID, MALLORY.address)


def test_an_announcement_round_trips_through_json_with_no_large_json_number() -> None:
    update = FeeUpdate(CID, BOB.address.lower(), 2**60, 2**100, 77)
    announcement = sign_fee_update(DOMAIN, update, BOB.key)
    text = json.dumps(announcement.to_json())
    assert FeeAnnouncement.from_json(json.loads(text)) == announcement
    assert update.node == BOB.address  # checksummed
    assert '"timestamp": "1152921504606846976"' in text


@pytest.mark.parametrize(
    "change",
    [
        {"channelId": "0x12"},
        {"node": "bob"},
        {"timestamp": "-1"},
        {"timestamp": str(2**64)},
        {"baseFee": "1.5"},
        {"ppm": str(2**32)},
        {"ppm": True},
    ],
)
def test_a_malformed_fee_update_is_refused(change: dict[str, object]) -> None:
    data = {**UPDATE.to_json(), **change}
    with pytest.raises(MalformedMessage):
        FeeUpdate.from_json(data)


def test_a_malformed_announcement_is_refused() -> None:
    good = sign_fee_update(DOMAIN, UPDATE, BOB.key).to_json()
    for bad in ({"update": good["update"]}, {**good, "signature": "0x1234"}, [good]):
        with pytest.raises(MalformedMessage):
            FeeAnnouncement.from_json(bad)


def test_a_node_announces_with_its_clock_or_one_more_than_its_previous_timestamp() -> None:
    assert next_timestamp(1_000, None) == 1_000
    assert next_timestamp(1_000, 999) == 1_000
    assert next_timestamp(1_000, 1_000) == 1_001
    assert next_timestamp(1_000, 5_000) == 5_001
