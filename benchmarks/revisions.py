"""Two revisions' direct-path figures in one run: the gate of a refactoring (the node split must not slow the
direct two-party path by more than 5%).

Run from the repository root::

    .venv/bin/python -m benchmarks.revisions --before bfd443d              # this checkout against bfd443d
    .venv/bin/python -m benchmarks.revisions --before bfd443d --rounds 2 --payments 5000

What it does: checks ``--before`` out into a temporary git worktree (sharing this checkout's ``.venv`` and
``node_modules``), then runs ``benchmarks/offchain.py`` of each revision, alternating (before, after,
before, after, ...) for ``--rounds`` rounds, so that a change in the machine's load hits both alike. Each
run is the revision's own code end to end (its node processes, its benchmark driver). It reports each
figure's median per revision and the ratio after / before, and whether every ratio is within ``--tolerance``
(payments/s at least 0.95 of before, p50 latency and CPU per payment at most 1.05 of it by default). On a
shared machine the rates move by up to 20% from run to run; the CPU time a payment costs each node moves
far less, and is the steadier gate. The result goes to ``benchmarks/results/revisions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "revisions.json"

# (name, path in offchain.json, True when higher is better)
FIGURES: list[tuple[str, tuple[str, ...], bool]] = [
    ("unbatched_payments_per_s", ("latency_unloaded", "payments_per_s"), True),
    ("unbatched_ms_p50", ("latency_unloaded", "ms_p50"), False),
    ("batched_one_way_payments_per_s", ("throughput_one_way", "payments_per_s"), True),
    ("batched_both_ways_payments_per_s", ("throughput_both_ways", "payments_per_s"), True),
    # the CPU a payment costs each node (batched, one way): steadier than the rates on a shared machine
    ("cpu_us_per_payment_payer", ("throughput_one_way", "cpu_us_per_payment_payer"), False),
    ("cpu_us_per_payment_payee", ("throughput_one_way", "cpu_us_per_payment_payee"), False),
]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _figure(result: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = result
    for key in path:
        value = value[key]
    return float(value)


def run_offchain(checkout: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``checkout``'s own ``benchmarks.offchain``; its JSON result."""
    command = [
        sys.executable, "-m", "benchmarks.offchain", "--payments", str(args.payments),
        "--latency-samples", str(args.latency_samples), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run(command, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
    return dict(json.loads(out.read_text()))


def compare(runs: dict[str, list[dict[str, Any]]], tolerance: float) -> dict[str, Any]:
    """Each figure's median per revision, the ratio after / before and whether it is within ``tolerance``."""
    figures: dict[str, Any] = {}
    for name, path, higher_is_better in FIGURES:
        before = statistics.median(_figure(r, path) for r in runs["before"])
        after = statistics.median(_figure(r, path) for r in runs["after"])
        ratio = after / before
        within = ratio >= 1 - tolerance if higher_is_better else ratio <= 1 + tolerance
        figures[name] = {
            "before": round(before, 2),
            "after": round(after, 2),
            "after_to_before": round(ratio, 3),
            "each_before": [round(_figure(r, path), 2) for r in runs["before"]],
            "each_after": [round(_figure(r, path), 2) for r in runs["after"]],
            "within_tolerance": within,
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--before", required=True, help="the revision to compare with (a commit, tag or branch)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each revision, alternating (default 3)")
    parser.add_argument("--payments", type=int, default=10_000, help="payments per throughput run")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--tolerance", type=float, default=0.05, help="the slowdown allowed (default 0.05)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds is at least 1")

    before_commit = _git("rev-parse", args.before)
    after_commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="paychan-revisions-", dir=ROOT) as tmp:
        folder = Path(tmp)
        checkout = folder / "before"
        _git("worktree", "add", "--detach", str(checkout), before_commit)
        try:
            for shared in (".venv", "node_modules"):
                (checkout / shared).symlink_to(ROOT / shared)
            for round_ in range(args.rounds):
                for label, where in (("before", checkout), ("after", ROOT)):
                    result = run_offchain(where, folder / f"{label}-{round_}.json", args)
                    runs[label].append(result)
                    unbatched = result["latency_unloaded"]["payments_per_s"]
                    batched = result["throughput_one_way"]["payments_per_s"]
                    print(f"round {round_ + 1} {label}: {unbatched}/s unbatched, {batched}/s batched", file=sys.stderr)
        finally:
            _git("worktree", "remove", "--force", str(checkout))
    figures = compare(runs, args.tolerance)
    result = {
        "what": "benchmarks/offchain.py of two revisions, run alternately on this machine (medians)",
        "before": {"revision": args.before, "commit": before_commit},
        "after": {"commit": after_commit, "uncommitted_changes": dirty},
        "rounds": args.rounds,
        "payments_per_throughput_run": args.payments,
        "tolerance": args.tolerance,
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "figures": figures,
        "all_within_tolerance": all(f["within_tolerance"] for f in figures.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
