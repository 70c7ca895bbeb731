"""Off-chain benchmark: durable, counter-signed payments per second on one channel between two node processes.

Run from the repository root::

    .venv/bin/python -m benchmarks.offchain                 # measure, print, write results/offchain.json
    .venv/bin/python -m benchmarks.offchain --payments 5000 # a shorter run

What it does: starts anvil (``paychan.devnet``), deploys the contract, starts two ``paychan node`` processes
(alice and bob) on 127.0.0.1, opens a channel and drives alice's control API:

- *latency, unloaded*: single payments one after the other; each is one fully counter-signed state, stored
  (fsync) by both nodes before either signature leaves its process;
- *throughput*: many pay requests in flight at once; the node batches the queued payments into one message
  (still one state, one nonce and two signatures per payment; one fsync per batch and side) — the
  "pipelining/batching of payment requests" the durability rule allows;
- *both ways*: alice and bob pay each other at the same time (the turn passes between them).

It then measures the parts a payment is made of — signing, signer recovery, keccak, an fsync'ed SQLite
commit, a loopback HTTP round trip — and compares the measured rate with the bound they give. The result
goes to ``benchmarks/results/offchain.json``. Anchors: c-lightning measured 61 payments/s on one channel
(2021), lnd 51-361/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/offchain.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from paychan.chain import rpc_chain
from paychan.contract import PaychanContract
from paychan.devnet import free_port, start_devnet
from paychan.node.process import NodeProcess
from paychan.signing import Domain, check_signer, sign_state, state_digest
from paychan.state import ChannelState, Nonce, Wei

RESULTS = Path(__file__).resolve().parent / "results" / "offchain.json"
KEY_A = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")  # anvil dev #1
KEY_B = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")  # anvil dev #2
ANCHORS = {
    "c-lightning, one channel (2021)": "61 payments/s",
    "lnd": "51-361 payments/s",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --- the parts a payment is made of ------------------------------------------------------------------


def measure_components(folder: Path, rounds: int = 2000) -> dict[str, float]:
    """Microseconds per operation (milliseconds for the commit), each the median of a few repetitions."""
    from eth_account import Account
    from eth_hash.auto import keccak

    domain = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    cid = keccak(b"benchmark")
    address = Account.from_key(KEY_A).address

    def state(i: int) -> ChannelState:
        return ChannelState(cid, Nonce(i), Wei(10**18 - i), Wei(i), deposit_a=Wei(10**18), deposit_b=Wei(0))  # type: ignore[arg-type]

    states = [state(i) for i in range(1, rounds + 1)]

    def timed(fn: Any, items: list[Any]) -> float:
        start = time.perf_counter()
        for item in items:
            fn(item)
        return (time.perf_counter() - start) / len(items) * 1e6

    sign_us = timed(lambda s: sign_state(domain, s, KEY_A), states)  # fresh states: no digest cache hits
    more = [state(i) for i in range(rounds + 1, 2 * rounds + 1)]
    signed = [(s, sign_state(domain, s, KEY_A)) for s in more]
    state_digest.cache_clear()
    recover_us = timed(lambda pair: check_signer(domain, pair[0], pair[1], address), signed)
    keccak_us = timed(lambda i: keccak(i.to_bytes(200, "big")), list(range(rounds)))

    db = folder / "fsync.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    commits = []
    for i in range(200):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (i, os.urandom(300)))
        conn.execute("COMMIT")
        commits.append((time.perf_counter() - start) * 1e3)
    conn.close()
    return {
        "sign_us": round(sign_us, 1),
        "recover_us": round(recover_us, 1),
        "keccak_us": round(keccak_us, 1),
        "commit_fsync_ms_p50": round(statistics.median(commits), 2),
        "commit_fsync_ms_p99": round(percentile(commits, 99), 2),
        "http_round_trip_us": round(asyncio.run(_http_round_trip()), 1),
    }


async def _http_round_trip(rounds: int = 1000) -> float:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"ok": len(await request.read())})

    app = web.Application()
    app.router.add_post("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    body = b"x" * 400
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.post(f"http://127.0.0.1:{port}/", data=body) as r:
                await r.read()
        start = time.perf_counter()
        for _ in range(rounds):
            async with session.post(f"http://127.0.0.1:{port}/", data=body) as r:
                await r.read()
        elapsed = time.perf_counter() - start
    await runner.cleanup()
    return elapsed / rounds * 1e6


# --- driving the nodes ---------------------------------------------------------------------------------


class Control:
    """An aiohttp client of one node's control API."""

    def __init__(self, node: NodeProcess, session: aiohttp.ClientSession) -> None:
        info = node.control_info()
        self.url, self.session = info["controlUrl"], session
        self.headers = {"Authorization": f"Bearer {info['token']}"}

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, self.url + path, json=payload, headers=self.headers) as response:
            data = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{path}: {data}")
            return data

    async def pay(self, amount: int, count: int) -> float:
        start = time.perf_counter()
        await self.call("POST", "/pay", {"amount": str(amount), "count": count})
        return time.perf_counter() - start


async def _stream(controls: list[Control], total: int, per_request: int, concurrency: int) -> dict[str, Any]:
    """``total`` payments as requests of ``per_request``, ``concurrency`` requests in flight per payer."""
    latencies: list[float] = []
    requests = total // per_request // len(controls)

    async def worker(control: Control, count: int) -> None:
        for _ in range(count):
            latencies.append(await control.pay(1, per_request))

    start = time.perf_counter()
    tasks = []
    for control in controls:
        share = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
        tasks += [worker(control, n) for n in share if n]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    payments = requests * per_request * len(controls)
    return {
        "payments": payments,
        "seconds": round(elapsed, 3),
        "payments_per_s": round(payments / elapsed, 1),
        "request_latency_ms_p50": round(percentile(latencies, 50) * 1e3, 2),
        "request_latency_ms_p99": round(percentile(latencies, 99) * 1e3, 2),
        "payments_per_request": per_request,
        "requests_in_flight_per_payer": concurrency,
    }


async def _drive(alice: NodeProcess, bob: NodeProcess, args: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        a, b = Control(alice, session), Control(bob, session)
        await a.call("POST", "/open", {"peer": bob.peer_url, "deposit": str(100 * 10**18), "challengePeriod": 3600})
        await a.pay(10**15, 1)
        await a.pay(1, 500)  # warm-up
        before = await a.call("GET", "/status")
        single = [await a.pay(1, 1) for _ in range(args.latency_samples)]
        latency = {
            "payments": len(single),
            "ms_p50": round(percentile(single, 50) * 1e3, 2),
            "ms_p99": round(percentile(single, 99) * 1e3, 2),
            "payments_per_s": round(len(single) / sum(single), 1),
        }
        mid = await a.call("GET", "/status")
        cpu_before = [cpu_seconds(alice), cpu_seconds(bob)]
        throughput = await _stream([a], args.payments, args.per_request, args.concurrency)
        cpu_after = [cpu_seconds(alice), cpu_seconds(bob)]
        after = await a.call("GET", "/status")
        both = await _stream([a, b], args.payments, args.per_request, args.concurrency)
        final_a, final_b = await a.call("GET", "/status"), await b.call("GET", "/status")
    ca, cb = final_a["channels"][0], final_b["channels"][0]
    assert ca["latest"] == cb["latest"], "the nodes disagree on the latest state"
    expected = before["channels"][0]["nonce"] + latency["payments"] + throughput["payments"] + both["payments"]
    assert ca["nonce"] == expected, f"nonce {ca['nonce']} != {expected}: a payment went missing"
    sent = after["stats"]["batchesSent"] - mid["stats"]["batchesSent"]
    states = after["stats"]["statesSent"] - mid["stats"]["statesSent"]
    throughput["mean_states_per_message"] = round(states / max(sent, 1), 1)
    cpu = [(after_ - before_) / throughput["payments"] * 1e6 for before_, after_ in zip(cpu_before, cpu_after)]  # noqa: B905
    throughput["cpu_us_per_payment_payer"] = round(cpu[0], 1)
    throughput["cpu_us_per_payment_payee"] = round(cpu[1], 1)
    return {"latency_unloaded": latency, "throughput_one_way": throughput, "throughput_both_ways": both,
            "final_nonce": ca["nonce"]}  # fmt: skip


def cpu_seconds(node: NodeProcess) -> float:
    """User + system CPU time the node process has used (Linux ``/proc``)."""
    assert node.process is not None
    fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bound(components: dict[str, float], batch: float) -> dict[str, Any]:
    """What the parts allow: per message 3 fsyncs + 1 round trip; per state 2 signatures + 2 recoveries."""
    per_state_us = 2 * components["sign_us"] + 2 * components["recover_us"]
    per_batch_us = 3 * components["commit_fsync_ms_p50"] * 1e3 + components["http_round_trip_us"]
    serial = batch / ((per_batch_us + batch * per_state_us) / 1e6)
    return {
        "crypto_us_per_payment_both_nodes": round(per_state_us, 1),
        "fixed_us_per_message": round(per_batch_us, 1),
        "payments_per_s_if_only_crypto_on_one_core": round(1e6 / per_state_us, 1),
        "payments_per_s_at_measured_batch_size": round(serial, 1),
        "payments_per_s_unbatched_bound": round(1 / ((per_batch_us + per_state_us) / 1e6), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=20_000, help="payments per throughput run")
    parser.add_argument("--per-request", type=int, default=50, help="payments per control request")
    parser.add_argument("--concurrency", type=int, default=8, help="control requests in flight per payer")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--max-batch", type=int, default=256, help="most states a node sends in one message")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="paychan-bench-", dir=Path(__file__).resolve().parent.parent) as tmp:
        folder = Path(tmp)  # on the repository's file system: the fsyncs are the real disk's
        components = measure_components(folder)
        devnet = start_devnet()
        nodes: list[NodeProcess] = []
        try:
            chain = rpc_chain(devnet.url)
            contract, _ = PaychanContract.deploy(chain, chain.accounts[0])
            extra = ("--max-batch", str(args.max_batch), "--log-level", "WARNING", "--payment-timeout", "300")
            for name, key in (("alice", KEY_A), ("bob", KEY_B)):
                node = NodeProcess(folder, name, key, devnet.url, contract.address, free_port(), extra_args=extra)
                nodes.append(node)
                node.start()
            load_before = os.getloadavg()
            measured = asyncio.run(_drive(nodes[0], nodes[1], args))
            load_after = os.getloadavg()
        finally:
            for node in nodes:
                node.stop()
            devnet.stop()

    result = {
        "what": "fully counter-signed payments on one channel between two paychan node processes over loopback; "
        "each state is fsync'ed by both nodes (SQLite WAL, synchronous=FULL) before a signature on it leaves",
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after},
        "components": components,
        **measured,
        "bound": {
            **bound(components, measured["throughput_one_way"]["mean_states_per_message"]),
            # each node on a core of its own: the busier node's CPU time per payment caps the rate
            "payments_per_s_cpu_bound_one_core_per_node": round(
                1e6
                / max(
                    measured["throughput_one_way"]["cpu_us_per_payment_payer"],
                    measured["throughput_one_way"]["cpu_us_per_payment_payee"],
                ),
                1,
            ),  # fmt: skip
        },
        "anchors": ANCHORS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
