"""Signers: a local key, a keystore, a JSON-RPC wallet (anvil's unlocked dev accounts), an Ape account and an
ERC-1271 wallet's owner give the same digest and the same canonical signature for the same State,
Revocation and Withdrawal (integers above 2**53 included); a signer whose signature is by another key, or is
no signature, is refused with a named exception."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils.address import to_checksum_address

from paychan.channel import Channel, agree_final, pay
from paychan.devnet import Devnet, dev_accounts, free_port, start_devnet
from paychan.exceptions import InvalidSignature
from paychan.signers import (
    ApeSigner,
    Erc1271Signer,
    JsonRpcSigner,
    KeystoreMismatch,
    KeystoreSigner,
    LocalKeySigner,
    MalformedSignerReply,
    Signer,
    SignerRefused,
    SignerUnavailable,
    WrongPassword,
    WrongSigner,
    as_signer,
    canonical_signature,
)
from paychan.signing import (
    HALF_N,
    SECP256K1_N,
    Domain,
    message_digest,
    recover_digest_signer,
    sign_message,
    typed_data,
)
from paychan.state import ETH, ChannelParams, ChannelState, Revocation, Signature, Withdrawal, hashlock

from .fake_wallet import FakeWallet, running_wallet

ABOVE_2_53 = 2**53 + 1
DOMAIN = Domain(31337, "0x" + "5f" * 20)
STATE = ChannelState(
    b"\x07" * 32,
    2**48 - 1,
    2**200 + 3,
    ABOVE_2_53,
    b"\x5a" * 32,
    False,
    deposit_a=2**201,
    deposit_b=2**60,
    locked_a=2**64 + 1,
    locked_b=9,
    withdrawals=65_535,
)
REVOCATION = Revocation(b"\x07" * 32, 2**48 - 2)
WITHDRAWAL = Withdrawal(b"\x07" * 32, 10**18 + ABOVE_2_53, 2**116 - 1, 2**201, 2**116, 12, 2**40 - 1)
MESSAGES = {"state": STATE, "revocation": REVOCATION, "withdrawal": WITHDRAWAL}
ACCOUNTS = dev_accounts(3)  # anvil's funded accounts (the dev mnemonic): their keys are public
OWNER, OTHER, WALLET_OWNER = ACCOUNTS
PASSWORD = "correct horse battery staple"


def keystore_of(key: bytes, password: str = PASSWORD) -> dict[str, Any]:
    """A Web3 Secret Storage keystore of ``key`` (pbkdf2 with few rounds: a fast test)."""
    keystore: dict[str, Any] = Account.encrypt(key, password, kdf="pbkdf2", iterations=1024)
    return keystore


def high_s_twin(signature: Signature) -> bytes:
    """``signature`` as the 65-byte high-s signature of the same key (``s' = n - s``, parity flipped)."""
    r, s, parity = signature.r, signature.s, signature.v - 27
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([27 + (parity ^ 1)])


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    node = start_devnet()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def ape_account() -> Any:
    """An Ape test account derived by Ape from anvil's dev mnemonic (Ape imported here only: it is slow)."""
    from ape.utils.testing import generate_dev_accounts
    from ape_test.accounts import TestAccount

    from paychan.chain import ANVIL_MNEMONIC

    (generated,) = generate_dev_accounts(ANVIL_MNEMONIC, 1)
    return TestAccount(index=0, address_str=generated.address, private_key=generated.private_key)


@pytest.fixture
def fake_wallet() -> Iterator[FakeWallet]:
    yield from running_wallet()


def signature_reply(signature: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda request: {"result": "0x" + signature.hex()}


def signed_by(key: bytes, message: Any) -> bytes:
    """``key``'s 65-byte signature of ``message`` in ``DOMAIN``."""
    signature = sign_message(DOMAIN, message, key)
    return signature.r + signature.s.to_bytes(32, "big") + bytes([signature.v])


# --- the same digest and signature from every signer ------------------------------------------------


@pytest.mark.anvil
@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_signer_gives_the_same_digest_and_signature_for_the_same_message(
    name: str, devnet: Devnet, ape_account: Any, tmp_path: Path
) -> None:
    message = MESSAGES[name]
    keystore_path = tmp_path / "owner.json"
    keystore_path.write_text(json.dumps(keystore_of(OWNER.key)))
    signers: dict[str, Signer] = {
        "local": LocalKeySigner(OWNER.key),
        "keystore": KeystoreSigner(keystore_path, PASSWORD),
        "json-rpc": JsonRpcSigner(devnet.url, OWNER.address),
        "ape": ApeSigner(ape_account),
    }
    expected = sign_message(DOMAIN, message, OWNER.key)
    assert {kind: signer.address for kind, signer in signers.items()} == dict.fromkeys(signers, OWNER.address)
    assert {kind: signer.sign_typed(DOMAIN, message) for kind, signer in signers.items()} == dict.fromkeys(
        signers, expected
    )
    digest = message_digest(DOMAIN, message)
    wallet_json = json.loads(json.dumps(typed_data(DOMAIN, message, wallet_safe=True)))
    assert _hash_eip191_message(ApeSigner.signable(DOMAIN, message)) == digest
    assert _hash_eip191_message(encode_typed_data(full_message=wallet_json)) == digest
    assert recover_digest_signer(digest, expected) == OWNER.address
    assert expected.s <= HALF_N


def test_the_json_rpc_signer_sends_the_wallet_safe_typed_data_with_integers_above_2_53_as_decimal_strings(
    fake_wallet: FakeWallet,
) -> None:
    fake_wallet.reply = signature_reply(signed_by(OWNER.key, STATE))
    assert JsonRpcSigner(fake_wallet.url, OWNER.address).sign_typed(DOMAIN, STATE) == sign_message(
        DOMAIN, STATE, OWNER.key
    )
    (request,) = fake_wallet.requests
    assert request["method"] == "eth_signTypedData_v4"
    address, payload = request["params"]
    assert address == OWNER.address
    sent = json.loads(payload)
    assert sent["domain"]["chainId"] == "31337"
    assert sent["message"]["balanceA"] == str(2**200 + 3)
    assert sent["message"]["balanceB"] == "9007199254740993"
    assert sent["message"]["nonce"] == str(2**48 - 1)
    assert sent["message"]["channelId"] == "0x" + "07" * 32


@pytest.mark.parametrize("name", list(MESSAGES))
def test_an_erc1271_wallet_is_the_address_and_its_owner_key_signs_the_same_digest(name: str) -> None:
    message = MESSAGES[name]
    wallet = "0x" + "c0" * 20
    signer = Erc1271Signer(wallet, LocalKeySigner(WALLET_OWNER.key))
    signature = signer.sign_typed(DOMAIN, message)
    assert signer.address == "0xC0C0c0c0C0C0c0c0c0C0c0C0C0C0C0C0C0C0c0c0"
    assert signer.signing_address == WALLET_OWNER.address
    assert signature == sign_message(DOMAIN, message, WALLET_OWNER.key)
    assert recover_digest_signer(message_digest(DOMAIN, message), signature) == WALLET_OWNER.address


@pytest.mark.anvil
def test_an_erc1271_wallet_whose_owner_is_a_json_rpc_account_signs_like_the_owner_key(devnet: Devnet) -> None:
    signer = Erc1271Signer("0x" + "c0" * 20, JsonRpcSigner(devnet.url, WALLET_OWNER.address))
    assert signer.sign_typed(DOMAIN, WITHDRAWAL) == sign_message(DOMAIN, WITHDRAWAL, WALLET_OWNER.key)


# --- a signature by another key, or no signature: refused -------------------------------------------


@pytest.mark.parametrize("name", list(MESSAGES))
def test_a_json_rpc_endpoint_returning_another_keys_signature_is_refused_with_wrong_signer(
    name: str, fake_wallet: FakeWallet
) -> None:
    message = MESSAGES[name]
    fake_wallet.reply = signature_reply(signed_by(OTHER.key, message))
    with pytest.raises(WrongSigner) as raised:
        JsonRpcSigner(fake_wallet.url, OWNER.address).sign_typed(DOMAIN, message)
    assert raised.value == WrongSigner(
        expected=OWNER.address, recovered=OTHER.address, digest=message_digest(DOMAIN, message)
    )


@pytest.mark.anvil
def test_anvil_signing_for_another_unlocked_account_than_the_signer_names_is_refused(devnet: Devnet) -> None:
    class Misdirected(JsonRpcSigner):
        """Asks the node to sign as OTHER while claiming to be OWNER (a wallet that picked another account)."""

        def request(self, method: str, params: list[Any]) -> Any:
            return super().request(method, [OTHER.address, params[1]])

    with pytest.raises(WrongSigner) as raised:
        Misdirected(devnet.url, OWNER.address).sign_typed(DOMAIN, REVOCATION)
    assert raised.value == WrongSigner(OWNER.address, OTHER.address, message_digest(DOMAIN, REVOCATION))


def test_a_signature_of_another_message_is_refused_with_wrong_signer(fake_wallet: FakeWallet) -> None:
    other_state = ChannelState(STATE.channel_id, STATE.nonce - 1, 1, 2, deposit_a=3, deposit_b=0)
    fake_wallet.reply = signature_reply(signed_by(OWNER.key, other_state))
    with pytest.raises(WrongSigner) as raised:
        JsonRpcSigner(fake_wallet.url, OWNER.address).sign_typed(DOMAIN, STATE)
    assert raised.value.expected == OWNER.address
    assert raised.value.recovered not in (OWNER.address, OTHER.address)
    assert raised.value.digest == message_digest(DOMAIN, STATE)


def test_a_high_s_signature_from_a_wallet_is_returned_as_its_low_s_twin(fake_wallet: FakeWallet) -> None:
    canonical = sign_message(DOMAIN, WITHDRAWAL, OWNER.key)
    fake_wallet.reply = signature_reply(high_s_twin(canonical))
    signature = JsonRpcSigner(fake_wallet.url, OWNER.address).sign_typed(DOMAIN, WITHDRAWAL)
    assert signature == canonical
    assert signature.s <= HALF_N


V37 = bytes.fromhex("11" * 64 + "25")  # v = 37: an EIP-155 transaction v, not a message signature's
R_ZERO = bytes(32) + bytes.fromhex("11" * 32 + "1b")


@pytest.mark.parametrize(
    ("result", "reported"),
    [
        (None, None),
        ("0x1234", "0x1234"),
        ("not hex at all", "not hex at all"),
        ("0x" + V37.hex(), V37),
        ("0x" + R_ZERO.hex(), R_ZERO),
    ],
    ids=["null", "too-short", "not-hex", "v-37", "r-zero"],
)
def test_a_json_rpc_reply_that_is_no_signature_raises_malformed_signer_reply(
    result: str | None, reported: object, fake_wallet: FakeWallet
) -> None:
    fake_wallet.reply = lambda request: {"result": result}
    with pytest.raises(MalformedSignerReply) as raised:
        JsonRpcSigner(fake_wallet.url, OWNER.address).sign_typed(DOMAIN, STATE)
    assert raised.value.reply == reported


def test_a_wallet_whose_user_rejects_the_request_raises_signer_refused_with_its_code(fake_wallet: FakeWallet) -> None:
    fake_wallet.reply = lambda request: {"error": {"code": 4001, "message": "User rejected the request."}}
    with pytest.raises(SignerRefused) as raised:
        JsonRpcSigner(fake_wallet.url, OWNER.address).sign_typed(DOMAIN, STATE)
    assert (raised.value.code, raised.value.message) == (4001, "User rejected the request.")


def test_an_endpoint_nobody_listens_on_raises_signer_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SignerUnavailable) as raised:
        JsonRpcSigner(url, OWNER.address, timeout=2).sign_typed(DOMAIN, STATE)
    assert raised.value.url == url


def test_an_erc1271_signer_whose_owner_signs_with_another_key_is_refused(fake_wallet: FakeWallet) -> None:
    fake_wallet.reply = signature_reply(signed_by(OTHER.key, STATE))
    signer = Erc1271Signer("0x" + "c0" * 20, JsonRpcSigner(fake_wallet.url, WALLET_OWNER.address))
    with pytest.raises(WrongSigner) as raised:
        signer.sign_typed(DOMAIN, STATE)
    assert raised.value == WrongSigner(WALLET_OWNER.address, OTHER.address, message_digest(DOMAIN, STATE))


class ScriptedApeAccount:
    """Duck-typed like an Ape account: an address and ``sign_message`` returning what the test scripts."""

    def __init__(self, address: str, signed: Any) -> None:
        self.address, self.signed, self.messages = address, signed, []

    def sign_message(self, msg: Any) -> Any:
        self.messages.append(msg)
        return self.signed


def test_an_ape_account_that_declines_raises_signer_refused() -> None:
    with pytest.raises(SignerRefused) as raised:
        ApeSigner(ScriptedApeAccount(OWNER.address, None)).sign_typed(DOMAIN, REVOCATION)
    assert raised.value.code is None


def test_an_ape_account_signing_with_another_key_raises_wrong_signer(ape_account: Any) -> None:
    from ape.types.signatures import MessageSignature

    other = Account.sign_message(ApeSigner.signable(DOMAIN, STATE), OTHER.key)
    signed = MessageSignature(v=other.v, r=other.r.to_bytes(32, "big"), s=other.s.to_bytes(32, "big"))
    account = ScriptedApeAccount(str(ape_account.address), signed)
    with pytest.raises(WrongSigner) as raised:
        ApeSigner(account).sign_typed(DOMAIN, STATE)
    assert raised.value == WrongSigner(OWNER.address, OTHER.address, message_digest(DOMAIN, STATE))
    (message,) = account.messages
    assert (message.version, message.header, message.body) == (
        b"\x01",
        DOMAIN.separator,
        ApeSigner.signable(DOMAIN, STATE).body,
    )


# --- keystores ---------------------------------------------------------------------------------------


def test_a_keystore_decrypts_from_its_json_text_and_signs_like_its_key() -> None:
    signer = KeystoreSigner(json.dumps(keystore_of(OTHER.key)), PASSWORD)
    assert signer.address == OTHER.address
    assert signer.sign_typed(DOMAIN, REVOCATION) == sign_message(DOMAIN, REVOCATION, OTHER.key)


def test_a_keystore_with_the_wrong_password_raises_wrong_password() -> None:
    with pytest.raises(WrongPassword):
        KeystoreSigner(keystore_of(OWNER.key), "not the password")


def test_a_keystore_naming_another_address_than_its_key_raises_keystore_mismatch() -> None:
    keystore = {**keystore_of(OWNER.key), "address": OTHER.address[2:].lower()}
    with pytest.raises(KeystoreMismatch) as raised:
        KeystoreSigner(keystore, PASSWORD)
    assert (raised.value.stated, raised.value.decrypted) == (OTHER.address[2:].lower(), OWNER.address)


# --- canonical form ----------------------------------------------------------------------------------


@pytest.mark.parametrize("v_offset", [0, 27], ids=["v-0-1", "v-27-28"])
def test_canonical_signature_takes_65_bytes_with_either_v_and_either_s_to_the_compact_low_s_form(
    v_offset: int,
) -> None:
    canonical = sign_message(DOMAIN, STATE, OWNER.key)
    low = canonical.r + canonical.s.to_bytes(32, "big") + bytes([canonical.v - 27 + v_offset])
    high = high_s_twin(canonical)
    high = high[:64] + bytes([high[64] - 27 + v_offset])
    assert canonical_signature(low) == canonical_signature(high) == canonical
    assert canonical_signature(canonical.to_bytes()) == canonical
    assert canonical_signature(canonical) == canonical


def test_as_signer_turns_a_raw_key_or_a_local_account_into_a_local_key_signer_and_keeps_a_signer() -> None:
    signer = LocalKeySigner(OWNER.key)
    assert as_signer(signer) is signer
    for key in (OWNER.key, bytes(OWNER.key), OWNER.key.hex(), OWNER):
        converted = as_signer(key)
        assert isinstance(converted, LocalKeySigner) and converted.address == OWNER.address
    with pytest.raises(TypeError):
        as_signer(12)


# --- a Channel signing through a signer ----------------------------------------------------------------

NOW = 1_000_000
CHANNEL_DEPOSITS = (3 * 2**60, 2**60)  # above 2**53 wei on both sides


def run_channel(signer_a: Any, signer_b: Any) -> list[Any]:
    """Payments above 2**53, a lock, a revocation and a withdrawal between two ``Channel`` objects signing
    with ``signer_a``/``signer_b``; returns every signed message, in order."""
    params = ChannelParams(OWNER.address, OTHER.address, ETH, 3600, 7)
    a = Channel(params, DOMAIN, signer_a, deposits=CHANNEL_DEPOSITS)
    b = Channel(params, DOMAIN, signer_b, deposits=CHANNEL_DEPOSITS)
    signed: list[Any] = [pay(a, b, ABOVE_2_53), pay(b, a, 2**54 + 5)]
    proposal, lock = a.propose_lock(2**53 + 7, hashlock(b"\x42" * 32), NOW + 1800, NOW)
    signed.append(b.receive_proposal(proposal, lock=lock, now=NOW))
    a.receive_countersignature(signed[-1])
    signed.append(b.receive_proposal(a.propose_settle_lock(b"\x42" * 32), settle=b"\x42" * 32))
    a.receive_countersignature(signed[-1])
    signed += [a.sign_revocation(), b.sign_revocation()]
    withdrawal, signature, proposal = a.propose_withdrawal(2**60, NOW + 600)
    b_signature, state = b.receive_withdrawal(withdrawal, signature, proposal, NOW)
    signed += [withdrawal, signature, b_signature, a.receive_withdrawal_countersignature(b_signature, state)]
    assert a.latest == b.latest and a.latest.is_complete
    return signed


@pytest.mark.anvil
def test_a_channel_signing_through_a_json_rpc_wallet_and_a_keystore_signs_what_raw_keys_sign(
    devnet: Devnet,
) -> None:
    expected = run_channel(OWNER.key, OTHER)  # a raw key and a LocalAccount, as before signers
    rpc_a = JsonRpcSigner(devnet.url, OWNER.address)
    assert run_channel(rpc_a, KeystoreSigner(keystore_of(OTHER.key), PASSWORD)) == expected
    assert run_channel(LocalKeySigner(OWNER.key), JsonRpcSigner(devnet.url, OTHER.address)) == expected


def test_a_channel_signing_through_an_ape_account_signs_what_its_raw_key_signs(ape_account: Any) -> None:
    assert run_channel(ApeSigner(ape_account), OTHER.key) == run_channel(OWNER.key, OTHER.key)


def test_a_channel_whose_wallet_signs_with_another_key_refuses_to_propose_and_is_unchanged(
    fake_wallet: FakeWallet,
) -> None:
    params = ChannelParams(OWNER.address, OTHER.address, ETH, 3600, 7)
    a = Channel(params, DOMAIN, JsonRpcSigner(fake_wallet.url, OWNER.address), deposits=CHANNEL_DEPOSITS)
    before = (a.latest, a.pending, a.nonce, a.balances)
    state = replace(a.latest.state, nonce=1, balance_a=CHANNEL_DEPOSITS[0] - 5, balance_b=CHANNEL_DEPOSITS[1] + 5)
    fake_wallet.reply = signature_reply(signed_by(OTHER.key, state))
    with pytest.raises(WrongSigner) as raised:
        a.propose_payment(5)
    assert raised.value == WrongSigner(OWNER.address, OTHER.address, message_digest(DOMAIN, state))
    assert (a.latest, a.pending, a.nonce, a.balances) == before


def test_a_channel_of_an_erc1271_wallet_takes_its_role_from_the_wallet_and_signs_with_the_owner_key() -> None:
    wallet = to_checksum_address("0x" + "c0" * 20)
    params = ChannelParams(wallet, OTHER.address, ETH, 3600, 7)
    a = Channel(params, DOMAIN, Erc1271Signer(wallet, LocalKeySigner(WALLET_OWNER.key)), deposits=(10, 0))
    assert (a.address, a.role) == (wallet, "A")
    proposal = a.propose_payment(4)
    assert proposal.sig_a == sign_message(DOMAIN, proposal.state, WALLET_OWNER.key)
    assert recover_digest_signer(message_digest(DOMAIN, proposal.state), proposal.sig_a) == WALLET_OWNER.address


def test_a_channel_given_a_raw_key_or_a_local_account_signs_with_an_unchecked_local_key_signer(
    fake_wallet: FakeWallet,
) -> None:
    params = ChannelParams(OWNER.address, OTHER.address, ETH, 3600, 7)
    for key in (OWNER.key, OWNER):
        channel = Channel(params, DOMAIN, key, deposits=(10, 0))
        assert isinstance(channel.signer, LocalKeySigner) and not channel.signer.check
        assert channel.address == OWNER.address
        assert channel._key == OWNER.key  # the attribute callers read before signers
    checked = LocalKeySigner(OWNER.key)
    assert Channel(params, DOMAIN, checked, deposits=(10, 0)).signer is checked and checked.check
    remote = Channel(params, DOMAIN, JsonRpcSigner(fake_wallet.url, OWNER.address), deposits=(10, 0))
    with pytest.raises(AttributeError):
        _ = remote._key


def test_the_signers_pages_example_runs_and_prints_the_lines_it_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "signers.md").read_text()
    code, printed = re.search(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", page, flags=re.S).groups()
    exec(compile(code, "docs/signers.md", "exec"), {})  # noqa: S102 - the page's own example
    assert capsys.readouterr().out == printed


def test_an_erc1271_wallets_channel_runs_off_chain_with_a_peer_that_knows_the_owner_key() -> None:
    wallet = to_checksum_address("0x" + "c0" * 20)
    params = ChannelParams(wallet, OTHER.address, ETH, 3600, 7)
    a = Channel(params, DOMAIN, Erc1271Signer(wallet, LocalKeySigner(WALLET_OWNER.key)), deposits=CHANNEL_DEPOSITS)
    b = Channel(params, DOMAIN, OTHER.key, deposits=CHANNEL_DEPOSITS, peer_signing_address=WALLET_OWNER.address)
    pay(a, b, ABOVE_2_53)
    pay(b, a, 5)
    proposal, lock = a.propose_lock(2**53 + 7, hashlock(b"\x42" * 32), NOW + 1800, NOW)
    a.receive_countersignature(b.receive_proposal(proposal, lock=lock, now=NOW))
    a.receive_countersignature(b.receive_proposal(a.propose_settle_lock(b"\x42" * 32), settle=b"\x42" * 32))
    revocation = a.sign_revocation()
    assert revocation is not None
    b.receive_revocation(*revocation)
    withdrawal, signature, proposal = a.propose_withdrawal(2**60, NOW + 600)
    b_signature, state = b.receive_withdrawal(withdrawal, signature, proposal, NOW)
    a.receive_withdrawal_countersignature(b_signature, state)
    for side in (a, b):
        side.record_withdrawal(*withdrawal.deposits_after(), 1)
    final = agree_final(a, b)
    assert a.latest == b.latest == final and final.state.is_final
    assert (final.state.balance_a, final.state.balance_b) == (
        CHANNEL_DEPOSITS[0] - ABOVE_2_53 + 5 - (2**53 + 7) - 2**60,
        CHANNEL_DEPOSITS[1] + ABOVE_2_53 - 5 + 2**53 + 7,
    )
    assert recover_digest_signer(message_digest(DOMAIN, final.state), final.sig_a) == WALLET_OWNER.address
    assert b.peer_revocation == revocation


def test_a_peer_that_checks_an_erc1271_wallets_address_by_ecrecover_refuses_its_state_unchanged() -> None:
    wallet = to_checksum_address("0x" + "c0" * 20)
    params = ChannelParams(wallet, OTHER.address, ETH, 3600, 7)
    a = Channel(params, DOMAIN, Erc1271Signer(wallet, LocalKeySigner(WALLET_OWNER.key)), deposits=(10, 0))
    b = Channel(params, DOMAIN, OTHER.key, deposits=(10, 0))
    before = (b.latest, b.pending, b.nonce, b.balances)
    with pytest.raises(InvalidSignature) as raised:
        b.receive_proposal(a.propose_payment(4))
    assert raised.value == InvalidSignature(expected=wallet, recovered=WALLET_OWNER.address)
    assert (b.latest, b.pending, b.nonce, b.balances) == before
