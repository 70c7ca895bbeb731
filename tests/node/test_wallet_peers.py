"""Which key speaks for a counterparty that is a contract wallet (``paychan.node.wallet_peers``): learnt from
one bounded chain check, kept durably, never asked again; strangers and forgers cause no chain call.

The chain check is a fake here (``FakeWallet1271``: the "wallet" A accepts the key it was given, and counts
the checks); ``tests/node/test_wallet_node.py`` runs the real one against an ``OwnedWallet1271`` on anvil."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from paychan.node.auth import (
    PARTICIPANT_HEADER,
    RateLimited,
    read_claim,
    recover_digest_signer,
    request_digest,
    sign_digest,
    sign_request,
)
from paychan.node.store import Store
from paychan.node.wallet_peers import (
    BINDING_KEY,
    REFUSED_FOR,
    WalletCheckFailed,
    WalletPeers,
    WalletSignerRefused,
)
from paychan.state import Signature

from .conftest import (
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    CID,
    DEPOSIT_A,
    DOMAIN,
    KEY_A,
    KEY_B,
    KEY_C,
    LiveNode,
    make_state,
)
from .test_hostile_peer import proposal, propose_body
from .test_peer_auth import announce_body, expect_refused, send, start_victim

DIGEST = b"\x11" * 32


class FakeWallet1271:
    """An owner-signed wallet's ``isValidSignature`` as ``WalletPeers`` asks it (the signature must recover to
    ``owner``); counts the checks. ``gate`` (if set) holds every check until it is set; ``fail``: the RPC fails."""

    def __init__(self, owner: str) -> None:
        self.owner, self.checks, self.fail = owner, 0, False
        self.gate: asyncio.Event | None = None

    async def __call__(self, wallet: str, digest: bytes, signature: Signature) -> bool:
        self.checks += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise WalletCheckFailed(wallet, "ConnectionError: the RPC is down")
        return recover_digest_signer(digest, signature) == self.owner


def signed(key: bytes) -> Signature:
    return sign_digest(key, DIGEST)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def peers(tmp_path: Path, wallet: FakeWallet1271, clock: Clock) -> tuple[WalletPeers, Store]:
    store = Store(tmp_path / "node.db")
    return WalletPeers(store, wallet, interval=60.0, clock=clock), store


def test_a_key_the_wallet_accepts_is_bound_after_one_check_kept_in_the_store_and_admitted_without_another(
    tmp_path: Path,
) -> None:
    wallet, clock = FakeWallet1271(ADDRESS_C), Clock()
    bindings, store = peers(tmp_path, wallet, clock)
    learnt: list[tuple[str, str]] = []
    bindings.on_bound.append(lambda w, k: learnt.append((w, k)))
    assert bindings.signer_of(ADDRESS_A) is None

    async def scenario() -> None:
        for _ in range(3):
            await bindings.admit(ADDRESS_A, ADDRESS_C, DIGEST, signed(KEY_C))
            clock.now += 100  # past the interval: a binding known is still never checked again

    asyncio.run(scenario())
    assert (wallet.checks, bindings.checks, learnt) == (1, 1, [(ADDRESS_A, ADDRESS_C)])
    assert bindings.signer_of(ADDRESS_A) == ADDRESS_C
    assert store.get_meta(BINDING_KEY + ADDRESS_A) == ADDRESS_C
    again = WalletPeers(store, wallet)  # a restarted node
    assert again.signer_of(ADDRESS_A) == ADDRESS_C
    asyncio.run(again.admit(ADDRESS_A, ADDRESS_C, DIGEST, signed(KEY_C)))
    assert wallet.checks == 1
    store.close()


def test_a_forgers_key_is_refused_after_one_check_then_without_one_and_other_keys_cost_at_most_one_check_a_minute(
    tmp_path: Path,
) -> None:
    wallet, clock = FakeWallet1271(ADDRESS_C), Clock()
    bindings, store = peers(tmp_path, wallet, clock)

    async def scenario() -> None:
        with pytest.raises(WalletSignerRefused) as refused:
            await bindings.admit(ADDRESS_A, ADDRESS_B, DIGEST, signed(KEY_B))  # B's key claims the wallet A
        assert (refused.value.wallet, refused.value.signer) == (ADDRESS_A, ADDRESS_B)
        for _ in range(5):  # the same forger again, even after the interval: refused with no check
            clock.now += 30
            with pytest.raises(WalletSignerRefused):
                await bindings.admit(ADDRESS_A, ADDRESS_B, DIGEST, signed(KEY_B))
        assert wallet.checks == 1
        clock.now += REFUSED_FOR  # forgotten: one more check, refused again
        with pytest.raises(WalletSignerRefused):
            await bindings.admit(ADDRESS_A, ADDRESS_B, DIGEST, signed(KEY_B))
        assert wallet.checks == 2
        # no binding yet: another key within the minute waits its turn (429, no check)
        with pytest.raises(RateLimited):
            await bindings.admit(ADDRESS_A, ADDRESS_A, DIGEST, signed(KEY_A))
        assert wallet.checks == 2
        # the owner's key after the minute: bound; from then on other keys within a minute are refused (403)
        clock.now += 60
        await bindings.admit(ADDRESS_A, ADDRESS_C, DIGEST, signed(KEY_C))
        with pytest.raises(WalletSignerRefused):
            await bindings.admit(ADDRESS_A, ADDRESS_A, DIGEST, signed(KEY_A))
        assert wallet.checks == 3

    asyncio.run(scenario())
    assert bindings.signer_of(ADDRESS_A) == ADDRESS_C
    store.close()


def test_requests_of_one_key_share_the_check_in_flight_another_keys_get_429_and_a_failed_rpc_binds_nothing(
    tmp_path: Path,
) -> None:
    wallet, clock = FakeWallet1271(ADDRESS_C), Clock()
    bindings, store = peers(tmp_path, wallet, clock)

    async def scenario() -> None:
        wallet.fail = True
        with pytest.raises(WalletCheckFailed):
            await bindings.admit(ADDRESS_A, ADDRESS_C, DIGEST, signed(KEY_C))
        assert bindings.signer_of(ADDRESS_A) is None
        wallet.fail, wallet.gate = False, asyncio.Event()
        clock.now += 60
        waiting = [asyncio.ensure_future(bindings.admit(ADDRESS_A, ADDRESS_C, DIGEST, signed(KEY_C))) for _ in range(3)]
        await asyncio.sleep(0.01)
        with pytest.raises(RateLimited):
            await bindings.admit(ADDRESS_A, ADDRESS_B, DIGEST, signed(KEY_B))
        waiting[0].cancel()  # a client gone: the check still ends and binds
        wallet.gate.set()
        await asyncio.gather(*waiting[1:])
        assert wallet.checks == 2

    asyncio.run(scenario())
    assert store.get_meta(BINDING_KEY + ADDRESS_A) == ADDRESS_C
    store.close()


def test_the_participant_header_is_covered_by_the_request_signature_and_absent_keeps_the_old_digest() -> None:
    plain = sign_request(DOMAIN, KEY_C, ADDRESS_B, "POST", "/peer/channels", b"{}", timestamp_ms=5)
    for_wallet = sign_request(DOMAIN, KEY_C, ADDRESS_B, "POST", "/peer/channels", b"{}", 5, participant=ADDRESS_A)
    assert PARTICIPANT_HEADER not in plain and for_wallet[PARTICIPANT_HEADER] == ADDRESS_A
    assert plain["Paychan-Signature"] != for_wallet["Paychan-Signature"]
    claim = read_claim(for_wallet, now=5)
    assert (claim.signer, claim.participant, claim.speaks_for) == (ADDRESS_C, ADDRESS_A, ADDRESS_A)
    assert claim.verify(DOMAIN, ADDRESS_B, "POST", "/peer/channels", b"{}") == request_digest(
        DOMAIN, ADDRESS_B, "POST", "/peer/channels", 5, b"{}", ADDRESS_A
    )
    assert read_claim(plain, now=5).speaks_for == ADDRESS_C
    assert request_digest(DOMAIN, ADDRESS_B, "POST", "/p", 5, b"") != request_digest(
        DOMAIN, ADDRESS_B, "POST", "/p", 5, b"", ADDRESS_A
    )


# --- the node's middleware ------------------------------------------------------------------------------------


def run_with_wallet_a(tmp_path: Path, scenario: object) -> None:
    """B's in-process node (no chain), its counterparty A treated as a wallet owned by KEY_C (``FakeWallet1271``)."""

    async def run() -> None:
        victim = await start_victim(tmp_path / "b.db")
        wallet = FakeWallet1271(ADDRESS_C)
        victim.node.wallet_peers._check = wallet
        try:
            await scenario(victim, wallet)  # type: ignore[operator]
        finally:
            await victim.stop()

    asyncio.run(run())


def wallet_headers(path: str, body: bytes, participant: str = ADDRESS_A, key: bytes = KEY_C) -> dict[str, str]:
    return sign_request(DOMAIN, key, ADDRESS_B, "POST", path, body, participant=participant)


def test_the_wallets_owner_key_is_admitted_as_the_wallet_once_checked_and_its_states_countersigned_as_the_wallets(
    tmp_path: Path,
) -> None:
    async def scenario(victim: LiveNode, wallet: FakeWallet1271) -> None:
        first = propose_body(proposal(make_state(1, DEPOSIT_A - 10, 10), key=KEY_C))
        status, answer, _ = await send(victim, "/peer/propose", first, wallet_headers("/peer/propose", first))
        assert status == 200 and answer["states"][0]["state"]["nonce"] == 1, answer
        assert victim.node.runtimes[CID].channel.peer_signing_address == ADDRESS_C
        second = propose_body(proposal(make_state(2, DEPOSIT_A - 20, 20), key=KEY_C))
        status, answer, _ = await send(victim, "/peer/propose", second, wallet_headers("/peer/propose", second))
        assert status == 200 and answer["states"][0]["state"]["nonce"] == 2, answer
        assert wallet.checks == 1
        assert victim.node.store.get_meta(BINDING_KEY + ADDRESS_A) == ADDRESS_C

    run_with_wallet_a(tmp_path, scenario)


def test_a_claim_of_a_wallet_that_is_no_counterparty_a_swapped_header_or_a_forged_key_changes_nothing_and_costs_at_most_one_check(  # noqa: E501
    tmp_path: Path,
) -> None:
    async def scenario(victim: LiveNode, wallet: FakeWallet1271) -> None:
        body = announce_body("http://127.0.0.1:9")
        stranger = wallet_headers("/peer/channels", body, participant="0x" + "12" * 20)
        await expect_refused(victim, "/peer/channels", body, stranger, 403, "UnknownParticipant")
        swapped = {**wallet_headers("/peer/channels", body, participant=ADDRESS_C), PARTICIPANT_HEADER: ADDRESS_A}
        await expect_refused(victim, "/peer/channels", body, swapped, 401, "Unauthenticated")
        assert wallet.checks == 0
        forged = wallet_headers("/peer/channels", body, key=KEY_B)  # not the wallet's owner
        await expect_refused(victim, "/peer/channels", body, forged, 403, "WalletSignerRefused")
        forged = wallet_headers("/peer/channels", body, key=KEY_B)
        await expect_refused(victim, "/peer/channels", body, forged, 403, "WalletSignerRefused")
        assert wallet.checks == 1
        # the owner's own request within that minute: 429 (its node retries), no check
        answer = await expect_refused(
            victim, "/peer/channels", body, wallet_headers("/peer/channels", body), 429, "RateLimited"
        )
        assert "checks of wallet" in answer["error"]["message"]
        assert wallet.checks == 1 and victim.node.store.get_meta(BINDING_KEY + ADDRESS_A) is None
        assert json.loads(body)["peerUrl"] != victim.node.store.channel(CID).peer_url  # type: ignore[union-attr]

    run_with_wallet_a(tmp_path, scenario)
