"""A participant that is a contract wallet, driven through the SDK: `WalletAccount(wallet, owner)` is passed
to `PaychanContract` as the sender, so each call goes out as the owner's `wallet.execute(contract, value,
data)`, and its `Channel` signs with `Erc1271Signer` (the owner's key, accepted by `isValidSignature`).

A is an `OwnedWallet1271` owned by carol's key, holding 10 ether; carol pays the gas, the wallet the ETH.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from paychan.chain import Chain
from paychan.channel import Channel, agree_final, pay
from paychan.compile import Artifact
from paychan.contract import STATUS_CLOSING, STATUS_NONE, STATUS_OPEN, PaychanContract, RecordedState
from paychan.exceptions import InvalidSignature, NothingToClaim, TransactionFailed
from paychan.signers import Erc1271Signer
from paychan.signing import sign_digest, sign_state
from paychan.state import ETH, ChannelParams, SignedState
from paychan.token import Token, ensure_allowance
from paychan.wallets import (
    EXECUTE_SELECTOR,
    NotAWallet,
    NotWalletOwner,
    WalletAccount,
    WalletRefusesSigner,
    accepts_signature,
    check_wallet_owner,
    via_wallet,
)

from .conftest import ETHER, PERIOD, deploy_test_contract, record_salt, send_fn, tx_events, tx_fee


@pytest.fixture
def wallet(chain: Chain, deployer: LocalAccount, artifacts: dict[str, Artifact], carol: LocalAccount) -> WalletAccount:
    """An `OwnedWallet1271` owned by carol's key, holding 10 ether, as an SDK sender."""
    deployed = deploy_test_contract(chain, deployer, artifacts["OwnedWallet1271"], carol.address)
    chain.send(carol, {"to": deployed.address, "value": 10 * ETHER, "gas": 50_000})
    return via_wallet(deployed.address, carol)


def channels(contract: PaychanContract, params: ChannelParams, wallet: WalletAccount, bob: LocalAccount) -> Any:
    """The wallet's side (signing with its owner's key) and bob's (who takes the owner's signatures as A's)."""
    onchain = contract.get_channel(contract.channel_id(params))
    deposits = (onchain.deposit_a, onchain.deposit_b)
    a = Channel(params, contract.domain, wallet.signer(), deposits=deposits)
    b = Channel(params, contract.domain, bob, deposits=deposits, peer_signing_address=wallet.signing_address)
    return a, b


def test_a_wallet_account_sends_each_call_as_its_owners_execute_of_the_channel_contract(
    chain, contract, wallet, carol, bob
):
    receipt = contract.open_channel(wallet, bob.address, 2 * ETHER, challenge_period=PERIOD)[1]
    sent = chain.w3.eth.get_transaction(receipt["transactionHash"])
    assert (sent["from"], sent["to"], sent["value"]) == (carol.address, wallet.address, 0)
    assert bytes(sent["input"])[:4] == EXECUTE_SELECTOR
    assert isinstance(wallet.signer(), Erc1271Signer)
    assert (wallet.signer().address, wallet.signing_address) == (wallet.address, carol.address)


def test_a_wallet_opens_deposits_pays_withdraws_and_closes_cooperatively_through_the_sdk_with_exact_payouts(
    chain, contract, wallet, carol, bob
):
    params, _ = contract.open_channel(wallet, bob.address, 4 * ETHER)
    assert params.participant_a == wallet.address
    contract.deposit(wallet, params, wallet.address, ETHER)  # the wallet tops itself up
    contract.deposit(bob, params, bob.address, 2 * ETHER)
    cid = contract.channel_id(params)
    assert (contract.get_channel(cid).deposit_a, contract.get_channel(cid).deposit_b) == (5 * ETHER, 2 * ETHER)
    assert chain.balance(wallet.address) == 5 * ETHER
    a, b = channels(contract, params, wallet, bob)
    for _ in range(3):
        pay(a, b, ETHER // 2)  # the wallet pays bob 1.5 ether
    pay(b, a, ETHER // 4)  # bob pays back 0.25

    withdrawal, sig_a, proposal = a.propose_withdrawal(ETHER, chain.now() + 600)
    sig_b, signed = b.receive_withdrawal(withdrawal, sig_a, proposal, chain.now())
    a.receive_withdrawal_countersignature(sig_b, signed)
    receipt = contract.withdraw(wallet, params, withdrawal, sig_a, sig_b)
    (withdrawn,) = tx_events(contract, receipt, "Withdrawn")
    assert chain.balance(wallet.address) == 6 * ETHER
    for side in (a, b):
        side.record_withdrawal(int(withdrawn["depositA"]), int(withdrawn["depositB"]), int(withdrawn["withdrawals"]))
    assert contract.get_channel(cid).deposit_a == 4 * ETHER

    pay(a, b, ETHER // 4)
    final = agree_final(a, b)
    assert (final.state.balance_a, final.state.balance_b) == (2 * ETHER + ETHER // 2, 3 * ETHER + ETHER // 2)
    assert final.sig_a == sign_state(contract.domain, final.state, carol.key)  # the owner's key signed for A
    before_bob, before_carol = chain.balance(bob.address), chain.balance(carol.address)
    receipt = contract.cooperative_close(wallet, params, final)
    (settled,) = tx_events(contract, receipt, "ChannelSettled")
    assert (settled["payoutA"], settled["payoutB"], settled["cooperative"]) == (
        2 * ETHER + ETHER // 2,
        3 * ETHER + ETHER // 2,
        True,
    )
    assert chain.balance(wallet.address) == 6 * ETHER + 2 * ETHER + ETHER // 2
    assert chain.balance(bob.address) == before_bob + 3 * ETHER + ETHER // 2
    assert chain.balance(carol.address) == before_carol - tx_fee(receipt)  # the owner pays the gas only
    assert contract.get_channel(cid).status == STATUS_NONE


def test_a_wallet_that_closes_through_the_sdk_with_a_stale_state_is_challenged_by_bob_and_settled_exactly(
    chain, contract, wallet, bob, watchtower
):
    params, _ = contract.open_channel(wallet, bob.address, 5 * ETHER)
    cid = contract.channel_id(params)
    a, b = channels(contract, params, wallet, bob)
    stale = pay(a, b, ETHER)
    newest = pay(a, b, 2 * ETHER)
    receipt = contract.close(wallet, params, stale)
    (closed,) = tx_events(contract, receipt, "ChannelClosed")
    assert (closed["closer"], closed["nonce"]) == (wallet.address, 1)
    onchain = contract.get_channel(cid)
    assert (onchain.status, onchain.closed_by, onchain.penalized) == (STATUS_CLOSING, "A", False)
    before_bob = chain.balance(bob.address)
    challenge = contract.challenge(bob, params, newest)
    assert contract.recorded_state(cid) == RecordedState(
        2, 2 * ETHER, 3 * ETHER, onchain.deadline, 5 * ETHER, 0, record_salt(contract, challenge), closer_nonce=1
    )
    chain.time_travel(PERIOD + 1)
    contract.settle(watchtower, params)
    assert chain.balance(wallet.address) == 5 * ETHER + 2 * ETHER
    assert chain.balance(bob.address) == before_bob + 3 * ETHER - tx_fee(challenge)
    assert contract.get_channel(cid).status == STATUS_NONE


def test_a_revert_inside_the_wallets_call_is_raised_as_the_contracts_named_error_and_nothing_changes(
    chain, contract, wallet, alice, bob
):
    with pytest.raises(NothingToClaim) as e:
        contract.claim(wallet)
    assert e.value == NothingToClaim(wallet.address, ETH)  # the wallet is the claimant (msg.sender)

    params, _ = contract.open_channel(wallet, bob.address, 5 * ETHER)
    cid = contract.channel_id(params)
    a, b = channels(contract, params, wallet, bob)
    state = pay(a, b, ETHER).state
    forged = SignedState(state, a.latest.sig_a, sign_state(contract.domain, state, alice.key))
    before = contract.get_channel(cid), chain.balance(wallet.address), chain.balance(contract.address)
    with pytest.raises(InvalidSignature) as e2:
        contract.close(wallet, params, forged, gas=1_000_000)  # mined and reverted: found by the replay
    assert e2.value == InvalidSignature(bob.address, alice.address)
    with pytest.raises(InvalidSignature) as e3:
        contract.close(wallet, params, forged)  # refused by the gas estimate
    assert e3.value == InvalidSignature(bob.address, alice.address)
    assert (contract.get_channel(cid), chain.balance(wallet.address), chain.balance(contract.address)) == before
    assert before[0].status == STATUS_OPEN


def test_a_wallet_driven_by_a_key_that_is_not_its_owner_is_refused_and_nothing_changes(
    chain, contract, wallet, alice, bob
):
    impostor = WalletAccount(wallet.address, alice)
    before = chain.balance(wallet.address), chain.balance(contract.address)
    for gas in (None, 1_000_000):  # refused by the estimate; mined, reverted and replayed
        with pytest.raises(NotWalletOwner) as e:
            contract.open_channel(impostor, bob.address, ETHER, gas=gas)
        assert e.value == NotWalletOwner(wallet.address, alice.address)
        assert isinstance(e.value, TransactionFailed)
    assert (chain.balance(wallet.address), chain.balance(contract.address)) == before
    assert contract.owed(wallet.address) == 0


def test_a_wallet_approves_a_token_and_runs_a_token_channel_through_the_sdk(chain, contract, token, wallet, bob):
    send_fn(chain, bob, token.functions.mint(wallet.address, 100 * ETHER))
    erc20 = Token(chain, token.address)
    assert ensure_allowance(erc20, wallet, contract.address, 30 * ETHER) is not None  # through the wallet
    assert erc20.allowance(wallet.address, contract.address) == 30 * ETHER
    assert ensure_allowance(erc20, wallet, contract.address, 30 * ETHER) is None  # already enough
    params, _ = contract.open_channel(wallet, bob.address, 30 * ETHER, asset=token.address)
    a, b = channels(contract, params, wallet, bob)
    pay(a, b, 12 * ETHER)
    bob_before = erc20.balance_of(bob.address)
    contract.cooperative_close(wallet, params, agree_final(a, b))
    assert erc20.balance_of(wallet.address) == 100 * ETHER - 12 * ETHER
    assert erc20.balance_of(bob.address) == bob_before + 12 * ETHER
    assert chain.balance(wallet.address) == 10 * ETHER  # no ETH moved


@pytest.mark.parametrize(
    ("mode", "accepted"),
    [(0, False), (1, False), (2, False), (3, True)],
    ids=["garbage", "reverts", "burns-gas", "any"],
)
def test_accepts_signature_answers_as_the_contract_would_within_its_gas_even_for_a_hostile_wallet(
    chain, deployer, artifacts, mode, accepted
):
    hostile = deploy_test_contract(chain, deployer, artifacts["HostileWallet1271"], mode)
    digest = b"\x42" * 32
    assert accepts_signature(chain.w3, hostile.address, digest, sign_digest(digest, deployer.key)) is accepted


def test_check_wallet_owner_accepts_the_owner_and_refuses_another_key_a_key_as_wallet_or_a_wallet_without_execute(
    chain, deployer, artifacts, wallet, carol, bob
):
    digest = b"\x42" * 32
    assert accepts_signature(chain.w3, wallet.address, digest, sign_digest(digest, carol.key))
    assert not accepts_signature(chain.w3, wallet.address, digest, sign_digest(digest, bob.key))
    check_wallet_owner(chain.w3, wallet)
    with pytest.raises(WalletRefusesSigner) as refused:
        check_wallet_owner(chain.w3, WalletAccount(wallet.address, bob))
    assert (refused.value.wallet, refused.value.signer) == (wallet.address, bob.address)
    with pytest.raises(NotAWallet) as no_code:
        check_wallet_owner(chain.w3, WalletAccount(bob.address, carol))
    assert no_code.value.address == bob.address
    anything = deploy_test_contract(chain, deployer, artifacts["HostileWallet1271"], 3)  # accepts, has no execute
    with pytest.raises(NotWalletOwner) as not_owner:
        check_wallet_owner(chain.w3, WalletAccount(anything.address, carol))
    assert not_owner.value == NotWalletOwner(anything.address, carol.address)
