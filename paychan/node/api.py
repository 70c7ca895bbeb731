"""What the node's two aiohttp apps share (``peer_api``, ``control_api``): JSON answers, every error as a JSON
answer with its status (``errors_as_json``, ``STATUS_OF``), reading a request body within a size and a time
limit, and the keys under which an admitted peer request carries its signer, its time and its body."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from paychan.exceptions import MalformedMessage, PaychanError, ProposalPending, StateRejected, UnknownChannel
from paychan.node.auth import RateLimited, Unauthenticated
from paychan.node.exceptions import BodyTimeout, NotCounterparty, NotSynced, NotYourTurn, PaymentTimeout
from paychan.node.messages import MAX_BODY_BYTES, error_body
from paychan.node.peer import PeerRefused, PeerUnavailable
from paychan.node.store import DoubleSignRefused
from paychan.node.wallet_peers import UnknownParticipant, WalletCheckFailed, WalletSignerRefused
from paychan.signers import SignerUnavailable

log = logging.getLogger("paychan.node")

# What ``peer_api``'s admission leaves on an admitted peer request: who signed it, when, and its body.
SIGNER = web.RequestKey("signer", str)
SIGNED_AT = web.RequestKey("signedAt", int)
BODY = web.RequestKey("body", bytes)


def json_response(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status, content_type="application/json")


async def read_body(request: web.Request, timeout: float, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, at most ``limit`` bytes (else 413), within ``timeout`` s (else ``BodyTimeout``)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
            return await _read_at_most(request, limit)
    except TimeoutError:
        raise BodyTimeout(f"request body not received within {timeout}s") from None


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """The whole request body; 413 as soon as it grows past ``limit`` bytes (the rest stays unread)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


STATUS_OF: list[tuple[type[BaseException], int]] = [
    (NotCounterparty, 403),
    (UnknownParticipant, 403),
    (WalletSignerRefused, 403),
    (Unauthenticated, 401),
    (RateLimited, 429),
    (NotSynced, 409),
    (MalformedMessage, 400),
    (UnknownChannel, 404),
    (BodyTimeout, 408),
    (NotYourTurn, 409),
    (ProposalPending, 409),
    (StateRejected, 422),
    (DoubleSignRefused, 409),
    (PaymentTimeout, 504),
    (PeerUnavailable, 502),
    (PeerRefused, 502),
    (SignerUnavailable, 502),
    (WalletCheckFailed, 503),
    (PaychanError, 400),
]


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error becomes a JSON answer ``{"error": {type, message, fields}}`` with a fitting status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        body = {"error": {"type": type(exc).__name__, "message": exc.text or exc.reason, "fields": {}}}
        response = json_response(body, exc.status)
        if exc.status in (408, 413):
            response.force_close()
        return response
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        status = next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 500)
        if status == 500:
            log.exception("internal error on %s", request.path)
        response = json_response(error_body(exc), status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
        if isinstance(exc, (BodyTimeout, RateLimited, Unauthenticated)):
            response.force_close()  # the body may be unread: the connection cannot carry another request
        return response


__all__ = ["BODY", "SIGNED_AT", "SIGNER", "STATUS_OF", "errors_as_json", "json_response", "read_body"]
