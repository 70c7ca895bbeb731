"""The client side of the peer protocol: one aiohttp ``ClientSession`` per node, kept alive between calls.

Every request but ``GET /peer/info`` is signed for its recipient (``paychan.node.auth``): the node's key
signs the method, path, a timestamp and the body, so the receiver knows which participant sent it. The node
of a contract wallet signs with the wallet's owner key and names the wallet (``participant``).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from eth_account import Account
from yarl import URL

from paychan.exceptions import PaychanError
from paychan.node import trace
from paychan.node.auth import sign_request
from paychan.node.messages import MAX_BODY_BYTES
from paychan.signing import Domain


class PeerUnavailable(PaychanError):
    """Raised when the peer's node does not answer (refused, reset, timed out, not JSON)."""


class PeerUnreachable(PeerUnavailable):
    """Raised when no connection to the peer's node could be made: the request never left this node."""


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

    def __init__(
        self,
        timeout: float = 10.0,
        domain: Domain | None = None,
        private_key: bytes | None = None,
        participant: str | None = None,
    ) -> None:
        """``domain`` and ``private_key`` sign the requests; without them only unsigned requests go out.
        ``participant``: the contract wallet the key speaks for (``Paychan-Participant``), if any."""
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.domain, self._key, self.participant = domain, private_key, participant
        self._signer = None if private_key is None else Account.from_key(private_key).address
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

    def headers(self, method: str, url: str, body: bytes, recipient: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if recipient is not None:
            if self.domain is None or self._key is None:
                raise PaychanError("this peer client has no key to sign requests with")
            headers.update(
                sign_request(
                    self.domain,
                    self._key,
                    recipient,
                    method,
                    URL(url).raw_path,
                    body,
                    signer=self._signer,
                    participant=self.participant,
                )
            )
        return headers

    async def request(
        self, method: str, url: str, payload: dict[str, Any] | None = None, recipient: str | None = None
    ) -> dict[str, Any]:
        """The peer's JSON answer; raises ``PeerRefused`` for an error answer, ``PeerUnavailable`` for none.

        With ``recipient`` (the peer's address) the request is signed for it."""
        if not url.startswith(("http://", "https://")):
            raise PeerUnavailable(f"no URL for the peer yet ({url!r}): it has not announced where it listens")
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        headers = self.headers(method, url, body, recipient)
        started = trace.now()
        try:
            return await self._exchange(method, url, body, headers)
        finally:
            if trace.DIRECTORY:
                kind = str((payload or {}).get("type") or ("propose" if payload and "states" in payload else ""))
                trace.note("REQ", started, url.split("/", 3)[-1], kind)

    async def _exchange(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            async with self.session.request(method, url, data=body or None, headers=headers) as response:
                status = response.status
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        break
                body = b"".join(chunks)
        except aiohttp.ClientConnectorError as exc:  # the connection failed: nothing was sent
            raise PeerUnreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
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

    async def post(self, url: str, payload: dict[str, Any], recipient: str | None = None) -> dict[str, Any]:
        return await self.request("POST", url, payload, recipient)

    async def get(self, url: str, recipient: str | None = None) -> dict[str, Any]:
        return await self.request("GET", url, None, recipient)
