"""The RPC URL conventions of Foundry and Ape: ``--rpc-url``, else ``$PAYCHAN_RPC_URL``, else ``$ETH_RPC_URL``;
``deploy`` needs a node (one line when none is named), ``demo`` and the scripts fall back to the embedded
chain (``--rpc-url embedded`` chooses it whatever the environment says)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paychan.chain import EMBEDDED, connect, default_rpc_url
from paychan.devnet import Devnet, free_port, start_devnet

ROOT = Path(__file__).resolve().parent.parent
PAYCHAN = [str(Path(sys.executable).parent / "paychan")]
NO_NODE_LINE = (
    "paychan: error: deploy needs a node: pass --rpc-url URL or set ETH_RPC_URL "
    "(`paychan devnet` serves http://127.0.0.1:8545)\n"
)


def env_with(tmp_path: Path, **variables: str) -> dict[str, str]:
    """Our environment with only ``variables`` choosing the node, and records in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PAYCHAN_RPC_URL", "ETH_RPC_URL", "PAYCHAN_PRIVATE_KEYS")}
    return {**env, "PAYCHAN_DEPLOYMENTS": str(tmp_path / "records"), **variables}


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    with start_devnet() as net:
        yield net


# --- default_rpc_url -------------------------------------------------------------------------------


def test_the_default_rpc_url_is_paychan_rpc_url_else_eth_rpc_url_else_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYCHAN_RPC_URL", raising=False)
    monkeypatch.delenv("ETH_RPC_URL", raising=False)
    assert default_rpc_url() is None
    monkeypatch.setenv("ETH_RPC_URL", "http://foundry:8545")
    assert default_rpc_url() == "http://foundry:8545"
    monkeypatch.setenv("PAYCHAN_RPC_URL", "http://ours:8545")
    assert default_rpc_url() == "http://ours:8545"
    monkeypatch.setenv("PAYCHAN_RPC_URL", "")  # set but empty counts as unset, as in Foundry
    assert default_rpc_url() == "http://foundry:8545"


def test_connect_never_reads_the_environment_and_embedded_names_the_in_process_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETH_RPC_URL", dead_url())
    assert connect().kind == "embedded"
    assert connect(EMBEDDED).kind == "embedded"


# --- deploy: needs a node --------------------------------------------------------------------------


def test_deploy_without_rpc_url_or_environment_fails_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = run([*PAYCHAN, "deploy"], env_with(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", NO_NODE_LINE)
    assert not (tmp_path / "records").exists()


def test_deploy_help_says_that_it_needs_a_node_and_names_the_variables(tmp_path: Path) -> None:
    result = run([*PAYCHAN, "deploy", "--help"], env_with(tmp_path, ETH_RPC_URL="http://shown:8545"))
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "required unless $PAYCHAN_RPC_URL or $ETH_RPC_URL is set (now: http://shown:8545;" in text
    assert "It needs a node: --rpc-url, else $PAYCHAN_RPC_URL or $ETH_RPC_URL" in text


@pytest.mark.anvil
def test_deploy_takes_the_node_from_eth_rpc_url(devnet: Devnet, tmp_path: Path) -> None:
    result = run([*PAYCHAN, "deploy", "--json"], env_with(tmp_path, ETH_RPC_URL=devnet.url))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chain_id"] == 31337


@pytest.mark.anvil
def test_paychan_rpc_url_wins_over_eth_rpc_url_and_the_flag_over_both(devnet: Devnet, tmp_path: Path) -> None:
    env = env_with(tmp_path, PAYCHAN_RPC_URL=devnet.url, ETH_RPC_URL=dead_url())
    assert run([*PAYCHAN, "deploy"], env).returncode == 0
    env = env_with(tmp_path, PAYCHAN_RPC_URL=dead_url(), ETH_RPC_URL=dead_url())
    assert run([*PAYCHAN, "deploy", "--rpc-url", devnet.url], env).returncode == 0
    unreachable = dead_url()
    failed = run([*PAYCHAN, "deploy"], env_with(tmp_path, ETH_RPC_URL=unreachable))
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"paychan: error: no Ethereum JSON-RPC node answers at {unreachable}")


# --- demo and the scripts: the environment, else the embedded chain ---------------------------------


@pytest.mark.anvil
def test_demo_runs_on_the_node_of_eth_rpc_url(devnet: Devnet, tmp_path: Path) -> None:
    result = run([*PAYCHAN, "demo", "--json", "--payments", "2"], env_with(tmp_path, ETH_RPC_URL=devnet.url))
    assert result.returncode == 0, result.stderr
    assert {ledger["chain"]["kind"] for ledger in json.loads(result.stdout)} == {"rpc"}


def test_demo_rpc_url_embedded_ignores_the_environment(tmp_path: Path) -> None:
    env = env_with(tmp_path, ETH_RPC_URL=dead_url())
    result = run([*PAYCHAN, "demo", "--json", "--payments", "2", "--rpc-url", "embedded"], env)
    assert result.returncode == 0, result.stderr
    assert {ledger["chain"]["kind"] for ledger in json.loads(result.stdout)} == {"embedded"}


def script(name: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / f"{name}.py")]


@pytest.mark.anvil
def test_the_scripts_take_the_node_from_eth_rpc_url(devnet: Devnet, tmp_path: Path) -> None:
    result = run([*script("deploy"), "--json"], env_with(tmp_path, ETH_RPC_URL=devnet.url))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deployment_file"].startswith(str(tmp_path / "records"))
    ledger = run([*script("cooperative"), "--json", "--payments", "2"], env_with(tmp_path, ETH_RPC_URL=devnet.url))
    assert ledger.returncode == 0, ledger.stderr
    parsed = json.loads(ledger.stdout)
    assert parsed["chain"]["kind"] == "rpc"
    assert parsed["contract"] == json.loads(result.stdout)["address"]  # the recorded contract, found


def test_the_scripts_without_environment_or_with_rpc_url_embedded_use_the_embedded_chain(tmp_path: Path) -> None:
    for env, extra in (
        (env_with(tmp_path), []),
        (env_with(tmp_path, ETH_RPC_URL=dead_url()), ["--rpc-url", "embedded"]),
    ):
        result = run([*script("deploy"), "--json", *extra], env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["deployment_file"] is None  # the in-process chain: nothing recorded
