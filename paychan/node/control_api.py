"""The control API (``control_app``): the aiohttp app of the node's own user, on 127.0.0.1 behind the bearer
token the node writes to ``<db>.control.json`` (``paychan.node.control`` is its client, the CLI on top).

Each handler parses its request, calls one method of the node (``Node``: payments, locks, status; its
``chain``: open, deposit, close, settle, claim; ``network``: fees and routes; ``transfers``: payments through
intermediaries; ``withdraw``), and translates the answer or the exception into JSON (``api``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from eth_utils.address import to_checksum_address

from paychan.exceptions import InvalidAmount, MalformedMessage
from paychan.node import withdraw
from paychan.node.api import errors_as_json, json_response, read_body
from paychan.node.messages import decode_json, encode_signed, parse_channel_id
from paychan.state import ETH, MAX_UINT40, MAX_UINT256, SignedState
from paychan.transfer.state import _uint as _bounded_uint

if TYPE_CHECKING:
    from paychan.node.server import Node, PayOutcome, Runtime


def control_app(node: Node) -> web.Application:
    """The control API of ``node``."""
    return ControlApi(node).app()


class ControlApi:
    """The handlers of the control API, each of one route."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024, middlewares=[errors_as_json, self._authorize])
        app.router.add_get("/status", self._status)
        app.router.add_post("/open", self._open)
        app.router.add_post("/pay", self._pay)
        app.router.add_post("/pay/cancel", self._pay_cancel)
        app.router.add_post("/close", self._close)
        app.router.add_post("/settle", self._settle)
        app.router.add_post("/claim", self._claim)
        app.router.add_post("/deposit", self._deposit)
        app.router.add_post("/locks/secret", self._lock_secret)
        app.router.add_post("/locks/add", self._lock_add)
        app.router.add_post("/locks/settle", self._lock_settle)
        app.router.add_post("/locks/expire", self._lock_expire)
        app.router.add_post("/withdraw", self._withdraw)
        app.router.add_get("/token/{address}", self._token)
        app.router.add_get("/fees", self._fees)
        app.router.add_post("/fees", self._set_fees)
        app.router.add_post("/route", self._route)
        app.router.add_get("/transfers", self._transfers)
        app.router.add_post("/transfers", self._pay_routed)
        return app

    @web.middleware
    async def _authorize(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        expected = f"Bearer {self.node.control_token}"
        if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
            return json_response(
                {"error": {"type": "Unauthorized", "message": "missing or wrong control token", "fields": {}}}, 401
            )
        return await handler(request)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        return decode_json(await read_body(request, self.node.body_timeout))

    # --- channels ----------------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        return json_response(self.node.status())

    async def _open(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        runtime = await self.node.chain.open(
            str(data["peer"]),
            _int(data.get("deposit", "0")),
            _int(data.get("challengePeriod", 3600)),
            _address(data.get("asset", ETH)),
        )
        return json_response(
            {
                "channelId": "0x" + runtime.cid.hex(),
                "params": runtime.record.params.to_json(),
                "depositA": str(runtime.record.deposit_a),
                "announced": bool(runtime.record.peer_url),
            }
        )

    async def _pay(self, request: web.Request) -> web.Response:
        """Pays and reports exactly what happened: 200 when every payment went through; otherwise an error
        ``PayIncomplete`` whose fields say how many were paid, refused, cancelled and still in flight."""
        data = await self._json(request)
        runtime = self.node.resolve(_channel_name(data))
        request_id = data.get("requestId")
        outcome = await self.node.pay_request(
            runtime.cid,
            _int(data.get("amount")),
            _int(data.get("count", 1)),
            None if request_id is None else str(request_id)[:64],
        )
        return self._pay_answer(outcome)

    def _pay_answer(self, outcome: PayOutcome) -> web.Response:
        node = self.node
        runtime = node.runtimes[outcome.channel_id]
        body: dict[str, Any] = {
            "channelId": "0x" + runtime.cid.hex(),
            "outcome": outcome.outcome,
            "requested": outcome.requested,
            "amount": str(outcome.amount),
            "paid": len(outcome.paid),
            "refused": outcome.refused,
            "reason": outcome.reason,
            "cancelled": outcome.cancelled,
            "inFlight": outcome.in_flight,
            "nonce": runtime.channel.nonce,
            "myBalance": str(runtime.channel.balance()),
            "state": encode_signed(outcome.paid[-1]) if outcome.paid else None,
            "summary": node.describe_outcome(outcome),
        }
        if outcome.outcome == "done":
            return json_response(body)
        status = 504 if outcome.outcome == "pending" else 409
        return json_response({"error": {"type": "PayIncomplete", "message": body["summary"], "fields": body}}, status)

    async def _pay_cancel(self, request: web.Request) -> web.Response:
        """Interrupts a pay request (Ctrl-C): what was not signed yet is taken back; answers its outcome."""
        data = await self._json(request)
        return self._pay_answer(await self.node.cancel_pay(str(data.get("requestId"))))

    async def _close(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        node = self.node
        runtime = node.resolve(_channel_name(data))
        if data.get("unilateral"):
            return json_response(
                await node.chain.close_unilaterally(runtime.cid, lost_data=data.get("lostData") is True)
            )
        return json_response(await node.chain.close(runtime.cid))

    async def _settle(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        node = self.node
        return json_response(await node.chain.settle(node.resolve(_channel_name(data), any_status=True).cid))

    async def _claim(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        return json_response(await self.node.chain.claim(_address(data.get("asset", ETH))))

    async def _deposit(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        node = self.node
        runtime = node.resolve(_channel_name(data))
        amount, for_peer = _int(data.get("amount")), bool(data.get("forPeer", False))
        return json_response(await node.chain.deposit(runtime.cid, amount, for_peer))

    async def _token(self, request: web.Request) -> web.Response:
        """An asset's decimals and symbol, for amounts in its units (ETH: 18, no chain call)."""
        return json_response(await self.node.chain.token_info(_address(request.match_info["address"])))

    async def _withdraw(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        runtime = self.node.resolve(_channel_name(data))
        expires_in = _int(data.get("expiresIn", withdraw.DEFAULT_EXPIRES_IN))
        return json_response(await withdraw.withdraw(self.node, runtime.cid, _int(data.get("amount")), expires_in))

    # --- locks -------------------------------------------------------------------------------------

    async def _lock_secret(self, request: web.Request) -> web.Response:
        """Keeps a secret (given, or a fresh one) for a lock the peer is to add; answers it and its hashlock."""
        data = await self._json(request)
        given = data.get("secret")
        secret, lock_hash = self.node.new_secret(None if given is None else _bytes32(given, "secret"))
        return json_response({"secret": "0x" + secret.hex(), "hashlock": "0x" + lock_hash.hex()})

    async def _lock_add(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        runtime = self.node.resolve(_channel_name(data))
        amount = _int(data.get("amount"))
        if not 0 < amount <= MAX_UINT256:
            raise InvalidAmount(amount)
        lock_hash = _bytes32(data.get("hashlock"), "hashlock")
        expiry = None if data.get("expiry") is None else _int(data["expiry"])
        if expiry is not None and not 0 < expiry <= MAX_UINT40:
            raise MalformedMessage(f"expiry {expiry} is not a timestamp (uint40)")
        signed = await self.node.add_lock(runtime.cid, amount, lock_hash, expiry)
        return json_response(self._lock_answer(runtime, signed))

    async def _lock_settle(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        runtime = self.node.resolve(_channel_name(data))
        signed = await self.node.settle_lock(runtime.cid, _bytes32(data.get("secret"), "secret"))
        return json_response(self._lock_answer(runtime, signed))

    async def _lock_expire(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        runtime = self.node.resolve(_channel_name(data))
        signed = await self.node.expire_lock(runtime.cid, _bytes32(data.get("hashlock"), "hashlock"))
        return json_response(self._lock_answer(runtime, signed))

    def _lock_answer(self, runtime: Runtime, signed: SignedState) -> dict[str, Any]:
        return {
            "channelId": "0x" + runtime.cid.hex(),
            "nonce": signed.state.nonce,
            "myBalance": str(runtime.channel.balance()),
            "locks": [self.node.lock_json(runtime, lock) for lock in runtime.channel.locks],
            "state": encode_signed(signed),
        }

    # --- the network: fees, routes, payments through intermediaries --------------------------------

    async def _fees(self, request: web.Request) -> web.Response:
        return json_response(self.node.network.own_fees())

    async def _set_fees(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        cid = None if data.get("channel") in (None, "") else parse_channel_id(data["channel"])
        network = self.node.network
        announced = await network.set_fees(_uint(data.get("baseFee"), "baseFee"), _uint(data.get("ppm"), "ppm"), cid)
        return json_response({"announced": [a.update.to_json() for a in announced]})

    async def _route(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        to = data.get("to")
        if not isinstance(to, str) or len(to) != 42:
            raise MalformedMessage(f"to is a 0x-prefixed address, not {to!r}")
        try:
            target = to_checksum_address(to)
        except ValueError:
            raise MalformedMessage(f"to is a 0x-prefixed address, not {to!r}") from None
        amount = _uint(data.get("amount"), "amount")
        if amount == 0:
            raise MalformedMessage("a payment amount is positive")
        network = self.node.network
        found = network.routes(target, amount, _uint(data.get("k", 3), "k"))
        return json_response({"to": target, "amount": str(amount), "routes": [network.route_json(r) for r in found]})

    async def _transfers(self, request: web.Request) -> web.Response:
        return json_response(self.node.transfers.summary())

    async def _pay_routed(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        to = data.get("to")
        if not isinstance(to, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", to):
            raise MalformedMessage(f"to is a 0x-prefixed address, not {to!r}")
        amount = _bounded_uint(data.get("amount"), "amount", 2**256 - 1)
        if amount == 0:
            raise MalformedMessage("a payment amount is positive")
        k = _bounded_uint(data.get("k", 3), "k", 10)
        timeout = data.get("timeout", 60)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= 3600:
            raise MalformedMessage("timeout is a whole number of seconds, 1 to 3600")
        return json_response(await self.node.transfers.pay(to, amount, k, float(timeout)))


# --- parsing -----------------------------------------------------------------------------------------


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise MalformedMessage("expected an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MalformedMessage(f"expected an integer, got {value!r}") from None


def _bytes32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        raise MalformedMessage(f"{what} must be 0x and 64 hex digits, got {str(value)[:80]!r}")
    return bytes.fromhex(value[2:])


def _channel_name(data: dict[str, Any]) -> Any:
    """The channel a control request names (``channel``: an id or prefix; ``channelId``: the full id)."""
    return data.get("channel", data.get("channelId"))


def _address(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise MalformedMessage(f"expected an address (0x and 40 hex digits), got {value!r}")
    return to_checksum_address(value)


def _uint(value: Any, name: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise MalformedMessage(f"{name} must be an unsigned integer (a decimal string or a JSON integer), not {value!r}")


__all__ = ["ControlApi", "control_app"]
