"""ERC-1271 participants: a contract whose signature does not recover to it is asked `isValidSignature`.

The contract checks a participant's signature by `ecrecover` first (an EOA's path, unchanged); only if it
recovers to someone else and the participant has code does it ask the participant, with solady's
`SignatureCheckerLib`, through a self-call bounded to `_ERC1271_GAS` (100,000) gas, passing the
signature as 65 bytes `r || s || v`. `OwnedWallet1271` accepts its owner key's signatures;
`HostileWallet1271` returns garbage, reverts, burns its gas or accepts anything.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from paychan.chain import Chain
from paychan.compile import Artifact
from paychan.contract import STATUS_CLOSING, STATUS_NONE, STATUS_OPEN, PaychanContract, RecordedState
from paychan.exceptions import InvalidSignature
from paychan.signing import sign_digest
from paychan.state import EMPTY_SIGNATURE, ETH, ChannelParams, SignedState

from .conftest import ETHER, PERIOD, deploy_test_contract, next_block_at, record_salt, send_fn, tx_events

ERC1271_GAS = 100_000  # the contract's `_ERC1271_GAS`
GARBAGE, REVERTS, BURNS_GAS, ACCEPTS_ANYTHING = range(4)


@pytest.fixture
def wallet(chain: Chain, deployer: LocalAccount, artifacts: dict[str, Artifact], carol: LocalAccount) -> Any:
    """An `OwnedWallet1271` owned by carol's key, holding 10 ether."""
    w = deploy_test_contract(chain, deployer, artifacts["OwnedWallet1271"], carol.address)
    chain.send(carol, {"to": w.address, "value": 10 * ETHER, "gas": 50_000})
    return w


def hostile(chain: Chain, deployer: LocalAccount, artifacts: dict[str, Artifact], mode: int) -> Any:
    return deploy_test_contract(chain, deployer, artifacts["HostileWallet1271"], mode)


def execute(
    chain: Chain, owner: LocalAccount, wallet: Any, contract: PaychanContract, data: str, value: int = 0
) -> Any:
    """The wallet's owner makes the wallet call the channel contract with `data`."""
    return send_fn(chain, owner, wallet.functions.execute(contract.address, value, data), gas=1_000_000)


def open_from_wallet(
    chain: Chain, contract: PaychanContract, wallet: Any, owner: LocalAccount, counterparty: str, amount: int
) -> ChannelParams:
    """The wallet opens an ETH channel (as A) to `counterparty` with `amount` of its own ETH."""
    data = contract.contract.functions.open(counterparty, ETH, PERIOD, amount)._encode_transaction_data()
    receipt = execute(chain, owner, wallet, contract, data, amount)
    (opened,) = tx_events(contract, receipt, "ChannelOpened")
    return ChannelParams(
        opened["participantA"], opened["participantB"], opened["asset"], opened["challengePeriod"], opened["number"]
    )


def close_from_wallet(
    chain: Chain,
    contract: PaychanContract,
    wallet: Any,
    owner: LocalAccount,
    params: ChannelParams,
    signed: SignedState,
) -> Any:
    assert signed.sig_a is not None and signed.sig_b is not None
    fn = contract.contract.functions.close(
        params.as_tuple(), signed.state.as_tuple(), signed.sig_a.as_tuple(), signed.sig_b.as_tuple()
    )
    return execute(chain, owner, wallet, contract, fn._encode_transaction_data())


def last_receipt(chain: Chain) -> Any:
    block = chain.w3.eth.get_block("latest")
    return chain.w3.eth.get_transaction_receipt(block["transactions"][-1])


def test_a_wallet_participant_opens_pays_and_closes_cooperatively_with_its_owner_key(
    chain, contract, wallet, carol, bob, signed_state
):
    params = open_from_wallet(chain, contract, wallet, carol, bob.address, 5 * ETHER)
    assert params.participant_a == wallet.address
    cid = contract.channel_id(params)
    assert contract.get_channel(cid).deposit_a == 5 * ETHER
    signed_state(params, 1, 4 * ETHER, ETHER, key_a=carol.key)  # a payment, signed by the owner for A
    final = signed_state(params, 2, 3 * ETHER, 2 * ETHER, is_final=True, key_a=carol.key)
    before_wallet, before_bob = chain.balance(wallet.address), chain.balance(bob.address)
    receipt = contract.cooperative_close(bob, params, final)
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["payoutA"], settled["payoutB"], settled["cooperative"]) == (3 * ETHER, 2 * ETHER, True)
    assert chain.balance(wallet.address) == before_wallet + 3 * ETHER
    assert chain.balance(bob.address) - before_bob == 2 * ETHER - receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert contract.get_channel(cid).status == STATUS_NONE


def test_a_wallet_that_closed_with_a_stale_state_is_challenged_by_a_watchtower_and_settled(
    chain, contract, wallet, carol, bob, watchtower, signed_state
):
    params = open_from_wallet(chain, contract, wallet, carol, bob.address, 5 * ETHER)
    cid = contract.channel_id(params)
    stale = signed_state(params, 1, 4 * ETHER, ETHER, key_a=carol.key)
    newer = signed_state(params, 2, 2 * ETHER, 3 * ETHER, key_a=carol.key)
    receipt = close_from_wallet(chain, contract, wallet, carol, params, stale)
    (closed,) = tx_events(contract, receipt, "ChannelClosed")
    assert (closed["closer"], closed["nonce"]) == (wallet.address, 1)
    deadline = contract.get_channel(cid).deadline
    receipt = contract.challenge(watchtower, params, newer)
    assert contract.recorded_state(cid) == RecordedState(
        2, 2 * ETHER, 3 * ETHER, deadline, 5 * ETHER, 0, record_salt(contract, receipt), closer_nonce=1
    )
    assert contract.get_channel(cid).status == STATUS_CLOSING
    next_block_at(chain, deadline + 1)
    before_wallet, before_bob = chain.balance(wallet.address), chain.balance(bob.address)
    contract.settle(watchtower, params)
    assert chain.balance(wallet.address) == before_wallet + 2 * ETHER
    assert chain.balance(bob.address) == before_bob + 3 * ETHER
    assert contract.get_channel(cid).status == STATUS_NONE


def test_a_wallet_refuses_a_signature_not_made_by_its_owner_and_nothing_changes(
    chain, contract, wallet, carol, alice, bob, signed_state
):
    params = open_from_wallet(chain, contract, wallet, carol, bob.address, 5 * ETHER)
    cid = contract.channel_id(params)
    forged = signed_state(params, 1, ETHER, 4 * ETHER, key_a=alice.key)
    before = contract.get_channel(cid)
    with pytest.raises(InvalidSignature) as e:
        contract.close(bob, params, forged)
    assert e.value == InvalidSignature(wallet.address, alice.address)
    assert contract.get_channel(cid) == before
    assert before.status == STATUS_OPEN


def test_a_revocation_signed_by_the_wallet_owner_proves_the_wallet_closed_with_a_revoked_state(
    chain, contract, wallet, carol, bob, signed_state
):
    params = open_from_wallet(chain, contract, wallet, carol, bob.address, 5 * ETHER)
    cid = contract.channel_id(params)
    stale = signed_state(params, 1, 4 * ETHER, ETHER, key_a=carol.key)
    close_from_wallet(chain, contract, wallet, carol, params, stale)
    revocation = sign_digest(contract.onchain_revocation_digest(params, 2), carol.key)
    receipt = contract.prove_revoked(bob, params, 2, revocation)
    (proven,) = tx_events(contract, receipt, "RevokedStateProven")
    assert (proven["cheater"], proven["closerNonce"], proven["belowNonce"]) == (wallet.address, 1, 2)
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.closed_by, onchain.penalized) == (STATUS_CLOSING, "A", True)


@pytest.mark.parametrize("mode", [GARBAGE, REVERTS, BURNS_GAS], ids=["garbage", "reverts", "burns-gas"])
def test_a_hostile_wallet_signature_is_refused_within_the_gas_bound_and_nothing_changes(
    chain, contract, deployer, artifacts, alice, bob, signed_state, mode
):
    hostile_wallet = hostile(chain, deployer, artifacts, mode)
    params, _ = contract.open_channel(alice, hostile_wallet.address, 5 * ETHER)
    cid = contract.channel_id(params)
    signed = signed_state(params, 1, 2 * ETHER, 3 * ETHER)  # B's signature by bob's key: not the wallet's
    before, before_alice = contract.get_channel(cid), chain.balance(alice.address)
    gas_limit = 3_000_000
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, params, signed, gas=gas_limit)
    assert e.value == InvalidSignature(hostile_wallet.address, bob.address)
    failed = last_receipt(chain)
    assert failed["status"] == 0
    # Bounded: the wallet gets at most `ERC1271_GAS` whatever the transaction's limit (unbounded, a
    # gas burner would take 63/64 of the 3,000,000).
    assert failed["gasUsed"] < 21_000 + 20_000 + ERC1271_GAS + 20_000
    assert contract.get_channel(cid) == before
    assert chain.balance(alice.address) == before_alice - failed["gasUsed"] * failed["effectiveGasPrice"]


def test_a_wallet_that_accepts_anything_lets_its_counterparty_close_with_a_state_it_never_signed(
    chain, contract, deployer, artifacts, alice, signed_state
):
    """Such a wallet gives its key away: any signature counts as its own, so alice takes the channel."""
    anything = hostile(chain, deployer, artifacts, ACCEPTS_ANYTHING)
    params, _ = contract.open_channel(alice, anything.address, 5 * ETHER)
    contract.deposit(alice, params, anything.address, ETHER)
    cid = contract.channel_id(params)
    signed = signed_state(params, 1, 6 * ETHER, 0)
    unsigned = SignedState(signed.state, signed.sig_a, EMPTY_SIGNATURE)
    contract.close(alice, params, unsigned)
    recorded = contract.recorded_state(cid)
    assert (recorded.nonce, recorded.balance_a, recorded.balance_b) == (1, 6 * ETHER, 0)


def test_the_erc1271_path_costs_a_bounded_amount_above_the_eoa_path(
    chain, contract, wallet, carol, alice, bob, watchtower, signed_state, open_channel
):
    """Each operation that checks A's signature, with A a wallet beside A an EOA (alice); gas printed."""
    chain.send(carol, {"to": wallet.address, "value": 10 * ETHER, "gas": 50_000})  # three channels of 5

    def channel(is_wallet: bool) -> ChannelParams:
        if is_wallet:
            return open_from_wallet(chain, contract, wallet, carol, bob.address, 5 * ETHER)
        return open_channel(5 * ETHER, 0).params

    def a_key(is_wallet: bool) -> bytes:
        return bytes(carol.key if is_wallet else alice.key)

    gas: dict[str, list[int]] = {}
    for is_wallet in (False, True):
        params, key = channel(is_wallet), a_key(is_wallet)
        close = contract.close(bob, params, signed_state(params, 1, 4 * ETHER, ETHER, key_a=key))
        challenge = contract.challenge(watchtower, params, signed_state(params, 2, 3 * ETHER, 2 * ETHER, key_a=key))
        params = channel(is_wallet)
        stale = signed_state(params, 1, 4 * ETHER, ETHER, key_a=key)
        if is_wallet:
            close_from_wallet(chain, contract, wallet, carol, params, stale)
        else:
            contract.close(alice, params, stale)
        revocation = sign_digest(contract.onchain_revocation_digest(params, 2), key)
        prove = contract.prove_revoked(watchtower, params, 2, revocation)
        params = channel(is_wallet)
        final = signed_state(params, 1, 3 * ETHER, 2 * ETHER, is_final=True, key_a=key)
        cooperative = contract.cooperative_close(watchtower, params, final)
        for name, receipt in [
            ("close", close),
            ("challenge", challenge),
            ("prove revoked", prove),
            ("cooperative close", cooperative),
        ]:
            gas.setdefault(name, []).append(int(receipt["gasUsed"]))
    for name, (eoa_gas, wallet_gas) in gas.items():
        print(f"{name}: A an EOA {eoa_gas:,} gas, A an OwnedWallet1271 {wallet_gas:,} (+{wallet_gas - eoa_gas:,})")
        assert 0 < wallet_gas - eoa_gas < 15_000, name


def test_an_eip7702_delegated_eoa_signs_with_its_own_key_and_its_delegate_accepts_another(
    chain, contract, deployer, artifacts, alice, bob, watchtower, signed_state
):
    """An EOA delegated (EIP-7702) to an `OwnedWallet1271` whose owner is the watchtower's key: its own
    signature recovers to it (the EOA path), the watchtower key's is accepted by its code, bob's by neither."""
    implementation = deploy_test_contract(chain, deployer, artifacts["OwnedWallet1271"], watchtower.address)
    delegated = Account.create()
    auth = delegated.sign_authorization({"chainId": chain.chain_id, "address": implementation.address, "nonce": 0})
    tx = {
        "type": 4,
        "chainId": chain.chain_id,
        "nonce": chain.next_nonce(deployer.address),
        "to": delegated.address,
        "value": 0,
        "gas": 100_000,
        "data": b"",
        "authorizationList": [auth],
        **chain.fee_fields(),
    }
    tx_hash = chain.w3.eth.send_raw_transaction(deployer.sign_transaction(tx).raw_transaction)
    assert chain.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    designator = b"\xef\x01\x00" + bytes.fromhex(implementation.address[2:])  # EIP-7702 delegation
    assert bytes(chain.w3.eth.get_code(delegated.address)) == designator
    params, _ = contract.open_channel(alice, delegated.address, 5 * ETHER)
    cid = contract.channel_id(params)
    own = signed_state(params, 1, 4 * ETHER, ETHER, key_b=bytes(delegated.key))
    by_owner_key = signed_state(params, 2, 3 * ETHER, 2 * ETHER, key_b=bytes(watchtower.key))
    by_bob = signed_state(params, 3, 2 * ETHER, 3 * ETHER, key_b=bytes(bob.key))
    with pytest.raises(InvalidSignature) as e:
        contract.close(alice, params, by_bob)
    assert e.value == InvalidSignature(delegated.address, bob.address)
    assert contract.get_channel(cid).status == STATUS_OPEN
    contract.close(alice, params, own)
    contract.challenge(alice, params, by_owner_key)
    recorded = contract.recorded_state(cid)
    assert (recorded.nonce, recorded.balance_a, recorded.balance_b) == (2, 3 * ETHER, 2 * ETHER)
