"""Gas guard: every operation's gas, measured as ``benchmarks/gas.py`` does, never rises above the snapshot.

The snapshot is ``benchmarks/results/gas-snapshot.json``. A rise fails the test; a drop passes with a hint
to rewrite the snapshot (``python -m benchmarks.gas --update-snapshot``) in the same commit.
"""

from __future__ import annotations

import json
import warnings

import pytest

from benchmarks.gas import (
    OPERATIONS,
    SNAPSHOT_PATH,
    TARGETS,
    Bench,
    floor_of,
    measure_operations,
    measure_payments,
    snapshot_of,
)
from paychan.chain import embedded_chain
from paychan.compile import Artifact


@pytest.fixture(scope="module")
def bench(artifacts: dict[str, Artifact]) -> Bench:
    """Every operation measured once on a fresh embedded chain (its own, so storage starts the same)."""
    return measure_operations(embedded_chain(), artifacts)


@pytest.fixture(scope="module")
def snapshot() -> dict[str, int]:
    return {key: int(value) for key, value in json.loads(SNAPSHOT_PATH.read_text()).items()}


def test_snapshot_covers_exactly_the_measured_operations(snapshot):
    assert set(snapshot) == {op.key for op in OPERATIONS}


def test_no_operation_costs_more_gas_than_its_snapshot(bench, snapshot):
    measured = snapshot_of(bench)
    risen = {key: (snapshot[key], gas) for key, gas in measured.items() if gas > snapshot[key]}
    lowered = {key: (snapshot[key], gas) for key, gas in measured.items() if gas < snapshot[key]}
    if lowered:
        message = "gas went down; update the snapshot in this commit (python -m benchmarks.gas --update-snapshot): "
        message += ", ".join(f"{k} {old:,} -> {new:,}" for k, (old, new) in lowered.items())
        print(message)
        warnings.warn(message, stacklevel=1)
    assert not risen, "gas rose above the snapshot: " + ", ".join(
        f"{k} {old:,} -> {new:,} (+{new - old:,})" for k, (old, new) in risen.items()
    )


@pytest.mark.parametrize("key", sorted(TARGETS))
def test_deploy_and_eth_operations_stay_within_their_gas_targets(bench, key):
    assert bench.measured[key].gas <= TARGETS[key]


@pytest.mark.parametrize("key", [op.key for op in OPERATIONS if op.key != "deploy"])
def test_operation_costs_at_least_its_computed_floor(bench, key):
    # A floor above the measurement would mean the floor model counts something the EVM did not charge.
    assert floor_of(bench, key).total <= bench.measured[key].gas


def test_on_chain_cost_does_not_depend_on_the_number_of_off_chain_payments(bench):
    one, many = measure_payments(bench, 1), measure_payments(bench, 25)
    assert many["final_nonce"] == 26
    for name in ("open", "cooperative_close"):
        assert one[name]["execution_gas"] == many[name]["execution_gas"]
        # Only the calldata bytes of the larger nonce and balances may differ, by a few bytes at most.
        assert abs(one[name]["gas"] - many[name]["gas"]) == abs(one[name]["calldata_gas"] - many[name]["calldata_gas"])
        assert abs(one[name]["calldata_gas"] - many[name]["calldata_gas"]) <= 5 * 12
