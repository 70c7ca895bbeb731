"""The tower's push: signing, checking, parsing, and which push replaces the held one (no sockets, no chain)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from paychan.exceptions import InvalidSignature, LocksMismatch, MalformedMessage
from paychan.signers import JsonRpcSigner, LocalKeySigner
from paychan.signing import message_digest, recover_digest_signer, typed_data
from paychan.state import Lock, SignedState, hashlock
from paychan.tower.protocol import (
    MAX_PUSHES_PER_REQUEST,
    NotAParticipant,
    OtherChannel,
    StalePush,
    UselessSecret,
    WrongPushSigner,
    accept,
    parse_push,
    parse_pushes,
    sign_push,
    verify_push,
)
from tests.tower.conftest import (
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    CID,
    DOMAIN,
    KEY_A,
    KEY_B,
    KEY_C,
    PARAMS,
    both_signed,
    push_by,
    revocation_by,
    state_of,
)

SECRET = os.urandom(32)
LOCK_TO_B = Lock("A", 10**15, 2_000_000_000, hashlock(SECRET))


def test_the_push_digest_is_the_eip712_digest_eth_account_computes_and_a_wallet_signs_the_same() -> None:
    push = push_by(KEY_B, 3, 3 * 10**17, locks=(LOCK_TO_B,), revoked_below=3, secrets=(SECRET,), settle=True)
    message = push.message()
    encoded = encode_typed_data(full_message=typed_data(DOMAIN, message))
    assert encoded.header == DOMAIN.separator
    signed = Account.sign_typed_data(KEY_B, full_message=typed_data(DOMAIN, message))
    assert bytes(signed.message_hash) == message_digest(DOMAIN, message)
    wallet_safe = typed_data(DOMAIN, message, wallet_safe=True)
    assert wallet_safe["message"]["nonce"] == "3" and wallet_safe["message"]["settle"] is True
    assert wallet_safe["primaryType"] == "TowerPush"
    assert recover_digest_signer(message_digest(DOMAIN, message), push.signature) == ADDRESS_B


def test_a_push_signed_by_a_participant_is_verified_and_tells_its_role() -> None:
    push = push_by(KEY_B, 3, 3 * 10**17, locks=(LOCK_TO_B,), revoked_below=3, secrets=(SECRET,))
    assert verify_push(push, DOMAIN, PARAMS) == "B"
    assert verify_push(push_by(KEY_A, 2, 10**17, revoked_below=2), DOMAIN, PARAMS) == "A"


def test_a_push_signed_by_someone_else_than_its_client_is_refused_as_forged() -> None:
    honest = push_by(KEY_B, 3, 3 * 10**17)
    forged = dataclasses.replace(push_by(KEY_C, 3, 3 * 10**17), client=ADDRESS_B)
    with pytest.raises(WrongPushSigner) as refused:
        verify_push(forged, DOMAIN, PARAMS)
    assert (refused.value.client, refused.value.recovered) == (ADDRESS_B, ADDRESS_C)
    tampered = dataclasses.replace(honest, settle=True)  # the signature covers the settle flag
    with pytest.raises(WrongPushSigner):
        verify_push(tampered, DOMAIN, PARAMS)


def test_a_push_from_an_outsider_is_refused_even_if_it_signed_it() -> None:
    with pytest.raises(NotAParticipant) as refused:
        verify_push(push_by(KEY_C, 3, 3 * 10**17, counterparty_key=KEY_A), DOMAIN, PARAMS)
    assert (refused.value.channel_id, refused.value.client) == (CID, ADDRESS_C)


def test_a_state_of_another_channel_is_refused() -> None:
    other = bytes(32)
    signed = both_signed(state_of(3, 3 * 10**17, cid=other))
    push = sign_push(LocalKeySigner(KEY_B), DOMAIN, signed)
    moved = dataclasses.replace(push, channel_id=CID)
    with pytest.raises(OtherChannel) as refused:
        verify_push(moved, DOMAIN, PARAMS)
    assert (refused.value.channel_id, refused.value.state_channel) == (CID, other)


def test_a_state_not_signed_by_both_participants_is_refused() -> None:
    state = state_of(3, 3 * 10**17)
    half = both_signed(state, key_a=KEY_C)  # "A's" signature is C's
    push = sign_push(LocalKeySigner(KEY_B), DOMAIN, half)
    with pytest.raises(InvalidSignature) as refused:
        verify_push(push, DOMAIN, PARAMS)
    assert refused.value.values == {"expected": ADDRESS_A, "recovered": ADDRESS_C}


def test_a_revocation_is_taken_only_from_the_counterparty() -> None:
    signed = both_signed(state_of(3, 3 * 10**17))
    own = revocation_by(KEY_B, 3)  # B's own revocation is worth nothing to B
    push = sign_push(LocalKeySigner(KEY_B), DOMAIN, signed, (), own)
    with pytest.raises(InvalidSignature) as refused:
        verify_push(push, DOMAIN, PARAMS)
    assert refused.value.values == {"expected": ADDRESS_A, "recovered": ADDRESS_B}


def test_a_secret_of_no_incoming_lock_and_a_lock_list_off_the_root_are_refused() -> None:
    with pytest.raises(UselessSecret) as useless:
        verify_push(push_by(KEY_B, 3, 10**17, secrets=(SECRET,)), DOMAIN, PARAMS)
    assert useless.value.hashlock == hashlock(SECRET)
    with pytest.raises(UselessSecret):  # A's lock pays B: its secret is of no use to A
        verify_push(push_by(KEY_A, 3, 10**17, locks=(LOCK_TO_B,), secrets=(SECRET,)), DOMAIN, PARAMS)
    push = push_by(KEY_B, 3, 10**17, locks=(LOCK_TO_B,))
    with pytest.raises(LocksMismatch):
        verify_push(dataclasses.replace(push, locks=()), DOMAIN, PARAMS)


def test_an_older_push_is_refused_with_both_nonces_and_a_newer_one_replaces_it() -> None:
    held = push_by(KEY_B, 5, 5 * 10**17, revoked_below=5)
    with pytest.raises(StalePush) as refused:
        accept(held, push_by(KEY_B, 4, 4 * 10**17, revoked_below=4))
    assert (refused.value.channel_id, refused.value.pushed_nonce, refused.value.held_nonce) == (CID, 4, 5)
    with pytest.raises(StalePush):
        accept(held, push_by(KEY_B, 5, 5 * 10**17, revoked_below=5))  # the same again adds nothing
    newer = accept(held, push_by(KEY_B, 6, 6 * 10**17))
    assert newer.nonce == 6 and newer.revoked_below == 5  # the higher revocation is kept


def test_a_push_of_the_same_nonce_adding_a_secret_is_merged() -> None:
    held = push_by(KEY_B, 5, 10**17, locks=(LOCK_TO_B,), revoked_below=5)
    merged = accept(held, push_by(KEY_B, 5, 10**17, locks=(LOCK_TO_B,), secrets=(SECRET,)))
    assert merged.secrets == (SECRET,) and merged.revoked_below == 5


def test_a_push_survives_its_json_form_and_malformed_ones_are_refused() -> None:
    push = push_by(KEY_B, 3, 3 * 10**17, locks=(LOCK_TO_B,), revoked_below=3, secrets=(SECRET,), settle=True)
    assert parse_push(json.loads(json.dumps(push.to_json()))) == push
    with pytest.raises(MalformedMessage):
        parse_push({**push.to_json(), "extra": 1})
    with pytest.raises(MalformedMessage):
        parse_push({**push.to_json(), "locks": [LOCK_TO_B.to_json()] * 17})
    with pytest.raises(MalformedMessage):
        parse_push({**push.to_json(), "signed": SignedState(push.signed.state, push.signed.sig_a).to_json()})
    with pytest.raises(MalformedMessage):
        parse_pushes({"pushes": [push.to_json()] * (MAX_PUSHES_PER_REQUEST + 1)})


def test_a_wallet_signer_signs_a_push_through_eth_sign_typed_data(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = JsonRpcSigner("http://127.0.0.1:1", ADDRESS_B)

    def wallet(method: str, params: list[object]) -> str:
        assert method == "eth_signTypedData_v4" and params[0] == ADDRESS_B
        signed = Account.sign_typed_data(KEY_B, full_message=json.loads(str(params[1])))
        return "0x" + bytes(signed.signature).hex()

    monkeypatch.setattr(signer, "request", wallet)
    push = sign_push(signer, DOMAIN, both_signed(state_of(2, 2 * 10**17)))
    assert verify_push(push, DOMAIN, PARAMS) == "B"


def test_a_fetch_is_taken_only_fresh_and_signed_by_the_client_it_names() -> None:
    from paychan.tower.protocol import FETCH_WINDOW, StaleFetch, sign_fetch, verify_fetch

    request = sign_fetch(LocalKeySigner(KEY_B), DOMAIN, CID, 1_000_000)
    assert verify_fetch(request, DOMAIN, 1_000_000 + FETCH_WINDOW) == (CID, ADDRESS_B)
    with pytest.raises(StaleFetch) as stale:
        verify_fetch(request, DOMAIN, 1_000_000 + FETCH_WINDOW + 1)
    assert (stale.value.issued_at, stale.value.now) == (1_000_000, 1_000_000 + FETCH_WINDOW + 1)
    with pytest.raises(WrongPushSigner) as forged:  # C asks for B's data
        verify_fetch(
            {**sign_fetch(LocalKeySigner(KEY_C), DOMAIN, CID, 1_000_000), "client": ADDRESS_B}, DOMAIN, 1_000_000
        )
    assert (forged.value.client, forged.value.recovered) == (ADDRESS_B, ADDRESS_C)
    with pytest.raises(MalformedMessage):
        verify_fetch({**request, "issuedAt": "1000000"}, DOMAIN, 1_000_000)
