"""A flood of strangers' announces at a node's peer endpoint, from several loopback addresses at once.

``CONNECTIONS`` clients (spread over the addresses 127.0.0.2 to 127.0.0.6) each send, one request per
connection, as fast as the node answers, announces of channels that do not exist: half unsigned, half
validly signed by a fresh key in the channel it invents (what an attacker makes at no cost). Requests are
built before the flood starts. Bounded by a request count and a duration; prints the answers' HTTP status
counts as JSON::

    python tests/node/flood.py PEER_URL RECIPIENT CHAIN_ID CONTRACT CONNECTIONS SECONDS MAX_REQUESTS
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

from eth_account import Account

from paychan.node.auth import sign_request
from paychan.node.messages import Announce
from paychan.signing import Domain
from paychan.state import ETH, ChannelParams


def build_requests(host: str, recipient: str, domain: Domain, count: int) -> list[bytes]:
    requests = []
    for number in range(count):
        stranger = os.urandom(32)
        params = ChannelParams(Account.from_key(stranger).address, recipient, ETH, 3600, 10**6 + number)
        body = json.dumps(Announce(params, "http://10.9.9.9:1", domain.chain_id, domain.verifying_contract).to_json())
        headers = {"Host": host, "Content-Type": "application/json", "Connection": "close"}
        if number % 2:
            headers.update(sign_request(domain, stranger, recipient, "POST", "/peer/channels", body.encode()))
        headers["Content-Length"] = str(len(body))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        requests.append(f"POST /peer/channels HTTP/1.1\r\n{head}\r\n{body}".encode())
    return requests


async def flood(url: str, requests: list[bytes], connections: int, seconds: float, max_requests: int) -> Counter[int]:
    parts = urlsplit(url)
    answers: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        sent = 0
        while time.monotonic() < deadline and sum(answers.values()) < max_requests:
            request = requests[(index + sent * connections) % len(requests)]
            sent += 1
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, parts.port, local_addr=(f"127.0.0.{2 + index % 5}", 0)), 5
                )
                writer.write(request)
                answer = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                answers[int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0] += 1
            except (OSError, TimeoutError, ValueError, IndexError):
                answers[0] += 1

    await asyncio.gather(*(client(i) for i in range(connections)))
    return answers


def main() -> None:
    url, recipient, chain_id, contract, connections, seconds, max_requests = sys.argv[1:8]
    domain = Domain(int(chain_id), contract)
    requests = build_requests(urlsplit(url).netloc, recipient, domain, 2000)
    print("flooding", flush=True)
    answers = asyncio.run(flood(url, requests, int(connections), float(seconds), int(max_requests)))
    print(json.dumps({str(k): v for k, v in answers.items()}), flush=True)


if __name__ == "__main__":
    main()
