"""The chain watcher: notices a unilateral close of one of the node's channels and answers it.

Every ``interval`` seconds it reads each channel's slot (``getChannel``). When a channel is closing it reads
the recorded state from the ``ChannelClosed`` / ``ChallengeAccepted`` events; if the node holds a newer
doubly-signed state it challenges with it before the deadline (a final state pays out at once). After the
deadline it settles the recorded state, so the funds are paid out without anyone having to ask.
"""

from __future__ import annotations

import asyncio
import logging

from paychan.contract import STATUS_CLOSING, STATUS_NONE
from paychan.node.server import Node, Runtime
from paychan.node.store import STATUS_CLOSED

log = logging.getLogger("paychan.node.watcher")


class Watcher:
    """Watches the chain for the channels of ``node``."""

    def __init__(self, node: Node, interval: float = 1.0) -> None:
        self.node = node
        self.interval = interval
        self.challenges = 0

    async def run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    async def check_all(self) -> None:
        for runtime in list(self.node.runtimes.values()):
            if runtime.record.status == STATUS_CLOSED:
                continue
            try:
                await self.check(runtime)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a flaky RPC must not stop the watch
                log.warning("watching 0x%s: %s: %s", runtime.cid.hex()[:12], type(exc).__name__, exc)

    async def check(self, runtime: Runtime) -> None:
        node, contract = self.node, self.node.contract
        assert contract is not None
        onchain = await node.on_chain(contract.get_channel, runtime.cid)
        if onchain.status == STATUS_NONE:
            log.info("channel 0x%s: closed on chain", runtime.cid.hex()[:12])
            node.mark_closed(runtime)
            return
        if onchain.status != STATUS_CLOSING:
            return
        recorded = await node.on_chain(contract.recorded_state, runtime.cid)
        if runtime.record.close_nonce != recorded.nonce or runtime.record.status != "closing":
            log.warning(
                "channel 0x%s: closed on chain with nonce %d (ours %d), deadline %d",
                runtime.cid.hex()[:12],
                recorded.nonce,
                runtime.channel.nonce,
                recorded.deadline,
            )
            node.mark_closing(runtime, recorded.nonce, recorded.deadline)
        latest = runtime.channel.latest
        now = await node.on_chain(contract.chain.now)
        if latest.state.nonce > recorded.nonce and latest.is_complete and now <= recorded.deadline:
            if (runtime.record.challenged_nonce or -1) >= latest.state.nonce:
                return  # already sent (the next poll sees the accepted challenge)
            await node.on_chain(contract.challenge, node.account, runtime.record.params, latest, recorded)
            node.store.set_challenged(runtime.cid, latest.state.nonce)
            runtime.record = node.store.channel(runtime.cid) or runtime.record
            self.challenges += 1
            log.warning("channel 0x%s: challenged with nonce %d", runtime.cid.hex()[:12], latest.state.nonce)
        elif now > recorded.deadline:
            await node.on_chain(contract.settle, node.account, runtime.record.params, recorded)
            node.mark_closed(runtime)
            log.info("channel 0x%s: settled nonce %d", runtime.cid.hex()[:12], recorded.nonce)
