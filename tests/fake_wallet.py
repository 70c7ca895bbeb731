"""A fake JSON-RPC wallet (a remote signer) on 127.0.0.1, shared by the signer tests and the node tests.

It answers each request with ``reply(request)`` when a test sets one; otherwise it forwards the request to
``upstream`` (anvil, whose unlocked dev accounts sign ``eth_signTypedData_v4``). ``mode`` bends the signing:
``honest`` as is; ``other-key`` asks the upstream to sign as ``other_address`` instead (a wallet that picked
another account); ``refuse`` answers the user's rejection (4001); ``down`` answers HTTP 503 to everything
(``eth_accounts`` too). ``hold()`` makes signing requests wait (``signing`` is set when one arrives) until
``release()``: a slow signer whose slowness a test orders events around, without timing anything.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIGN = "eth_signTypedData_v4"


class FakeWallet:
    """See the module docstring. ``requests``: every request received; ``signed``: the address each
    signing request named (as the client sent it)."""

    def __init__(self, upstream: str | None = None, other_address: str | None = None) -> None:
        self.upstream, self.other_address = upstream, other_address
        self.reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.mode = "honest"
        self.requests: list[dict[str, Any]] = []
        self.signed: list[str] = []
        self.signing = threading.Event()  # set when a signing request arrives (while held)
        self._open = threading.Event()
        self._open.set()
        wallet = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                wallet.requests.append(request)
                if request.get("method") == SIGN:
                    wallet.signed.append(request["params"][0])
                if wallet.mode == "down":
                    self.send_error(503)
                    return
                if request.get("method") == SIGN:
                    wallet.signing.set()
                    wallet._open.wait(60)
                    if wallet.mode == "down":  # went down while the request waited
                        self.send_error(503)
                        return
                self._answer(wallet.answer(request, body))

            def _answer(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def answer(self, request: dict[str, Any], body: bytes) -> bytes:
        """The reply body to ``request`` (its raw ``body``)."""
        if self.reply is not None:
            return json.dumps({"jsonrpc": "2.0", "id": request["id"], **self.reply(request)}).encode()
        if request.get("method") == SIGN and self.mode == "refuse":
            refusal = {"code": 4001, "message": "User rejected the request."}
            return json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": refusal}).encode()
        if request.get("method") == SIGN and self.mode == "other-key":
            request["params"][0] = self.other_address
            body = json.dumps(request).encode()
        assert self.upstream is not None, "a fake wallet without upstream needs a reply"
        upstream = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(upstream, timeout=10) as response:
            reply: bytes = response.read()
        return reply

    def hold(self) -> None:
        """Signing requests wait from now on (until ``release``)."""
        self.signing.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._open.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def running_wallet(upstream: str | None = None, other_address: str | None = None) -> Iterator[FakeWallet]:
    """A fixture body: a ``FakeWallet``, stopped after the test."""
    wallet = FakeWallet(upstream, other_address)
    try:
        yield wallet
    finally:
        wallet.stop()
