"""A line of ``paychan node`` processes on a fresh anvil, for the benchmarks: start, connect, announce, stop.

``node_line(folder, names, ...)`` starts anvil (``paychan.devnet``), deploys the contract, starts one
``paychan node`` process per name on 127.0.0.1 (anvil dev accounts #1, #2, ...; each with its own durable
store), lets node ``i`` open a channel to node ``i + 1`` with ``deposit`` (so the line's money flows from the
first node to the last), waits until every node's graph holds every channel, sets the fees of the nodes named
in ``fees`` (``POST /fees``) and waits until the first node's ``POST /route`` reaches every later node with
the fees announced. It yields a ``Line``; on leaving (also on an error) every node process and anvil are
stopped by PID. Every wait is bounded and raises ``SetupTimedOut`` naming what it waited for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from eth_account import Account

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.devnet import Devnet, free_port, start_devnet
from paychan.exceptions import PaychanError
from paychan.node.control import ControlError
from paychan.node.process import NodeProcess

# anvil's dev accounts #1 to #5 (#0 deploys): well-known test keys, never used for real funds
DEV_KEYS = tuple(
    bytes.fromhex(key)
    for key in (
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
        "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    )
)
CHALLENGE_PERIOD = 3600  # seconds: every route of the line fits its lock windows (paychan.routing)


class SetupTimedOut(PaychanError):
    """Raised when the line is not ready within ``timeout`` seconds: ``what`` it waited for."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what, self.timeout = what, timeout
        super().__init__(f"SetupTimedOut(what={what!r}, timeout={timeout}): not ready in {timeout} s")


@dataclass(frozen=True)
class Fees:
    """What an intermediary charges per forward: ``base_fee`` wei + forwarded * ``ppm`` / 1,000,000."""

    base_fee: int
    ppm: int

    def fee(self, forwarded: int) -> int:
        return self.base_fee + forwarded * self.ppm // 1_000_000


@dataclass
class Line:
    """The running line: its nodes in order, their addresses, the channel ids between neighbours."""

    devnet: Devnet
    contract: str
    nodes: list[NodeProcess]
    addresses: list[str]
    channels: list[str]  # channels[i] joins nodes[i] and nodes[i + 1] (0x-prefixed id)

    def node(self, name: str) -> NodeProcess:
        return next(node for node in self.nodes if node.name == name)

    def address(self, name: str) -> str:
        return self.addresses[[node.name for node in self.nodes].index(name)]


def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Polls ``condition`` every 100 ms until it holds; ``SetupTimedOut`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SetupTimedOut(what, timeout)
        time.sleep(0.1)


def graph_channels(node: NodeProcess) -> int:
    """How many open channels ``node``'s graph holds."""
    return int(node.control("GET", "/fees")["graph"]["channels"])


def own_channels(node: NodeProcess) -> int:
    """How many of its open channels ``node`` can announce fees on."""
    return len(node.control("GET", "/fees")["channels"])


def holds(count: Callable[[NodeProcess], int], node: NodeProcess, expected: int) -> bool:
    """Whether ``count(node)`` is ``expected``."""
    return count(node) == expected


def route_found(payer: NodeProcess, target: str, amount: int, hops: int) -> bool:
    """Whether ``payer``'s ``POST /route`` finds a route of ``hops`` hops to ``target`` for ``amount``."""
    try:
        routes = payer.control("POST", "/route", {"to": target, "amount": str(amount), "k": 1})["routes"]
    except ControlError as exc:
        if exc.type == "NoRoute":
            return False
        raise
    return len(routes[0]["hops"]) == hops


def start_nodes(nodes: list[NodeProcess], timeout: float) -> None:
    """Starts the node processes side by side (each start waits for its control file)."""
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for future in [pool.submit(node.start, timeout) for node in nodes]:
            future.result()


@contextmanager
def node_line(
    folder: Path,
    names: list[str],
    deposit: int,
    fees: dict[str, Fees],
    extra_args: tuple[str, ...] = (),
    route_amount: int = 10**15,
    timeout: float = 60.0,
) -> Iterator[Line]:
    """The line of nodes ``names`` (see the module docstring), stopped by PID on leaving."""
    if not 2 <= len(names) <= len(DEV_KEYS):
        raise ValueError(f"a line has 2 to {len(DEV_KEYS)} nodes, not {len(names)}")
    devnet = start_devnet()
    nodes: list[NodeProcess] = []
    try:
        chain = rpc_chain(devnet.url)
        contract, _ = PaychanContract.deploy(chain, chain.accounts[0])
        for name, key in zip(names, DEV_KEYS, strict=False):
            nodes.append(
                NodeProcess(folder, name, key, devnet.url, contract.address, free_port(), extra_args=extra_args)
            )
        start_nodes(nodes, timeout)
        channels = [_open(left, right, deposit) for left, right in zip(nodes, nodes[1:], strict=False)]
        for node in nodes:
            wait_until(partial(holds, graph_channels, node, len(channels)), f"{node.name}'s graph of the line", timeout)
        for index, node in enumerate(nodes):
            neighbours = (index > 0) + (index < len(nodes) - 1)
            wait_until(partial(holds, own_channels, node, neighbours), f"{node.name} to see its channels", timeout)
        for name, charged in fees.items():
            by_name = {node.name: node for node in nodes}
            by_name[name].control("POST", "/fees", {"baseFee": str(charged.base_fee), "ppm": charged.ppm})
        addresses = [Account.from_key(node.key).address for node in nodes]
        for hops, target in enumerate(addresses[2:], start=2):
            wait_until(
                partial(route_found, nodes[0], target, route_amount, hops),
                f"{names[0]}'s route of {hops} hops to {target}",
                timeout,
            )
        yield Line(devnet, contract.address, nodes, addresses, channels)
    finally:
        for node in nodes:
            node.stop()
        devnet.stop()


def _open(left: NodeProcess, right: NodeProcess, deposit: int) -> str:
    opened = left.control(
        "POST", "/open", {"peer": right.peer_url, "deposit": str(deposit), "challengePeriod": CHALLENGE_PERIOD}
    )
    return str(opened["channelId"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (psutil if installed, else Linux ``/proc``)."""
    try:
        import psutil
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def node_pid(node: NodeProcess) -> int:
    if node.process is None:
        raise RuntimeError(f"node {node.name} was not started")
    return node.process.pid


def cpu_of(nodes: list[NodeProcess]) -> dict[str, float]:
    """Each node's CPU seconds so far, by name."""
    return {node.name: cpu_seconds(node_pid(node)) for node in nodes}
