"""Deployment records keyed by chain id and genesis hash, found from any working directory, replacements
reported; and the early refusal of a chain without transient storage (EIP-1153) at deploy and connect.

Every test points ``PAYCHAN_DEPLOYMENTS`` (or ``HOME``) at a temporary directory: none touches the real home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paychan.chain import Chain, embedded_chain, genesis_hash, rpc_chain
from paychan.compile import EVM_VERSION
from paychan.contract import PaychanContract, require_transient_storage
from paychan.deployments import (
    Deployment,
    DeploymentNotFound,
    default_directory,
    deploy_and_record,
    load_contract,
    read_deployment,
    record_name,
    write_deployment,
)
from paychan.devnet import Devnet, anvil_command, find_anvil, free_port, start_devnet, wait_until_answers
from paychan.exceptions import ChainUnavailable, UnsupportedChain

ROOT = Path(__file__).resolve().parent.parent
PAYCHAN = [str(Path(sys.executable).parent / "paychan")]
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without the variables that choose a deployments directory or a node."""
    env = {k: v for k, v in os.environ.items() if k not in ("PAYCHAN_DEPLOYMENTS", "XDG_DATA_HOME")}
    env = {k: v for k, v in env.items() if k not in ("PAYCHAN_RPC_URL", "ETH_RPC_URL", "PAYCHAN_PRIVATE_KEYS")}
    return {**env, **extra}


def paychan(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PAYCHAN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    with start_devnet() as net:
        yield net


@pytest.fixture(scope="module")
def twin_devnets() -> Iterator[tuple[Devnet, Devnet]]:
    """Two anvils with chain id 31337 (their genesis blocks are stamped in different seconds: anvils started
    alike in the same second have the same genesis), stopped by PID."""
    first = start_devnet()
    try:
        started = first.chain().w3.eth.get_block(0)["timestamp"]
        while int(time.time()) <= started:
            time.sleep(0.05)
        second = start_devnet()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


# --- where records live ----------------------------------------------------------------------------


def test_the_default_directory_is_the_environment_variable_else_the_xdg_data_home_else_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PAYCHAN_DEPLOYMENTS", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_directory() == tmp_path / "home" / ".local" / "share" / "paychan" / "deployments"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_directory() == tmp_path / "data" / "paychan" / "deployments"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    assert default_directory() == tmp_path / "home" / ".local" / "share" / "paychan" / "deployments"
    monkeypatch.setenv("PAYCHAN_DEPLOYMENTS", str(tmp_path / "chosen"))
    assert default_directory() == tmp_path / "chosen"


def test_a_record_is_named_by_the_chain_id_and_the_genesis_hash_prefix() -> None:
    assert record_name(31337, "0xECE89715bcb034c36726294b9b274fcf6778208cd4c25db48a1ee63ccdc4d3cc") == (
        "31337-ece89715.json"
    )


# --- two chains with the same id -------------------------------------------------------------------


@pytest.mark.anvil
def test_two_devnets_with_chain_id_31337_get_separate_records_and_each_finds_its_own(
    twin_devnets: tuple[Devnet, Devnet], tmp_path: Path
) -> None:
    first, second = (net.chain() for net in twin_devnets)
    assert first.chain_id == second.chain_id == 31337
    assert genesis_hash(first) != genesis_hash(second)
    env = clean_env(PAYCHAN_DEPLOYMENTS=str(tmp_path))
    deployed = paychan("deploy", "--rpc-url", twin_devnets[0].url, "--json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    record_first = json.loads(deployed.stdout)
    assert "replaced" not in record_first
    second.transfer(second.accounts[0], second.accounts[1].address, 1)  # another deployer nonce: another address
    deployed = paychan("deploy", "--rpc-url", twin_devnets[1].url, "--json", env=env)  # the "throwaway" one
    assert deployed.returncode == 0, deployed.stderr
    record_second = json.loads(deployed.stdout)
    assert "replaced" not in record_second, "a deployment to another chain with the same id replaced nothing"
    assert record_first["address"] != record_second["address"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"31337-{genesis_hash(c)[2:10]}.json" for c in (first, second))
    assert record_first["deployment_file"] == str(tmp_path / f"31337-{genesis_hash(first)[2:10]}.json")
    assert json.loads(Path(record_first["deployment_file"]).read_text())["address"] == record_first["address"]
    assert load_contract(first, location=tmp_path).address == record_first["address"]
    assert load_contract(second, location=tmp_path).address == record_second["address"]
    assert read_deployment(31337, tmp_path, genesis_hash(first)).genesis_hash == genesis_hash(first)
    with pytest.raises(DeploymentNotFound, match="2 chains with id 31337 have records in"):
        read_deployment(31337, tmp_path)


@pytest.mark.anvil
def test_a_record_in_a_named_file_of_another_chain_with_the_same_id_is_refused(
    twin_devnets: tuple[Devnet, Devnet], tmp_path: Path
) -> None:
    first, second = (net.chain() for net in twin_devnets)
    record = tmp_path / "devnet.json"
    deploy_and_record(first, record)
    with pytest.raises(DeploymentNotFound, match=r"another chain with id 31337 \(genesis 0x[0-9a-f]{64}, this chain"):
        load_contract(second, location=record)


# --- from any working directory --------------------------------------------------------------------


@pytest.mark.anvil
def test_a_node_started_in_another_directory_finds_the_record_in_the_home(devnet: Devnet, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(HOME=str(home))
    deployed = paychan("deploy", "--rpc-url", devnet.url, "--json", env=env, cwd=ROOT)
    assert deployed.returncode == 0, deployed.stderr
    printed = json.loads(deployed.stdout)
    assert printed["deployment_file"].startswith(str(home / ".local" / "share" / "paychan" / "deployments"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lookup = (
        "import sys; from paychan.chain import rpc_chain; from paychan.deployments import load_contract; "
        "print(load_contract(rpc_chain(sys.argv[1])).address)"  # what `paychan node` does
    )
    found = subprocess.run(
        [sys.executable, "-c", lookup, devnet.url], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == printed["address"]
    assert not (ROOT / "deployments" / record_name(31337, genesis_hash(devnet.chain()))).exists()


# --- replacing -------------------------------------------------------------------------------------


@pytest.mark.anvil
def test_deploying_again_says_which_record_it_replaced_old_address_to_new(devnet: Devnet, tmp_path: Path) -> None:
    env = clean_env(PAYCHAN_DEPLOYMENTS=str(tmp_path))
    first = paychan("deploy", "--rpc-url", devnet.url, "--json", env=env)
    assert first.returncode == 0, first.stderr
    old = json.loads(first.stdout)
    again = paychan("deploy", "--rpc-url", devnet.url, env=env)
    assert again.returncode == 0, again.stderr
    new = read_deployment(31337, tmp_path, genesis_hash(devnet.chain()))
    assert new.address != old["address"]
    path = old["deployment_file"]
    assert f"replaced the deployment record {path}: {old['address']} -> {new.address}\n" in again.stdout
    assert again.stdout.splitlines()[-1] == f"replaced the deployment record {path}: {old['address']} -> {new.address}"
    third = paychan("deploy", "--rpc-url", devnet.url, "--json", env=env)
    replaced = json.loads(third.stdout)["replaced"]
    assert (replaced["address"], replaced["deployment_file"]) == (new.address, path)


@pytest.mark.anvil
def test_devnet_deploy_on_a_fresh_chain_replaces_nothing(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*PAYCHAN, "devnet", "--port", "0", "--deploy"],
        cwd=tmp_path, env=clean_env(PAYCHAN_DEPLOYMENTS=str(tmp_path / "records")), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "Press Ctrl-C to stop.":
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else ""
            lines.append(line.rstrip("\n"))
        deployed = next(line for line in lines if line.startswith("PaymentChannels deployed at"))
        assert f"(recorded in {tmp_path / 'records'}{os.sep}31337-" in deployed
        assert not any("replaced" in line or "superseded" in line for line in lines)
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


# --- the older layout ------------------------------------------------------------------------------


def legacy_record(deployment: Deployment, path: Path) -> Path:
    """``deployment`` written as the older layout wrote it: no genesis hash."""
    data = deployment.to_json()
    del data["genesis_hash"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@pytest.mark.anvil
def test_an_older_chain_id_record_is_still_read_when_its_address_holds_code(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = devnet.chain()
    _, deployment, _ = deploy_and_record(chain, tmp_path / "scratch.json")
    legacy_record(deployment, tmp_path / "dir" / "31337.json")
    assert load_contract(chain, location=tmp_path / "dir").address == deployment.address
    # the older default: ./deployments/31337.json in the working directory, when nothing newer is recorded
    monkeypatch.setenv("PAYCHAN_DEPLOYMENTS", str(tmp_path / "empty"))
    legacy_record(deployment, tmp_path / "cwd" / "deployments" / "31337.json")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_contract(chain).address == deployment.address
    # a newer record wins over the older one
    newer, _ = PaychanContract.deploy(chain, chain.accounts[3])
    write_deployment(
        Deployment(**{**deployment.to_json(), "address": newer.address, "genesis_hash": genesis_hash(chain)}),
        tmp_path / "empty" / record_name(31337, genesis_hash(chain)),
    )
    assert load_contract(chain).address == newer.address


@pytest.mark.anvil
def test_an_older_record_whose_address_holds_no_code_is_refused(devnet: Devnet, tmp_path: Path) -> None:
    chain = devnet.chain()
    _, deployment, _ = deploy_and_record(chain, tmp_path / "scratch.json")
    empty = "0x000000000000000000000000000000000000dEaD"
    legacy_record(Deployment(**{**deployment.to_json(), "address": empty}), tmp_path / "31337.json")
    with pytest.raises(DeploymentNotFound, match=f"no contract code at {empty} \\(from {tmp_path}/31337.json\\)"):
        load_contract(chain, location=tmp_path)


@pytest.mark.anvil
def test_a_deploy_over_an_older_record_says_it_supersedes_it(devnet: Devnet, tmp_path: Path) -> None:
    chain = devnet.chain()
    _, deployment, _ = deploy_and_record(chain, tmp_path / "scratch.json")
    legacy = legacy_record(deployment, tmp_path / "dir" / "31337.json")
    result = paychan("deploy", "--rpc-url", devnet.url, "--deployments", str(tmp_path / "dir"), env=clean_env())
    assert result.returncode == 0, result.stderr
    new = read_deployment(31337, tmp_path / "dir", genesis_hash(chain))
    keyed = tmp_path / "dir" / record_name(31337, genesis_hash(chain))
    assert result.stdout.splitlines()[-1] == (
        f"superseded the older deployment record {legacy}: {deployment.address} -> {new.address} (in {keyed})"
    )


def test_no_record_names_both_files_looked_at(tmp_path: Path) -> None:
    chain = embedded_chain()
    genesis = genesis_hash(chain)
    with pytest.raises(DeploymentNotFound) as raised:
        load_contract(chain, location=tmp_path)
    assert str(raised.value) == (
        f"no deployment for chain {chain.chain_id} in {tmp_path / record_name(chain.chain_id, genesis)} or "
        f"{tmp_path / f'{chain.chain_id}.json'}; run `paychan deploy --rpc-url URL` or pass --contract"
    )


# --- transient storage (EIP-1153) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shanghai_devnet() -> Iterator[Devnet]:
    """An anvil on the Shanghai hardfork (no TSTORE/TLOAD), started and stopped by PID."""
    port = free_port()
    command = anvil_command(find_anvil(), "127.0.0.1", port, 2, 100, 31337, ANVIL_MNEMONIC, True)
    command[command.index("--hardfork") + 1] = "shanghai"
    assert EVM_VERSION != "shanghai"
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        chain_id = wait_until_answers(f"http://127.0.0.1:{port}", process=process)
        yield Devnet(process, "127.0.0.1", port, chain_id, [])
    finally:
        process.terminate()
        process.wait(timeout=20)


def unsupported(url: str) -> str:
    return (
        f"the node at {url} does not support transient storage (EIP-1153, Cancun): PaymentChannels needs a "
        "Cancun or later chain"
    )


def test_the_embedded_chain_supports_transient_storage() -> None:
    require_transient_storage(embedded_chain())


@pytest.mark.anvil
def test_anvil_on_the_project_hardfork_supports_transient_storage(devnet: Devnet) -> None:
    require_transient_storage(devnet.chain())


@pytest.mark.anvil
def test_deploy_on_a_shanghai_node_is_refused_with_one_line_naming_the_fork(
    shanghai_devnet: Devnet, tmp_path: Path
) -> None:
    chain = rpc_chain(shanghai_devnet.url)
    with pytest.raises(UnsupportedChain) as raised:
        PaychanContract.deploy(chain, chain.accounts[0])
    assert str(raised.value) == unsupported(shanghai_devnet.url)
    assert chain.w3.eth.get_transaction_count(chain.accounts[0].address) == 0, "nothing was sent"
    result = paychan("deploy", "--rpc-url", shanghai_devnet.url, "--deployments", str(tmp_path), env=clean_env())
    assert (result.returncode, result.stderr) == (1, f"paychan: error: {unsupported(shanghai_devnet.url)}\n")
    assert not list(tmp_path.iterdir())


@pytest.mark.anvil
def test_connecting_to_a_contract_on_a_shanghai_node_is_refused(shanghai_devnet: Devnet) -> None:
    chain = rpc_chain(shanghai_devnet.url)
    with pytest.raises(UnsupportedChain, match="does not support transient storage"):
        load_contract(chain, contract="0x000000000000000000000000000000000000dEaD")


@pytest.mark.anvil
def test_the_check_runs_once_per_chain_object(devnet: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = devnet.chain()
    calls: list[object] = []
    original = chain.w3.eth.call
    monkeypatch.setattr(chain.w3.eth, "call", lambda *a, **k: calls.append(a) or original(*a, **k))
    require_transient_storage(chain)
    require_transient_storage(chain)
    assert len(calls) == 1
    require_transient_storage(devnet.chain())  # another chain object is checked again
    assert len(calls) == 1


@pytest.mark.anvil
def test_a_node_that_stops_answering_is_unavailable_not_unsupported() -> None:
    devnet = start_devnet()
    try:
        chain: Chain = devnet.chain()
    finally:
        devnet.stop()
    with pytest.raises(ChainUnavailable, match=f"no Ethereum JSON-RPC node answers at {devnet.url}"):
        require_transient_storage(chain)
