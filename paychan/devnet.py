"""A local devnet: anvil (from the npm package ``@foundry-rs/anvil``) on 127.0.0.1, started and stopped by PID.

``start_devnet()`` picks a free port (or takes one), starts anvil with the well-known dev mnemonic and the
contract's hardfork, waits until it answers JSON-RPC and returns a ``Devnet``: its URL, PID, chain id and
funded accounts. ``Devnet.stop()`` sends SIGTERM to that PID (then SIGKILL if it lingers). Nothing is
downloaded: the anvil binary ships in ``node_modules``.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from paychan.chain import ANVIL_MNEMONIC, Chain, rpc_chain
from paychan.compile import EVM_VERSION, project_root
from paychan.exceptions import ChainUnavailable, PaychanError

HOST = "127.0.0.1"
DEFAULT_PORT = 8545
ANVIL_CHAIN_ID = 31337
DEFAULT_ACCOUNTS = 10
DEFAULT_BALANCE_ETH = 10_000


class DevnetError(PaychanError):
    """Raised when anvil cannot be found, does not start, or stops answering."""


def find_anvil(root: Path | None = None) -> Path:
    """The anvil executable: the platform binary of the npm package, else its ``node_modules/.bin`` launcher.

    The native binary is preferred so the PID we hold is anvil's own (the launcher is a Node process that
    forwards signals to a child).
    """
    root = root or project_root()
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine())
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    scoped = root / "node_modules" / "@foundry-rs"
    for arch in (machine, "amd64" if machine == "x64" else machine):
        native = scoped / f"anvil-{system}-{arch}" / "bin" / ("anvil.exe" if system == "win32" else "anvil")
        if native.is_file() and os.access(native, os.X_OK):
            return native
    launcher = root / "node_modules" / ".bin" / "anvil"
    if launcher.exists():
        return launcher
    raise DevnetError(f"anvil is not installed in {root / 'node_modules'}; run ./setup.sh (npm ci)")


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def rpc_request(url: str, method: str, params: list[Any] | None = None, timeout: float = 2.0) -> Any:
    """One JSON-RPC request over plain HTTP (no web3), returning ``result``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise DevnetError(f"{method} failed: {reply['error']}")
    return reply["result"]


def wait_until_answers(url: str, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None) -> int:
    """Polls ``eth_chainId`` at ``url`` until it answers; returns the chain id.

    Fails early when ``process`` (the node we started) exits before answering.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if process is not None and process.poll() is not None:
            raise DevnetError(f"anvil exited with code {process.returncode} before answering at {url}")
        try:
            return int(rpc_request(url, "eth_chainId", timeout=1.0), 16)
        except (OSError, urllib.error.URLError, ValueError, DevnetError):
            if time.monotonic() > deadline:
                raise ChainUnavailable(f"nothing answered JSON-RPC at {url} within {timeout:.0f}s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def dev_accounts(count: int = DEFAULT_ACCOUNTS, mnemonic: str = ANVIL_MNEMONIC) -> list[LocalAccount]:
    """The accounts anvil funds: ``m/44'/60'/0'/0/i`` of ``mnemonic``."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: anvil gets SIGTERM when the process that started it dies, so no devnet outlives its owner."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Devnet:
    """A running anvil started by us: stop it with ``stop()`` (or use it as a context manager)."""

    process: subprocess.Popen[Any]
    host: str
    port: int
    chain_id: int
    accounts: list[LocalAccount] = field(repr=False)
    block_interval: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def chain(self) -> Chain:
        """A ``Chain`` connected to this devnet, holding the keys of its funded accounts."""
        chain = rpc_chain(self.url, [a.key.hex() for a in self.accounts], block_interval=self.block_interval)
        chain.kind = "anvil"
        return chain

    def stop(self, timeout: float = 10.0) -> int:
        """Stops anvil by its PID: SIGTERM, then SIGKILL after ``timeout`` seconds. Returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return int(self.process.returncode)

    def __enter__(self) -> Devnet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def anvil_command(
    anvil: Path, host: str, port: int, accounts: int, balance_eth: int, chain_id: int, mnemonic: str, silent: bool
) -> list[str]:
    command = [
        str(anvil),
        "--host",
        host,
        "--port",
        str(port),
        "--accounts",
        str(accounts),
        "--balance",
        str(balance_eth),
        "--chain-id",
        str(chain_id),
        "--mnemonic",
        mnemonic,
        "--hardfork",
        EVM_VERSION,
    ]
    if silent:
        command.append("--silent")
    return command


def start_devnet(
    port: int | None = None,
    host: str = HOST,
    accounts: int = DEFAULT_ACCOUNTS,
    balance_eth: int = DEFAULT_BALANCE_ETH,
    chain_id: int = ANVIL_CHAIN_ID,
    mnemonic: str = ANVIL_MNEMONIC,
    output: IO[Any] | int | None = subprocess.DEVNULL,
    silent: bool = True,
    block_interval: int | None = None,
    timeout: float = 30.0,
    root: Path | None = None,
) -> Devnet:
    """Starts anvil on ``host:port`` (a free port when ``port`` is None) and waits until it answers.

    ``output`` receives anvil's stdout and stderr (discarded by default; ``None`` inherits ours).
    ``block_interval``: stamp each block exactly that many seconds after its parent instead of by the wall
    clock (``anvil_setBlockTimestampInterval``), so block times are reproducible, as on the embedded chain.
    """
    anvil = find_anvil(root)
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(host)
        if port_in_use(chosen, host):
            if port is not None:
                raise DevnetError(f"port {chosen} on {host} is already in use (is another node running there?)")
            continue
        command = anvil_command(anvil, host, chosen, accounts, balance_eth, chain_id, mnemonic, silent)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output not in (None, subprocess.DEVNULL) else output,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        url = f"http://{host}:{chosen}"
        try:
            answered_chain_id = wait_until_answers(url, timeout, process)
            if block_interval is not None:
                rpc_request(url, "anvil_setBlockTimestampInterval", [block_interval])
        except (DevnetError, ChainUnavailable):
            if process.poll() is None:
                process.kill()
            process.wait()
            if attempt + 1 < attempts:
                continue  # another process took the free port between our check and anvil's bind
            raise
        return Devnet(process, host, chosen, answered_chain_id, dev_accounts(accounts, mnemonic), block_interval)
    raise DevnetError(f"could not find a free port on {host}")  # pragma: no cover - three races in a row
