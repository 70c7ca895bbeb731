"""An HTTP proxy in front of a node's peer endpoint that holds every request ``DELAY`` seconds before it
forwards it (method, path, headers and body unchanged, so the request's signature still holds), as a node
far away would answer. Tests give it to a node as its ``--public-url`` (where its peers and payees reach
it), start it as a process on a free port and stop it by PID::

    python tests/node/peer_delay_proxy.py TARGET_URL DELAY_SECONDS PORT [DROP]

With ``DROP``, a request whose body contains that text is answered 502 and not forwarded (e.g.
``secretRequest``: the node never hears its payees ask for a secret).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import ClientSession, ClientTimeout, web

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


async def serve(target: str, delay: float, port: int, drop: str = "") -> None:
    session = ClientSession(timeout=ClientTimeout(total=60))

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(delay)
        if drop and drop.encode() in body:
            return web.Response(status=502, text="proxy: dropped")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = target.rstrip("/") + str(request.rel_url)
        try:
            async with session.request(request.method, url, data=body or None, headers=headers) as response:
                answer = await response.read()
                return web.Response(body=answer, status=response.status, content_type=response.content_type)
        except Exception as exc:  # the node is down: as if the connection broke
            return web.Response(status=502, text=f"proxy: {type(exc).__name__}")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"peer delay proxy on http://127.0.0.1:{port} -> {target} (+{delay * 1000:.0f} ms)", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:5]))
