"""Fixtures of the node tests: two parties' keys, a channel between them, stores in a temporary folder.

The chain-backed tests (integration, watcher) start their own anvil on a free port (an embedded chain cannot
be shared between processes) and stop it by PID, also when the test fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from paychan.node.process import NodeProcess
from paychan.node.server import Node, serve
from paychan.node.store import ChannelRecord, Store
from paychan.signing import Domain, sign_state
from paychan.state import ChannelParams, ChannelState, Nonce, SignedState, Wei, channel_id

# anvil's first dev accounts (well-known test keys, never used for real funds)
KEY_A = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
KEY_B = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
KEY_C = bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")
ADDRESS_A = Account.from_key(KEY_A).address
ADDRESS_B = Account.from_key(KEY_B).address
ADDRESS_C = Account.from_key(KEY_C).address
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PARAMS = ChannelParams(ADDRESS_A, ADDRESS_B, "0x0000000000000000000000000000000000000000", 3600, 1)
CID = channel_id(PARAMS, DOMAIN.chain_id, DOMAIN.verifying_contract)
DEPOSIT_A = 10**18


def make_state(
    nonce: int,
    balance_a: int,
    balance_b: int,
    is_final: bool = False,
    cid: bytes = CID,
    deposits: tuple[int, int] | None = None,
) -> ChannelState:
    """A state of the test channel; ``deposits`` by default the channel's: ``DEPOSIT_A`` from A."""
    deposit_a, deposit_b = deposits or (DEPOSIT_A, 0)
    return ChannelState(
        cid,  # type: ignore[arg-type]
        Nonce(nonce),
        Wei(balance_a),
        Wei(balance_b),
        b"\x00" * 32,
        is_final,
        deposit_a=Wei(deposit_a),
        deposit_b=Wei(deposit_b),
    )


def sign_both(state: ChannelState, key_a: bytes = KEY_A, key_b: bytes = KEY_B) -> SignedState:
    return SignedState(state, sign_state(DOMAIN, state, key_a), sign_state(DOMAIN, state, key_b))


def channel_record(
    role: str = "B", peer_url: str = "http://127.0.0.1:1", deposit_a: int = DEPOSIT_A, deposit_b: int = 0
) -> ChannelRecord:
    return ChannelRecord(CID, PARAMS, role, peer_url, deposit_a, deposit_b)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "node.db")
    db.add_channel(channel_record())
    yield db
    db.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveNode:
    """An in-process node serving its peer endpoint and control API on 127.0.0.1 (no chain)."""

    def __init__(self, node: Node, runners: tuple[Any, Any], peer_url: str, control_url: str) -> None:
        self.node, self.runners, self.peer_url, self.control_url = node, runners, peer_url, control_url

    @property
    def channel(self) -> Any:
        return self.node.runtimes[CID].channel

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a hostile message must not change: memory and disk."""
        runtime = self.node.runtimes[CID]
        rows = [(r.state, r.sig_a, r.sig_b) for r in self.node.store.states(CID)]
        return (runtime.channel.latest, runtime.channel.balances(), runtime.epoch, len(runtime.inflight), rows)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        await self.node.stop()
        self.node.store.close()


async def start_live_node(
    db: Path, key: bytes, role: str, port: int, peer_port: int, body_timeout: float = 5.0, keepalive: float = 5.0
) -> LiveNode:
    store = Store(db)
    fresh = store.channel(CID) is None
    node = Node(store, key, DOMAIN, body_timeout=body_timeout, payment_timeout=20.0)
    if fresh:  # as the watcher finds a new channel: its ChannelOpened and Deposited events, then the announce
        node.add_discovered(PARAMS)
        node.note_deposits(CID, DEPOSIT_A, 0)
        store.set_peer_url(CID, f"http://127.0.0.1:{peer_port}", 1)
        node.runtimes[CID].record = store.channel(CID)  # type: ignore[assignment]
    peer_runner, control_runner, peer_url, control_url = await serve(
        node, "127.0.0.1", port, keepalive_timeout=keepalive
    )
    return LiveNode(node, (peer_runner, control_runner), peer_url, control_url)


# --- the CLI and waiting -----------------------------------------------------------------------------------


def paychan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Runs ``paychan ARGV`` in this process; its exit code, stdout and stderr."""
    from paychan.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, out: str, err: str) -> str:
    """The one sentence a refused command printed (exit code 1, nothing on stdout)."""
    assert (code, out) == (1, ""), (code, out, err)
    (line,) = err.splitlines()
    assert line.startswith("paychan: error: ") and "Traceback" not in err
    return line.removeprefix("paychan: error: ")


def states_in(node: NodeProcess, cid: bytes) -> int:
    """How many states ``node``'s store holds for channel ``cid``."""
    store = Store(node.db)
    try:
        return len(store.states(cid))
    finally:
        store.close()


def open_channel_by_cli(
    capsys: pytest.CaptureFixture[str], alice: NodeProcess, bob: NodeProcess, deposit: str
) -> bytes:
    """``paychan open`` from alice's node to bob's with ``deposit``; the channel id."""
    code, out, err = paychan(
        capsys, "open", "--db", str(alice.db), "--peer", bob.peer_url, "--deposit", deposit, "--json"
    )
    assert code == 0, err
    return bytes.fromhex(json.loads(out)["channelId"][2:])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Polls ``condition`` every 50 ms until it holds; fails naming ``what`` after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- raw signed peer requests (a peer without a node) ----------------------------------------------------


def signed_request(
    url: str,
    payload: dict[str, Any] | None,
    key: bytes,
    recipient: str,
    domain: Domain,
    timeout: float = 30.0,
    participant: str | None = None,
) -> Any:
    """A peer request signed with ``key`` for ``recipient`` (POST with ``payload``, GET without), speaking for
    the contract wallet ``participant`` if given; raises ``urllib.error.HTTPError`` on an error answer."""
    import json
    import urllib.request
    from urllib.parse import urlsplit

    from paychan.node.auth import sign_request

    body = b"" if payload is None else json.dumps(payload).encode()
    method = "GET" if payload is None else "POST"
    headers = {
        "Content-Type": "application/json",
        **sign_request(domain, key, recipient, method, urlsplit(url).path, body, participant=participant),
    }
    request = urllib.request.Request(url, body if payload is not None else None, headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def announce_until_known(
    url: str, params: ChannelParams, key: bytes, recipient: str, domain: Domain, timeout: float = 30.0
) -> Any:
    """Announces ``url``'s channel until the node has seen it on chain (404 before)."""
    import time
    import urllib.error

    from paychan.node.messages import Announce

    deadline = time.monotonic() + timeout
    while True:
        try:
            announce = Announce(params, "http://127.0.0.1:9", domain.chain_id, domain.verifying_contract)
            return signed_request(url + "/peer/channels", announce.to_json(), key, recipient, domain)
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def carol_pays_bob_three_times(peer_url: str, cid: bytes, deposit: int, domain: Domain) -> list[SignedState]:
    """KEY_C (A, with ``deposit``) pays bob's node 0.1 ETH three times through its peer endpoint; the states
    bob countersigned (nonces 1 to 3: bob holds 0.1, 0.2 and 0.3 ETH)."""
    from paychan.node.messages import Propose, parse_signed

    countersigned: list[SignedState] = []
    for nonce in (1, 2, 3):
        paid = nonce * 10**17
        state = ChannelState(
            cid,  # type: ignore[arg-type]
            Nonce(nonce),
            Wei(deposit - paid),
            Wei(paid),
            deposit_a=Wei(deposit),
            deposit_b=Wei(0),
        )
        proposal = SignedState(state, sign_state(domain, state, KEY_C), None)
        answer = signed_request(
            peer_url + "/peer/propose",
            Propose(cid, 0, [proposal]).to_json(),
            KEY_C,
            ADDRESS_B,
            domain,  # type: ignore[arg-type]
        )
        countersigned.append(parse_signed(answer["states"][0]))
    return countersigned


# --- node processes on an anvil devnet ----------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def devnet() -> Iterator[Any]:
    """anvil on a free port, started for the node tests and stopped by PID (also when a test fails)."""
    from paychan.devnet import start_devnet

    net = start_devnet()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def devnet_contract(devnet: Any) -> Any:
    """A fresh deployment for each test: nodes discover every channel naming them on their contract, so
    channels a test leaves open must not appear in the next test's nodes."""
    from paychan.chain import rpc_chain
    from paychan.contract import PaychanContract

    chain = rpc_chain(devnet.url)
    contract, _ = PaychanContract.deploy(chain, chain.accounts[0])
    return contract


@pytest.fixture
def node_processes(tmp_path: Path, devnet: Any, devnet_contract: Any) -> Iterator[Callable[..., NodeProcess]]:
    """Factory of node processes (``extra``: more ``paychan node`` options); every one started is stopped by
    PID after the test, pass or fail."""
    started: list[NodeProcess] = []

    def make(
        name: str,
        key: bytes,
        rpc_url: str | None = None,
        poll_interval: float = 0.2,
        log_level: str = "WARNING",
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> NodeProcess:
        process = NodeProcess(
            tmp_path, name, key, rpc_url or devnet.url, devnet_contract.address, port or free_port(), PASSWORD,
            ("--poll-interval", str(poll_interval), "--payment-timeout", "5", "--log-level", log_level, *extra),
        )  # fmt: skip
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@contextmanager
def proxy_process(script: str, target: str, delay: float, *extra: str) -> Iterator[str]:
    """``tests/node/SCRIPT TARGET DELAY PORT EXTRA...`` (one of the proxies next to this file) in its own
    process on a free port, stopped by PID afterwards, pass or fail. Yields its URL once it accepts
    connections."""
    import socket
    import subprocess
    import sys
    import time

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name(script)), target, str(delay), str(port), *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{script} did not start (exit code {process.poll()})") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def rpc_proxy(target: str, delay: float) -> Iterator[str]:
    """A JSON-RPC proxy to ``target`` adding ``delay`` s to every call and counting them (``latency_proxy.py``,
    started and stopped by ``proxy_process``). Yields its URL."""
    with proxy_process("latency_proxy.py", target, delay) as url:
        yield url


@contextmanager
def peer_delay_proxy(target: str, delay: float, drop: str = "") -> Iterator[str]:
    """``peer_delay_proxy.py`` in front of ``target`` (a node's peer URL), holding every request ``delay`` s
    (started and stopped by ``proxy_process``); ``drop``: the requests it drops. Yields its URL."""
    with proxy_process("peer_delay_proxy.py", target, delay, *([drop] if drop else [])) as url:
        yield url


@pytest.fixture
def latency_proxy(devnet: Any) -> Iterator[str]:
    """A JSON-RPC proxy to the devnet adding 50 ms to every call (``rpc_proxy``). Yields its URL."""
    with rpc_proxy(devnet.url, 0.05) as url:
        yield url


@pytest.fixture
def rpc_counter(devnet: Any) -> Iterator[str]:
    """A JSON-RPC proxy to the devnet that only counts the calls (``rpc_calls``, ``eth_calls``). Yields its URL."""
    with rpc_proxy(devnet.url, 0.0) as url:
        yield url


def rpc_calls(proxy_url: str) -> dict[str, int]:
    """The JSON-RPC calls the latency proxy has forwarded so far, by method."""
    import json
    import urllib.request

    with urllib.request.urlopen(proxy_url + "/stats", timeout=10) as response:
        return dict(json.loads(response.read()))


def eth_calls(proxy_url: str, to: str, selector: bytes) -> int:
    """How many ``eth_call``s of ``selector`` on the contract at ``to`` the proxy has forwarded so far."""
    import json
    import urllib.request

    with urllib.request.urlopen(proxy_url + "/eth-calls", timeout=10) as response:
        counts = json.loads(response.read())
    return int(counts.get(f"{to.lower()} 0x{selector.hex()}", 0))
