"""Shared fixtures: one chain per kind per session, reverted around each test; roles; factories.

Every test using ``chain`` (directly or through ``contract``, ``alice``, ...) runs once per chain kind:
``test_x[embedded]`` on the in-process eth-tester chain and ``test_x[anvil]`` on an anvil the session starts
on a free port and stops by its PID at the end. ``PAYCHAN_CHAINS=embedded`` (comma-separated kinds) limits
the kinds locally. A test that must stay on the embedded chain (e.g. a hypothesis model test) requests the
``embedded_chain`` fixture or carries ``@pytest.mark.embedded_only``.

Every chain test ends with the conservation check: the contract's ETH and token balances equal what its
open and closing channels hold plus the payouts owed to recipients. Nothing is created or lost.

Under pytest-xdist (``-n 2``, the README's command) the workers of one run share a folder the controller
makes (``shared_folder``): the contracts are compiled once per run, not once per worker, and a test marked
``@pytest.mark.serial`` (it times something, or needs the second core) runs while no other test runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from paychan import chain as chain_module
from paychan.chain import Chain
from paychan.channel import Channel, agree_final, pay
from paychan.compile import Artifact, compile_contracts
from paychan.contract import STATUS_CLOSING, STATUS_OPEN, PaychanContract, RecordedState
from paychan.exceptions import RecordMismatch, UnknownChannel
from paychan.signing import sign_state
from paychan.state import ETH, ChannelParams, ChannelState, Nonce, SignedState, Wei

ETHER = 10**18
PERIOD = 3600


SHARED_FOLDER = pytest.StashKey[Path]()
SHARED_FOLDER_INPUT = "paychan_shared_folder"  # the key of the folder in each xdist worker's workerinput


def shared_folder(config: pytest.Config) -> Path | None:
    """The folder the xdist workers of this run share (``None`` when the run has no workers)."""
    workerinput = getattr(config, "workerinput", None)
    return Path(workerinput[SHARED_FOLDER_INPUT]) if workerinput else None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """The xdist controller hands every worker the folder it made for the run."""
    node.workerinput[SHARED_FOLDER_INPUT] = str(node.config.stash[SHARED_FOLDER])


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(SHARED_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def locked(path: Path, mode: int) -> Iterator[None]:
    """``flock`` on ``path`` (created if missing) in ``mode`` (``fcntl.LOCK_SH`` or ``LOCK_EX``) while inside."""
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def machine_share(folder: Path, alone: bool) -> Iterator[None]:
    """This worker's hold of the machine while inside: shared with the other workers' tests, or with ``alone``
    exclusive. Every hold is taken through the gate, which a test waiting to run alone keeps until it has
    run: the other workers' next tests wait behind it instead of starving it."""
    with open(folder / "gate.lock", "a") as gate, open(folder / "machine.lock", "a") as machine:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # closing the files releases both locks


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Under xdist, each test (its fixtures' set-up and teardown included) holds the machine shared, a
    ``@pytest.mark.serial`` test exclusively."""
    folder = shared_folder(item.config)
    if folder is None:
        return (yield)
    with machine_share(folder, alone=item.get_closest_marker("serial") is not None):
        return (yield)


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> dict[str, Artifact]:
    """Fresh compile of contracts/ including the test-only contracts in contracts/test: once per run, by the
    first xdist worker that needs it (the others read what it wrote), or in this process without workers."""
    folder = shared_folder(request.config)
    if folder is None:
        return compile_contracts(include_test=True)
    compiled = folder / "artifacts.json"
    with locked(folder / "artifacts.lock", fcntl.LOCK_EX):
        if not compiled.exists():
            fresh = compile_contracts(include_test=True)
            partial = compiled.with_suffix(".partial")
            partial.write_text(json.dumps({name: artifact.to_json() for name, artifact in fresh.items()}))
            os.replace(partial, compiled)
            return fresh
    return {name: Artifact.from_json(data) for name, data in json.loads(compiled.read_text()).items()}


CHAIN_KINDS = ("embedded", "anvil")


def chain_kinds() -> list[str]:
    """The chain kinds to run chain tests on: ``PAYCHAN_CHAINS`` (comma-separated), default all."""
    wanted = [k.strip() for k in os.environ.get("PAYCHAN_CHAINS", ",".join(CHAIN_KINDS)).split(",") if k.strip()]
    unknown = sorted(set(wanted) - set(CHAIN_KINDS))
    if unknown:
        raise pytest.UsageError(f"PAYCHAN_CHAINS: unknown chain kind(s) {unknown}; known: {', '.join(CHAIN_KINDS)}")
    return wanted


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "embedded_only: run this chain test on the embedded chain only")
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.stash[SHARED_FOLDER] = Path(tempfile.mkdtemp(prefix="paychan-pytest-"))  # the xdist controller


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselects ``@pytest.mark.anvil`` tests when ``PAYCHAN_CHAINS`` leaves anvil out, just as the
    ``[anvil]`` variants of chain tests are then not generated."""
    if "anvil" in chain_kinds():
        return
    deselected = [item for item in items if item.get_closest_marker("anvil") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("anvil") is None]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrizes every test that uses ``chain`` over the chain kinds (ids ``[embedded]``, ``[anvil]``)."""
    if "chain" not in metafunc.fixturenames:
        return
    kinds = chain_kinds()
    if "embedded_chain" in metafunc.fixturenames or metafunc.definition.get_closest_marker("embedded_only"):
        kinds = [k for k in kinds if k == "embedded"]
    metafunc.parametrize("chain", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """The chain of this parametrization: the embedded eth-tester chain or a fresh anvil devnet."""
    kind = getattr(request, "param", "embedded")
    if kind == "embedded":
        yield chain_module.embedded_chain()
        return
    from paychan.devnet import start_devnet

    devnet = start_devnet(block_interval=1)  # blocks one second apart, as on the embedded chain
    try:
        yield devnet.chain()
    finally:
        devnet.stop()


@pytest.fixture(scope="session")
def embedded_chain(chain: Chain) -> Chain:
    """The embedded chain; a test requesting it runs only on ``[embedded]``."""
    assert chain.kind == "embedded", "embedded_chain is only parametrized with the embedded chain"
    return chain


@pytest.fixture(scope="session")
def deployer(chain: Chain) -> LocalAccount:
    return chain.accounts[0]


@pytest.fixture(scope="session")
def alice(chain: Chain) -> LocalAccount:
    return chain.accounts[1]


@pytest.fixture(scope="session")
def bob(chain: Chain) -> LocalAccount:
    return chain.accounts[2]


@pytest.fixture(scope="session")
def carol(chain: Chain) -> LocalAccount:
    """A third party: neither participant of the channels alice and bob open."""
    return chain.accounts[3]


@pytest.fixture(scope="session")
def watchtower(chain: Chain) -> LocalAccount:
    return chain.accounts[4]


@pytest.fixture(scope="session")
def session_contract(chain: Chain, deployer: LocalAccount, artifacts: dict[str, Artifact]) -> PaychanContract:
    contract, _ = PaychanContract.deploy(chain, deployer, artifacts["PaymentChannels"])
    return contract


@pytest.fixture(scope="session")
def session_token(
    chain: Chain, deployer: LocalAccount, artifacts: dict[str, Artifact], alice: LocalAccount, bob: LocalAccount
) -> Any:
    """A TestToken with 1,000 tokens minted to alice and bob, and approved to the channels contract."""
    token = deploy_test_contract(chain, deployer, artifacts["TestToken"])
    return token


def deploy_test_contract(chain: Chain, deployer: LocalAccount, artifact: Artifact, *args: Any) -> Any:
    """Deploys a test-only contract and returns its web3 contract object."""
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(*args).build_transaction({"from": deployer.address, "gas": 5_000_000})["data"]
    receipt = chain.send(deployer, {"data": data, "gas": 5_000_000})
    assert receipt["status"] == 1
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def tx_events(contract: PaychanContract, receipt: Any, name: str) -> list[Any]:
    """The arguments of each ``name`` event the contract emitted in ``receipt``."""
    return [e["args"] for e in getattr(contract.contract.events, name)().process_receipt(receipt, errors=DISCARD)]


def tx_fee(receipt: Any) -> int:
    """What the sender paid for ``receipt``'s transaction, in wei."""
    return int(receipt["gasUsed"] * receipt["effectiveGasPrice"])


def block_time(chain: Chain, receipt: Any) -> int:
    """The timestamp of the block that included ``receipt``'s transaction."""
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def record_salt(contract: PaychanContract, receipt: Any) -> int:
    """The salt of the record that the close or challenge in ``receipt`` wrote (from its event)."""
    (event,) = [*tx_events(contract, receipt, "ChannelClosed"), *tx_events(contract, receipt, "ChallengeAccepted")]
    return int(event["salt"])


def record_mismatch(contract: PaychanContract, params: ChannelParams, passed: RecordedState) -> RecordMismatch:
    """The ``RecordMismatch`` a call passing ``passed`` as the record of ``params``' closing channel reverts with:
    the slot's fingerprint and that of the record passed."""
    return RecordMismatch(contract.get_channel(contract.channel_id(params)).fingerprint, passed.fingerprint())


def next_block_at(chain: Chain, timestamp: int) -> None:
    """Makes the next transaction (and calls against "pending") execute at ``timestamp`` exactly."""
    chain.time_travel(timestamp - chain.now())


def send_fn(chain: Chain, sender: LocalAccount, fn: Any, value: int = 0, gas: int = 500_000) -> Any:
    """Sends a web3 contract function call from ``sender`` (for test-only contracts)."""
    data = fn.build_transaction({"from": sender.address, "gas": gas, "value": value})["data"]
    receipt = chain.send(sender, {"to": fn.address, "data": data, "gas": gas, "value": value})
    assert receipt["status"] == 1, "transaction reverted"
    return receipt


@pytest.fixture(autouse=True)
def _revert_chain(request: pytest.FixtureRequest) -> Iterator[None]:
    """Reverts the chain (snapshot before, revert after) around each test that used it."""
    if "chain" not in request.fixturenames:
        yield
        return
    chain: Chain = request.getfixturevalue("chain")
    snapshot = chain.snapshot()
    try:
        yield
    finally:
        chain.revert(snapshot)


@pytest.fixture
def contract(session_contract: PaychanContract) -> Iterator[PaychanContract]:
    """The deployed contract; after the test, checks that no funds were created or lost."""
    yield session_contract
    assert_conservation(session_contract)


@pytest.fixture
def token(
    session_token: Any,
    chain: Chain,
    alice: LocalAccount,
    bob: LocalAccount,
    carol: LocalAccount,
    contract: PaychanContract,
) -> Any:
    for holder in (alice, bob, carol):
        send_fn(chain, holder, session_token.functions.mint(holder.address, 1_000 * ETHER))
        send_fn(chain, holder, session_token.functions.approve(contract.address, 2**256 - 1))
    return session_token


def held_by_contract(contract: PaychanContract) -> dict[str, int]:
    """What the contract should hold per asset: open deposits (what withdrawals left), closing records
    (payouts before locks plus locked totals) and owed payouts."""
    held: dict[str, int] = {}
    events = contract.contract.events
    for log in events.ChannelOpened().get_logs(from_block=0):
        args = log["args"]
        cid = log["args"]["channelId"]
        onchain = contract.get_channel(cid)
        if onchain.status == STATUS_OPEN:
            amount = onchain.total_deposit
        elif onchain.status == STATUS_CLOSING:
            # the record's payouts before locks plus its locked totals: the channel's deposits
            recorded = contract.recorded_state(cid)
            amount = recorded.balance_a + recorded.balance_b + recorded.locked_a + recorded.locked_b
        else:
            amount = 0
        held[args["asset"]] = held.get(args["asset"], 0) + amount
    for log in events.PayoutDeferred().get_logs(from_block=0):
        held[log["args"]["asset"]] = held.get(log["args"]["asset"], 0) + log["args"]["amount"]
    for log in events.Claimed().get_logs(from_block=0):
        held[log["args"]["asset"]] = held.get(log["args"]["asset"], 0) - log["args"]["amount"]
    return held


def assert_conservation(contract: PaychanContract) -> None:
    """The contract's ETH and token balances equal what its channels hold plus what is owed."""
    w3 = contract.chain.w3
    held = held_by_contract(contract)
    assert w3.eth.get_balance(contract.address) == held.get(ETH, 0), "ETH held != ETH accounted for"
    erc20_abi = [
        {
            "name": "balanceOf",
            "type": "function",
            "stateMutability": "view",
            "inputs": [{"name": "a", "type": "address"}],
            "outputs": [{"name": "", "type": "uint256"}],
        }
    ]
    for asset, amount in held.items():
        if asset != ETH:
            balance = w3.eth.contract(address=asset, abi=erc20_abi).functions.balanceOf(contract.address).call()  # type: ignore[call-overload]
            assert balance == amount, f"token {asset} held {balance} != accounted {amount}"


@dataclass
class ChannelPair:
    """Both participants' off-chain views of one channel, and helpers to move money between them."""

    params: ChannelParams
    a: Channel
    b: Channel

    def pay(self, payer: str, amount: int) -> SignedState:
        """``payer`` ("A" or "B") pays ``amount``; returns the doubly-signed state."""
        sender, receiver = (self.a, self.b) if payer == "A" else (self.b, self.a)
        return pay(sender, receiver, amount)

    def finalize(self) -> SignedState:
        return agree_final(self.a, self.b)

    def record_deposit(self, role: str, amount: int) -> None:
        self.a.record_deposit(role, amount)
        self.b.record_deposit(role, amount)


@pytest.fixture
def open_channel(contract: PaychanContract, alice: LocalAccount, bob: LocalAccount) -> Callable[..., ChannelPair]:
    """Factory: opens an ETH (or ``asset``) channel alice→bob with deposits, returns both views."""

    def _open(
        deposit_a: int = 5 * ETHER,
        deposit_b: int = 0,
        asset: str = ETH,
        period: int = PERIOD,
        a: LocalAccount = alice,
        b: LocalAccount = bob,
    ) -> ChannelPair:
        params, _ = contract.open_channel(a, b.address, deposit_a, asset=asset, challenge_period=period)
        if deposit_b:
            contract.deposit(b, params, b.address, deposit_b)
        deposits = (deposit_a, deposit_b)
        return ChannelPair(
            params,
            Channel(params, contract.domain, a.key, deposits=deposits),
            Channel(params, contract.domain, b.key, deposits=deposits),
        )

    return _open


@pytest.fixture
def signed_state(contract: PaychanContract, alice: LocalAccount, bob: LocalAccount) -> Callable[..., SignedState]:
    """Factory: any state of a channel, signed by the given keys (alice's and bob's by default).

    ``deposits`` (A, B) are the deposits the state splits; by default the channel's on-chain deposits as
    they stand (from its slot while open, from its ``Deposited``/``Withdrawn`` events once closing), or, for
    a channel that was never opened, the balances (plus locked totals) themselves. ``withdrawals`` is the
    counter the state is signed under: by default the channel's (its slot while open, its ``ChannelClosed``
    event once closing, else 0). ``locked_a``/``locked_b`` are the locked totals.
    """

    def _signed(
        params: ChannelParams,
        nonce: int,
        balance_a: int,
        balance_b: int,
        is_final: bool = False,
        key_a: bytes | None = None,
        key_b: bytes | None = None,
        locks_root: bytes = b"\x00" * 32,
        deposits: tuple[int, int] | None = None,
        locked_a: int = 0,
        locked_b: int = 0,
        withdrawals: int | None = None,
    ) -> SignedState:
        cid = contract.channel_id(params)
        onchain = contract.get_channel(cid)
        if deposits is None:
            if onchain.status == STATUS_OPEN:
                deposits = (onchain.deposit_a, onchain.deposit_b)
            else:
                try:
                    deposits = contract.deposits_from_events(cid)
                except UnknownChannel:
                    deposits = (balance_a + locked_a, balance_b + locked_b)
        if withdrawals is None:
            if onchain.status == STATUS_OPEN:
                withdrawals = onchain.withdrawals
            elif onchain.status == STATUS_CLOSING:
                withdrawals = contract.recorded_state(cid).withdrawals
            else:
                withdrawals = 0
        state = ChannelState(
            cid,
            Nonce(nonce),
            Wei(balance_a),
            Wei(balance_b),
            locks_root,
            is_final,
            deposit_a=Wei(deposits[0]),
            deposit_b=Wei(deposits[1]),
            locked_a=Wei(locked_a),
            locked_b=Wei(locked_b),
            withdrawals=withdrawals,
        )
        return SignedState(
            state,
            sign_state(contract.domain, state, key_a or alice.key),
            sign_state(contract.domain, state, key_b or bob.key),
        )

    return _signed
