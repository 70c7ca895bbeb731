"""`paychan demo`'s answers on contract v2: a cheater punished, a conditional payment settled on chain and a
withdrawal while open, each ledger's numbers read again from the chain and conserved to the wei."""

from __future__ import annotations

from paychan.channel import LOCK_EXPIRY_MARGIN
from paychan.demo import CHALLENGE_PERIOD, run_cheater, run_conditional, run_withdraw
from paychan.exceptions import RevokedNonce, WithdrawalCountMismatch
from paychan.ledger import LedgerRecorder
from paychan.signing import check_message_signer
from paychan.state import Lock, Revocation, Signature, Withdrawal, hashlock, locks_root

from .conftest import ETHER, PERIOD, block_time
from .test_demo import assert_ledger_matches_the_chain, channel_logs


def test_a_cheater_who_closes_with_a_revoked_state_loses_her_whole_deposit_to_bob(chain, contract, alice, bob):
    ledger = run_cheater(chain, contract)
    assert [tx.label for tx in ledger.transactions] == [
        "open channel + deposit (alice)",
        "deposit (bob)",
        "close with revoked state (alice)",
        "prove revoked state (bob)",
        "settle (bob)",
    ]
    (closed,) = channel_logs(contract, ledger, "ChannelClosed")
    (proven,) = channel_logs(contract, ledger, "RevokedStateProven")
    assert (closed["closer"], closed["nonce"]) == (alice.address, 1)
    assert (proven["cheater"], proven["closerNonce"], proven["belowNonce"]) == (alice.address, 1, 3)
    (penalty,) = ledger.penalties
    assert (penalty["cheater"], penalty["honest"], penalty["proven_by"]) == ("alice", "bob", "bob")
    assert (penalty["closer_nonce"], penalty["below_nonce"]) == (proven["closerNonce"], proven["belowNonce"])
    newest = max(ledger.states, key=lambda s: s.nonce)
    assert (penalty["newest_nonce"], penalty["forfeited"]) == (3, newest.balance_a) == (3, 5 * ETHER // 2)
    assert {p["name"]: (p["amount"], p["penalty"]) for p in ledger.payouts} == {
        "alice": (0, False),
        "bob": (5 * ETHER, True),
    }
    assert ledger.parties["alice"].channel_result == -4 * ETHER
    assert ledger.parties["bob"].channel_result == 4 * ETHER
    cid = bytes.fromhex(ledger.channel_id[2:])
    revocations = [(m.signed_by, m.message["belowNonce"], m.signatures) for m in ledger.messages]
    assert [(signers, below) for signers, below, _ in revocations] == [
        (("alice",), 2),
        (("bob",), 2),
        (("alice",), 3),
        (("bob",), 3),
    ]
    for (signer,), below, (signature,) in revocations:
        account = alice if signer == "alice" else bob
        sig = Signature.from_bytes(bytes.fromhex(signature[2:]))
        check_message_signer(contract.domain, Revocation(cid, below), sig, account.address)
    # alice's own Channel would not have closed below her revocation: she went round it
    assert any(f"check_close raises {RevokedNonce(1, 3)}" in note for note in ledger.events)
    text = ledger.to_text()
    assert "penalty: alice's deposit of 4 ETH went to bob" in text
    assert "bob got back 5 ETH (pushed; the whole channel, as the penalty)" in text
    assert_ledger_matches_the_chain(chain, contract, ledger)


def test_a_revealed_lock_pays_bob_and_an_expired_one_goes_back_to_alice_at_settle(chain, contract, bob):
    ledger = run_conditional(chain, contract)
    paid, expired = ledger.settled_locks
    assert (paid["sender"], paid["receiver"], paid["amount"], paid["paid"]) == ("alice", "bob", ETHER, True)
    assert (expired["sender"], expired["amount"], expired["paid"]) == ("alice", ETHER // 4, False)
    hashlocks = [bytes.fromhex(lock["hashlock"][2:]) for lock in (paid, expired)]
    assert paid["revealed_at"] == contract.revealed_at(hashlocks[0]) and 0 < paid["revealed_at"] <= paid["expiry"]
    assert expired["revealed_at"] == contract.revealed_at(hashlocks[1]) == 0
    (secret,) = ledger.secrets
    assert hashlock(bytes.fromhex(secret["secret"][2:])) == hashlocks[0] and secret["revealed_by"] == "bob"
    (revealed,) = contract.contract.events.SecretRevealed().get_logs(
        from_block=0, argument_filters={"hashlock": hashlocks[0]}
    )
    assert block_time(chain, chain.w3.eth.get_transaction_receipt(revealed["transactionHash"])) == paid["revealed_at"]
    # the close committed to exactly the list settle resolved, and the lock list is the latest state's
    locks = [Lock("A", lock["amount"], lock["expiry"], h) for lock, h in zip((paid, expired), hashlocks, strict=True)]
    (closed,) = channel_logs(contract, ledger, "ChannelClosed")
    assert (closed["closer"], closed["nonce"]) == (bob.address, 3)
    assert bytes(closed["locksRoot"]) == locks_root(locks)
    assert (closed["lockedA"], closed["lockedB"]) == (5 * ETHER // 4, 0)
    assert [lock.to_json() for lock in locks] == list(ledger.states[-1].locks)
    # the channel's rule: a lock expires at least LOCK_EXPIRY_MARGIN before a close started then can settle
    lock_state_time = block_time(chain, chain.w3.eth.get_transaction_receipt(ledger.transactions[1].tx_hash))
    assert all(lock.expiry <= lock_state_time + PERIOD - LOCK_EXPIRY_MARGIN for lock in locks)
    assert CHALLENGE_PERIOD == PERIOD
    settle = chain.w3.eth.get_transaction_receipt(ledger.transactions[-1].tx_hash)
    assert closed["deadline"] < block_time(chain, settle) and expired["expiry"] < block_time(chain, settle)
    check = ledger.lock_check
    assert check is not None and check["matches"]
    assert (check["recorded_a"], check["recorded_b"]) == (closed["balanceA"], closed["balanceB"])
    assert {p["name"]: p["amount"] for p in ledger.payouts} == {"alice": 3 * ETHER // 2, "bob": 5 * ETHER // 2}
    assert_ledger_matches_the_chain(chain, contract, ledger)


def test_a_withdrawal_while_open_pays_bob_at_once_and_voids_the_older_states(chain, contract, alice, bob):
    ledger = run_withdraw(chain, contract)
    (withdrawn,) = channel_logs(contract, ledger, "Withdrawn")
    assert (withdrawn["withdrawals"], withdrawn["amountA"], withdrawn["amountB"]) == (1, 0, 3 * ETHER // 2)
    assert (withdrawn["depositA"], withdrawn["depositB"]) == (5 * ETHER // 2, 0)
    (record,) = ledger.withdrawals
    assert (record["amount_a"], record["amount_b"], record["deposit_a"], record["deposit_b"]) == (
        withdrawn["amountA"],
        withdrawn["amountB"],
        withdrawn["depositA"],
        withdrawn["depositB"],
    )
    assert (record["deposit_a_before"], record["deposit_b_before"]) == (3 * ETHER, 1 * ETHER)
    (message,) = ledger.messages
    assert message.kind == "withdrawal" and message.signed_by == ("alice", "bob")
    cid = bytes.fromhex(ledger.channel_id[2:])
    m = message.message
    withdrawal = Withdrawal(
        cid,
        int(m["amountA"]),
        int(m["amountB"]),
        int(m["depositA"]),
        int(m["depositB"]),
        int(m["withdrawals"]),
        int(m["expiry"]),
    )
    assert withdrawal.deposits_after() == (withdrawn["depositA"], withdrawn["depositB"])
    for signer, signature in zip((alice, bob), message.signatures, strict=True):
        sig = Signature.from_bytes(bytes.fromhex(signature[2:]))
        check_message_signer(contract.domain, withdrawal, sig, signer.address)
    after = [s for s in ledger.states if s.withdrawals == 1]
    assert [s.nonce for s in after] == [2, 3, 4]
    assert all((s.deposit_a, s.deposit_b) == (withdrawn["depositA"], withdrawn["depositB"]) for s in after)
    assert any(str(WithdrawalCountMismatch(0, 1)) in note for note in ledger.events)
    assert any("the counter moved to 1; both Channels noted it (record_withdrawal)" in note for note in ledger.events)
    bob_party = ledger.parties["bob"]
    assert (bob_party.deposited, bob_party.withdrawn, bob_party.paid_out) == (ETHER, 3 * ETHER // 2, ETHER)
    assert {p["name"]: p["amount"] for p in ledger.payouts} == {"alice": 3 * ETHER // 2, "bob": ETHER}
    text = ledger.to_text()
    assert "bob: deposited 1 ETH, withdrew 1.5 ETH while open, got back 1 ETH" in text
    assert "channel: 4 ETH deposited, 2.5 ETH paid out, 1.5 ETH withdrawn while open; the contract keeps 0 ETH" in text
    assert_ledger_matches_the_chain(chain, contract, ledger)


def test_the_conservation_line_counts_what_an_open_channels_slot_still_holds_and_flags_a_gap(
    chain, contract, alice, bob
):
    recorder = LedgerRecorder(chain, contract, "open", {alice.address: "alice", bob.address: "bob"})
    before = int(chain.w3.eth.block_number)
    params, receipt = contract.open_channel(alice, bob.address, 2 * ETHER, challenge_period=PERIOD)
    recorder.begin(params, before)
    recorder.record("open (alice)", alice.address, receipt)
    ledger = recorder.finish()
    assert ledger.channel_holds == contract.get_channel(contract.channel_id(params)).total_deposit == 2 * ETHER
    assert ledger.conserved
    assert "the contract keeps 2 ETH (its slot holds 2 ETH: deposits = payouts + withdrawn + kept, to the wei ✓)" in (
        ledger.to_text()
    )
    ledger.channel_holds -= 1  # one wei the slot would not account for
    assert not ledger.conserved and "to the wei ✗ MISMATCH" in ledger.to_text()
    assert ledger.to_json()["conservation"]["holds"] is False
