"""The client side of the peer protocol: one aiohttp ``ClientSession`` per node, kept alive between calls."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from paychan.exceptions import PaychanError
from paychan.node.messages import MAX_BODY_BYTES


class PeerUnavailable(PaychanError):
    """Raised when the peer's node does not answer (refused, reset, timed out, not JSON)."""


class PeerRefused(PaychanError):
    """Raised when the peer's node answers with an error; ``error`` is its error object."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status, self.error = status, error
        super().__init__(f"peer refused ({status}): {error.get('type', '?')}: {error.get('message', '')}")

    @property
    def type(self) -> str:
        return str(self.error.get("type", ""))


class PeerClient:
    """Sends peer messages; every call has a total timeout and reads at most ``MAX_BODY_BYTES``."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=16, force_close=False),
                json_serialize=lambda obj: json.dumps(obj, separators=(",", ":")),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, url: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """The peer's JSON answer; raises ``PeerRefused`` for an error answer, ``PeerUnavailable`` for none."""
        try:
            async with self.session.request(method, url, json=payload) as response:
                status = response.status
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        break
                body = b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        if len(body) > MAX_BODY_BYTES:
            raise PeerUnavailable(f"{method} {url}: answer larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body)
        except ValueError:
            raise PeerUnavailable(f"{method} {url}: answer ({status}) is not JSON") from None
        if not isinstance(data, dict):
            raise PeerUnavailable(f"{method} {url}: answer is not a JSON object")
        if status != 200:
            error = data.get("error")
            raise PeerRefused(status, error if isinstance(error, dict) else {"message": str(data)[:200]})
        return data

    async def post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", url, payload)

    async def get(self, url: str) -> dict[str, Any]:
        return await self.request("GET", url)
