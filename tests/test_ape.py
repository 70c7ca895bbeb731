"""Ape, as a user runs it (subprocesses, offline): `ape compile` builds the same contract as the package,
`ape test tests_ape` passes on Ape's local network and on anvil (`ethereum:local:foundry`), and
`ape run deploy|cooperative|dispute` run the scripts on both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paychan.compile import load_artifact
from paychan.devnet import free_port

ROOT = Path(__file__).resolve().parent.parent
APE = str(Path(sys.executable).parent / "ape")
NETWORKS = {"local": "ethereum:local:test", "foundry": "ethereum:local:foundry"}


@pytest.fixture(scope="module")
def ape_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Offline Ape: the project's solc wrapper and anvil, a throwaway data folder and deployments folder."""
    env = {
        **os.environ,
        "SOLCX_BINARY_PATH": str(ROOT / "bin"),
        "PATH": os.pathsep.join([str(ROOT / "node_modules" / ".bin"), str(Path(APE).parent), os.environ["PATH"]]),
        "APE_DATA_FOLDER": str(tmp_path_factory.mktemp("ape-data")),
        "PAYCHAN_DEPLOYMENTS": str(tmp_path_factory.mktemp("deployments")),
    }
    env.pop("PAYCHAN_CHAINS", None)
    return env


def ape(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """One `ape` command; anvil, if it starts one, listens on a port that was free just before (ape-foundry's
    `host: auto` draws a random port from the kernel's ephemeral range without checking it: under a loaded
    suite it drew a taken one and waited out its 20 s start timeout)."""
    env = {**env, "APE_FOUNDRY_HOST": f"http://127.0.0.1:{free_port()}"}
    return subprocess.run(
        [APE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def without_metadata(bytecode: str) -> str:
    """Bytecode minus solc's CBOR metadata trailer (its length is the last two bytes)."""
    code = bytes.fromhex(bytecode.removeprefix("0x"))
    return code[: -(int.from_bytes(code[-2:], "big") + 2)].hex()


@pytest.fixture(scope="module")
def compiled(ape_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return ape(ape_env, "compile", "--force")


def test_ape_compile_builds_the_shipped_bytecode_offline(compiled: subprocess.CompletedProcess[str]) -> None:
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert "SUCCESS" in compiled.stdout + compiled.stderr
    assert "download" not in (compiled.stdout + compiled.stderr).lower()
    build = json.loads((ROOT / ".build" / "__local__.json").read_text())
    ape_type = build["contractTypes"]["PaymentChannels"]
    shipped = load_artifact()
    assert ape_type["abi"] == shipped.abi
    assert without_metadata(ape_type["deploymentBytecode"]["bytecode"]) == without_metadata(shipped.bytecode)
    assert without_metadata(ape_type["runtimeBytecode"]["bytecode"]) == without_metadata(shipped.deployed_bytecode)


@pytest.mark.parametrize("network", list(NETWORKS), ids=list(NETWORKS))
def test_ape_test_runs_the_ape_native_lifecycle_tests(compiled, ape_env: dict[str, str], network: str) -> None:
    expected = sum(
        len(re.findall(r"^def test_", path.read_text(), flags=re.M)) for path in (ROOT / "tests_ape").glob("test_*.py")
    )
    result = ape(ape_env, "test", "tests_ape", "--network", NETWORKS[network], "-p", "no:cacheprovider", "-q")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    summary = re.search(r"(\d+) passed", output)
    assert summary is not None, output[-2000:]
    assert int(summary.group(1)) == expected >= 9
    assert not re.search(r"\d+ (failed|skipped|error)", output)


@pytest.mark.parametrize("network", list(NETWORKS), ids=list(NETWORKS))
def test_ape_run_deploy_writes_a_record_only_for_a_node(compiled, ape_env: dict[str, str], network: str) -> None:
    result = ape(ape_env, "run", "deploy", "--network", NETWORKS[network])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PaymentChannels deployed at 0x" in result.stdout
    if network == "local":
        assert "not recorded: the in-process chain ends with this script" in result.stdout
    else:  # a fresh anvil each run: the record names chain 31337 and that anvil's genesis block
        (record,) = Path(ape_env["PAYCHAN_DEPLOYMENTS"]).glob("31337-*.json")
        assert f"recorded in {record}" in result.stdout
        data = json.loads(record.read_text())
        assert data["chain_id"] == 31337 and record.name == f"31337-{data['genesis_hash'][2:10]}.json"


@pytest.mark.parametrize("network", list(NETWORKS), ids=list(NETWORKS))
def test_ape_run_cooperative_prints_a_reconciled_ledger(compiled, ape_env: dict[str, str], network: str) -> None:
    # a record left by `ape run deploy` names a contract on an anvil that is gone: the script deploys its own
    result = ape(ape_env, "run", "cooperative", "--network", NETWORKS[network])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\n== Cooperative lifecycle ==\n" in "\n" + result.stdout  # after Ape's INFO lines
    assert f"chain: ape-{'local' if network == 'local' else 'foundry'}" in result.stdout
    assert "alice got back 3.767 ETH (pushed)" in result.stdout
    assert "bob got back 4.233 ETH (pushed)" in result.stdout


@pytest.mark.parametrize("network", list(NETWORKS), ids=list(NETWORKS))
def test_ape_run_dispute_pays_by_the_newest_state(compiled, ape_env: dict[str, str], network: str) -> None:
    result = ape(ape_env, "run", "dispute", "--network", NETWORKS[network])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\n== Dispute: a stale close beaten by a challenge ==\n" in "\n" + result.stdout
    assert "alice got back 1 ETH (pushed)" in result.stdout
    assert "bob got back 4 ETH (pushed)" in result.stdout
