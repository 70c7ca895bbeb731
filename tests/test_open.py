"""Opening channels: the stored deposits, the events, the channel id, and every rejection."""

from __future__ import annotations

import pytest

from paychan.contract import STATUS_OPEN, RecordedState
from paychan.exceptions import InvalidChallengePeriod, InvalidCounterparty, UnknownChannel, ValueMismatch
from paychan.state import ETH, ChannelParams, channel_id

from .conftest import ETHER, PERIOD, tx_events, tx_fee

MIN_PERIOD = 3600
MAX_PERIOD = 30 * 24 * 3600


def _open_raw(contract, sender, counterparty, asset, period, amount, value, gas=None):
    fn = contract.contract.functions.open(counterparty, asset, period, amount)
    return contract._transact(sender, fn, value, gas)


def test_open_with_a_deposit_stores_it_for_the_opener_and_moves_the_ether(chain, contract, alice, bob):
    before_alice, before_contract = chain.balance(alice.address), chain.balance(contract.address)
    params, receipt = contract.open_channel(alice, bob.address, 3 * ETHER)
    assert params == ChannelParams(alice.address, bob.address, ETH, PERIOD, params.number)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b) == (STATUS_OPEN, 3 * ETHER, 0)
    assert (onchain.deadline, onchain.nonce, onchain.fingerprint) == (0, 0, bytes(20))
    assert chain.balance(alice.address) == before_alice - 3 * ETHER - tx_fee(receipt)
    assert chain.balance(contract.address) == before_contract + 3 * ETHER


def test_open_emits_channel_opened_and_deposited_with_the_channel_parameters(contract, alice, bob):
    params, receipt = contract.open_channel(alice, bob.address, 2 * ETHER, challenge_period=7200)
    cid = contract.channel_id(params)
    (opened,) = tx_events(contract, receipt, "ChannelOpened")
    assert dict(opened) == {
        "channelId": cid,
        "participantA": alice.address,
        "participantB": bob.address,
        "asset": ETH,
        "challengePeriod": 7200,
        "number": params.number,
    }
    (deposited,) = tx_events(contract, receipt, "Deposited")
    assert dict(deposited) == {
        "channelId": cid,
        "participant": alice.address,
        "depositor": alice.address,
        "amount": 2 * ETHER,
        "total": 2 * ETHER,
    }


def test_open_without_a_deposit_creates_an_empty_open_channel_and_emits_no_deposit(contract, alice, bob):
    params, receipt = contract.open_channel(alice, bob.address, 0)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b) == (STATUS_OPEN, 0, 0)
    assert len(tx_events(contract, receipt, "ChannelOpened")) == 1
    assert tx_events(contract, receipt, "Deposited") == []


def test_the_channel_id_binds_chain_id_contract_and_parameters(chain, contract, alice, bob):
    params, receipt = contract.open_channel(alice, bob.address, 0)
    (opened,) = tx_events(contract, receipt, "ChannelOpened")
    expected = channel_id(params, chain.chain_id, contract.address)
    assert opened["channelId"] == expected
    assert bytes(contract.contract.functions.channelIdOf(params.as_tuple()).call()) == expected
    assert channel_id(params, chain.chain_id + 1, contract.address) != expected
    assert channel_id(params, chain.chain_id, bob.address) != expected


def test_each_open_takes_the_next_channel_number_so_the_same_pair_gets_a_new_id(contract, alice, bob):
    first_number = contract.contract.functions.nextChannelNumber().call()
    first, _ = contract.open_channel(alice, bob.address, 0, gas=300_000)
    second, _ = contract.open_channel(alice, bob.address, 0, gas=300_000)
    reverse, _ = contract.open_channel(bob, alice.address, 0, gas=300_000)
    assert (first.number, second.number, reverse.number) == (first_number, first_number + 1, first_number + 2)
    assert contract.contract.functions.nextChannelNumber().call() == first_number + 3
    ids = {contract.channel_id(p) for p in (first, second, reverse)}
    assert len(ids) == 3
    assert all(contract.get_channel(cid).status == STATUS_OPEN for cid in ids)


def test_the_opener_is_participant_a_and_the_counterparty_b(contract, bob, carol):
    params, _ = contract.open_channel(bob, carol.address, ETHER)
    assert (params.participant_a, params.participant_b) == (bob.address, carol.address)
    onchain = contract.get_channel(contract.channel_id(params))
    assert (onchain.deposit_a, onchain.deposit_b) == (ETHER, 0)


@pytest.mark.parametrize("period", [MIN_PERIOD, MAX_PERIOD])
def test_open_accepts_the_challenge_period_bounds(contract, alice, bob, period):
    params, _ = contract.open_channel(alice, bob.address, 0, challenge_period=period)
    assert params.challenge_period == period
    assert contract.get_channel(contract.channel_id(params)).status == STATUS_OPEN


@pytest.mark.parametrize("period", [0, MIN_PERIOD - 1, MAX_PERIOD + 1, 2**32 - 1])
def test_open_rejects_a_challenge_period_outside_the_bounds(contract, alice, bob, period):
    with pytest.raises(InvalidChallengePeriod) as e:
        contract.open_channel(alice, bob.address, ETHER, challenge_period=period)
    assert e.value == InvalidChallengePeriod(period, MIN_PERIOD, MAX_PERIOD)


def test_open_rejects_the_opener_as_its_own_counterparty(contract, alice):
    with pytest.raises(InvalidCounterparty) as e:
        contract.open_channel(alice, alice.address, ETHER)
    assert e.value == InvalidCounterparty(alice.address)


def test_open_rejects_the_zero_address_as_counterparty(contract, alice):
    with pytest.raises(InvalidCounterparty) as e:
        contract.open_channel(alice, ETH, ETHER)
    assert e.value == InvalidCounterparty(ETH)


@pytest.mark.parametrize("asset", ["eth", "erc20"])
def test_open_rejects_the_channels_contract_itself_as_counterparty_and_changes_nothing(
    request, chain, contract, alice, asset
):
    # A channel whose participant B is the contract could never be closed by B nor signed for, and its
    # payouts to B would be pushed to the contract itself: refused like the opener or the zero address.
    token = request.getfixturevalue("token") if asset == "erc20" else None
    address = token.address if token is not None else ETH
    number = contract.contract.functions.nextChannelNumber().call()
    held = chain.balance(contract.address), token.functions.balanceOf(contract.address).call() if token else 0
    own = token.functions.balanceOf(alice.address).call() if token else None
    block = chain.w3.eth.block_number
    with pytest.raises(InvalidCounterparty) as e:  # mined and reverted on chain (explicit gas: no estimate)
        contract.open_channel(alice, contract.address, ETHER, asset=address, gas=300_000)
    assert e.value == InvalidCounterparty(contract.address)
    assert chain.w3.eth.block_number > block
    assert contract.contract.functions.nextChannelNumber().call() == number
    assert (chain.balance(contract.address), token.functions.balanceOf(contract.address).call() if token else 0) == held
    assert (token.functions.balanceOf(alice.address).call() if token else None) == own
    assert contract.contract.events.ChannelOpened().get_logs(from_block=block + 1) == []


def test_the_counterparty_is_checked_before_the_challenge_period(contract, alice):
    with pytest.raises(InvalidCounterparty) as e:
        contract.open_channel(alice, alice.address, 0, challenge_period=1)
    assert e.value == InvalidCounterparty(alice.address)


def test_open_rejects_less_ether_than_the_amount(contract, alice, bob):
    with pytest.raises(ValueMismatch) as e:
        _open_raw(contract, alice, bob.address, ETH, PERIOD, 2 * ETHER, ETHER)
    assert e.value == ValueMismatch(ETHER, 2 * ETHER)


def test_open_rejects_more_ether_than_the_amount(contract, alice, bob):
    with pytest.raises(ValueMismatch) as e:
        _open_raw(contract, alice, bob.address, ETH, PERIOD, ETHER, ETHER + 1)
    assert e.value == ValueMismatch(ETHER + 1, ETHER)


def test_open_rejects_ether_sent_with_a_zero_amount(contract, alice, bob):
    with pytest.raises(ValueMismatch) as e:
        _open_raw(contract, alice, bob.address, ETH, PERIOD, 0, 5)
    assert e.value == ValueMismatch(5, 0)


def test_a_rejected_open_takes_no_number_and_no_ether(chain, contract, alice, bob):
    number = contract.contract.functions.nextChannelNumber().call()
    before = chain.balance(contract.address)
    with pytest.raises(ValueMismatch) as e:
        _open_raw(contract, alice, bob.address, ETH, PERIOD, ETHER, 1, gas=300_000)
    assert e.value == ValueMismatch(1, ETHER)
    assert contract.contract.functions.nextChannelNumber().call() == number
    assert chain.balance(contract.address) == before


def test_the_contract_constants_are_the_documented_ones(contract):
    functions = contract.contract.functions
    assert functions.MIN_CHALLENGE_PERIOD().call() == MIN_PERIOD
    assert functions.MAX_CHALLENGE_PERIOD().call() == MAX_PERIOD
    assert functions.MAX_DEPOSIT().call() == 2**116 - 1
    assert functions.PAYOUT_GAS().call() == 100_000


def test_the_client_finds_a_channels_parameters_from_its_id(contract, alice, bob):
    params, _ = contract.open_channel(alice, bob.address, ETHER, challenge_period=5000)
    assert contract.find_params(contract.channel_id(params)) == params


def test_an_id_no_channel_has_reads_as_empty_and_has_no_parameters(contract):
    unknown = b"\x42" * 32
    onchain = contract.get_channel(unknown)
    assert (onchain.status, onchain.deposit_a, onchain.deposit_b, onchain.deadline, onchain.nonce) == (0, 0, 0, 0, 0)
    assert onchain.fingerprint == bytes(20)
    assert contract.recorded_state(unknown) == RecordedState(0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(UnknownChannel):
        contract.find_params(unknown)
