"""`python scripts/<name>.py` on the embedded chain and on an anvil, as subprocesses: the scripts hold no
logic, so these check they parse their arguments, pick the chain and contract, and print the ledgers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paychan.compile import load_artifact
from paychan.deployments import artifact_hash, read_deployment
from paychan.devnet import Devnet, free_port, start_devnet

from .conftest import ETHER, chain_kinds

ROOT = Path(__file__).resolve().parent.parent


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def script_json(name: str, *args: str) -> dict:
    result = script(name, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    with start_devnet() as net:
        yield net


@pytest.fixture(params=chain_kinds())
def chain_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The scripts' chain arguments: none (embedded) or an anvil's URL, with a fresh deployments folder."""
    if request.param == "embedded":
        return ["--deployments", str(tmp_path)]
    net: Devnet = request.getfixturevalue("devnet")
    return ["--rpc-url", net.url, "--deployments", str(tmp_path)]


def test_cooperative_script_pays_out_exactly_what_was_deposited(chain_args: list[str]) -> None:
    ledger = script_json("cooperative", *chain_args, "--payments", "5")
    alice, bob = ledger["parties"]["alice"], ledger["parties"]["bob"]
    assert (alice["deposited"], bob["deposited"]) == (5 * ETHER, 3 * ETHER)
    assert alice["paid_out"] + bob["paid_out"] == 8 * ETHER
    assert alice["paid_out"] < 5 * ETHER < 3 * ETHER + bob["paid_out"]  # alice paid bob more than he paid her
    assert alice["reconciles"] and bob["reconciles"]
    assert len(ledger["states"]) == 6  # five payments and the final state
    assert ledger["chain"]["kind"] == ("embedded" if "--rpc-url" not in chain_args else "rpc")


def test_dispute_script_pays_by_the_newest_state(chain_args: list[str]) -> None:
    ledger = script_json("dispute", *chain_args)
    alice, bob = ledger["parties"]["alice"], ledger["parties"]["bob"]
    assert (alice["paid_out"], bob["paid_out"]) == (ETHER, 4 * ETHER)
    assert alice["reconciles"] and bob["reconciles"]


def test_text_output_is_the_ledger(chain_args: list[str]) -> None:
    result = script("dispute", *chain_args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("== Dispute: a stale close beaten by a challenge ==")
    assert "bob got back 4 ETH" in result.stdout


@pytest.mark.anvil
def test_scripts_on_anvil_use_the_contract_deploy_recorded(devnet: Devnet, tmp_path: Path) -> None:
    deployed = script_json("deploy", "--rpc-url", devnet.url, "--deployments", str(tmp_path))
    record = read_deployment(devnet.chain_id, tmp_path)
    assert deployed["address"] == record.address
    assert Path(deployed["deployment_file"]).parent == tmp_path
    assert Path(deployed["deployment_file"]).name.startswith(f"{devnet.chain_id}-")  # chain id and genesis hash
    assert record.artifact_hash == artifact_hash(load_artifact())
    for name in ("cooperative", "dispute"):
        ledger = script_json(name, "--rpc-url", devnet.url, "--deployments", str(tmp_path))
        assert ledger["contract"] == record.address
        assert not any(tx["label"].startswith("deploy") for tx in ledger["transactions"])


def test_deploy_script_on_the_embedded_chain_writes_no_record(tmp_path: Path) -> None:
    result = script("deploy", "--deployments", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "not recorded: the in-process chain ends with this script" in result.stdout
    assert not list(tmp_path.iterdir())


def test_a_script_pointed_at_no_node_fails_with_one_line() -> None:
    port = free_port()
    result = script("cooperative", "--rpc-url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"cooperative.py: error: no Ethereum JSON-RPC node answers at http://127.0.0.1:{port}"
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.anvil
def test_a_script_given_an_address_without_code_fails_with_one_line(devnet: Devnet) -> None:
    result = script("dispute", "--rpc-url", devnet.url, "--contract", "0x000000000000000000000000000000000000dEaD")
    assert result.returncode == 1
    assert result.stderr.startswith("dispute.py: error: no contract code at 0x000000000000000000000000000000000000dEaD")
