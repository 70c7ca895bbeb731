"""``RemoteSigning``: a node's signer that is not local. A dry run hands out placeholders that no store
transaction can commit; the signatures are then made on the signer's thread and the same block commits with
them. A signer found down refuses at once (without being asked) until a probe finds it back."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from paychan.node.remote_signer import PLACEHOLDER, RemoteSigning, SignatureNeeded
from paychan.node.store import Store
from paychan.signers import LocalKeySigner, Signer, SignerUnavailable, TypedMessage
from paychan.signing import Domain, sign_state
from paychan.state import Signature, SignedState

from .conftest import ADDRESS_A, DOMAIN, KEY_A, channel_record, make_state


class KeyElsewhere(Signer):
    """Anvil's key A behind a 'remote' signer: not local; records the thread each signature is made on;
    ``down`` makes it unreachable."""

    def __init__(self) -> None:
        self.key = LocalKeySigner(KEY_A)
        self.threads: list[str] = []
        self.down = False

    @property
    def address(self) -> str:
        return self.key.address

    def check_available(self) -> None:
        if self.down:
            raise SignerUnavailable("test://signer", "switched off")

    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> Signature:
        self.threads.append(threading.current_thread().name)
        self.check_available()
        return self.key.sign_typed(domain, message)


def record_signed(store: Store, signer: Signer, nonce: int) -> SignedState:
    """Records state ``nonce`` with A's signature in one transaction (what the node's operations do)."""
    state = make_state(nonce, 10**18 - nonce, nonce)
    with store.transaction():
        signed = SignedState(state).with_signature("A", signer.sign_typed(DOMAIN, state))
        store.record_intent(signed, "A")
    return signed


def test_a_dry_run_commits_nothing_and_the_run_after_the_signatures_are_made_commits_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path / "node.db")
        store.add_channel(channel_record(role="A"))
        inner = KeyElsewhere()
        remote = RemoteSigning(inner)
        store.before_commit.append(remote.check_commit)
        try:
            with pytest.raises(SignatureNeeded) as needed, remote.collecting():
                record_signed(store, remote, 1)
            assert [message for _, message in needed.value.messages] == [make_state(1, 10**18 - 1, 1)]
            assert store.states(channel_record().channel_id) == [] and inner.threads == []  # nothing, nobody asked

            await remote.prepare(needed.value.messages)
            assert inner.threads == ["paychan-signer_0"]  # made on the signer's thread, not the event loop's
            with remote.collecting():  # every signature made: the block runs and commits
                signed = record_signed(store, remote, 1)
            (row,) = store.states(channel_record().channel_id)
            assert row.signed == signed and signed.sig_a == sign_state(DOMAIN, signed.state, KEY_A) != PLACEHOLDER
            assert inner.threads == ["paychan-signer_0"]  # not asked again
        finally:
            remote.close()
            store.close()

    asyncio.run(scenario())


def test_a_signer_found_down_is_refused_at_once_without_being_asked_until_a_probe_finds_it_back() -> None:
    async def scenario() -> None:
        inner = KeyElsewhere()
        remote = RemoteSigning(inner)
        message = [(DOMAIN, make_state(1, 1, 0))]
        try:
            inner.down = True
            with pytest.raises(SignerUnavailable):
                await remote.prepare(message)
            assert (remote.available, remote.reason, len(inner.threads)) == (False, "switched off", 1)
            with pytest.raises(SignerUnavailable) as refused:
                await remote.prepare(message)
            assert (refused.value.url, refused.value.reason, len(inner.threads)) == (repr(inner), "switched off", 1)
            assert await remote.probe() is False
            assert remote.status() == {
                "signer": f"KeyElsewhere({ADDRESS_A})",
                "signerAvailable": False,
                "signerProblem": "switched off",
            }
            inner.down = False
            assert await remote.probe() is True
            await remote.prepare(message)
            assert (remote.available, remote.reason, len(inner.threads)) == (True, None, 2)
        finally:
            remote.close()

    asyncio.run(scenario())
