"""The tower's HTTP service (aiohttp): it only turns requests into calls of the registry and the watcher.

- ``POST /pushes`` ``{"pushes": [push, ...]}`` (1 to ``MAX_PUSHES_PER_REQUEST``, body at most
  ``MAX_BODY_BYTES``): one result per push, ``{"accepted": true, "channelId", "nonce"}`` once it is committed,
  or ``{"accepted": false, "error": {"type", "message", "fields"}}`` naming the refusal
  (``paychan.tower.protocol``); a body that is no push request at all is answered 400.
- ``POST /fetch`` (a ``TowerFetch`` signed by the client within ``FETCH_WINDOW`` of the tower's clock):
  ``{"push": ...}``, what the tower holds of that channel for that client (a client restored from an old
  backup reads its newest state back), 404 if nothing.
- ``GET /status``: what the tower watches, in totals only (chain, contract, the tower's gas account, held
  channels by phase, the last block processed, transactions sent): no channel's data.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from paychan.exceptions import PaychanError
from paychan.node.messages import MAX_BODY_BYTES, decode_json, error_body
from paychan.tower.protocol import parse_pushes, verify_fetch
from paychan.tower.registry import Registry
from paychan.tower.watcher import TowerWatcher

REGISTRY_KEY: web.AppKey[Registry] = web.AppKey("registry", Registry)
WATCHER_KEY: web.AppKey[TowerWatcher] = web.AppKey("watcher", TowerWatcher)
BODY_TIMEOUT = 10.0  # seconds a client has to send its request body


async def push(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    try:
        body = await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        raw_pushes = parse_pushes(decode_json(body))
    except PaychanError as exc:
        return web.json_response(error_body(exc), status=400)
    except TimeoutError:
        return web.json_response({"error": {"type": "Timeout", "message": "body too slow", "fields": {}}}, status=408)
    return web.json_response({"results": await registry.submit(raw_pushes)})


async def fetch(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    try:
        body = await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        cid, client = verify_fetch(decode_json(body), registry.domain, int(time.time()))
    except PaychanError as exc:
        return web.json_response(error_body(exc), status=getattr(exc, "http_status", 400))
    except TimeoutError:
        return web.json_response({"error": {"type": "Timeout", "message": "body too slow", "fields": {}}}, status=408)
    held = registry.held(cid, client)
    if held is None:
        message = f"the tower holds nothing of channel 0x{cid.hex()} for {client}"
        return web.json_response({"error": {"type": "NothingHeld", "message": message, "fields": {}}}, status=404)
    return web.json_response({"push": held.to_json()})


async def status(request: web.Request) -> web.Response:
    return web.json_response(tower_status(request.app[REGISTRY_KEY], request.app[WATCHER_KEY]))


def tower_status(registry: Registry, watcher: TowerWatcher | None) -> dict[str, Any]:
    store = registry.store
    phases: dict[str, int] = {"open": 0, "closing": 0, "settled": 0}
    for held in registry.index.values():
        phases[held.phase] = phases.get(held.phase, 0) + 1
    result: dict[str, Any] = {
        "chainId": registry.domain.chain_id,
        "contract": registry.domain.verifying_contract,
        "watched": len(registry.index),
        "phases": phases,
        "channelsOpenedOnChain": store.opened_count(),
        "scannedTo": registry.scanned_to,
        "acceptedSinceStart": registry.accepted,
    }
    if watcher is not None:
        result["account"] = watcher.account.address
        result["sent"] = dict(watcher.actions)
        result["recordsFromChain"] = watcher.records_from_chain
    return result


def make_app(registry: Registry, watcher: TowerWatcher) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[REGISTRY_KEY] = registry
    app[WATCHER_KEY] = watcher
    app.router.add_post("/pushes", push)
    app.router.add_post("/fetch", fetch)
    app.router.add_get("/status", status)
    return app


async def serve(registry: Registry, watcher: TowerWatcher, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Starts the service on ``host:port`` (0: a free port); the runner and the URL it listens at."""
    runner = web.AppRunner(make_app(registry, watcher), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"
