"""A JSON-RPC proxy adding latency, as a hosted provider far away would: every request is held ``DELAY``
seconds, then forwarded to ``TARGET`` (requests are delayed concurrently, not one after the other).

``GET /stats`` answers the number of JSON-RPC calls forwarded so far, by method; ``GET /eth-calls`` the
``eth_call``s among them, by ``"<to> <4-byte selector>"`` (lowercase hex). Tests start it as a process on a
free port (a delay of 0 makes it a plain counter) and stop it by PID::

    python tests/node/latency_proxy.py TARGET_URL DELAY_SECONDS PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

from aiohttp import ClientSession, ClientTimeout, web


async def serve(target: str, delay: float, port: int) -> None:
    session = ClientSession(timeout=ClientTimeout(total=60))
    calls: Counter[str] = Counter()
    eth_calls: Counter[str] = Counter()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = json.loads(body)
            for call in payload if isinstance(payload, list) else [payload]:
                calls[str(call.get("method"))] += 1
                if call.get("method") == "eth_call":
                    tx = call["params"][0]
                    eth_calls[f"{str(tx.get('to')).lower()} {str(tx.get('data', tx.get('input', '')))[:10]}"] += 1
        except (ValueError, AttributeError, KeyError, IndexError, TypeError):
            calls["<unparsable>"] += 1
        await asyncio.sleep(delay)
        async with session.post(target, data=body, headers={"Content-Type": "application/json"}) as response:
            answer = await response.read()
            return web.Response(body=answer, status=response.status, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(calls))

    async def eth_call_stats(request: web.Request) -> web.Response:
        return web.json_response(dict(eth_calls))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", forward)
    app.router.add_get("/stats", stats)
    app.router.add_get("/eth-calls", eth_call_stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"latency proxy on http://127.0.0.1:{port} -> {target} (+{delay * 1000:.0f} ms)", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
