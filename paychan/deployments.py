"""Deployment records: where ``PaymentChannels`` lives on a chain, written by ``paychan deploy``.

A record holds the contract address, chain id, block, transaction hash and the hash of the artifact that
was deployed. It is stored as ``deployments/<chain_id>.json`` (or any path given with ``--deployments``), so
the other commands find the contract by the chain they talk to and nobody copies addresses by hand.
``load_contract`` is the one lookup every command uses: an explicit ``--contract`` address wins, else the
record for the chain's id; either way the address must hold code, and a record must match the chain id.
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

from paychan.chain import Chain
from paychan.compile import MAIN_CONTRACT, Artifact, load_artifact
from paychan.contract import PaychanContract
from paychan.exceptions import PaychanError

DEFAULT_DIRECTORY = Path("deployments")
DEPLOYMENTS_ENV = "PAYCHAN_DEPLOYMENTS"


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        try:
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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeploymentNotFound(f"malformed deployment record ({type(exc).__name__}: {exc})") from exc


def artifact_hash(artifact: Artifact) -> str:
    """sha256 of the artifact's ABI and creation code: what was deployed, independent of file layout."""
    canonical = json.dumps({"abi": artifact.abi, "bytecode": artifact.bytecode}, sort_keys=True, separators=(",", ":"))
    return "0x" + hashlib.sha256(canonical.encode()).hexdigest()


def default_directory() -> Path:
    """``$PAYCHAN_DEPLOYMENTS`` when set, else ``deployments/`` in the working directory."""
    return Path(os.environ.get(DEPLOYMENTS_ENV) or DEFAULT_DIRECTORY)


def deployment_path(chain_id: int, location: Path | str | None = None) -> Path:
    """The record file for ``chain_id``: ``location`` itself when it names a ``.json`` file, else
    ``<location or default_directory()>/<chain_id>.json``."""
    path = Path(location) if location is not None else default_directory()
    return path if path.suffix == ".json" else path / f"{chain_id}.json"


def deploy_and_record(
    chain: Chain, location: Path | str | None = None, deployer_index: int = 0, artifact: Artifact | None = None
) -> tuple[PaychanContract, Deployment, Path | None]:
    """Deploys ``PaymentChannels`` from ``chain.accounts[deployer_index]`` and writes its record.

    An in-process chain (eth-tester) ends with the process, so nothing is written for it (path None).
    """
    artifact = artifact or load_artifact()
    deployer = chain.accounts[deployer_index]
    contract, receipt = PaychanContract.deploy(chain, deployer, artifact)
    block = chain.w3.eth.get_block(receipt["blockNumber"])
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
    )
    if chain.tester is not None:
        return contract, deployment, None
    path = write_deployment(deployment, deployment_path(chain.chain_id, location))
    return contract, deployment, path


def write_deployment(deployment: Deployment, path: Path) -> Path:
    """Writes ``deployment`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_deployment(chain_id: int, location: Path | str | None = None) -> Deployment:
    """The record for ``chain_id``; raises ``DeploymentNotFound`` when there is none or it is for another chain."""
    path = deployment_path(chain_id, location)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeploymentNotFound(
            f"no deployment for chain {chain_id} in {path}; run `paychan deploy --rpc-url URL` or pass --contract"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DeploymentNotFound(f"cannot read {path}: {exc}") from exc
    deployment = Deployment.from_json(data)
    if deployment.chain_id != chain_id:
        raise DeploymentNotFound(f"{path} records a deployment on chain {deployment.chain_id}, not on chain {chain_id}")
    return deployment


def load_contract(chain: Chain, contract: str | None = None, location: Path | str | None = None) -> PaychanContract:
    """The ``PaymentChannels`` contract to use on ``chain``: ``contract`` (an address) when given, else the
    address recorded for the chain's id. Raises ``DeploymentNotFound`` when the address holds no code (a
    restarted devnet forgets its contracts)."""
    from_block = 0
    if contract is not None:
        if not is_address(contract):
            raise DeploymentNotFound(f"--contract {contract!r} is not an address")
        address = to_checksum_address(contract)
        origin = "--contract"
    else:
        record = read_deployment(chain.chain_id, location)
        address, from_block = to_checksum_address(record.address), record.block_number
        origin = str(deployment_path(chain.chain_id, location))
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
        help=f"deployment records: a directory holding <chain_id>.json or one .json file "
        f"(default: ${DEPLOYMENTS_ENV} or ./{DEFAULT_DIRECTORY})",
    )


def contract_from_args(chain: Chain, args: argparse.Namespace) -> PaychanContract:
    """``load_contract`` for a command parsed with ``add_deployment_arguments``."""
    return load_contract(chain, getattr(args, "contract", None), getattr(args, "deployments", None))
