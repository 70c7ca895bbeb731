"""Routed benchmark: payments through one and two intermediaries against direct payments, in one run.

Run from the repository root::

    .venv/bin/python -m benchmarks.routed                  # measure, print, write results/routed.json
    .venv/bin/python -m benchmarks.routed --payments 50    # a shorter run
    .venv/bin/python -m benchmarks.routed --quick          # a few payments (tests/test_routed_benchmark.py)

What it does: starts anvil, deploys the contract and starts four ``paychan node`` processes on 127.0.0.1 in a
line, payer -> i1 -> i2 -> payee (``benchmarks/network_setup.py``; every state fsync'ed by the nodes that
sign it, as always), each channel funded by its upstream side; i1 and i2 announce fees (``POST /fees``), and
the payer's ``POST /route`` must find both routes before anything is measured. Then, driving the payer's
control API as ``benchmarks/offchain.py`` does:

- *direct*, just before each routed phase (its reference: the machine's speed drifts within a run): single
  unbatched ``POST /pay`` requests to its counterparty i1, one after the other (the request of offchain.py's
  ``latency_unloaded``): payments/s, p50/p99;
- *one intermediary*: payer -> i1 -> i2 (i2 is the payee of these; it has a channel with i1): ``POST
  /transfers`` one after the other (p50/p99, payments/s), then ``--concurrency`` requests in flight (a
  channel holds at most ``MAX_LOCKS`` = 16 pending locks);
- *two intermediaries*: payer -> i1 -> i2 -> payee, the same;
- *direct again*, at the end: if it differs much from the first, the machine's load changed during the run
  and the ratios are less telling.

Each routed figure is compared with the direct one measured just before it (payments/s ratio, p50 ratio) and with
the targets (through one intermediary, one request at a time: payments/s >= 40 % of direct, p50 <= 3x
direct). It reports each node process's CPU seconds per phase, and checks each intermediary's fees earned
(``GET /transfers``) against base + forwarded * ppm // 1,000,000 per payment it forwarded. The result goes to
``benchmarks/results/routed.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/routed.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from benchmarks.network_setup import Fees, Line, cpu_of, node_line
from benchmarks.offchain import Control, percentile
from paychan.channel import MAX_LOCKS
from paychan.exceptions import PaychanError

RESULTS = Path(__file__).resolve().parent / "results" / "routed.json"
NAMES = ["payer", "i1", "i2", "payee"]
FEES = {"i1": Fees(base_fee=1000, ppm=100), "i2": Fees(base_fee=2000, ppm=150)}
AMOUNT = 10**15  # wei the payee receives per routed payment (0.001 ETH)
DEPOSIT = 100 * 10**18  # per channel, from its upstream side: far more than every payment of a run
DIRECT_AMOUNT = 1  # wei per direct payment, as offchain.py's latency_unloaded
TARGET_PAYMENTS_PER_S_RATIO = 0.4  # routed (one intermediary) / direct, at least
TARGET_P50_RATIO = 3.0  # routed (one intermediary) p50 / direct p50, at most
# Warm-ups before each measurement: fresh nodes pay slower at first (one run: 223/s over their first 200
# direct payments one at a time, 300-384/s over the next 800); the first routed payment opens the peer
# connections along its route.
WARMUP_DIRECT = 300
WARMUP_ROUTED = 20  # per route
# A phase: its name, the payee's name, the intermediaries in route order
ROUTES = (("one_intermediary", "i2", ("i1",)), ("two_intermediaries", "payee", ("i1", "i2")))


class TransfersUnavailable(PaychanError):
    """Raised when the payer's node does not serve ``/transfers`` (HTTP ``status``): a node without routed
    payments."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"TransfersUnavailable(status={status}): the node has no POST /transfers to pay through")


class RouteChanged(PaychanError):
    """Raised when a routed payment went another way than the route the payer priced (``expected`` and
    ``taken``: the nodes of each)."""

    def __init__(self, expected: list[str], taken: list[str]) -> None:
        self.expected, self.taken = expected, taken
        super().__init__(f"RouteChanged(expected={expected}, taken={taken})")


# --- measuring ---------------------------------------------------------------------------------------------


def summary(latencies: list[float], elapsed: float, succeeded: int) -> dict[str, Any]:
    """p50/p99 of ``latencies`` (s) in ms and ``succeeded`` payments per second of ``elapsed`` wall time."""
    return {
        "seconds": round(elapsed, 3),
        "payments_per_s": round(succeeded / elapsed, 1) if elapsed > 0 else 0.0,
        "ms_p50": round(percentile(latencies, 50) * 1e3, 2),
        "ms_p99": round(percentile(latencies, 99) * 1e3, 2),
    }


async def measure_direct(payer: Control, payments: int) -> dict[str, Any]:
    """``payments`` single unbatched ``POST /pay`` requests to the payer's counterparty, one after the other."""
    for _ in range(WARMUP_DIRECT):
        await payer.pay(DIRECT_AMOUNT, 1)
    start = time.perf_counter()
    latencies = [await payer.pay(DIRECT_AMOUNT, 1) for _ in range(payments)]
    elapsed = time.perf_counter() - start
    return {"payments": payments, "succeeded": payments, **summary(latencies, elapsed, payments)}


async def probe_transfers(payer: Control) -> None:
    """``TransfersUnavailable`` unless the payer's node answers ``GET /transfers``."""
    async with payer.session.get(payer.url + "/transfers", headers=payer.headers) as response:
        await response.read()
        if response.status != 200:
            raise TransfersUnavailable(response.status)


async def transfer(payer: Control, to: str, timeout: int) -> tuple[float, dict[str, Any]]:
    """One routed payment of ``AMOUNT`` to ``to``: its latency (s) and the node's answer."""
    start = time.perf_counter()
    answer = await payer.call("POST", "/transfers", {"to": to, "amount": str(AMOUNT), "timeout": timeout})
    return time.perf_counter() - start, dict(answer)


class Outcomes:
    """The answers of a phase's routed payments: outcomes, attempts, failure reasons, the routes taken."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.attempts: list[int] = []
        self.reasons: Counter[str] = Counter()
        self.routes: list[list[str]] = []

    def add(self, answer: dict[str, Any]) -> None:
        self.outcomes[str(answer["outcome"])] += 1
        self.attempts.append(int(answer["attempts"]))
        if answer["outcome"] != "succeeded":
            self.reasons[str(answer["reason"])[:200]] += 1
        route = answer.get("route")
        if route:
            self.routes.append(route_nodes(route))

    @property
    def succeeded(self) -> int:
        return self.outcomes["succeeded"]

    def to_json(self) -> dict[str, Any]:
        return {
            "succeeded": self.outcomes["succeeded"],
            "failed": self.outcomes["failed"],
            "pending": self.outcomes["pending"],
            "mean_attempts": round(sum(self.attempts) / max(len(self.attempts), 1), 2),
            "failure_reasons": dict(self.reasons.most_common(5)),
        }


def route_nodes(route: dict[str, Any]) -> list[str]:
    """The addresses a route passes, payer first."""
    hops = route["hops"]
    return [hops[0]["sender"], *(hop["receiver"] for hop in hops)]


async def measure_sequential(payer: Control, to: str, payments: int, timeout: int) -> dict[str, Any]:
    """``payments`` routed payments to ``to``, one after the other (after ``WARMUP_ROUTED``)."""
    warmup = Outcomes()
    for _ in range(WARMUP_ROUTED):
        warmup.add((await transfer(payer, to, timeout))[1])
    outcomes, latencies = Outcomes(), []
    start = time.perf_counter()
    for _ in range(payments):
        latency, answer = await transfer(payer, to, timeout)
        latencies.append(latency)
        outcomes.add(answer)
    elapsed = time.perf_counter() - start
    return {
        "payments": payments,
        **outcomes.to_json(),
        **summary(latencies, elapsed, outcomes.succeeded),
        "warmup": {"payments": WARMUP_ROUTED, **warmup.to_json()},
        "_routes": warmup.routes + outcomes.routes,
    }


async def measure_concurrent(payer: Control, to: str, payments: int, concurrency: int, timeout: int) -> dict[str, Any]:
    """``payments`` routed payments to ``to`` from ``concurrency`` workers, each one request at a time."""
    outcomes, latencies = Outcomes(), []

    async def worker(count: int) -> None:
        for _ in range(count):
            latency, answer = await transfer(payer, to, timeout)
            latencies.append(latency)
            outcomes.add(answer)

    shares = [payments // concurrency + (1 if i < payments % concurrency else 0) for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in shares if n))
    elapsed = time.perf_counter() - start
    return {
        "payments": payments,
        "requests_in_flight": min(concurrency, payments),
        **outcomes.to_json(),
        **summary(latencies, elapsed, outcomes.succeeded),
        "_routes": outcomes.routes,
    }


def cpu_used(before: dict[str, float], after: dict[str, float], payments: int) -> dict[str, Any]:
    """CPU seconds each node used in a phase, and per payment (ms)."""
    used = {name: after[name] - before[name] for name in after}
    return {
        "cpu_seconds": {name: round(seconds, 3) for name, seconds in used.items()},
        "cpu_ms_per_payment": {name: round(seconds / max(payments, 1) * 1e3, 2) for name, seconds in used.items()},
    }


async def _drive(line: Line, args: argparse.Namespace) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=args.timeout + 30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        payer = Control(line.node("payer"), session)
        await probe_transfers(payer)
        phases: dict[str, Any] = {}
        for phase, payee, intermediaries in ROUTES:
            to = line.address(payee)
            priced = (await payer.call("POST", "/route", {"to": to, "amount": str(AMOUNT), "k": 1}))["routes"][0]
            # the direct figure this phase is compared with, measured just before it: the machine's speed
            # drifts by tens of percent within a run (compare "direct again" at the end)
            direct = await measure_direct_with_cpu(line, payer, args.direct_payments, f"direct, before {phase}")
            cpu = cpu_of(line.nodes)
            sequential = await measure_sequential(payer, to, args.payments, args.timeout)
            sequential.update(cpu_used(cpu, cpu_of(line.nodes), sequential["payments"] + WARMUP_ROUTED))
            print(f"{phase}, sequential: {_brief(sequential)}", file=sys.stderr, flush=True)
            cpu = cpu_of(line.nodes)
            concurrent = await measure_concurrent(payer, to, args.payments, args.concurrency, args.timeout)
            concurrent.update(cpu_used(cpu, cpu_of(line.nodes), concurrent["payments"]))
            print(f"{phase}, {args.concurrency} in flight: {_brief(concurrent)}", file=sys.stderr, flush=True)
            for taken in sequential.pop("_routes") + concurrent.pop("_routes"):
                if taken != route_nodes(priced):
                    raise RouteChanged(route_nodes(priced), taken)
            phases[phase] = {
                "payee": payee,
                "intermediaries": list(intermediaries),
                "route": priced,
                "direct": direct,
                "sequential": sequential,
                "concurrent": concurrent,
            }
        after = await measure_direct_with_cpu(line, payer, args.direct_payments, "direct again")  # did the load change?
        transfers = {node.name: await Control(node, session).call("GET", "/transfers") for node in line.nodes}
    first = phases[ROUTES[0][0]]["direct"]
    return {"direct": first, **phases, "direct_after_routed": after, "transfers": transfers}


async def measure_direct_with_cpu(line: Line, payer: Control, payments: int, label: str) -> dict[str, Any]:
    """``measure_direct`` with each node's CPU time over it (warm-up included), printed as ``label``."""
    cpu = cpu_of(line.nodes)
    direct = await measure_direct(payer, payments)
    direct.update(cpu_used(cpu, cpu_of(line.nodes), direct["payments"] + WARMUP_DIRECT))
    print(f"{label}: {_brief(direct)}", file=sys.stderr, flush=True)
    return direct


def _brief(figures: dict[str, Any]) -> str:
    return (
        f"{figures['succeeded']}/{figures['payments']} ok, {figures['payments_per_s']} payments/s, "
        f"p50 {figures['ms_p50']} ms, p99 {figures['ms_p99']} ms"
    )


# --- the report --------------------------------------------------------------------------------------------


def ratios(phase: dict[str, Any]) -> dict[str, float]:
    """A phase's figures relative to the direct ones measured just before it, in the same run."""
    direct = phase["direct"]
    rate = direct["payments_per_s"]
    return {
        "sequential_payments_per_s_to_direct": round(phase["sequential"]["payments_per_s"] / rate, 3),
        "concurrent_payments_per_s_to_direct": round(phase["concurrent"]["payments_per_s"] / rate, 3),
        "p50_to_direct_p50": round(phase["sequential"]["ms_p50"] / direct["ms_p50"], 2),
    }


def targets(one: dict[str, float]) -> dict[str, Any]:
    """The targets for one intermediary, one request at a time (as the direct figure is measured)."""
    return {
        "one_intermediary_payments_per_s_to_direct": {
            "at_least": TARGET_PAYMENTS_PER_S_RATIO,
            "measured": one["sequential_payments_per_s_to_direct"],
            "met": one["sequential_payments_per_s_to_direct"] >= TARGET_PAYMENTS_PER_S_RATIO,
        },
        "one_intermediary_p50_to_direct_p50": {
            "at_most": TARGET_P50_RATIO,
            "measured": one["p50_to_direct_p50"],
            "met": one["p50_to_direct_p50"] <= TARGET_P50_RATIO,
        },
    }


def fee_check(measured: dict[str, Any]) -> dict[str, Any]:
    """Each intermediary's fees: what each route's hop has it forward and charge, times the payments that
    succeeded along it, against ``feesEarned`` from its node's ``GET /transfers``."""
    checked: dict[str, Any] = {}
    for name, charged in FEES.items():
        forwards, expected = [], 0
        for phase, _, intermediaries in ROUTES:
            if name not in intermediaries:
                continue
            figures = measured[phase]
            hop = figures["route"]["hops"][1 + intermediaries.index(name)]  # the hop it sends
            paid = figures["sequential"]["warmup"]["succeeded"] + sum(
                figures[kind]["succeeded"] for kind in ("sequential", "concurrent")
            )
            forwards.append({"route": phase, "payments": paid, "forwarded": hop["amount"], "fee_each": hop["fee"]})
            expected += paid * int(hop["fee"])
        earned = int(measured["transfers"][name]["feesEarned"])
        checked[name] = {
            "baseFee": charged.base_fee,
            "ppm": charged.ppm,
            "forwards": forwards,
            "expected": str(expected),
            "earned": str(earned),
            "exact": earned == expected,
        }
    return checked


def totals(transfers: dict[str, Any]) -> dict[str, Any]:
    """Each node's ``GET /transfers`` totals, and how many transfers it holds by role and status."""
    return {
        name: {
            "feesEarned": data["feesEarned"],
            "received": data["received"],
            "sent": data["sent"],
            "transfers": dict(Counter(f"{t['role']} {t['status']}" for t in data["transfers"])),
        }
        for name, data in transfers.items()
    }


def report(measured: dict[str, Any], args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    direct = measured["direct"]
    relative = {phase: ratios(measured[phase]) for phase, _, _ in ROUTES}
    return {
        "what": "routed payments (hashlocked, through intermediaries that charge base + ppm) between paychan node "
        "processes over loopback, against direct unbatched payments measured in the same run; every state is "
        "fsync'ed by the nodes that sign it",
        "line": "payer -> i1 -> i2 -> payee; one intermediary: payer -> i1 -> i2, two: payer -> i1 -> i2 -> payee",
        "machine": machine,
        "workload": {
            "quick": args.quick,
            "payments_per_phase": args.payments,
            "direct_payments": args.direct_payments,
            "concurrency": args.concurrency,
            "routed_amount_wei": str(AMOUNT),
            "direct_amount_wei": str(DIRECT_AMOUNT),
            "deposit_per_channel_wei": str(DEPOSIT),
            "fees": {name: {"baseFee": f.base_fee, "ppm": f.ppm} for name, f in FEES.items()},
        },
        "direct": direct,
        "direct_after_routed": {
            **measured["direct_after_routed"],
            "payments_per_s_to_before": round(
                measured["direct_after_routed"]["payments_per_s"] / direct["payments_per_s"], 3
            ),
        },
        **{phase: measured[phase] for phase, _, _ in ROUTES},
        "ratios": relative,
        "targets": targets(relative["one_intermediary"]),
        "fees": fee_check(measured),
        "totals": totals(measured["transfers"]),
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    rows = [
        "| payments | payments/s | p50 ms | p99 ms | vs direct just before (payments/s, p50) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for phase, label in (("one_intermediary", "1 intermediary"), ("two_intermediaries", "2 intermediaries")):
        seq, con, rel = result[phase]["sequential"], result[phase]["concurrent"], result["ratios"][phase]
        direct = result[phase]["direct"]
        rows.append(
            f"| direct (`POST /pay`, one at a time), before {label} | {direct['payments_per_s']} | "
            f"{direct['ms_p50']} | {direct['ms_p99']} | 1, 1 |"
        )
        rows.append(
            f"| {label}, one at a time | {seq['payments_per_s']} | {seq['ms_p50']} | {seq['ms_p99']} | "
            f"{rel['sequential_payments_per_s_to_direct']:.0%}, {rel['p50_to_direct_p50']}x |"
        )
        rows.append(
            f"| {label}, {con['requests_in_flight']} in flight | {con['payments_per_s']} | {con['ms_p50']} | "
            f"{con['ms_p99']} | {rel['concurrent_payments_per_s_to_direct']:.0%}, - |"
        )
    again = result["direct_after_routed"]
    rows.append(
        f"| direct again, after the routed runs | {again['payments_per_s']} | {again['ms_p50']} | "
        f"{again['ms_p99']} | {again['payments_per_s_to_before']:.0%} of the first, - |"
    )
    return "\n".join(rows)


def log_warnings(folder: Path, names: list[str], most: int = 5) -> dict[str, dict[str, int]]:
    """Each node's WARNING and ERROR log lines, the numbers in them (payment ids, delays) as ``N``: the
    ``most`` commonest with their counts. A payment that stalled or failed says why here."""
    found: dict[str, dict[str, int]] = {}
    for name in names:
        lines = (folder / f"{name}.log").read_text(errors="replace").splitlines()
        kinds = Counter(
            re.sub(r"\d+(\.\d+)?", "N", line.split(level, 1)[1].strip())[:300]
            for line in lines
            for level in (" WARNING ", " ERROR ")
            if level in line
        )
        found[name] = dict(kinds.most_common(most))
    return found


def keep_logs(folder: Path, into: Path) -> None:
    """Copies the node logs of the run (``NAME.log``) into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for log in sorted(folder.glob("*.log")):
        shutil.copyfile(log, into / log.name)


def timeline(directory: Path, names: dict[str, str], payments: int) -> str:
    """The commits and peer requests of every node (``paychan.node.trace``) during one routed payment through
    one intermediary, one at a time: the middle one of that phase, from the payer's offer to its next one."""
    events: list[tuple[int, int, str, str]] = []
    for path in directory.glob("*.trace"):
        name = names.get(path.stem, path.stem)
        for line in path.read_text().splitlines():
            kind, start, end, *what = line.split()
            events.append((int(start), int(end), name, " ".join([kind, *what])))
    events.sort()
    offers = [e for e in events if e[2] == "payer" and e[3].endswith(" offer")]
    if len(offers) < payments // 2 + 2:
        return "trace: too few routed payments traced"
    begin, end = offers[payments // 2][0], offers[payments // 2 + 1][0]
    rows = [
        f"{(s - begin) / 1e6:8.2f} {(e - begin) / 1e6:8.2f}  {n:<6} {w}" for s, e, n, w in events if begin <= s < end
    ]
    return "\n".join(["   start      end  node   what (ms from the payer's offer)", *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--payments", type=int, default=200, help="routed payments per phase (default 200)")
    parser.add_argument("--direct-payments", type=int, default=300, help="direct payments (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="routed requests in flight (at most 16)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds a routed payment may take")
    parser.add_argument("--quick", action="store_true", help="a few payments: checks the harness, not the speed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--logs", type=Path, default=None, help="copy the node logs into this folder at the end")
    parser.add_argument("--node-log-level", default="WARNING", help="the nodes' --log-level (INFO to trace a stall)")
    parser.add_argument("--trace", type=Path, default=None, help="trace the nodes' commits and requests into DIR")
    args = parser.parse_args(argv)
    if args.quick:
        args.payments, args.direct_payments, args.timeout = 4, 20, 20
        args.concurrency = min(args.concurrency, 4)
    if not 1 <= args.concurrency <= MAX_LOCKS:
        parser.error(f"--concurrency is 1 to {MAX_LOCKS}: a channel holds at most {MAX_LOCKS} pending locks")
    if args.payments < 1 or args.direct_payments < 1:
        parser.error("--payments and --direct-payments are at least 1")

    if args.trace is not None:  # the node processes inherit it (``paychan.node.trace``)
        args.trace.mkdir(parents=True, exist_ok=True)
        os.environ["PAYCHAN_TRACE"] = str(args.trace.resolve())
    pids: dict[str, str] = {}
    extra = ("--log-level", args.node_log_level, "--poll-interval", "0.5", "--payment-timeout", str(args.timeout))
    with tempfile.TemporaryDirectory(prefix="paychan-routed-", dir=Path(__file__).resolve().parent.parent) as tmp:
        folder = Path(tmp)  # on the repository's file system: the fsyncs are the real disk's
        try:
            with node_line(folder, NAMES, DEPOSIT, FEES, extra, route_amount=AMOUNT) as line:
                load_before = os.getloadavg()
                pids = {str(node.process.pid): node.name for node in line.nodes if node.process is not None}
                measured = asyncio.run(_drive(line, args))
                load_after = os.getloadavg()
                cpu_total = {name: round(seconds, 2) for name, seconds in cpu_of(line.nodes).items()}
            warnings = log_warnings(folder, NAMES)
        finally:  # the nodes are stopped: their logs are complete
            if args.logs is not None:
                keep_logs(folder, args.logs)
    machine = {
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "node_cpu_seconds_whole_run": cpu_total,
    }
    result = report(measured, args, machine)
    result["node_log_warnings"] = warnings
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.trace is not None:
        print(timeline(args.trace, pids, args.payments))
    print(json.dumps(result, indent=2))
    print(table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
