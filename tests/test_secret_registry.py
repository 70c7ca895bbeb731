"""The secret registry: anyone reveals a secret once, the contract records when, for every channel."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paychan import hashlock
from paychan.contract import STATUS_OPEN

from .conftest import ETHER, block_time, tx_events

SECRET = hashlib.sha256(b"paychan test secret").digest()
# sha256 of 32 zero bytes: a published test vector, so the Python hashlock is SHA-256 and not keccak.
ZERO_SECRET_HASHLOCK = bytes.fromhex("66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925")


def test_the_first_reveal_records_the_block_timestamp_and_emits_the_secret(chain, contract, carol):
    receipt = contract.reveal_secret(carol, SECRET)
    assert contract.revealed_at(hashlock(SECRET)) == block_time(chain, receipt)
    (event,) = tx_events(contract, receipt, "SecretRevealed")
    assert dict(event) == {"hashlock": hashlock(SECRET), "secret": SECRET}


def test_the_python_hashlock_of_the_zero_secret_is_the_published_sha256():
    assert hashlock(b"\x00" * 32) == ZERO_SECRET_HASHLOCK


def test_a_secret_that_is_not_32_bytes_has_no_hashlock():
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        hashlock(b"\x01" * 31)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.binary(min_size=32, max_size=32))
@example(secret=b"\x00" * 32)
def test_the_python_hashlock_is_the_contracts_for_any_secret(chain, contract, alice, secret):
    snapshot = chain.snapshot()  # hypothesis may draw a secret twice: each example starts unrevealed
    try:
        receipt = contract.reveal_secret(alice, secret)
        (event,) = tx_events(contract, receipt, "SecretRevealed")
        assert event["hashlock"] == hashlock(secret) == hashlib.sha256(secret).digest()
        assert contract.revealed_at(hashlock(secret)) == block_time(chain, receipt)
    finally:
        chain.revert(snapshot)


@pytest.mark.parametrize("second", ["same sender", "other sender"])
def test_a_second_reveal_keeps_the_first_timestamp_emits_nothing_and_does_not_revert(
    chain, contract, alice, bob, second
):
    first = contract.reveal_secret(alice, SECRET)
    chain.time_travel(60)
    again = contract.reveal_secret(alice if second == "same sender" else bob, SECRET)
    assert again["status"] == 1
    assert tx_events(contract, again, "SecretRevealed") == []
    assert again["logs"] == []
    assert block_time(chain, again) > block_time(chain, first)
    assert contract.revealed_at(hashlock(SECRET)) == block_time(chain, first)


def test_a_batch_reveals_each_new_secret_once_and_skips_known_ones(chain, contract, alice, bob):
    known, new_1, new_2 = (hashlib.sha256(bytes([i])).digest() for i in range(3))
    first = contract.reveal_secret(alice, known)
    chain.time_travel(60)
    receipt = contract.reveal_secrets(bob, [known, new_1, new_2, new_1])
    events = tx_events(contract, receipt, "SecretRevealed")
    assert [(e["hashlock"], e["secret"]) for e in events] == [(hashlock(new_1), new_1), (hashlock(new_2), new_2)]
    assert contract.revealed_at(hashlock(known)) == block_time(chain, first)
    assert contract.revealed_at(hashlock(new_1)) == contract.revealed_at(hashlock(new_2)) == block_time(chain, receipt)


def test_an_empty_batch_reveals_nothing(contract, alice):
    receipt = contract.reveal_secrets(alice, [])
    assert receipt["status"] == 1
    assert receipt["logs"] == []


def test_a_hashlock_never_revealed_reads_zero(contract):
    assert contract.revealed_at(hashlock(os.urandom(32))) == 0
    assert contract.revealed_at(SECRET) == 0  # the secret itself is not its hashlock


def test_revealing_secrets_moves_no_funds_and_leaves_channels_as_they_are(chain, contract, open_channel, carol):
    pair = open_channel(deposit_a=2 * ETHER, deposit_b=ETHER)
    cid = contract.channel_id(pair.params)
    before = chain.balance(contract.address)
    contract.reveal_secret(carol, SECRET)
    contract.reveal_secrets(carol, [SECRET, hashlib.sha256(SECRET).digest()])
    assert chain.balance(contract.address) == before == 3 * ETHER
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b) == (STATUS_OPEN, 2 * ETHER, ETHER)


def test_a_secret_or_hashlock_that_is_not_32_bytes_is_refused_before_sending(contract, alice):
    with pytest.raises(ValueError, match="a secret is 32 bytes, got 33"):
        contract.reveal_secret(alice, b"\x01" * 33)
    with pytest.raises(ValueError, match="a secret is 32 bytes, got 0"):
        contract.reveal_secrets(alice, [SECRET, b""])
    with pytest.raises(ValueError, match="a hashlock is 32 bytes, got 20"):
        contract.revealed_at(b"\x01" * 20)
