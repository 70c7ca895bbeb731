"""Deployment records: where ``PaymentChannels`` lives on a chain, written by ``paychan deploy``.

A record holds the contract address, chain id, genesis block hash, block, transaction hash and the hash of
the artifact that was deployed. A chain is named by its id *and* its genesis (block 0's hash): two local
devnets both have chain id 31337, and a throwaway one must not overwrite the record of the one in use. So a
record is stored as ``<chain_id>-<first 8 hex digits of the genesis hash>.json`` in the deployments
directory, which is, first found: ``--deployments PATH`` (a directory, or one ``.json`` file), ``$PAYCHAN_DEPLOYMENTS``,
else ``$XDG_DATA_HOME/paychan/deployments`` (``~/.local/share/paychan/deployments``): the same for a
command started in any directory. Records of the older layout (``<chain_id>.json``, no genesis; by
default in ``./deployments``) are still read when nothing newer is recorded for the chain, and used when
their address holds code.

``load_contract`` is the one lookup every command uses: an explicit ``--contract`` address wins, else the
record for the chain; either way the address must hold code, the record must match the chain, and the
chain must support transient storage (``require_transient_storage``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from paychan.chain import Chain, genesis_hash
from paychan.compile import MAIN_CONTRACT, Artifact, load_artifact
from paychan.contract import PaychanContract, require_transient_storage
from paychan.exceptions import PaychanError

DEPLOYMENTS_ENV = "PAYCHAN_DEPLOYMENTS"
# Where records lived before they were keyed by genesis: read (never written) when nothing newer is found.
LEGACY_DIRECTORY = Path("deployments")
DEFAULT_DIRECTORY_HELP = "$XDG_DATA_HOME/paychan/deployments or ~/.local/share/paychan/deployments"
GENESIS_PREFIX_DIGITS = 8  # of the genesis hash in a record's file name (the record holds all 64)


class DeploymentNotFound(PaychanError):
    """Raised when no deployment record (or no contract code) exists for the chain in use."""


@dataclass(frozen=True)
class Deployment:
    """One deployment of ``PaymentChannels``."""

    contract: str
    address: str
    chain_id: int
    block_number: int
    transaction_hash: str
    deployer: str
    artifact_hash: str
    source_hash: str
    deployed_at: int  # unix time of the deployment block
    genesis_hash: str | None = None  # block 0's hash; None in a record of the older layout

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        try:
            genesis = data.get("genesis_hash")
            return cls(
                contract=str(data["contract"]),
                address=to_checksum_address(data["address"]),
                chain_id=int(data["chain_id"]),
                block_number=int(data["block_number"]),
                transaction_hash=str(data["transaction_hash"]),
                deployer=to_checksum_address(data["deployer"]),
                artifact_hash=str(data["artifact_hash"]),
                source_hash=str(data["source_hash"]),
                deployed_at=int(data["deployed_at"]),
                genesis_hash=None if genesis is None else str(genesis).lower(),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DeploymentNotFound(f"malformed deployment record ({type(exc).__name__}: {exc})") from exc


def artifact_hash(artifact: Artifact) -> str:
    """sha256 of the artifact's ABI and creation code: what was deployed, independent of file layout."""
    canonical = json.dumps({"abi": artifact.abi, "bytecode": artifact.bytecode}, sort_keys=True, separators=(",", ":"))
    return "0x" + hashlib.sha256(canonical.encode()).hexdigest()


def default_directory() -> Path:
    """``$PAYCHAN_DEPLOYMENTS`` when set, else ``$XDG_DATA_HOME/paychan/deployments`` (by default
    ``~/.local/share/paychan/deployments``): not relative to the working directory."""
    explicit = os.environ.get(DEPLOYMENTS_ENV)
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home) if data_home and Path(data_home).is_absolute() else Path.home() / ".local" / "share"
    return base / "paychan" / "deployments"


def record_name(chain_id: int, genesis: str) -> str:
    """``<chain_id>-<genesis prefix>.json``: the file name of a chain's record in a deployments directory."""
    return f"{chain_id}-{genesis.lower().removeprefix('0x')[:GENESIS_PREFIX_DIGITS]}.json"


def deployment_path(chain_id: int, location: Path | str | None = None, genesis: str | None = None) -> Path:
    """The record file of the chain ``chain_id`` with genesis hash ``genesis``: ``location`` itself when it
    names a ``.json`` file, else ``<location or default_directory()>/<record_name>``; without ``genesis``,
    the older layout's ``<chain_id>.json``."""
    path = Path(location) if location is not None else default_directory()
    if path.suffix == ".json":
        return path
    return path / (record_name(chain_id, genesis) if genesis is not None else f"{chain_id}.json")


def _legacy_paths(chain_id: int, location: Path | str | None) -> list[Path]:
    """Where a record of the older layout may be: ``<directory>/<chain_id>.json``, and with no
    ``location`` also ``./deployments/<chain_id>.json`` (the older default)."""
    directories = [Path(location) if location is not None else default_directory()]
    if location is None:
        directories.append(LEGACY_DIRECTORY)
    paths: list[Path] = []
    for directory in directories:
        path = directory / f"{chain_id}.json"
        if all(path.absolute() != seen.absolute() for seen in paths):
            paths.append(path)
    return paths


def deploy_and_record(
    chain: Chain, location: Path | str | None = None, deployer_index: int = 0, artifact: Artifact | None = None
) -> tuple[PaychanContract, Deployment, Path | None]:
    """Deploys ``PaymentChannels`` from ``chain.accounts[deployer_index]`` and writes its record (replacing
    the chain's earlier one: see ``recorded_deployment`` to report it).

    An in-process chain (eth-tester) ends with the process, so nothing is written for it (path None).
    """
    artifact = artifact or load_artifact()
    deployer = chain.accounts[deployer_index]
    contract, receipt = PaychanContract.deploy(chain, deployer, artifact)
    block = chain.w3.eth.get_block(receipt["blockNumber"])
    genesis = genesis_hash(chain)
    deployment = Deployment(
        contract=MAIN_CONTRACT,
        address=contract.address,
        chain_id=chain.chain_id,
        block_number=int(receipt["blockNumber"]),
        transaction_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        deployer=deployer.address,
        artifact_hash=artifact_hash(artifact),
        source_hash=artifact.source_hash,
        deployed_at=int(block["timestamp"]),
        genesis_hash=genesis,
    )
    if chain.tester is not None:
        return contract, deployment, None
    path = write_deployment(deployment, deployment_path(chain.chain_id, location, genesis))
    return contract, deployment, path


def recorded_deployment(chain: Chain, location: Path | str | None = None) -> tuple[Deployment, Path] | None:
    """The record a deployment to ``chain`` replaces, and its file: what the record file
    ``deploy_and_record`` writes holds now (a named ``.json`` file may hold any chain's), else the record of
    the older layout the chain's lookups would use (its address holds code). None when there is none, and
    on the in-process chain (nothing is written for it)."""
    if chain.tester is not None:
        return None
    target = deployment_path(chain.chain_id, location, genesis_hash(chain))
    named_file = location is not None and Path(location).suffix == ".json"
    for path in [target] if named_file else [target, *_legacy_paths(chain.chain_id, location)]:
        try:
            record = _read(path)
        except DeploymentNotFound:  # unreadable: overwritten all the same
            continue
        if record is None:
            continue
        if path == target or (record.chain_id == chain.chain_id and chain.w3.eth.get_code(record.address)):  # type: ignore[arg-type]
            return record, path
    return None


def replacement_line(old_path: str, old: str, new: str, new_path: str) -> str:
    """What ``deploy`` prints when the record of ``old`` (in ``old_path``) no longer names the chain's
    contract, ``new`` (recorded in ``new_path``)."""
    if old_path == new_path:
        return f"replaced the deployment record {old_path}: {old} -> {new}"
    return f"superseded the older deployment record {old_path}: {old} -> {new} (in {new_path})"


def write_deployment(deployment: Deployment, path: Path) -> Path:
    """Writes ``deployment`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def _read(path: Path) -> Deployment | None:
    """The record in ``path``; None when there is no such file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise DeploymentNotFound(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DeploymentNotFound(f"cannot read {path}: not a deployment record")
    return Deployment.from_json(data)


def read_deployment(chain_id: int, location: Path | str | None = None, genesis: str | None = None) -> Deployment:
    """The record of the chain with id ``chain_id`` and genesis hash ``genesis`` (see the module docstring
    for where it is looked for); without ``genesis``, the only record for ``chain_id`` in the directory.

    Falls back to the older layout's ``<chain_id>.json``. Raises ``DeploymentNotFound`` when there is none,
    when the record is for another chain (id or genesis), or, without ``genesis``, when several chains
    with that id have records.
    """
    return _locate(chain_id, location, genesis)[0]


def _locate(chain_id: int, location: Path | str | None, genesis: str | None) -> tuple[Deployment, Path]:
    """``read_deployment``, and the file the record came from."""
    directory = Path(location) if location is not None else default_directory()
    if directory.suffix == ".json":
        candidates = [directory]
    elif genesis is not None:
        candidates = [directory / record_name(chain_id, genesis), *_legacy_paths(chain_id, location)]
    else:
        keyed = sorted(directory.glob(f"{chain_id}-*.json"))
        if len(keyed) > 1:
            raise DeploymentNotFound(
                f"{len(keyed)} chains with id {chain_id} have records in {directory}: name the chain's genesis"
            )
        candidates = [*keyed, *_legacy_paths(chain_id, location)]
    for path in candidates:
        deployment = _read(path)
        if deployment is None:
            continue
        if deployment.chain_id != chain_id:
            raise DeploymentNotFound(
                f"{path} records a deployment on chain {deployment.chain_id}, not on chain {chain_id}"
            )
        if genesis is not None and deployment.genesis_hash not in (None, genesis.lower()):
            raise DeploymentNotFound(
                f"{path} records a deployment on another chain with id {chain_id} (genesis "
                f"{deployment.genesis_hash}, this chain's is {genesis.lower()}); was the devnet restarted? "
                "run `paychan deploy` again"
            )
        return deployment, path
    looked = " or ".join(str(path) for path in candidates)
    raise DeploymentNotFound(
        f"no deployment for chain {chain_id} in {looked}; run `paychan deploy --rpc-url URL` or pass --contract"
    )


def load_contract(chain: Chain, contract: str | None = None, location: Path | str | None = None) -> PaychanContract:
    """The ``PaymentChannels`` contract to use on ``chain``: ``contract`` (an address) when given, else the
    address recorded for the chain (its id and genesis). Raises ``DeploymentNotFound`` when the address
    holds no code (a restarted devnet forgets its contracts), ``UnsupportedChain`` on a chain without
    transient storage (checked once per ``chain`` object)."""
    require_transient_storage(chain)
    from_block = 0
    if contract is not None:
        if not is_address(contract):
            raise DeploymentNotFound(f"--contract {contract!r} is not an address")
        address = to_checksum_address(contract)
        origin = "--contract"
    else:
        record, path = _locate(chain.chain_id, location, genesis_hash(chain))
        address, from_block, origin = to_checksum_address(record.address), record.block_number, str(path)
    if not chain.w3.eth.get_code(address):
        raise DeploymentNotFound(
            f"no contract code at {address} (from {origin}) on chain {chain.chain_id}; was the devnet restarted? "
            "run `paychan deploy` again"
        )
    if contract is not None:
        from_block = find_deployment_block(chain, address)
    return PaychanContract(chain, address, from_block=from_block)


def find_deployment_block(chain: Chain, address: str) -> int:
    """The first block at whose end ``address`` holds code: a binary search over ``eth_getCode`` (about 25
    calls on a chain of 30 million blocks). Event queries start there, not at block 0, which providers that
    limit log ranges refuse. A node that keeps no old state answers no historical ``eth_getCode``: then
    the search gives up and returns the current block (events before it are not seen)."""
    head = int(chain.w3.eth.block_number)
    low, high = 0, head  # code at high; the answer is in [low, high]
    try:
        while low < high:
            middle = (low + high) // 2
            if chain.w3.eth.get_code(address, block_identifier=middle):  # type: ignore[arg-type]
                high = middle
            else:
                low = middle + 1
    except Exception:  # not an archive node: no state of old blocks
        return head
    return low


def add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
    """``--contract ADDRESS`` and ``--deployments PATH``: which deployed contract a command uses."""
    parser.add_argument(
        "--contract",
        default=None,
        metavar="ADDRESS",
        help="address of the PaymentChannels contract (default: the one recorded for the chain by `paychan deploy`)",
    )
    parser.add_argument(
        "--deployments",
        default=None,
        metavar="PATH",
        help=f"deployment records: a directory of <chain_id>-<genesis>.json files, or one .json file "
        f"(default: ${DEPLOYMENTS_ENV}, else {DEFAULT_DIRECTORY_HELP})",
    )


def contract_from_args(chain: Chain, args: argparse.Namespace) -> PaychanContract:
    """``load_contract`` for a command parsed with ``add_deployment_arguments``."""
    return load_contract(chain, getattr(args, "contract", None), getattr(args, "deployments", None))
