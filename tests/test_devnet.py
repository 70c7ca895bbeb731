"""The devnet: `paychan devnet` and `paychan deploy` as subprocesses, deployment records, and the chain layer
behaving the same on the embedded chain and on anvil (time travel, snapshots, decoded reverts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paychan.chain import Chain, rpc_chain
from paychan.compile import load_artifact
from paychan.contract import PaychanContract
from paychan.deployments import DeploymentNotFound, artifact_hash, load_contract, read_deployment
from paychan.devnet import Devnet, DevnetError, free_port, start_devnet, wait_until_answers
from paychan.exceptions import ChainUnavailable, ChallengePeriodActive, InvalidCounterparty

from .conftest import ETHER, PERIOD

ROOT = Path(__file__).resolve().parent.parent
PAYCHAN = [str(Path(sys.executable).parent / "paychan")]


def paychan(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PAYCHAN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    """An anvil of this module's own, stopped by its PID at the end."""
    with start_devnet() as net:
        yield net


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_devnet_command(*args: str, background: bool = False) -> tuple[subprocess.Popen[str], dict]:
    """Starts ``paychan devnet``; ``background``: with SIGINT ignored, as a shell's ``&`` starts it."""
    process = subprocess.Popen(
        [*PAYCHAN, "devnet", "--port", "0", "--json", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if background else None,
    )
    line = process.stdout.readline()  # type: ignore[union-attr]
    if not line:
        process.kill()
        raise AssertionError(f"paychan devnet printed nothing: {process.stderr.read()}")  # type: ignore[union-attr]
    return process, json.loads(line)


# --- paychan devnet --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_signal", "background"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["sigterm", "ctrl-c", "sigint-to-a-background-job"],
)
def test_devnet_command_serves_funded_accounts_until_signalled_then_stops_anvil(
    stop_signal: signal.Signals, background: bool
) -> None:
    process, details = start_devnet_command(background=background)
    try:
        url = details["rpc_url"]
        assert url.startswith("http://127.0.0.1:")
        assert wait_until_answers(url, timeout=5) == details["chain_id"] == 31337
        chain = rpc_chain(url)
        assert [a["address"] for a in details["accounts"]] == [a.address for a in chain.accounts]
        assert chain.balance(details["accounts"][9]["address"]) == 10_000 * ETHER
        assert process_exists(details["pid"])
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=20)
    assert code == 0, process.stderr.read()  # type: ignore[union-attr]
    assert not process_exists(details["pid"]), "anvil outlived `paychan devnet`"
    with pytest.raises(ChainUnavailable):
        wait_until_answers(url, timeout=0.3)


def test_devnet_command_with_deploy_records_a_contract_that_holds_code(tmp_path: Path) -> None:
    process, details = start_devnet_command("--deploy", "--deployments", str(tmp_path))
    try:
        chain = rpc_chain(details["rpc_url"])
        assert Path(details["deployment_file"]).parent == tmp_path
        assert Path(details["deployment_file"]).name.startswith("31337-")  # chain id and genesis hash
        contract = load_contract(chain, location=tmp_path)
        assert contract.address == details["contract"]
        assert contract.contract.functions.nextChannelNumber().call() == 1  # set by the constructor
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_devnet_then_deploy_then_scripted_lifecycles_run_against_the_recorded_contract(tmp_path: Path) -> None:
    process, details = start_devnet_command()
    try:
        url = details["rpc_url"]
        deployed = paychan("deploy", "--rpc-url", url, "--deployments", str(tmp_path), "--json")
        assert deployed.returncode == 0, deployed.stderr
        address = json.loads(deployed.stdout)["address"]
        for name, payouts in (("cooperative", None), ("dispute", (ETHER, 4 * ETHER))):
            run = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / f"{name}.py"),
                    "--rpc-url",
                    url,
                    "--deployments",
                    str(tmp_path),
                    "--json",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
                stdin=subprocess.DEVNULL,
            )
            assert run.returncode == 0, run.stderr
            ledger = json.loads(run.stdout)
            assert ledger["contract"] == address
            parties = ledger["parties"]
            assert all(p["reconciles"] for p in parties.values())
            paid = (parties["alice"]["paid_out"], parties["bob"]["paid_out"])
            assert sum(paid) == parties["alice"]["deposited"] + parties["bob"]["deposited"]
            if payouts is not None:
                assert paid == payouts
        chain = rpc_chain(url)
        assert load_contract(chain, location=tmp_path).contract.functions.nextChannelNumber().call() == 3
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_devnet_command_on_a_busy_port_fails_with_one_line(devnet: Devnet) -> None:
    result = paychan("devnet", "--port", str(devnet.port))
    assert result.returncode == 1
    assert (
        result.stderr
        == f"paychan: error: port {devnet.port} on 127.0.0.1 is already in use (is another node running there?)\n"
    )


# --- paychan deploy --------------------------------------------------------------------------------


def test_deploy_writes_the_record_the_other_commands_read(devnet: Devnet, tmp_path: Path) -> None:
    result = paychan("deploy", "--rpc-url", devnet.url, "--deployments", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    record = read_deployment(31337, tmp_path)
    assert Path(printed["deployment_file"]).parent == tmp_path
    assert Path(printed["deployment_file"]).name.startswith("31337-")  # chain id and genesis hash
    assert record.address == printed["address"]
    chain = devnet.chain()
    receipt = chain.w3.eth.get_transaction_receipt(record.transaction_hash)
    assert receipt["contractAddress"] == record.address
    assert receipt["blockNumber"] == record.block_number
    assert chain.w3.eth.get_block(record.block_number)["timestamp"] == record.deployed_at
    assert record.deployer == chain.accounts[0].address
    assert record.artifact_hash == artifact_hash(load_artifact())
    assert record.source_hash == load_artifact().source_hash
    loaded = load_contract(chain, location=tmp_path)
    assert (loaded.address, loaded.from_block) == (record.address, record.block_number)  # events from there on


def test_deploy_into_a_named_json_file_and_by_environment_variable(devnet: Devnet, tmp_path: Path) -> None:
    target = tmp_path / "devnet.json"
    assert paychan("deploy", "--rpc-url", devnet.url, "--deployments", str(target)).returncode == 0
    by_file = json.loads(target.read_text())["address"]
    env = {**os.environ, "PAYCHAN_DEPLOYMENTS": str(tmp_path / "env")}
    result = subprocess.run(
        [*PAYCHAN, "deploy", "--rpc-url", devnet.url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    by_env = read_deployment(31337, tmp_path / "env").address
    assert by_env != by_file
    assert f"recorded in {tmp_path / 'env' / '31337-'}" in result.stdout


def deploy_with_keys(devnet: Devnet, tmp_path: Path, keys: str) -> subprocess.CompletedProcess[str]:
    """``paychan deploy`` to ``devnet`` with ``PAYCHAN_PRIVATE_KEYS=keys``."""
    return subprocess.run(
        [*PAYCHAN, "deploy", "--rpc-url", devnet.url, "--deployments", str(tmp_path)],
        env={**os.environ, "PAYCHAN_PRIVATE_KEYS": keys},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_deploy_sends_from_the_keys_in_paychan_private_keys(devnet: Devnet, tmp_path: Path) -> None:
    funded = devnet.accounts[7]
    result = deploy_with_keys(devnet, tmp_path, "0x" + bytes(funded.key).hex())
    assert result.returncode == 0, result.stderr
    assert read_deployment(31337, tmp_path).deployer == funded.address


def test_a_bad_key_in_paychan_private_keys_fails_with_one_line_and_deploys_nothing(
    devnet: Devnet, tmp_path: Path
) -> None:
    result = deploy_with_keys(devnet, tmp_path, "0x1234")
    assert result.returncode == 1
    assert result.stderr == "paychan: error: a private key to send from (PAYCHAN_PRIVATE_KEYS) is not 32 bytes of hex\n"
    assert not list(tmp_path.iterdir())


def test_deploy_to_a_node_that_does_not_answer_fails_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    result = paychan("deploy", "--rpc-url", f"http://127.0.0.1:{port}", "--deployments", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"paychan: error: no Ethereum JSON-RPC node answers at http://127.0.0.1:{port}")
    assert result.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_load_contract_without_a_record_names_the_command_to_run(devnet: Devnet, tmp_path: Path) -> None:
    with pytest.raises(
        DeploymentNotFound, match=r"no deployment for chain 31337 in .*31337\.json; run `paychan deploy"
    ):
        load_contract(devnet.chain(), location=tmp_path)


def test_load_contract_refuses_an_address_without_code(devnet: Devnet) -> None:
    empty = "0x000000000000000000000000000000000000dEaD"
    with pytest.raises(DeploymentNotFound, match="no contract code at 0x000000000000000000000000000000000000dEaD"):
        load_contract(devnet.chain(), contract=empty)


def test_load_contract_refuses_a_record_of_another_chain(devnet: Devnet, tmp_path: Path) -> None:
    record = tmp_path / "other.json"
    assert paychan("deploy", "--rpc-url", devnet.url, "--deployments", str(record)).returncode == 0
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "chain_id": 5}))
    with pytest.raises(DeploymentNotFound, match="records a deployment on chain 5, not on chain 31337"):
        load_contract(devnet.chain(), location=record)


def test_load_contract_prefers_an_explicit_address(devnet: Devnet, tmp_path: Path) -> None:
    chain = devnet.chain()
    deployed, _ = PaychanContract.deploy(chain, chain.accounts[5])
    assert load_contract(chain, contract=deployed.address.lower(), location=tmp_path).address == deployed.address


# --- start_devnet ----------------------------------------------------------------------------------


def test_start_devnet_on_a_taken_port_raises_and_starts_nothing(devnet: Devnet) -> None:
    with pytest.raises(DevnetError, match=f"port {devnet.port} on 127.0.0.1 is already in use"):
        start_devnet(port=devnet.port)


def test_stop_ends_anvil_by_its_pid() -> None:
    net = start_devnet()
    pid = net.pid
    assert process_exists(pid)
    assert net.stop() == 0
    assert not process_exists(pid)
    assert net.stop() == 0  # stopping twice is harmless


# --- the chain layer behaves the same on every chain -----------------------------------------------
#
# eth-tester stamps a block with the wall clock when that is later than its parent + 1 s, so the tests
# below first move the chain an hour ahead of the wall clock, where both chains stamp blocks exactly.


@pytest.fixture
def ahead(chain: Chain) -> Chain:
    chain.time_travel(PERIOD)
    return chain


def test_time_travel_runs_the_next_transaction_exactly_that_many_seconds_later(ahead: Chain) -> None:
    chain = ahead
    sender, receiver = chain.accounts[5], chain.accounts[6]
    for seconds in (1, 2, PERIOD, 7 * 24 * 3600):
        before = chain.now()
        latest = chain.time_travel(seconds)
        assert latest == before + seconds - 1
        receipt = chain.transfer(sender, receiver.address, 1)
        assert chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == before + seconds


def test_each_transaction_lands_one_second_after_the_previous_block(ahead: Chain) -> None:
    chain = ahead
    sender, receiver = chain.accounts[5], chain.accounts[6]
    before = chain.now()
    stamps = [
        chain.w3.eth.get_block(chain.transfer(sender, receiver.address, 1)["blockNumber"])["timestamp"]
        for _ in range(3)
    ]
    assert stamps == [before + 1, before + 2, before + 3]


def test_revert_restores_balances_block_and_time(chain: Chain) -> None:
    sender, receiver = chain.accounts[5], chain.accounts[6]
    snapshot = chain.snapshot()
    block, now, balance = chain.w3.eth.block_number, chain.now(), chain.balance(receiver.address)
    chain.transfer(sender, receiver.address, ETHER)
    chain.time_travel(10 * PERIOD)
    chain.revert(snapshot)
    assert (chain.w3.eth.block_number, chain.now(), chain.balance(receiver.address)) == (block, now, balance)
    chain.transfer(sender, receiver.address, ETHER)  # nonces are re-read after a revert
    assert chain.balance(receiver.address) == balance + ETHER


def test_a_time_dependent_revert_decodes_to_the_same_error_whether_estimated_or_mined(
    ahead, contract, open_channel, alice, bob
) -> None:
    chain = ahead
    pair = open_channel(ETHER)
    receipt = contract.close(alice, pair.params)
    deadline = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + PERIOD
    with pytest.raises(ChallengePeriodActive) as estimated:
        contract.settle(bob, pair.params)
    assert estimated.value == ChallengePeriodActive(deadline, chain.now() + 1)
    chain.time_travel(deadline - chain.now())
    with pytest.raises(ChallengePeriodActive) as mined:
        contract.settle(bob, pair.params, gas=200_000)  # sent with a gas limit: mined, reverted, replayed
    assert mined.value.deadline == deadline
    assert mined.value.timestamp in (deadline - 1, deadline)  # replayed on the state before its block
    contract.settle(bob, pair.params, gas=200_000)
    assert contract.get_channel(contract.channel_id(pair.params)).status == 0


@pytest.mark.parametrize("gas", [None, 300_000], ids=["estimated", "explicit-gas"])
def test_an_argument_error_decodes_with_its_checksummed_address(contract, alice, gas) -> None:
    with pytest.raises(InvalidCounterparty) as raised:
        contract.open_channel(alice, alice.address.lower(), ETHER, gas=gas)
    assert raised.value == InvalidCounterparty(alice.address)


# --- the chain parametrization of the test suite ---------------------------------------------------


def test_a_test_requesting_embedded_chain_runs_on_the_embedded_chain_only(embedded_chain: Chain) -> None:
    assert embedded_chain.kind == "embedded"
    assert embedded_chain.tester is not None


@pytest.mark.embedded_only
def test_a_test_marked_embedded_only_runs_on_the_embedded_chain_only(chain: Chain) -> None:
    assert chain.kind == "embedded"


def collect(env_chains: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PAYCHAN_CHAINS"}
    if env_chains is not None:
        env["PAYCHAN_CHAINS"] = env_chains
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_devnet.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_chain_tests_are_collected_once_per_chain_and_paychan_chains_limits_them() -> None:
    every = collect(None)
    assert every.returncode == 0, every.stdout + every.stderr
    ids = set(every.stdout.split())
    name = "tests/test_devnet.py::test_revert_restores_balances_block_and_time"
    assert {f"{name}[embedded]", f"{name}[anvil]"} <= ids
    only_embedded = "tests/test_devnet.py::test_a_test_requesting_embedded_chain_runs_on_the_embedded_chain_only"
    assert f"{only_embedded}[embedded]" in ids and f"{only_embedded}[anvil]" not in ids
    marked = "tests/test_devnet.py::test_a_test_marked_embedded_only_runs_on_the_embedded_chain_only"
    assert f"{marked}[embedded]" in ids and f"{marked}[anvil]" not in ids
    assert "tests/test_devnet.py::test_stop_ends_anvil_by_its_pid" in ids  # no chain: not parametrized

    limited = collect("embedded")
    assert limited.returncode == 0, limited.stdout + limited.stderr
    assert f"{name}[embedded]" in limited.stdout.split() and "[anvil]" not in limited.stdout

    wrong = collect("embedded,geth")
    assert wrong.returncode != 0
    assert "PAYCHAN_CHAINS: unknown chain kind(s) ['geth']; known: embedded, anvil" in wrong.stdout + wrong.stderr
