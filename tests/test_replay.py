"""Replay: a state signed for one channel, contract or chain is worthless anywhere else."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paychan.contract import STATUS_OPEN, PaychanContract
from paychan.exceptions import ChannelNotClosing, ChannelNotOpen, InvalidSignature
from paychan.signing import Domain, recover_signer, sign_state
from paychan.state import ChannelState, SignedState, channel_id

from .conftest import ETHER


def _resigned_for(signed: SignedState, params, contract: PaychanContract) -> SignedState:
    """The same balances and signatures, as the contract sees them when submitted for ``params``.

    The contract derives the channel id from the ``Channel`` calldata (a ``State`` carries none), so a
    replayed state is verified as a state of the channel it is submitted for.
    """
    return SignedState(replace(signed.state, channel_id=contract.channel_id(params)), signed.sig_a, signed.sig_b)


def _expected_rejection(contract, params, replayed: SignedState) -> InvalidSignature:
    recovered = recover_signer(contract.domain, replayed.state, replayed.sig_a)
    return InvalidSignature(params.participant_a, recovered)


def test_a_state_of_a_closed_channel_cannot_close_the_next_channel_of_the_same_pair(contract, open_channel, alice, bob):
    first = open_channel(5 * ETHER)
    first.pay("A", ETHER)
    final = first.finalize()
    contract.cooperative_close(alice, first.params, final)
    second = open_channel(5 * ETHER)
    assert (second.params.participant_a, second.params.participant_b) == (alice.address, bob.address)
    assert second.params.number == first.params.number + 1
    replayed = _resigned_for(final, second.params, contract)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(bob, second.params, replayed)
    assert e.value == _expected_rejection(contract, second.params, replayed)
    assert e.value.recovered not in (alice.address, bob.address)
    assert contract.get_channel(contract.channel_id(second.params)).status == STATUS_OPEN


def test_a_state_of_one_open_channel_cannot_close_or_challenge_another(contract, open_channel, alice, bob):
    first = open_channel(5 * ETHER)
    second = open_channel(5 * ETHER)
    signed = first.pay("A", 4 * ETHER)
    replayed = _resigned_for(signed, second.params, contract)
    expected = _expected_rejection(contract, second.params, replayed)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, second.params, replayed)
    assert e.value == expected
    contract.close(alice, second.params)
    with pytest.raises(InvalidSignature) as e:
        contract.challenge(bob, second.params, replayed)
    assert e.value == expected


def test_the_closed_channels_own_final_state_cannot_be_used_twice(contract, open_channel, alice):
    pair = open_channel(2 * ETHER)
    final = pair.finalize()
    contract.cooperative_close(alice, pair.params, final)
    cid = contract.channel_id(pair.params)
    with pytest.raises(ChannelNotOpen) as e:
        contract.cooperative_close(alice, pair.params, final)
    assert e.value == ChannelNotOpen(cid)
    with pytest.raises(ChannelNotOpen) as e:
        contract.close(alice, pair.params, final)
    assert e.value == ChannelNotOpen(cid)
    with pytest.raises(ChannelNotClosing) as e:
        contract.challenge(alice, pair.params, final, recorded=None)
    assert e.value == ChannelNotClosing(cid)


def test_a_state_signed_for_another_deployment_is_rejected(chain, contract, deployer, artifacts, open_channel, alice):
    other, _ = PaychanContract.deploy(chain, deployer, artifacts["PaymentChannels"])
    pair = open_channel(3 * ETHER)  # on the session contract
    other_params, _ = other.open_channel(alice, pair.params.participant_b, 3 * ETHER)
    assert other_params == pair.params  # same pair, asset, period and number: only the contract differs
    pair.pay("A", ETHER)
    final = pair.finalize()
    replayed = _resigned_for(final, other_params, other)
    assert replayed.state.channel_id != final.state.channel_id
    with pytest.raises(InvalidSignature) as e:
        other.cooperative_close(alice, other_params, replayed)
    assert e.value == _expected_rejection(other, other_params, replayed)
    contract.cooperative_close(alice, pair.params, final)  # valid where it was signed
    assert other.get_channel(other.channel_id(other_params)).status == STATUS_OPEN
    assert other.get_channel(other.channel_id(other_params)).deposit_a == 3 * ETHER
    assert chain.balance(other.address) == 3 * ETHER


def test_a_state_signed_for_another_chain_id_is_rejected(chain, contract, open_channel, alice, bob):
    pair = open_channel(3 * ETHER)
    foreign = Domain(chain.chain_id + 1, contract.address)
    # Signed in the other chain's domain, naming this chain's channel id.
    cid = contract.channel_id(pair.params)
    state = ChannelState(cid, 1, ETHER, 2 * ETHER, is_final=True, deposit_a=3 * ETHER, deposit_b=0)
    signed = SignedState(state, sign_state(foreign, state, alice.key), sign_state(foreign, state, bob.key))
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, signed)
    assert e.value == InvalidSignature(alice.address, recover_signer(contract.domain, state, signed.sig_a))
    assert e.value.recovered != alice.address


def test_a_state_signed_entirely_for_another_chain_is_rejected(chain, contract, open_channel, alice, bob):
    pair = open_channel(3 * ETHER)
    foreign = Domain(1, contract.address)
    foreign_id = channel_id(pair.params, 1, contract.address)
    assert foreign_id != contract.channel_id(pair.params)
    state = ChannelState(foreign_id, 1, ETHER, 2 * ETHER, is_final=True, deposit_a=3 * ETHER, deposit_b=0)
    signed = SignedState(state, sign_state(foreign, state, alice.key), sign_state(foreign, state, bob.key))
    replayed = _resigned_for(signed, pair.params, contract)
    with pytest.raises(InvalidSignature) as e:
        contract.cooperative_close(alice, pair.params, replayed)
    assert e.value == _expected_rejection(contract, pair.params, replayed)


def test_the_domain_separator_binds_this_chain_and_contract(chain, contract):
    onchain = bytes(contract.contract.functions.DOMAIN_SEPARATOR().call())
    assert onchain == Domain(chain.chain_id, contract.address).separator
    assert onchain != Domain(chain.chain_id + 1, contract.address).separator
    assert onchain != Domain(chain.chain_id, "0x" + "11" * 20).separator
