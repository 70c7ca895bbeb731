"""Revocations (the penalty of contract v2) in the node: ``decide`` proves a revoked close before anything else;
two nodes exchange revocations with their states and keep them across a restart; a cheater who closes with a
state it revoked loses the whole channel to bob's watcher; a node never closes below its own revocation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.exceptions import InvalidRevocation, InvalidSignature
from paychan.node.control import ControlError
from paychan.node.messages import SignedRevocation
from paychan.node.server import Node
from paychan.node.store import ChannelRecord, Store
from paychan.node.watcher import (
    ContractSendChallenge,
    ContractSendProveRevoked,
    ContractSendSettle,
    decide,
    recorded_state,
)
from paychan.signing import check_message_signer, sign_message
from paychan.state import Revocation, Signature

from .conftest import (
    ADDRESS_A,
    ADDRESS_C,
    CID,
    DEPOSIT_A,
    DOMAIN,
    KEY_A,
    KEY_B,
    KEY_C,
    NodeProcess,
    channel_record,
    make_state,
    paychan,
    rpc_calls,
    sign_both,
    wait_for,
)

DEPOSIT = 10**18
PAID = 10**17
PEER_SIG = Signature.from_bytes(bytes(range(1, 65)))


def closing(
    role: str = "B", closed_by: str = "A", closer_nonce: int = 1, peer_revocation: int = 3, **extra: Any
) -> ChannelRecord:
    """The test channel (``role`` is ours) closing on chain with nonce ``closer_nonce`` by ``closed_by``, deadline
    1,000, and the peer's revocation below ``peer_revocation`` (0: none) held."""
    return replace(
        channel_record(role),
        status="closing",
        close_nonce=closer_nonce,
        close_deadline=1_000,
        close_balance_a=DEPOSIT_A - closer_nonce * PAID,
        close_balance_b=closer_nonce * PAID,
        close_salt=7,
        closer_nonce=closer_nonce,
        closed_by=closed_by,
        peer_revocation=peer_revocation,
        peer_revocation_sig=PEER_SIG if peer_revocation else None,
        **extra,
    )


NEWER = sign_both(make_state(4, DEPOSIT_A - 4 * PAID, 4 * PAID))  # pays B more than any record below


# --- decide (no sockets) -------------------------------------------------------------------------------------


def test_a_peer_closing_below_its_revocation_is_proven_before_a_challenge_is_considered() -> None:
    record = closing()
    action = decide(record, NEWER, now=500)
    assert action == ContractSendProveRevoked(CID, 3, PEER_SIG, recorded_state(record))  # type: ignore[arg-type]


def test_a_revoked_close_is_proven_also_after_the_deadline_until_settled() -> None:
    record = closing()
    assert decide(record, NEWER, now=1_001) == ContractSendProveRevoked(CID, 3, PEER_SIG, recorded_state(record))  # type: ignore[arg-type]


def test_a_close_at_the_revoked_bound_is_not_proven_but_challenged() -> None:
    record = closing(closer_nonce=3)
    assert decide(record, NEWER, now=500) == ContractSendChallenge(CID, NEWER, recorded_state(record))  # type: ignore[arg-type]


def test_a_close_without_a_peer_revocation_is_challenged_as_before() -> None:
    record = closing(peer_revocation=0)
    assert decide(record, NEWER, now=500) == ContractSendChallenge(CID, NEWER, recorded_state(record))  # type: ignore[arg-type]


def test_our_own_close_is_never_proven_against_us() -> None:
    # we (A) closed with nonce 1; the peer's revocation says nothing about our close
    record = closing(role="A", closed_by="A")
    assert decide(record, NEWER, now=500) is None  # the newer state pays A less: no challenge either


def test_once_the_cheater_is_proven_the_honest_side_settles_after_the_deadline_only() -> None:
    record = closing(penalized=True)
    assert decide(record, NEWER, now=1_000) is None  # no challenge is possible any more, nor a second proof
    assert decide(record, NEWER, now=1_001) == ContractSendSettle(CID, recorded_state(record))  # type: ignore[arg-type]
    assert decide(record, NEWER, now=1_001, auto_settle=False) is None


def test_the_proven_cheater_does_not_settle() -> None:
    record = closing(role="A", closed_by="A", penalized=True)
    assert decide(record, NEWER, now=1_001) is None


def test_the_record_carries_the_closers_nonce_kept_through_a_challenge() -> None:
    record = replace(closing(closer_nonce=1), close_nonce=4)  # a challenge recorded nonce 4
    recorded = recorded_state(record)
    assert recorded is not None and (recorded.nonce, recorded.closer_nonce) == (4, 1)
    assert decide(record, NEWER, now=500) == ContractSendProveRevoked(CID, 3, PEER_SIG, recorded)


# --- two node processes on the devnet --------------------------------------------------------------------------


def open_and_pay(alice: NodeProcess, bob: NodeProcess, payments: int) -> bytes:
    opened = alice.control("POST", "/open", {"peer": bob.peer_url, "deposit": str(DEPOSIT), "challengePeriod": 3600})
    for _ in range(payments):
        alice.control("POST", "/pay", {"amount": str(PAID)})
    return bytes.fromhex(opened["channelId"][2:])


def revocations(node: NodeProcess) -> tuple[int, int]:
    status = node.status()
    return status["ownRevocation"], status["peerRevocation"]


def test_after_three_payments_each_node_holds_the_others_revocation_and_keeps_it_across_a_restart(
    node_processes: Callable[[str, bytes], NodeProcess],
    devnet_contract: PaychanContract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    bob.start()
    alice.start()
    cid = open_and_pay(alice, bob, 3)
    # bob revoked below each state he countersigned (3); alice's revocation below 2 came with payment 3
    wait_for(lambda: revocations(bob) == (3, 2), "bob's revocations")
    assert revocations(alice) == (2, 3)
    assert alice.status()["pendingLocks"] == bob.status()["pendingLocks"] == 0
    alice.stop()
    bob.stop()
    for node, own, peer_below, peer_address in ((alice, 2, 3, bob), (bob, 3, 2, alice)):
        store = Store(node.db)
        record = store.channel(cid)
        store.close()
        assert record is not None and (record.own_revocation, record.peer_revocation) == (own, peer_below)
        assert record.peer_revocation_sig is not None
        check_message_signer(
            devnet_contract.domain,
            Revocation(cid, peer_below),
            record.peer_revocation_sig,
            _address(peer_address),  # type: ignore[arg-type]
        )
    bob.start()
    alice.start()
    assert revocations(alice) == (2, 3) and revocations(bob) == (3, 2)
    code, out, _ = paychan(capsys, "status", "--db", str(bob.db))
    assert code == 0 and "  revocations: ours below nonce 3, the peer's below nonce 2; pending locks 0\n" in out
    alice.control("POST", "/pay", {"amount": str(PAID)})  # payment 4 carries alice's revocation below 3
    wait_for(lambda: revocations(bob) == (4, 3), "bob's revocations after payment 4")
    assert revocations(alice) == (3, 4)


def _address(node: NodeProcess) -> str:
    from eth_account import Account

    return str(Account.from_key(node.key).address)


def test_a_cheater_closing_with_a_state_it_revoked_loses_the_whole_channel_to_bobs_watcher(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: PaychanContract
) -> None:
    cheat_and_be_proven(node_processes, devnet, devnet_contract, None)


def test_a_cheater_is_proven_by_a_watcher_behind_a_slow_rpc(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: PaychanContract, latency_proxy: str
) -> None:
    rpc = cheat_and_be_proven(node_processes, devnet, devnet_contract, latency_proxy)
    assert rpc["eth_getLogs"] > 0 and rpc["eth_sendRawTransaction"] >= 2  # bob's proof and settlement went through it


def cheat_and_be_proven(
    node_processes: Callable[..., NodeProcess], devnet: Any, devnet_contract: PaychanContract, bob_rpc: str | None
) -> dict[str, int]:
    """Alice pays bob three times, stops, and her key closes with state 1, which she revoked; bob's watcher
    (on ``bob_rpc``, or the devnet) proves it and settles for the whole channel. The RPC calls bob made
    through ``bob_rpc`` (empty without it)."""
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B, rpc_url=bob_rpc)
    bob.start()
    alice.start()
    cid = open_and_pay(alice, bob, 3)
    wait_for(lambda: revocations(bob) == (3, 2), "bob to hold alice's revocation below 2")
    alice.stop()

    # the cheater: alice's key closes with state 1 (doubly signed, paying bob least), which alice revoked
    store = Store(alice.db)
    row = store.state_at(cid, 1)
    store.close()
    assert row is not None
    old = row.signed
    if old.sig_a is None:
        old = old.with_signature("A", sign_message(devnet_contract.domain, old.state, KEY_A))
    assert old.is_complete and (old.state.balance_a, old.state.balance_b) == (DEPOSIT - PAID, PAID)
    chain = rpc_chain(devnet.url, ["0x" + KEY_A.hex()])
    cheater = chain.accounts[0]
    contract = PaychanContract(chain, devnet_contract.address, from_block=devnet_contract.from_block)
    params = contract.find_params(cid)  # type: ignore[arg-type]
    contract.close(cheater, params, old)

    wait_for(lambda: contract.get_channel(cid).penalized, "bob's proof of the revoked close")  # type: ignore[arg-type]
    (proven,) = contract.contract.events.RevokedStateProven().get_logs(
        from_block=contract.from_block, argument_filters={"channelId": cid}
    )
    assert (proven["args"]["cheater"], proven["args"]["closerNonce"], proven["args"]["belowNonce"]) == (ADDRESS_A, 1, 2)
    assert not contract.contract.events.ChallengeAccepted().get_logs(
        from_block=contract.from_block, argument_filters={"channelId": cid}
    )  # the proof came first: no challenge was sent
    wait_for(lambda: bob.status()["penalized"], "bob to record the proof")

    chain.time_travel(3601)
    wait_for(lambda: contract.get_channel(cid).status == 0, "bob's settlement")  # type: ignore[arg-type]
    (settled,) = contract.contract.events.ChannelSettled().get_logs(
        from_block=contract.from_block, argument_filters={"channelId": cid}
    )
    assert (settled["args"]["payoutA"], settled["args"]["payoutB"]) == (0, DEPOSIT)  # the whole channel, to the wei
    assert chain.w3.eth.get_balance(contract.address) == 0  # nothing left behind
    wait_for(lambda: bob.status()["status"] == "closed", "bob to see the channel closed")
    return rpc_calls(bob_rpc) if bob_rpc else {}


def test_the_node_refuses_a_unilateral_close_below_its_own_revocation(
    node_processes: Callable[[str, bytes], NodeProcess], devnet_contract: PaychanContract
) -> None:
    alice, bob = node_processes("alice", KEY_A), node_processes("bob", KEY_B)
    bob.start()
    alice.start()
    cid = open_and_pay(alice, bob, 2)
    wait_for(lambda: revocations(bob) == (2, 1), "bob's revocations")
    bob.stop()
    store = Store(bob.db)
    store.set_own_revocation(cid, 9)  # as if bob had revoked states he does not hold (a damaged store)
    store.close()
    bob.start()
    with pytest.raises(ControlError) as refused:
        bob.control("POST", "/close", {"unilateral": True})
    assert refused.value.type == "RevokedNonce"
    assert refused.value.fields == {"nonce": 2, "below_nonce": 9}
    assert devnet_contract.get_channel(cid).status == 1  # type: ignore[arg-type]  # still open: nothing was sent
    assert bob.status()["status"] == "open"


def test_a_revocation_for_a_nonce_above_our_latest_state_is_refused(store: Store) -> None:
    node = Node(store, KEY_B, DOMAIN)
    signature = sign_message(DOMAIN, Revocation(CID, 1), KEY_A)  # type: ignore[arg-type]
    with pytest.raises(InvalidRevocation) as refused:  # bob holds only the nonce-0 state
        node._take_peer_revocation(node.runtimes[CID], SignedRevocation(1, signature))
    assert refused.value.reason == "revokes below 1, above our latest state 0"  # Channel.receive_revocation
    assert store.channel(CID).peer_revocation == 0  # type: ignore[union-attr]


def test_a_revocation_not_signed_by_the_peer_is_refused(store: Store) -> None:
    node = Node(store, KEY_B, DOMAIN)
    store.record_intent(sign_both(make_state(1, DEPOSIT_A - PAID, PAID)), "A")
    node._reload(CID)
    signature = sign_message(DOMAIN, Revocation(CID, 1), KEY_C)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignature) as refused:
        node._take_peer_revocation(node.runtimes[CID], SignedRevocation(1, signature))
    assert refused.value == InvalidSignature(expected=ADDRESS_A, recovered=ADDRESS_C)
    assert store.channel(CID).peer_revocation == 0  # type: ignore[union-attr]
