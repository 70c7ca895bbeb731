"""Withdrawing while the channel stays open, between two nodes (``POST /peer/withdraw``).

The node that withdraws (the proposer) holds the turn, like any proposer. Under the channel's lock it checks
the amount against its balance, asks the peer's node whether it answers at all (nothing is signed before),
then signs with ``Channel.propose_withdrawal`` the ``Withdrawal`` of its own balance and the next state (our
balance lowered, the deposits the withdrawal leaves, the next withdrawal counter), recording the state as
an intent first (the node's ``before_sign`` hook). The peer checks both with ``Channel.receive_withdrawal``
(its own view of balances and deposits, the expiry within ``MAX_WITHDRAWAL_WINDOW`` of its chain time),
records, countersigns, commits and answers both signatures. The proposer checks them
(``receive_withdrawal_countersignature``), stores the state, submits ``withdraw`` and waits for the receipt;
the channel's deposits and counter then come from the chain (``get_channel``), and each node's ``Channel``
records the withdrawal (``note_withdrawn``: the proposer from its receipt, the peer from the ``Withdrawn``
event its watcher sees). Until then neither side signs a
state on top of the withdrawal. Both keep the withdrawal both signed in the store (``keep_pending``, in the
transaction of the state's signature), so a restarted node still knows the state before it is the one the
chain accepts until the withdrawal is made (``restore_pending``): it revokes nothing above it and closes
with it.

A refusal (the peer answered an error) or a peer that cannot be connected to leaves nothing: the state we
signed never left the node, so its intent is forgotten and the channel is as before. A peer that was reached
but did not answer may have countersigned: then the withdrawal stays pending and the user is told so.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paychan.channel import Channel, PendingWithdrawal
from paychan.exceptions import (
    InvalidAmount,
    MalformedMessage,
    PaychanError,
    StateRejected,
    WithdrawalRejected,
)
from paychan.node import turn
from paychan.node.exceptions import ChainLost, ChannelNotOpen, InsufficientBalance, NotSynced, NotYourTurn
from paychan.node.messages import (
    _HEX64,
    PROTOCOL_VERSION,
    _check_header,
    _fields,
    _integer,
    _uint256,
    decode_json,
    encode_signed,
    parse_channel_id,
    parse_signed,
)
from paychan.node.peer import PeerRefused, PeerUnavailable, PeerUnreachable
from paychan.node.store import STATUS_OPEN, ChannelRecord, Store
from paychan.signers import SignerError
from paychan.state import ETH, MAX_UINT40, ChannelId, Signature, SignedState, Withdrawal

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from paychan.node.server import Node, Runtime

MAX_WITHDRAWAL_WINDOW = 3600  # a node countersigns withdrawals expiring at most this long after its chain time
MIN_EXPIRES_IN = 60  # the least a proposer gives its withdrawal's transaction to be mined
# a node countersigns no withdrawal expiring this soon after its chain time: its estimate of the chain's time
# (the latest block seen plus the time since) may lag a devnet mining several blocks a second, and a
# withdrawal that cannot be mined in time would only block the channel until it expires
MIN_WITHDRAWAL_LEAD = MIN_EXPIRES_IN // 2
MAX_EXPIRES_IN = 30 * 24 * 3600  # the most a proposer asks for (its peer may accept less)
DEFAULT_EXPIRES_IN = 600


class WithdrawalFailed(PaychanError):
    """Raised when a withdrawal did not happen and left nothing behind (no state, no transaction)."""


class WithdrawalUnanswered(PaychanError):
    """Raised when the peer was sent our signed withdrawal but did not answer: it may have countersigned."""


class WithdrawalNotMade(PaychanError):
    """Raised when both signed the withdrawal but its transaction failed."""


@dataclass(frozen=True)
class WithdrawMessage:
    """The proposer's signed withdrawal and the signed state it leaves (``POST /peer/withdraw``)."""

    channel_id: ChannelId
    epoch: int
    withdrawal: Withdrawal
    signature: Signature
    state: SignedState

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "withdraw",
            "version": PROTOCOL_VERSION,
            "channelId": "0x" + self.channel_id.hex(),
            "epoch": self.epoch,
            "withdrawal": self.withdrawal.to_json(),
            "signature": "0x" + self.signature.to_bytes().hex(),
            "state": encode_signed(self.state),
        }


def _signature(value: Any, what: str) -> Signature:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise MalformedMessage(f"{what} must be 0x and 128 hex digits")
    return Signature.from_bytes(bytes.fromhex(value[2:]))


def parse_withdrawal(obj: Any) -> Withdrawal:
    data = _fields(
        obj, "withdrawal", {"channelId", "amountA", "amountB", "depositA", "depositB", "withdrawals", "expiry"}
    )
    return Withdrawal(
        ChannelId(parse_channel_id(data["channelId"])),
        _uint256(data["amountA"], "amountA"),
        _uint256(data["amountB"], "amountB"),
        _uint256(data["depositA"], "depositA"),
        _uint256(data["depositB"], "depositB"),
        _integer(data["withdrawals"], "withdrawals", 0xFFFF),
        _integer(data["expiry"], "expiry", MAX_UINT40),
    )


def parse_withdraw(body: bytes) -> WithdrawMessage:
    data = _fields(
        decode_json(body), "withdraw", {"type", "version", "channelId", "epoch", "withdrawal", "signature", "state"}
    )
    _check_header(data, "withdraw")
    return WithdrawMessage(
        parse_channel_id(data["channelId"]),
        _integer(data["epoch"], "epoch", 2**62),
        parse_withdrawal(data["withdrawal"]),
        _signature(data["signature"], "signature"),
        parse_signed(data["state"]),
    )


def parse_countersigned(data: dict[str, Any]) -> tuple[Signature, SignedState]:
    """The peer's answer: its signature of the withdrawal and the state both signed."""
    answer = _fields(data, "withdrawal answer", {"type", "signature", "state"})
    if answer["type"] != "withdrawalCountersigned":
        raise MalformedMessage("expected a withdrawalCountersigned answer")
    return _signature(answer["signature"], "signature"), parse_signed(answer["state"])


# --- the peer's side ---------------------------------------------------------------------------


def countersign(node: Node, message: WithdrawMessage, signer: str | None) -> dict[str, Any]:
    """Checks the peer's withdrawal and its state, records, countersigns and commits them; the answer.

    Runs without awaiting (no other handler interleaves); nothing is stored unless everything checks out. A
    withdrawal re-sent after we countersigned it is answered with the same signatures."""
    runtime = node.runtime(message.channel_id)
    node.check_counterparty(runtime, signer)
    if runtime.cid in node._unsynced:
        raise NotSynced(runtime.cid)
    if runtime.record.status != STATUS_OPEN:
        raise ChannelNotOpen(runtime.record.status)
    channel = runtime.channel
    pending = channel.pending_withdrawal
    if (
        pending is not None
        and pending.is_complete
        and pending.withdrawal == message.withdrawal
        and channel.latest.state == message.state.state
    ):
        own = pending.sig_a if runtime.role == "A" else pending.sig_b
        assert own is not None
        return _answer(own, channel.latest)
    _, verdict = turn.handle(runtime.turn, turn.ReceiveProposal(message.epoch, False, False))
    if isinstance(verdict[0], turn.RefuseNotYourTurn):
        raise NotYourTurn(verdict[0].epoch)
    # the next block's time is at least the chain's as last seen and, on a chain stamping blocks by the clock
    # (anvil between blocks, or any public chain), at least the clock's
    now = max(node.chain_now(), int(time.time()))
    if message.withdrawal.expiry <= now + MIN_WITHDRAWAL_LEAD:
        raise WithdrawalRejected(
            f"it expires at {message.withdrawal.expiry}, {MIN_WITHDRAWAL_LEAD} s or less after now ({now}): too "
            "soon to be made"
        )
    if message.withdrawal.expiry > now + MAX_WITHDRAWAL_WINDOW:
        raise WithdrawalRejected(
            f"it expires at {message.withdrawal.expiry}, more than {MAX_WITHDRAWAL_WINDOW} s after now ({now})"
        )
    try:
        with node.store.transaction():  # the intent (before_sign) and our signature commit together
            own, signed = channel.receive_withdrawal(message.withdrawal, message.signature, message.state, now)
            node.store.add_signatures(signed)
            keep_pending(node.store, channel)
    except Exception:
        node._reload(runtime.cid)  # nothing was committed: forget what the channel object accepted
        raise
    return _answer(own, signed)


def _answer(signature: Signature, signed: SignedState) -> dict[str, Any]:
    return {
        "type": "withdrawalCountersigned",
        "signature": "0x" + signature.to_bytes().hex(),
        "state": encode_signed(signed),
    }


# --- the proposer's side -----------------------------------------------------------------------


def forget_own_intent(node: Node, runtime: Runtime, proposal: SignedState) -> None:
    """Deletes the intent of our own proposal that never reached the peer (or that it refused): its row
    carries our signature alone, so the nonce is free again for another state."""
    node.store.forget_intent(proposal.state, runtime.role)


def pending_key(cid: bytes) -> str:
    """The ``node_meta`` key of a channel's withdrawal both signed (made on chain or not)."""
    return f"pendingWithdrawal:0x{cid.hex()}"


def keep_pending(store: Store, channel: Channel) -> None:
    """Stores the channel's withdrawal both signed, with the nonce of the state before it (joins the caller's
    transaction): after a restart the node still knows that state is the one the chain accepts until the
    withdrawal is made, revokes nothing above it and closes with it."""
    pending = channel.pending_withdrawal
    assert pending is not None and pending.sig_a is not None and pending.sig_b is not None
    value = {
        "withdrawal": pending.withdrawal.to_json(),
        "sigA": "0x" + pending.sig_a.to_bytes().hex(),
        "sigB": "0x" + pending.sig_b.to_bytes().hex(),
        "before": pending.before.state.nonce,
    }
    store.set_meta(pending_key(channel.channel_id), json.dumps(value, separators=(",", ":")))


def restore_pending(
    store: Store, record: ChannelRecord, channel: Channel, own_signature: Callable[[SignedState], SignedState]
) -> None:
    """Gives a channel loaded from the store its withdrawal both signed and not made on chain yet (if any)."""
    text = store.get_meta(pending_key(record.channel_id))
    if text is None:
        return
    data = json.loads(text)
    withdrawal = parse_withdrawal(data["withdrawal"])
    if withdrawal.withdrawals != record.withdrawals or channel.withdrawals != withdrawal.withdrawals + 1:
        return  # made on chain already (or not the withdrawal our latest state follows)
    row = store.state_at(record.channel_id, int(data["before"]))
    if row is None:
        return
    if data.get("abandoned"):
        # it expired unmade (``abandon_expired``): the state before it is the latest; the nonce floor stays
        # at the withdrawal's state, so no later state reuses its nonce
        channel.latest = own_signature(row.signed)
        return
    sig_a, sig_b = _signature(data["sigA"], "sigA"), _signature(data["sigB"], "sigB")
    channel.pending_withdrawal = PendingWithdrawal(withdrawal, own_signature(row.signed), sig_a, sig_b)


def abandon_expired(node: Node, runtime: Runtime, now: int) -> bool:
    """Drops the channel's withdrawal both signed once it expired unmade, so the channel signs states again
    (on the counter before it). ``now`` must be the timestamp of a block whose events the watcher applied:
    every block up to the expiry is then processed, so a withdrawal made in time would already show in the
    record's counter. The store keeps the withdrawal, marked abandoned, so a restart does not revive it."""
    channel = runtime.channel
    pending = channel.pending_withdrawal
    if pending is None or now <= pending.withdrawal.expiry:
        return False
    if runtime.record.withdrawals != pending.withdrawal.withdrawals:
        return False  # made on chain: the watcher's Withdrawn event records it
    with node.store.transaction():
        text = node.store.get_meta(pending_key(runtime.cid))
        if text is not None:
            data = json.loads(text)
            data["abandoned"] = True
            node.store.set_meta(pending_key(runtime.cid), json.dumps(data, separators=(",", ":")))
        channel.abandon_withdrawal(now)
    runtime.wakeup.set()  # the payments queued meanwhile go now
    log.warning(
        "channel 0x%s: withdrawal %d expired at %d without being made; back to the state before it (nonce %d)",
        runtime.cid.hex()[:12],
        pending.withdrawal.withdrawals + 1,
        pending.withdrawal.expiry,
        channel.nonce,
    )
    return True


def apply_withdrawn(runtime: Runtime, withdrawals: int, deposit_a: int, deposit_b: int) -> None:
    """Notes in the channel object a withdrawal made on chain (the channel's counter is now ``withdrawals``)."""
    channel = runtime.channel
    if channel.withdrawals != withdrawals:
        return  # our latest state is from another counter: the store's record holds the chain's view
    if channel.pending_withdrawal is not None:
        channel.record_withdrawal(deposit_a, deposit_b, withdrawals)
        runtime.wakeup.set()  # the payments queued meanwhile go now
    else:
        channel.deposits = (deposit_a, deposit_b)


async def withdraw(node: Node, cid: bytes | None, amount: int, expires_in: int = DEFAULT_EXPIRES_IN) -> dict[str, Any]:
    """Withdraws ``amount`` of our balance from the open channel, valid ``expires_in`` s; what happened."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(amount)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not (MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN)
    ):
        raise WithdrawalFailed(
            f"a withdrawal valid for {expires_in} s would expire before its transaction is safely mined, or is "
            f"too long: give --expires-in from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} s; nothing was withdrawn"
        )
    contract = node.chain.require_contract()
    runtime = node.runtime(cid)
    if runtime.record.status != STATUS_OPEN:
        raise ChannelNotOpen(runtime.record.status)
    if node.chain_lost is not None:
        raise ChainLost(node.chain_lost)
    if runtime.cid in node._unsynced:
        raise NotSynced(runtime.cid)
    async with runtime.lock:
        runtime = node.runtimes[runtime.cid]
        channel = runtime.channel
        pending = channel.pending_withdrawal
        if pending is not None and pending.is_complete:  # both signed it, the chain has not made it yet
            return await _submit_again(node, runtime, amount)
        if runtime.inflight or channel.pending is not None:
            raise WithdrawalFailed(
                f"a state of this node (nonce {channel.nonce + 1}) waits for the peer's countersignature: try "
                "again once it is answered (`paychan status` shows what is in flight); nothing was withdrawn"
            )
        mine = channel.balance()
        if amount > mine:
            raise InsufficientBalance(mine, amount)
        peer_url = runtime.record.peer_url
        try:  # nothing is signed before the peer's node answers
            await node.peer.get(peer_url + "/peer/info")
            await node._acquire_turn(runtime)
        except (PeerUnavailable, PeerRefused) as exc:
            raise WithdrawalFailed(
                f"the peer's node at {peer_url or '(no URL yet)'} does not answer ({exc}): nothing was signed, "
                "nothing was withdrawn"
            ) from None
        now = await node.chain.run(contract.chain.now)

        # the node's before_sign hook records our proposal (as ours) before it is signed, in the transaction
        # of the signing: a signer that fails leaves no intent, and the channel is reloaded as it was
        def propose() -> tuple[Withdrawal, Signature, SignedState]:
            with node.store.transaction():
                return node.runtimes[runtime.cid].channel.propose_withdrawal(amount, now + expires_in)

        try:
            withdrawal, signature, proposal = await node.with_signatures(propose, runtime.cid)
        except SignerError as exc:
            node._reload(runtime.cid)
            raise WithdrawalFailed(f"the signer did not sign the withdrawal ({exc}): nothing was withdrawn") from None
        runtime = node.runtimes[runtime.cid]  # a dry run of a signer that is not local reloads the channel
        channel = runtime.channel
        message = WithdrawMessage(runtime.cid, runtime.epoch, withdrawal, signature, proposal)
        try:
            answer = await node.peer.post(peer_url + "/peer/withdraw", message.to_json(), channel.peer_address)
            peer_signature, countersigned = parse_countersigned(answer)
            channel.receive_withdrawal_countersignature(peer_signature, countersigned)
        except (PeerRefused, PeerUnreachable) as exc:  # our signatures never reached the peer, or it refused
            forget_own_intent(node, runtime, proposal)
            node._reload(runtime.cid)
            reason = exc.error.get("message", exc) if isinstance(exc, PeerRefused) else exc
            raise WithdrawalFailed(f"the peer refused the withdrawal: {reason}; nothing was withdrawn") from None
        except (PeerUnavailable, StateRejected) as exc:
            raise WithdrawalUnanswered(
                f"the withdrawal of {amount} was sent to the peer but not countersigned ({exc}): nothing was "
                f"withdrawn; the channel waits for it until {withdrawal.expiry}"
            ) from None
        with node.store.transaction():
            node.store.add_signatures(channel.latest)
            keep_pending(node.store, channel)
        return await node.chain.submit_withdrawal(runtime, amount)


async def _submit_again(node: Node, runtime: Runtime, amount: int) -> dict[str, Any]:
    """Submits the withdrawal both signed earlier (its transaction failed, or the node stopped before it),
    if it is the one asked for and still valid."""
    pending = runtime.channel.pending_withdrawal
    assert pending is not None
    withdrawal = pending.withdrawal
    ours = withdrawal.amount_a if runtime.role == "A" else withdrawal.amount_b
    what = f"the withdrawal of {amount_text(runtime, withdrawal.amount_a + withdrawal.amount_b)} both signed"
    now = await node.chain.run(node.chain.require_contract().chain.now)
    if now > withdrawal.expiry:
        raise WithdrawalFailed(
            f"{what} expired at {withdrawal.expiry} without being made: nothing was withdrawn; once the watcher "
            "has seen a block past its expiry the channel goes on from the state before it (run this again then)"
        )
    if ours == 0:
        raise WithdrawalFailed(
            f"{what} (the peer's) is not made yet: this node signs nothing new until it is made or expires at "
            f"{withdrawal.expiry}; nothing was withdrawn"
        )
    if amount != ours:
        raise WithdrawalFailed(
            f"{what} is not made yet: run `paychan withdraw` with that amount to submit it (until "
            f"{withdrawal.expiry}); nothing was withdrawn"
        )
    return await node.chain.submit_withdrawal(runtime, amount)


def pending_status(channel: Channel) -> dict[str, Any] | None:
    """A withdrawal signed and not made yet, for ``status``: amounts, expiry, whether both signed it."""
    pending = channel.pending_withdrawal
    if pending is None:
        return None
    withdrawal = pending.withdrawal
    return {
        "amountA": str(withdrawal.amount_a),
        "amountB": str(withdrawal.amount_b),
        "expiry": withdrawal.expiry,
        "bothSigned": pending.is_complete,
    }


def amount_text(runtime: Runtime, amount: int) -> str:
    from paychan.units import format_amount

    return format_amount(amount) if runtime.record.params.asset == ETH else f"{amount} token units"
