"""The peer endpoint (``peer_app``): the aiohttp app other nodes talk to, which admits each request
(``PeerApi._authenticate``: its claim, its sender's budget, its body and its signature, in that order),
parses its body and hands it to one method of the node (``Node.answer_proposal``, ``give_turn``,
``handle_announce``, ``countersign_withdrawal``, ``latest_state``; ``NodeNetwork.receive``,
``NodeTransfers.receive``), whose answer or exception it translates into JSON (``api``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from paychan.node import withdraw
from paychan.node.api import BODY, SIGNED_AT, SIGNER, errors_as_json, json_response, read_body
from paychan.node.auth import RateLimited, Unauthenticated, read_claim
from paychan.node.messages import (
    MAX_BODY_BYTES,
    decode_json,
    parse_announce,
    parse_channel_id,
    parse_propose,
    parse_turn,
)
from paychan.node.wallet_peers import UnknownParticipant

if TYPE_CHECKING:
    from paychan.node.server import Node


def peer_app(node: Node) -> web.Application:
    """The peer endpoint of ``node``."""
    return PeerApi(node).app()


class PeerApi:
    """The handlers of the peer endpoint, each of one route."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[errors_as_json, self._authenticate])
        app.router.add_get("/peer/info", self._info)
        app.router.add_post("/peer/propose", self._propose)
        app.router.add_post("/peer/turn", self._turn)
        app.router.add_post("/peer/channels", self._announce)
        app.router.add_post("/peer/withdraw", self._withdraw)
        app.router.add_get("/peer/channels/{cid}/latest", self._latest)
        app.router.add_post("/peer/fees", self._fees)
        app.router.add_post("/peer/transfer", self._transfer)
        return app

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Admits a peer request: its claim, its sender's budget, its body and its signature, in that order.

        Nothing is parsed, stored or asked of the chain before the signature has been checked; a request
        over budget is refused before its body is read. ``request[SIGNER]`` is who signed it.
        """
        node = self.node
        gate, ip = node.gate, request.remote or "unknown"
        if request.path == "/peer/info":  # public and constant, but strangers' budget still applies
            gate.admit_stranger(ip)
            gate.charge_stranger(ip)
            return await handler(request)
        try:
            claim = read_claim(request.headers)
        except Unauthenticated:
            gate.admit_stranger(ip)
            gate.charge_stranger(ip)
            raise
        who = claim.speaks_for  # the signer, or the contract wallet it claims to speak for
        known = who in node.counterparties or node.transfers.awaits_secret_request(who)
        if known:
            gate.admit_peer(who, ip)
        else:
            gate.admit_stranger(ip)
            if claim.participant is not None:  # a wallet we have no channel with: nothing to check, no chain call
                gate.charge_stranger(ip)
                raise UnknownParticipant(who)
        body = await read_body(request, node.body_timeout, MAX_BODY_BYTES if known else gate.limits.stranger_body_bytes)
        try:
            digest = claim.verify(node.domain, node.address, request.method, request.rel_url.raw_path, body)
            node.replays.check_and_remember(digest, claim.timestamp_ms, claim.checked_at)
            if claim.participant is not None:  # the signer speaks for the wallet: known, or checked once
                await node.wallet_peers.admit(who, claim.signer, digest, claim.signature)
        except (Unauthenticated, RateLimited):
            if known:
                gate.charge_forgery(ip)
            else:
                gate.charge_stranger(ip)
            raise
        if known:
            gate.charge_peer(who, body.count(b'"sigA"'))  # one share per state carried
        else:
            gate.charge_stranger(ip)
        request[SIGNER], request[SIGNED_AT], request[BODY] = who, claim.timestamp_ms, body
        return await handler(request)

    async def _info(self, request: web.Request) -> web.Response:
        node = self.node
        return json_response(
            {"address": node.address, "chainId": node.domain.chain_id, "contract": node.domain.verifying_contract}
        )

    async def _propose(self, request: web.Request) -> web.Response:
        return json_response(await self.node.answer_proposal(parse_propose(request[BODY]), request[SIGNER]))

    async def _turn(self, request: web.Request) -> web.Response:
        return json_response(await self.node.give_turn(parse_turn(request[BODY]), request[SIGNER]))

    async def _announce(self, request: web.Request) -> web.Response:
        record = self.node.handle_announce(parse_announce(request[BODY]), request[SIGNER], request[SIGNED_AT])
        return json_response(
            {"type": "announced", "channelId": "0x" + record.channel_id.hex(), "peerUrl": record.peer_url}
        )

    async def _withdraw(self, request: web.Request) -> web.Response:
        message = withdraw.parse_withdraw(request[BODY])
        return json_response(await self.node.countersign_withdrawal(message, request[SIGNER]))

    async def _latest(self, request: web.Request) -> web.Response:
        return json_response(self.node.latest_state(parse_channel_id(request.match_info["cid"]), request[SIGNER]))

    async def _fees(self, request: web.Request) -> web.Response:
        return json_response(self.node.network.receive(request[SIGNER], request[BODY]))

    async def _transfer(self, request: web.Request) -> web.Response:
        return json_response(await self.node.transfers.receive(request[SIGNER], decode_json(request[BODY])))


__all__ = ["PeerApi", "peer_app"]
