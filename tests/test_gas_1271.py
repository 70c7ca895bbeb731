"""The ERC-1271 path's gas (benchmarks/gas_1271.py): a fresh run agrees with the committed results and the
README's figures are the committed ones; a wallet participant pays only for its signature check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.gas_1271 import OPERATIONS, RESULTS, run

README = Path(__file__).resolve().parent.parent / "README.md"
# Calldata carries the record's random salt (and hashes of it): a zero byte costs 4 gas, another 16, so two
# runs differ by a few dozen gas at most.
CALLDATA_NOISE = 200


@pytest.mark.embedded_only
def test_a_fresh_run_of_the_erc1271_benchmark_agrees_with_its_committed_results() -> None:
    committed = json.loads(RESULTS.read_text())["operations"]
    fresh = run()["operations"]
    assert set(fresh) == set(committed) == set(OPERATIONS)
    for op in OPERATIONS:
        for kind in ("key", "erc1271", "extra"):
            assert abs(fresh[op][kind] - committed[op][kind]) <= CALLDATA_NOISE, (op, kind, fresh[op], committed[op])
        # the wallet's check (a self-call, isValidSignature, bounded to 100,000 gas) costs about 6-9k
        assert 0 < fresh[op]["extra"] < 12_000, (op, fresh[op])


def test_the_readme_quotes_the_committed_erc1271_figures() -> None:
    committed = json.loads(RESULTS.read_text())["operations"]
    text = " ".join(README.read_text().split())
    close, challenge = committed["close"], committed["challenge"]
    proof, cooperative = committed["prove_revoked"], committed["cooperative_close"]
    for quoted in (
        f"a unilateral close costs {close['erc1271']:,} gas (key: {close['key']:,}, +{close['extra']:,})",
        f"a challenge {challenge['erc1271']:,} (+{challenge['extra']:,})",
        f"a proof of a revoked close {proof['erc1271']:,} (+{proof['extra']:,})",
        f"a cooperative close {cooperative['erc1271']:,} (+{cooperative['extra']:,})",
    ):
        assert quoted in text, quoted
