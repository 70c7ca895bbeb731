"""The node's chain access: every transaction it sends and every chain read of its own, on chain threads.

``ChainActions`` (``Node.chain``) holds the two chain threads (``run``: the user's actions through the
control API; ``run_for_watcher``: the watcher's reads and transactions, so it never waits behind anything
else) and the actions that send a transaction: open, deposit, the submission of a cooperative close, a
unilateral close, settle, claim, a withdrawal both signed (``paychan.node.withdraw`` has the exchange). The
off-chain parts stay with the node (``Node.sign_final``, the exchange), and what the chain reports is fed
back to it as events (``Node.note_deposits``, ``note_close_event``, ``note_settled``, ...), as the watcher
does. No peer request reaches this module, but for the one bounded ERC-1271 check of a wallet peer
(``wallet_accepts``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from web3.logs import DISCARD

from paychan.contract import PaychanContract
from paychan.exceptions import PaychanError
from paychan.node.exceptions import ChannelNotOpen, NothingToSettle
from paychan.node.restored import check_may_close
from paychan.node.store import STATUS_CLOSED, STATUS_OPEN
from paychan.node.wallet_peers import WalletCheckFailed
from paychan.node.withdraw import WithdrawalNotMade, amount_text
from paychan.state import ETH, Signature, SignedState
from paychan.token import Token, ensure_allowance
from paychan.wallets import accepts_signature

if TYPE_CHECKING:
    from paychan.node.server import Node, Runtime

log = logging.getLogger("paychan.node")
T = TypeVar("T")


class ChainActions:
    """The chain actions of ``node`` (its contract, its ``sender``), each on a chain thread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # Chain work on separate threads, so the watcher never waits behind anything else: the control
        # API's transactions (open, close) on one, the watcher's reads and transactions on its own.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paychan-chain")
        self._watch_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paychan-watch")
        self._settle_guards: dict[bytes, asyncio.Lock] = {}

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._watch_executor.shutdown(wait=False, cancel_futures=True)

    def require_contract(self) -> PaychanContract:
        if self.node.contract is None:
            raise PaychanError("this node was started without a chain (--rpc-url and --contract)")
        return self.node.contract

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs a blocking chain call for the control API (the user's own actions) on its chain thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def run_for_watcher(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs a blocking chain call of the watcher on the watcher's own thread (nothing else queues there)."""
        return await asyncio.get_running_loop().run_in_executor(self._watch_executor, lambda: fn(*args, **kwargs))

    # --- reads -----------------------------------------------------------------------------------

    async def refresh_chain_time(self) -> int:
        """Reads the latest block's timestamp (a control action's chain call; none without a chain)."""
        node = self.node
        if node.contract is not None:
            node.note_chain_time(await self.run(node.contract.chain.now))
        return node.chain_now()

    async def wallet_accepts(self, wallet: str, digest: bytes, signature: Signature) -> bool:
        """Whether the counterparty ``wallet`` accepts ``signature`` of ``digest`` (ERC-1271, gas-capped): the
        one chain call a peer request may cause (``wallet_peers``), on the control chain thread."""
        contract = self.node.contract
        if contract is None:
            raise WalletCheckFailed(wallet, "this node was started without a chain")
        w3 = contract.chain.w3
        try:
            return await self.run(accepts_signature, w3, wallet, digest, signature)
        except Exception as exc:  # the RPC did not answer: nothing learnt, the peer retries later
            raise WalletCheckFailed(wallet, f"{type(exc).__name__}: {exc}") from None

    async def token_info(self, address: str) -> dict[str, Any]:
        """An asset's decimals and symbol, for amounts in its units (ETH: 18, no chain call)."""
        if address == ETH:
            return {"address": ETH, "decimals": 18, "symbol": "ETH"}
        token = Token(self.require_contract().chain, address)
        decimals, symbol = await self.run(lambda: (token.decimals(), token.symbol()))
        return {"address": address, "decimals": decimals, "symbol": symbol}

    # --- open, deposit ---------------------------------------------------------------------------

    async def open(self, peer_url: str, deposit: int, challenge_period: int, asset: str = ETH) -> Runtime:
        """Opens a channel in ``asset`` (ETH, or an ERC-20: approved first) to the node at ``peer_url``."""
        node = self.node
        contract = self.require_contract()
        info = await node.peer.get(peer_url.rstrip("/") + "/peer/info")
        if (
            info.get("chainId") != node.domain.chain_id
            or str(info.get("contract", "")).lower() != contract.address.lower()
        ):
            raise PaychanError(f"the peer at {peer_url} uses another chain or contract")
        counterparty = str(info.get("address"))
        if asset != ETH and deposit > 0:
            await self.run(ensure_allowance, Token(contract.chain, asset), node.sender, contract.address, deposit)
        params, receipt = await self.run(
            contract.open_channel, node.sender, counterparty, deposit, asset, challenge_period
        )
        cid = contract.channel_id(params)
        runtime = node.add_discovered(params)  # the watcher may have seen the ChannelOpened event first
        self._note_receipt_deposits(runtime, receipt)
        if node.store.set_peer_url(cid, peer_url.rstrip("/"), 1):
            runtime.record = node.store.channel(cid) or runtime.record
        if await node.announce_until_known(runtime, patience=node.announce_patience):
            node.network.greet(runtime)  # the fee announcements we hold
        else:
            node._background(node.announce_until_known(runtime, patience=3600.0))
        return runtime

    def _note_receipt_deposits(self, runtime: Runtime, receipt: Any) -> None:
        """The deposits a transaction of ours credited (its ``Deposited`` events), before the watcher sees them."""
        contract = self.require_contract()
        for event in contract.contract.events.Deposited().process_receipt(receipt, errors=DISCARD):
            total = int(event["args"]["total"])
            is_a = event["args"]["participant"] == runtime.record.params.participant_a
            self.node.note_deposits(runtime.cid, total if is_a else 0, 0 if is_a else total)

    async def deposit(self, cid: bytes | None, amount: int, for_peer: bool = False) -> dict[str, Any]:
        """Adds ``amount`` to our side (or, with ``for_peer``, the counterparty's) of an open channel."""
        node = self.node
        contract = self.require_contract()
        runtime = node.runtime(cid)
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        params = runtime.record.params
        participant = runtime.channel.peer_address if for_peer else node.address
        if params.asset != ETH:
            await self.run(ensure_allowance, Token(contract.chain, params.asset), node.sender, contract.address, amount)
        receipt = await self.run(contract.deposit, node.sender, params, participant, amount)
        self._note_receipt_deposits(runtime, receipt)
        return {
            "channelId": "0x" + runtime.cid.hex(),
            "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
            "participant": participant,
            "depositA": str(runtime.record.deposit_a),
            "depositB": str(runtime.record.deposit_b),
        }

    # --- close -----------------------------------------------------------------------------------

    async def close(self, cid: bytes | None) -> dict[str, Any]:
        """Cooperative close: both sign a final state (``Node.sign_final``), then we submit it; the contract
        pays out at once.

        If the peer does not countersign in time, nothing is closed and ``CloseTimeout`` says so; if our
        final state is already signed and sent, the node submits the close itself once the peer answers."""
        node = self.node
        contract = self.require_contract()
        runtime = node.runtime(cid)
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        final = await node.sign_final(runtime)
        receipt = await self.run(contract.cooperative_close, node.sender, runtime.record.params, final)
        node.mark_closed(runtime)
        # What was paid: the final state's balances plus deposits it does not know of (from the event).
        (settled,) = contract.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD)
        return {
            "channelId": "0x" + runtime.cid.hex(),
            "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
            "nonce": final.state.nonce,
            "payoutA": str(settled["args"]["payoutA"]),
            "payoutB": str(settled["args"]["payoutB"]),
        }

    async def close_when_countersigned(self, runtime: Runtime, final: asyncio.Future[SignedState]) -> None:
        """Submits the cooperative close once the peer countersigns our final state (after a timeout)."""
        signed = await final
        if runtime.record.status != STATUS_OPEN:
            return  # closed meanwhile (by the peer, or unilaterally)
        contract = self.require_contract()
        try:
            await self.run(contract.cooperative_close, self.node.sender, runtime.record.params, signed)
        except PaychanError as exc:
            log.warning("channel 0x%s: the delayed cooperative close failed: %s", runtime.cid.hex()[:12], exc)
            return
        self.node.mark_closed(runtime)
        log.warning("channel 0x%s: closed cooperatively once the peer answered", runtime.cid.hex()[:12])

    async def close_unilaterally(self, cid: bytes | None, lost_data: bool = False) -> dict[str, Any]:
        """Starts a unilateral close with our latest doubly-signed state (no peer needed); the watcher
        settles after the challenge period. A channel of a restored store must have synced with the peer
        first, unless ``lost_data`` (the user's override: the peer is gone for good)."""
        node = self.node
        contract = self.require_contract()
        runtime = node.runtime(cid)
        if runtime.record.status != STATUS_OPEN:
            raise ChannelNotOpen(runtime.record.status)
        check_may_close(node.store, runtime.cid, lost_data)
        latest = runtime.channel.state_for_chain(runtime.record.withdrawals)  # not one of a withdrawal unmade
        signed = latest if latest.is_complete and latest.state.nonce > 0 else None
        runtime.channel.check_close(signed)
        receipt = await self.run(contract.close, node.sender, runtime.record.params, signed)
        (closed,) = contract.contract.events.ChannelClosed().process_receipt(receipt, errors=DISCARD)
        args = closed["args"]
        node.note_close_event(runtime.cid, "ChannelClosed", args)
        return {
            "channelId": "0x" + runtime.cid.hex(),
            "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
            "nonce": int(args["nonce"]),
            "balanceA": str(args["balanceA"]),
            "balanceB": str(args["balanceB"]),
            "deadline": int(args["deadline"]),
        }

    # --- settle, claim ---------------------------------------------------------------------------

    async def settle(self, cid: bytes | None) -> dict[str, Any]:
        """Pays out the recorded state of a closing channel once its challenge period is over. A channel the
        chain paid out already (the node's auto-settle got there first, or it closed cooperatively) is
        answered with what it paid (``alreadySettled``), not an error: the caller's goal is reached."""
        from paychan.node.watcher import recorded_state

        node = self.node
        contract = self.require_contract()
        runtime = node.runtime(cid)
        async with self.settle_guard(runtime.cid):  # the watcher's auto-settle may be sending one right now
            recorded = recorded_state(runtime.record)
            record = runtime.record
            if recorded is None and record.status == STATUS_CLOSED and record.payout_a is not None:
                return {
                    "channelId": "0x" + runtime.cid.hex(),
                    "alreadySettled": True,
                    "payoutA": str(record.payout_a),
                    "payoutB": str(record.payout_b),
                    "deferred": {},
                }
            if recorded is None:
                raise NothingToSettle(runtime.record.status)
            now = await self.run(contract.chain.now)
            if now <= recorded.deadline:
                raise PaychanError(
                    f"the challenge period runs until {recorded.deadline} ({recorded.deadline - now} s from now): "
                    "settle after it (the node settles by itself unless started with --no-auto-settle)"
                )
            locks = node.lock_list(runtime.cid, recorded.locks_root)  # resolved against the secret registry
            receipt = await self.run(contract.settle, node.sender, runtime.record.params, recorded, locks=locks)
            if runtime.record.status != STATUS_CLOSED:
                node.mark_closed(runtime)
            return self._settled(runtime, receipt, recorded.nonce)

    def settle_guard(self, cid: bytes) -> asyncio.Lock:
        """Held while a settling transaction of channel ``cid`` is in flight (the control API's or the
        watcher's), so that two are never sent for one record: the second would revert on chain and cost
        its gas. The watcher skips a channel whose guard is held; ``settle`` waits for it, then finds the
        channel closed (``NothingToSettle``)."""
        guard = self._settle_guards.get(cid)
        if guard is None:
            guard = self._settle_guards[cid] = asyncio.Lock()
        return guard

    def _settled(self, runtime: Runtime, receipt: Any, nonce: int) -> dict[str, Any]:
        """What a settling transaction paid (``ChannelSettled``) and what it deferred (``PayoutDeferred``)."""
        contract = self.require_contract()
        (settled,) = contract.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD)
        deferred = contract.contract.events.PayoutDeferred().process_receipt(receipt, errors=DISCARD)
        self.node.note_settled(runtime.cid, int(settled["args"]["payoutA"]), int(settled["args"]["payoutB"]))
        return {
            "channelId": "0x" + runtime.cid.hex(),
            "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
            "nonce": nonce,
            "payoutA": str(settled["args"]["payoutA"]),
            "payoutB": str(settled["args"]["payoutB"]),
            "deferred": {e["args"]["recipient"]: str(e["args"]["amount"]) for e in deferred},
        }

    async def claim(self, asset: str = ETH) -> dict[str, Any]:
        """Collects our payouts in ``asset`` that could not be pushed (``owed``)."""
        node = self.node
        contract = self.require_contract()
        owed = await self.run(contract.owed, node.address, asset)
        if owed == 0:
            what = "ETH" if asset == ETH else f"token {asset}"
            raise PaychanError(f"nothing to claim: no payout in {what} was deferred to {node.address}")
        receipt = await self.run(contract.claim, node.sender, asset)
        (claimed,) = contract.contract.events.Claimed().process_receipt(receipt, errors=DISCARD)
        return {
            "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
            "asset": asset,
            "amount": str(claimed["args"]["amount"]),
        }

    # --- withdraw --------------------------------------------------------------------------------

    async def submit_withdrawal(self, runtime: Runtime, amount: int) -> dict[str, Any]:
        """Submits the channel's withdrawal both signed, waits for the receipt and records what it left."""
        node = self.node
        contract = self.require_contract()
        pending = runtime.channel.pending_withdrawal
        assert pending is not None and pending.sig_a is not None and pending.sig_b is not None
        withdrawal = pending.withdrawal
        try:
            receipt = await self.run(
                contract.withdraw, node.sender, runtime.record.params, withdrawal, pending.sig_a, pending.sig_b
            )
        except Exception as exc:  # the chain refused or failed it: it stays signed, to be submitted again
            raise WithdrawalNotMade(
                f"both signed the withdrawal of {amount_text(runtime, amount)}, but its transaction failed "
                f"({type(exc).__name__}: {exc}): nothing was withdrawn; run `paychan withdraw` with the same amount "
                f"to submit it again (until {withdrawal.expiry})"
            ) from None
        onchain = await self.run(contract.get_channel, runtime.cid)
        node.note_withdrawn(runtime.cid, onchain.withdrawals, onchain.deposit_a, onchain.deposit_b)
        runtime = node.runtimes[runtime.cid]
        return {
            "channelId": "0x" + runtime.cid.hex(),
            "amount": str(amount),
            "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
            "depositA": str(onchain.deposit_a),
            "depositB": str(onchain.deposit_b),
            "withdrawals": onchain.withdrawals,
            "nonce": runtime.channel.nonce,
            "myBalance": str(runtime.channel.balance()),
        }


__all__ = ["ChainActions"]
