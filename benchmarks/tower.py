"""Watchtower benchmark: one ``paychan tower`` process watching 10,000 channels on anvil.

Run from the repository root::

    .venv/bin/python -m benchmarks.tower                  # measure, print, write results/tower.json and docs
    .venv/bin/python -m benchmarks.tower --channels 2000  # a shorter run

What it does: starts anvil (``paychan.devnet``), deploys the contract and opens ``--channels`` real channels
(A, anvil's dev account 1, to B, account 2: the same calldata each time, the contract numbers them; sent
with automine off and mined in full blocks). Then it starts a tower process (gas paid by dev account 3),
waits until the tower has seen every ``ChannelOpened``, and measures:

- *registration*: B's first push of every channel (nonce 1), in requests of 256 pushes, 4 in flight; a push
  counts once the tower answered ``accepted``, which it does only after the batch holding it is committed
  (SQLite WAL, ``synchronous=FULL``);
- *updates*: B's newer push of every channel (nonce 2; every other one with A's revocation below 2);
- *memory and disk*: the tower's RSS (``VmRSS``, and the peak ``VmHWM``) with every channel registered, and its
  store's size (database and write-ahead log) per channel;
- *breaches*: with automine off, A sends ``--breaches`` stale closes (nonce 1), mined together in one block;
  from the moment that block is mined, the time until each of the tower's answers (a ``proveRevoked`` where
  it holds A's revocation, a ``challenge`` with nonce 2 elsewhere) is in anvil's pending pool, i.e. sent.
  Then the block of answers is mined and every one is checked to have succeeded.

The pushes are signed before the clock starts (the client's work, not the tower's); the tower's poll
interval is its default (1 s), which bounds how late it sees a close. Targets (issue 15): 10,000 channels
under 200 MB RSS, at least 2,000 pushes/s, every one of 100 breaches answered within 10 s of the block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/tower.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import requests
from eth_account import Account
from hexbytes import HexBytes

from paychan.chain import rpc_chain
from paychan.contract import STATUS_CLOSING, PaychanContract
from paychan.devnet import start_devnet
from paychan.node.messages import SignedRevocation
from paychan.signers import LocalKeySigner
from paychan.signing import sign_message, sign_state
from paychan.state import ETH, ChannelParams, ChannelState, Nonce, Revocation, SignedState, Wei
from paychan.tower.process import TowerProcess
from paychan.tower.protocol import MAX_PUSHES_PER_REQUEST, sign_push

RESULTS = Path(__file__).resolve().parent / "results" / "tower.json"
KEY_A = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")  # anvil dev #1
KEY_B = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")  # anvil dev #2
KEY_TOWER = bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")  # anvil dev #3
DEPOSIT = 10**15
PERIOD = 3600
MAX_FEE = 200 * 10**9  # full blocks raise the base fee; the dev accounts can afford it


def rpc_batch(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    replies = sorted(requests.post(url, json=body, timeout=120).json(), key=lambda r: r["id"])
    errors = [r["error"] for r in replies if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(calls)} calls failed, first: {errors[0]}")
    return [r["result"] for r in replies]


def send_all(url: str, chain: Any, key: bytes, to: str, data: bytes, value: int, count: int, gas: int) -> None:
    """``count`` transactions of the same call from ``key``, sent in JSON-RPC batches (automine off)."""
    account = Account.from_key(key)
    nonce = chain.w3.eth.get_transaction_count(account.address, "pending")
    raw = []
    for i in range(count):
        tx = {"to": to, "data": data, "value": value, "gas": gas, "nonce": nonce + i, "chainId": chain.chain_id,
              "type": 2, "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": 10**9}  # fmt: skip
        raw.append("0x" + bytes(account.sign_transaction(tx).raw_transaction).hex())
    for start in range(0, len(raw), 500):
        rpc_batch(url, [("eth_sendRawTransaction", [r]) for r in raw[start : start + 500]])


def mine_pool(chain: Any) -> int:
    """Mines blocks until anvil's pool is empty; the number mined."""
    mined = 0
    while int(chain.rpc("txpool_status")["pending"], 16) > 0:
        chain.rpc("evm_mine", [])
        mined += 1
    return mined


def open_channels(chain: Any, contract: PaychanContract, count: int) -> list[tuple[ChannelParams, bytes]]:
    alice, bob = Account.from_key(KEY_A), Account.from_key(KEY_B)
    fn = contract.contract.functions.open(bob.address, ETH, PERIOD, DEPOSIT)
    gas = int(fn.estimate_gas({"from": alice.address, "value": DEPOSIT}) * 1.3)
    data = bytes(HexBytes(fn._encode_transaction_data()))
    start = chain.w3.eth.block_number + 1
    chain.rpc("evm_setAutomine", [False])
    send_all(chain.url, chain, KEY_A, contract.address, data, DEPOSIT, count, gas)
    mine_pool(chain)
    chain.rpc("evm_setAutomine", [True])
    logs = contract.contract.events.ChannelOpened().get_logs(from_block=start, to_block=chain.w3.eth.block_number)
    opened = []
    for log in logs:
        a = log["args"]
        params = ChannelParams(a["participantA"], a["participantB"], a["asset"], a["challengePeriod"], a["number"])
        opened.append((params, bytes(a["channelId"])))
    assert len(opened) == count, f"opened {len(opened)} of {count} channels"
    return opened


def state(cid: bytes, nonce: int) -> ChannelState:
    paid = nonce * 10**13
    return ChannelState(cid, Nonce(nonce), Wei(DEPOSIT - paid), Wei(paid), deposit_a=Wei(DEPOSIT), deposit_b=Wei(0))  # type: ignore[arg-type]


def signed(contract: PaychanContract, cid: bytes, nonce: int) -> SignedState:
    s = state(cid, nonce)
    return SignedState(s, sign_state(contract.domain, s, KEY_A), sign_state(contract.domain, s, KEY_B))


def push_bodies(contract: PaychanContract, channels: list[bytes], nonce: int) -> list[bytes]:
    """B's pushes of ``nonce`` for every channel, as request bodies of ``MAX_PUSHES_PER_REQUEST`` pushes."""
    signer, domain = LocalKeySigner(KEY_B, check=False), contract.domain
    pushes = []
    for i, cid in enumerate(channels):
        revocation = None
        if nonce > 1 and i % 2 == 0:
            revocation = SignedRevocation(nonce, sign_message(domain, Revocation(cid, nonce), KEY_A))  # type: ignore[arg-type]
        pushes.append(sign_push(signer, domain, signed(contract, cid, nonce), (), revocation).to_json())
    return [
        json.dumps({"pushes": pushes[i : i + MAX_PUSHES_PER_REQUEST]}).encode()
        for i in range(0, len(pushes), MAX_PUSHES_PER_REQUEST)
    ]


async def post_all(url: str, bodies: list[bytes], in_flight: int = 4) -> tuple[float, int]:
    """Posts every body, ``in_flight`` at once; seconds taken and pushes accepted."""
    queue = list(reversed(bodies))
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            async with session.post(url + "/pushes", data=body, headers={"Content-Type": "application/json"}) as r:
                results = (await r.json())["results"]
            refused = [x for x in results if not x["accepted"]]
            assert not refused, refused[0]
            accepted += len(results)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(in_flight)))
        return time.perf_counter() - started, accepted


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def breaches(
    chain: Any, contract: PaychanContract, tower: TowerProcess, opened: list[Any], count: int
) -> dict[str, Any]:
    """``count`` stale closes in one block; when the tower's answer to each reached the pool."""
    tower_address = Account.from_key(KEY_TOWER).address
    alice = Account.from_key(KEY_A)
    victims = opened[:count]
    sent_before = chain.w3.eth.get_transaction_count(tower_address, "pending")
    chain.rpc("evm_setAutomine", [False])
    nonce = chain.w3.eth.get_transaction_count(alice.address, "pending")
    raw = []
    for i, (params, cid) in enumerate(victims):
        stale = signed(contract, cid, 1)
        fn = contract.contract.functions.close(
            params.as_tuple(),
            stale.state.as_tuple(),
            stale.sig_a.as_tuple(),
            stale.sig_b.as_tuple(),  # type: ignore[union-attr]
        )
        tx = {"to": contract.address, "data": bytes(HexBytes(fn._encode_transaction_data())), "value": 0,
              "gas": 200_000, "nonce": nonce + i, "chainId": chain.chain_id, "type": 2, "maxFeePerGas": MAX_FEE,
              "maxPriorityFeePerGas": 10**9}  # fmt: skip
        raw.append("0x" + bytes(alice.sign_transaction(tx).raw_transaction).hex())
    rpc_batch(chain.url, [("eth_sendRawTransaction", [r]) for r in raw])
    chain.rpc("evm_mine", [])
    mined_at = time.perf_counter()
    block = chain.w3.eth.get_block("latest")
    closes_in_block = len(block["transactions"])
    answered_at: list[float] = []
    deadline = mined_at + 60
    while len(answered_at) < count and time.perf_counter() < deadline:
        sent = chain.w3.eth.get_transaction_count(tower_address, "pending") - sent_before
        answered_at += [time.perf_counter() - mined_at] * (sent - len(answered_at))
        time.sleep(0.01)
    chain.rpc("evm_setAutomine", [True])
    mine_pool(chain)
    time.sleep(2.0)  # the tower's threads read their receipts
    outcome = {"penalized": 0, "challenged": 0, "unanswered": 0}
    for _, cid in victims:
        onchain = contract.get_channel(cid)  # type: ignore[arg-type]
        if onchain.status == STATUS_CLOSING and onchain.penalized:
            outcome["penalized"] += 1
        elif onchain.status == STATUS_CLOSING and onchain.nonce == 2:
            outcome["challenged"] += 1
        else:
            outcome["unanswered"] += 1
    answered_at.sort()
    return {
        "closes_in_one_block": closes_in_block,
        "answers_sent": len(answered_at),
        "first_answer_s": round(answered_at[0], 3) if answered_at else None,
        "median_answer_s": round(answered_at[len(answered_at) // 2], 3) if answered_at else None,
        "last_answer_s": round(answered_at[-1], 3) if answered_at else None,
        "outcome_on_chain": outcome,
        "expected": {"penalized": (count + 1) // 2, "challenged": count // 2},
    }


DOCS = Path(__file__).resolve().parent.parent / "docs" / "tower.md"
DOCS_MARKERS = ("<!-- tower-results:start -->\n", "<!-- tower-results:end -->")


def docs_block(result: dict[str, Any]) -> str:
    """The table ``docs/tower.md`` shows between ``DOCS_MARKERS``, from the results."""
    pushes, memory, disk, breach = result["pushes"], result["memory"], result["disk"], result["breaches"]
    met = result["targets"]
    rows = [
        ("channels registered with one tower", f"{result['channels']:,}", ""),
        ("pushes accepted durably, first registration", f"{pushes['registration_per_s']:,}/s", ">= 2,000/s"),
        ("pushes accepted durably, newer states", f"{pushes['update_per_s']:,}/s", ">= 2,000/s"),
        ("tower RSS with every channel registered (peak)", f"{memory['rss_mb']} MB ({memory['rss_peak_mb']} MB)",
         "< 200 MB"),
        ("tower RSS per channel", f"{memory['rss_per_channel_kb']} kB", ""),
        ("store on disk per channel (database and WAL)", f"{disk['bytes_per_channel']:,} bytes", ""),
        (f"{breach['closes_in_one_block']} stale closes in one block: answers sent", str(breach["answers_sent"]),
         "all"),
        ("time from that block to the first / median / last answer sent",
         f"{breach['first_answer_s']} / {breach['median_answer_s']} / {breach['last_answer_s']} s", "<= 10 s"),
        ("answers on chain: penalties / challenges",
         f"{breach['outcome_on_chain']['penalized']} / {breach['outcome_on_chain']['challenged']}",
         f"{breach['expected']['penalized']} / {breach['expected']['challenged']}"),
    ]  # fmt: skip
    lines = ["| measured | value | target |", "|---|---:|---:|"]
    lines += [f"| {what} | {value} | {target} |" for what, value, target in rows]
    verdict = (
        "every target is met"
        if all(met.values())
        else "not every target is met: " + ", ".join(name for name, ok in met.items() if not ok)
    )
    cpus = result["machine"]["cpus"]
    lines += ["", f"On a {cpus}-core VM shared with other work (client, anvil and tower on the same cores): {verdict}."]
    return "\n".join(lines) + "\n"


def write_docs(result: dict[str, Any], page: Path = DOCS) -> None:
    text = page.read_text()
    start, end = text.index(DOCS_MARKERS[0]) + len(DOCS_MARKERS[0]), text.index(DOCS_MARKERS[1])
    page.write_text(text[:start] + docs_block(result) + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=10_000, help="channels opened and registered")
    parser.add_argument("--breaches", type=int, default=100, help="stale closes mined in one block")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results JSON")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    devnet = start_devnet(accounts=4)
    tower: TowerProcess | None = None
    try:
        chain = rpc_chain(devnet.url)
        contract, _ = PaychanContract.deploy(chain, chain.accounts[0])
        t0 = time.perf_counter()
        opened = open_channels(chain, contract, args.channels)
        print(f"opened {len(opened)} channels in {time.perf_counter() - t0:.1f} s", flush=True)
        channels = [cid for _, cid in opened]
        t0 = time.perf_counter()
        first, second = push_bodies(contract, channels, 1), push_bodies(contract, channels, 2)
        print(f"signed {2 * len(channels)} pushes in {time.perf_counter() - t0:.1f} s", flush=True)
        folder = Path(tempfile.mkdtemp(prefix="paychan-tower-bench-"))
        tower = TowerProcess(folder, "tower", KEY_TOWER, devnet.url, contract.address, 0, "bench",
                             ("--log-level", "ERROR"))  # fmt: skip
        tower.start()
        assert tower.process is not None
        started = time.perf_counter()
        while tower.status()["channelsOpenedOnChain"] < args.channels:
            time.sleep(0.2)
        scan_s = time.perf_counter() - started
        idle_kb = memory_kb(tower.process.pid)
        register_s, registered = asyncio.run(post_all(tower.url, first))
        update_s, updated = asyncio.run(post_all(tower.url, second))
        memory = memory_kb(tower.process.pid)
        disk = sum(p.stat().st_size for p in folder.glob("tower.db*") if p.suffix != ".json")
        print(f"registered {registered} at {registered / register_s:.0f}/s, updated at {updated / update_s:.0f}/s")
        breach = breaches(chain, contract, tower, opened, args.breaches)
        memory_after = memory_kb(tower.process.pid)
    finally:
        if tower is not None:
            tower.stop()
        devnet.stop()
    result = {
        "what": "one paychan tower process on anvil: channels registered, pushes accepted durably (each answered "
        "only after its batch is committed, SQLite WAL synchronous=FULL), memory and disk per channel, and the "
        "time from a block of stale closes being mined to the tower's answers being sent",
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "channels": args.channels,
        "tower_scanned_channel_openings_s": round(scan_s, 2),
        "pushes": {
            "per_request": MAX_PUSHES_PER_REQUEST,
            "requests_in_flight": 4,
            "registration_per_s": round(registered / register_s),
            "update_per_s": round(updated / update_s),
            "note": "client and tower share the machine's cores; the pushes were signed before timing",
        },
        "memory": {
            "rss_idle_mb": round(idle_kb["VmRSS"] / 1024, 1),
            "rss_mb": round(memory["VmRSS"] / 1024, 1),
            "rss_peak_mb": round(memory_after["VmHWM"] / 1024, 1),
            "rss_per_channel_kb": round((memory["VmRSS"] - idle_kb["VmRSS"]) / args.channels, 2),
        },
        "disk": {"store_bytes": disk, "bytes_per_channel": round(disk / args.channels)},
        "breaches": breach,
        "targets": {
            "rss_under_200_mb": memory_after["VmHWM"] / 1024 < 200,
            "pushes_per_s_at_least_2000": min(registered / register_s, updated / update_s) >= 2000,
            "every_breach_answered_within_10_s": breach["answers_sent"] == args.breaches
            and (breach["last_answer_s"] or 99) <= 10
            and breach["outcome_on_chain"]["unanswered"] == 0,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.out == RESULTS:
        write_docs(result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
