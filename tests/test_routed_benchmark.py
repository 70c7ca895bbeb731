"""The routed benchmark (benchmarks/routed.py): a quick run on a fresh anvil reports every figure, every
payment succeeded along the route it was priced on, and each intermediary earned exactly its advertised fee
(base + forwarded * ppm // 1,000,000) per payment it forwarded, as its node's ``GET /transfers`` says. No
timing is asserted: the speed is the benchmark's to report, not this test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from benchmarks.network_setup import DEV_KEYS, Fees
from benchmarks.routed import AMOUNT, FEES, NAMES, WARMUP_ROUTED, fee_check

ROOT = Path(__file__).resolve().parent.parent
ADDRESSES = dict(zip(NAMES, (Account.from_key(key).address for key in DEV_KEYS), strict=False))
PHASES = {"one_intermediary": ["payer", "i1", "i2"], "two_intermediaries": ["payer", "i1", "i2", "payee"]}
FIGURES = ("payments_per_s", "ms_p50", "ms_p99", "seconds")


def fee(charged: Fees, forwarded: int) -> int:
    return charged.base_fee + forwarded * charged.ppm // 1_000_000


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m benchmarks.routed --quick`` in its own interpreter (its own anvil and nodes, stopped by PID
    when it ends); the JSON it wrote."""
    out = tmp_path_factory.mktemp("routed") / "routed.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.routed", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # a bound, not a timing assertion: the quick run takes about 20 s
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(out.read_text()))


@pytest.mark.anvil
def test_a_quick_run_reports_every_figure_for_direct_and_routed_payments(quick_run: dict[str, Any]) -> None:
    direct = quick_run["direct"]
    assert direct == quick_run[next(iter(PHASES))]["direct"]  # the run's first direct figures
    for figures in (*(quick_run[phase]["direct"] for phase in PHASES), quick_run["direct_after_routed"]):
        assert figures["succeeded"] == figures["payments"] == quick_run["workload"]["direct_payments"] > 0
        assert all(figures[name] > 0 for name in FIGURES)
        assert set(figures["cpu_seconds"]) == set(figures["cpu_ms_per_payment"]) == set(NAMES)
    assert quick_run["direct_after_routed"]["payments_per_s_to_before"] == round(
        quick_run["direct_after_routed"]["payments_per_s"] / direct["payments_per_s"], 3
    )
    for phase in PHASES:
        for kind in ("sequential", "concurrent"):
            figures = quick_run[phase][kind]
            assert (figures["succeeded"], figures["failed"], figures["pending"]) == (figures["payments"], 0, 0)
            assert figures["payments"] == quick_run["workload"]["payments_per_phase"]
            assert all(figures[name] > 0 for name in FIGURES), figures
            assert set(figures["cpu_seconds"]) == set(NAMES)
            assert all(seconds >= 0 for seconds in figures["cpu_seconds"].values())
        assert quick_run[phase]["concurrent"]["requests_in_flight"] == quick_run["workload"]["concurrency"]
        assert quick_run[phase]["sequential"]["warmup"]["succeeded"] == WARMUP_ROUTED
        ratios, before = quick_run["ratios"][phase], quick_run[phase]["direct"]  # measured just before the phase
        assert ratios["sequential_payments_per_s_to_direct"] == round(
            quick_run[phase]["sequential"]["payments_per_s"] / before["payments_per_s"], 3
        )
        assert ratios["p50_to_direct_p50"] == round(quick_run[phase]["sequential"]["ms_p50"] / before["ms_p50"], 2)
        assert ratios["concurrent_payments_per_s_to_direct"] > 0
    targets = quick_run["targets"]
    assert targets["one_intermediary_payments_per_s_to_direct"]["at_least"] == 0.4
    assert targets["one_intermediary_p50_to_direct_p50"]["at_most"] == 3.0
    assert all(isinstance(target["met"], bool) for target in targets.values())
    assert set(quick_run["machine"]["node_cpu_seconds_whole_run"]) == set(NAMES)
    assert set(quick_run["node_log_warnings"]) == set(NAMES)


@pytest.mark.anvil
def test_each_routed_payment_took_the_priced_route_with_each_hop_carrying_the_fees_downstream(
    quick_run: dict[str, Any],
) -> None:
    fee_i2 = fee(FEES["i2"], AMOUNT)
    carried = {
        "one_intermediary": [AMOUNT + fee(FEES["i1"], AMOUNT), AMOUNT],
        "two_intermediaries": [AMOUNT + fee_i2 + fee(FEES["i1"], AMOUNT + fee_i2), AMOUNT + fee_i2, AMOUNT],
    }
    for phase, names in PHASES.items():
        hops = quick_run[phase]["route"]["hops"]
        assert [hop["sender"] for hop in hops] + [hops[-1]["receiver"]] == [ADDRESSES[name] for name in names]
        assert [int(hop["amount"]) for hop in hops] == carried[phase]
        assert int(quick_run[phase]["route"]["amount"]) == AMOUNT


@pytest.mark.anvil
def test_each_intermediary_earned_exactly_base_plus_forwarded_times_ppm_per_payment(
    quick_run: dict[str, Any],
) -> None:
    payments = WARMUP_ROUTED + 2 * quick_run["workload"]["payments_per_phase"]  # per route, all succeeded
    fee_i2 = fee(FEES["i2"], AMOUNT)
    expected = {
        "i1": payments * fee(FEES["i1"], AMOUNT) + payments * fee(FEES["i1"], AMOUNT + fee_i2),
        "i2": payments * fee_i2,  # it is the payee of the one-intermediary route: no fee there
    }
    for name, wei in expected.items():
        assert int(quick_run["totals"][name]["feesEarned"]) == wei, (name, quick_run["totals"][name])
        assert quick_run["fees"][name]["exact"] is True
        assert int(quick_run["fees"][name]["expected"]) == wei
    assert int(quick_run["totals"]["payer"]["feesEarned"]) == int(quick_run["totals"]["payee"]["feesEarned"]) == 0
    assert int(quick_run["totals"]["payee"]["received"]) == payments * AMOUNT


def test_a_fee_earned_one_wei_off_the_advertised_one_is_reported_as_not_exact() -> None:
    route = {"hops": [{"amount": "0", "fee": "0"}, {"amount": str(AMOUNT), "fee": str(fee(FEES["i1"], AMOUNT))}]}
    two = {
        "hops": [
            {"amount": "0", "fee": "0"},
            {"amount": "0", "fee": "7"},
            {"amount": str(AMOUNT), "fee": str(fee(FEES["i2"], AMOUNT))},
        ]
    }
    ran = {"succeeded": 3, "warmup": {"succeeded": 1}}
    measured = {
        "one_intermediary": {"route": route, "sequential": ran, "concurrent": {"succeeded": 2}},
        "two_intermediaries": {"route": two, "sequential": ran, "concurrent": {"succeeded": 2}},
        "transfers": {
            "i1": {"feesEarned": str(6 * fee(FEES["i1"], AMOUNT) + 6 * 7)},
            "i2": {"feesEarned": str(6 * fee(FEES["i2"], AMOUNT) - 1)},
        },
    }
    checked = fee_check(measured)
    assert (checked["i1"]["exact"], checked["i2"]["exact"]) == (True, False)
    assert int(checked["i2"]["expected"]) - int(checked["i2"]["earned"]) == 1
    assert [f["payments"] for f in checked["i1"]["forwards"]] == [6, 6]


def test_the_readmes_routed_table_is_the_committed_results_table() -> None:
    from benchmarks.routed import RESULTS, table

    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- routed:start -->\n", 1)[1].split("\n<!-- routed:end -->", 1)[0]
    assert block == table(json.loads(RESULTS.read_text())), "README.md's routed table: run python -m benchmarks.routed"
